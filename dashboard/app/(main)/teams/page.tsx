"use client";
import Link from "next/link";
import { useState } from "react";
import { RoutingControl } from "@/components/RoutingControl";
import { Button, ConfirmButton, Empty, ErrorState, Field, inputClass, Loaded, Loading, PageTitle, Pager, Panel, Table, Td } from "@/components/ui";
import { describeError, type Team } from "@/lib/api";
import { formatMoney } from "@/lib/format";
import { parseBudget, parseModels } from "@/lib/forms";
import { useSession } from "@/lib/session";
import { useLoad } from "@/lib/useLoad";

const LIMIT = 25;

export default function TeamsPage() {
  const { client, canWrite } = useSession();
  const [offset, setOffset] = useState(0);
  // The list has no routing: each team's detail answer carries it (a page is 25 teams).
  const teams = useLoad(async () => {
    const page = await client.listTeams({ limit: LIMIT, offset });
    return { ...page, items: await Promise.all(page.items.map((t) => client.getTeam(t.id))) };
  }, [client, offset]);
  const [open, setOpen] = useState<number | null>(null);
  return (
    <div className="flex flex-col gap-4">
      <PageTitle title="Teams" />
      {canWrite && <TeamForm onSaved={teams.reload} />}
      <Panel>
        {teams.error ? (
          <ErrorState error={teams.error} what="teams" retry={teams.reload} />
        ) : !teams.data ? (
          <Loading what="teams" />
        ) : teams.data.total === 0 ? (
          <Empty>No teams yet.{canWrite ? " Create one above, then put users in it from their page." : ""}</Empty>
        ) : (
          <>
            <Table head={["Team", "Monthly budget", "Alerts", "Models", "Routing", "Members", ""]}>
              {teams.data.items.map((t) => (
                <TeamRow key={t.id} team={t} open={open === t.id} toggle={() => setOpen(open === t.id ? null : t.id)} onChange={teams.reload} />
              ))}
            </Table>
            <Pager total={teams.data.total} limit={LIMIT} offset={offset} onChange={setOffset} />
          </>
        )}
      </Panel>
    </div>
  );
}

function TeamRow({ team, open, toggle, onChange }: { team: Team; open: boolean; toggle: () => void; onChange: () => void }) {
  const { client, canWrite } = useSession();
  const [editing, setEditing] = useState(false);
  return (
    <>
      <tr data-testid="team-row">
        <Td className="font-medium">{team.name}</Td>
        <Td>{team.monthly_budget_usd === null ? "Unlimited" : formatMoney(team.monthly_budget_usd)}</Td>
        <Td>{team.alert_thresholds.map((x) => `${x}%`).join(", ") || "—"}</Td>
        <Td className="font-mono text-xs">{team.allowed_models?.join(", ") ?? "all"}</Td>
        <Td>
          <RoutingControl label="" value={team.routing} save={async (routing) => { await client.updateTeam(team.id, { routing }); onChange(); }} />
        </Td>
        <Td>
          <button className="text-indigo-700 hover:underline" onClick={toggle}>
            {team.members} {open ? "▾" : "▸"}
          </button>
        </Td>
        <Td>
          {canWrite && (
            <div className="flex gap-2">
              <Button onClick={() => setEditing(!editing)}>Edit</Button>
              <ConfirmButton label="Delete" question={`Delete the team ${team.name}? Its members stay, without a team.`} confirmLabel="Delete" onConfirm={async () => { await client.deleteTeam(team.id); onChange(); }} />
            </div>
          )}
        </Td>
      </tr>
      {open && (
        <tr>
          <td colSpan={7} className="bg-slate-50 px-2 py-2">
            <Members teamId={team.id} />
          </td>
        </tr>
      )}
      {editing && (
        <tr>
          <td colSpan={7} className="px-2 py-2">
            <TeamForm team={team} onSaved={() => { setEditing(false); onChange(); }} />
          </td>
        </tr>
      )}
    </>
  );
}

function Members({ teamId }: { teamId: number }) {
  const { client } = useSession();
  const users = useLoad(() => client.listUsers({ team: teamId, limit: 200 }), [client, teamId]);
  return (
    <Loaded state={users} what="members" isEmpty={(p) => p.total === 0} empty="No members.">
      {(p) => (
        <ul className="flex flex-wrap gap-x-3 gap-y-1 text-sm">
          {p.items.map((u) => (
            <li key={u.id}>
              <Link className="text-indigo-700 hover:underline" href={`/users/view/?id=${u.id}`}>{u.name}</Link>
            </li>
          ))}
        </ul>
      )}
    </Loaded>
  );
}

function TeamForm({ team, onSaved }: { team?: Team; onSaved: () => void }) {
  const { client } = useSession();
  const [name, setName] = useState(team?.name ?? "");
  const [budget, setBudget] = useState(team?.monthly_budget_usd ?? "");
  const [models, setModels] = useState(team?.allowed_models?.join(", ") ?? "");
  const [error, setError] = useState<string | null>(null);
  const form = (
    <form
      className="grid gap-3 md:grid-cols-4 md:items-end"
      onSubmit={async (e) => {
        e.preventDefault();
        setError(null);
        const b = parseBudget(budget);
        if ("error" in b) return setError(b.error);
        const body = { name: name.trim(), monthly_budget_usd: b.value, allowed_models: parseModels(models) };
        try {
          if (team) await client.updateTeam(team.id, body);
          else await client.createTeam(body);
          if (!team) {
            setName("");
            setBudget("");
            setModels("");
          }
          onSaved();
        } catch (err) {
          setError(describeError(err));
        }
      }}
    >
      <Field label="Name"><input className={inputClass} value={name} onChange={(e) => setName(e.target.value)} required /></Field>
      <Field label="Monthly budget (USD)"><input className={inputClass} value={budget} onChange={(e) => setBudget(e.target.value)} placeholder="Unlimited" /></Field>
      <Field label="Allowed models"><input className={inputClass} value={models} onChange={(e) => setModels(e.target.value)} placeholder="all, or claude-sonnet-*, …" /></Field>
      <Button tone="primary" type="submit">{team ? "Save team" : "Create team"}</Button>
      {error && <p role="alert" className="text-sm text-red-700 md:col-span-4">{error}</p>}
    </form>
  );
  return team ? form : <Panel title="Create a team">{form}</Panel>;
}
