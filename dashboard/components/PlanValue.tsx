"use client";
// "Plan value vs Bedrock spend" (issue 14): what the plans delivered, priced at the API's
// list price, beside what Bedrock actually cost, for the page's range and user filter.

import { PlanValueChart } from "@/components/charts";
import { Empty, Loaded, Panel } from "@/components/ui";
import type { UsageQuery } from "@/lib/api";
import { formatMoney } from "@/lib/format";
import { planValue } from "@/lib/report";
import { useSession } from "@/lib/session";
import { useLoad } from "@/lib/useLoad";

export function PlanValuePanel({ query }: { query: UsageQuery }) {
  const { client } = useSession();
  const state = useLoad(async () => {
    const [plan, bedrock] = await Promise.all([client.usage({ ...query, provider: "plan" }), client.usage({ ...query, provider: "bedrock" })]);
    return { ...planValue(plan, bedrock), bucket: plan.granularity };
  }, [client, query.start, query.end, query.granularity, query.user]);
  return (
    <Panel title="Plan value vs Bedrock spend">
      <Loaded state={state} what="plan value" isEmpty={(v) => v.planValue === 0 && v.bedrockSpend === 0} empty="No priced plan or Bedrock requests in this range.">
        {(v) => (
          <div className="flex flex-col gap-3" data-testid="plan-value">
            <div className="grid grid-cols-2 gap-3 sm:grid-cols-3">
              <div data-testid="plan-value-plan">
                <div className="text-xs font-medium uppercase tracking-wide text-slate-500">Plan value</div>
                <div className="text-xl font-semibold text-emerald-700" data-value>{formatMoney(v.planValue)}</div>
                <div className="text-xs text-slate-500">plan requests at API list price</div>
              </div>
              <div data-testid="plan-value-bedrock">
                <div className="text-xs font-medium uppercase tracking-wide text-slate-500">Bedrock spend</div>
                <div className="text-xl font-semibold text-amber-700" data-value>{formatMoney(v.bedrockSpend)}</div>
                <div className="text-xs text-slate-500">what fallback cost</div>
              </div>
              <div>
                <div className="text-xs font-medium uppercase tracking-wide text-slate-500">Plan share of value</div>
                <div className="text-xl font-semibold text-slate-900">
                  {v.planValue + v.bedrockSpend > 0 ? `${((100 * v.planValue) / (v.planValue + v.bedrockSpend)).toFixed(1)}%` : "—"}
                </div>
                <div className="text-xs text-slate-500">of plan value + Bedrock spend</div>
              </div>
            </div>
            {v.points.length ? <PlanValueChart data={v.points} bucket={v.bucket} /> : <Empty>No buckets to chart.</Empty>}
          </div>
        )}
      </Loaded>
    </Panel>
  );
}
