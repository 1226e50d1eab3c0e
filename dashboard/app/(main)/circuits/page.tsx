"use client";
import { useState } from "react";
import { Badge, ConfirmButton, Empty, ErrorState, Loading, PageTitle, Pager, Panel, Table, Td } from "@/components/ui";
import { formatTime } from "@/lib/format";
import { useSession } from "@/lib/session";
import { useLoad } from "@/lib/useLoad";

const LIMIT = 50;

export default function CircuitsPage() {
  const { client, canWrite } = useSession();
  const [offset, setOffset] = useState(0);
  const circuits = useLoad(() => client.listCircuits({ limit: LIMIT, offset }), [client, offset]);
  return (
    <div className="flex flex-col gap-4">
      <PageTitle title="Circuit states" />
      <p className="text-sm text-slate-600">Keys whose plan circuit is open (requests go to Bedrock, or get 503) or half-open (one probe tries the plan).</p>
      <Panel>
        {circuits.error ? (
          <ErrorState error={circuits.error} what="circuit states" retry={circuits.reload} />
        ) : !circuits.data ? (
          <Loading what="circuit states" />
        ) : circuits.data.total === 0 ? (
          <Empty>Every circuit is closed: all keys go to the plan first.</Empty>
        ) : (
          <>
            <Table head={["Key", "User", "State", "Failures", "Last error", "Opened", ""]}>
              {circuits.data.items.map((c) => (
                <tr key={c.access_key_id} data-testid="circuit-row">
                  <Td className="font-mono text-xs">{c.prefix}…</Td>
                  <Td>{c.user_name}</Td>
                  <Td><Badge tone={c.state === "open" ? "red" : c.state === "half_open" ? "amber" : "green"}>{c.state.replace("_", "-")}</Badge></Td>
                  <Td>{c.failures}</Td>
                  <Td>{c.last_error_class ?? "—"}</Td>
                  <Td>{formatTime(c.opened_at)}</Td>
                  <Td>
                    {canWrite && (
                      <ConfirmButton label="Reset" tone="plain" question={`Close the circuit of ${c.prefix}…? Its next request tries the plan again.`} confirmLabel="Reset" onConfirm={async () => { await client.resetCircuit(c.access_key_id); circuits.reload(); }} />
                    )}
                  </Td>
                </tr>
              ))}
            </Table>
            <Pager total={circuits.data.total} limit={LIMIT} offset={offset} onChange={setOffset} />
          </>
        )}
      </Panel>
    </div>
  );
}
