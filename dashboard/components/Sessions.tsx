"use client";
// A user's recent Claude Code sessions (issue 15's attribution): requests, tokens and
// cost summed per session id, newest first.

import { Loaded, Panel, Table, Td } from "@/components/ui";
import { formatMoney, formatTime, formatTokens } from "@/lib/format";
import { useSession } from "@/lib/session";
import { useLoad } from "@/lib/useLoad";

export function Sessions({ userId }: { userId: number }) {
  const { client } = useSession();
  const sessions = useLoad(() => client.userSessions(userId, { days: 30, limit: 20 }), [client, userId]);
  return (
    <Panel title="Recent sessions (30 days)">
      <Loaded state={sessions} what="sessions" isEmpty={(s) => s.total === 0} empty="No sessions recorded for this user yet.">
        {({ items: rows }) => (
          <Table head={["Session", "Last request", "Requests", "Input", "Output", "Cache read", "Fallback", "Cost"]}>
            {rows.map((s) => (
              <tr key={s.group_key} data-testid="session-row" data-session-id={s.group_key}>
                <Td className="max-w-[14rem] truncate font-mono text-xs">{s.group_key || <span className="font-sans text-slate-500">without a session header</span>}</Td>
                <Td>{formatTime(s.last_seen)}</Td>
                <Td>{formatTokens(s.requests)}</Td>
                <Td>{formatTokens(s.input_tokens)}</Td>
                <Td>{formatTokens(s.output_tokens)}</Td>
                <Td>{formatTokens(s.cache_read_input_tokens)}</Td>
                <Td>{formatTokens(s.fallback_requests)}</Td>
                <Td>{s.cost_usd === null ? "not priced" : formatMoney(s.cost_usd)}</Td>
              </tr>
            ))}
          </Table>
        )}
      </Loaded>
    </Panel>
  );
}
