"use client";
import Link from "next/link";
import { useState } from "react";
import { QuotaCell } from "@/components/Quota";
import { Badge, Button, Empty, ErrorState, Field, inputClass, Loading, PageTitle, Pager, Panel, Table, Td } from "@/components/ui";
import { describeError } from "@/lib/api";
import { formatMoney, formatTime } from "@/lib/format";
import { parseBudget } from "@/lib/forms";
import { quotaByUser } from "@/lib/quota";
import { useSession } from "@/lib/session";
import { useLoad } from "@/lib/useLoad";

const LIMIT = 25;

export default function UsersPage() {
  const { client, canWrite } = useSession();
  const [search, setSearch] = useState("");
  const [status, setStatus] = useState("");
  const [team, setTeam] = useState("");
  const [offset, setOffset] = useState(0);
  const teams = useLoad(() => client.listTeams({ limit: 500 }), [client]);
  const users = useLoad(
    () => client.listUsers({ search: search || undefined, status: status || undefined, team: team || undefined, limit: LIMIT, offset }),
    [client, search, status, team, offset],
  );
  // Every key's quota at once (one call, not one per row); a failure leaves the column blank.
  const quota = useLoad(() => client.listQuota({ limit: 500 }).then((p) => quotaByUser(p.items)), [client]);
  const filtered = Boolean(search || status || team);
  return (
    <div className="flex flex-col gap-4">
      <PageTitle title="Users" />
      {canWrite && <CreateUser teams={teams.data?.items ?? []} onCreated={users.reload} />}
      <Panel>
        <div className="mb-3 flex flex-wrap gap-2">
          <input aria-label="Search users" placeholder="Search by name" className={inputClass} value={search} onChange={(e) => { setSearch(e.target.value); setOffset(0); }} />
          <select aria-label="Status" className={inputClass} value={status} onChange={(e) => { setStatus(e.target.value); setOffset(0); }}>
            <option value="">Any status</option>
            <option value="active">Active</option>
            <option value="inactive">Inactive</option>
          </select>
          <select aria-label="Team" className={inputClass} value={team} onChange={(e) => { setTeam(e.target.value); setOffset(0); }}>
            <option value="">Any team</option>
            {teams.data?.items.map((t) => (
              <option key={t.id} value={t.id}>{t.name}</option>
            ))}
          </select>
        </div>
        {users.error ? (
          <ErrorState error={users.error} what="users" retry={users.reload} />
        ) : !users.data ? (
          <Loading what="users" />
        ) : users.data.total === 0 ? (
          <Empty>{filtered ? "No user matches these filters." : canWrite ? "No users yet. Create the first one above." : "No users yet."}</Empty>
        ) : (
          <>
            <Table head={["Name", "Team", "Status", "Budget", "Keys", "Plan quota", "Created"]}>
              {users.data.items.map((u) => (
                <tr key={u.id} data-testid="user-row">
                  <Td>
                    <Link className="font-medium text-indigo-700 hover:underline" href={`/users/view/?id=${u.id}`}>{u.name}</Link>
                  </Td>
                  <Td>{u.team ?? "—"}</Td>
                  <Td><Badge tone={u.status === "active" ? "green" : "slate"}>{u.status}</Badge></Td>
                  <Td>{u.monthly_budget_usd === null ? "Unlimited" : formatMoney(u.monthly_budget_usd)}</Td>
                  <Td>{u.active_keys}</Td>
                  <Td>{quota.error ? <span className="text-slate-400">—</span> : !quota.data ? <span className="text-slate-400">…</span> : <QuotaCell states={quota.data.get(u.name)} />}</Td>
                  <Td>{formatTime(u.created_at)}</Td>
                </tr>
              ))}
            </Table>
            <Pager total={users.data.total} limit={LIMIT} offset={offset} onChange={setOffset} />
          </>
        )}
      </Panel>
    </div>
  );
}

function CreateUser({ teams, onCreated }: { teams: { id: number; name: string }[]; onCreated: () => void }) {
  const { client } = useSession();
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [teamId, setTeamId] = useState("");
  const [budget, setBudget] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [created, setCreated] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  return (
    <Panel title="Create a user">
      <form
        className="grid gap-3 md:grid-cols-5 md:items-end"
        onSubmit={async (e) => {
          e.preventDefault();
          setError(null);
          setCreated(null);
          const b = parseBudget(budget);
          if ("error" in b) return setError(b.error);
          setBusy(true);
          try {
            const user = await client.createUser({ name: name.trim(), description: description.trim() || null, team_id: teamId ? Number(teamId) : null, monthly_budget_usd: b.value });
            setCreated(user.name);
            setName("");
            setDescription("");
            setBudget("");
            onCreated();
          } catch (err) {
            setError(describeError(err));
          } finally {
            setBusy(false);
          }
        }}
      >
        <Field label="Name">
          <input name="name" className={inputClass} value={name} onChange={(e) => setName(e.target.value)} required />
        </Field>
        <Field label="Description">
          <input name="description" className={inputClass} value={description} onChange={(e) => setDescription(e.target.value)} />
        </Field>
        <Field label="Team">
          <select name="team" className={inputClass} value={teamId} onChange={(e) => setTeamId(e.target.value)}>
            <option value="">No team</option>
            {teams.map((t) => (
              <option key={t.id} value={t.id}>{t.name}</option>
            ))}
          </select>
        </Field>
        <Field label="Monthly budget (USD)">
          <input name="budget" className={inputClass} placeholder="Unlimited" value={budget} onChange={(e) => setBudget(e.target.value)} />
        </Field>
        <Button tone="primary" type="submit" disabled={busy}>Create user</Button>
      </form>
      {error && <p role="alert" className="mt-2 text-sm text-red-700">{error}</p>}
      {created && <p role="status" className="mt-2 text-sm text-emerald-700">Created {created}.</p>}
    </Panel>
  );
}
