import assert from "node:assert/strict";
import { test } from "node:test";
import { formatBucket, formatCompact, formatMoney, formatPercent, formatTime, formatTokens } from "../lib/format.ts";

test("tokens are shown in full with thousands separators", () => {
  assert.equal(formatTokens(0), "0");
  assert.equal(formatTokens(999), "999");
  assert.equal(formatTokens(1234567), "1,234,567");
  assert.equal(formatTokens("98765"), "98,765");
  assert.equal(formatTokens(null), "0");
});

test("cards show tokens compactly with one decimal", () => {
  assert.equal(formatCompact(950), "950");
  assert.equal(formatCompact(1234), "1.2K");
  assert.equal(formatCompact(1_234_567), "1.2M");
  assert.equal(formatCompact(3_000_000_000), "3B");
});

test("money has two decimals from a cent up", () => {
  assert.equal(formatMoney("0"), "$0.00");
  assert.equal(formatMoney("1234.5"), "$1,234.50");
  assert.equal(formatMoney("12.345000"), "$12.35");
  assert.equal(formatMoney("0.01"), "$0.01");
  assert.equal(formatMoney(0.009999), "$0.01");
  assert.equal(formatMoney("-3.2"), "-$3.20");
});

test("money below a cent shows up to six decimals, and a trace as <$0.000001", () => {
  assert.equal(formatMoney("0.000123"), "$0.000123");
  assert.equal(formatMoney("0.0045"), "$0.0045");
  assert.equal(formatMoney("0.0012345678"), "$0.001235");
  assert.equal(formatMoney("0.0000001"), "<$0.000001");
});

test("percentages have one decimal", () => {
  assert.equal(formatPercent(0.1234), "12.3%");
  assert.equal(formatPercent(1), "100.0%");
  assert.equal(formatPercent(0), "0.0%");
});

test("times are shown in the given zone (the browser's by default)", () => {
  const iso = "2026-12-01T23:30:00Z";
  assert.equal(formatTime(iso, "UTC"), "Dec 01, 2026, 23:30");
  assert.equal(formatTime(iso, "Europe/Berlin"), "Dec 02, 2026, 00:30");
  assert.equal(formatTime(iso, "America/New_York"), "Dec 01, 2026, 18:30");
  assert.equal(formatTime(null), "—");
  assert.equal(formatTime("not a time"), "—");
});

test("chart axes show the time for hour buckets and the day for day buckets", () => {
  assert.equal(formatBucket("2026-12-01T13:00:00Z", "hour", "UTC"), "Dec 01, 13:00");
  assert.equal(formatBucket("2026-12-01T00:00:00Z", "day", "UTC"), "Dec 01");
  assert.equal(formatBucket("2026-12-01T00:00:00Z", "month", "UTC"), "Dec 2026");
});

test("money on chart axes keeps cents below $10 and goes compact from $1,000", async () => {
  const { formatMoneyAxis } = await import("../lib/format.ts");
  assert.equal(formatMoneyAxis(0), "$0");
  assert.equal(formatMoneyAxis(0.25), "$0.25");
  assert.equal(formatMoneyAxis(12), "$12");
  assert.equal(formatMoneyAxis(1500), "$1.5K");
});
