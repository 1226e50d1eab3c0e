"use client";
// One user: profile and team, access keys (issue, rotate, revoke, Bedrock settings),
// budget, model allow-list, routing and plan quota (user and each key), recent sessions,
// usage per model, and deactivate / delete.
// The user id is a query parameter (`?id=`) because the export is static.

import Link from "next/link";
import { useRouter, useSearchParams } from "next/navigation";
import { Suspense, useState } from "react";
import { HorizontalBars, ThroughputChart } from "@/components/charts";
import { KeyQuota } from "@/components/Quota";
import { RangePicker } from "@/components/RangePicker";
import { RoutingControl } from "@/components/RoutingControl";
import { Sessions } from "@/components/Sessions";
import { Badge, Button, ConfirmButton, Field, inputClass, Loaded, Loading, PageTitle, Panel, Table, Td } from "@/components/ui";
import { describeError, type AccessKey, type Budget, type IssuedKey, type User } from "@/lib/api";
import { browserZone, formatMoney, formatTime, formatTokens } from "@/lib/format";
import { parseBudget, parseModels, parseThresholds } from "@/lib/forms";
import { periodRange, type Preset, type Range } from "@/lib/range";
import { series } from "@/lib/report";
import { useSession } from "@/lib/session";
import { useLoad } from "@/lib/useLoad";

export default function UserPageRoute() {
  return (
    <Suspense fallback={<Loading what="the user" />}>
      <UserPage />
    </Suspense>
  );
}

function UserPage() {
  const params = useSearchParams();
  const id = Number(params.get("id"));
  const { client } = useSession();
  const user = useLoad(() => (Number.isInteger(id) && id > 0 ? client.getUser(id) : Promise.reject(new Error("This link has no valid user id."))), [client, id]);
  return (
    <div className="flex flex-col gap-4">
      <div className="text-sm">
        <Link href="/users/" className="text-indigo-700 hover:underline">← Users</Link>
      </div>
      <Loaded state={user} what="the user">
        {(u) => <UserDetail user={u} reload={user.reload} />}
      </Loaded>
    </div>
  );
}

function UserDetail({ user, reload }: { user: User; reload: () => void }) {
  const { client, canWrite } = useSession();
  const router = useRouter();
  const active = user.status === "active";
  return (
    <>
      <PageTitle title={user.name}>
        <Badge tone={active ? "green" : "slate"}>{user.status}</Badge>
      </PageTitle>
      <div className="grid gap-4 xl:grid-cols-2">
        <Profile user={user} reload={reload} />
        <BudgetCard user={user} />
      </div>
      <Keys user={user} onChange={reload} />
      <AllowList user={user} reload={reload} />
      <Sessions userId={user.id} />
      <UserUsage user={user} />
      {canWrite && (
        <Panel title="Danger zone">
          <div className="flex flex-wrap gap-2">
            {active && (
              <ConfirmButton
                label="Deactivate user"
                question={`Deactivate ${user.name}? All their keys stop working within a second, and a deactivated user cannot be reactivated.`}
                confirmLabel="Deactivate"
                onConfirm={async () => {
                  await client.deactivateUser(user.id);
                  reload();
                }}
              />
            )}
            <ConfirmButton
              label="Delete user"
              question={`Delete ${user.name}? Their keys are revoked and the user disappears from lists; their usage stays in the reports.`}
              confirmLabel="Delete"
              onConfirm={async () => {
                await client.deleteUser(user.id);
                router.push("/users/");
              }}
            />
          </div>
        </Panel>
      )}
    </>
  );
}

function Profile({ user, reload }: { user: User; reload: () => void }) {
  const { client, canWrite } = useSession();
  const teams = useLoad(() => client.listTeams({ limit: 500 }), [client]);
  const [editing, setEditing] = useState(false);
  const [description, setDescription] = useState(user.description ?? "");
  const [teamId, setTeamId] = useState(user.team_id ? String(user.team_id) : "");
  const [error, setError] = useState<string | null>(null);
  return (
    <Panel title="Profile" actions={canWrite && !editing && user.status === "active" ? <Button onClick={() => setEditing(true)}>Edit</Button> : null}>
      {!editing ? (
        <dl className="grid grid-cols-[8rem_1fr] gap-y-1 text-sm">
          <dt className="text-slate-500">Description</dt>
          <dd>{user.description || "—"}</dd>
          <dt className="text-slate-500">Team</dt>
          <dd data-testid="user-team">{user.team ?? "No team"}</dd>
          <dt className="text-slate-500">Created</dt>
          <dd>{formatTime(user.created_at)}</dd>
          {user.deactivated_at && (
            <>
              <dt className="text-slate-500">Deactivated</dt>
              <dd>{formatTime(user.deactivated_at)}</dd>
            </>
          )}
          <dt className="text-slate-500">Active keys</dt>
          <dd>{user.active_keys}</dd>
          <dt className="text-slate-500">Routing</dt>
          <dd data-testid="user-routing">
            <RoutingControl label="" value={user.routing} save={async (routing) => { await client.updateUser(user.id, { routing }); reload(); }} />
          </dd>
        </dl>
      ) : (
        <form
          className="flex flex-col gap-3"
          onSubmit={async (e) => {
            e.preventDefault();
            setError(null);
            try {
              await client.updateUser(user.id, { description: description.trim() || null, team_id: teamId ? Number(teamId) : null });
              setEditing(false);
              reload();
            } catch (err) {
              setError(describeError(err));
            }
          }}
        >
          <Field label="Description">
            <input className={inputClass} value={description} onChange={(e) => setDescription(e.target.value)} />
          </Field>
          <Field label="Team">
            <select className={inputClass} value={teamId} onChange={(e) => setTeamId(e.target.value)}>
              <option value="">No team</option>
              {teams.data?.items.map((t) => (
                <option key={t.id} value={t.id}>{t.name}</option>
              ))}
            </select>
          </Field>
          {error && <p role="alert" className="text-sm text-red-700">{error}</p>}
          <div className="flex gap-2">
            <Button tone="primary" type="submit">Save</Button>
            <Button type="button" onClick={() => setEditing(false)}>Cancel</Button>
          </div>
        </form>
      )}
    </Panel>
  );
}

function BudgetCard({ user }: { user: User }) {
  const { client, canWrite } = useSession();
  const budget = useLoad(() => client.getBudget(user.id), [client, user.id]);
  const [editing, setEditing] = useState(false);
  return (
    <Panel title="Monthly Bedrock budget" actions={canWrite && !editing && budget.data ? <Button onClick={() => setEditing(true)}>Edit budget</Button> : null}>
      <Loaded state={budget} what="the budget">
        {(b) => (editing ? <BudgetEditor budget={b} userId={user.id} done={(changed) => { setEditing(false); if (changed) budget.reload(); }} /> : <BudgetView budget={b} />)}
      </Loaded>
    </Panel>
  );
}

function Progress({ spent, limit }: { spent: number; limit: number }) {
  const ratio = limit > 0 ? spent / limit : 0;
  const pct = Math.min(100, ratio * 100);
  const tone = ratio >= 1 ? "bg-red-500" : ratio >= 0.8 ? "bg-amber-500" : "bg-emerald-500";
  return (
    <div className="h-2.5 w-full overflow-hidden rounded bg-slate-100" role="progressbar" aria-valuenow={Math.round(ratio * 100)} aria-valuemin={0} aria-valuemax={100}>
      <div className={`h-full ${tone}`} style={{ width: `${pct}%` }} />
    </div>
  );
}

function BudgetView({ budget }: { budget: Budget }) {
  const spent = Number(budget.spent_usd);
  return (
    <div className="flex flex-col gap-2 text-sm" data-testid="budget">
      {budget.monthly_budget_usd === null ? (
        <p>
          <span className="text-lg font-semibold" data-testid="budget-limit">Unlimited</span> · {formatMoney(spent)} spent this month
        </p>
      ) : (
        <>
          <p>
            <span className="text-lg font-semibold">{formatMoney(spent)}</span> of <span data-testid="budget-limit">{formatMoney(budget.monthly_budget_usd)}</span> ·{" "}
            {formatMoney(budget.remaining_usd)} left
          </p>
          <Progress spent={spent} limit={Number(budget.monthly_budget_usd)} />
        </>
      )}
      <p className="text-xs text-slate-500">
        Alerts at {budget.alert_thresholds.length ? budget.alert_thresholds.map((t) => `${t}%`).join(", ") : "no threshold"}; resets {formatTime(budget.resets_at)}.
      </p>
      {budget.team && (
        <p className="text-xs text-slate-600">
          Team {budget.team.name}: {formatMoney(budget.team.spent_usd)} of {budget.team.monthly_budget_usd === null ? "unlimited" : formatMoney(budget.team.monthly_budget_usd)} (the tighter of the two wins).
        </p>
      )}
    </div>
  );
}

function BudgetEditor({ budget, userId, done }: { budget: Budget; userId: number; done: (changed: boolean) => void }) {
  const { client } = useSession();
  const [amount, setAmount] = useState(budget.monthly_budget_usd ?? "");
  const [thresholds, setThresholds] = useState(budget.alert_thresholds.join(", "));
  const [error, setError] = useState<string | null>(null);
  async function save(value: string | null) {
    const t = parseThresholds(thresholds);
    if ("error" in t) return setError(t.error);
    try {
      await client.setBudget(userId, { monthly_budget_usd: value, alert_thresholds: t.value });
      done(true);
    } catch (err) {
      setError(describeError(err));
    }
  }
  return (
    <form
      className="flex flex-col gap-3"
      onSubmit={(e) => {
        e.preventDefault();
        const b = parseBudget(amount);
        if ("error" in b) return setError(b.error);
        void save(b.value);
      }}
    >
      <Field label="Monthly budget (USD)" hint="Leave empty for unlimited">
        <input name="monthly_budget" className={inputClass} value={amount} onChange={(e) => setAmount(e.target.value)} placeholder="Unlimited" />
      </Field>
      <Field label="Alert thresholds (%)">
        <input name="thresholds" className={inputClass} value={thresholds} onChange={(e) => setThresholds(e.target.value)} />
      </Field>
      {error && <p role="alert" className="text-sm text-red-700">{error}</p>}
      <div className="flex flex-wrap gap-2">
        <Button tone="primary" type="submit">Save budget</Button>
        <Button type="button" onClick={() => void save(null)}>Unlimited</Button>
        <Button type="button" onClick={() => done(false)}>Cancel</Button>
      </div>
    </form>
  );
}

function AllowList({ user, reload }: { user: User; reload: () => void }) {
  const { client, canWrite } = useSession();
  const [text, setText] = useState((user.allowed_models ?? []).join("\n"));
  const [editing, setEditing] = useState(false);
  const [error, setError] = useState<string | null>(null);
  return (
    <Panel title="Model allow-list" actions={canWrite && !editing ? <Button onClick={() => setEditing(true)}>Edit models</Button> : null}>
      {!editing ? (
        user.allowed_models === null ? (
          <p className="text-sm text-slate-600">Every model is allowed{user.team ? ` (the team ${user.team} may still restrict them)` : ""}.</p>
        ) : (
          <ul className="flex flex-wrap gap-1">
            {user.allowed_models.map((m) => (
              <li key={m}><Badge tone="indigo">{m}</Badge></li>
            ))}
          </ul>
        )
      ) : (
        <form
          className="flex flex-col gap-2"
          onSubmit={async (e) => {
            e.preventDefault();
            setError(null);
            try {
              await client.updateUser(user.id, { allowed_models: parseModels(text) });
              setEditing(false);
              reload();
            } catch (err) {
              setError(describeError(err));
            }
          }}
        >
          <Field label="Patterns, one per line" hint="e.g. claude-sonnet-*; empty allows every model">
            <textarea className={`${inputClass} font-mono`} rows={4} value={text} onChange={(e) => setText(e.target.value)} />
          </Field>
          {error && <p role="alert" className="text-sm text-red-700">{error}</p>}
          <div className="flex gap-2">
            <Button tone="primary" type="submit">Save models</Button>
            <Button type="button" onClick={() => setEditing(false)}>Cancel</Button>
          </div>
        </form>
      )}
    </Panel>
  );
}

/** The raw key, shown once: it lives only in this component's state and is gone on "Done". */
function OneTimeKey({ issued, onDone }: { issued: IssuedKey; onDone: () => void }) {
  const [copied, setCopied] = useState(false);
  return (
    <div className="rounded border border-amber-300 bg-amber-50 p-3 text-sm" data-testid="one-time-key">
      <p className="font-semibold text-amber-900">Copy this key now. It is shown only once and never again.</p>
      <div className="mt-2 flex flex-wrap items-center gap-2">
        <code className="break-all rounded bg-white px-2 py-1 font-mono text-xs" data-testid="raw-key">{issued.raw_key}</code>
        <Button
          onClick={async () => {
            try {
              await navigator.clipboard.writeText(issued.raw_key);
              setCopied(true);
            } catch {
              setCopied(false);
            }
          }}
        >
          {copied ? "Copied" : "Copy"}
        </Button>
        <Button tone="primary" onClick={onDone}>Done</Button>
      </div>
    </div>
  );
}

function Keys({ user, onChange }: { user: User; onChange: () => void }) {
  const { client, canWrite } = useSession();
  // The list has no routing or quota: an active key's detail answer carries both.
  const keys = useLoad(async () => {
    const page = await client.listKeys(user.id, { limit: 100 });
    const items = await Promise.all(page.items.map((k) => (k.status === "active" ? client.getKey(k.id) : k)));
    return { ...page, items };
  }, [client, user.id]);
  const [issued, setIssued] = useState<IssuedKey | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [region, setRegion] = useState("");
  const [model, setModel] = useState("");
  const refresh = () => {
    keys.reload();
    onChange();
  };
  return (
    <Panel title="Access keys">
      {issued && <OneTimeKey issued={issued} onDone={() => setIssued(null)} />}
      {canWrite && user.status === "active" && (
        <form
          className="my-3 flex flex-wrap items-end gap-2"
          onSubmit={async (e) => {
            e.preventDefault();
            setError(null);
            try {
              const k = await client.issueKey(user.id, { bedrock_region: region.trim() || null, bedrock_model: model.trim() || null });
              setIssued(k);
              setRegion("");
              setModel("");
              refresh();
            } catch (err) {
              setError(describeError(err));
            }
          }}
        >
          <Field label="Bedrock region (optional)">
            <input className={inputClass} value={region} onChange={(e) => setRegion(e.target.value)} placeholder="default" />
          </Field>
          <Field label="Bedrock model (optional)">
            <input className={inputClass} value={model} onChange={(e) => setModel(e.target.value)} placeholder="default" />
          </Field>
          <Button tone="primary" type="submit">Issue key</Button>
        </form>
      )}
      {error && <p role="alert" className="mb-2 text-sm text-red-700">{error}</p>}
      <Loaded state={keys} what="keys" isEmpty={(p) => p.total === 0} empty="No keys yet.">
        {(page) => (
          <div className="flex flex-col gap-2">
            {page.items.map((k) => (
              <KeyRow key={k.id} k={k} onIssued={setIssued} onChange={refresh} />
            ))}
          </div>
        )}
      </Loaded>
    </Panel>
  );
}

function KeyRow({ k, onIssued, onChange }: { k: AccessKey; onIssued: (k: IssuedKey) => void; onChange: () => void }) {
  const { client, canWrite } = useSession();
  const [editing, setEditing] = useState<"bedrock" | "secret" | null>(null);
  const [region, setRegion] = useState(k.bedrock_region ?? "");
  const [model, setModel] = useState(k.bedrock_model ?? "");
  const [secret, setSecret] = useState("");
  const [error, setError] = useState<string | null>(null);
  const active = k.status === "active";
  const run = async (f: () => Promise<unknown>) => {
    setError(null);
    try {
      await f();
      setEditing(null);
      onChange();
    } catch (err) {
      setError(describeError(err));
    }
  };
  return (
    <div className="rounded border border-slate-200 p-3 text-sm" data-testid="key-row" data-key-id={k.id} data-status={k.status}>
      <div className="flex flex-wrap items-center gap-2">
        <code className="font-mono">{k.prefix}…</code>
        <Badge tone={active ? "green" : "slate"}>{k.status}</Badge>
        {k.expires_at && active && <Badge tone="amber">rotated · stops {formatTime(k.expires_at)}</Badge>}
        <span className="text-slate-500">Bedrock {k.bedrock_region ?? "default region"} · {k.bedrock_model ?? "default model"}</span>
        <Badge tone={k.bedrock_key_registered ? "indigo" : "slate"}>{k.bedrock_key_registered ? "Bedrock key registered" : "no Bedrock key"}</Badge>
        {k.rpm_limit !== null && <span className="text-slate-500">{k.rpm_limit} rpm</span>}
        <span className="text-xs text-slate-400">issued {formatTime(k.created_at)}</span>
      </div>
      {active && (
        <>
          <div className="mt-2 text-sm">
            <RoutingControl label="Routing" value={k.routing} save={async (routing) => { await client.updateKey(k.id, { routing }); onChange(); }} />
          </div>
          <KeyQuota state={k.quota} />
        </>
      )}
      {canWrite && active && (
        <div className="mt-2 flex flex-wrap gap-2">
          <ConfirmButton
            label="Rotate"
            tone="plain"
            question={`Rotate ${k.prefix}…? A new key is shown once; the old one keeps working for the grace period, then stops.`}
            confirmLabel="Rotate"
            onConfirm={async () => {
              const next = await client.rotateKey(k.id);
              onIssued(next);
              onChange();
            }}
          />
          <ConfirmButton
            label="Revoke"
            question={`Revoke ${k.prefix}…? It stops working on every gateway within a second.`}
            confirmLabel="Revoke"
            onConfirm={async () => {
              await client.revokeKey(k.id);
              onChange();
            }}
          />
          <Button onClick={() => setEditing(editing === "bedrock" ? null : "bedrock")}>Region / model</Button>
          <Button onClick={() => setEditing(editing === "secret" ? null : "secret")}>{k.bedrock_key_registered ? "Replace Bedrock key" : "Register Bedrock key"}</Button>
          {k.bedrock_key_registered && (
            <ConfirmButton label="Remove Bedrock key" question="Remove the Bedrock key of this access key? Fallback then uses the deployment's default, if any." confirmLabel="Remove" onConfirm={() => run(() => client.deleteBedrockKey(k.id))} />
          )}
        </div>
      )}
      {editing === "bedrock" && (
        <form className="mt-2 flex flex-wrap items-end gap-2" onSubmit={(e) => { e.preventDefault(); void run(() => client.updateKey(k.id, { bedrock_region: region.trim() || null, bedrock_model: model.trim() || null })); }}>
          <Field label="Region"><input className={inputClass} value={region} onChange={(e) => setRegion(e.target.value)} placeholder="default" /></Field>
          <Field label="Model"><input className={inputClass} value={model} onChange={(e) => setModel(e.target.value)} placeholder="default" /></Field>
          <Button tone="primary" type="submit">Save</Button>
        </form>
      )}
      {editing === "secret" && (
        <form
          className="mt-2 flex flex-wrap items-end gap-2"
          onSubmit={(e) => {
            e.preventDefault();
            const value = secret;
            setSecret(""); // not kept after sending
            void run(() => client.putBedrockKey(k.id, value));
          }}
        >
          <Field label="Bedrock API key" hint="Stored encrypted; only “registered” is ever shown.">
            <input type="password" autoComplete="off" className={inputClass} value={secret} onChange={(e) => setSecret(e.target.value)} required />
          </Field>
          <Button tone="primary" type="submit">Save Bedrock key</Button>
        </form>
      )}
      {error && <p role="alert" className="mt-2 text-sm text-red-700">{error}</p>}
    </div>
  );
}

const PERIODS: { id: "day" | "week" | "month"; label: string; count: number }[] = [
  { id: "day", label: "By day (30 days)", count: 30 },
  { id: "week", label: "By week (12 weeks)", count: 12 },
  { id: "month", label: "By month (12 months)", count: 12 },
];

function UserUsage({ user }: { user: User }) {
  const { client } = useSession();
  const [mode, setMode] = useState<"day" | "week" | "month" | "custom">("day");
  const [range, setRange] = useState<Range>(() => periodRange("day", 30));
  const [preset, setPreset] = useState<Preset>("custom");
  const report = useLoad(
    () => client.usage({ user: user.id, start: range.start.toISOString(), end: range.end.toISOString(), granularity: range.bucket }),
    [client, user.id, range.start.getTime(), range.end.getTime(), range.bucket],
  );
  return (
    <Panel title="Usage and cost">
      <div className="mb-3 flex flex-wrap items-center gap-2">
        {PERIODS.map((p) => (
          <Button key={p.id} tone={mode === p.id ? "primary" : "plain"} onClick={() => { setMode(p.id); setRange(periodRange(p.id, p.count)); }}>
            {p.label}
          </Button>
        ))}
        <Button tone={mode === "custom" ? "primary" : "plain"} onClick={() => setMode("custom")}>Custom</Button>
        {mode === "custom" && <RangePicker preset={preset} onChange={(p, r) => { setPreset(p); setRange(r); }} />}
      </div>
      <Loaded state={report} what="usage" isEmpty={(r) => r.totals.requests === 0} empty="No requests from this user in this range.">
        {(r) => (
          <div className="flex flex-col gap-3">
            <p className="text-xs text-slate-500">
              {r.granularity} buckets in the reporting zone {r.report_tz}; times in {browserZone()}. {formatTokens(r.totals.requests)} requests, {formatMoney(r.totals.cost_usd)} Bedrock cost.
            </p>
            <ThroughputChart data={series(r.buckets)} bucket={r.granularity} />
            <Table head={["Model", "Requests", "Input", "Output", "Cache write", "Cache read", "Cost"]}>
              {r.by_model.map((m) => (
                <tr key={m.model || "(none)"} data-testid="model-row">
                  <Td className="font-mono text-xs">{m.model || "(none)"}</Td>
                  <Td>{formatTokens(m.requests)}</Td>
                  <Td>{formatTokens(m.input_tokens)}</Td>
                  <Td>{formatTokens(m.output_tokens)}</Td>
                  <Td>{formatTokens(m.cache_creation_input_tokens)}</Td>
                  <Td>{formatTokens(m.cache_read_input_tokens)}</Td>
                  <Td>{formatMoney(m.cost_usd)}</Td>
                </tr>
              ))}
            </Table>
            {r.by_model.some((m) => Number(m.cost_usd) > 0) && (
              <HorizontalBars money valueLabel="Bedrock cost (USD)" data={r.by_model.filter((m) => Number(m.cost_usd) > 0).map((m) => ({ name: m.model || "(none)", value: Number(m.cost_usd) }))} />
            )}
          </div>
        )}
      </Loaded>
    </Panel>
  );
}

