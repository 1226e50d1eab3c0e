"""`python -m bench SCENARIO [options]` (also `ccproxy bench …`): run bench scenarios.

Starts what it needs (fake upstream, a gateway on the embedded PostgreSQL), runs the
scenarios, stops everything it started, and writes report.json, report.md and plots.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from bench import loadgen, report, scenarios


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure the gateway against the fake upstream reached directly, "
        "in the same run. See bench/README.md.",
    )
    parser.add_argument("scenario", choices=[*scenarios.SCENARIOS, "all"])
    parser.add_argument("--quick", action="store_true", help="a few seconds per scenario (CI): proves the suite works")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results/<timestamp>/)")
    parser.add_argument(
        "--target", metavar="URL", help="a running gateway base, e.g. http://host:port/ak/KEY (instead of starting one)"
    )
    parser.add_argument("--target-pid", type=int, metavar="PID", help="the --target gateway's pid, for its CPU and RSS")
    parser.add_argument("--direct", metavar="URL", help="a running fake upstream for the baseline (default: start one)")
    parser.add_argument(
        "--compare",
        metavar="URL",
        action="append",
        default=[],
        help="another proxy base URL measured in the same run (repeatable)",
    )
    parser.add_argument("--procs", type=int, default=1, help="load-generator worker processes (default 1)")
    parser.add_argument(
        "--fake-mode",
        choices=["fast", "aiohttp"],
        default="fast",
        help="how the fake upstream serves (default: fast, raw asyncio); throughput judges its "
        "ratios against the aiohttp one and measures the fast one beside it",
    )
    parser.add_argument(
        "--gateway-env",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="extra environment for the started gateway, e.g. CCPROXY_WORKERS=2 (repeatable)",
    )
    parser.add_argument("--duration", type=float, help="seconds per load phase (override)")
    parser.add_argument("--concurrency", type=int, help="throughput concurrency (override)")
    parser.add_argument("--streams", type=int, help="claude-code open streams (override)")
    parser.add_argument(
        "--results-md",
        type=Path,
        metavar="PATH",
        help="also write this RESULTS.md, plots under results-latest/ beside it",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a target is missed (default: only on failures)"
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the load side to CPU 0 and the started gateway to the others (see bench/README.md)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no per-second lines")
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    out = args.out or (scenarios.REPO / "bench" / "results" / started.strftime("%Y%m%d-%H%M%S"))
    gateway_env = {}
    for item in args.gateway_env:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--gateway-env {item!r}: expected NAME=VALUE")
        gateway_env[name] = value
    options = scenarios.Options(
        quick=args.quick,
        out=out,
        target=args.target,
        target_pid=args.target_pid,
        direct=args.direct,
        compare=list(args.compare),
        procs=max(1, args.procs),
        fake_mode=args.fake_mode,
        gateway_env=gateway_env,
        duration=args.duration,
        concurrency=args.concurrency,
        streams=args.streams,
        progress=not args.no_progress,
        pinning=None if args.no_pin else scenarios.pin_cpus(),
    )
    names = list(scenarios.SCENARIOS) if args.scenario == "all" else [args.scenario]
    # 1,000 streams are 2-3 sockets each here and in the processes we start (they inherit)
    loadgen.raise_nofile(1 << 20)
    signal.signal(signal.SIGTERM, _interrupt)
    command = "python -m bench " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    t0 = time.monotonic()
    results: list[dict[str, object]] = []
    interrupted = False
    with scenarios.stack_for(options) as stack:
        try:
            for name in names:
                results.append(scenarios.run_scenario(name, stack))  # noqa: PERF401 - ^C keeps the done ones
        except KeyboardInterrupt:
            interrupted = True
            scenarios.log("interrupted: stopping what the bench started")
        startup = scenarios.startup_measures(stack)
    if startup is not None:
        startup.update(name="startup", status="ok", seconds=0.0)
        results.insert(0, startup)
    data = {
        "started": started.isoformat(timespec="seconds"),
        "command": command,
        "quick": args.quick,
        "seconds": time.monotonic() - t0,
        "interrupted": interrupted,
        "machine": report.machine(),
        "options": {
            "procs": options.procs,
            "fake_mode": options.fake_mode,
            "pinning": None
            if options.pinning is None
            else {"load_side": sorted(options.pinning[0]), "gateway": sorted(options.pinning[1])},
            "target": options.target,
            "compare": options.compare,
            "gateway_env": gateway_env,
        },
        "scenarios": results,
    }
    report.write(data, out)
    if args.results_md:
        report.write_results_md(data, out, args.results_md)
    for line in report.summary_lines(data):
        print(line)
    print(f"report: {out / 'report.md'}")
    if interrupted:
        return 130
    if any(r["status"] == "failed" for r in results):
        return 1
    if args.strict and any(row.get("pass") is False for r in results for row in r.get("measures", [])):  # type: ignore[attr-defined]
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
