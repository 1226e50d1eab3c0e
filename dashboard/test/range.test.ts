import assert from "node:assert/strict";
import { test } from "node:test";
import { bucketFor, customRange, presetRange } from "../lib/range.ts";

const NOW = new Date("2026-12-01T12:00:30Z");

test("the bucket follows the range: hours for 24H and 7D, days for 30D and 90D", () => {
  assert.equal(presetRange("24h", NOW).bucket, "hour");
  assert.equal(presetRange("7d", NOW).bucket, "hour");
  assert.equal(presetRange("30d", NOW).bucket, "day");
  assert.equal(presetRange("90d", NOW).bucket, "day");
  assert.equal(bucketFor(new Date("2026-01-01"), new Date("2026-01-01T02:00:00Z")), "minute");
  assert.equal(bucketFor(new Date("2025-01-01"), new Date("2026-01-01")), "week");
  assert.equal(bucketFor(new Date("2024-01-01"), new Date("2026-01-01")), "month");
});

test("a preset ends at the next whole minute and spans its length", () => {
  const r = presetRange("7d", NOW);
  assert.equal(r.end.toISOString(), "2026-12-01T12:01:00.000Z");
  assert.equal(r.end.getTime() - r.start.getTime(), 7 * 24 * 3600 * 1000);
});

test("a custom range includes its end day and refuses an end before the start", () => {
  const r = customRange("2026-11-01", "2026-11-30");
  assert.ok(typeof r !== "string");
  assert.equal((r.end.getTime() - r.start.getTime()) / 86400000, 30);
  assert.equal(r.bucket, "day");
  assert.equal(customRange("2026-11-05", "2026-11-01"), "The end date must not be before the start date.");
  assert.equal(customRange("", "2026-11-01"), "Pick a start date.");
});
