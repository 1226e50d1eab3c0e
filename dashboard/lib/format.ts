// Number, money and time formatting for every page (issue 12: "Numbers are formatted").
// Pure functions of their inputs, so lib/format.test.ts pins them down.

const LOCALE = "en-US";
const integer = new Intl.NumberFormat(LOCALE, { maximumFractionDigits: 0 });
const compact = new Intl.NumberFormat(LOCALE, { notation: "compact", maximumFractionDigits: 1 });
const twoDecimals = new Intl.NumberFormat(LOCALE, { minimumFractionDigits: 2, maximumFractionDigits: 2 });

function toNumber(value: number | string | null | undefined): number {
  if (value === null || value === undefined || value === "") return 0;
  const n = typeof value === "number" ? value : Number(value);
  return Number.isFinite(n) ? n : 0;
}

/** Tokens in full with thousands separators: 1234567 → "1,234,567". */
export function formatTokens(value: number | string | null | undefined): string {
  return integer.format(Math.round(toNumber(value)));
}

/** Tokens on cards: 1234567 → "1.2M", 950 → "950". */
export function formatCompact(value: number | string | null | undefined): string {
  return compact.format(toNumber(value));
}

/**
 * Money from the API's decimal strings: two decimals from a cent up ("$1,234.50"),
 * up to six significant decimals below a cent ("$0.000123"), and "<$0.000001" for
 * a non-zero amount too small to show.
 */
export function formatMoney(value: number | string | null | undefined): string {
  const n = toNumber(value);
  const sign = n < 0 ? "-" : "";
  const abs = Math.abs(n);
  if (abs === 0) return "$0.00";
  if (abs >= 0.01 || Math.round(abs * 100) >= 1) return `${sign}$${twoDecimals.format(abs)}`;
  if (abs < 0.0000005) return `${sign}<$0.000001`;
  const six = abs.toFixed(6).replace(/0+$/, "");
  return `${sign}$${six}`;
}

/** A ratio 0..1 as a percentage with one decimal: 0.1234 → "12.3%". */
export function formatPercent(ratio: number | null | undefined): string {
  const n = toNumber(ratio);
  return `${(n * 100).toFixed(1)}%`;
}

/**
 * An ISO 8601 instant shown in the browser's zone (or `timeZone` when given, which the
 * tests use to be independent of the machine's zone).
 */
export function formatTime(iso: string | null | undefined, timeZone?: string): string {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "—";
  return new Intl.DateTimeFormat(LOCALE, {
    year: "numeric",
    month: "short",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
    timeZone,
  }).format(d);
}

/** A bucket's start on a chart axis: hour buckets show the time, longer ones the day. */
export function formatBucket(iso: string, bucket: string, timeZone?: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const opts: Intl.DateTimeFormatOptions =
    bucket === "minute" || bucket === "hour"
      ? { month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23" }
      : bucket === "month"
        ? { year: "numeric", month: "short" }
        : { month: "short", day: "2-digit" };
  return new Intl.DateTimeFormat(LOCALE, { ...opts, timeZone }).format(d);
}

/** The browser's own zone name, shown beside times ("times in Europe/Berlin"). */
export function browserZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone;
}

/** Money on a chart axis: "$0.25", "$12", "$1.2K". */
export function formatMoneyAxis(value: number): string {
  const abs = Math.abs(value);
  if (abs >= 1000) return `$${compact.format(value)}`;
  return `$${value.toFixed(abs < 10 && value !== 0 ? 2 : 0)}`;
}
