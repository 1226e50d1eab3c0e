"use client";
// Plan quota as the Users list and the User page show it (issue 14): a compact cell for a
// user (highest 5 h / 7 d utilization over their keys, routed-to-Bedrock-until) and a
// key's windows.

import { Badge } from "@/components/ui";
import type { QuotaState } from "@/lib/api";
import { formatTime } from "@/lib/format";
import { formatUtilization, orderedWindows, summarizeQuota, utilizationTone } from "@/lib/quota";

export function QuotaCell({ states }: { states: QuotaState[] | undefined }) {
  if (!states || states.length === 0) return <span className="text-slate-400">no reading</span>;
  const s = summarizeQuota(states);
  return (
    <span className="flex flex-wrap items-center gap-1" data-testid="quota-cell">
      <Badge tone={utilizationTone(s.fiveHour)}>5h {formatUtilization(s.fiveHour)}</Badge>
      <Badge tone={utilizationTone(s.sevenDay)}>7d {formatUtilization(s.sevenDay)}</Badge>
      {s.routedUntil && <Badge tone="amber">Bedrock until {formatTime(s.routedUntil)}</Badge>}
    </span>
  );
}

export function KeyQuota({ state }: { state: QuotaState | null | undefined }) {
  if (!state) return <p className="mt-2 text-xs text-slate-500" data-testid="key-quota">No plan quota reading for this key yet.</p>;
  const windows = orderedWindows(state.windows);
  return (
    <div className="mt-2 flex flex-wrap items-center gap-2 text-xs" data-testid="key-quota">
      <span className="text-slate-500">Plan quota</span>
      {windows.length === 0 && <span className="text-slate-500">no windows reported</span>}
      {windows.map(([name, w]) => (
        <span key={name} title={w.reset ? `resets ${formatTime(w.reset)}` : undefined}>
          <Badge tone={utilizationTone(w.utilization, w.status)}>
            {name} {formatUtilization(w.utilization)}
            {w.reset ? ` · resets ${formatTime(w.reset)}` : ""}
          </Badge>
        </span>
      ))}
      {state.routed_until && <Badge tone="amber">routed to Bedrock until {formatTime(state.routed_until)}</Badge>}
      <span className="text-slate-400">seen {formatTime(state.seen_at)}</span>
    </div>
  );
}
