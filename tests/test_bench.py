"""The bench suite: the load generator's HTTP/SSE parsing against the fake upstream, and
`python -m bench all --quick` end to end (every scenario measured, or skipped with a
reason)."""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from bench import fake_anthropic, loadgen, scenarios
from bench.loadgen import Endpoint, ResponseParser

REPO = Path(__file__).resolve().parent.parent
MODEL = "claude-sonnet-4-5-20250929"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_fake(*extra: str) -> Iterator[Endpoint]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_anthropic", "--port", str(port), *extra],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "fake did not start"
                time.sleep(0.05)
        yield Endpoint("direct", "127.0.0.1", port)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def fake() -> Iterator[Endpoint]:
    """The aiohttp fake: chunked streams, one chunk per event (or per split piece)."""
    yield from _start_fake()


@pytest.fixture(scope="module")
def fast_fake() -> Iterator[Endpoint]:
    yield from _start_fake("--fast")


def _body(stream: bool) -> bytes:
    return orjson.dumps(
        {"model": MODEL, "max_tokens": 64, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    )


def _headers(scenario: str, close: bool = False) -> dict[str, str]:
    headers = {
        "x-api-key": "sk-ant-bench",
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        "x-fake-scenario": scenario,
    }
    if close:
        headers["connection"] = "close"
    return headers


def _fetch(endpoint: Endpoint, scenario: str, stream: bool) -> ResponseParser:
    return asyncio.run(loadgen.fetch(endpoint, _body(stream), _headers(scenario), sse=stream))


def _raw_response(endpoint: Endpoint, scenario: str, stream: bool) -> bytes:
    """The exact bytes the fake sends for one request (read until it closes)."""
    raw = loadgen.build_request(endpoint, _body(stream), _headers(scenario, close=True))
    with socket.create_connection((endpoint.host, endpoint.port), timeout=10) as sock:
        sock.sendall(raw)
        data = bytearray()
        while chunk := sock.recv(65536):
            data += chunk
    return bytes(data)


def _feed(data: bytes, cuts: list[int]) -> ResponseParser:
    parser = ResponseParser(sse=True, keep_body=True)
    edges = [0, *sorted(cuts), len(data)]
    done = False
    for i, (a, b) in enumerate(itertools.pairwise(edges)):
        if a == b:
            continue
        done = parser.feed(data[a:b], float(i + 1))
        if done:
            break
    if not done:
        done = parser.feed_eof(float(len(edges)))
    assert done
    return parser


def _event_names(body: bytes) -> list[str]:
    return re.findall(r"^event: (\w+)$", body.decode(), flags=re.M)


# --- parsing against the fake -----------------------------------------------------------


def test_content_length_body_is_read_whole(fake: Endpoint, fast_fake: Endpoint) -> None:
    for endpoint in (fake, fast_fake):
        response = _fetch(endpoint, "text", stream=False)
        assert response.status == 200
        assert "chunked" not in response.headers.get("transfer-encoding", "")
        assert int(response.headers["content-length"]) == len(response.body)
        message = orjson.loads(bytes(response.body))
        assert message["content"][0]["text"] == fake_anthropic.TEXT
        assert response.events == 0


def test_chunked_stream_counts_every_event(fake: Endpoint, fast_fake: Endpoint) -> None:
    for endpoint in (fake, fast_fake):
        response = _fetch(endpoint, "events:20", stream=True)
        assert response.status == 200
        assert "chunked" in response.headers["transfer-encoding"].lower()
        names = _event_names(bytes(response.body))
        assert response.events == len(names) == 20 + 5
        assert names[0] == "message_start" and names[-1] == "message_stop"
        assert 0 < response.t_first_byte - response.t_sent <= response.t_done - response.t_sent


def test_events_split_across_reads_are_counted_once(fake: Endpoint) -> None:
    data = _raw_response(fake, "text", stream=True)
    whole = _feed(data, [])
    assert whole.events == len(_event_names(bytes(whole.body))) == 9
    # every read boundary, one at a time: inside the head, chunk sizes, CRLFs, "\n" "\n"
    for cut in range(1, len(data)):
        parsed = _feed(data, [cut])
        assert (parsed.events, bytes(parsed.body)) == (whole.events, bytes(whole.body)), cut
    one_byte = _feed(data, list(range(1, len(data))))
    assert (one_byte.events, bytes(one_byte.body)) == (whole.events, bytes(whole.body))
    rng = random.Random(5)
    for _ in range(50):
        cuts = rng.sample(range(1, len(data)), 12)
        assert _feed(data, cuts).events == whole.events


def test_split_writes_over_the_network_are_reassembled(fake: Endpoint) -> None:
    response = _fetch(fake, "split:7", stream=True)
    assert response.status == 200
    assert response.events == 9
    assert _event_names(bytes(response.body))[-1] == "message_stop"


def test_gaps_are_timed_per_event() -> None:
    events = [b"event: a\ndata: {}\n\n", b"event: b\ndata: {}\n\n", b"event: c\ndata: {}\n\n"]
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    gaps = loadgen.array("d")
    parser = ResponseParser(sse=True, gaps=gaps)
    assert not parser.feed(head + b"%x\r\n" % len(events[0]) + events[0] + b"\r\n", 1.0)
    # the second event's blank line arrives in the next read
    assert not parser.feed(b"%x\r\n" % len(events[1]) + events[1][:-1], 1.5)
    assert not parser.feed(b"\n\r\n" + b"%x\r\n" % len(events[2]) + events[2] + b"\r\n", 3.0)
    assert parser.feed(b"0\r\n\r\n", 3.0)
    assert parser.events == 3
    assert list(gaps) == [2.0, 0.0]
    assert parser.max_gap == 2.0 and parser.t_first_event == 1.0


def test_read_until_close_body() -> None:
    parser = ResponseParser(keep_body=True)
    assert not parser.feed(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhel", 1.0)
    assert not parser.feed(b"lo", 1.0)
    assert parser.feed_eof(2.0)
    assert bytes(parser.body) == b"hello" and parser.will_close


def test_fast_mode_sends_the_same_bodies(fake: Endpoint, fast_fake: Endpoint) -> None:
    def normal(body: bytes) -> bytes:
        return re.sub(rb"msg_fake\d+", b"msg_fakeN", body)

    for scenario, stream in (
        ("text", False),
        ("events:20", True),
        ("text", True),
        ("tool_use", True),
        ("thinking", False),
        ("usage_limit", False),
    ):
        slow = _fetch(fake, scenario, stream)
        quick = _fetch(fast_fake, scenario, stream)
        assert slow.status == quick.status, scenario
        assert normal(bytes(slow.body)) == normal(bytes(quick.body)), scenario
        assert slow.headers["request-id"] == quick.headers["request-id"]


@pytest.mark.parametrize("mode", ["aiohttp", "fast"])
def test_paced_events_arrive_paced(mode: str, fake: Endpoint, fast_fake: Endpoint) -> None:
    endpoint = fake if mode == "aiohttp" else fast_fake
    gaps = loadgen.array("d")

    async def go() -> ResponseParser:
        conn = await loadgen.connect(endpoint.host, endpoint.port)
        try:
            raw = loadgen.build_request(endpoint, _body(True), _headers("paced_events:5:20"))
            return await conn.request(raw, ResponseParser(sse=True, gaps=gaps))
        finally:
            conn.close()

    response = asyncio.run(go())
    assert response.status == 200 and response.events == 5 + 5
    assert response.t_done - response.t_first_event >= 9 * 0.020 * 0.9
    assert min(gaps) >= 0.010


def test_fake_default_can_be_set_per_phase(fast_fake: Endpoint) -> None:
    async def go() -> int:
        await loadgen.fetch(fast_fake, orjson.dumps({"scenario": "events:3"}), {}, path="/_fake/default")
        raw = loadgen.build_request(fast_fake, _body(True), _headers("") | {"x-fake-scenario": ""})
        conn = await loadgen.connect(fast_fake.host, fast_fake.port)
        try:
            return (await conn.request(raw, ResponseParser(sse=True))).events
        finally:
            conn.close()
            await loadgen.fetch(fast_fake, orjson.dumps({"scenario": "text"}), {}, path="/_fake/default")

    assert asyncio.run(go()) == 3 + 5


def test_a_load_phase_runs_in_worker_processes(fast_fake: Endpoint) -> None:
    raw = loadgen.build_request(fast_fake, _body(True), _headers("events:10"))
    spec = loadgen.LoadSpec(fast_fake, raw, True, concurrency=4, duration=0.5, warmup=0.1)
    result = loadgen.run_load(spec, procs=2, progress=False, settle=0.3)
    assert result.errors == 0 and result.requests > 10
    assert result.events == result.requests * 15
    assert result.loadgen_cpu > 0 and result.window == pytest.approx(0.5, abs=0.1)


# --- the suite, end to end --------------------------------------------------------------


def test_quick_suite_reports_every_scenario(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "all", "--quick", "--no-progress", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,  # ~100 s on the 2-core box, 20 of them the gateway under valgrind
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = orjson.loads((out / "report.json").read_bytes())
    assert (out / "report.md").exists()
    markdown = (out / "report.md").read_text()
    by_name = {s["name"]: s for s in report["scenarios"]}
    for name in scenarios.SCENARIOS:
        scenario = by_name[name]
        assert scenario["status"] in ("ok", "skipped"), (name, scenario.get("reason"))
        if scenario["status"] == "skipped":
            assert scenario["reason"], name
            assert "skipped" in markdown
            continue
        assert scenario["measures"], name
        for row in scenario["measures"]:
            assert {"name", "target", "value", "pass"} <= set(row), row
            assert row["name"] in markdown
        for png in scenario.get("plots", []):
            assert (out / png).stat().st_size > 1000
    assert report["quick"] is True
    assert report["machine"]["cores"]
    # The ratios are judged against the aiohttp-served fake; the same phases also ran
    # against the fast fake (on a gateway restarted to relay to it).
    throughput = by_name["throughput"]
    assert throughput["params"]["fake"] == scenarios.REFERENCE_FAKE == "aiohttp"
    assert throughput["params"]["strict_fake"] == scenarios.STRICT_FAKE == "fast"
    for group in ("nonstream", "stream", "nonstream, fast fake", "stream, fast fake"):
        for endpoint in ("direct", "gateway"):
            phase = throughput["phases"][group][endpoint]
            assert phase["requests"] > 0 and phase["errors"] == 0, (group, endpoint, phase)
    strict_rows = [row for row in throughput["measures"] if row["name"].endswith(", fast fake")]
    assert len(strict_rows) == 6 and all(row["target"] is None for row in strict_rows)
    # callgrind counted the second gateway's phases: real counts, not an empty dump's 0
    instructions = by_name["instructions"]
    if instructions["status"] == "ok":
        assert all(row["value"] > 1000 for row in instructions["measures"]), instructions["measures"]
