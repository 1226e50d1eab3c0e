"""The per-key plan circuit breaker (SPEC §3) through in-process gateways on one real
PostgreSQL: what opens it, what it does while open, the half-open probe, agreement between
instances, and `ccproxy circuits list|reset`."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from conftest import Gateway, LogCapture, cli_env, run_cli

from bench.fake_anthropic import FakeAnthropic
from bench.fake_bedrock import FakeBedrock
from gateway import audit, circuit, keys, server
from gateway import config as config_mod

PLAN_HEADERS = {"x-api-key": "sk-ant-plan-credential-circuit-test", "anthropic-version": "2023-06-01"}
BODY = {"model": "claude-sonnet-4-5-20250929", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}


Start = Callable[..., Awaitable[Gateway]]


@pytest.fixture
def start(gateway_factory: Any, fake: tuple[FakeAnthropic, str], bedrock: FakeBedrock) -> Start:
    async def go(**settings: str) -> Gateway:
        settings.setdefault("bedrock_endpoint_url", bedrock.url)  # type: ignore[attr-defined]
        return await gateway_factory(fake[1], **settings)  # type: ignore[no-any-return]

    return go


async def second_instance(start: Start, first: Gateway, tmp_path: Path, **settings: str) -> Gateway:
    """Another gateway on the same database, as a separate task would be: its own data
    directory (journal), the same master key file (what a shared KMS key is in production)."""
    data = tmp_path / "second-instance"
    data.mkdir()
    master = first.config.data_path / "bedrock-master.key"
    shutil.copy2(master, data / master.name)
    return await start(data_dir=str(data), **settings)


async def issue(gw: Gateway, bedrock: FakeBedrock | None) -> dict[str, Any]:
    issued = await gw.issue_key("dev")
    if bedrock is not None:
        await keys.set_bedrock_key(gw.database, gw.app[server.KEYRING], audit.SYSTEM, issued["id"], bedrock.api_key)
    return issued


async def post(
    http: aiohttp.ClientSession, gw: Gateway, key: str, stream: bool = False
) -> tuple[int, dict[str, str], bytes]:
    url = f"{gw.url}/ak/{key}/v1/messages"
    async with http.post(url, data=orjson.dumps({**BODY, "stream": stream}), headers=PLAN_HEADERS) as resp:
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, await resp.read()


def route(gw: Gateway, key_id: int) -> str:
    return gw.app[server.CIRCUITS].route(key_id, time.time())


async def wait_route(gw: Gateway, key_id: int, expected: str, within: float = 1.0) -> float:
    """Poll the instance's in-memory routing until it says `expected`; returns the wait."""
    started = time.monotonic()
    while route(gw, key_id) != expected:
        waited = time.monotonic() - started
        assert waited < within, f"route is {route(gw, key_id)!r}, not {expected!r}, after {within} s"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def db_state(gw: Gateway, key_id: int) -> dict[str, Any] | None:
    async with gw.database.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM circuit_states WHERE access_key_id = $1", key_id)
    return dict(row) if row is not None else None


async def open_circuit(
    http: aiohttp.ClientSession, upstream: FakeAnthropic, gws: list[Gateway], key: dict[str, Any]
) -> None:
    """Three counted failures (429, 500, 529), spread over the given instances."""
    for index, scenario in enumerate(("status:429", "status:500", "status:529")):
        upstream.queue(scenario)
        await post(http, gws[index % len(gws)], key["key"])
    for gw in gws:
        await wait_route(gw, key["id"], circuit.OPEN)


# --- opening ---------------------------------------------------------------------------------------


async def test_three_counted_failures_open_it_and_then_bedrock_answers_without_the_plan(
    start: Start,
    fake: tuple[FakeAnthropic, str],
    bedrock: FakeBedrock,
    http: aiohttp.ClientSession,
    logs: LogCapture,
) -> None:
    upstream, _ = fake
    gw = await start()
    key = await issue(gw, bedrock)

    for n, scenario in enumerate(("status:429", "status:500"), 1):
        upstream.queue(scenario)
        status, headers, _ = await post(http, gw, key["key"])
        assert (status, headers["x-ccproxy-provider"]) == (200, "bedrock")
        await asyncio.sleep(0.1)  # the count is written in the background
        assert route(gw, key["id"]) == circuit.PLAN, f"open after {n} failure(s)"
    upstream.queue("status:529")
    assert (await post(http, gw, key["key"]))[0] == 200
    await wait_route(gw, key["id"], circuit.OPEN)
    state = await db_state(gw, key["id"])
    assert state is not None and (state["state"], state["failures"]) == ("open", 3)
    assert state["last_error_class"] == "server_error"

    plan_calls = len(upstream.requests)
    assert plan_calls == 3
    upstream.default = "text"  # the plan would answer now, but an open circuit skips it
    for stream in (False, True, False):
        status, headers, body = await post(http, gw, key["key"], stream)
        assert (status, headers["x-ccproxy-provider"]) == (200, "bedrock")
        assert b"Hello from" in body and (not stream or b"amazon-bedrock-invocationMetrics" in body)
    assert len(upstream.requests) == plan_calls
    assert len(bedrock.requests) == 6

    rows = await gw.usage_rows()
    assert [(r["provider"], r["is_fallback"], r["status"]) for r in rows] == [("bedrock", True, 200)] * 6
    lines = [line for line in logs.lines() if line.get("event") == "request_completed"]
    assert [line["plan_outcome"] for line in lines] == ["rate_limit", "server_error", "server_error"] + [
        "circuit_open"
    ] * 3
    assert [line["provider_attempted"] for line in lines[3:]] == ["bedrock"] * 3
    assert any(line.get("event") == "circuit_opened" for line in logs.lines())
    async with http.get(f"{gw.url}/metrics") as resp:
        assert "ccproxy_circuits_open 1" in await resp.text()


async def test_usage_limits_timeouts_network_and_client_errors_do_not_count(
    start: Start, fake: tuple[FakeAnthropic, str], bedrock: FakeBedrock, http: aiohttp.ClientSession
) -> None:
    upstream, _ = fake
    gw = await start(plan_first_byte_timeout="0.3", plan_nonstream_timeout="0.3")
    key = await issue(gw, bedrock)

    upstream.queue("status:500")  # counted: 1
    upstream.queue("usage_limit", "usage_limit", "usage_limit", "slow_headers:0.8", "reset", "reset")
    upstream.queue("status:400", "status:401", "status:403", "status:404")
    upstream.queue("status:429")  # counted: 2
    for _ in range(12):
        await post(http, gw, key["key"])
    await gw.app[server.CIRCUITS].drain()
    assert len(upstream.requests) == 12
    state = await db_state(gw, key["id"])
    assert state is not None and (state["state"], state["failures"]) == ("closed", 2)
    assert route(gw, key["id"]) == circuit.PLAN

    upstream.queue("status:529")  # counted: 3 — the plan was still called, so it is still closed
    await post(http, gw, key["key"])
    assert len(upstream.requests) == 13
    await wait_route(gw, key["id"], circuit.OPEN)


async def test_open_without_bedrock_is_503_overloaded_with_retry_after(
    start: Start, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:
    upstream, _ = fake
    gw = await start(circuit_open_seconds="120")
    key = await issue(gw, None)
    for scenario in ("status:500", "status:500", "status:500"):
        upstream.queue(scenario)
        status, headers, _ = await post(http, gw, key["key"])
        assert (status, headers["x-ccproxy-fallback"]) == (500, "unavailable")  # the plan's own error
    await wait_route(gw, key["id"], circuit.OPEN)

    for stream in (False, True):
        status, headers, body = await post(http, gw, key["key"], stream)
        assert status == 503
        error = orjson.loads(body)
        assert (error["type"], error["error"]["type"]) == ("error", "overloaded_error")
        assert error["request_id"] == headers["x-ccproxy-request-id"]
        assert 110 <= int(headers["retry-after"]) <= 121
        assert headers["x-ccproxy-fallback"] == "unavailable"
    assert len(upstream.requests) == 3
    rows = await gw.usage_rows()
    assert [(r["status"], r["error_class"]) for r in rows[3:]] == [(503, "overloaded_error")] * 2
    assert not any(r["is_fallback"] for r in rows)


async def test_a_late_stale_reload_does_not_close_an_open_circuit(
    start: Start, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:
    """Each NOTIFY makes the instance re-read the key's row; those reads run concurrently.
    A read taken before the circuit opened that arrives after it (a slow pool connection)
    must not put the instance back on the plan while PostgreSQL says open: nothing would
    correct it, since failures on an open row change nothing and so NOTIFY nobody."""
    upstream, _ = fake
    gw = await start()
    key = await issue(gw, None)
    database = gw.database
    original = database.fetchrow

    async def slow_closed_reads(name: str, *args: Any) -> Any:
        row = await original(name, *args)
        if name == "get-circuit-state" and row is not None and row["state"] == "closed":
            await asyncio.sleep(0.3)  # this (older) answer arrives late
        return row

    database.fetchrow = slow_closed_reads  # type: ignore[method-assign]
    try:
        for _ in range(3):
            upstream.queue("status:500")
            await post(http, gw, key["key"])
            await asyncio.sleep(0.05)  # the NOTIFY reload of this failure has read its row
        await wait_route(gw, key["id"], circuit.OPEN)
        await asyncio.sleep(0.6)  # every delayed read has landed
        state = await db_state(gw, key["id"])
        assert state is not None and state["state"] == "open"
        assert route(gw, key["id"]) == circuit.OPEN, "PostgreSQL says open, the instance routes to the plan"
        status, _, _ = await post(http, gw, key["key"])
        assert status == 503 and len(upstream.requests) == 3
    finally:
        del database.fetchrow


# --- half-open -------------------------------------------------------------------------------------------


async def test_after_the_open_period_exactly_one_probe_reaches_the_plan_and_success_closes(
    start: Start, fake: tuple[FakeAnthropic, str], bedrock: FakeBedrock, http: aiohttp.ClientSession
) -> None:
    upstream, _ = fake
    gw = await start(circuit_open_seconds="1")
    key = await issue(gw, bedrock)
    await open_circuit(http, upstream, [gw], key)
    assert (await post(http, gw, key["key"]))[1]["x-ccproxy-provider"] == "bedrock"
    assert len(upstream.requests) == 3

    await wait_route(gw, key["id"], circuit.PROBE_DUE, within=1.5)
    upstream.queue("slow_headers:0.4")  # the probe's plan answer is slow: the others overlap it
    answers = await asyncio.gather(*(post(http, gw, key["key"], stream=i % 2 == 1) for i in range(8)))

    assert len(upstream.requests) == 4, "exactly one probe reaches the plan"
    providers = sorted(headers["x-ccproxy-provider"] for _, headers, _ in answers)
    assert providers == ["bedrock"] * 7 + ["plan"]
    assert all(status == 200 for status, _, _ in answers)
    await wait_route(gw, key["id"], circuit.PLAN)
    assert ((await db_state(gw, key["id"])) or {"state": "closed"})["state"] == "closed"

    status, headers, _ = await post(http, gw, key["key"])
    assert (status, headers["x-ccproxy-provider"]) == (200, "plan")
    assert len(upstream.requests) == 5


async def test_failed_probe_reopens_and_a_later_probe_closes(
    start: Start, fake: tuple[FakeAnthropic, str], bedrock: FakeBedrock, http: aiohttp.ClientSession
) -> None:
    upstream, _ = fake
    gw = await start(circuit_open_seconds="1")
    key = await issue(gw, bedrock)
    await open_circuit(http, upstream, [gw], key)
    first = await db_state(gw, key["id"])
    assert first is not None

    await wait_route(gw, key["id"], circuit.PROBE_DUE, within=1.5)
    upstream.queue("status:503")
    status, headers, _ = await post(http, gw, key["key"])
    assert (status, headers["x-ccproxy-provider"]) == (200, "bedrock")  # the probe fell back
    assert len(upstream.requests) == 4
    await gw.app[server.CIRCUITS].drain()  # the probe's result is written in the background
    assert route(gw, key["id"]) == circuit.OPEN
    reopened = await db_state(gw, key["id"])
    assert reopened is not None and reopened["state"] == "open"
    assert reopened["opened_at"] > first["opened_at"]
    assert (await post(http, gw, key["key"]))[1]["x-ccproxy-provider"] == "bedrock"
    assert len(upstream.requests) == 4, "a reopened circuit skips the plan for another open period"

    await wait_route(gw, key["id"], circuit.PROBE_DUE, within=1.5)
    status, headers, body = await post(http, gw, key["key"], stream=True)  # the plan answers `text`
    assert (status, headers["x-ccproxy-provider"]) == (200, "plan")
    assert body == upstream.sent[-1]
    await wait_route(gw, key["id"], circuit.PLAN)
    assert ((await db_state(gw, key["id"])) or {"state": "closed"})["state"] == "closed"


# --- several instances, the CLI -----------------------------------------------------------------------------


async def test_two_instances_share_the_count_and_the_open_state_and_the_cli_resets_both(
    start: Start,
    fake: tuple[FakeAnthropic, str],
    bedrock: FakeBedrock,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    database_url: str,
) -> None:
    upstream, _ = fake
    gw_a = await start()
    key = await issue(gw_a, bedrock)
    gw_b = await second_instance(start, gw_a, tmp_path)

    # two failures on A, one on B: together they reach three
    for gw, scenario in ((gw_a, "status:500"), (gw_a, "status:429"), (gw_b, "status:529")):
        upstream.queue(scenario)
        assert (await post(http, gw, key["key"]))[0] == 200
        await gw.app[server.CIRCUITS].drain()
    for gw in (gw_a, gw_b):
        await wait_route(gw, key["id"], circuit.OPEN)
    for gw in (gw_a, gw_b, gw_a, gw_b):
        status, headers, _ = await post(http, gw, key["key"])
        assert (status, headers["x-ccproxy-provider"]) == (200, "bedrock")
    assert len(upstream.requests) == 3

    env = cli_env(tmp_path, database_url=database_url)
    listed = orjson.loads((await asyncio.to_thread(run_cli, env, "circuits", "list", "--json")).stdout)
    assert len(listed) == 1
    [entry] = listed
    assert (entry["access_key_id"], entry["state"], entry["failures"]) == (key["id"], "open", 3)
    assert (entry["user_name"], entry["last_error_class"]) == ("dev", "server_error")
    assert entry["prefix"] == key["key"][:9] + "…" and entry["opened_at"]
    assert key["key"] not in repr(listed)

    reset = await asyncio.to_thread(run_cli, env, "circuits", "reset", str(key["id"]), "--json")
    assert orjson.loads(reset.stdout) == {"access_key_id": key["id"], "state": "closed"}
    for gw in (gw_a, gw_b):
        await wait_route(gw, key["id"], circuit.PLAN, within=1.0)
        status, headers, _ = await post(http, gw, key["key"])
        assert (status, headers["x-ccproxy-provider"]) == (200, "plan")
    assert len(upstream.requests) == 5

    listed = orjson.loads((await asyncio.to_thread(run_cli, env, "circuits", "list", "--json")).stdout)
    assert listed == []
    again = await asyncio.to_thread(run_cli, env, "circuits", "reset", str(key["id"]), check=False)
    assert again.returncode == 1 and "no open circuit" in again.stderr


async def test_two_instances_send_exactly_one_probe_between_them(
    start: Start, fake: tuple[FakeAnthropic, str], bedrock: FakeBedrock, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    upstream, _ = fake
    gw_a = await start(circuit_open_seconds="1")
    key = await issue(gw_a, bedrock)
    gw_b = await second_instance(start, gw_a, tmp_path, circuit_open_seconds="1")
    await open_circuit(http, upstream, [gw_a, gw_b], key)

    for gw in (gw_a, gw_b):
        await wait_route(gw, key["id"], circuit.PROBE_DUE, within=1.5)
    upstream.queue("slow_headers:0.4")
    answers = await asyncio.gather(*(post(http, (gw_a, gw_b)[i % 2], key["key"]) for i in range(10)))
    assert len(upstream.requests) == 4, "exactly one probe across both instances"
    assert sorted(h["x-ccproxy-provider"] for _, h, _ in answers) == ["bedrock"] * 9 + ["plan"]
    for gw in (gw_a, gw_b):
        await wait_route(gw, key["id"], circuit.PLAN)


# --- settings -------------------------------------------------------------------------------------------------


def test_default_settings_are_the_specs_numbers() -> None:
    config = config_mod.load({})
    assert (config.circuit_failures, config.circuit_window_seconds, config.circuit_open_seconds) == (3, 60, 1800)
    custom = config_mod.load(
        {"CCPROXY_CIRCUIT_FAILURES": "5", "CCPROXY_CIRCUIT_WINDOW_SECONDS": "7", "CCPROXY_CIRCUIT_OPEN_SECONDS": "9"}
    )
    assert (custom.circuit_failures, custom.circuit_window_seconds, custom.circuit_open_seconds) == (5, 7, 9)


async def test_failures_window_and_open_period_settings_are_honoured(
    start: Start, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:
    upstream, _ = fake
    gw = await start(circuit_failures="2", circuit_window_seconds="1", circuit_open_seconds="2")
    circuits = gw.app[server.CIRCUITS]
    assert (circuits.failures, circuits.window, circuits.open_seconds) == (2, 1, 2)
    key = await issue(gw, None)

    upstream.queue("status:500")
    await post(http, gw, key["key"])
    await circuits.drain()
    await asyncio.sleep(1.1)  # the window has passed: the next failure starts a new one
    upstream.queue("status:500")
    await post(http, gw, key["key"])
    await circuits.drain()
    assert route(gw, key["id"]) == circuit.PLAN
    state = await db_state(gw, key["id"])
    assert state is not None and (state["state"], state["failures"]) == ("closed", 1)

    upstream.queue("status:500")  # two within one window: open (the setting, not SPEC's 3)
    await post(http, gw, key["key"])
    await wait_route(gw, key["id"], circuit.OPEN)
    status, headers, _ = await post(http, gw, key["key"])
    assert status == 503 and 1 <= int(headers["retry-after"]) <= 3
    assert len(upstream.requests) == 3

    await wait_route(gw, key["id"], circuit.PROBE_DUE, within=2.5)
    status, headers, _ = await post(http, gw, key["key"])  # the probe: plan answers `text`
    assert (status, headers["x-ccproxy-provider"]) == (200, "plan")
    await wait_route(gw, key["id"], circuit.PLAN)
