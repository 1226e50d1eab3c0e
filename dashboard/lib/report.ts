// Turns the admin API's usage report into what the cards and charts show. Kept apart
// from React so lib/report.test.ts can check the arithmetic.

import type { ModelCost, Price, TopUser, UsageBucket, UsageReport, UsageTotals } from "./api";

const n = (v: unknown): number => {
  const x = typeof v === "number" ? v : Number(v ?? 0);
  return Number.isFinite(x) ? x : 0;
};

/** Every token a request moved: input, output, cache writes and cache reads. */
export function totalTokens(t: Partial<UsageTotals>): number {
  return n(t.input_tokens) + n(t.output_tokens) + n(t.cache_creation_input_tokens) + n(t.cache_read_input_tokens);
}

export interface Cards {
  totalTokens: number;
  inputTokens: number;
  outputTokens: number;
  requests: number;
  bedrockCost: number;
  fallbackRate: number;
  cacheHitShare: number;
  topUserShare: number;
  topUser: string | null;
  costPerBedrockRequest: number;
}

export function cards(totals: UsageTotals, top: TopUser[]): Cards {
  const requests = n(totals.requests);
  const bedrock = n(totals.bedrock_requests);
  const cost = n(totals.cost_usd);
  const prompt = n(totals.input_tokens) + n(totals.cache_creation_input_tokens) + n(totals.cache_read_input_tokens);
  const all = totalTokens(totals);
  const leader = top[0];
  return {
    totalTokens: all,
    inputTokens: n(totals.input_tokens),
    outputTokens: n(totals.output_tokens),
    requests,
    bedrockCost: cost,
    fallbackRate: requests ? n(totals.fallback_requests) / requests : 0,
    cacheHitShare: prompt ? n(totals.cache_read_input_tokens) / prompt : 0,
    // The API ranks by tokens when asked (order_by=tokens) and gives each user's share.
    topUserShare: leader ? n(leader.share) : 0,
    topUser: leader ? leader.user_name : null,
    costPerBedrockRequest: bedrock ? cost / bedrock : 0,
  };
}

export interface SeriesPoint {
  t: string;
  input: number;
  output: number;
  requests: number;
  plan: number;
  bedrock: number;
  cost: number;
  cumulativeTokens: number;
  cumulativeCost: number;
}

export function series(buckets: UsageBucket[]): SeriesPoint[] {
  let tokens = 0;
  let cost = 0;
  return [...buckets]
    .sort((a, b) => a.bucket_start.localeCompare(b.bucket_start))
    .map((b) => {
      tokens += totalTokens(b);
      cost += n(b.cost_usd);
      const requests = n(b.requests);
      const bedrock = n(b.bedrock_requests);
      return {
        t: b.bucket_start,
        input: n(b.input_tokens),
        output: n(b.output_tokens),
        requests,
        plan: n(b.plan_requests),
        bedrock,
        cost: n(b.cost_usd),
        cumulativeTokens: tokens,
        cumulativeCost: Number(cost.toFixed(6)),
      };
    });
}

/** Rows of {t, <model>: cost} for a stacked chart, from one report per model. */
export function costByModelSeries(perModel: { model: string; report: UsageReport }[]): { rows: Record<string, number | string>[]; models: string[] } {
  const byT = new Map<string, Record<string, number | string>>();
  for (const { model, report } of perModel) {
    for (const b of report.buckets) {
      const row = byT.get(b.bucket_start) ?? { t: b.bucket_start };
      row[model] = n(row[model]) + n(b.cost_usd);
      byT.set(b.bucket_start, row);
    }
  }
  const models = perModel.map((p) => p.model);
  const rows = [...byT.values()].sort((a, b) => String(a.t).localeCompare(String(b.t)));
  for (const row of rows) for (const m of models) row[m] = n(row[m]);
  return { rows, models };
}

/** What cache reads saved: tokens read from cache priced at the input rate minus what they cost. */
export function cacheSavings(readTokens: number, inputPricePerMTok: number, readPricePerMTok: number): number {
  return (readTokens * (inputPricePerMTok - readPricePerMTok)) / 1_000_000;
}

/**
 * The price row for a requested model: an exact name, else the longest price name the
 * model starts with (`claude-sonnet-4-5` prices `claude-sonnet-4-5-20250929`); among
 * rows of that name the latest effective date not after `on`, region `*` preferred.
 */
export function priceFor(model: string, prices: Price[], on: string = new Date().toISOString().slice(0, 10)): Price | null {
  const names = [...new Set(prices.map((p) => p.model))].filter((name) => model === name || model.startsWith(name));
  if (!names.length) return null;
  const name = names.sort((a, b) => b.length - a.length)[0];
  const rows = prices
    .filter((p) => p.model === name && p.effective_date <= on)
    .sort((a, b) => (a.effective_date === b.effective_date ? Number(b.region === "*") - Number(a.region === "*") : b.effective_date.localeCompare(a.effective_date)));
  return rows[0] ?? null;
}

/** Per model and in total, what Bedrock cache reads saved against paying the input rate. */
export function savingsByModel(byModel: ModelCost[], prices: Price[]): { model: string; readTokens: number; saved: number; priced: boolean }[] {
  return byModel.map((m) => {
    const price = priceFor(m.model, prices);
    const readTokens = n(m.cache_read_input_tokens);
    return {
      model: m.model,
      readTokens,
      saved: price ? cacheSavings(readTokens, n(price.input), n(price.cache_read)) : 0,
      priced: price !== null,
    };
  });
}

export interface PlanValuePoint {
  t: string;
  planValue: number;
  bedrockSpend: number;
}

/**
 * What the plans delivered at API list price (list_cost_usd of plan rows) against what
 * Bedrock cost (cost_usd of Bedrock rows), in total and per bucket. `plan` is the report
 * filtered to provider=plan, `bedrock` to provider=bedrock, over the same range and bucket.
 */
export function planValue(plan: UsageReport, bedrock: UsageReport): { planValue: number; bedrockSpend: number; points: PlanValuePoint[] } {
  const byT = new Map<string, PlanValuePoint>();
  const at = (t: string) => byT.get(t) ?? byT.set(t, { t, planValue: 0, bedrockSpend: 0 }).get(t)!;
  for (const b of plan.buckets) at(b.bucket_start).planValue += n(b.list_cost_usd);
  for (const b of bedrock.buckets) at(b.bucket_start).bedrockSpend += n(b.cost_usd);
  const points = [...byT.values()]
    .sort((a, b) => a.t.localeCompare(b.t))
    .map((p) => ({ t: p.t, planValue: Number(p.planValue.toFixed(6)), bedrockSpend: Number(p.bedrockSpend.toFixed(6)) }));
  return { planValue: n(plan.totals.list_cost_usd), bedrockSpend: n(bedrock.totals.cost_usd), points };
}
