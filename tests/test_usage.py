"""Usage events: the in-memory queue, batched idempotent COPY, and reading them back (SPEC §5)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import aiohttp
import asyncpg
import msgspec
import orjson
import pytest
from conftest import RECENT_USAGE_FIELDS

from bench.fake_anthropic import FakeAnthropic
from gateway import config as config_mod
from gateway import db, usage, usage_reports, users

if TYPE_CHECKING:
    from conftest import Gateway

BODY = {"model": "claude-sonnet-4-5-20250929", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
PLAN = {"x-api-key": "sk-ant-developer-own-key", "anthropic-version": "2023-06-01"}


def event(n: int = 0, **overrides: Any) -> usage.UsageEvent:
    fields: dict[str, Any] = {
        "request_id": usage.new_request_id(),
        "created_at": usage.now(),
        "user_id": 1,
        "access_key_id": 1,
        "endpoint": "messages",
        "provider": "plan",
        "is_fallback": False,
        "model": "claude-sonnet-4-5-20250929",
        "upstream_model": "claude-sonnet-4-5-20250929",
        "status": 200,
        "error_class": None,
        "stream": True,
        "input_tokens": n,
        "output_tokens": 2 * n,
        "latency_ms": 12.5,
        "ttfb_ms": 3.25,
    }
    fields.update(overrides)
    return usage.UsageEvent(**fields)


async def open_database(dsn: str, **settings: str) -> db.Database:
    env = {"CCPROXY_DB_POOL_SIZE": "1", "CCPROXY_DB_MAX_OVERFLOW": "1", "CCPROXY_DB_POOL_TIMEOUT": "2"}
    env.update({f"CCPROXY_{k.upper()}": v for k, v in settings.items()})
    return await db.connect(config_mod.load(env), dsn)


async def count_rows(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM usage_events"))
    finally:
        await conn.close()


class CountingBatches:
    """Wraps usage.write_batch to record the size of every COPY batch."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sizes: list[int] = []
        real = usage.write_batch

        async def counted(connection: asyncpg.Connection, events: list[usage.UsageEvent], *args: Any) -> int:
            written = await real(connection, events, *args)
            self.sizes.append(len(events))
            return written

        monkeypatch.setattr(usage, "write_batch", counted)


def make_writer(database: Any, journal_dir: Path, **settings: int) -> usage.UsageWriter:
    """A UsageWriter; given a journal directory when this version of the writer takes one."""
    if "journal_dir" in inspect.signature(usage.UsageWriter).parameters:
        return usage.UsageWriter(database, journal_dir=journal_dir, **settings)
    return usage.UsageWriter(database, **settings)


@contextlib.asynccontextmanager
async def running(writer: usage.UsageWriter) -> AsyncIterator[None]:
    task = asyncio.create_task(writer.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(condition: Any, within: float) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            raise AssertionError(f"not within {within} s")
        await asyncio.sleep(0.005)
    return time.monotonic() - started


# --- request ids -----------------------------------------------------------------------------


def test_request_ids_are_uuidv7_with_the_current_time() -> None:
    before = time.time_ns() // 1_000_000
    values = [uuid.UUID(usage.new_request_id()) for _ in range(2000)]
    after = time.time_ns() // 1_000_000
    assert {value.version for value in values} == {7}
    assert {value.variant for value in values} == {uuid.RFC_4122}
    assert all(before <= value.int >> 80 <= after for value in values)
    # The variant nibble keeps two random bits: all four of its values turn up.
    assert {str(value)[19] for value in values} == set("89ab")


def test_request_ids_are_unique_and_time_ordered() -> None:
    ids = [usage.new_request_id() for _ in range(20000)]
    assert len(set(ids)) == len(ids)
    ordered = []
    for _ in range(5):
        ordered.append(usage.new_request_id())
        time.sleep(0.002)
    assert ordered == sorted(ordered)
    assert [uuid.UUID(i) for i in ordered] == sorted(uuid.UUID(i) for i in ordered)


# --- write_batch -------------------------------------------------------------------------------


async def test_a_batch_round_trips_every_field(database_url: str) -> None:
    full = event(
        5,
        cache_creation_input_tokens=1500,
        cache_creation_5m_tokens=1000,
        cache_creation_1h_tokens=500,
        cache_read_input_tokens=3000,
        cost_usd=Decimal("0.123456"),
        price_snapshot={"model": "m", "input": "3.00"},
        session_id="sess-1",
        ttfb_ms=None,
        provider="bedrock",
        is_fallback=True,
        error_class="usage_limit",
        status=200,
    )
    conn = await asyncpg.connect(database_url)
    try:
        await db._init_connection(conn)
        assert await usage.write_batch(conn, [full]) == 1
        row = dict(await conn.fetchrow("SELECT * FROM usage_events"))
    finally:
        await conn.close()
    assert str(row.pop("request_id")) == full.request_id
    assert row.pop("created_at") == full.created_at
    for name in usage.COLUMNS:
        if name in row:
            assert row[name] == getattr(full, name), name


async def test_writing_the_same_batch_twice_keeps_one_copy_of_each_row(database_url: str) -> None:
    batch = [event(i) for i in range(50)]
    conn = await asyncpg.connect(database_url)
    try:
        await db._init_connection(conn)
        assert await usage.write_batch(conn, batch) == 50
        assert await usage.write_batch(conn, batch) == 0
        # A replay overlapping with new rows writes only the new ones.
        assert await usage.write_batch(conn, [*batch[40:], event(99)]) == 1
        assert await conn.fetchval("SELECT count(*) FROM usage_events") == 51
        assert await conn.fetchval("SELECT count(DISTINCT request_id) FROM usage_events") == 51
    finally:
        await conn.close()


# --- the writer ----------------------------------------------------------------------------------


async def test_many_events_go_out_in_few_batches(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches = CountingBatches(monkeypatch)
    database = await open_database(database_url)
    writer = make_writer(database, tmp_path / "journal", batch_rows=500, flush_ms=50, queue_max=100_000)
    try:
        async with running(writer):
            for i in range(1000):
                writer.add(event(i))
            await until(lambda: writer.written == 1000, 3)
        assert sum(batches.sizes) == 1000
        assert len(batches.sizes) <= 3
        assert await count_rows(database_url) == 1000
    finally:
        await database.close()


async def test_the_writer_flushes_as_soon_as_batch_rows_are_queued(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches = CountingBatches(monkeypatch)
    database = await open_database(database_url)
    writer = make_writer(database, tmp_path / "journal", batch_rows=100, flush_ms=60_000, queue_max=100_000)
    try:
        async with running(writer):
            await asyncio.sleep(0.05)
            for i in range(99):
                writer.add(event(i))
            await asyncio.sleep(0.3)
            assert writer.written == 0  # below batch_rows and long before flush_ms
            writer.add(event(99))
            await until(lambda: writer.written == 100 and writer.queued == 0, 1)
            assert batches.sizes == [100]
    finally:
        await database.close()


async def test_a_burst_of_several_full_batches_is_written_without_waiting_for_flush_ms(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches = CountingBatches(monkeypatch)
    database = await open_database(database_url)
    writer = make_writer(database, tmp_path / "journal", batch_rows=100, flush_ms=60_000, queue_max=100_000)
    try:
        async with running(writer):
            for i in range(250):
                writer.add(event(i))
            # Two full batches are queued: both go out now; the 50 left wait for flush_ms.
            await until(lambda: writer.written >= 200 and writer.queued == 50, 1.5)
            assert batches.sizes == [100, 100]
    finally:
        await database.close()


async def test_the_writer_flushes_a_partial_batch_after_flush_ms(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches = CountingBatches(monkeypatch)
    database = await open_database(database_url)
    writer = make_writer(database, tmp_path / "journal", batch_rows=1000, flush_ms=100, queue_max=100_000)
    try:
        async with running(writer):
            for i in range(3):
                writer.add(event(i))
            took = await until(lambda: writer.written == 3, 1)
            assert took < 0.5
            assert batches.sizes == [3]
    finally:
        await database.close()


def test_add_never_touches_the_database(tmp_path: Path) -> None:
    class Untouchable:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"the request path touched the database ({name})")

    writer = make_writer(Untouchable(), tmp_path / "journal", batch_rows=10, flush_ms=1000, queue_max=1000)
    for i in range(1000):
        writer.add(event(i))
    assert writer.queued == 1000


async def test_close_flushes_everything_queued(tmp_path: Path, database_url: str) -> None:
    database = await open_database(database_url)
    writer = make_writer(database, tmp_path / "journal", batch_rows=100, flush_ms=60_000, queue_max=100_000)
    try:
        for i in range(345):
            writer.add(event(i))
        await writer.close(deadline=10)
        assert writer.queued == 0
        assert await count_rows(database_url) == 345
    finally:
        await database.close()


# --- the database goes away and comes back ----------------------------------------------------------


async def _connect_to_postgres(dsn: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a raw stream to the server a DSN names (a TCP host or a unix socket directory)."""
    parts = urlsplit(dsn)
    socket_dir = parse_qs(parts.query).get("host", [""])[0] or (parts.hostname or "")
    if socket_dir.startswith("/"):
        sockets = [p for p in Path(socket_dir).glob(".s.PGSQL.*") if not p.name.endswith(".lock")]
        return await asyncio.open_unix_connection(str(sockets[0]))
    return await asyncio.open_connection(parts.hostname, parts.port or 5432)


def _through(dsn: str, port: int) -> str:
    """The same database, reached over TCP at 127.0.0.1:port."""
    parts = urlsplit(dsn)
    query = "&".join(f"{k}={v[0]}" for k, v in parse_qs(parts.query).items() if k != "host")
    user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}", query=query))


class TcpProxy:
    """A loopback TCP forwarder that can be cut and restored, standing in for the network."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        await self.server.wait_closed()
        self.server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await _connect_to_postgres(self.dsn)
        except OSError:
            writer.transport.abort()
            return
        self.writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, ConnectionError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers.discard(writer)
        self.writers.discard(up_writer)


async def test_events_survive_an_unreachable_database_and_are_written_once_when_it_returns(
    tmp_path: Path,
    database_url: str,
) -> None:
    proxy = TcpProxy(database_url)
    await proxy.start()
    via_proxy = _through(database_url, proxy.port)
    database = await open_database(via_proxy, db_pool_timeout="0.5")
    writer = make_writer(database, tmp_path / "journal", batch_rows=10, flush_ms=20, queue_max=100_000)
    try:
        async with running(writer):
            for i in range(5):
                writer.add(event(i))
            await until(lambda: writer.written == 5, 2)
            await proxy.cut()
            for i in range(25):
                writer.add(event(100 + i))
            await until(lambda: writer.failures >= 1, 5)
            await asyncio.sleep(0.3)
            assert await count_rows(database_url) == 5  # nothing written while it is away
            await proxy.start()  # same port: the database is back
            took = time.monotonic()
            while await count_rows(database_url) < 30:
                assert time.monotonic() - took < 10, "events queued during the outage were not written"
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
        assert writer.queued == 0
        assert await count_rows(database_url) == 30  # every event, exactly once
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(database.close(), 2)
        if proxy.server is not None:
            await proxy.cut()


# --- through the gateway -----------------------------------------------------------------------


async def test_every_request_leaves_exactly_one_row_under_its_request_id(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    key = (await gateway.issue_key("alice"))["key"]

    async def one(i: int) -> str:
        body = orjson.dumps({**BODY, "stream": i % 2 == 0})
        headers = {**PLAN, "x-claude-code-session-id": f"sess-{i}"}
        async with http.post(f"{gateway.url}/ak/{key}/v1/messages", data=body, headers=headers) as resp:
            await resp.read()
            assert resp.status == 200
            return resp.headers["x-ccproxy-request-id"]

    ids = await asyncio.gather(*(one(i) for i in range(40)))
    assert len(set(ids)) == 40
    await asyncio.sleep(0.05)
    rows = await gateway.usage_rows()
    assert sorted(str(r["request_id"]) for r in rows) == sorted(ids)
    by_session = {r["session_id"]: r for r in rows}
    assert by_session["sess-0"]["stream"] is True
    assert by_session["sess-1"]["stream"] is False
    assert all(r["input_tokens"] == 25 and r["output_tokens"] == 12 for r in rows)


async def test_recent_lists_newest_first_with_the_documented_fields(
    gateway_factory: Any, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:
    gateway = await gateway_factory(fake[1])
    alice = await gateway.issue_key("alice")
    bob = await gateway.issue_key("bob")
    sent = []
    for issued in (alice, bob, alice):
        async with http.post(
            f"{gateway.url}/ak/{issued['key']}/v1/messages", data=orjson.dumps(BODY), headers=PLAN
        ) as resp:
            await resp.read()
            sent.append(resp.headers["x-ccproxy-request-id"])
        await asyncio.sleep(0.002)
    await gateway.flush_usage()
    await asyncio.sleep(0.05)
    await gateway.flush_usage()
    rows = [msgspec.structs.asdict(e) for e in await usage_reports.recent(gateway.database, limit=20)]
    assert [str(r["request_id"]) for r in rows] == sent[::-1]
    documented = RECENT_USAGE_FIELDS - {"user"}  # the CLI prints user_name as "user"
    assert documented <= set(rows[0])
    assert [r["user_name"] for r in rows] == ["alice", "bob", "alice"]
    assert rows[0]["access_key_prefix"] == alice["key"][:9]
    assert all(r["created_at"].tzinfo is not None for r in rows)
    assert rows[0]["created_at"] >= rows[1]["created_at"] >= rows[2]["created_at"]
    assert rows[0]["created_at"] > dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    latest = await usage_reports.recent(gateway.database, limit=2)
    assert [str(e.request_id) for e in latest] == sent[::-1][:2]
    bob = await users.get_by_name(gateway.database, "Bob")
    assert [e.user_name for e in await usage_reports.recent(gateway.database, limit=20, user_id=bob.id)] == ["bob"]
