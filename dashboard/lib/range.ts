// Time ranges for the overview and user pages: the presets, a custom range, and the
// bucket size that follows the range (SPEC §8: "automatic bucket size").

export type Bucket = "minute" | "hour" | "day" | "week" | "month";
export type Preset = "24h" | "7d" | "30d" | "90d" | "custom";

export const PRESETS: { id: Exclude<Preset, "custom">; label: string; hours: number }[] = [
  { id: "24h", label: "24H", hours: 24 },
  { id: "7d", label: "7D", hours: 24 * 7 },
  { id: "30d", label: "30D", hours: 24 * 30 },
  { id: "90d", label: "90D", hours: 24 * 90 },
];

export interface Range {
  start: Date;
  end: Date;
  bucket: Bucket;
}

const HOUR = 3600 * 1000;

/** The bucket for a span: about 24–200 points on a chart whatever the range. */
export function bucketFor(start: Date, end: Date): Bucket {
  const hours = (end.getTime() - start.getTime()) / HOUR;
  if (hours <= 3) return "minute";
  if (hours <= 24 * 8) return "hour";
  if (hours <= 24 * 120) return "day";
  if (hours <= 24 * 400) return "week";
  return "month";
}

/** A preset ending now (rounded up to the next minute so repeated loads agree). */
export function presetRange(preset: Exclude<Preset, "custom">, now: Date = new Date()): Range {
  const p = PRESETS.find((x) => x.id === preset);
  if (!p) throw new Error(`unknown preset ${preset}`);
  const end = new Date(Math.ceil(now.getTime() / 60000) * 60000);
  const start = new Date(end.getTime() - p.hours * HOUR);
  return { start, end, bucket: bucketFor(start, end) };
}

/** A custom range from two `<input type="date">` values, in the browser's zone, end inclusive. */
export function customRange(from: string, to: string): Range | string {
  const start = new Date(`${from}T00:00:00`);
  const endDay = new Date(`${to}T00:00:00`);
  if (Number.isNaN(start.getTime())) return "Pick a start date.";
  if (Number.isNaN(endDay.getTime())) return "Pick an end date.";
  const end = new Date(endDay.getTime() + 24 * HOUR);
  if (end <= start) return "The end date must not be before the start date.";
  return { start, end, bucket: bucketFor(start, end) };
}

/** A calendar-aligned range for the user page: this day/week/month back `count` steps. */
export function periodRange(bucket: "day" | "week" | "month", count: number, now: Date = new Date()): Range {
  const end = new Date(Math.ceil(now.getTime() / 60000) * 60000);
  const start = new Date(end);
  if (bucket === "day") start.setDate(start.getDate() - count);
  else if (bucket === "week") start.setDate(start.getDate() - 7 * count);
  else start.setMonth(start.getMonth() - count);
  return { start, end, bucket };
}
