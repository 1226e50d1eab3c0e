"use client";
import Link from "next/link";
import { useState } from "react";
import { RangePicker, useRange } from "@/components/RangePicker";
import { Badge, Button, Empty, ErrorState, inputClass, Loading, PageTitle, Pager, Panel, Table, Td } from "@/components/ui";
import { UserSelect } from "@/components/UserSelect";
import { describeError } from "@/lib/api";
import { browserZone, formatMoney, formatTime, formatTokens } from "@/lib/format";
import { useSession } from "@/lib/session";
import { useLoad } from "@/lib/useLoad";

const LIMIT = 50;

export default function UsagePage() {
  const { client } = useSession();
  const { preset, range, setPreset, setRange } = useRange("7d");
  const [user, setUser] = useState("");
  const [team, setTeam] = useState("");
  const [key, setKey] = useState("");
  const [model, setModel] = useState("");
  const [provider, setProvider] = useState("");
  const [status, setStatus] = useState("");
  const [offset, setOffset] = useState(0);
  const [csvError, setCsvError] = useState<string | null>(null);
  const teams = useLoad(() => client.listTeams({ limit: 500 }), [client]);
  const filters = {
    start: range.start.toISOString(),
    end: range.end.toISOString(),
    user: user || undefined,
    team: team || undefined,
    key: key.trim() || undefined,
    model: model.trim() || undefined,
    provider: provider || undefined,
    status: status.trim() || undefined,
  };
  const events = useLoad(() => client.events({ ...filters, limit: LIMIT, offset }), [client, JSON.stringify(filters), offset]);
  const reset = () => setOffset(0);

  async function download() {
    setCsvError(null);
    try {
      const csv = await client.exportCsv(filters);
      const url = URL.createObjectURL(new Blob([csv], { type: "text/csv" }));
      const a = document.createElement("a");
      a.href = url;
      a.download = `usage-${range.start.toISOString().slice(0, 10)}-${range.end.toISOString().slice(0, 10)}.csv`;
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    } catch (err) {
      setCsvError(describeError(err));
    }
  }

  return (
    <div className="flex flex-col gap-4">
      <PageTitle title="Usage explorer">
        <RangePicker preset={preset} onChange={(p, r) => { setPreset(p); setRange(r); reset(); }} />
      </PageTitle>
      <Panel>
        <div className="mb-3 flex flex-wrap items-center gap-2">
          <UserSelect value={user} onChange={(v) => { setUser(v); reset(); }} />
          <select aria-label="Team" className={inputClass} value={team} onChange={(e) => { setTeam(e.target.value); reset(); }}>
            <option value="">All teams</option>
            {teams.data?.items.map((t) => <option key={t.id} value={t.id}>{t.name}</option>)}
          </select>
          <input aria-label="Key id" className={`${inputClass} w-24`} placeholder="Key id" value={key} onChange={(e) => { setKey(e.target.value); reset(); }} />
          <input aria-label="Model" className={inputClass} placeholder="Model (exact)" value={model} onChange={(e) => { setModel(e.target.value); reset(); }} />
          <select aria-label="Provider" className={inputClass} value={provider} onChange={(e) => { setProvider(e.target.value); reset(); }}>
            <option value="">Any provider</option>
            <option value="plan">Plan</option>
            <option value="bedrock">Bedrock</option>
            <option value="none">None (rejected)</option>
          </select>
          <input aria-label="Status" className={`${inputClass} w-24`} placeholder="Status" value={status} onChange={(e) => { setStatus(e.target.value); reset(); }} />
          <Button onClick={download}>Download CSV</Button>
        </div>
        {csvError && <p role="alert" className="mb-2 text-sm text-red-700">The CSV could not be downloaded: {csvError}</p>}
        <p className="mb-2 text-xs text-slate-500">Times in {browserZone()}. The CSV holds every event these filters select, not only this page.</p>
        {events.error ? (
          <ErrorState error={events.error} what="usage events" retry={events.reload} />
        ) : !events.data ? (
          <Loading what="usage events" />
        ) : events.data.total === 0 ? (
          <Empty>No usage events match these filters in this range.</Empty>
        ) : (
          <>
            <Table head={["Time", "User", "Key", "Provider", "Model", "Status", "Input", "Output", "Cache read", "Cost", "Latency"]}>
              {events.data.items.map((e) => (
                <tr key={e.request_id} data-testid="event-row" data-request-id={e.request_id}>
                  <Td>{formatTime(e.created_at)}</Td>
                  <Td><Link className="text-indigo-700 hover:underline" href={`/users/view/?id=${e.user_id}`}>{e.user_name}</Link></Td>
                  <Td className="font-mono text-xs">{e.access_key_prefix}…</Td>
                  <Td>
                    <Badge tone={e.provider === "bedrock" ? "amber" : e.provider === "plan" ? "indigo" : "slate"}>{e.provider}</Badge>
                    {e.is_fallback && <span className="ml-1 text-xs text-amber-700">fallback</span>}
                  </Td>
                  <Td className="font-mono text-xs">{e.model ?? "—"}</Td>
                  <Td><Badge tone={e.status < 400 ? "green" : "red"}>{e.status}</Badge></Td>
                  <Td>{formatTokens(e.input_tokens)}</Td>
                  <Td>{formatTokens(e.output_tokens)}</Td>
                  <Td>{formatTokens(e.cache_read_input_tokens)}</Td>
                  <Td>{formatMoney(e.cost_usd)}</Td>
                  <Td>{Math.round(e.latency_ms)} ms</Td>
                </tr>
              ))}
            </Table>
            <Pager total={events.data.total} limit={LIMIT} offset={offset} onChange={setOffset} />
          </>
        )}
      </Panel>
    </div>
  );
}
