"use client";
import Link from "next/link";
import { useState } from "react";
import { CumulativeChart, HorizontalBars, ProviderChart, StackedCostChart, ThroughputChart } from "@/components/charts";
import { RangePicker, useRange } from "@/components/RangePicker";
import { PlanValuePanel } from "@/components/PlanValue";
import { Empty, ErrorState, Loading, PageTitle, Panel, StatCard } from "@/components/ui";
import { UserSelect } from "@/components/UserSelect";
import type { UsageQuery } from "@/lib/api";
import { browserZone, formatCompact, formatMoney, formatPercent, formatTokens } from "@/lib/format";
import { cards, costByModelSeries, series } from "@/lib/report";
import { useSession } from "@/lib/session";
import { useLoad } from "@/lib/useLoad";

export default function OverviewPage() {
  const { client } = useSession();
  const { preset, range, setPreset, setRange } = useRange("30d");
  const [user, setUser] = useState("");
  const q: UsageQuery = { start: range.start.toISOString(), end: range.end.toISOString(), granularity: range.bucket, user: user || undefined };

  const state = useLoad(async () => {
    const [report, top] = await Promise.all([client.usage(q), client.topUsers({ start: q.start, end: q.end, order_by: "tokens", limit: 10 })]);
    // Cost by model over time: one report per model with a cost (the top six).
    const models = report.by_model
      .filter((m) => Number(m.cost_usd) > 0)
      .sort((a, b) => Number(b.cost_usd) - Number(a.cost_usd))
      .slice(0, 6)
      .map((m) => m.model);
    const perModel = await Promise.all(models.map(async (model) => ({ model, report: await client.usage({ ...q, model }) })));
    return { report, top: top.items, perModel };
  }, [client, range.start.getTime(), range.end.getTime(), range.bucket, user]);

  return (
    <div>
      <PageTitle title="Overview">
        <div className="flex flex-wrap items-center gap-2">
          <RangePicker
            preset={preset}
            onChange={(p, r) => {
              setPreset(p);
              setRange(r);
            }}
          />
          <UserSelect value={user} onChange={setUser} />
        </div>
      </PageTitle>
      <p className="mb-4 text-xs text-slate-500" data-testid="zone-note">
        {range.bucket} buckets
        {state.data?.report.report_tz && range.bucket !== "minute" && range.bucket !== "hour"
          ? ` in the reporting zone ${state.data.report.report_tz}`
          : ""}
        ; times shown in {browserZone()}.
      </p>
      {state.error ? (
        <ErrorState error={state.error} what="the overview" retry={state.reload} />
      ) : !state.data ? (
        <Loading what="the overview" />
      ) : state.data.report.totals.requests === 0 ? (
        <Empty>No requests in this range{user ? " for this user" : ""}. Pick a longer range, or send some traffic through the gateway.</Empty>
      ) : (
        <Body data={state.data} bucket={range.bucket} query={q} />
      )}
    </div>
  );
}

function Body({ data, bucket, query }: { query: UsageQuery; data: { report: import("@/lib/api").UsageReport; top: import("@/lib/api").TopUser[]; perModel: { model: string; report: import("@/lib/api").UsageReport }[] }; bucket: string }) {
  const c = cards(data.report.totals, data.top);
  const points = series(data.report.buckets);
  const stacked = costByModelSeries(data.perModel);
  return (
    <div className="flex flex-col gap-4">
      <div className="grid grid-cols-2 gap-3 md:grid-cols-3 xl:grid-cols-5">
        <StatCard testId="card-total-tokens" label="Total tokens" value={formatCompact(c.totalTokens)} hint={formatTokens(c.totalTokens)} />
        <StatCard testId="card-input-tokens" label="Input tokens" value={formatCompact(c.inputTokens)} hint={formatTokens(c.inputTokens)} />
        <StatCard testId="card-output-tokens" label="Output tokens" value={formatCompact(c.outputTokens)} hint={formatTokens(c.outputTokens)} />
        <StatCard testId="card-requests" label="Requests" value={formatCompact(c.requests)} hint={formatTokens(c.requests)} />
        <StatCard testId="card-bedrock-cost" label="Bedrock cost" value={formatMoney(c.bedrockCost)} />
        <StatCard testId="card-fallback-rate" label="Fallback rate" value={formatPercent(c.fallbackRate)} hint="requests sent to Bedrock on fallback" />
        <StatCard testId="card-cache-hit" label="Cache hit share" value={formatPercent(c.cacheHitShare)} hint="prompt tokens read from cache" />
        <StatCard testId="card-top-user" label="Top-user share" value={formatPercent(c.topUserShare)} hint={c.topUser ? `of tokens: ${c.topUser}` : undefined} />
        <StatCard testId="card-cost-per-request" label="Cost per request" value={formatMoney(c.costPerBedrockRequest)} hint="per Bedrock request" />
      </div>
      <PlanValuePanel query={query} />
      <div className="grid gap-4 xl:grid-cols-2">
        <Panel title="Token throughput">
          <ThroughputChart data={points} bucket={bucket} />
        </Panel>
        <Panel title="Plan vs Bedrock requests">
          <ProviderChart data={points} bucket={bucket} />
        </Panel>
        <Panel title="Top users (input + output tokens, all users)">
          {data.top.length === 0 ? (
            <Empty>No users in this range.</Empty>
          ) : (
            <>
              <HorizontalBars data={data.top.map((u) => ({ name: u.user_name, value: u.input_tokens + u.output_tokens }))} valueLabel="tokens" />
              <ul className="mt-2 flex flex-wrap gap-x-3 gap-y-1 text-sm">
                {data.top.map((u) => (
                  <li key={u.user_id}>
                    <Link className="text-indigo-700 hover:underline" href={`/users/view/?id=${u.user_id}`}>
                      {u.user_name}
                    </Link>
                  </li>
                ))}
              </ul>
            </>
          )}
        </Panel>
        <Panel title="Bedrock cost by model">
          {stacked.models.length === 0 ? <Empty>No Bedrock cost in this range.</Empty> : <StackedCostChart rows={stacked.rows} models={stacked.models} bucket={bucket} />}
        </Panel>
        <Panel title="Cumulative tokens and cost">
          <CumulativeChart data={points} bucket={bucket} />
        </Panel>
      </div>
    </div>
  );
}
