"use client";
import { useState } from "react";
import { Badge, Button, Empty, ErrorState, inputClass, Loading, PageTitle, Pager, Panel, Table, Td } from "@/components/ui";
import type { AuditQuery } from "@/lib/api";
import { browserZone, formatTime } from "@/lib/format";
import { useSession } from "@/lib/session";
import { useLoad } from "@/lib/useLoad";

const LIMIT = 50;

export default function AuditPage() {
  const { client } = useSession();
  const [draft, setDraft] = useState({ actor: "", action: "", target_type: "", target_id: "", from: "", to: "" });
  const [filters, setFilters] = useState<AuditQuery>({});
  const [offset, setOffset] = useState(0);
  const audit = useLoad(() => client.audit({ ...filters, limit: LIMIT, offset }), [client, JSON.stringify(filters), offset]);
  const set = (k: keyof typeof draft) => (e: React.ChangeEvent<HTMLInputElement>) => setDraft({ ...draft, [k]: e.target.value });
  return (
    <div className="flex flex-col gap-4">
      <PageTitle title="Audit log" />
      <Panel>
        <form
          className="mb-3 flex flex-wrap items-center gap-2"
          onSubmit={(e) => {
            e.preventDefault();
            setOffset(0);
            setFilters({
              actor: draft.actor.trim() || undefined,
              action: draft.action.trim() || undefined,
              target_type: draft.target_type.trim() || undefined,
              target_id: draft.target_id.trim() || undefined,
              start: draft.from ? new Date(`${draft.from}T00:00:00`).toISOString() : undefined,
              end: draft.to ? new Date(new Date(`${draft.to}T00:00:00`).getTime() + 86400000).toISOString() : undefined,
            });
          }}
        >
          <input aria-label="Actor" placeholder="Actor" className={inputClass} value={draft.actor} onChange={set("actor")} />
          <input aria-label="Action" placeholder="Action, e.g. key.rotate" className={inputClass} value={draft.action} onChange={set("action")} />
          <input aria-label="Target type" placeholder="Target type" className={`${inputClass} w-32`} value={draft.target_type} onChange={set("target_type")} />
          <input aria-label="Target id" placeholder="Target id" className={`${inputClass} w-24`} value={draft.target_id} onChange={set("target_id")} />
          <input aria-label="From" type="date" className={inputClass} value={draft.from} onChange={set("from")} />
          <input aria-label="To" type="date" className={inputClass} value={draft.to} onChange={set("to")} />
          <Button type="submit">Filter</Button>
        </form>
        <p className="mb-2 text-xs text-slate-500">Newest first; times in {browserZone()}.</p>
        {audit.error ? (
          <ErrorState error={audit.error} what="the audit log" retry={audit.reload} />
        ) : !audit.data ? (
          <Loading what="the audit log" />
        ) : audit.data.total === 0 ? (
          <Empty>No audit entries match these filters.</Empty>
        ) : (
          <>
            <Table head={["Time", "Actor", "Action", "Target", "Changes", "Address"]}>
              {audit.data.items.map((a) => (
                <tr key={a.id} data-testid="audit-row">
                  <Td>{formatTime(a.at)}</Td>
                  <Td>{a.actor} <Badge>{a.actor_kind}</Badge></Td>
                  <Td className="font-mono text-xs">{a.action}</Td>
                  <Td>{a.target_type}{a.target_id ? ` ${a.target_id}` : ""}</Td>
                  <Td className="max-w-xs truncate font-mono text-xs">
                    <span title={JSON.stringify(a.changes)}>{Object.keys(a.changes).length ? JSON.stringify(a.changes) : "—"}</span>
                  </Td>
                  <Td>{a.client_address ?? "—"}</Td>
                </tr>
              ))}
            </Table>
            <Pager total={audit.data.total} limit={LIMIT} offset={offset} onChange={setOffset} />
          </>
        )}
      </Panel>
    </div>
  );
}
