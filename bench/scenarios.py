"""The bench scenarios and the processes they need (fake upstreams, a gateway).

Every scenario runs the same load against the fake upstream reached directly and through
each proxy in the same run, and reports the proxy against that baseline. A scenario
returns a plain dict (`ScenarioResult`) that `bench.report` renders.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from bench import loadgen
from bench.loadgen import Endpoint, LoadResult, LoadSpec

REPO = Path(__file__).resolve().parent.parent
MODEL = "claude-sonnet-4-5-20250929"
PLAN_CREDENTIAL = "sk-ant-bench"
BEDROCK_PLAN_CREDENTIAL = "sk-ant-bench-bedrock"  # its own plan credential: its own circuit
FAKE_BEDROCK_API_KEY = "fake-bedrock-api-key"  # what bench/fake_bedrock.py accepts
SCENARIOS = ("overhead", "throughput", "claude-code", "bedrock", "usage-writer", "instructions")
# The throughput ratios are judged against the aiohttp-served fake, an upstream built like
# the gateway; the raw-asyncio fake answers for a tenth of the CPU and is reported beside
# it as the stricter baseline (bench/README.md, "Baseline and ratios").
REFERENCE_FAKE = "aiohttp"
STRICT_FAKE = "fast"

# The targets of issue 5 (full run, this 2-core machine, one gateway process).
TARGETS: dict[str, tuple[str, float, str]] = {
    # key: (op, limit, unit)
    "added_latency_p50": ("<=", 0.5, "ms"),
    "added_latency_p99": ("<=", 2.0, "ms"),
    "added_ttfb_p50": ("<=", 0.5, "ms"),
    "nonstream_rps_ratio": (">=", 0.5, "× direct"),
    "stream_eps_ratio": (">=", 0.85, "× direct"),
    "cpu_per_request": ("<=", 250.0, "µs"),
    "cpu_per_event": ("<=", 5.0, "µs"),
    "bedrock_cpu_per_event": ("<=", 20.0, "µs"),
    "stalls": ("<=", 0.0, "stalls"),
    "rss_per_stream": ("<=", 40.0, "KB"),
    "usage_events_per_s": (">=", 50_000.0, "events/s"),
    "idle_rss": ("<=", 60.0, "MB"),
    "errors": ("<=", 0.0, "errors"),
}


class Skip(Exception):
    """A scenario cannot run here yet; the message says why."""


@dataclasses.dataclass
class Options:
    quick: bool = False
    out: Path = Path()
    target: str | None = None
    target_pid: int | None = None
    direct: str | None = None
    compare: list[str] = dataclasses.field(default_factory=list)
    procs: int = 1
    fake_mode: str = "fast"
    # (load side, gateway) CPU sets, or None: see `pin_cpus`
    pinning: tuple[frozenset[int], frozenset[int]] | None = None
    gateway_env: dict[str, str] = dataclasses.field(default_factory=dict)
    duration: float | None = None
    concurrency: int | None = None
    streams: int | None = None
    progress: bool = True


def pin_cpus() -> tuple[frozenset[int], frozenset[int]] | None:
    """The CPU sets for `Stack.pinned()`: the first CPU for the load side, the others for
    the gateway. None on a single-CPU machine."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return frozenset(cpus[:1]), frozenset(cpus[1:])


def _set_affinity(pids: list[int], cpus: frozenset[int]) -> None:
    for pid in pids:  # every thread: the affinity of a pid is its main thread's only
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(tid), cpus)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- statistics -------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank-with-interpolation percentile (q in 0..100); None when empty."""
    if not values:
        return None
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def dist(values: list[float], scale: float = 1000.0) -> dict[str, float | None]:
    """p50/p90/p99/max of seconds, in ms (scale)."""
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None, "n": 0}
    data = sorted(values)

    def at(q: float) -> float:
        pos = (len(data) - 1) * q / 100
        low = int(pos)
        high = min(low + 1, len(data) - 1)
        return (data[low] + (data[high] - data[low]) * (pos - low)) * scale

    return {"p50": at(50), "p90": at(90), "p99": at(99), "max": data[-1] * scale, "n": len(data)}


def cdf_points(values: list[float], points: int = 120, scale: float = 1000.0) -> list[float]:
    """`points` quantiles (0..100 %) of the values, scaled: enough to draw a CDF."""
    if not values:
        return []
    data = sorted(values)
    last = len(data) - 1
    return [data[round(last * i / (points - 1))] * scale for i in range(points)]


# --- measures ---------------------------------------------------------------------------


def measure(
    name: str,
    key: str | None,
    values: dict[str, float | None],
    unit: str = "",
    direct: float | None = None,
    ratio_of: str | None = None,
) -> dict[str, Any]:
    """One row of the targets table. `values` maps proxy name → measured value; the first
    proxy is the one the target is judged on. `key` names a TARGETS entry (or None: info)."""
    proxy = next(iter(values), None)
    value = values.get(proxy) if proxy else None
    row: dict[str, Any] = {
        "name": name,
        "unit": unit,
        "values": values,
        "value": value,
        "direct": direct,
        "target": None,
        "pass": None,
    }
    if ratio_of is not None:
        row["ratio_of"] = ratio_of
    if key is not None:
        op, limit, target_unit = TARGETS[key]
        row["target"] = f"{'≤' if op == '<=' else '≥'} {limit:g} {target_unit}"
        row["unit"] = unit or target_unit
        if value is not None:
            row["pass"] = value <= limit if op == "<=" else value >= limit
    return row


def phase_summary(result: LoadResult, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "requests": result.requests,
        "errors": result.errors,
        "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
        "window_s": round(result.window, 3),
        "requests_per_s": result.rps,
        "events": result.events,
        "events_per_s": result.eps,
        "latency_ms": dist(result.latency),
        "ttfb_ms": dist(result.ttfb),
        "loadgen_cpu_cores": result.loadgen_cpu / result.window if result.window else None,
    }
    if result.first_event:
        summary["first_event_ms"] = dist(result.first_event)
    if result.gaps:
        summary["gap_ms"] = dist(result.gaps)
    if result.error_samples:
        summary["error_samples"] = result.error_samples
    summary.update(extra or {})
    return summary


# --- processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli_command(*args: str) -> list[str]:
    """`ccproxy ARGS` from this work tree (so an older installed copy is never the one run)."""
    code = "import sys; from gateway.cli import main; sys.exit(main())"
    return [sys.executable, "-c", code, *args]


def cli_available() -> bool:
    return importlib.util.find_spec("gateway.cli") is not None


def _http(
    endpoint: Endpoint,
    path: str,
    method: str = "GET",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    limit: float = 5.0,
) -> loadgen.ResponseParser:
    import asyncio

    return asyncio.run(loadgen.fetch(endpoint, body, headers or {}, limit=limit, path=path, method=method))


class ProcTree:
    """CPU and RSS of a process and its descendants (plus processes naming `marker`, for a
    PostgreSQL that daemonised away from its parent), split into the Python processes and
    the PostgreSQL ones."""

    def __init__(self, pid: int, marker: str | None = None) -> None:
        self.pid = pid
        self.marker = marker

    def pids(self) -> dict[int, str]:
        import psutil

        found: dict[int, str] = {}
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            procs = []
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                found[proc.pid] = proc.name()
        if self.marker:
            for proc in psutil.process_iter(["name", "cmdline"]):
                cmdline = " ".join(proc.info.get("cmdline") or [])
                if self.marker in cmdline and proc.pid not in found:
                    found[proc.pid] = proc.info.get("name") or ""
                    with contextlib.suppress(psutil.Error):
                        for child in proc.children(recursive=True):  # the backends
                            found[child.pid] = child.name()
        return found

    @staticmethod
    def _kind(name: str) -> str:
        return "postgres" if "postgres" in name or name.startswith("pg_") else "gateway"

    def cpu(self) -> dict[int, tuple[str, float]]:
        out: dict[int, tuple[str, float]] = {}
        for pid, name in self.pids().items():
            with contextlib.suppress(OSError, ValueError, IndexError):
                out[pid] = (self._kind(name), loadgen.process_cpu_seconds(pid))
        return out

    @staticmethod
    def cpu_delta(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
        totals = {"gateway": 0.0, "postgres": 0.0}
        for pid, (kind, seconds) in after.items():
            earlier = before.get(pid)
            totals[kind] += seconds - (earlier[1] if earlier else 0.0)
        return totals

    def rss(self) -> dict[str, int]:
        totals = {"gateway": 0, "postgres": 0}
        for pid, name in self.pids().items():
            with contextlib.suppress(OSError, ValueError):
                totals[self._kind(name)] += loadgen.process_rss_bytes(pid)
        return totals

    def gateway_rss(self) -> int:
        """RSS of the Python gateway processes only (cheap: no psutil scan of PostgreSQL)."""
        import psutil

        total = 0
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0
        for proc in procs:
            with contextlib.suppress(psutil.Error, OSError, ValueError):
                if self._kind(proc.name()) == "gateway":
                    total += loadgen.process_rss_bytes(proc.pid)
        return total


class Stack:
    """The processes one bench run started; `close()` stops every one of them."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.work = Path(tempfile.mkdtemp(prefix="ccproxy-bench-"))
        self.work.chmod(0o755)  # the embedded PostgreSQL runs as its own system user
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.logs: dict[str, Path] = {}
        self.direct: Endpoint | None = None  # the fake the gateway relays to
        self.fake_pid: int | None = None
        self.fakes: dict[str, tuple[Endpoint, int]] = {}  # serving mode → (endpoint, pid)
        self.fake_bedrock_pid: int | None = None
        self.bedrock: Endpoint | None = None
        self.gateway: Endpoint | None = None  # the proxy under test (started or --target)
        self.gateway_tree: ProcTree | None = None
        self.gateway_info: dict[str, Any] = {}
        self.compare: list[Endpoint] = []
        self.data_dir = self.work / "data"
        self.bedrock_keys: dict[str, str] = {}
        self.key: str | None = None  # the bench user's access key (kept across restarts)
        self.extra_markers: list[str] = []  # data dirs of gateways started besides the main one
        self._gateway_failed: str | None = None

    # -- helpers

    def _spawn(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        path = self.work / f"{name}.log"
        self.logs[name] = path
        with open(path, "wb") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=REPO,
                start_new_session=True,
            )
        self.procs.append((name, proc))
        return proc

    @contextlib.contextmanager
    def pinned(self) -> Iterator[None]:
        """Saturating phases: the load side (this process, so the load generator it starts,
        and the fakes) on the first CPU, the gateway it started (with its PostgreSQL) on
        the others; every CPU again afterwards.

        Unpinned on a 2-core machine, a saturated gateway competes with the fake and the
        load generator, so the ratio prices its CPU twice: as its own work and as the
        load-side work it displaces. Pinned, both phases run the same load side on the same
        CPU, and the gateway has what a deployment gives it: its own core, with the
        upstream and the clients elsewhere. A `--target` gateway is left alone.
        """
        pinning = self.options.pinning
        if pinning is None:
            yield
            return
        load, gateway = pinning
        fakes = [pid for _, pid in self.fakes.values()] + [self.fake_bedrock_pid or 0]
        side = [os.getpid(), *(pid for pid in fakes if pid)]
        tree = list(self.gateway_tree.pids()) if self.gateway_tree and not self.options.target else []
        _set_affinity(side, load)
        _set_affinity(tree, gateway)
        try:
            yield
        finally:
            _set_affinity(side + tree, load | gateway)

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.logs.get(name)
        if path is None or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _wait_http(self, name: str, proc: subprocess.Popen[bytes], endpoint: Endpoint, path: str, limit: float) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")
            with contextlib.suppress(OSError, TimeoutError, loadgen.ProtocolError):
                if _http(endpoint, path, limit=2.0).status == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{name}: GET {path} not 200 within {limit:g}s:\n{self.log_tail(name)}")

    # -- fakes

    def spawn_fake(self, name: str, argv: list[str], port: int, limit: float = 20.0) -> subprocess.Popen[bytes]:
        """Start a fake upstream and wait until it accepts connections on `port`."""
        proc = self._spawn(name, argv)
        deadline = time.monotonic() + limit
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return proc
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start:\n{self.log_tail(name)}") from None
                time.sleep(0.05)

    def start_fake(self) -> Endpoint:
        """The fake the gateway relays to: `--direct`, else the `--fake-mode` one."""
        if self.direct is not None:
            return self.direct
        if self.options.direct:
            self.direct = Endpoint.from_url("direct", self.options.direct)
            return self.direct
        self.direct, self.fake_pid = self._fake(self.options.fake_mode)
        return self.direct

    def _fake(self, mode: str) -> tuple[Endpoint, int]:
        if mode in self.fakes:
            return self.fakes[mode]
        port = free_port()
        argv = [sys.executable, "-m", "bench.fake_anthropic", "--port", str(port)]
        if mode == "fast":
            argv.append("--fast")
        proc = self.spawn_fake(f"fake_anthropic_{mode}", argv, port)
        endpoint = Endpoint("direct", "127.0.0.1", port)
        self.fakes[mode] = (endpoint, proc.pid)
        return self.fakes[mode]

    def use_fake(self, mode: str) -> bool:
        """Relay to the `mode` fake from now on: start it if needed, and restart a gateway
        started here on the same port and data (its keys stay valid). False when the run
        cannot switch (`--direct` or `--target` fix the upstream)."""
        if self.options.direct or self.options.target:
            return False
        endpoint, pid = self._fake(mode)
        if endpoint is self.direct:
            return True
        self.direct, self.fake_pid = endpoint, pid
        if self.gateway is not None:
            self._stop_gateway()
            self._start_gateway(port=self.gateway.port)
        return True

    def set_default(self, scenario: str) -> None:
        """Make the fake answer `scenario` to requests without `x-fake-scenario` (the gateway
        does not forward that header)."""
        assert self.direct is not None
        response = _http(
            self.direct,
            "/_fake/default",
            "POST",
            orjson.dumps({"scenario": scenario}),
            {"content-type": "application/json"},
        )
        if response.status != 200:
            raise RuntimeError(f"fake: POST /_fake/default → {response.status}")

    def start_fake_bedrock(self) -> Endpoint:
        if self.bedrock is not None:
            return self.bedrock
        port = free_port()
        argv = [sys.executable, "-m", "bench.fake_bedrock", "--port", str(port), "--default", "events:200"]
        proc = self.spawn_fake("fake_bedrock", argv, port)
        endpoint = Endpoint("fake_bedrock", "127.0.0.1", port)
        self.bedrock = endpoint
        self.fake_bedrock_pid = proc.pid
        return endpoint

    # -- the gateway

    def gateway_env(self) -> dict[str, str]:
        assert self.direct is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("CCPROXY_")}
        env["CCPROXY_DATA_DIR"] = str(self.data_dir)
        env["CCPROXY_PLAN_BASE_URL"] = self.direct.url
        if self.bedrock is not None:
            env["CCPROXY_BEDROCK_ENDPOINT_URL"] = self.bedrock.url
        env.update(self.options.gateway_env)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def cli(
        self,
        *args: str,
        check: bool = True,
        stdin: str = "",
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """`ccproxy ARGS` against the started gateway's data (or `env`'s, another one's)."""
        result = subprocess.run(
            _cli_command(*args),
            env=env or self.gateway_env(),
            cwd=REPO,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"ccproxy {' '.join(args)} → exit {result.returncode}: "
                f"{(result.stderr or result.stdout).strip()[-800:]}"
            )
        return result

    @staticmethod
    def _json(text: str) -> dict[str, Any]:
        """The JSON object a command printed (pretty or on one line, maybe after logs)."""
        text = text.strip()
        start = 0
        while True:
            with contextlib.suppress(orjson.JSONDecodeError):
                value = orjson.loads(text[start:])
                if isinstance(value, dict):
                    return value
            start = text.find("\n{", start + 1) + 1
            if start <= 0:
                raise ValueError(f"no JSON object in {text[-300:]!r}")

    def ensure_gateway(self) -> Endpoint:
        """The proxy under test: `--target`, else a `ccproxy serve` started here."""
        if self.gateway is not None:
            return self.gateway
        if self._gateway_failed:
            raise Skip(self._gateway_failed)
        try:
            return self._start_gateway()
        except Skip:
            raise
        except Exception as exc:
            self._gateway_failed = f"the gateway could not be set up: {exc}"
            raise

    def _start_gateway(self, port: int | None = None) -> Endpoint:
        self.start_fake()
        if self.options.target:
            self.gateway = Endpoint.from_url("target", self.options.target)
            if self.options.target_pid:
                self.gateway_tree = ProcTree(self.options.target_pid)
            self.compare = [Endpoint.from_url(f"compare{i + 1}", url) for i, url in enumerate(self.options.compare)]
            return self.gateway
        if not cli_available():
            self._gateway_failed = (
                "gateway not available: gateway/cli.py is missing "
                "(`ccproxy serve` lands with the gateway); use --target URL"
            )
            raise Skip(self._gateway_failed)
        if (REPO / "bench" / "fake_bedrock.py").exists():
            with contextlib.suppress(RuntimeError):
                self.start_fake_bedrock()
        port = port or free_port()
        t0 = time.monotonic()
        proc = self._spawn("gateway", _cli_command("serve", "--port", str(port)), env=self.gateway_env())
        health = Endpoint("gateway", "127.0.0.1", port)
        self._wait_http("gateway", proc, health, "/health", 120)
        startup_s = time.monotonic() - t0
        self.gateway_tree = ProcTree(proc.pid, marker=str(self.data_dir))
        if self.key is None:
            self.cli("users", "create", "bench", "--json")
            self.key = str(self._json(self.cli("keys", "issue", "--user", "bench", "--json").stdout)["key"])
        self.gateway = Endpoint("gateway", "127.0.0.1", port, f"/ak/{self.key}")
        self.compare = [Endpoint.from_url(f"compare{i + 1}", url) for i, url in enumerate(self.options.compare)]
        self._warm(self.gateway, PLAN_CREDENTIAL)
        if self.gateway_info:  # a restart: start-up and idle RSS are the first start's
            return self.gateway
        time.sleep(0.5)
        rss = self.gateway_tree.rss()
        self.gateway_info = {
            "pid": proc.pid,
            "port": port,
            "startup_s": startup_s,
            "idle_rss_bytes": rss["gateway"],
            "idle_postgres_rss_bytes": rss["postgres"],
        }
        return self.gateway

    def _stop_gateway(self) -> None:
        """SIGTERM the started gateway and wait: it drains, flushes usage and stops its
        PostgreSQL."""
        for name, proc in self.procs:
            if name == "gateway" and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
        self.procs = [(name, proc) for name, proc in self.procs if name != "gateway"]
        self._kill_strays()

    def _warm(self, endpoint: Endpoint, credential: str, limit: float = 20.0, default: str = "text") -> None:
        """Send a request until it answers 200 (the key cache may learn the key late)."""
        self.set_default(default)
        body = request_body(stream=False)
        deadline = time.monotonic() + limit
        last = ""
        while time.monotonic() < deadline:
            try:
                response = _http(endpoint, "/v1/messages", "POST", body, request_headers(credential, None), limit=10)
                if response.status == 200:
                    return
                last = f"HTTP {response.status}: {bytes(response.body[:300])!r}"
            except (OSError, TimeoutError, loadgen.ProtocolError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.2)
        raise RuntimeError(f"{endpoint.name} never answered 200 to a warm-up request: {last}")

    def proxies(self) -> list[Endpoint]:
        assert self.gateway is not None
        return [self.gateway, *self.compare]

    def close(self) -> None:
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20 if name == "gateway" else 5)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # anything left in its session
        self._kill_strays()
        for marker in self.extra_markers:
            self._kill_strays(marker)
        shutil.rmtree(self.work, ignore_errors=True)

    def _kill_strays(self, marker: str | None = None) -> None:
        """A PostgreSQL started for our data directory (or `marker`) that outlived the gateway."""
        import psutil

        marker = marker or str(self.data_dir)
        for proc in psutil.process_iter(["cmdline"]):
            if marker in " ".join(proc.info.get("cmdline") or []):
                with contextlib.suppress(psutil.Error):
                    proc.kill()


# --- requests ---------------------------------------------------------------------------


def request_body(stream: bool, pad_bytes: int = 0) -> bytes:
    """A Messages API request; `pad_bytes` grows it like a Claude Code conversation."""
    messages: list[dict[str, Any]] = []
    if pad_bytes:
        filler = "The quick brown fox jumps over the lazy dog. " * (pad_bytes // 45 + 1)
        messages.append({"role": "user", "content": filler[:pad_bytes]})
        messages.append({"role": "assistant", "content": "Noted."})
    messages.append({"role": "user", "content": "Say hello."})
    return orjson.dumps({"model": MODEL, "max_tokens": 1024, "stream": stream, "messages": messages})


def request_headers(credential: str, scenario: str | None) -> dict[str, str]:
    headers = {
        "x-api-key": credential,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        "user-agent": "ccproxy-bench/1",
    }
    if scenario:
        headers["x-fake-scenario"] = scenario
    return headers


# --- running phases ---------------------------------------------------------------------


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    busy = sum(fields[:8]) - fields[3] - fields[4]  # user nice system idle iowait irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


class CpuWindow:
    """Samples the CPU of the gateway tree and the fake at the start and end of a load
    phase's measured window; gives cores used (CPU seconds per wall second)."""

    def __init__(self, stack: Stack, measured: Endpoint, start: float, end: float) -> None:
        gateway = stack.gateway
        same = gateway is not None and (measured.host, measured.port) == (gateway.host, gateway.port)
        self.tree = stack.gateway_tree if same else None
        self.fakes = {"fake": stack.fake_pid, "fake_bedrock": stack.fake_bedrock_pid}
        self.start, self.end = start, end
        self.t0 = self.t1 = 0.0
        self.cpu0: dict[int, tuple[str, float]] = {}
        self.cpu1: dict[int, tuple[str, float]] = {}
        self.fake0: dict[str, float] = {}
        self.fake1: dict[str, float] = {}

    def _snap(self) -> tuple[float, dict[int, tuple[str, float]], dict[str, float]]:
        tree = self.tree.cpu() if self.tree else {}
        fakes: dict[str, float] = {"machine": machine_busy_seconds()}
        for name, pid in self.fakes.items():
            if pid:
                with contextlib.suppress(OSError):
                    fakes[name] = loadgen.process_cpu_seconds(pid)
        return time.perf_counter(), tree, fakes

    def __call__(self, t: float, open_streams: int) -> dict[str, float] | None:
        if not self.t0 and t >= self.start:
            self.t0, self.cpu0, self.fake0 = self._snap()
        elif self.t0 and not self.t1 and t >= self.end:
            self.t1, self.cpu1, self.fake1 = self._snap()
        return None

    def finish(self) -> dict[str, float | None]:
        if not self.t1:
            self.t1, self.cpu1, self.fake1 = self._snap()
        span = self.t1 - self.t0 if self.t0 else 0.0
        if span <= 0:
            return {"gateway_cpu_cores": None, "postgres_cpu_cores": None, "fake_cpu_cores": None}
        delta = ProcTree.cpu_delta(self.cpu0, self.cpu1)
        out: dict[str, float | None] = {
            "gateway_cpu_cores": delta["gateway"] / span if self.tree else None,
            "postgres_cpu_cores": delta["postgres"] / span if self.tree else None,
        }
        for name in (*self.fakes, "machine"):
            if name in self.fake0 and name in self.fake1:
                out[f"{name}_cpu_cores"] = (self.fake1[name] - self.fake0[name]) / span
        return out


def run_phase(
    stack: Stack,
    endpoint: Endpoint,
    label: str,
    fake_scenario: str,
    *,
    stream: bool,
    concurrency: int,
    duration: float,
    warmup: float,
    credential: str = PLAN_CREDENTIAL,
    pad_bytes: int = 0,
    mode: str = "closed",
    ramp: float = 0.0,
    collect_gaps: bool = False,
    timeout: float = 60.0,
    sampler: loadgen.Sampler | None = None,
) -> tuple[LoadResult, dict[str, Any]]:
    """Run one load phase against `endpoint`; returns its result and summary."""
    stack.set_default(fake_scenario)
    headers = request_headers(credential, fake_scenario)
    raw = loadgen.build_request(endpoint, request_body(stream, pad_bytes), headers)
    spec = LoadSpec(
        endpoint,
        raw,
        stream,
        concurrency,
        duration=duration,
        warmup=warmup,
        mode=mode,
        ramp=ramp,
        timeout=timeout,
        collect_gaps=collect_gaps,
        label=f"{label} {endpoint.name}",
    )
    cpu = CpuWindow(stack, endpoint, warmup, warmup + duration if mode == "closed" else float("inf"))

    def sample(t: float, open_streams: int) -> dict[str, float] | None:
        cpu(t, open_streams)
        return sampler(t, open_streams) if sampler else None

    result = loadgen.run_load(spec, stack.options.procs, sample, stack.options.progress)
    cores = cpu.finish()
    return result, summarize([result], [cores])


def combine(results: list[LoadResult]) -> LoadResult:
    """Several rounds of one phase as one result (their windows add up)."""
    if len(results) == 1:
        return results[0]
    return LoadResult(
        label=results[0].label,
        latency=[x for r in results for x in r.latency],
        ttfb=[x for r in results for x in r.ttfb],
        first_event=[x for r in results for x in r.first_event],
        gaps=[x for r in results for x in r.gaps],
        max_gaps=[x for r in results for x in r.max_gaps],
        requests=sum(r.requests for r in results),
        events=sum(r.events for r in results),
        errors=sum(r.errors for r in results),
        statuses={k: sum(r.statuses.get(k, 0) for r in results) for k in {k for r in results for k in r.statuses}},
        error_samples=[s for r in results for s in r.error_samples][:5],
        loadgen_cpu=sum(r.loadgen_cpu for r in results),
        window=sum(r.window for r in results),
        peak_open=max(r.peak_open for r in results),
    )


def summarize(results: list[LoadResult], cores: list[dict[str, float | None]]) -> dict[str, Any]:
    """The summary of one phase (over its rounds): rates, distributions, CPU in cores
    (window-weighted) and CPU per request / per event."""
    result = combine(results)
    extra: dict[str, Any] = {}
    total = sum(r.window for r in results) or 1.0
    for name in sorted({k for c in cores for k in c}):
        values = [(c.get(name), r.window) for c, r in zip(cores, results, strict=True)]
        if all(v is not None for v, _ in values):
            extra[name] = sum(float(v or 0) * w for v, w in values) / total
    gateway_cores = extra.get("gateway_cpu_cores")
    if gateway_cores is not None and result.rps:
        extra["gateway_cpu_us_per_request"] = gateway_cores / result.rps * 1e6
    if gateway_cores is not None and result.eps:
        extra["gateway_cpu_us_per_event"] = gateway_cores / result.eps * 1e6
    pg_cores = extra.get("postgres_cpu_cores")
    if pg_cores is not None and result.rps:
        extra["postgres_cpu_us_per_request"] = pg_cores / result.rps * 1e6
    machine_cores = extra.get("machine_cpu_cores")
    if machine_cores is not None and result.window:
        ours = sum(
            extra.get(k) or 0.0
            for k in ("gateway_cpu_cores", "postgres_cpu_cores", "fake_cpu_cores", "fake_bedrock_cpu_cores")
        )
        # what else ran on the machine meanwhile (a shared machine's noise, made visible)
        extra["other_cpu_cores"] = max(0.0, machine_cores - ours - result.loadgen_cpu / result.window)
    return phase_summary(result, extra)


def run_rounds(
    stack: Stack,
    endpoints: list[Endpoint],
    rounds: int,
    label: str,
    fake_scenario: str | Callable[[Endpoint], str],
    **kwargs: Any,
) -> tuple[dict[str, dict[str, Any]], dict[str, LoadResult]]:
    """Alternate the endpoints' phases `rounds` times (so drift and other load on the
    machine hit every side alike); one summary and one merged result per endpoint."""
    raw: dict[str, list[LoadResult]] = {e.name: [] for e in endpoints}
    cores: dict[str, list[dict[str, float | None]]] = {e.name: [] for e in endpoints}
    for _ in range(rounds):
        for endpoint in endpoints:
            scenario = fake_scenario(endpoint) if callable(fake_scenario) else fake_scenario
            result, summary = run_phase(stack, endpoint, label, scenario, **kwargs)
            raw[endpoint.name].append(result)
            cores[endpoint.name].append({k: summary.get(k) for k in summary if k.endswith("_cpu_cores")})
    summaries = {name: summarize(raw[name], cores[name]) for name in raw}
    return summaries, {name: combine(results) for name, results in raw.items()}


def _added(proxy: dict[str, Any] | None, direct: dict[str, Any] | None, q: str) -> float | None:
    if not proxy or not direct or proxy.get(q) is None or direct.get(q) is None:
        return None
    return float(proxy[q]) - float(direct[q])


# --- scenarios --------------------------------------------------------------------------


def scenario_overhead(stack: Stack) -> dict[str, Any]:
    """c=1: added latency (non-streaming) and added time to first event (streaming)."""
    quick = stack.options.quick
    rounds = 1 if quick else 3
    seconds = stack.options.duration or (0.8 if quick else 3.0)
    direct = stack.start_fake()
    stack.ensure_gateway()
    endpoints = [direct, *stack.proxies()]
    phases: dict[str, dict[str, Any]] = {}
    plots: dict[str, Any] = {}
    for mode, fake_scenario, stream in (("nonstream", "text", False), ("stream", "events:20", True)):
        phases[mode], merged = run_rounds(
            stack,
            endpoints,
            rounds,
            f"overhead {mode}",
            fake_scenario,
            stream=stream,
            concurrency=1,
            duration=seconds,
            warmup=0.2,
        )
        plots[mode] = {name: cdf_points(r.first_event if stream else r.latency) for name, r in merged.items()}
    proxies = [e.name for e in stack.proxies()]

    # (name, target key or None, mode, field, percentile), in report order
    rows = (
        ("added latency, non-streaming", "added_latency_p50", "nonstream", "latency_ms", "p50"),
        ("added latency, non-streaming", None, "nonstream", "latency_ms", "p90"),
        ("added latency, non-streaming", "added_latency_p99", "nonstream", "latency_ms", "p99"),
        ("added TTFB (first event), streaming", "added_ttfb_p50", "stream", "first_event_ms", "p50"),
        ("added TTFB (first event), streaming", None, "stream", "first_event_ms", "p90"),
        ("added TTFB (first event), streaming", None, "stream", "first_event_ms", "p99"),
        ("added latency, streaming (20 events)", None, "stream", "latency_ms", "p50"),
        ("added latency, streaming (20 events)", None, "stream", "latency_ms", "p99"),
    )
    measures = [
        *(
            measure(
                f"{name}, {q}",
                key,
                {p: _added(phases[mode][p].get(field), phases[mode]["direct"].get(field), q) for p in proxies},
                "ms",
                direct=phases[mode]["direct"][field][q],
            )
            for name, key, mode, field, q in rows
        ),
        measure(
            "errors",
            "errors",
            {p: float(phases["nonstream"][p]["errors"] + phases["stream"][p]["errors"]) for p in proxies},
        ),
    ]
    return {
        "measures": measures,
        "phases": phases,
        "plot_data": {"kind": "overhead", "cdf_ms": plots},
        "params": {
            "concurrency": 1,
            "rounds": rounds,
            "seconds_per_round": seconds,
            "nonstream_scenario": "text",
            "stream_scenario": "events:20",
        },
    }


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return value / base


def _throughput_phases(
    stack: Stack,
    modes: tuple[tuple[str, str, bool], ...],
    *,
    bedrock: bool,
    concurrency: int,
    seconds: float,
    warmup: float,
    rounds: int,
) -> dict[str, dict[str, Any]]:
    """Each mode's rounds against the fake the gateway relays to now, directly and through
    every proxy, with the CPUs pinned."""
    direct = stack.start_fake()
    stack.ensure_gateway()
    proxies = [prepare_bedrock(stack)] if bedrock else stack.proxies()
    credential = BEDROCK_PLAN_CREDENTIAL if bedrock else PLAN_CREDENTIAL
    phases: dict[str, dict[str, Any]] = {}
    with stack.pinned():
        for mode, fake_scenario, stream in modes:

            def default(endpoint: Endpoint, scenario: str = fake_scenario) -> str:
                # through Bedrock, the fake plan answers 429 usage_limit to everything
                # that does not name a scenario; the direct baseline names events:200
                return "usage_limit" if bedrock and endpoint is not direct else scenario

            phases[mode], _ = run_rounds(
                stack,
                [direct, *proxies],
                rounds,
                f"{'bedrock' if bedrock else 'throughput'} {mode}",
                default,
                stream=stream,
                concurrency=concurrency,
                duration=seconds / rounds,
                warmup=warmup,
                credential=credential,
            )
    return phases


def scenario_throughput(stack: Stack, *, bedrock: bool = False) -> dict[str, Any]:
    """c=64 closed loop: requests/s (non-streaming), events/s (200-event streams), CPU.

    The ratio targets are judged against the aiohttp-served fake (`REFERENCE_FAKE`); the
    same phases then run against the raw-asyncio fake (`STRICT_FAKE`), reported beside
    them without a target (bench/README.md, "Baseline and ratios"). `--direct` and
    `--target` fix the upstream: then only that one is measured."""
    quick = stack.options.quick
    concurrency = stack.options.concurrency or (8 if quick else 64)
    seconds = stack.options.duration or (1.5 if quick else 20.0)
    run = functools.partial(
        _throughput_phases,
        stack,
        bedrock=bedrock,
        concurrency=concurrency,
        seconds=seconds,
        warmup=0.5 if quick else 1.0,
        rounds=1 if quick else 2,
    )
    modes: tuple[tuple[str, str, bool], ...] = (("nonstream", "text", False), ("stream", "events:200", True))
    strict: dict[str, dict[str, Any]] = {}
    fake = "given" if stack.options.direct or stack.options.target else stack.options.fake_mode
    if bedrock:
        try:
            phases = run(modes[1:])
        finally:
            stack.set_default("text")
    elif stack.use_fake(REFERENCE_FAKE):
        fake = REFERENCE_FAKE
        try:
            phases = run(modes)
            stack.use_fake(STRICT_FAKE)
            strict = run(modes)
        finally:
            stack.use_fake(stack.options.fake_mode)  # the other scenarios' fake
    else:
        phases = run(modes)
    proxies = [prepare_bedrock(stack)] if bedrock else stack.proxies()
    names = [p.name for p in proxies]

    def rates(
        by: dict[str, Any], field: str, unit: str, name: str, key: str | None, suffix: str = ""
    ) -> list[dict[str, Any]]:
        """A rate as its ratio to direct (judged when `key` names a target), then as measured."""
        base = by["direct"][field]
        return [
            measure(
                f"{name} c={concurrency} (× direct){suffix}",
                key,
                {p: _ratio(by[p][field], base) for p in names},
                "× direct",
                direct=1.0,
            ),
            measure(f"{name}{suffix}", None, {p: by[p][field] for p in names}, unit, direct=base),
        ]

    measures: list[dict[str, Any]] = []
    if not bedrock:
        ns = phases["nonstream"]
        measures += [
            *rates(ns, "requests_per_s", "req/s", "requests/s non-streaming", "nonstream_rps_ratio"),
            measure(
                "gateway CPU per plan request",
                "cpu_per_request",
                {p: ns[p].get("gateway_cpu_us_per_request") for p in names},
                "µs",
            ),
            measure(
                "PostgreSQL CPU per plan request",
                None,
                {p: ns[p].get("postgres_cpu_us_per_request") for p in names},
                "µs",
            ),
        ]
    st = phases["stream"]
    prefix = "Bedrock " if bedrock else ""
    judged = None if bedrock else "stream_eps_ratio"  # the Bedrock path has no ratio target
    measures += [
        *rates(st, "events_per_s", "events/s", f"{prefix}events/s, 200-event streams", judged),
        measure(
            f"{prefix}streams/s",
            None,
            {p: st[p]["requests_per_s"] for p in names},
            "req/s",
            direct=st["direct"]["requests_per_s"],
        ),
        measure(
            f"gateway CPU per relayed {prefix}event",
            "bedrock_cpu_per_event" if bedrock else "cpu_per_event",
            {p: st[p].get("gateway_cpu_us_per_event") for p in names},
            "µs",
        ),
        measure(
            "load generator CPU (cores), proxied / direct",
            None,
            {p: max(phases[m][p]["loadgen_cpu_cores"] or 0 for m in phases) for p in names},
            "cores",
            direct=max(phases[m]["direct"]["loadgen_cpu_cores"] or 0 for m in phases),
        ),
    ]
    if strict:
        ns, st = strict["nonstream"], strict["stream"]
        suffix = f", {STRICT_FAKE} fake"
        measures += [
            *rates(ns, "requests_per_s", "req/s", "requests/s non-streaming", None, suffix),
            *rates(st, "events_per_s", "events/s", "events/s, 200-event streams", None, suffix),
            measure(
                f"gateway CPU per plan request{suffix}",
                None,
                {p: ns[p].get("gateway_cpu_us_per_request") for p in names},
                "µs",
            ),
            # The fast fake's events queue up and reach the gateway several to a read.
            measure(
                f"gateway CPU per relayed event{suffix}",
                None,
                {p: st[p].get("gateway_cpu_us_per_event") for p in names},
                "µs",
            ),
        ]
        phases.update({f"{mode}, {STRICT_FAKE} fake": by for mode, by in strict.items()})
    errors: dict[str, float | None] = {p: float(sum(by[p]["errors"] for by in phases.values())) for p in names}
    measures.append(measure("errors", "errors", errors))
    bars = {
        group: {name: s["events_per_s" if group.startswith("stream") else "requests_per_s"] for name, s in by.items()}
        for group, by in phases.items()
    }
    return {
        "measures": measures,
        "phases": phases,
        "plot_data": {"kind": "throughput", "bars": bars},
        "params": {
            "concurrency": concurrency,
            "seconds": seconds,
            "rounds": 1 if quick else 2,
            "procs": stack.options.procs,
            "fake": fake,
            "strict_fake": STRICT_FAKE if strict else None,
        },
    }


def prepare_bedrock(stack: Stack) -> Endpoint:
    """A key whose plan calls fail (usage limit) so it is answered by the fake Bedrock."""
    if stack.options.target:
        raise Skip("bedrock: needs a gateway started by the bench (not --target)")
    if not (REPO / "bench" / "fake_bedrock.py").exists():
        raise Skip("bench/fake_bedrock.py is not there yet")
    stack.ensure_gateway()
    help_text = stack.cli("keys", "--help", check=False)
    if "bedrock-key" not in (help_text.stdout + help_text.stderr):
        raise Skip("the CLI has no `ccproxy keys bedrock-key` command yet")
    if stack.bedrock is None:
        raise Skip("the fake Bedrock did not start:\n" + stack.log_tail("fake_bedrock"))
    if "endpoint" in stack.bedrock_keys:
        return Endpoint.from_url("gateway", stack.bedrock_keys["endpoint"])
    stack.cli("users", "create", "bench-bedrock", "--json")
    issued = Stack._json(stack.cli("keys", "issue", "--user", "bench-bedrock", "--json").stdout)
    # `ccproxy keys bedrock-key KEY_ID` reads the Bedrock API key from stdin
    stack.cli("keys", "bedrock-key", str(issued["id"]), "--json", stdin=FAKE_BEDROCK_API_KEY + "\n")
    assert stack.gateway is not None
    endpoint = Endpoint("gateway", stack.gateway.host, stack.gateway.port, f"/ak/{issued['key']}")
    try:
        stack._warm(endpoint, BEDROCK_PLAN_CREDENTIAL, default="usage_limit")
    finally:
        stack.set_default("text")
    stack.bedrock_keys["endpoint"] = endpoint.url
    return endpoint


def scenario_bedrock(stack: Stack) -> dict[str, Any]:
    """The throughput scenario's 200-event streams answered through the Bedrock fallback,
    then c=1 latency of the Bedrock path against the plan path through the same gateway."""
    result = scenario_throughput(stack, bedrock=True)
    latency = bedrock_path_latency(stack)
    result["measures"] += latency.pop("measures")
    result["phases"].update(latency["phases"])
    quota = quota_routing_latency(stack)
    result["measures"] += quota.pop("measures")
    result["phases"].update(quota["phases"])
    result.setdefault("params", {})["quota_plan_delay_ms"] = QUOTA_PLAN_DELAY_MS
    return result


QUOTA_PLAN_DELAY_MS = 50.0  # the round trip to the real Anthropic API


def _quota_gateway(stack: Stack, name: str, plan: Endpoint, quota_routing: bool) -> Endpoint:
    """One more `ccproxy serve` (its own data directory and embedded PostgreSQL) whose plan
    is `plan`, with quota routing on or off, and a key with Bedrock on it."""
    data_dir = stack.work / f"data-{name}"
    stack.extra_markers.append(str(data_dir))
    env = {
        **stack.gateway_env(),
        "CCPROXY_DATA_DIR": str(data_dir),
        "CCPROXY_PLAN_BASE_URL": plan.url,
        "CCPROXY_QUOTA_ROUTING": "true" if quota_routing else "false",
    }
    port = free_port()
    proc = stack._spawn(f"gateway-{name}", _cli_command("serve", "--port", str(port)), env=env)
    stack._wait_http(f"gateway-{name}", proc, Endpoint(name, "127.0.0.1", port), "/health", 120)

    def cli(*args: str, stdin: str = "") -> dict[str, Any]:
        return Stack._json(stack.cli(*args, stdin=stdin, env=env).stdout)

    cli("users", "create", "bench-quota", "--json")
    issued = cli("keys", "issue", "--user", "bench-quota", "--json")
    cli("keys", "bedrock-key", str(issued["id"]), "--json", stdin=FAKE_BEDROCK_API_KEY + "\n")
    endpoint = Endpoint(name, "127.0.0.1", port, f"/ak/{issued['key']}")
    stack._warm(endpoint, BEDROCK_PLAN_CREDENTIAL)  # the first answer routes the key (when on)
    return endpoint


def quota_routing_latency(stack: Stack) -> dict[str, Any]:
    """c=1, an exhausted plan 50 ms away (every answer a `rejected` 429 with a reset a day
    ahead): through a gateway with quota routing off, each request pays the plan's round
    trip before Bedrock answers; with it on, only the first one does. Same run, same fakes,
    alternating rounds; the fall should be about the round trip."""
    if stack.options.target:
        raise Skip("quota routing: needs gateways started by the bench (not --target)")
    prepare_bedrock(stack)  # the fake Bedrock is up and the CLI can register keys
    quick = stack.options.quick
    rounds = 1 if quick else 3
    seconds = stack.options.duration or (1.0 if quick else 3.0)
    port = free_port()
    argv = [sys.executable, "-m", "bench.fake_anthropic", "--port", str(port)]
    argv += ["--delay-ms", str(QUOTA_PLAN_DELAY_MS), "--default", "rejected:86400"]
    stack.spawn_fake("fake_anthropic_far", argv, port)
    plan = Endpoint("far_plan", "127.0.0.1", port)
    off = _quota_gateway(stack, "quota-off", plan, quota_routing=False)
    on = _quota_gateway(stack, "quota-on", plan, quota_routing=True)
    phases: dict[str, dict[str, Any]] = {}
    for mode, scenario, stream in (("nonstream", "text", False), ("stream", "events:20", True)):
        phases[f"exhausted plan {mode}"], _ = run_rounds(
            stack,
            [off, on],
            rounds,
            f"exhausted plan {mode}",
            scenario,  # the far plan ignores it (the gateway does not forward it): always rejected
            stream=stream,
            concurrency=1,
            duration=seconds,
            warmup=0.2,
            credential=BEDROCK_PLAN_CREDENTIAL,
        )
    ns, st = phases["exhausted plan nonstream"], phases["exhausted plan stream"]

    def value(phase: dict[str, Any], name: str, field: str, q: str) -> dict[str, float | None]:
        return {"gateway": (phase[name].get(field) or {}).get(q)}

    def fall(phase: dict[str, Any], field: str, q: str) -> dict[str, float | None]:
        return {"gateway": _added(phase["quota-off"].get(field), phase["quota-on"].get(field), q)}

    measures = [
        measure("Exhausted plan 50 ms away, routing off, p50", None, value(ns, "quota-off", "latency_ms", "p50"), "ms"),
        measure("Exhausted plan 50 ms away, routing on, p50", None, value(ns, "quota-on", "latency_ms", "p50"), "ms"),
        measure("Latency fall with quota routing (off − on), p50", None, fall(ns, "latency_ms", "p50"), "ms"),
        measure("Latency fall with quota routing (off − on), p99", None, fall(ns, "latency_ms", "p99"), "ms"),
        measure("First-event fall with quota routing (off − on), p50", None, fall(st, "first_event_ms", "p50"), "ms"),
    ]
    return {"measures": measures, "phases": phases}


def bedrock_path_latency(stack: Stack) -> dict[str, Any]:
    """c=1 through the gateway: a key answered by the plan vs a key whose plan answers 429
    usage_limit and falls back to Bedrock (plan round trip + Bedrock call + event-stream
    translation). The difference is what falling back costs on the fakes."""
    quick = stack.options.quick
    rounds = 1 if quick else 3
    seconds = stack.options.duration or (0.8 if quick else 3.0)
    gateway = stack.proxies()[0]
    bedrock_ep = prepare_bedrock(stack)
    plan = Endpoint("gateway-plan", gateway.host, gateway.port, gateway.prefix)
    fallback = Endpoint("gateway-bedrock", bedrock_ep.host, bedrock_ep.port, bedrock_ep.prefix)
    phases: dict[str, dict[str, Any]] = {}
    try:
        for mode, scenario, stream in (("nonstream", "text", False), ("stream", "events:20", True)):

            def default(endpoint: Endpoint, scenario: str = scenario) -> str:
                return "usage_limit" if endpoint is fallback else scenario

            phases[f"bedrock latency {mode}"], _ = run_rounds(
                stack,
                [plan, fallback],
                rounds,
                f"bedrock latency {mode}",
                default,
                stream=stream,
                concurrency=1,
                duration=seconds,
                warmup=0.2,
                credential=BEDROCK_PLAN_CREDENTIAL,
            )
    finally:
        stack.set_default("text")
    ns, st = phases["bedrock latency nonstream"], phases["bedrock latency stream"]

    def over_plan(phase: dict[str, Any], field: str, q: str) -> dict[str, float | None]:
        return {"gateway": _added(phase["gateway-bedrock"].get(field), phase["gateway-plan"].get(field), q)}

    measures = [
        measure("Bedrock path over plan path, non-streaming, p50", None, over_plan(ns, "latency_ms", "p50"), "ms"),
        measure("Bedrock path over plan path, non-streaming, p99", None, over_plan(ns, "latency_ms", "p99"), "ms"),
        measure("Bedrock path over plan path, first event, p50", None, over_plan(st, "first_event_ms", "p50"), "ms"),
        measure("Bedrock path over plan path, first event, p99", None, over_plan(st, "first_event_ms", "p99"), "ms"),
    ]
    return {"measures": measures, "phases": phases}


def scenario_claude_code(stack: Stack) -> dict[str, Any]:
    """N concurrent Claude-Code-shaped streams: 50 KB bodies, paced events, held open."""
    quick = stack.options.quick
    streams = stack.options.streams or (50 if quick else 1000)
    events = 100 if quick else 500
    pace_ms = 10
    ramp = 0.5 if quick else 3.0
    loadgen.raise_nofile(streams * 4 + 1024)
    direct = stack.start_fake()
    stack.ensure_gateway()
    fake_scenario = f"paced_events:{events}:{pace_ms}"
    stall_s = 10 * pace_ms / 1000
    phases: dict[str, Any] = {}
    gap_cdfs: dict[str, list[float]] = {}
    rss_series: dict[str, list[list[float]]] = {}
    rss_per_stream: dict[str, float | None] = {}
    stalls: dict[str, int] = {}
    for endpoint in [direct, *stack.proxies()]:
        tree = stack.gateway_tree if endpoint is stack.gateway else None
        idle = tree.gateway_rss() if tree else 0
        series: list[list[float]] = []
        last = [0.0]

        def sampler(
            t: float,
            open_streams: int,
            tree: ProcTree | None = tree,
            series: list[list[float]] = series,
            last: list[float] = last,
        ) -> dict[str, float] | None:
            if tree is None or t - last[0] < 0.2:
                return None
            last[0] = t
            series.append([t, open_streams, tree.gateway_rss()])
            return None

        result, summary = run_phase(
            stack,
            endpoint,
            "claude-code",
            fake_scenario,
            stream=True,
            concurrency=streams,
            duration=0.0,
            warmup=0.0,
            pad_bytes=50_000,
            mode="streams",
            ramp=ramp,
            collect_gaps=True,
            timeout=60 + events * pace_ms / 1000,
            sampler=sampler,
        )
        stalls[endpoint.name] = sum(1 for g in result.gaps if g > stall_s)
        summary["stalls"] = stalls[endpoint.name]
        summary["streams_completed"] = result.requests
        summary["peak_open_streams"] = result.peak_open
        if tree is not None:
            full = [s[2] for s in series if s[1] >= 0.95 * streams]
            peak = max(full) if full else (max(s[2] for s in series) if series else idle)
            summary["idle_rss_bytes"] = idle
            summary["rss_all_open_bytes"] = peak
            rss_per_stream[endpoint.name] = (peak - idle) / streams / 1024
            rss_series[endpoint.name] = [[s[0], s[1], s[2] / 2**20] for s in series]
            if not full:
                summary["note"] = "the open streams never reached 95% of the target at once"
        phases[endpoint.name] = summary
        gap_cdfs[endpoint.name] = cdf_points(result.gaps, 200)
    names = [p.name for p in stack.proxies()]
    direct_gap = phases["direct"].get("gap_ms", {})
    measures = [
        measure(
            f"stalls (gaps > {10 * pace_ms} ms), {streams} streams",
            "stalls",
            {p: float(stalls[p]) for p in names},
            direct=float(stalls["direct"]),
        ),
        measure(
            "added inter-event gap p99",
            None,
            {p: _added(phases[p].get("gap_ms"), direct_gap, "p99") for p in names},
            "ms",
            direct=direct_gap.get("p99"),
        ),
        measure("gateway RSS per open stream", "rss_per_stream", {p: rss_per_stream.get(p) for p in names}, "KB"),
        measure(
            "streams completed",
            None,
            {p: float(phases[p]["streams_completed"]) for p in names},
            "streams",
            direct=float(phases["direct"]["streams_completed"]),
        ),
        measure("errors", "errors", {p: float(phases[p]["errors"]) for p in names}),
    ]
    return {
        "measures": measures,
        "phases": phases,
        "plot_data": {"kind": "claude-code", "gap_cdf_ms": gap_cdfs, "rss": rss_series, "stall_ms": stall_s * 1000},
        "params": {"streams": streams, "events": events, "pace_ms": pace_ms, "body_bytes": 50_000, "ramp_s": ramp},
    }


USAGE_BENCH_MODULE = "bench.usage_bench"


def scenario_usage_writer(stack: Stack) -> dict[str, Any]:
    """Sustained usage events/s into PostgreSQL (with rollups), via `bench.usage_bench`.

    Interface (documented in bench/README.md): `python -m bench.usage_bench --seconds S
    [--quick]`, run with CCPROXY_DATA_DIR set to an empty directory (embedded PostgreSQL),
    prints one JSON object on its last stdout line with at least `events_per_s`
    (and optionally `events`, `seconds`, `rollup_rows`, `batch_rows`, `flush_p99_ms`).
    """
    if importlib.util.find_spec(USAGE_BENCH_MODULE) is None:
        raise Skip(
            f"{USAGE_BENCH_MODULE} is not there yet (the usage-writer bench entry "
            "point lands with the writer; interface in bench/README.md)"
        )
    seconds = stack.options.duration or (2.0 if stack.options.quick else 20.0)
    data_dir = stack.work / "usage-data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCPROXY_")}
    env["CCPROXY_DATA_DIR"] = str(data_dir)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    argv = [sys.executable, "-m", USAGE_BENCH_MODULE, "--seconds", f"{seconds:g}"]
    if stack.options.quick:
        argv.append("--quick")
    log(f"  usage-writer: {' '.join(argv[1:])}")
    proc = subprocess.run(
        argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=seconds * 4 + 120, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{USAGE_BENCH_MODULE} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-800:]}"
        )
    result = Stack._json(proc.stdout)
    rate = float(result["events_per_s"])
    return {
        "measures": [measure("usage events/s into PostgreSQL (with rollups)", "usage_events_per_s", {"writer": rate})],
        "phases": {"writer": result},
        "params": {"seconds": seconds},
    }


def _callgrind(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, timeout=60, check=True)


def _counted_instructions(out_dir: Path, pid: int) -> int:
    """The instructions of the last dump callgrind wrote for `pid`: the `totals:` line at
    its end (the `summary:` line at its top is written before counting and stays 0)."""
    dumps = sorted(out_dir.glob(f"callgrind.{pid}.*"), key=lambda f: int(f.suffix[1:]))
    text = dumps[-1].read_text(errors="replace") if dumps else ""
    totals = [line for line in text.splitlines() if line.startswith("totals:")]
    if not totals:
        raise RuntimeError(f"callgrind wrote no totals for pid {pid} in {out_dir}")
    return int(totals[-1].split()[1])


def scenario_instructions(stack: Stack) -> dict[str, Any]:
    """Instructions the gateway process executes per plan request and per relayed event,
    counted by valgrind's callgrind on a second `ccproxy serve` (c=8, the aiohttp-served
    fake). CPU time moves with the machine: on a shared 2-core host the same build measured
    from 137 to 257 µs per plan request within an hour. An instruction count does not, so
    it compares two builds exactly (repeat runs agree within 1 %). It is not time: a
    syscall counts as the few instructions that enter the kernel."""
    if stack.options.target:
        raise Skip("counts a gateway it starts itself under valgrind, not --target")
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise Skip("valgrind (callgrind) is not installed")
    stack.use_fake(REFERENCE_FAKE)  # the fake the per-event target is judged against
    try:
        return _instructions(stack)
    finally:
        stack.use_fake(stack.options.fake_mode)


def _instructions(stack: Stack) -> dict[str, Any]:
    quick = stack.options.quick
    seconds = stack.options.duration or (2.0 if quick else 15.0)
    direct = stack.start_fake()
    data_dir = stack.work / "data-instructions"
    out_dir = stack.work / "callgrind"
    out_dir.mkdir(exist_ok=True)
    stack.extra_markers.append(str(data_dir))
    env = {**stack.gateway_env(), "CCPROXY_DATA_DIR": str(data_dir), "CCPROXY_PLAN_BASE_URL": direct.url}
    port = free_port()
    counter = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",  # counted only between the `-i on` and `-i off` below
        f"--callgrind-out-file={out_dir}/callgrind.%p",
    ]
    proc = stack._spawn("gateway-instructions", counter + _cli_command("serve", "--port", str(port)), env=env)
    stack._wait_http("gateway-instructions", proc, Endpoint("instructions", "127.0.0.1", port), "/health", 300)
    stack.cli("users", "create", "bench-instructions", "--json", env=env)
    issued = Stack._json(stack.cli("keys", "issue", "--user", "bench-instructions", "--json", env=env).stdout)
    endpoint = Endpoint("gateway", "127.0.0.1", port, f"/ak/{issued['key']}")
    phases: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for mode, fake_scenario, stream in (("nonstream", "text", False), ("stream", "events:200", True)):
        # warm (valgrind translates code on first use), then count one phase
        run_phase(
            stack,
            endpoint,
            f"instructions {mode} warm-up",
            fake_scenario,
            stream=stream,
            concurrency=8,
            duration=1.0 if quick else 3.0,
            warmup=0.0,
        )
        _callgrind(proc.pid, "-z")
        _callgrind(proc.pid, "-i", "on")
        result, summary = run_phase(
            stack,
            endpoint,
            f"instructions {mode}",
            fake_scenario,
            stream=stream,
            concurrency=8,
            duration=seconds,
            warmup=0.0,
        )
        _callgrind(proc.pid, "-i", "off")
        _callgrind(proc.pid, "-d")
        counts[mode] = _counted_instructions(out_dir, proc.pid)
        summary["instructions"] = counts[mode]
        phases[mode] = {"gateway": summary}
        if result.errors or not result.requests:
            raise RuntimeError(f"instructions {mode}: {result.errors} errors in {result.requests} requests")
    per_request = counts["nonstream"] / phases["nonstream"]["gateway"]["requests"]
    per_event = counts["stream"] / max(phases["stream"]["gateway"]["events"], 1)
    return {
        "measures": [
            measure("gateway instructions per plan request", None, {"gateway": per_request}, "instructions"),
            measure(
                "gateway instructions per relayed event (200-event streams, request included)",
                None,
                {"gateway": per_event},
                "instructions",
            ),
        ],
        "phases": phases,
        "params": {"seconds": seconds, "concurrency": 8, "fake": REFERENCE_FAKE},
    }


def startup_measures(stack: Stack) -> dict[str, Any] | None:
    info = stack.gateway_info
    if not info:
        return None
    return {
        "measures": [
            measure("gateway RSS idle after start-up", "idle_rss", {"gateway": info["idle_rss_bytes"] / 2**20}, "MB"),
            measure("embedded PostgreSQL RSS idle", None, {"gateway": info["idle_postgres_rss_bytes"] / 2**20}, "MB"),
            measure("start-up to /health 200 (embedded PostgreSQL)", None, {"gateway": info["startup_s"]}, "s"),
        ],
        "phases": {"gateway": info},
    }


RUNNERS: dict[str, Callable[[Stack], dict[str, Any]]] = {
    "overhead": scenario_overhead,
    "throughput": scenario_throughput,
    "claude-code": scenario_claude_code,
    "bedrock": scenario_bedrock,
    "usage-writer": scenario_usage_writer,
    "instructions": scenario_instructions,
}


@contextlib.contextmanager
def stack_for(options: Options) -> Iterator[Stack]:
    stack = Stack(options)
    try:
        yield stack
    finally:
        stack.close()


def run_scenario(name: str, stack: Stack) -> dict[str, Any]:
    log(f"== {name}")
    t0 = time.monotonic()
    try:
        result = RUNNERS[name](stack)
        result["status"] = "ok"
    except Skip as exc:
        log(f"   skipped: {exc}")
        result = {"status": "skipped", "reason": str(exc), "measures": []}
    except Exception as exc:  # one scenario's failure must not lose the others'
        log(f"   failed: {type(exc).__name__}: {exc}")
        result = {
            "status": "failed",
            "reason": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(limit=6),
            "measures": [],
        }
    result["name"] = name
    result["seconds"] = round(time.monotonic() - t0, 2)
    return result
