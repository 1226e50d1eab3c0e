"""The per-key plan circuit breaker (SPEC §3), shared by every instance through PostgreSQL.

Routing reads only memory: each instance holds the non-closed rows of `circuit_states`
and reloads a row when PostgreSQL NOTIFYs a change, so all instances agree within
milliseconds. Counting a failure and claiming the half-open probe are single SQL
statements, so instances failing at once cannot lose counts or probe twice. Writes run
in background tasks: the request that failed is already on its way to Bedrock.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import structlog

from gateway import audit, db, errors, log, paging, shared_state

logger = structlog.get_logger("gateway.circuit")

PLAN = "plan"  # closed: try the plan
OPEN = "open"  # skip the plan
PROBE_DUE = "probe_due"  # open period over: one request may probe the plan

COUNTED = frozenset({"rate_limit", "server_error"})  # SPEC §3's "counts toward circuit"


class _State:
    __slots__ = ("opened_at", "probe_started_at", "state", "version")

    def __init__(self, row: Any) -> None:
        self.state: str = row["state"]
        self.opened_at = row["opened_at"].timestamp() if row["opened_at"] else 0.0
        self.probe_started_at = row["probe_started_at"].timestamp() if row["probe_started_at"] else 0.0
        self.version: int = row["version"]


class Circuits(shared_state.KeyedStates):
    reload_failed = "circuit_reload_failed"

    def __init__(self, database: db.Database, *, failures: int, window: float, open_seconds: float) -> None:
        super().__init__()
        self._db = database
        self.failures = failures
        self.window = window
        self.open_seconds = open_seconds
        # A probe that never reported back (its instance died) may be re-claimed after this.
        self.probe_timeout = max(60.0, min(open_seconds, 600.0))
        self._states: dict[int, _State] = {}
        self.opened_total = 0

    # --- the request path (memory only) --------------------------------------------------

    def route(self, key_id: int, now: float) -> str:
        state = self._states.get(key_id)
        if state is None or state.state == "closed":
            return PLAN
        if state.state == "open":
            return PROBE_DUE if now >= state.opened_at + self.open_seconds else OPEN
        # half-open: someone is probing; wait for the result unless that probe is lost
        return PROBE_DUE if now >= state.probe_started_at + self.probe_timeout else OPEN

    def retry_after(self, key_id: int, now: float) -> int:
        state = self._states.get(key_id)
        if state is None:
            return 1
        return max(1, int(state.opened_at + self.open_seconds - now) + 1)

    def open_count(self) -> int:
        return sum(1 for s in self._states.values() if s.state != "closed")

    async def claim_probe(self, key_id: int) -> bool:
        """True when this request is the one half-open probe (across all instances)."""
        try:
            row = await self._db.fetchrow("claim-circuit-probe", key_id, self.open_seconds, self.probe_timeout)
        except Exception as exc:  # no database: keep the circuit open rather than guess
            logger.warning("circuit_probe_claim_failed", access_key_id=key_id, error=type(exc).__name__)
            return False
        if row is not None:
            self._apply(key_id, row)
        return row is not None

    def record_failure(self, key_id: int, error_class: str) -> None:
        if error_class in COUNTED:
            self.tasks.spawn(self._record_failure(key_id, error_class))

    def record_probe(self, key_id: int, ok: bool, error_class: str | None) -> None:
        self.tasks.spawn(self._record_probe(key_id, ok, error_class))

    # --- writes ----------------------------------------------------------------------------

    async def _record_failure(self, key_id: int, error_class: str) -> None:
        try:
            row = await self._db.fetchrow("record-circuit-failure", key_id, self.window, self.failures, error_class)
        except Exception as exc:
            logger.warning("circuit_write_failed", access_key_id=key_id, error=type(exc).__name__)
            return
        if row is not None:
            self._apply(key_id, row)
            if row["state"] == "open":
                self._opened(key_id, error_class)

    async def _record_probe(self, key_id: int, ok: bool, error_class: str | None) -> None:
        try:
            if ok:
                row = await self._db.fetchrow("close-circuit", key_id)
                logger.info("circuit_closed", access_key_id=key_id)
            else:
                row = await self._db.fetchrow("reopen-circuit", key_id, error_class)
                self._opened(key_id, error_class or "probe_failed")
            if row is not None:
                self._apply(key_id, row)
        except Exception as exc:
            logger.warning("circuit_write_failed", access_key_id=key_id, error=type(exc).__name__)

    def _opened(self, key_id: int, error_class: str) -> None:
        self.opened_total += 1
        logger.warning(
            "circuit_opened",
            access_key_id=key_id,
            error_class=error_class,
            open_seconds=self.open_seconds,
            **log.emf(log.CIRCUIT_METRICS, {"CircuitOpen": 1}),
        )

    async def drain(self) -> None:
        await self.tasks.drain()

    # --- keeping memory true -----------------------------------------------------------------

    def _apply(self, key_id: int, row: Any) -> None:
        """Take a row read from PostgreSQL unless memory already holds a newer version:
        reloads run concurrently and may answer out of order."""
        held = self._states.get(key_id)
        if held is None or row["version"] > held.version:
            self._states[key_id] = _State(row)

    async def reload_all(self) -> None:
        rows = await self._db.fetch("list-circuit-states")
        present = set()
        for row in rows:
            present.add(row["access_key_id"])
            self._apply(row["access_key_id"], row)
        for key_id in set(self._states) - present:
            del self._states[key_id]

    async def reload(self, key_id: int) -> None:
        row = await self._db.fetchrow("get-circuit-state", key_id)
        if row is None:
            self._states.pop(key_id, None)  # rows are only deleted with their access key
        else:
            self._apply(key_id, row)


# --- services for the CLI and the admin API --------------------------------------------------


class CircuitState(msgspec.Struct):
    access_key_id: int
    prefix: str
    user_name: str
    state: str
    failures: int
    opened_at: dt.datetime | None
    probe_started_at: dt.datetime | None
    last_error_class: str | None
    updated_at: dt.datetime


class CircuitReset(msgspec.Struct):
    access_key_id: int
    state: str


async def list_states(
    database: db.Database, limit: int = paging.DEFAULT_LIMIT, offset: int = 0
) -> paging.Page[CircuitState]:
    """Keys whose circuit is open or half-open."""
    rows, total = await paging.fetch(database, "list-open-circuits", (), limit, offset)
    return paging.Page(items=[db.as_struct(CircuitState, r) for r in rows], total=total, limit=limit, offset=offset)


async def reset(database: db.Database, actor: audit.Actor, key_id: int) -> CircuitReset:
    async with database.transaction() as conn:
        if await conn.fetchrow(db.q("close-circuit"), key_id) is None:
            if await conn.fetchrow(db.q("get-key"), key_id) is None:
                raise errors.NotFound(f"no access key with id {key_id}")
            raise errors.Conflict(f"access key {key_id} has no open circuit")
        await audit.record(conn, actor, "circuit.reset", "access_key", key_id, {"state": "closed"})
    return CircuitReset(access_key_id=key_id, state="closed")
