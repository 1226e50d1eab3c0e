"""The Anthropic-name → Bedrock-id table as data: the shipped defaults
(`default_models.json`) overlaid by operator rows in PostgreSQL, swapped in whole when
the table changes (NOTIFY `ccproxy_models`), like the price table.

Service functions (`list_entries`, `set_entry`, `delete_entry`, `unmapped`) are what the
CLI and the admin API call; they take typed arguments and return msgspec Structs.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from pathlib import Path

import msgspec
import orjson
import structlog

from gateway import audit, db, errors

logger = structlog.get_logger("gateway.model_map")

DEFAULT_MODELS_PATH = Path(__file__).with_name("default_models.json")
NOTIFY_CHANNEL = "ccproxy_models"

# What may follow a map key for it to match: nothing, a date, `-latest`, or a suffix such
# as Claude Code's `[1m]`. So `claude-opus-4-20250514` maps as `claude-opus-4`, but an
# unknown `claude-opus-4-9` does not silently become Opus 4.
_ALIAS_TAIL = re.compile(r"(?:-\d{8}|-latest)?(?:[\[@].*)?")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-\[\]@]{0,199}")
_MODEL_ID = re.compile(r"\S{1,2048}")


class Entry(msgspec.Struct, frozen=True):
    """One mapping as the operator sees it; `source` is `default` (shipped) or `operator`."""

    anthropic_name: str
    bedrock_model_id: str
    source: str
    updated_at: dt.datetime | None = None


class Unmapped(msgspec.Struct, frozen=True):
    """A requested model name nothing maps, which Bedrock served with the default."""

    requested: str
    served_by: str
    requests: int
    first_seen: dt.datetime
    last_seen: dt.datetime


class Resolution(msgspec.Struct, frozen=True):
    """Which Bedrock model serves a request; `substituted` when the requested name is
    unknown and the configured default stands in (never silently, see relay)."""

    model_id: str
    substituted: bool = False


def default_entries() -> dict[str, str]:
    """The mapping that ships with the product."""
    data = orjson.loads(DEFAULT_MODELS_PATH.read_bytes())
    return {row["anthropic_name"]: row["bedrock_model_id"] for row in data["models"]}


DEFAULTS: Mapping[str, str] = default_entries()


def resolve(requested: str | None, key_model: str | None, default: str, mapping: Mapping[str, str]) -> Resolution:
    """The key's own model, else the mapping (longest matching name), else `default`."""
    if key_model:
        return Resolution(key_model)
    if requested:
        best = ""
        for name in mapping:
            if len(name) > len(best) and requested.startswith(name) and _ALIAS_TAIL.fullmatch(requested, len(name)):
                best = name
        if best:
            return Resolution(mapping[best])
        return Resolution(default, substituted=True)
    return Resolution(default)


async def load(database: db.Database) -> dict[str, str]:
    """Defaults, with operator rows winning (a NULL row hides a default)."""
    mapping = dict(DEFAULTS)
    for row in await database.fetch("list-model-map"):
        if row["bedrock_model_id"] is None:
            mapping.pop(row["anthropic_name"], None)
        else:
            mapping[row["anthropic_name"]] = row["bedrock_model_id"]
    return mapping


async def list_entries(database: db.Database) -> list[Entry]:
    """Every mapping in force, shipped and operator-set, by name."""
    rows = {r["anthropic_name"]: r for r in await database.fetch("list-model-map")}
    out: dict[str, Entry] = {name: Entry(name, model_id, "default") for name, model_id in DEFAULTS.items()}
    for name, row in rows.items():
        if row["bedrock_model_id"] is None:
            out.pop(name, None)
        else:
            out[name] = Entry(name, row["bedrock_model_id"], "operator", row["updated_at"])
    return [out[name] for name in sorted(out)]


def _check(name: str, model_id: str | None = None) -> None:
    if not _NAME.fullmatch(name):
        raise errors.InvalidRequest(
            f"model name {name!r} is not valid (1-200 characters: letters, digits, . _ : - [ ] @)"
        )
    if model_id is not None and not _MODEL_ID.fullmatch(model_id):
        raise errors.InvalidRequest("Bedrock model id must be 1-2048 characters without spaces")


async def set_entry(database: db.Database, actor: audit.Actor, anthropic_name: str, bedrock_model_id: str) -> Entry:
    """Map a name (operator row; replaces a default of the same name), with its audit row
    in the same transaction. Every instance picks it up within milliseconds (NOTIFY)."""
    _check(anthropic_name, bedrock_model_id)
    async with database.transaction() as conn:
        await conn.execute(db.q("upsert-model-map"), anthropic_name, bedrock_model_id)
        await audit.record(conn, actor, "model.set", "model", anthropic_name, {"bedrock_model_id": bedrock_model_id})
    return Entry(anthropic_name, bedrock_model_id, "operator", dt.datetime.now(dt.UTC))


async def delete_entry(database: db.Database, actor: audit.Actor, anthropic_name: str) -> Entry:
    """Remove a mapping: an operator row is deleted (a default of that name shows
    again); a default with no operator row is hidden. Returns what was removed."""
    _check(anthropic_name)
    current = {e.anthropic_name: e for e in await list_entries(database)}
    entry = current.get(anthropic_name)
    if entry is None:
        raise errors.NotFound(f"no mapping for model {anthropic_name!r}")
    async with database.transaction() as conn:
        if anthropic_name in DEFAULTS:
            # A shipped name would come back from the defaults: a NULL row hides it.
            await conn.execute(db.q("upsert-model-map"), anthropic_name, None)
        else:
            await conn.execute(db.q("delete-model-map"), anthropic_name)
        await audit.record(conn, actor, "model.delete", "model", anthropic_name)
    return entry


async def unmapped(database: db.Database, since: dt.datetime | None = None) -> list[Unmapped]:
    """Requested names that were served by the default model, with counts (since `since`,
    default: all time), most requested first."""
    start = since or dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    rows = await database.fetch("list-unmapped-models", start)
    return [
        Unmapped(r["requested"] or "", r["served_by"] or "", int(r["requests"]), r["first_seen"], r["last_seen"])
        for r in rows
    ]


class ModelMap:
    """The mapping in force in this process; `resolve()` is what the request path calls."""

    __slots__ = ("_db", "mapping")

    def __init__(self, database: db.Database | None = None) -> None:
        self._db = database
        self.mapping: Mapping[str, str] = DEFAULTS

    async def reload(self) -> None:
        if self._db is None:
            return
        try:
            self.mapping = await load(self._db)
        except Exception as exc:  # keep serving with the last good table
            logger.warning("model_map_reload_failed", error=type(exc).__name__)

    def resolve(self, requested: str | None, key_model: str | None, default: str) -> Resolution:
        return resolve(requested, key_model, default, self.mapping)

    def names(self) -> list[str]:
        """The Anthropic names Bedrock can serve here (for GET /v1/models on Bedrock)."""
        return sorted(name for name in self.mapping if name.startswith("claude"))
