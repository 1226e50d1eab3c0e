// Plan quota and routing as the pages show them (issue 14). Pure functions of the admin
// API's answers, so test/quota.test.ts pins them down.

import type { QuotaState, QuotaWindow, Routing } from "./api";

/** A window's utilization (0..1) as a whole percentage: 0.834 → "83%"; unknown → "—". */
export function formatUtilization(u: number | null | undefined): string {
  if (u === null || u === undefined || !Number.isFinite(u)) return "—";
  return `${Math.round(u * 100)}%`;
}

/** The tone of a utilization: amber from 80 %, red from 95 % or when the plan says so. */
export function utilizationTone(u: number | null | undefined, status?: string | null): "slate" | "green" | "amber" | "red" {
  if (status === "rejected") return "red";
  if (u === null || u === undefined || !Number.isFinite(u)) return "slate";
  if (u >= 0.95) return "red";
  if (u >= 0.8 || status === "allowed_warning") return "amber";
  return "green";
}

export interface QuotaSummary {
  fiveHour: number | null;
  sevenDay: number | null;
  /** The latest instant any key of the user is routed to Bedrock until (null: none routed). */
  routedUntil: string | null;
}

const known = (u: number | null | undefined): u is number => u !== null && u !== undefined && Number.isFinite(u);

/** Highest 5 h and 7 d utilization over a user's keys, and the latest routed-until still ahead of `now`. */
export function summarizeQuota(states: QuotaState[], now: Date = new Date()): QuotaSummary {
  let fiveHour: number | null = null;
  let sevenDay: number | null = null;
  let routedUntil: string | null = null;
  for (const s of states) {
    const f = s.windows["5h"]?.utilization;
    const w = s.windows["7d"]?.utilization;
    if (known(f)) fiveHour = fiveHour === null ? f : Math.max(fiveHour, f);
    if (known(w)) sevenDay = sevenDay === null ? w : Math.max(sevenDay, w);
    const until = s.routed_until;
    if (until && new Date(until).getTime() > now.getTime() && (!routedUntil || new Date(until) > new Date(routedUntil))) routedUntil = until;
  }
  return { fiveHour, sevenDay, routedUntil };
}

/** Quota states per user name, for a list page that fetched every key's state at once. */
export function quotaByUser(states: QuotaState[]): Map<string, QuotaState[]> {
  const out = new Map<string, QuotaState[]>();
  for (const s of states) out.set(s.user, [...(out.get(s.user) ?? []), s]);
  return out;
}

/** A key's windows in a stable order: 5h, 7d, then the rest (per-model weekly ones) by name. */
export function orderedWindows(windows: Record<string, QuotaWindow>): [string, QuotaWindow][] {
  const rank = (name: string) => (name === "5h" ? 0 : name === "7d" ? 1 : 2);
  return Object.entries(windows).sort(([a], [b]) => rank(a) - rank(b) || a.localeCompare(b));
}

export const ROUTINGS: { value: Routing; label: string }[] = [
  { value: null, label: "Inherited" },
  { value: "plan_first", label: "Plan first" },
  { value: "bedrock_only", label: "Bedrock only" },
];

/** "Plan first", "Bedrock only", or "Inherited" (null: the next level up decides). */
export function routingLabel(r: Routing | undefined): string {
  return ROUTINGS.find((x) => x.value === (r ?? null))?.label ?? String(r);
}

/** A `<select>`'s value back to the API's routing (the empty string is null). */
export function parseRouting(value: string): Routing {
  return value === "plan_first" || value === "bedrock_only" ? value : null;
}
