"use client";
import { useState } from "react";
import { CumulativeChart, HorizontalBars, StackedCostChart } from "@/components/charts";
import { RangePicker, useRange } from "@/components/RangePicker";
import { PlanValuePanel } from "@/components/PlanValue";
import { Empty, ErrorState, Loading, PageTitle, Panel, StatCard, Table, Td } from "@/components/ui";
import { UserSelect } from "@/components/UserSelect";
import { browserZone, formatMoney, formatTokens } from "@/lib/format";
import { costByModelSeries, savingsByModel, series } from "@/lib/report";
import { useSession } from "@/lib/session";
import { useLoad } from "@/lib/useLoad";

export default function CostPage() {
  const { client } = useSession();
  const { preset, range, setPreset, setRange } = useRange("30d");
  const [user, setUser] = useState("");
  const state = useLoad(async () => {
    const q = { start: range.start.toISOString(), end: range.end.toISOString(), granularity: range.bucket, user: user || undefined, provider: "bedrock" };
    const [report, prices] = await Promise.all([client.usage(q), client.listPrices({ limit: 500 })]);
    const models = report.by_model.filter((m) => Number(m.cost_usd) > 0).slice(0, 6).map((m) => m.model);
    const perModel = await Promise.all(models.map(async (model) => ({ model, report: await client.usage({ ...q, model }) })));
    return { report, prices: prices.items, perModel };
  }, [client, range.start.getTime(), range.end.getTime(), range.bucket, user]);

  return (
    <div className="flex flex-col gap-4">
      <PageTitle title="Cost">
        <div className="flex flex-wrap items-center gap-2">
          <RangePicker preset={preset} onChange={(p, r) => { setPreset(p); setRange(r); }} />
          <UserSelect value={user} onChange={setUser} />
        </div>
      </PageTitle>
      <PlanValuePanel query={{ start: range.start.toISOString(), end: range.end.toISOString(), granularity: range.bucket, user: user || undefined }} />
      <p className="text-xs text-slate-500">Below: Bedrock requests only: plan requests cost the organisation nothing. Times in {browserZone()}.</p>
      {state.error ? (
        <ErrorState error={state.error} what="cost" retry={state.reload} />
      ) : !state.data ? (
        <Loading what="cost" />
      ) : state.data.report.totals.bedrock_requests === 0 ? (
        <Empty>No Bedrock requests in this range, so no cost.</Empty>
      ) : (
        (() => {
          const { report, prices, perModel } = state.data;
          const savings = savingsByModel(report.by_model, prices);
          const saved = savings.reduce((s, x) => s + x.saved, 0);
          const total = Number(report.totals.cost_usd);
          const stacked = costByModelSeries(perModel);
          return (
            <>
              <div className="grid grid-cols-2 gap-3 md:grid-cols-4">
                <StatCard testId="cost-total" label="Bedrock cost" value={formatMoney(total)} />
                <StatCard testId="cost-saved" label="Saved by cache reads" value={formatMoney(saved)} hint="against paying the input rate" />
                <StatCard label="Bedrock requests" value={formatTokens(report.totals.bedrock_requests)} />
                <StatCard label="Cost per Bedrock request" value={formatMoney(total / report.totals.bedrock_requests)} />
              </div>
              <div className="grid gap-4 xl:grid-cols-2">
                <Panel title="Cost by model">
                  <HorizontalBars money valueLabel="USD" data={report.by_model.map((m) => ({ name: m.model || "(none)", value: Number(m.cost_usd) }))} />
                </Panel>
                <Panel title="Cost trend by model">
                  {stacked.models.length ? <StackedCostChart rows={stacked.rows} models={stacked.models} bucket={report.granularity} /> : <Empty>No cost to chart.</Empty>}
                </Panel>
                <Panel title="Cumulative tokens and cost">
                  <CumulativeChart data={series(report.buckets)} bucket={report.granularity} />
                </Panel>
                <div className="xl:col-span-2">
                <Panel title="By model">
                  <Table head={["Model", "Requests", "Cache read", "Saved", "Cost"]}>
                    {report.by_model.map((m, i) => (
                      <tr key={m.model || i}>
                        <Td className="font-mono text-xs">{m.model || "(none)"}</Td>
                        <Td>{formatTokens(m.requests)}</Td>
                        <Td>{formatTokens(m.cache_read_input_tokens)}</Td>
                        <Td>{savings[i].priced ? formatMoney(savings[i].saved) : "no price"}</Td>
                        <Td>{formatMoney(m.cost_usd)}</Td>
                      </tr>
                    ))}
                  </Table>
                </Panel>
                </div>
              </div>
            </>
          );
        })()
      )}
    </div>
  );
}
