"use client";
import { useState } from "react";
import { PRESETS, customRange, presetRange, type Preset, type Range } from "@/lib/range";
import { Button, inputClass } from "./ui";

export function useRange(initial: Exclude<Preset, "custom"> = "30d") {
  const [preset, setPreset] = useState<Preset>(initial);
  const [range, setRange] = useState<Range>(() => presetRange(initial));
  return { preset, range, setPreset, setRange };
}

export function RangePicker({ preset, onChange }: { preset: Preset; onChange: (preset: Preset, range: Range) => void }) {
  const [from, setFrom] = useState("");
  const [to, setTo] = useState("");
  const [error, setError] = useState<string | null>(null);
  return (
    <div className="flex flex-wrap items-center gap-2">
      <div className="flex overflow-hidden rounded border border-slate-300" role="group" aria-label="Range">
        {PRESETS.map((p) => (
          <button
            key={p.id}
            aria-pressed={preset === p.id}
            className={`px-3 py-1.5 text-sm ${preset === p.id ? "bg-indigo-600 text-white" : "bg-white text-slate-700 hover:bg-slate-50"}`}
            onClick={() => {
              setError(null);
              onChange(p.id, presetRange(p.id));
            }}
          >
            {p.label}
          </button>
        ))}
        <button
          aria-pressed={preset === "custom"}
          className={`px-3 py-1.5 text-sm ${preset === "custom" ? "bg-indigo-600 text-white" : "bg-white text-slate-700 hover:bg-slate-50"}`}
          onClick={() => onChange("custom", presetRange("30d"))}
        >
          Custom
        </button>
      </div>
      {preset === "custom" && (
        <form
          className="flex flex-wrap items-center gap-1"
          onSubmit={(e) => {
            e.preventDefault();
            const r = customRange(from, to);
            if (typeof r === "string") setError(r);
            else {
              setError(null);
              onChange("custom", r);
            }
          }}
        >
          <input aria-label="From" type="date" className={inputClass} value={from} onChange={(e) => setFrom(e.target.value)} />
          <span className="text-slate-500">–</span>
          <input aria-label="To" type="date" className={inputClass} value={to} onChange={(e) => setTo(e.target.value)} />
          <Button type="submit">Apply</Button>
          {error && <span className="text-sm text-red-700">{error}</span>}
        </form>
      )}
    </div>
  );
}
