"""The bench's load generator: hand-written HTTP/1.1 over raw asyncio, on uvloop.

`ResponseParser` is a sans-IO HTTP/1.1 response parser (status line, headers, then a
Content-Length, chunked or read-until-close body) that also splits an SSE body at its
`\\n\\n` event boundaries and time-stamps each event as it arrives. `Conn` drives it from
an `asyncio.Protocol` (keep-alive, one request in flight). `run_load()` runs a `LoadSpec`
in `procs` worker processes, each driving its share of the connections, prints a progress
line per second to stderr and merges what the workers measured, their CPU included.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import resource
import socket
import sys
import time
from array import array
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

now = time.perf_counter  # CLOCK_MONOTONIC on Linux: comparable across processes

_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILER, _UNTIL_CLOSE, _DONE = range(8)
KEEP_ERROR_BODY = 512


class ProtocolError(Exception):
    """The response is not HTTP/1.1 as expected."""


class ResponseParser:
    """Parse one HTTP/1.1 response fed in pieces; count and time SSE events in the body.

    `feed(data, t)` returns True once the response is complete. Times are `now()` values:
    `t_first_byte` (first response byte), `t_first_event`, `t_done`. With `gaps` set, the
    gap before each event after the first is appended to it (events completed by the same
    read get gap 0 after the first one).
    """

    __slots__ = (
        "_buf",
        "_nl",
        "_remaining",
        "_state",
        "body",
        "events",
        "gaps",
        "headers",
        "keep_body",
        "max_gap",
        "sse",
        "status",
        "t_done",
        "t_first_byte",
        "t_first_event",
        "t_last_event",
        "t_sent",
        "will_close",
    )

    def __init__(self, sse: bool = False, keep_body: bool = False, gaps: array | None = None):
        self.sse = sse
        self.keep_body = keep_body
        self.gaps = gaps
        self._state = _HEAD
        self._buf = b""
        self._remaining = 0
        self._nl = False  # the body so far ends in an unpaired "\n"
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.events = 0
        self.max_gap = 0.0
        self.will_close = False
        self.t_sent = 0.0
        self.t_first_byte = 0.0
        self.t_first_event = 0.0
        self.t_last_event = 0.0
        self.t_done = 0.0

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes, t: float) -> bool:
        if self._state == _HEAD:
            if not self.t_first_byte:
                self.t_first_byte = t
            data = self._buf + data if self._buf else data
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self._buf = data
                return False
            self._buf = b""
            self._head(data[:end])
            data = data[end + 4 :]
        state = self._state
        if state == _LENGTH:
            if len(data) >= self._remaining:
                data = data[: self._remaining]
                self._payload(data, t)
                self._remaining = 0
                return self._finish(t)
            self._remaining -= len(data)
            self._payload(data, t)
            return False
        if state == _UNTIL_CLOSE:
            self._payload(data, t)
            return False
        if state == _DONE:
            return True
        return self._chunked(data, t)

    def feed_eof(self, t: float) -> bool:
        """The connection closed; True if that completes the response."""
        if self._state == _UNTIL_CLOSE:
            return self._finish(t)
        return self._state == _DONE

    def _head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise ProtocolError(f"bad status line {lines[0]!r}")
        self.status = int(parts[1])
        headers = self.headers
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        http10 = parts[0] == "HTTP/1.0"
        self.will_close = connection == "close" or (http10 and connection != "keep-alive")
        if self.status in (204, 304) or 100 <= self.status < 200:
            self._state = _DONE
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._state = _CHUNK_SIZE
        elif "content-length" in headers:
            self._remaining = int(headers["content-length"])
            self._state = _LENGTH
            if self._remaining == 0:
                self._state = _DONE
        else:
            self._state = _UNTIL_CLOSE
            self.will_close = True

    def _chunked(self, data: bytes, t: float) -> bool:
        # Whole chunks are sliced out in one step and the read's payload is counted once
        # (every event in it arrived at `t`): the generator must stay cheaper per event
        # than what it measures.
        if self._buf:
            data = self._buf + data
            self._buf = b""
        pieces: list[bytes] = []
        pos = 0
        size = len(data)
        find = data.find
        while pos < size:
            state = self._state
            if state == _CHUNK_SIZE:
                end = find(b"\r\n", pos)
                if end < 0:
                    self._buf = data[pos:]
                    break
                try:
                    chunk = int(data[pos:end].split(b";", 1)[0], 16)
                except ValueError as exc:
                    raise ProtocolError(f"bad chunk size {data[pos:end][:40]!r}") from exc
                pos = end + 2
                if chunk == 0:
                    self._state = _TRAILER
                elif pos + chunk + 2 <= size:
                    pieces.append(data[pos : pos + chunk])
                    pos += chunk + 2
                else:
                    self._state = _CHUNK_DATA
                    self._remaining = chunk
            elif state == _CHUNK_DATA:
                take = min(self._remaining, size - pos)
                pieces.append(data[pos : pos + take] if (pos or take < size) else data)
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = _CHUNK_CRLF
                    self._remaining = 2
            elif state == _CHUNK_CRLF:
                take = min(self._remaining, size - pos)
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = _CHUNK_SIZE
            else:  # _TRAILER
                rest = data[pos:]
                if rest.startswith(b"\r\n") or rest.find(b"\r\n\r\n") >= 0:
                    if pieces:
                        self._payload(b"".join(pieces), t)
                    return self._finish(t)
                self._buf = rest
                break
        if pieces:
            self._payload(pieces[0] if len(pieces) == 1 else b"".join(pieces), t)
        return False

    def _payload(self, data: bytes, t: float) -> None:
        if self.keep_body or (self.status >= 400 and len(self.body) < KEEP_ERROR_BODY):
            self.body += data
        if not self.sse or not data:
            return
        if self._nl:
            data = b"\n" + data
        n = data.count(b"\n\n")
        if data[-1] == 10:  # an odd run of trailing newlines leaves one unpaired
            tail = data[-16:]
            self._nl = (len(tail) - len(tail.rstrip(b"\n"))) % 2 == 1
        else:
            self._nl = False
        if n:
            if self.events == 0:
                self.t_first_event = t
            else:
                gap = t - self.t_last_event
                if gap > self.max_gap:
                    self.max_gap = gap
                if self.gaps is not None:
                    self.gaps.append(gap)
            if self.gaps is not None and n > 1:
                self.gaps.extend([0.0] * (n - 1))
            self.events += n
            self.t_last_event = t

    def _finish(self, t: float) -> bool:
        self._state = _DONE
        self.t_done = t
        return True


class Conn(asyncio.Protocol):
    """One keep-alive client connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser: ResponseParser | None = None
        self.waiter: asyncio.Future[ResponseParser] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:
            return
        try:
            complete = parser.feed(data, now())
        except ProtocolError as exc:
            self._fail(exc)
            return
        if complete:
            self._resolve(parser)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        parser = self.parser
        if parser is not None and parser.feed_eof(now()):
            self._resolve(parser)
        else:
            self._fail(ConnectionError(f"connection closed mid-response: {exc}"))

    def _resolve(self, parser: ResponseParser) -> None:
        self.parser = None
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(parser)

    def _fail(self, exc: Exception) -> None:
        self.parser = None
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    async def request(self, raw: bytes, parser: ResponseParser) -> ResponseParser:
        if self.closed or self.transport is None:
            raise ConnectionError("connection is closed")
        self.parser = parser
        self.waiter = asyncio.get_running_loop().create_future()
        parser.t_sent = now()
        self.transport.write(raw)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()


async def connect(host: str, port: int) -> Conn:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(Conn, host, port)
    return conn


# --- requests ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where a request goes: host, port and the path prefix before `/v1/messages`."""

    name: str
    host: str
    port: int
    prefix: str = ""

    @classmethod
    def from_url(cls, name: str, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"{name}: {url!r} must be an http:// URL")
        return cls(name, parts.hostname, parts.port or 80, parts.path.rstrip("/"))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.prefix}"


def build_request(
    endpoint: Endpoint,
    body: bytes,
    headers: dict[str, str],
    path: str = "/v1/messages",
    method: str = "POST",
) -> bytes:
    """The bytes of one HTTP/1.1 keep-alive request."""
    lines = [f"{method} {endpoint.prefix}{path} HTTP/1.1", f"Host: {endpoint.host}:{endpoint.port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def fetch(
    endpoint: Endpoint,
    body: bytes,
    headers: dict[str, str],
    sse: bool = False,
    limit: float = 30.0,
    path: str = "/v1/messages",
    method: str = "POST",
) -> ResponseParser:
    """One request on a fresh connection, body kept (set-up calls and tests)."""
    conn = await connect(endpoint.host, endpoint.port)
    try:
        raw = build_request(endpoint, body, headers, path, method)
        parser = ResponseParser(sse, keep_body=True)
        return await asyncio.wait_for(conn.request(raw, parser), limit)
    finally:
        conn.close()


# --- load: specs, workers, results ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LoadSpec:
    """What one phase sends.

    mode "closed": `concurrency` connections each send requests back to back from `start`
    until `start + warmup + duration`; only answers completed in the measured window
    (after the warm-up) count. Mode "streams": `concurrency` streams, opened evenly over
    `ramp` seconds, each held until its answer ends (or `timeout`).
    """

    endpoint: Endpoint
    request: bytes
    sse: bool
    concurrency: int
    duration: float = 5.0
    warmup: float = 0.0
    mode: str = "closed"
    ramp: float = 0.0
    timeout: float = 60.0
    collect_gaps: bool = False
    label: str = ""


# counters shared with the parent for progress lines, per worker
_DONE_I, _ERR_I, _EV_I, _OPEN_I = range(4)
_NCOUNTERS = 4


@dataclasses.dataclass
class WorkerResult:
    latency: array
    ttfb: array
    first_event: array
    gaps: array
    max_gaps: array
    events: int
    errors: int
    statuses: dict[int, int]
    error_samples: list[str]
    cpu: float  # user+system seconds of this worker inside the measured window
    window: float


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _closed_worker(
    spec: LoadSpec, conns: int, start: float, counters: Any, slot: int, result: WorkerResult
) -> None:
    measure_from = start + spec.warmup
    end = measure_from + spec.duration
    base = slot * _NCOUNTERS
    gaps = result.gaps if spec.collect_gaps else None

    async def one() -> None:
        conn: Conn | None = None
        while now() < end:
            try:
                if conn is None or conn.closed:
                    conn = await connect(spec.endpoint.host, spec.endpoint.port)
                if now() < start:
                    await asyncio.sleep(start - now())
                parser = await asyncio.wait_for(
                    conn.request(spec.request, ResponseParser(spec.sse, gaps=gaps)), spec.timeout
                )
            except (TimeoutError, OSError, ProtocolError) as exc:
                if conn is not None:
                    conn.close()
                conn = None
                counters[base + _ERR_I] += 1
                result.errors += 1
                if len(result.error_samples) < 5:
                    result.error_samples.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.05)
                continue
            if parser.will_close:
                conn.close()
                conn = None
            _record(parser, result, counters, base, measure_from, end)
        if conn is not None:
            conn.close()

    await asyncio.gather(*(one() for _ in range(conns)))


def _record(
    parser: ResponseParser, result: WorkerResult, counters: Any, base: int, measure_from: float, end: float
) -> None:
    counters[base + _DONE_I] += 1
    counters[base + _EV_I] += parser.events
    ok = parser.status == 200 and (not parser.sse or parser.events > 0)
    if not ok:
        counters[base + _ERR_I] += 1
    if not measure_from <= parser.t_done <= end:
        return
    result.statuses[parser.status] = result.statuses.get(parser.status, 0) + 1
    if not ok:
        result.errors += 1
        if len(result.error_samples) < 5:
            result.error_samples.append(f"HTTP {parser.status}: {bytes(parser.body[:200])!r}")
        return
    result.latency.append(parser.t_done - parser.t_sent)
    result.ttfb.append(parser.t_first_byte - parser.t_sent)
    if parser.sse:
        result.first_event.append(parser.t_first_event - parser.t_sent)
        result.max_gaps.append(parser.max_gap)
        result.events += parser.events


async def _streams_worker(
    spec: LoadSpec, slot: int, procs: int, start: float, counters: Any, result: WorkerResult
) -> None:
    base = slot * _NCOUNTERS
    gaps = result.gaps if spec.collect_gaps else None
    active: set[ResponseParser] = set()
    finished = [0]

    async def one(index: int) -> None:
        when = start + spec.ramp * index / total
        await asyncio.sleep(max(0.0, when - now()))
        conn: Conn | None = None
        opened = False
        parser = ResponseParser(spec.sse, gaps=gaps)
        try:
            conn = await connect(spec.endpoint.host, spec.endpoint.port)
            counters[base + _OPEN_I] += 1
            opened = True
            active.add(parser)
            parser = await asyncio.wait_for(conn.request(spec.request, parser), spec.timeout)
        except (TimeoutError, OSError, ProtocolError) as exc:
            counters[base + _ERR_I] += 1
            result.errors += 1
            if len(result.error_samples) < 5:
                result.error_samples.append(f"{type(exc).__name__}: {exc}")
            return
        finally:
            active.discard(parser)
            finished[0] += parser.events
            if opened:
                counters[base + _OPEN_I] -= 1
            if conn is not None:
                conn.close()
        _record(parser, result, counters, base, 0.0, float("inf"))

    async def live_events() -> None:  # progress lines: events of streams still open too
        while True:
            await asyncio.sleep(0.5)
            counters[base + _EV_I] = finished[0] + sum(p.events for p in active)

    total = spec.concurrency
    ticker = asyncio.create_task(live_events())
    # every `procs`-th stream, so the workers' streams interleave over the ramp
    await asyncio.gather(*(one(index) for index in range(slot, total, procs)))
    ticker.cancel()
    counters[base + _EV_I] = finished[0]


def raise_nofile(want: int) -> int:
    """Raise RLIMIT_NOFILE towards `want` (up to the hard limit); return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def _worker_main(
    spec: LoadSpec,
    share: int,
    slot: int,
    procs: int,
    start: float,
    counters: Any,
    pipe: multiprocessing.connection.Connection,
) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    raise_nofile(share * 2 + 256)
    result = WorkerResult(
        array("d"),
        array("d"),
        array("d"),
        array("d"),
        array("d"),
        events=0,
        errors=0,
        statuses={},
        error_samples=[],
        cpu=0.0,
        window=0.0,
    )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        marks: dict[str, float] = {}
        if spec.mode == "closed":
            window_from, window_to = start + spec.warmup, start + spec.warmup + spec.duration
        else:
            window_from, window_to = start, float("inf")
        if window_from > now():
            loop.call_at(loop.time() + window_from - now(), lambda: marks.setdefault("cpu0", _cpu()))
        else:
            marks["cpu0"] = _cpu()
        if spec.mode == "closed":
            loop.call_at(loop.time() + window_to - now(), lambda: marks.setdefault("cpu1", _cpu()))
            await _closed_worker(spec, share, start, counters, slot, result)
        else:
            await _streams_worker(spec, slot, procs, start, counters, result)
        marks.setdefault("cpu1", _cpu())
        result.cpu = marks["cpu1"] - marks.get("cpu0", marks["cpu1"])
        result.window = min(window_to, now()) - window_from

    try:
        asyncio.run(main())
        pipe.send(result)
    except BaseException as exc:  # the parent must hear about it, whatever it is
        pipe.send(f"{type(exc).__name__}: {exc}")
    finally:
        pipe.close()


@dataclasses.dataclass
class LoadResult:
    """A phase's merged measurements (seconds, counts)."""

    label: str
    latency: list[float]
    ttfb: list[float]
    first_event: list[float]
    gaps: list[float]
    max_gaps: list[float]
    requests: int
    events: int
    errors: int
    statuses: dict[int, int]
    error_samples: list[str]
    loadgen_cpu: float
    window: float
    peak_open: int = 0
    samples: list[dict[str, float]] = dataclasses.field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.window if self.window > 0 else 0.0

    @property
    def eps(self) -> float:
        return self.events / self.window if self.window > 0 else 0.0


Sampler = Callable[[float, int], dict[str, float] | None]


def run_load(
    spec: LoadSpec, procs: int = 1, sampler: Sampler | None = None, progress: bool = True, settle: float = 0.5
) -> LoadResult:
    """Run one phase in `procs` worker processes and merge their results.

    `sampler(t, open_streams)` is called about every 0.1 s while the phase runs (the
    scenario samples gateway RSS or CPU there); what it returns is kept in `samples`.
    """
    procs = max(1, min(procs, spec.concurrency))
    ctx = multiprocessing.get_context("fork")
    counters = ctx.RawArray("q", procs * _NCOUNTERS)
    start = now() + settle + 0.02 * procs
    workers = []
    pipes = []
    for slot in range(procs):
        share = spec.concurrency // procs + (1 if slot < spec.concurrency % procs else 0)
        parent_end, child_end = ctx.Pipe(duplex=False)
        proc = ctx.Process(
            target=_worker_main,
            args=(spec, share, slot, procs, start, counters, child_end),
            daemon=True,
        )
        proc.start()
        child_end.close()
        workers.append(proc)
        pipes.append(parent_end)
    results: list[WorkerResult] = []
    samples: list[dict[str, float]] = []
    peak_open = 0
    try:
        next_line = start + 1.0
        last_done = last_events = 0
        last_t = start
        pending = list(pipes)
        while pending:
            ready = multiprocessing.connection.wait(pending, timeout=0.1)
            for pipe in ready:
                assert isinstance(pipe, multiprocessing.connection.Connection)
                try:
                    message = pipe.recv()
                except EOFError:
                    message = "worker exited without a result"
                pending.remove(pipe)
                if isinstance(message, str):
                    raise RuntimeError(f"load worker failed: {message}")
                results.append(message)
            t = now()
            open_streams = sum(counters[i * _NCOUNTERS + _OPEN_I] for i in range(procs))
            peak_open = max(peak_open, open_streams)
            if sampler is not None and t >= start:
                sample = sampler(t - start, open_streams)
                if sample is not None:
                    samples.append(sample)
            if progress and t >= next_line:
                done = sum(counters[i * _NCOUNTERS + _DONE_I] for i in range(procs))
                events = sum(counters[i * _NCOUNTERS + _EV_I] for i in range(procs))
                errors = sum(counters[i * _NCOUNTERS + _ERR_I] for i in range(procs))
                span = t - last_t
                line = (
                    f"  {spec.label:<34} {t - start:5.1f}s  req {done:>8} "
                    f"({(done - last_done) / span:8.0f}/s)  ev {events:>9} "
                    f"({(events - last_events) / span:9.0f}/s)  err {errors}  open {open_streams}"
                )
                print(line, file=sys.stderr, flush=True)
                last_done, last_events, last_t = done, events, t
                next_line += 1.0
    finally:
        for proc in workers:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
    return merge(spec.label, results, peak_open, samples)


def merge(
    label: str, results: list[WorkerResult], peak_open: int = 0, samples: list[dict[str, float]] | None = None
) -> LoadResult:
    statuses: dict[int, int] = {}
    for r in results:
        for code, count in r.statuses.items():
            statuses[code] = statuses.get(code, 0) + count
    return LoadResult(
        label=label,
        latency=[x for r in results for x in r.latency],
        ttfb=[x for r in results for x in r.ttfb],
        first_event=[x for r in results for x in r.first_event],
        gaps=[x for r in results for x in r.gaps],
        max_gaps=[x for r in results for x in r.max_gaps],
        requests=sum(len(r.latency) for r in results),
        events=sum(r.events for r in results),
        errors=sum(r.errors for r in results),
        statuses=statuses,
        error_samples=[s for r in results for s in r.error_samples][:5],
        loadgen_cpu=sum(r.cpu for r in results),
        window=max((r.window for r in results), default=0.0),
        peak_open=peak_open,
        samples=samples or [],
    )


def process_cpu_seconds(pid: int) -> float:
    """utime+stime of one process from /proc/<pid>/stat, in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_rss_bytes(pid: int) -> int:
    """VmRSS of one process from /proc/<pid>/status, in bytes."""
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0
