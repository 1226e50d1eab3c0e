import assert from "node:assert/strict";
import { test } from "node:test";
import type { QuotaState } from "../lib/api.ts";
import { formatUtilization, orderedWindows, parseRouting, quotaByUser, routingLabel, summarizeQuota, utilizationTone } from "../lib/quota.ts";

const state = (user: string, five: number | null, seven: number | null, routedUntil: string | null = null): QuotaState => ({
  access_key_id: 1, prefix: "sk-ccp-ab…", user, unified_status: "allowed", unified_reset: null, routed_to_bedrock: routedUntil !== null, routed_until: routedUntil, seen_at: "2026-12-01T10:00:00Z",
  windows: { "5h": { status: "allowed", utilization: five, reset: null }, "7d": { status: "allowed", utilization: seven, reset: null } },
});

test("utilization shows as a whole percentage, unknown as a dash", () => {
  assert.equal(formatUtilization(0.834), "83%");
  assert.equal(formatUtilization(1), "100%");
  assert.equal(formatUtilization(0), "0%");
  assert.equal(formatUtilization(null), "—");
  assert.equal(formatUtilization(undefined), "—");
});

test("utilization turns amber from 80 % and red from 95 % or when the plan rejected", () => {
  assert.equal(utilizationTone(0.5), "green");
  assert.equal(utilizationTone(0.8), "amber");
  assert.equal(utilizationTone(0.95), "red");
  assert.equal(utilizationTone(0.1, "rejected"), "red");
  assert.equal(utilizationTone(null), "slate");
});

test("a user's quota is the highest 5h and 7d utilization over their keys and the latest routed-until ahead", () => {
  const now = new Date("2026-12-01T12:00:00Z");
  const s = summarizeQuota(
    [state("a", 0.2, 0.9, "2026-12-01T13:00:00Z"), state("a", 0.7, null, "2026-12-01T15:00:00Z"), state("a", null, 0.3, "2026-12-01T11:00:00Z")],
    now,
  );
  assert.deepEqual(s, { fiveHour: 0.7, sevenDay: 0.9, routedUntil: "2026-12-01T15:00:00Z" });
  assert.deepEqual(summarizeQuota([], now), { fiveHour: null, sevenDay: null, routedUntil: null });
  assert.equal(summarizeQuota([state("a", 0.1, 0.1, "2026-12-01T11:59:00Z")], now).routedUntil, null, "a past routed-until is not routed");
});

test("quota states group by user, and windows order 5h, 7d, then the rest by name", () => {
  const groups = quotaByUser([state("a", 1, 1), state("b", 1, 1), state("a", 0, 0)]);
  assert.deepEqual([...groups.keys()], ["a", "b"]);
  assert.equal(groups.get("a")?.length, 2);
  const w = { "7d_opus": { status: null, utilization: 0.1, reset: null }, "7d": { status: null, utilization: 0.2, reset: null }, "5h": { status: null, utilization: 0.3, reset: null } };
  assert.deepEqual(orderedWindows(w).map(([name]) => name), ["5h", "7d", "7d_opus"]);
});

test("routing reads as words and a select's value goes back to the API's value", () => {
  assert.equal(routingLabel("plan_first"), "Plan first");
  assert.equal(routingLabel("bedrock_only"), "Bedrock only");
  assert.equal(routingLabel(null), "Inherited");
  assert.equal(routingLabel(undefined), "Inherited");
  assert.equal(parseRouting("bedrock_only"), "bedrock_only");
  assert.equal(parseRouting(""), null);
});
