"""`ccproxy serve`: run the application on uvloop, in one process or N sharing the port.

SIGTERM/SIGINT: stop accepting, give in-flight requests (streams included) up to
`drain_seconds`, then the cleanup contexts flush the usage queue; exit code 0.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
from types import FrameType

import structlog
import uvloop
from aiohttp import web

from gateway import db, log, server
from gateway.config import Config

logger = structlog.get_logger("gateway.serve")


def _serve_one(config: Config, index: int = 0) -> None:
    log.configure(config.log_level, buffered=True)
    logger.info(
        "gateway_starting",
        host=config.host,
        port=config.port,
        database="external" if config.database_url else "embedded",
        plan_base_url=config.plan_base_url,
    )
    web.run_app(
        # One usage journal per worker: a journal has exactly one writer process.
        server.create_app(config, journal_dir=config.data_path / "journal" / f"w{index}"),
        host=config.host,
        port=config.port,
        shutdown_timeout=config.drain_seconds,
        access_log=None,
        print=None,
        backlog=2048,
        reuse_port=config.workers > 1,
        loop=uvloop.new_event_loop(),
    )
    logger.info("gateway_stopped")


def run(config: Config) -> int:
    if config.workers == 1:
        _serve_one(config)
        return 0
    log.configure(config.log_level)
    # Start (or join) the embedded database and migrate once here, so workers only connect.
    dsn = config.database_url or db.embedded_dsn(config.data_path)
    asyncio.run(db.migrate_out_of_process(dsn))
    worker_config = config.replace(database_url=dsn)
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_serve_one, args=(worker_config, index)) for index in range(config.workers)]
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
