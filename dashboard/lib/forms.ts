// Parsing what operators type into forms. The server validates again (and has the last
// word); these only turn text into the API's types and catch the obvious early.

/** "" → null (unlimited); "50" / "12.5" → "50" / "12.5"; anything else → an error message. */
export function parseBudget(text: string): { value: string | null } | { error: string } {
  const t = text.trim();
  if (t === "") return { value: null };
  if (!/^\d+(\.\d{1,2})?$/.test(t)) return { error: "A budget is an amount in USD such as 50 or 12.50." };
  if (Number(t) < 0.01) return { error: "A budget is at least 0.01 USD; leave it empty for unlimited." };
  return { value: t };
}

/** "80, 100" → [80, 100]. */
export function parseThresholds(text: string): { value: number[] } | { error: string } {
  const t = text.trim();
  if (t === "") return { value: [] };
  const parts = t.split(/[\s,]+/).filter(Boolean);
  const values = parts.map(Number);
  if (values.some((v) => !Number.isInteger(v) || v < 1 || v > 1000)) return { error: "Thresholds are whole percentages from 1 to 1000, such as 80, 100." };
  return { value: values };
}

/** One pattern per line or comma; empty → null (every model allowed). */
export function parseModels(text: string): string[] | null {
  const models = text
    .split(/[\n,]+/)
    .map((m) => m.trim())
    .filter(Boolean);
  return models.length ? models : null;
}
