"""`ccproxy serve`: run the application on uvloop, in one process or N sharing the port.

SIGTERM/SIGINT: stop accepting, give in-flight requests (streams included) up to
`drain_seconds`, then the cleanup contexts flush the usage queue; exit code 0.

Operator mistakes end in one line on stderr that says what to do (issue 16): a data
directory another `ccproxy serve` holds names its pid; a database that cannot be reached
is named by host, port and database (never its password) after retrying for
`db_connect_retry_seconds`.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import signal
import sys
import time
from types import FrameType
from urllib.parse import urlsplit

import asyncpg
import structlog
import uvloop
from aiohttp import web

from gateway import db, guard, journal, log, server
from gateway.config import Config

logger = structlog.get_logger("gateway.serve")

# The cyclic collector's first generation runs after 700 net container allocations, and
# one request's transient objects pass that, so at 5,000 requests/s it ran about 60 times
# a second for almost nothing (request objects die by reference count): 8-10 µs of CPU
# per request in the bench. At 20,000 it runs about once a minute there; cyclic garbage
# still collects within 20,000 objects.
GC_THRESHOLDS = (20_000, 20, 20)


def _settle_gc() -> None:
    """After start-up: the modules, the app and its caches live as long as the process,
    so move them out of the collector's view (a full collection scanned them all:
    40 ms of pause each in the bench), and collect rarely."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class StartupError(Exception):
    """Start-up failed in a way the operator can fix; the message says how (one line)."""


def describe_database(dsn: str) -> str:
    """host:port/database of a DSN, never its user or password."""
    parts = urlsplit(dsn)
    host = parts.hostname or "localhost"
    port = parts.port or 5432
    database = parts.path.lstrip("/") or "(default)"
    return f"{host}:{port}/{database}"


async def wait_for_database(dsn: str, retry_seconds: float) -> None:
    """Connect once to prove the database answers, retrying for `retry_seconds` (it may
    still be starting: a container, an Aurora resume). One log line per failed try."""
    deadline = time.monotonic() + retry_seconds
    delay = 0.5
    where = describe_database(dsn)
    while True:
        try:
            conn = await asyncpg.connect(dsn, timeout=5)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            reason = type(exc).__name__
            left = deadline - time.monotonic()
            if left <= 0:
                raise StartupError(
                    f"cannot reach the database at {where} ({reason}) after {retry_seconds:g} s; "
                    "check CCPROXY_DATABASE_URL and that PostgreSQL is running"
                ) from None
            logger.warning("database_unreachable", database=where, error=reason, retry_in=round(min(delay, left), 2))
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, 5.0)
        else:
            await conn.close()
            return


def _explain(exc: BaseException, config: Config) -> str | None:
    """The one line for a start-up failure the operator can fix, or None (a bug)."""
    if isinstance(exc, StartupError):
        return str(exc)
    if isinstance(exc, journal.JournalLockedError):
        text = str(exc)
        pid = text.split("pid ", 1)[1].split(")", 1)[0] if "pid " in text else "unknown"
        return (
            f"data directory {config.data_path} is in use by another ccproxy serve (pid {pid}); "
            "stop it, or give this one its own CCPROXY_DATA_DIR"
        )
    if isinstance(exc, OSError) and exc.errno in (98, 48):  # EADDRINUSE (Linux, macOS)
        return f"{config.host}:{config.port} is already in use; stop what listens there or set CCPROXY_PORT"
    if isinstance(exc, OSError | asyncpg.PostgresError | asyncpg.InterfaceError):
        where = describe_database(config.database_url) if config.database_url else "the embedded database"
        return f"cannot use {where}: {type(exc).__name__}; check CCPROXY_DATABASE_URL and the data directory"
    return None


async def _serve(config: Config, index: int) -> None:
    if config.database_url:
        await wait_for_database(config.database_url, config.db_connect_retry_seconds)
    # One usage journal per worker: a journal has exactly one writer process.
    app = server.create_app(config, journal_dir=config.data_path / "journal" / f"w{index}")
    runner = guard.GatewayRunner(app, config)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port, backlog=2048, reuse_port=config.workers > 1)
        await site.start()
        _settle_gc()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        logger.info("gateway_listening", host=config.host, port=config.port)
        await stop.wait()
        logger.info("gateway_draining", seconds=config.drain_seconds)
    finally:
        # Stops listening first (new connections are refused), lets in-flight requests
        # finish up to the drain deadline, then runs the cleanup contexts (usage flush).
        await runner.cleanup()


def _serve_one(config: Config, index: int = 0) -> int:
    log.configure(config.log_level, buffered=True)
    log.capture_stdlib(config.log_level)
    logger.info(
        "gateway_starting",
        host=config.host,
        port=config.port,
        database="external" if config.database_url else "embedded",
        plan_base_url=config.plan_base_url,
    )
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.get_loop().set_exception_handler(log.loop_exception_handler)
            runner.run(_serve(config, index))
    except Exception as exc:
        line = _explain(exc, config)
        if line is None:
            logger.error("gateway_failed", error=type(exc).__name__, where=guard.where(exc))
            log.flush()
            print(f"ccproxy serve: failed ({type(exc).__name__}); see the log line above", file=sys.stderr)
            return 1
        logger.error("gateway_cannot_start", reason=line)
        log.flush()
        print(f"ccproxy serve: {line}", file=sys.stderr)
        return 1
    logger.info("gateway_stopped")
    log.flush()
    return 0


def _worker(config: Config, index: int) -> None:
    sys.exit(_serve_one(config, index))


def run(config: Config) -> int:
    if config.workers == 1:
        return _serve_one(config)
    log.configure(config.log_level)
    # Start (or join) the embedded database and migrate once here, so workers only connect.
    dsn = config.database_url or db.embedded_dsn(config.data_path)
    try:
        if config.database_url:
            asyncio.run(wait_for_database(dsn, config.db_connect_retry_seconds))
        asyncio.run(db.migrate_out_of_process(dsn))
    except Exception as exc:
        line = _explain(exc, config)
        if line is None:
            raise
        print(f"ccproxy serve: {line}", file=sys.stderr)
        return 1
    worker_config = config.replace(database_url=dsn)
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_worker, args=(worker_config, index)) for index in range(config.workers)]
    for process in workers:
        process.start()

    def forward(signum: int, _frame: FrameType | None) -> None:
        for process in workers:
            if process.pid is not None and process.is_alive():
                process.terminate() if signum == signal.SIGTERM else process.kill()

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, lambda *_: forward(signal.SIGTERM, None))
    for process in workers:
        process.join()
    return 0 if all(p.exitcode == 0 for p in workers) else 1
