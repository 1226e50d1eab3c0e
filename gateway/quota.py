"""Quota-aware routing (SPEC §3): the plan's unified rate-limit state per access key.

Every plan response carries `anthropic-ratelimit-unified-*` headers: an overall `status`
(`allowed`, `allowed_warning`, `rejected`) and `reset` (Unix seconds), and per window
(`5h`, `7d`, per-model weekly ones, …) a `-status`, `-utilization` (0–1) and `-reset`.
They are read generically on every plan answer and the latest reading is kept per key in
memory. When the plan rejects a request and names a reset time, the key is routed
straight to Bedrock until then; the next request after the reset tries the plan again.

Shared like the circuit states: a change of routed-away status is written to
`quota_states` at once (its trigger NOTIFYs every instance, which reloads that row);
readings are written coalesced every few seconds for `ccproxy keys quota`, without NOTIFY,
so nothing is written per request.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import msgspec
import structlog

from gateway import db, errors, log, shared_state

logger = structlog.get_logger("gateway.quota")

NOTIFY_CHANNEL = "ccproxy_quota"
PREFIX = "anthropic-ratelimit-unified-"
_PREFIX_LEN = len(PREFIX)
REJECTED = "rejected"
QUOTA_METRICS = [
    {"Name": "QuotaRoutedKeys", "Unit": "Count"},
    {"Name": "QuotaMax5hUtilization", "Unit": "None"},
    {"Name": "QuotaMax7dUtilization", "Unit": "None"},
]
ROUTED_METRICS = [{"Name": "QuotaRouted", "Unit": "Count"}]


class Reading:
    """One response's unified headers. `windows` maps a window name to
    (status, utilization, reset) with None where a header was absent or unreadable."""

    __slots__ = ("reset", "status", "windows")

    def __init__(self) -> None:
        self.status: str | None = None
        self.reset: int | None = None
        self.windows: dict[str, list[Any]] = {}

    def rejected_reset(self, now: float) -> int | None:
        """When a rejecting plan's binding limit resets: the overall reset, else the
        latest reset of a rejected window, else the earliest future reset of any window
        (a usage-limit 429 that names resets but no status). None: no reset named."""
        if self.reset is not None and self.reset > now:
            return self.reset
        rejected = [w[2] for w in self.windows.values() if w[0] == REJECTED and w[2] is not None and w[2] > now]
        if rejected:
            return max(rejected)
        future = [w[2] for w in self.windows.values() if w[2] is not None and w[2] > now]
        return min(future) if future else None

    def windows_json(self) -> dict[str, dict[str, Any]]:
        return {
            name: {"status": status, "utilization": utilization, "reset": reset}
            for name, (status, utilization, reset) in self.windows.items()
        }


def _int(value: str) -> int | None:
    try:
        return int(float(value))
    except ValueError:
        return None


def _float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def parse(headers: list[tuple[str, str]]) -> Reading | None:
    """The unified rate-limit reading of one response's (lower-case) headers, or None
    when it has none: a prefix test per header and string splits, no regex. The request
    path parses only a 429 at once (`_State.reading`); other answers when first read."""
    reading: Reading | None = None
    for name, value in headers:
        if not name.startswith(PREFIX):
            continue
        if reading is None:
            reading = Reading()
        rest = name[_PREFIX_LEN:]
        if rest == "status":
            reading.status = value
            continue
        if rest == "reset":
            reading.reset = _int(value)
            continue
        window, _, field = rest.rpartition("-")
        if not window:
            continue
        if field == "utilization":
            slot = 1
            parsed: Any = _float(value)
        elif field == "reset":
            slot = 2
            parsed = _int(value)
        elif field == "status":
            slot = 0
            parsed = value
        else:
            continue  # e.g. -fallback-percentage, -representative-claim: not a window triple
        entry = reading.windows.get(window)
        if entry is None:
            entry = reading.windows[window] = [None, None, None]
        entry[slot] = parsed
    return reading


class _State:
    __slots__ = ("_parsed", "_reading", "dirty", "latest", "latest_at", "routed_until", "seen_at", "unified", "version")

    def __init__(self) -> None:
        self.unified: list[tuple[str, str]] = []  # the latest answer's unified headers
        self.latest: list[tuple[str, str]] | None = None  # an answer's headers, not yet looked at
        self.latest_at = 0.0
        self._parsed: list[tuple[str, str]] | None = None
        self._reading: Reading | None = None
        self.seen_at = 0.0
        self.routed_until = 0.0  # Unix seconds; 0: not routed
        self.version = 0
        self.dirty = False

    @property
    def reading(self) -> Reading | None:
        """The latest reading, taken from the headers when first asked for: the request
        path only keeps them (a 429 asks at once); the metrics and the flush ask every few
        seconds. An answer without unified headers leaves the reading before it."""
        latest = self.latest
        if latest is not None:
            self.latest = None
            unified = [pair for pair in latest if pair[0].startswith(PREFIX)]
            if unified:
                self.unified = unified
                self.seen_at = self.latest_at
        if self._parsed is not self.unified:
            self._reading = parse(self.unified) if self.unified else None
            self._parsed = self.unified
        return self._reading


def _ts(value: float | int | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(value, dt.UTC) if value else None


class Quotas(shared_state.KeyedStates):
    """The request path's memory of every key's quota state."""

    reload_failed = "quota_reload_failed"

    def __init__(self, database: db.Database, *, enabled: bool, flush_seconds: float) -> None:
        super().__init__()
        self._db = database
        self.enabled = enabled
        self.flush_seconds = flush_seconds
        self._states: dict[int, _State] = {}
        self.routed_total = 0
        self._next_gauges = 0.0

    # --- the request path (memory only) --------------------------------------------------

    def routed_until(self, key_id: int, now: float) -> float:
        """Unix seconds until which the key goes straight to Bedrock; 0.0 when it does not."""
        if not self.enabled:
            return 0.0
        state = self._states.get(key_id)
        if state is None or state.routed_until <= now:
            return 0.0
        return state.routed_until

    def observe(self, key_id: int, headers: list[tuple[str, str]], status: int, now: float) -> float:
        """Take one plan answer's headers. Returns the reset time when this answer routes
        the key to Bedrock (a 429 that names a reset), else 0.0.

        Only a 429 is read at once. Any other answer's headers are kept as they came and
        read when the reading is first asked for: a request pays two stores here, not a
        pass over its ~20 headers."""
        state = self._states.get(key_id)
        if status != 429:
            if state is None:
                state = self._states[key_id] = _State()
            state.latest = headers
            state.latest_at = now
            state.dirty = True
            if status < 400 and state.routed_until:
                self._clear(key_id, state)  # served again
            return 0.0
        unified = [pair for pair in headers if pair[0].startswith(PREFIX)]
        if not unified:
            return 0.0  # a 429 without the headers behaves as before
        if state is None:
            state = self._states[key_id] = _State()
        state.latest = None  # older than this answer
        state.unified = unified
        state.seen_at = now
        state.dirty = True
        reading = state.reading
        until = reading.rejected_reset(now) if self.enabled and reading is not None else None
        if reading is None or until is None:
            return 0.0  # a 429 without a reset behaves as before
        if until != state.routed_until:
            state.routed_until = float(until)
            self.routed_total += 1
            logger.warning(
                "quota_routed",
                access_key_id=key_id,
                routed_until=_ts(until),
                unified_status=reading.status,
                **log.emf(ROUTED_METRICS, {"QuotaRouted": 1}),
            )
            self.tasks.spawn(self._write_routed(key_id, state, reading, float(until)))
        return float(until)

    def _clear(self, key_id: int, state: _State) -> None:
        """The reset passed and the plan serves again: back to plan first, everywhere."""
        state.routed_until = 0.0
        logger.info("quota_route_cleared", access_key_id=key_id)
        self.tasks.spawn(self._write_routed(key_id, state, state.reading or Reading(), None))

    # --- metrics -----------------------------------------------------------------------------

    def routed_count(self, now: float) -> int:
        if not self.enabled:
            return 0
        return sum(1 for s in self._states.values() if s.routed_until > now)

    def max_utilization(self, window: str) -> float:
        best = 0.0
        for state in self._states.values():
            entry = state.reading.windows.get(window) if state.reading is not None else None
            if entry is not None and entry[1] is not None and entry[1] > best:
                best = entry[1]
        return best

    def gauges(self, now: float) -> dict[str, float]:
        return {
            "ccproxy_quota_routed_keys": float(self.routed_count(now)),
            "ccproxy_quota_max_5h_utilization": self.max_utilization("5h"),
            "ccproxy_quota_max_7d_utilization": self.max_utilization("7d"),
        }

    # --- writes ---------------------------------------------------------------------------------

    async def _write_routed(self, key_id: int, state: _State, reading: Reading, until: float | None) -> None:
        try:
            version = await self._db.fetchval(
                "upsert-quota-routing",
                key_id,
                reading.status,
                _ts(reading.reset),
                reading.windows_json(),
                _ts(until),
                _ts(state.seen_at or time.time()),  # a state loaded from another instance has no reading here
            )
        except Exception as exc:  # memory still routes this instance; the others ask the plan
            logger.warning("quota_write_failed", access_key_id=key_id, error=type(exc).__name__)
            return
        if version is not None and version > state.version:
            state.version = int(version)

    async def flush_readings(self) -> int:
        """Write the readings seen since the last flush, in one statement (no NOTIFY)."""
        ids: list[int] = []
        statuses: list[str | None] = []
        resets: list[dt.datetime | None] = []
        windows: list[dict[str, Any]] = []
        seen: list[dt.datetime | None] = []
        for key_id, state in self._states.items():
            if not state.dirty or state.reading is None:
                continue
            state.dirty = False
            ids.append(key_id)
            statuses.append(state.reading.status)
            resets.append(_ts(state.reading.reset))
            windows.append(state.reading.windows_json())
            seen.append(_ts(state.seen_at))
        if ids:
            await self._db.execute("upsert-quota-readings", ids, statuses, resets, windows, seen)
        return len(ids)

    async def flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                await self.flush_readings()
            except Exception as exc:
                logger.warning("quota_flush_failed", error=type(exc).__name__)
            now = time.monotonic()
            if self._states and now >= self._next_gauges:
                self._next_gauges = now + 60  # EMF gauges once a minute, as CloudWatch resolves them
                self._emit_gauges()

    def _emit_gauges(self) -> None:
        gauges = self.gauges(time.time())
        logger.info(
            "quota_state",
            **log.emf(
                QUOTA_METRICS,
                {
                    "QuotaRoutedKeys": gauges["ccproxy_quota_routed_keys"],
                    "QuotaMax5hUtilization": gauges["ccproxy_quota_max_5h_utilization"],
                    "QuotaMax7dUtilization": gauges["ccproxy_quota_max_7d_utilization"],
                },
            ),
        )

    async def drain(self) -> None:
        await self.tasks.drain()
        try:
            await self.flush_readings()
        except Exception as exc:
            logger.warning("quota_flush_failed", error=type(exc).__name__)

    # --- keeping memory true -----------------------------------------------------------------

    def _apply(self, key_id: int, row: Any) -> None:
        """Take the routed-away status of a row unless memory holds a newer version."""
        state = self._states.get(key_id)
        if state is None:
            state = self._states[key_id] = _State()
        if row["version"] > state.version:
            state.version = row["version"]
            until = row["routed_until"]
            state.routed_until = until.timestamp() if until is not None else 0.0

    async def reload_all(self) -> None:
        for row in await self._db.fetch("list-quota-routing"):
            self._apply(row["access_key_id"], row)

    async def reload(self, key_id: int) -> None:
        row = await self._db.fetchrow("get-quota-routing", key_id)
        if row is None:
            self._states.pop(key_id, None)  # rows are only deleted with their access key
        else:
            self._apply(key_id, row)


# --- services for the CLI and the admin API --------------------------------------------------


class WindowView(msgspec.Struct, frozen=True):
    status: str | None
    utilization: float | None
    reset: dt.datetime | None


class QuotaView(msgspec.Struct, frozen=True):
    """One key's quota state as last written by any instance (readings at most
    CCPROXY_QUOTA_FLUSH_SECONDS old; the routed-away status at once)."""

    access_key_id: int
    prefix: str
    user: str
    unified_status: str | None
    unified_reset: dt.datetime | None
    windows: dict[str, WindowView]
    routed_to_bedrock: bool
    routed_until: dt.datetime | None
    seen_at: dt.datetime


def _view(row: Any, now: dt.datetime) -> QuotaView:
    windows = {
        name: WindowView(
            status=w.get("status"),
            utilization=w.get("utilization"),
            reset=_ts(w.get("reset")),
        )
        for name, w in sorted((row["windows"] or {}).items())
    }
    until = row["routed_until"]
    routed = until is not None and until > now
    return QuotaView(
        access_key_id=row["access_key_id"],
        prefix=row["prefix"] + "…",
        user=row["user_name"],
        unified_status=row["unified_status"],
        unified_reset=row["unified_reset"],
        windows=windows,
        routed_to_bedrock=routed,
        routed_until=until if routed else None,
        seen_at=row["seen_at"],
    )


async def list_states(database: db.Database, user: str | None = None) -> list[QuotaView]:
    """Every key with a quota reading, optionally one user's (`GET /admin/quota`)."""
    if user is not None and await database.fetchrow("get-user-by-name", user) is None:
        raise errors.NotFound(f"no user named {user!r}")
    rows = await database.fetch("list-quota-states", user)
    now = dt.datetime.now(dt.UTC)
    return [_view(r, now) for r in rows]


async def get_state(database: db.Database, key_id: int) -> QuotaView | None:
    """One key's quota state (the key detail), None when the plan never reported one."""
    row = await database.fetchrow("get-quota-state", key_id)
    return _view(row, dt.datetime.now(dt.UTC)) if row is not None else None
