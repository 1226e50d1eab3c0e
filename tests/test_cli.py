"""`ccproxy` as an operator and a script use it: real subprocesses, against the embedded
PostgreSQL in a data directory (shared with a running `ccproxy serve`) or an external
database given as CCPROXY_DATABASE_URL (SPEC §7, §9)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import psutil
from conftest import RECENT_USAGE_FIELDS, cli_env, free_port, run_cli, start_serve, stop_serve

from bench.fake_anthropic import FakeAnthropic

KEY_RE = re.compile(r"^ak_[A-Za-z0-9_-]{43,}$")
MASKED_RE = re.compile(r"^ak_[A-Za-z0-9_-]{6}…$")
BODY = {"model": "claude-sonnet-4-5-20250929", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
PLAN = {"x-api-key": "sk-ant-developer-own-key", "anthropic-version": "2023-06-01"}


def cli_json(env: dict[str, str], *args: str) -> Any:
    result = run_cli(env, *args, "--json")
    return json.loads(result.stdout)


def fails(env: dict[str, str], *args: str, code: int = 1) -> str:
    """Run a command that must fail with `code`; return its stderr."""
    result = run_cli(env, *args, check=False)
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""
    return result.stderr


async def status_of(http: aiohttp.ClientSession, base: str, key: str, **extra: Any) -> tuple[int, str]:
    body = orjson.dumps({**BODY, **extra})
    async with http.post(f"{base}/ak/{key}/v1/messages", data=body, headers=PLAN) as resp:
        await resp.read()
        return resp.status, resp.headers.get("x-ccproxy-request-id", "")


async def wait_exit(process: subprocess.Popen[bytes], timeout: float) -> int:
    """Wait for a process without blocking the event loop (the fake upstream runs on it)."""
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("ccproxy serve did not exit in time")
        await asyncio.sleep(0.02)
    return process.returncode


def assert_no_full_keys(text: str, *full_keys: str) -> None:
    for key in full_keys:
        assert key not in text
        assert key[9:] not in text


# --- the embedded database, no server running --------------------------------------------------


def test_users_and_keys_on_the_embedded_database(open_tmp: Path) -> None:
    env = cli_env(open_tmp)
    assert not any(k == "CCPROXY_DATABASE_URL" for k in env)

    user = cli_json(env, "users", "create", "alice")
    assert isinstance(user["id"], int)
    assert (user["name"], user["status"]) == ("alice", "active")
    assert "already exists" in fails(env, "users", "create", "alice")
    assert "alice" in fails(env, "users", "create", "ALICE").lower()  # names are unique case-insensitively

    issued = cli_json(env, "keys", "issue", "--user", "alice")
    assert isinstance(issued["id"], int)
    assert KEY_RE.match(issued["key"])
    plain = run_cli(env, "keys", "issue", "--user", "alice", "--bedrock-region", "eu-west-1").stdout
    second = re.search(r"ak_[A-Za-z0-9_-]{43,}", plain)
    assert second is not None
    assert plain.count(second.group(0)) >= 1
    assert "only time" in plain

    table = run_cli(env, "keys", "list", "--user", "alice").stdout
    listed = cli_json(env, "keys", "list", "--user", "alice")
    assert_no_full_keys(table + json.dumps(listed), issued["key"], second.group(0))
    assert issued["key"][:9] + "…" in table
    assert [k["id"] for k in listed] == [issued["id"], issued["id"] + 1]
    assert all(MASKED_RE.match(k["prefix"]) for k in listed)
    assert [k["bedrock_region"] for k in listed] == [None, "eu-west-1"]
    assert all("key" not in k and "key_hash" not in k for k in listed)

    (row,) = cli_json(env, "users", "list")
    assert (row["name"], row["active_keys"]) == ("alice", 2)

    revoked = cli_json(env, "keys", "revoke", str(issued["id"]))
    assert revoked["status"] == "revoked"
    assert "already revoked" in fails(env, "keys", "revoke", str(issued["id"]))
    assert [k["status"] for k in cli_json(env, "keys", "list", "--user", "alice")] == ["revoked", "active"]

    secret = open_tmp / "data" / "key_hash_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600


# --- error paths ----------------------------------------------------------------------------------


def test_errors_are_one_line_messages_with_exit_codes(open_tmp: Path, database_url: str) -> None:
    env = cli_env(open_tmp, database_url=database_url)
    assert "'bob'" in fails(env, "keys", "issue", "--user", "bob")
    assert "'bob'" in fails(env, "keys", "list", "--user", "bob")
    assert "424242" in fails(env, "keys", "revoke", "424242")
    assert fails(env, "users", "create", "   ")


def test_bad_settings_exit_2_naming_the_setting(open_tmp: Path, database_url: str) -> None:
    env = cli_env(open_tmp, database_url=database_url)
    assert "CCPROXY_PORT" in fails({**env, "CCPROXY_PORT": "abc"}, "users", "list", code=2)
    assert "CCPROXY_PORT" in fails({**env, "CCPROXY_PORT": "abc"}, "serve", code=2)
    assert "CCPROXY_PROT" in fails({**env, "CCPROXY_PROT": "9000"}, "users", "list", code=2)
    assert "CCPROXY_REPORT_TZ" in fails({**env, "CCPROXY_REPORT_TZ": "Mars/Base"}, "users", "list", code=2)
    message = fails({**env, "CCPROXY_DATABASE_URL": "mysql://root:hunter2@db/x"}, "users", "list", code=2)
    assert "CCPROXY_DATABASE_URL" in message
    assert "hunter2" not in message


def test_an_unreachable_database_is_a_message_not_a_traceback(open_tmp: Path) -> None:
    env = cli_env(open_tmp, database_url=f"postgresql://nobody@127.0.0.1:{free_port()}/ccproxy")
    started = time.monotonic()
    assert "cannot use the database" in fails(env, "users", "list")
    assert "cannot use the database" in fails(env, "migrate")
    env["CCPROXY_DB_CONNECT_RETRY_SECONDS"] = "1"  # serve retries a while first (issue 16)
    serve = run_cli(env, "serve", "--port", str(free_port()), check=False)  # logs its start to stdout
    assert serve.returncode == 1
    assert serve.stderr.startswith("ccproxy serve: cannot reach the database at 127.0.0.1:"), serve.stderr
    assert time.monotonic() - started < 60


# --- usage recent -----------------------------------------------------------------------------------


async def test_usage_recent_lists_newest_first_with_the_documented_fields(
    open_tmp: Path, gateway_factory: Any, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:
    gateway = await gateway_factory(fake[1])
    alice = (await gateway.issue_key("alice"))["key"]
    bob = (await gateway.issue_key("bob"))["key"]
    sent = []
    for key, stream in ((alice, False), (bob, True), (alice, True)):
        status, request_id = await status_of(http, gateway.url, key, stream=stream)
        assert status == 200
        sent.append(request_id)
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)
    await gateway.flush_usage()
    await asyncio.sleep(0.05)

    env = cli_env(open_tmp, database_url=gateway.config.database_url)
    rows = cli_json(env, "usage", "recent", "--limit", "20")
    assert [r["request_id"] for r in rows] == sent[::-1]
    for row in rows:
        assert set(row) >= RECENT_USAGE_FIELDS, RECENT_USAGE_FIELDS - set(row)
        assert MASKED_RE.match(row["access_key_prefix"])
        assert row["provider"] == "plan"
        assert row["is_fallback"] is False
        assert (row["status"], row["input_tokens"], row["output_tokens"]) == (200, 25, 12)
    assert [r["user"] for r in rows] == ["alice", "bob", "alice"]
    assert [r["stream"] for r in rows] == [True, True, False]
    assert rows[0]["created_at"] >= rows[1]["created_at"] >= rows[2]["created_at"]
    assert [r["request_id"] for r in cli_json(env, "usage", "recent", "--limit", "2")] == sent[::-1][:2]
    assert [r["user"] for r in cli_json(env, "usage", "recent", "--user", "bob")] == ["bob"]
    table = run_cli(env, "usage", "recent").stdout
    assert "alice" in table and "bob" in table
    assert_no_full_keys(table + json.dumps(rows), alice, bob)
    assert fails(env, "usage", "recent", "--limit", "0", code=2)


# --- with `ccproxy serve` running on the same data directory ----------------------------------------


async def test_cli_works_while_serve_runs_on_the_same_embedded_data_dir(
    open_tmp: Path, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:
    env = cli_env(open_tmp, plan_base_url=fake[1], usage_flush_ms="50")
    cli_json(env, "users", "create", "alice")
    before = cli_json(env, "keys", "issue", "--user", "alice")["key"]  # secret generated by the CLI
    serve = start_serve(env, open_tmp / "serve.log", free_port())
    try:
        assert (await status_of(http, serve.url, before))[0] == 200

        issued = cli_json(env, "keys", "issue", "--user", "alice")
        assert (await status_of(http, serve.url, issued["key"]))[0] == 200  # immediately, first try
        assert cli_json(env, "users", "list")[0]["active_keys"] == 2
        assert len(cli_json(env, "keys", "list", "--user", "alice")) == 2

        cli_json(env, "keys", "revoke", str(issued["id"]))
        revoked_at = time.monotonic()
        while (await status_of(http, serve.url, issued["key"]))[0] != 404:
            assert time.monotonic() - revoked_at < 1.0, "revocation did not reach the running server within 1 s"
            await asyncio.sleep(0.01)
        assert (await status_of(http, serve.url, before))[0] == 200

        await asyncio.sleep(0.3)  # flush_ms is 50
        rows = cli_json(env, "usage", "recent", "--limit", "20")
        assert len(rows) >= 3
        assert set(rows[0]) >= RECENT_USAGE_FIELDS
        assert {r["user"] for r in rows} == {"alice"}
    finally:
        code = stop_serve(serve)
    assert code == 0
    # The CLI still works once the server (and with it the embedded PostgreSQL) is gone.
    assert cli_json(env, "users", "list")[0]["name"] == "alice"
    log_text = (open_tmp / "serve.log").read_text()
    assert_no_full_keys(log_text, before, issued["key"])
    assert "sk-ant-developer-own-key" not in log_text
    completed = [line for line in serve.log_lines() if line.get("event") == "request_completed"]
    assert len(completed) >= 4
    assert all(MASKED_RE.match(line["key_prefix"]) for line in completed)


async def test_sigterm_flushes_every_queued_usage_event_and_exits_0(
    open_tmp: Path, database_url: str, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:
    env = cli_env(
        open_tmp,
        database_url=database_url,
        plan_base_url=fake[1],
        usage_flush_ms="60000",
        usage_batch_rows="100000",
        drain_seconds="20",
    )
    cli_json(env, "users", "create", "alice")
    key = cli_json(env, "keys", "issue", "--user", "alice")["key"]
    serve = start_serve(env, open_tmp / "serve.log", free_port())
    try:
        # One slow stream is still in flight when SIGTERM arrives.
        fake[0].queue("pace:150")
        slow = await http.post(f"{serve.url}/ak/{key}/v1/messages", data=orjson.dumps({**BODY, "stream": True}))
        assert slow.status == 200
        results = await asyncio.gather(*(status_of(http, serve.url, key, stream=i % 2 == 0) for i in range(50)))
        assert all(status == 200 for status, _ in results)
        ids = {request_id for _, request_id in results} | {slow.headers["x-ccproxy-request-id"]}
        assert len(ids) == 51

        conn = await asyncpg.connect(database_url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM usage_events") == 0  # all still queued
        finally:
            await conn.close()

        serve.process.send_signal(signal.SIGTERM)
        body = await slow.read()  # the in-flight stream is allowed to finish
        slow.release()
        assert b"event: message_stop" in body
        assert await wait_exit(serve.process, 30) == 0
    finally:
        if serve.process.poll() is None:
            serve.process.kill()

    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT request_id::text AS id, count(*) AS n FROM usage_events GROUP BY 1")
    finally:
        await conn.close()
    assert {r["id"] for r in rows} == ids
    assert all(r["n"] == 1 for r in rows)
    listed = cli_json(env, "usage", "recent", "--limit", "100")
    assert {r["request_id"] for r in listed} == ids
    completed = [line for line in serve.log_lines() if line.get("event") == "request_completed"]
    assert sorted(line["request_id"] for line in completed) == sorted(ids)


def _answers_ready(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2) as sock:
        sock.sendall(b"GET /ready HTTP/1.0\r\n\r\n")
        return b" 200 " in sock.recv(100)
    return False


def test_serve_host_and_port_flags_override_the_environment(open_tmp: Path, database_url: str) -> None:
    env_port, flag_port = free_port(), free_port()
    env = cli_env(open_tmp, database_url=database_url, host="127.0.0.1", port=str(env_port))
    log = (open_tmp / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.2", "--port", str(flag_port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not _answers_ready("127.0.0.2", flag_port):
            assert process.poll() is None, (open_tmp / "serve.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "serve did not listen on the --host/--port given"
            time.sleep(0.1)
        assert not _answers_ready("127.0.0.1", env_port)
        assert not _answers_ready("127.0.0.1", flag_port)
        process.terminate()
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        log.close()


async def test_serve_with_two_workers_shares_the_port_and_meters_every_request(
    open_tmp: Path, database_url: str, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:
    env = cli_env(open_tmp, database_url=database_url, plan_base_url=fake[1], workers="2")
    cli_json(env, "users", "create", "alice")
    key = cli_json(env, "keys", "issue", "--user", "alice")["key"]
    serve = start_serve(env, open_tmp / "serve.log", free_port())
    try:
        workers = {p.pid for p in psutil.Process(serve.process.pid).children() if p.name().startswith("python")}
        assert len(workers) == 2
        # Fresh connections each time, so the kernel spreads them over both workers.
        results = []
        for i in range(40):
            async with aiohttp.ClientSession() as fresh:
                results.append(await status_of(fresh, serve.url, key, stream=i % 2 == 0))
        assert all(status == 200 for status, _ in results)
        serve.process.send_signal(signal.SIGTERM)
        assert await wait_exit(serve.process, 30) == 0
    finally:
        if serve.process.poll() is None:
            serve.process.kill()
    pids = {line["pid"] for line in serve.log_lines() if line.get("event") == "request_completed"}
    assert pids == workers, "both workers answered requests"
    listed = cli_json(env, "usage", "recent", "--limit", "100")
    assert {r["request_id"] for r in listed} == {request_id for _, request_id in results}


def test_after_start_up_the_collector_leaves_the_long_lived_objects_alone() -> None:
    import gc

    from gateway import serve

    before = gc.get_threshold()
    try:
        serve._settle_gc()
        assert gc.get_threshold() == serve.GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
