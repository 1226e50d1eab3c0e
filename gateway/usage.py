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
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import structlog

from gateway import db, journal, ledger

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
    cost_usd: Decimal | None = Decimal(0)  # None: unpriced (no price for the model yet)
    price_snapshot: dict[str, Any] | None = None
    latency_ms: float = 0.0
    ttfb_ms: float | None = None
    session_id: str | None = None
    # The ledger (gateway/ledger.py): the same tokens at the provider's list price.
    list_cost_usd: Decimal | None = Decimal(0)
    list_price_id: int | None = None  # a plan row's list price, in price_snapshots (ledger.py)
    unpriced: bool = False
    region: str | None = None  # Bedrock's region (repricing needs it)
    plan_outcome: str | None = None  # why the plan did not answer: SPEC §3 class, circuit_open, quota_exhausted, …
    agent_id: str | None = None  # x-claude-code-agent-id (a subagent's requests)
    parent_agent_id: str | None = None  # x-claude-code-parent-agent-id
    model_substituted: bool = False  # Bedrock served an unmapped model name with the default


COLUMNS = tuple(UsageEvent.__struct_fields__)
# The staging table takes the two costs as integer micro-dollars (sql/usage.sql).
_COST = COLUMNS.index("cost_usd")
_LIST_COST = COLUMNS.index("list_cost_usd")
STAGING_COLUMNS = tuple(
    {"cost_usd": "cost_micros", "list_cost_usd": "list_cost_micros"}.get(name, name) for name in COLUMNS
)
_MILLION = Decimal(1_000_000)


def new_request_id() -> str:
    """A UUIDv7 (RFC 9562): time-ordered, so the unique index grows at its right edge.

    48 bits of Unix milliseconds and 80 random bits, as hex; the version nibble is then
    written as 7 and the variant's two bits as 10, leaving the 74 random bits the RFC asks
    for. String slicing, not 128-bit integer arithmetic: one per request (about 1 µs less)."""
    h = ((time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10)).hex()
    return f"{h[:8]}-{h[8:12]}-7{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


# A random hex digit → the same digit with its top two bits set to the RFC 4122 variant (10).
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


_encode_batch = msgspec.msgpack.Encoder().encode
_decode_batch = msgspec.msgpack.Decoder(list[UsageEvent]).decode


def _record(event: UsageEvent) -> list[Any]:
    record = list(msgspec.structs.astuple(event))
    cost, list_cost = record[_COST], record[_LIST_COST]
    # Costs are quantized to six decimals (pricing.py), so micro-dollars are exact. The
    # event keeps Decimals (pricing made integers, then Decimals) because the journal's
    # msgpack format and the budgets read them; the round trip costs ~0.5 µs a row.
    record[_COST] = None if cost is None else int(cost * _MILLION)
    record[_LIST_COST] = None if list_cost is None else int(list_cost * _MILLION)
    return record


async def write_batch(
    connection: asyncpg.Connection,
    events: list[UsageEvent],
    report_tz: str = "UTC",
    stored_snapshots: set[int] | None = None,
) -> int:
    """Write one batch idempotently, with its rollups; returns how many rows were new.
    The price snapshots its rows refer to are stored in the same transaction, except
    those in `stored_snapshots` (the caller's memory of what this database holds)."""
    records = [_record(e) for e in events]
    snapshots = {e.list_price_id for e in events if e.list_price_id is not None}
    if stored_snapshots is not None:
        snapshots -= stored_snapshots  # usually nothing left: a few ids, a set difference
    async with connection.transaction():
        if snapshots:
            await ledger.store_snapshots(connection, snapshots)
        await connection.execute(db.q("create-usage-staging"))
        await connection.copy_records_to_table("usage_staging", records=records, columns=STAGING_COLUMNS)
        new_rows = int(await connection.fetchval(db.q("insert-usage-from-staging"), report_tz))
    if stored_snapshots is not None:
        stored_snapshots.update(snapshots)
    return new_rows


class UsageWriter:
    """Bounded in-memory queue → batched COPY; flushes at `batch_rows` or `flush_ms`.

    When PostgreSQL is away (or the queue overflows `queue_max`) batches go to the local
    journal instead; it is replayed, oldest first, as soon as a write succeeds again.
    Replays are idempotent (unique request id), so a crash between a write and its
    journal acknowledgement cannot double a row.
    """

    def __init__(
        self,
        database: db.Database,
        *,
        batch_rows: int,
        flush_ms: int,
        queue_max: int,
        journal_dir: Path,
        report_tz: str = "UTC",
    ) -> None:
        self._db = database
        self._batch_rows = batch_rows
        self._flush_s = flush_ms / 1000
        self._queue_max = queue_max
        self._report_tz = report_tz
        self._journal = journal.Journal(journal_dir)
        self._buffer: list[UsageEvent] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._db_down_until = 0.0
        self._in_flight: list[list[UsageEvent]] = []
        self._snapshots: set[int] = set()  # price snapshot ids known to be in this database
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.journaled = 0
        self.failures = 0

    def add(self, event: UsageEvent) -> None:
        """Never blocks and never touches the database or the disk (the request path)."""
        self._buffer.append(event)
        if len(self._buffer) >= self._batch_rows:
            self._wake.set()

    @property
    def queued(self) -> int:
        """Events not yet committed: queued here or in a batch being written."""
        return len(self._buffer) + sum(len(batch) for batch in self._in_flight)

    def pending_events(self) -> list[UsageEvent]:
        """Events not yet in PostgreSQL (queued or being written); budgets keep counting
        their cost."""
        return [*self._buffer, *(event for batch in self._in_flight for event in batch)]

    @property
    def journal_pending(self) -> bool:
        return self._journal.pending()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run())

    async def run(self) -> None:
        """The flush loop. It is stopped by `close()`, never cancelled: a cancelled flush
        could drop a batch that was taken off the queue but not yet written anywhere."""
        if self._journal.pending():
            await self._replay()
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._flush_s):
                    await self._wake.wait()
            self._wake.clear()
            if self._closing:
                break
            await self.flush()

    async def flush(self) -> None:
        """Write what is queued: to PostgreSQL, else to the journal; then replay the journal."""
        while self._buffer:
            if len(self._buffer) > self._queue_max:
                # Overflow: spill the oldest beyond the bound to disk, never drop, never block.
                await self._to_journal(self._take(len(self._buffer) - self._queue_max))
                continue
            if time.monotonic() < self._db_down_until:
                if self._closing or len(self._buffer) >= self._batch_rows:
                    await self._to_journal(self._take(self._batch_rows))
                    continue
                return
            batches = [self._take(self._batch_rows)]
            if len(self._buffer) >= self._batch_rows:
                # A second batch on a second connection: our COPY encoding overlaps the
                # database's work on the first (rollup upserts commute, ids are unique).
                batches.append(self._take(self._batch_rows))
            # Off the queue but not yet committed: still counted as queued, and still
            # counted by budgets, until written to PostgreSQL or the journal.
            self._in_flight.extend(batches)
            try:
                results = await asyncio.gather(*(self._write(batch) for batch in batches))
                for batch, ok in zip(batches, results, strict=True):
                    if not ok:
                        await self._to_journal(batch)
            finally:
                for batch in batches:
                    self._in_flight.remove(batch)
            if len(self._buffer) < self._batch_rows and not self._closing:
                break
        if self._journal.pending() and time.monotonic() >= self._db_down_until:
            await self._replay()

    def _take(self, n: int) -> list[UsageEvent]:
        batch = self._buffer[:n]
        del self._buffer[:n]
        return batch

    async def _write(self, batch: list[UsageEvent]) -> bool:
        try:
            async with self._db.acquire() as connection:
                new_rows = await write_batch(connection, batch, self._report_tz, self._snapshots)
        except Exception as exc:  # the writer must outlive any failure; nothing is dropped
            self.failures += 1
            self._db_down_until = time.monotonic() + 1.0
            log.warning("usage_write_failed", error=type(exc).__name__, queued=len(self._buffer))
            return False
        self._db_down_until = 0.0
        self.written += new_rows  # after the await: concurrent writes must not lose counts
        return True

    async def _to_journal(self, batch: list[UsageEvent]) -> None:
        payload = _encode_batch(batch)
        # append() fsyncs; keep it off the event loop while the database is down under load.
        # Shielded: once a batch is off the queue, only the journal may hold it.
        await asyncio.shield(asyncio.get_running_loop().run_in_executor(None, self._journal.append, payload))
        self.journaled += len(batch)

    async def _replay(self) -> None:
        loop = asyncio.get_running_loop()
        records = await loop.run_in_executor(None, lambda: list(self._journal.replay()))
        done: list[int] = []
        current: int | None = None
        for segment, _index, payload in records:
            if current is not None and segment != current:
                done.append(current)
            current = segment
            if not await self._write(_decode_batch(payload)):
                break
        else:
            if current is not None:
                done.append(current)
        for segment in done:
            await loop.run_in_executor(None, self._journal.ack, segment)
        if done:
            log.info("usage_journal_replayed", segments=len(done))

    async def close(self, deadline: float = 30.0) -> None:
        """SIGTERM path: write everything queued to PostgreSQL, or to the journal if it is
        away, so that nothing is lost; replay the journal if the database is there."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task  # let a flush in progress finish where it is
            self._task = None
        give_up = time.monotonic() + deadline
        self._db_down_until = 0.0
        while self._buffer and time.monotonic() < give_up:
            batch = self._buffer[: self._batch_rows]
            if await self._write(batch):
                del self._buffer[: len(batch)]
            else:
                await self._to_journal(self._take(len(self._buffer)))
        if self._journal.pending() and self._db_down_until == 0.0:
            await self._replay()
        self._journal.close()
