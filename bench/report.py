"""Bench reports: `report.json`, `report.md`, PNG plots, and the committed `RESULTS.md`.

Everything here renders from the report dict alone (plots included, from the
down-sampled CDFs the scenarios keep), so a report can be re-rendered from its JSON.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

import orjson


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory_gb = None
    try:
        with open("/proc/meminfo") as f:
            memory_gb = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    versions: dict[str, str] = {}
    for name in ("aiohttp", "uvloop", "asyncpg", "msgspec"):
        try:
            module = __import__(name)
            versions[name] = str(getattr(module, "__version__", "?"))
        except ImportError:
            continue
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "python": platform.python_version(),
        "kernel": f"{platform.system()} {platform.release()}",
        "packages": versions,
    }


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if unit.startswith("×"):
            return f"{value:.2f}×"
        magnitude = abs(value)
        text = f"{value:,.0f}" if magnitude >= 1000 else f"{value:.3g}" if magnitude < 10 else f"{value:.1f}"
        return f"{text} {unit}".strip()
    return f"{value} {unit}".strip()


def _pass(value: bool | None) -> str:
    return "—" if value is None else ("✅ pass" if value else "❌ fail")


def _ratio_cell(row: dict[str, Any]) -> str:
    value, direct = row.get("value"), row.get("direct")
    unit = row.get("unit", "")
    if value is None or not direct or unit.startswith("×") or "added" in row["name"]:
        return "—"
    return f"{value / direct:.2f}×"


def targets_table(report: dict[str, Any]) -> list[str]:
    proxies: list[str] = []
    for scenario in report["scenarios"]:
        for row in scenario.get("measures", []):
            for name in list(row.get("values", {}))[1:]:
                if name not in proxies:
                    proxies.append(name)
    head = ["scenario", "measure", "target", "measured", "direct", "ratio", "pass", *proxies]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for scenario in report["scenarios"]:
        name = scenario["name"]
        if scenario["status"] != "ok":
            reason = str(scenario.get("reason", "")).splitlines()[0][:160]
            cells = [name, f"*{scenario['status']}*: {reason}", "", "", "", "", ""]
            lines.append("| " + " | ".join(cells + [""] * len(proxies)) + " |")
            continue
        for row in scenario["measures"]:
            unit = row.get("unit", "")
            cells = [
                name,
                row["name"],
                row.get("target") or "—",
                _fmt(row.get("value"), unit),
                _fmt(row.get("direct"), unit) if not unit.startswith("×") else "1.00×",
                _ratio_cell(row),
                _pass(row.get("pass")),
            ]
            values = row.get("values", {})
            cells += [_fmt(values.get(p), unit) for p in proxies]
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return lines


def _phase_lines(scenario: dict[str, Any]) -> list[str]:
    phases = scenario.get("phases", {})
    if any(isinstance(v, dict) and "requests" in v for v in phases.values()):
        phases = {"phases": phases}  # one group, keyed by endpoint
    lines: list[str] = []
    for group, by in phases.items():
        if not isinstance(by, dict) or not all(isinstance(v, dict) for v in by.values()):
            continue
        if not any("requests" in v for v in by.values()):
            continue
        gaps = any("gap_ms" in v for v in by.values())
        head = [
            "endpoint",
            "req",
            "req/s",
            "events/s",
            "p50 ms",
            "p99 ms",
            "TTFB p50 ms",
            "TTFB p99 ms",
            "errors",
            "loadgen cores",
            "gateway cores",
            "PostgreSQL cores",
            "fake cores",
            "other load cores",
        ]
        if gaps:
            head += ["gap p50 ms", "gap p99 ms", "gap max ms", "stalls"]
        lines += ["", f"**{group}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for endpoint, s in by.items():
            ttfb = s.get("first_event_ms") or s.get("ttfb_ms") or {}
            lat = s.get("latency_ms", {})
            fakes = [s.get(k) for k in ("fake_cpu_cores", "fake_bedrock_cpu_cores")]
            cells = [
                endpoint,
                str(s.get("requests")),
                _fmt(s.get("requests_per_s")),
                _fmt(s.get("events_per_s")),
                _fmt(lat.get("p50")),
                _fmt(lat.get("p99")),
                _fmt(ttfb.get("p50")),
                _fmt(ttfb.get("p99")),
                str(s.get("errors")),
                _fmt(s.get("loadgen_cpu_cores")),
                _fmt(s.get("gateway_cpu_cores")),
                _fmt(s.get("postgres_cpu_cores")),
                " + ".join(_fmt(f) for f in fakes if f) or "—",
                _fmt(s.get("other_cpu_cores")),
            ]
            if gaps:
                gap = s.get("gap_ms", {})
                cells += [_fmt(gap.get("p50")), _fmt(gap.get("p99")), _fmt(gap.get("max")), str(s.get("stalls", "—"))]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _summaries(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        if "requests" in node and "latency_ms" in node:
            return [node]
        return [s for value in node.values() for s in _summaries(value)]
    return []


def _other_load(report: dict[str, Any]) -> list[str]:
    others = [
        s["other_cpu_cores"]
        for scenario in report["scenarios"]
        for s in _summaries(scenario.get("phases", {}))
        if s.get("other_cpu_cores")
    ]
    if not others:
        return []
    return [
        f"Other load on the machine during the load phases (CPU not used by the bench, "
        f"its fakes or the gateway): mean {sum(others) / len(others):.2f} cores, max "
        f"{max(others):.2f} cores of {report['machine']['cores']}.",
        "",
    ]


def _pinning(report: dict[str, Any]) -> list[str]:
    pinning = report.get("options", {}).get("pinning")
    if not pinning:
        return ["CPU pinning: none (`--no-pin`, or one CPU): the gateway shares every core with the load side.", ""]
    return [
        f"CPU pinning in the throughput and bedrock scenarios: the load side (load generator, fakes) on "
        f"CPU {pinning['load_side']}, the gateway and its PostgreSQL on CPU {pinning['gateway']}; the "
        'other scenarios run unpinned (see bench/README.md, "CPU pinning").',
        "",
    ]


def markdown(report: dict[str, Any], plot_prefix: str = "", details: bool = True) -> str:
    m = report["machine"]
    lines = [
        "# ClaudeCodeProxy bench results",
        "",
        f"Run {report['started']} ({'quick' if report['quick'] else 'full'}), "
        f"`{report['command']}`, {report['seconds']:.0f} s.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; Python {m['python']}; "
        f"{m['kernel']}; " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()) + ".",
        "",
        "Every proxy number is measured in the same run as the same load sent to the fake "
        "upstream directly (`direct`); *added* values are proxy percentile − direct "
        "percentile, ratios are proxy ÷ direct. See bench/README.md.",
        "",
        *_pinning(report),
        *_other_load(report),
        "## Targets",
        "",
        *targets_table(report),
    ]
    plots = [(s["name"], p) for s in report["scenarios"] for p in s.get("plots", [])]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{name}]({plot_prefix}{p})" for name, p in plots]
    if details:
        for scenario in report["scenarios"]:
            lines += ["", f"## {scenario['name']} ({scenario['status']}, {scenario.get('seconds', 0):.0f} s)"]
            if scenario.get("reason"):
                lines += ["", str(scenario["reason"])]
            if scenario.get("params"):
                lines += ["", "Parameters: " + ", ".join(f"{k}={v}" for k, v in scenario["params"].items())]
            lines += _phase_lines(scenario)
    return "\n".join(lines) + "\n"


# --- plots ------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _cdf(ax: Any, series: dict[str, list[float]], title: str, xlabel: str) -> None:
    for name, points in series.items():
        if points:
            ys = [i / (len(points) - 1) * 100 for i in range(len(points))] if len(points) > 1 else [100.0]
            ax.plot(points, ys, label=name, linewidth=1.2)
    ax.set_xscale("log")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("percentile", fontsize=8)
    ax.grid(True, alpha=0.3)
    ax.tick_params(labelsize=7)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _bars(ax: Any, values: dict[str, float], title: str, ylabel: str) -> None:
    names = list(values)
    ax.bar(names, [values[n] or 0 for n in names], color=["#888", "#1f77b4", "#ff7f0e", "#2ca02c"][: len(names)])
    for i, n in enumerate(names):
        ax.annotate(f"{values[n] or 0:,.0f}", (i, values[n] or 0), ha="center", va="bottom", fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)


def plot(scenario: dict[str, Any], out: Path) -> list[str]:
    """Draw the scenario's plots into `out`; return their file names."""
    data = scenario.get("plot_data")
    if not data:
        return []
    plt = _pyplot()
    kind = data["kind"]
    name = f"{scenario['name']}.png"
    if kind == "overhead":
        fig, axes = plt.subplots(1, 2, figsize=(8, 3))
        _cdf(axes[0], data["cdf_ms"]["nonstream"], "non-streaming latency, c=1", "ms")
        _cdf(axes[1], data["cdf_ms"]["stream"], "streaming time to first event, c=1", "ms")
    elif kind == "throughput":
        fig, axes = plt.subplots(1, len(data["bars"]), figsize=(4 * len(data["bars"]), 3))
        axes = axes if len(data["bars"]) > 1 else [axes]
        for ax, (mode, values) in zip(axes, data["bars"].items(), strict=True):
            stream = mode.startswith("stream")
            _bars(ax, values, f"{scenario['name']} {mode}", "events/s" if stream else "requests/s")
    elif kind == "claude-code":
        fig, axes = plt.subplots(1, 2, figsize=(8, 3))
        _cdf(axes[0], data["gap_cdf_ms"], "inter-event gap", "ms")
        axes[0].axvline(data["stall_ms"], color="red", linestyle=":", linewidth=1)
        ax = axes[1]
        for proxy, series in data["rss"].items():
            if series:
                ax.plot([s[0] for s in series], [s[2] for s in series], label=f"{proxy} RSS MB")
                twin = ax.twinx()
                twin.plot(
                    [s[0] for s in series], [s[1] for s in series], color="#999", linewidth=0.8, label="open streams"
                )
                twin.set_ylabel("open streams", fontsize=8)
                twin.tick_params(labelsize=7)
        ax.set_title("gateway RSS while streams are open", fontsize=9)
        ax.set_xlabel("s", fontsize=8)
        ax.set_ylabel("MB", fontsize=8)
        ax.tick_params(labelsize=7)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left")
    else:
        return []
    fig.tight_layout()
    fig.savefig(out / name, dpi=72)
    plt.close(fig)
    return [name]


def write(report: dict[str, Any], out: Path) -> None:
    """report.json, the plots and report.md into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    for scenario in report["scenarios"]:
        try:
            scenario["plots"] = plot(scenario, out)
        except Exception as exc:  # a plot must not lose the numbers
            scenario["plots"] = []
            scenario.setdefault("notes", []).append(f"plot failed: {exc}")
    (out / "report.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    (out / "report.md").write_text(markdown(report))


def write_results_md(report: dict[str, Any], out: Path, path: Path) -> None:
    """The committed summary: RESULTS.md plus its plots under `results-latest/` beside it."""
    plots_dir = path.parent / "results-latest"
    if plots_dir.exists():
        shutil.rmtree(plots_dir)
    plots_dir.mkdir(parents=True)
    for scenario in report["scenarios"]:
        for name in scenario.get("plots", []):
            shutil.copy2(out / name, plots_dir / name)
    shutil.copy2(out / "report.json", plots_dir / "report.json")
    text = markdown(report, plot_prefix="results-latest/", details=True)
    text = text.replace(
        "# ClaudeCodeProxy bench results",
        "# ClaudeCodeProxy bench results\n\n"
        "Generated by `python -m bench all --results-md bench/RESULTS.md`; "
        "do not edit by hand.",
        1,
    )
    path.write_text(text)


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A short plain-text summary for the terminal."""
    lines: list[str] = []
    for scenario in report["scenarios"]:
        if scenario["status"] != "ok":
            lines.append(
                f"{scenario['name']}: {scenario['status']} — {str(scenario.get('reason', '')).splitlines()[0][:200]}"
            )
            continue
        lines.extend(
            f"{scenario['name']}: {row['name']}: {_fmt(row.get('value'), row.get('unit', ''))}"
            f"{'  target ' + row['target'] if row.get('target') else ''}"
            f"  {_pass(row.get('pass')) if row.get('target') else ''}".rstrip()
            for row in scenario["measures"]
        )
    return lines


if __name__ == "__main__":  # re-render: python -m bench.report results/DIR
    folder = Path(sys.argv[1])
    write(orjson.loads((folder / "report.json").read_bytes()), folder)
