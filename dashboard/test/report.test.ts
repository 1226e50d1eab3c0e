import assert from "node:assert/strict";
import { test } from "node:test";
import type { ModelCost, Price, UsageBucket, UsageReport, UsageTotals } from "../lib/api.ts";
import { cards, costByModelSeries, planValue, priceFor, savingsByModel, series } from "../lib/report.ts";
import { parseBudget, parseModels, parseThresholds } from "../lib/forms.ts";

const zero: UsageTotals = {
  requests: 0, plan_requests: 0, bedrock_requests: 0, fallback_requests: 0, error_requests: 0,
  input_tokens: 0, output_tokens: 0, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, cost_usd: "0", list_cost_usd: "0",
};

test("cards: totals, fallback rate, cache hit share, top-user share and cost per Bedrock request", () => {
  const totals = { ...zero, requests: 200, plan_requests: 150, bedrock_requests: 50, fallback_requests: 40, input_tokens: 1000, output_tokens: 500, cache_creation_input_tokens: 200, cache_read_input_tokens: 800, cost_usd: "12.500000" };
  const c = cards(totals, [{ user_id: 1, user_name: "alice", requests: 10, input_tokens: 1, output_tokens: 1, cost_usd: "1", share: 0.42 }]);
  assert.equal(c.totalTokens, 2500);
  assert.equal(c.requests, 200);
  assert.equal(c.fallbackRate, 0.2);
  assert.equal(c.cacheHitShare, 0.4); // 800 of 2000 prompt tokens
  assert.equal(c.topUserShare, 0.42);
  assert.equal(c.topUser, "alice");
  assert.equal(c.bedrockCost, 12.5);
  assert.equal(c.costPerBedrockRequest, 0.25);
});

test("cards on an empty range are zeros, not NaN", () => {
  const c = cards(zero, []);
  assert.deepEqual([c.fallbackRate, c.cacheHitShare, c.topUserShare, c.costPerBedrockRequest], [0, 0, 0, 0]);
  assert.equal(c.topUser, null);
});

test("series are ordered by time and accumulate tokens and cost", () => {
  const b = (t: string, tokens: number, cost: string): UsageBucket => ({ ...zero, bucket_start: t, requests: 2, plan_requests: 1, bedrock_requests: 1, input_tokens: tokens, cost_usd: cost });
  const s = series([b("2026-12-02T00:00:00Z", 20, "0.2"), b("2026-12-01T00:00:00Z", 10, "0.1")]);
  assert.deepEqual(s.map((p) => p.t), ["2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z"]);
  assert.deepEqual(s.map((p) => p.cumulativeTokens), [10, 30]);
  assert.deepEqual(s.map((p) => p.cumulativeCost), [0.1, 0.3]);
  assert.deepEqual([s[0].plan, s[0].bedrock], [1, 1]);
});

test("cost by model becomes one row per bucket with a column per model", () => {
  const report = (costs: [string, string][]) => ({ granularity: "day" as const, start: "", end: "", report_tz: "UTC", totals: zero, by_model: [], buckets: costs.map(([t, c]) => ({ ...zero, bucket_start: t, cost_usd: c })) });
  const { rows, models } = costByModelSeries([
    { model: "a", report: report([["t1", "1"], ["t2", "2"]]) },
    { model: "b", report: report([["t2", "5"]]) },
  ]);
  assert.deepEqual(models, ["a", "b"]);
  assert.deepEqual(rows, [{ t: "t1", a: 1, b: 0 }, { t: "t2", a: 2, b: 5 }]);
});

const price = (model: string, effective: string, input: string, read: string, region = "*"): Price => ({ model, region, input, output: "15", cache_write_5m: "3.75", cache_write_1h: "6", cache_read: read, effective_date: effective });

test("a requested model is priced by the longest price name it starts with, at the latest effective date", () => {
  const prices = [price("claude-sonnet-4", "2026-01-01", "1", "0.1"), price("claude-sonnet-4-5", "2026-01-01", "3", "0.3"), price("claude-sonnet-4-5", "2026-06-01", "4", "0.4"), price("claude-sonnet-4-5", "2027-01-01", "9", "0.9")];
  assert.equal(priceFor("claude-sonnet-4-5-20250929", prices, "2026-12-01")?.input, "4");
  assert.equal(priceFor("claude-sonnet-4-0", prices, "2026-12-01")?.input, "1");
  assert.equal(priceFor("gpt-4", prices, "2026-12-01"), null);
});

test("cache savings are the read tokens priced at input minus cache-read rate", () => {
  const byModel: ModelCost[] = [{ ...zero, model: "claude-sonnet-4-5", cache_read_input_tokens: 2_000_000 }, { ...zero, model: "unknown", cache_read_input_tokens: 5 }];
  const s = savingsByModel(byModel, [price("claude-sonnet-4-5", "2026-01-01", "3", "0.3")]);
  assert.ok(Math.abs(s[0].saved - 5.4) < 1e-9);
  assert.equal(s[1].priced, false);
});

test("form parsing: budgets, thresholds and model patterns", () => {
  assert.deepEqual(parseBudget(""), { value: null });
  assert.deepEqual(parseBudget(" 50 "), { value: "50" });
  assert.deepEqual(parseBudget("12.50"), { value: "12.50" });
  assert.ok("error" in parseBudget("12.505"));
  assert.ok("error" in parseBudget("-1"));
  assert.ok("error" in parseBudget("0"));
  assert.deepEqual(parseThresholds("80, 100"), { value: [80, 100] });
  assert.ok("error" in parseThresholds("80, abc"));
  assert.deepEqual(parseModels("claude-sonnet-*\n claude-haiku-* ,"), ["claude-sonnet-*", "claude-haiku-*"]);
  assert.equal(parseModels("  "), null);
});

test("plan value: list_cost_usd of the plan report against cost_usd of the Bedrock report, bucket by bucket", () => {
  const report = (buckets: [string, string, string][], totals: Partial<UsageTotals>): UsageReport => ({
    granularity: "day", start: "", end: "", report_tz: "UTC", by_model: [],
    totals: { ...zero, ...totals },
    buckets: buckets.map(([t, cost, list]) => ({ ...zero, bucket_start: t, cost_usd: cost, list_cost_usd: list })),
  });
  const plan = report([["2026-11-02T00:00:00Z", "0", "3.250000"], ["2026-11-01T00:00:00Z", "0", "1.000000"]], { list_cost_usd: "4.250000" });
  const bedrock = report([["2026-11-01T00:00:00Z", "0.500000", "0.600000"], ["2026-11-03T00:00:00Z", "0.250000", "0.300000"]], { cost_usd: "0.750000" });
  const v = planValue(plan, bedrock);
  assert.equal(v.planValue, 4.25);
  assert.equal(v.bedrockSpend, 0.75);
  assert.deepEqual(v.points, [
    { t: "2026-11-01T00:00:00Z", planValue: 1, bedrockSpend: 0.5 },
    { t: "2026-11-02T00:00:00Z", planValue: 3.25, bedrockSpend: 0 },
    { t: "2026-11-03T00:00:00Z", planValue: 0, bedrockSpend: 0.25 },
  ]);
});
