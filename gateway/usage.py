"""Usage events: one per request, queued in memory and written in batches with COPY.

The request path only appends to a list (`UsageWriter.add`); a background task moves
batches into PostgreSQL: COPY into a per-connection staging table, then
`INSERT … ON CONFLICT (request_id) DO NOTHING`, in one transaction — so a batch that is
written again (a retry after an unclear failure, a journal replay) never doubles a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import time
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
import structlog

from gateway import db

log = structlog.get_logger("gateway.usage")


class UsageEvent(msgspec.Struct, array_like=True):
    """One request's usage; fields in the column order of the usage_events table."""

    request_id: str
    created_at: dt.datetime
    user_id: int
    access_key_id: int
    endpoint: str
    provider: str  # plan | bedrock | none (rejected before any upstream)
    is_fallback: bool
    model: str | None
    upstream_model: str | None
    status: int
    error_class: str | None
    stream: bool
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_creation_5m_tokens: int = 0
    cache_creation_1h_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    price_snapshot: dict[str, Any] | None = None
    latency_ms: float = 0.0
    ttfb_ms: float | None = None
    session_id: str | None = None


COLUMNS = tuple(UsageEvent.__struct_fields__)


def new_request_id() -> str:
    """A UUIDv7 (RFC 9562): time-ordered, so the unique index grows at its right edge."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def write_batch(connection: asyncpg.Connection, events: list[UsageEvent]) -> int:
    """Write one batch idempotently; returns how many rows were new."""
    records = [msgspec.structs.astuple(e) for e in events]
    async with connection.transaction():
        await connection.execute(db.q("create-usage-staging"))
        await connection.copy_records_to_table("usage_staging", records=records, columns=COLUMNS)
        status = await connection.execute(db.q("insert-usage-from-staging"))
    return int(status.rsplit(" ", 1)[-1])


class UsageWriter:
    """Bounded in-memory queue → batched COPY; flushes at `batch_rows` or `flush_ms`."""

    def __init__(self, database: db.Database, *, batch_rows: int, flush_ms: int, queue_max: int) -> None:
        self._db = database
        self._batch_rows = batch_rows
        self._flush_s = flush_ms / 1000
        self._queue_max = queue_max
        self._buffer: list[UsageEvent] = []
        self._wake = asyncio.Event()
        self._closing = False
        self.written = 0
        self.failures = 0

    def add(self, event: UsageEvent) -> None:
        """Never blocks and never touches the database (called on the request path)."""
        self._buffer.append(event)
        if len(self._buffer) >= self._batch_rows:
            self._wake.set()

    @property
    def queued(self) -> int:
        return len(self._buffer)

    async def run(self) -> None:
        backoff = 0.1
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._flush_s)
            self._wake.clear()
            if not self._buffer:
                continue
            if await self._flush_once():
                backoff = 0.1
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _flush_once(self) -> bool:
        """Write up to one batch; on failure the events stay queued, in order."""
        batch = self._buffer[: self._batch_rows]
        try:
            async with self._db.acquire() as connection:
                self.written += await write_batch(connection, batch)
        except Exception as exc:  # the writer must outlive any failure; events stay queued
            self.failures += 1
            log.warning("usage_write_failed", error=type(exc).__name__, queued=len(self._buffer))
            return False
        del self._buffer[: len(batch)]
        return True

    async def close(self, deadline: float = 30.0) -> None:
        """Flush everything still queued (SIGTERM path), trying until the deadline."""
        self._closing = True
        self._wake.set()
        give_up = time.monotonic() + deadline
        while self._buffer and time.monotonic() < give_up:
            if not await self._flush_once():
                await asyncio.sleep(0.2)
        if self._buffer:
            log.error("usage_unwritten_at_exit", events=len(self._buffer))


async def recent(database: db.Database, limit: int = 20, user: str | None = None) -> list[dict[str, Any]]:
    rows = await database.fetch("list-recent-usage", limit, user)
    return [db.record_dict(r) for r in rows]
