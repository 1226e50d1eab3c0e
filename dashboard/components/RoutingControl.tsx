"use client";
// A team's, user's or key's routing strategy (issue 14): shown to everyone, a select for
// admins only. Null inherits from the next level up (key → user → team → deployment).

import { useState } from "react";
import { Badge, Button, inputClass } from "@/components/ui";
import { describeError, type Routing } from "@/lib/api";
import { parseRouting, ROUTINGS, routingLabel } from "@/lib/quota";
import { useSession } from "@/lib/session";

export function RoutingControl({ value, save, label = "Routing" }: { value: Routing | undefined; save: (r: Routing) => Promise<unknown>; label?: string }) {
  const { canWrite } = useSession();
  const [editing, setEditing] = useState(false);
  const [draft, setDraft] = useState<string>(value ?? "");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  return (
    <span className="inline-flex flex-wrap items-center gap-2" data-testid="routing">
      <span className="text-slate-500">{label}</span>
      {!editing ? (
        <>
          <Badge tone={value === "bedrock_only" ? "amber" : value === "plan_first" ? "indigo" : "slate"}>
            <span data-routing={value ?? ""}>{routingLabel(value)}</span>
          </Badge>
          {canWrite && (
            <Button type="button" className="px-2 py-0.5 text-xs" onClick={() => { setDraft(value ?? ""); setEditing(true); }}>
              Change
            </Button>
          )}
        </>
      ) : (
        <>
          <select aria-label={`${label} strategy`} className={inputClass} value={draft} onChange={(e) => setDraft(e.target.value)}>
            {ROUTINGS.map((r) => (
              <option key={r.label} value={r.value ?? ""}>{r.label}</option>
            ))}
          </select>
          <Button
            type="button"
            tone="primary"
            disabled={busy}
            onClick={async () => {
              setBusy(true);
              setError(null);
              try {
                await save(parseRouting(draft));
                setEditing(false);
              } catch (err) {
                setError(describeError(err));
              } finally {
                setBusy(false);
              }
            }}
          >
            Save routing
          </Button>
          <Button type="button" onClick={() => setEditing(false)} disabled={busy}>Cancel</Button>
        </>
      )}
      {error && <span role="alert" className="text-sm text-red-700">{error}</span>}
    </span>
  );
}
