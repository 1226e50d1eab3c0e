"use client";
// recharts wrappers with axes, units, legends and tooltips, sized by their container so
// they work from 390 px up. No entry animation: a chart shows its data at once (and
// screenshots and browser tests see the final picture).

import {
  Area,
  AreaChart,
  Bar,
  BarChart,
  CartesianGrid,
  ComposedChart,
  Legend,
  Line,
  LineChart,
  ResponsiveContainer,
  Tooltip,
  XAxis,
  YAxis,
} from "recharts";
import { formatBucket, formatCompact, formatMoney, formatMoneyAxis, formatTokens } from "@/lib/format";
import type { PlanValuePoint, SeriesPoint } from "@/lib/report";

const COLORS = ["#4f46e5", "#0ea5e9", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#64748b"];
export const color = (i: number) => COLORS[i % COLORS.length];

function Frame({ children, height = 260 }: { children: React.ReactElement; height?: number }) {
  return (
    <div style={{ width: "100%", height }}>
      <ResponsiveContainer width="100%" height="100%">
        {children}
      </ResponsiveContainer>
    </div>
  );
}

const axisTick = { fontSize: 11, fill: "#64748b" };

export function ThroughputChart({ data, bucket }: { data: SeriesPoint[]; bucket: string }) {
  return (
    <Frame>
      <ComposedChart data={data} margin={{ top: 8, right: 8, bottom: 0, left: 0 }}>
        <CartesianGrid strokeDasharray="3 3" stroke="#e2e8f0" />
        <XAxis dataKey="t" tickFormatter={(t: string) => formatBucket(t, bucket)} tick={axisTick} minTickGap={24} />
        <YAxis yAxisId="tokens" tickFormatter={(v: number) => formatCompact(v)} tick={axisTick} width={48} label={{ value: "tokens", angle: -90, position: "insideLeft", fontSize: 11, fill: "#64748b" }} />
        <YAxis yAxisId="requests" orientation="right" tickFormatter={(v: number) => formatCompact(v)} tick={axisTick} width={40} label={{ value: "requests", angle: 90, position: "insideRight", fontSize: 11, fill: "#64748b" }} />
        <Tooltip labelFormatter={(t) => formatBucket(String(t), bucket)} formatter={(v, name) => [formatTokens(Number(v)), String(name)]} />
        <Legend wrapperStyle={{ fontSize: 12 }} />
        <Area isAnimationActive={false} yAxisId="tokens" type="monotone" dataKey="input" name="Input tokens" stackId="t" stroke={color(0)} fill={color(0)} fillOpacity={0.3} />
        <Area isAnimationActive={false} yAxisId="tokens" type="monotone" dataKey="output" name="Output tokens" stackId="t" stroke={color(1)} fill={color(1)} fillOpacity={0.3} />
        <Line isAnimationActive={false} yAxisId="requests" type="monotone" dataKey="requests" name="Requests" stroke={color(2)} dot={false} strokeWidth={2} />
      </ComposedChart>
    </Frame>
  );
}

export function ProviderChart({ data, bucket }: { data: SeriesPoint[]; bucket: string }) {
  return (
    <Frame>
      <BarChart data={data} margin={{ top: 8, right: 8, bottom: 0, left: 0 }}>
        <CartesianGrid strokeDasharray="3 3" stroke="#e2e8f0" />
        <XAxis dataKey="t" tickFormatter={(t: string) => formatBucket(t, bucket)} tick={axisTick} minTickGap={24} />
        <YAxis tickFormatter={(v: number) => formatCompact(v)} tick={axisTick} width={48} label={{ value: "requests", angle: -90, position: "insideLeft", fontSize: 11, fill: "#64748b" }} />
        <Tooltip labelFormatter={(t) => formatBucket(String(t), bucket)} formatter={(v, name) => [formatTokens(Number(v)), String(name)]} />
        <Legend wrapperStyle={{ fontSize: 12 }} />
        <Bar isAnimationActive={false} dataKey="plan" name="Plan" stackId="p" fill={color(0)} />
        <Bar isAnimationActive={false} dataKey="bedrock" name="Bedrock" stackId="p" fill={color(2)} />
      </BarChart>
    </Frame>
  );
}

export function CumulativeChart({ data, bucket }: { data: SeriesPoint[]; bucket: string }) {
  return (
    <Frame>
      <LineChart data={data} margin={{ top: 8, right: 8, bottom: 0, left: 0 }}>
        <CartesianGrid strokeDasharray="3 3" stroke="#e2e8f0" />
        <XAxis dataKey="t" tickFormatter={(t: string) => formatBucket(t, bucket)} tick={axisTick} minTickGap={24} />
        <YAxis yAxisId="tokens" tickFormatter={(v: number) => formatCompact(v)} tick={axisTick} width={48} label={{ value: "tokens", angle: -90, position: "insideLeft", fontSize: 11, fill: "#64748b" }} />
        <YAxis yAxisId="cost" orientation="right" tickFormatter={formatMoneyAxis} tick={axisTick} width={48} label={{ value: "USD", angle: 90, position: "insideRight", fontSize: 11, fill: "#64748b" }} />
        <Tooltip
          labelFormatter={(t) => formatBucket(String(t), bucket)}
          formatter={(v, name) => [name === "Cost (USD)" ? formatMoney(Number(v)) : formatTokens(Number(v)), String(name)]}
        />
        <Legend wrapperStyle={{ fontSize: 12 }} />
        <Line isAnimationActive={false} yAxisId="tokens" type="monotone" dataKey="cumulativeTokens" name="Tokens" stroke={color(0)} dot={false} strokeWidth={2} />
        <Line isAnimationActive={false} yAxisId="cost" type="monotone" dataKey="cumulativeCost" name="Cost (USD)" stroke={color(3)} dot={false} strokeWidth={2} />
      </LineChart>
    </Frame>
  );
}

export function StackedCostChart({ rows, models, bucket }: { rows: Record<string, number | string>[]; models: string[]; bucket: string }) {
  return (
    <Frame>
      <AreaChart data={rows} margin={{ top: 8, right: 8, bottom: 0, left: 0 }}>
        <CartesianGrid strokeDasharray="3 3" stroke="#e2e8f0" />
        <XAxis dataKey="t" tickFormatter={(t: string) => formatBucket(t, bucket)} tick={axisTick} minTickGap={24} />
        <YAxis tickFormatter={formatMoneyAxis} tick={axisTick} width={48} label={{ value: "USD", angle: -90, position: "insideLeft", fontSize: 11, fill: "#64748b" }} />
        <Tooltip labelFormatter={(t) => formatBucket(String(t), bucket)} formatter={(v, name) => [formatMoney(Number(v)), String(name)]} />
        <Legend wrapperStyle={{ fontSize: 12 }} />
        {models.map((m, i) => (
          <Area isAnimationActive={false} key={m} type="monotone" dataKey={m} name={m} stackId="c" stroke={color(i)} fill={color(i)} fillOpacity={0.5} />
        ))}
      </AreaChart>
    </Frame>
  );
}

export function HorizontalBars({ data, valueLabel, money = false }: { data: { name: string; value: number }[]; valueLabel: string; money?: boolean }) {
  // Room for the longest label (model names are long), within reason on a phone.
  const labelWidth = Math.min(190, Math.max(60, ...data.map((d) => d.name.length * 6.2)));
  return (
    <Frame height={Math.max(120, data.length * 34 + 40)}>
      <BarChart data={data} layout="vertical" margin={{ top: 4, right: 12, bottom: 0, left: 0 }}>
        <CartesianGrid strokeDasharray="3 3" stroke="#e2e8f0" />
        <XAxis type="number" tickFormatter={(v: number) => (money ? formatMoneyAxis(v) : formatCompact(v))} tick={axisTick} label={{ value: valueLabel, position: "insideBottomRight", offset: -2, fontSize: 11, fill: "#64748b" }} />
        <YAxis type="category" dataKey="name" tick={{ ...axisTick, fontSize: 10 }} width={labelWidth} />
        <Tooltip formatter={(v) => [money ? formatMoney(Number(v)) : formatTokens(Number(v)), valueLabel]} />
        <Legend wrapperStyle={{ fontSize: 12 }} />
        <Bar isAnimationActive={false} dataKey="value" name={valueLabel} fill={color(0)} />
      </BarChart>
    </Frame>
  );
}

export function PlanValueChart({ data, bucket }: { data: PlanValuePoint[]; bucket: string }) {
  return (
    <Frame>
      <BarChart data={data} margin={{ top: 8, right: 8, bottom: 0, left: 0 }}>
        <CartesianGrid strokeDasharray="3 3" stroke="#e2e8f0" />
        <XAxis dataKey="t" tickFormatter={(t: string) => formatBucket(t, bucket)} tick={axisTick} minTickGap={24} />
        <YAxis tickFormatter={formatMoneyAxis} tick={axisTick} width={48} label={{ value: "USD", angle: -90, position: "insideLeft", fontSize: 11, fill: "#64748b" }} />
        <Tooltip labelFormatter={(t) => formatBucket(String(t), bucket)} formatter={(v, name) => [formatMoney(Number(v)), String(name)]} />
        <Legend wrapperStyle={{ fontSize: 12 }} />
        <Bar isAnimationActive={false} dataKey="planValue" name="Plan value (list price)" fill={color(3)} />
        <Bar isAnimationActive={false} dataKey="bedrockSpend" name="Bedrock spend" fill={color(2)} />
      </BarChart>
    </Frame>
  );
}
