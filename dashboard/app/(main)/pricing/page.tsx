"use client";
import { useState } from "react";
import { Button, Empty, ErrorState, Field, inputClass, Loading, PageTitle, Pager, Panel, Table, Td } from "@/components/ui";
import { describeError, type Price } from "@/lib/api";
import { formatMoney } from "@/lib/format";
import { useSession } from "@/lib/session";
import { useLoad } from "@/lib/useLoad";

const LIMIT = 50;
const FIELDS = [
  ["input", "Input"],
  ["output", "Output"],
  ["cache_write_5m", "Cache write 5 m"],
  ["cache_write_1h", "Cache write 1 h"],
  ["cache_read", "Cache read"],
] as const;

export default function PricingPage() {
  const { client, canWrite } = useSession();
  const [offset, setOffset] = useState(0);
  const prices = useLoad(() => client.listPrices({ limit: LIMIT, offset }), [client, offset]);
  const [editing, setEditing] = useState<Price | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  return (
    <div className="flex flex-col gap-4">
      <PageTitle title="Pricing">
        {canWrite && (
          <Button
            onClick={async () => {
              try {
                const r = await client.reloadPrices();
                setMessage(`Reloaded: ${r.rows} price rows in force.`);
                prices.reload();
              } catch (err) {
                setMessage(describeError(err));
              }
            }}
          >
            Reload prices
          </Button>
        )}
      </PageTitle>
      {message && <p role="status" className="text-sm text-slate-600">{message}</p>}
      {canWrite && <PriceForm key={editing ? `${editing.model}/${editing.region}/${editing.effective_date}` : "new"} initial={editing} onSaved={() => { setEditing(null); prices.reload(); }} />}
      <Panel title="USD per million tokens">
        {prices.error ? (
          <ErrorState error={prices.error} what="prices" retry={prices.reload} />
        ) : !prices.data ? (
          <Loading what="prices" />
        ) : prices.data.total === 0 ? (
          <Empty>No prices. Bedrock requests are recorded at zero cost until a price exists.</Empty>
        ) : (
          <>
            <Table head={["Model", "Region", "From", ...FIELDS.map((f) => f[1]), ""]}>
              {prices.data.items.map((p) => (
                <tr key={`${p.model}/${p.region}/${p.effective_date}`} data-testid="price-row">
                  <Td className="font-mono text-xs">{p.model}</Td>
                  <Td>{p.region}</Td>
                  <Td>{p.effective_date}</Td>
                  {FIELDS.map(([k]) => <Td key={k}>{formatMoney(p[k])}</Td>)}
                  <Td>{canWrite && <Button onClick={() => setEditing(p)}>Edit</Button>}</Td>
                </tr>
              ))}
            </Table>
            <Pager total={prices.data.total} limit={LIMIT} offset={offset} onChange={setOffset} />
          </>
        )}
      </Panel>
    </div>
  );
}

function PriceForm({ initial, onSaved }: { initial: Price | null; onSaved: () => void }) {
  const { client } = useSession();
  const [values, setValues] = useState<Record<string, string>>(() => ({
    model: initial?.model ?? "",
    region: initial?.region ?? "*",
    effective_date: initial ? initial.effective_date : new Date().toISOString().slice(0, 10),
    input: initial?.input ?? "",
    output: initial?.output ?? "",
    cache_write_5m: initial?.cache_write_5m ?? "",
    cache_write_1h: initial?.cache_write_1h ?? "",
    cache_read: initial?.cache_read ?? "",
  }));
  const [error, setError] = useState<string | null>(null);
  const set = (k: string) => (e: React.ChangeEvent<HTMLInputElement>) => setValues({ ...values, [k]: e.target.value });
  return (
    <Panel title={initial ? `Edit ${initial.model}` : "Add or change a price"}>
      <form
        className="grid grid-cols-2 gap-3 md:grid-cols-4 xl:grid-cols-8 md:items-end"
        onSubmit={async (e) => {
          e.preventDefault();
          setError(null);
          try {
            await client.upsertPrice({
              model: values.model.trim(),
              region: values.region.trim() || "*",
              effective_date: values.effective_date,
              input: values.input,
              output: values.output,
              cache_write_5m: values.cache_write_5m,
              cache_write_1h: values.cache_write_1h,
              cache_read: values.cache_read,
            });
            onSaved();
          } catch (err) {
            setError(describeError(err));
          }
        }}
      >
        <Field label="Model"><input className={inputClass} value={values.model} onChange={set("model")} required /></Field>
        <Field label="Region"><input className={inputClass} value={values.region} onChange={set("region")} /></Field>
        <Field label="Effective"><input type="date" className={inputClass} value={values.effective_date} onChange={set("effective_date")} /></Field>
        {FIELDS.map(([k, label]) => (
          <Field key={k} label={label}><input inputMode="decimal" className={inputClass} value={values[k]} onChange={set(k)} required /></Field>
        ))}
        <Button tone="primary" type="submit">Save price</Button>
        {error && <p role="alert" className="col-span-2 text-sm text-red-700 md:col-span-4">{error}</p>}
      </form>
    </Panel>
  );
}
