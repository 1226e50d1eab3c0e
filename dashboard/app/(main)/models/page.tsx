"use client";
// The model map (issue 15): which Bedrock model serves each requested Anthropic name,
// shipped defaults and operator rows; set and delete for admins; and the requested names
// nothing maps, which Bedrock served with the default model.

import { useState } from "react";
import { Badge, Button, ConfirmButton, Field, inputClass, Loaded, PageTitle, Panel, Table, Td } from "@/components/ui";
import { describeError, type ModelMapping } from "@/lib/api";
import { formatTime, formatTokens } from "@/lib/format";
import { useSession } from "@/lib/session";
import { useLoad } from "@/lib/useLoad";

export default function ModelsPage() {
  const { client, canWrite } = useSession();
  const models = useLoad(() => client.listModels({ limit: 500 }), [client]);
  const unmapped = useLoad(() => client.unmappedModels({ limit: 100 }), [client]);
  const [editing, setEditing] = useState<ModelMapping | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  const saved = (text: string) => {
    setMessage(text);
    setEditing(null);
    models.reload();
    unmapped.reload();
  };
  return (
    <div className="flex flex-col gap-4">
      <PageTitle title="Models" />
      <p className="text-xs text-slate-500">
        Which Bedrock model serves a requested model name on fallback. A name matches with a date or <code>-latest</code> after it; an unknown
        name is served by the key’s or the deployment’s default model and listed below.
      </p>
      {message && <p role="status" className="text-sm text-emerald-700">{message}</p>}
      {canWrite && <MappingForm key={editing?.anthropic_name ?? "new"} initial={editing} onSaved={(m) => saved(`Mapped ${m.anthropic_name} to ${m.bedrock_model_id}.`)} />}
      <Panel title="Model map">
        <Loaded state={models} what="the model map" isEmpty={(m) => m.total === 0} empty="No mappings: every request on Bedrock uses the default model.">
          {({ items: rows }) => (
            <Table head={["Requested name", "Bedrock model id", "Source", "Updated", ""]}>
              {rows.map((m) => (
                <tr key={m.anthropic_name} data-testid="model-row" data-model={m.anthropic_name}>
                  <Td className="font-mono text-xs">{m.anthropic_name}</Td>
                  <Td className="font-mono text-xs">{m.bedrock_model_id}</Td>
                  <Td><Badge tone={m.source === "operator" ? "indigo" : "slate"}>{m.source === "operator" ? "operator" : "shipped default"}</Badge></Td>
                  <Td>{formatTime(m.updated_at)}</Td>
                  <Td>
                    {canWrite && (
                      <div className="flex gap-2">
                        <Button onClick={() => setEditing(m)}>Edit</Button>
                        <ConfirmButton
                          label="Delete"
                          question={
                            m.source === "operator"
                              ? `Delete the mapping of ${m.anthropic_name}? A shipped default of that name, if any, applies again.`
                              : `Hide the shipped mapping of ${m.anthropic_name}? Requests for it then use the default model.`
                          }
                          confirmLabel="Delete"
                          onConfirm={async () => {
                            await client.deleteModel(m.anthropic_name);
                            saved(`Deleted the mapping of ${m.anthropic_name}.`);
                          }}
                        />
                      </div>
                    )}
                  </Td>
                </tr>
              ))}
            </Table>
          )}
        </Loaded>
      </Panel>
      <Panel title="Unmapped names (served by the default model)">
        <Loaded state={unmapped} what="unmapped names" isEmpty={(u) => u.total === 0} empty="Every requested name on Bedrock was mapped.">
          {({ items: rows }) => (
            <Table head={["Requested name", "Served by", "Requests", "First seen", "Last seen"]}>
              {rows.map((u) => (
                <tr key={`${u.requested}/${u.served_by}`} data-testid="unmapped-row">
                  <Td className="font-mono text-xs">{u.requested || "(none)"}</Td>
                  <Td className="font-mono text-xs">{u.served_by}</Td>
                  <Td>{formatTokens(u.requests)}</Td>
                  <Td>{formatTime(u.first_seen)}</Td>
                  <Td>{formatTime(u.last_seen)}</Td>
                </tr>
              ))}
            </Table>
          )}
        </Loaded>
      </Panel>
    </div>
  );
}

function MappingForm({ initial, onSaved }: { initial: ModelMapping | null; onSaved: (m: ModelMapping) => void }) {
  const { client } = useSession();
  const [name, setName] = useState(initial?.anthropic_name ?? "");
  const [modelId, setModelId] = useState(initial?.bedrock_model_id ?? "");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  return (
    <Panel title={initial ? `Change ${initial.anthropic_name}` : "Map a model name"}>
      <form
        className="grid gap-3 md:grid-cols-3 md:items-end"
        onSubmit={async (e) => {
          e.preventDefault();
          setError(null);
          if (!name.trim() || !modelId.trim()) return setError("Both the requested name and the Bedrock model id are needed.");
          setBusy(true);
          try {
            onSaved(await client.setModel(name.trim(), modelId.trim()));
          } catch (err) {
            setError(describeError(err));
          } finally {
            setBusy(false);
          }
        }}
      >
        <Field label="Requested name">
          <input name="anthropic_name" className={inputClass} value={name} onChange={(e) => setName(e.target.value)} placeholder="claude-sonnet-4-5" readOnly={Boolean(initial)} required />
        </Field>
        <Field label="Bedrock model id">
          <input name="bedrock_model_id" className={inputClass} value={modelId} onChange={(e) => setModelId(e.target.value)} placeholder="us.anthropic.claude-sonnet-4-5-20250929-v1:0" required />
        </Field>
        <Button tone="primary" type="submit" disabled={busy}>Save mapping</Button>
      </form>
      {error && <p role="alert" className="mt-2 text-sm text-red-700">{error}</p>}
    </Panel>
  );
}
