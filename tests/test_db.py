"""Named queries from sql/, migrations from migrations/, and the pool's limits."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from gateway import config as config_mod
from gateway import db

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _restore_queries() -> Iterator[None]:
    """load_queries() replaces the process-wide query table; put the real one back."""
    yield
    db.load_queries()


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


# --- load_queries ------------------------------------------------------------------------------


def test_named_blocks_are_loaded_by_name(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.sql",
        "-- A file comment before the first name is fine.\n\n"
        "-- name: get-thing\n-- a comment inside\nSELECT 1;\n\n"
        "-- name: list-things\nSELECT 2\nFROM t;\n",
    )
    write(tmp_path, "b.sql", "--name:   count-things  \nSELECT 3;\n")
    found = db.load_queries(tmp_path)
    assert set(found) == {"get-thing", "list-things", "count-things"}
    assert found["list-things"] == "SELECT 2\nFROM t;"
    assert "SELECT 1;" in found["get-thing"]
    assert db.q("count-things") == "SELECT 3;"


@pytest.mark.parametrize(
    ("files", "complaint"),
    [
        ({"a.sql": "-- name: get-thing\nSELECT 1;\n-- name: get-thing\nSELECT 2;\n"}, "duplicate"),
        ({"a.sql": "-- name: get-thing\nSELECT 1;\n", "b.sql": "-- name: get-thing\nSELECT 2;\n"}, "duplicate"),
        ({"a.sql": "-- name: GetThing\nSELECT 1;\n"}, "bad query name"),
        ({"a.sql": "-- name: get_thing\nSELECT 1;\n"}, "bad query name"),
        ({"a.sql": "-- name: thing\nSELECT 1;\n"}, "bad query name"),
        ({"a.sql": "-- name: get-thing;\nSELECT 1;\n"}, "bad query name"),
        ({"a.sql": "SELECT 0;\n-- name: get-thing\nSELECT 1;\n"}, "before the first"),
        ({"a.sql": "-- name: get-thing\n\n-- name: list-things\nSELECT 1;\n"}, "empty"),
        ({"a.sql": "-- name: get-thing\nSELECT 1;\n-- name: list-things\n-- only a comment\n"}, "empty"),
    ],
    ids=[
        "duplicate-in-file",
        "duplicate-across-files",
        "camel-case",
        "underscore",
        "no-verb",
        "punctuation",
        "sql-before-first-name",
        "empty-block",
        "comment-only-block",
    ],
)
def test_malformed_query_files_fail_loading(tmp_path: Path, files: dict[str, str], complaint: str) -> None:
    for name, text in files.items():
        write(tmp_path, name, text)
    with pytest.raises(db.QueryFileError, match=complaint):
        db.load_queries(tmp_path)


def test_a_missing_query_directory_fails_loading(tmp_path: Path) -> None:
    with pytest.raises(db.QueryFileError):
        db.load_queries(tmp_path / "nowhere")


def test_a_failed_load_keeps_the_previous_queries(tmp_path: Path) -> None:
    real = db.load_queries()
    write(tmp_path, "a.sql", "-- name: get-thing\nSELECT 1;\n-- name: get-thing\nSELECT 2;\n")
    with pytest.raises(db.QueryFileError):
        db.load_queries(tmp_path)
    some = next(iter(real))
    assert db.q(some) == real[some]


def test_the_shipped_sql_directory_loads() -> None:
    found = db.load_queries()
    assert found
    assert all(text.strip() for text in found.values())


_QUERY_USE = re.compile(r"\b(?:q|fetch|fetchrow|fetchval|execute|executemany)\(\s*\"([a-z0-9-]+)\"", re.S)


def _names_used_in_gateway() -> dict[str, list[str]]:
    used: dict[str, list[str]] = {}
    for path in sorted((REPO / "gateway").glob("*.py")):
        for name in _QUERY_USE.findall(path.read_text()):
            used.setdefault(name, []).append(path.name)
    return used


def test_every_query_name_used_by_the_gateway_exists() -> None:
    used = _names_used_in_gateway()
    assert len(used) >= 10  # the scan really finds the calls
    known = db.load_queries()
    missing = {name: files for name, files in used.items() if name not in known}
    assert not missing, f"query names used in gateway/ but not defined in sql/: {missing}"


_SQL_IN_PYTHON = re.compile(
    r"[\"'](\s*(SELECT\s+.+\s+FROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+(TABLE|INDEX)|"
    r"ALTER\s+TABLE|DROP\s+TABLE)\b)",
    re.I,
)


def test_no_sql_text_lives_in_the_gateway_package() -> None:
    offenders = [
        f"{path.name}: {match.group(0)[:60]}"
        for path in sorted((REPO / "gateway").glob("*.py"))
        for match in _SQL_IN_PYTHON.finditer(path.read_text())
    ]
    assert not offenders


async def test_every_named_query_is_valid_against_the_migrated_schema(database_url: str) -> None:
    """Prepared (parsed, planned, every table/column resolved) but never executed."""
    queries = db.load_queries()
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            # The usage staging table is per connection; the insert from it needs it to exist.
            if "create-usage-staging" in queries:
                await conn.execute(queries["create-usage-staging"])
            failures = {}
            for name, text in queries.items():
                try:
                    await conn.prepare(text)
                except asyncpg.PostgresError as exc:
                    failures[name] = f"{type(exc).__name__}: {exc}"
            assert not failures
    finally:
        await conn.close()


# --- migrations --------------------------------------------------------------------------------


@pytest.fixture
async def empty_database(pg_dsn: str) -> object:
    name = "m_" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    yield db.with_database(pg_dsn, name)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _schema(dsn: str) -> tuple[set[str], set[str], set[str]]:
    conn = await asyncpg.connect(dsn)
    try:
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            if not r["tablename"].startswith("_yoyo") and r["tablename"] != "yoyo_lock"
        }
        functions = {
            r["proname"]
            for r in await conn.fetch(
                "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = 'public'"
            )
        }
        applied = {r["migration_id"] for r in await conn.fetch("SELECT migration_id FROM _yoyo_migration")}
        return tables, functions, applied
    finally:
        await conn.close()


def _rollback_all(dsn: str) -> None:
    from yoyo import get_backend, read_migrations

    backend = get_backend(db._yoyo_uri(dsn))
    try:
        migrations = read_migrations(str(db.MIGRATIONS_DIR))
        with backend.lock():
            backend.rollback_migrations(backend.to_rollback(migrations))
    finally:
        backend.connection.close()


async def test_migrations_apply_roll_back_and_apply_again(empty_database: str) -> None:
    dsn = empty_database
    ids = db.migration_ids()
    assert ids and ids[0].startswith("0001")

    applied = await asyncio.to_thread(db.migrate, dsn)
    assert applied == ids
    tables, functions, done = await _schema(dsn)
    assert {"users", "access_keys", "usage_events"} <= tables
    assert done == set(ids)

    assert await asyncio.to_thread(db.migrate, dsn) == []  # nothing pending: a no-op

    await asyncio.to_thread(_rollback_all, dsn)
    tables, functions, done = await _schema(dsn)
    assert tables == set()
    assert functions == set()
    assert done == set()

    assert await asyncio.to_thread(db.migrate, dsn) == ids
    tables_again, _, done = await _schema(dsn)
    assert {"users", "access_keys", "usage_events"} <= tables_again
    assert done == set(ids)


async def test_rollup_pages_leave_room_for_in_place_updates(empty_database: str) -> None:
    # Every usage batch updates the same rollup rows: fillfactor 50 keeps them HOT updates.
    await asyncio.to_thread(db.migrate, empty_database)
    conn = await asyncpg.connect(empty_database)
    try:
        options = await conn.fetchval("SELECT reloptions FROM pg_class WHERE relname = 'usage_rollups'")
    finally:
        await conn.close()
    assert options == ["fillfactor=50"]


def test_every_migration_has_a_rollback() -> None:
    for migration_id in db.migration_ids():
        assert (db.MIGRATIONS_DIR / f"{migration_id}.rollback.sql").is_file(), migration_id


# Aurora PostgreSQL / RDS targets include PostgreSQL 15, so the schema and queries must
# not use anything newer. A plain grep list of the features most likely to slip in:
NEWER_THAN_PG15 = {
    r"\bMERGE\b[^;]*\bRETURNING\b": "MERGE … RETURNING (PG 17)",
    r"\bJSON_TABLE\s*\(": "JSON_TABLE (PG 17)",
    r"\bJSON_(EXISTS|QUERY|VALUE|SERIALIZE|SCALAR)\s*\(": "SQL/JSON query functions (PG 17)",
    r"\bJSON_(OBJECT|ARRAY|OBJECTAGG|ARRAYAGG)\s*\(": "SQL/JSON constructors (PG 16)",
    r"\bIS\s+(NOT\s+)?JSON\b": "IS JSON predicate (PG 16)",
    r"\bANY_VALUE\s*\(": "ANY_VALUE (PG 16)",
    r"\bSYSTEM_USER\b": "SYSTEM_USER (PG 16)",
    r"\buuidv7\s*\(": "uuidv7() (PG 18)",
    r"\bWITHOUT\s+OVERLAPS\b": "temporal keys (PG 18)",
    r"\bVIRTUAL\b": "virtual generated columns (PG 18)",
    r"\bRETURNING\b[^;]*\b(old|new)\.": "RETURNING old/new (PG 18)",
    r"\bON_ERROR\b": "COPY ON_ERROR (PG 17)",
    r"\bMAINTAIN\b": "MAINTAIN privilege (PG 17)",
    r"\brandom\s*\(\s*\d": "random(min, max) (PG 17)",
}


def test_sql_uses_nothing_newer_than_postgresql_15() -> None:
    files = sorted(db.MIGRATIONS_DIR.glob("*.sql")) + sorted(db.SQL_DIR.glob("*.sql"))
    assert files
    found = []
    for path in files:
        # Comments may mention anything.
        text = "\n".join(line.split("--", 1)[0] for line in path.read_text().splitlines())
        for pattern, feature in NEWER_THAN_PG15.items():
            if re.search(pattern, text, re.I | re.S):
                found.append(f"{path.name}: {feature}")
    assert not found


# --- the pool -----------------------------------------------------------------------------------


def _config(**env: str) -> config_mod.Config:
    return config_mod.load({f"CCPROXY_{k.upper()}": v for k, v in env.items()})


async def test_the_default_pool_is_five_plus_five_with_a_30_second_acquire_timeout(database_url: str) -> None:
    database = await db.connect(_config(), database_url)
    try:
        assert database.pool.get_min_size() == 5
        assert database.pool.get_max_size() == 10
        assert database.acquire_timeout == 30
    finally:
        await database.close()


async def test_the_pool_never_exceeds_size_plus_overflow(database_url: str) -> None:
    database = await db.connect(_config(db_pool_size="1", db_max_overflow="2", db_pool_timeout="0.3"), database_url)
    try:
        assert database.pool.get_max_size() == 3
        held = [await database.acquire().__aenter__() for _ in range(3)]
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            async with database.acquire():
                pass
        assert 0.25 <= time.monotonic() - started < 2
        for conn in held:
            await database.pool.release(conn)
        async with database.acquire() as conn:  # usable again once released
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await database.close()


async def test_server_connections_stay_within_the_limit_under_load(database_url: str) -> None:
    database = await db.connect(_config(db_pool_size="2", db_max_overflow="3"), database_url)
    name = db.urlsplit(database_url).path.lstrip("/")
    try:

        async def busy() -> None:
            async with database.acquire() as conn:
                await conn.execute("SELECT pg_sleep(0.05)")

        await asyncio.gather(*(busy() for _ in range(40)))
        assert database.pool.get_size() <= 5
        async with database.acquire() as conn:
            count = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", name
            )
        assert count <= 4
    finally:
        await database.close()


async def test_pooled_connections_are_recycled(database_url: str) -> None:
    database = await db.connect(_config(db_pool_size="1", db_max_overflow="0"), database_url)
    try:
        async with database.acquire() as conn:
            first = await conn.fetchval("SELECT pg_backend_pid()")
        recycler = asyncio.create_task(database.recycle_forever(0.05))
        await asyncio.sleep(0.2)
        recycler.cancel()
        async with database.acquire() as conn:
            second = await conn.fetchval("SELECT pg_backend_pid()")
        assert second != first
    finally:
        await database.close()


def test_the_pool_recycle_setting_defaults_to_1800_seconds() -> None:
    assert _config().db_pool_recycle == 1800
    assert _config(db_pool_recycle="60").db_pool_recycle == 60


# --- /ready and /health ---------------------------------------------------------------------------


async def test_ready_reports_an_outdated_schema(gateway_factory: object, fake: tuple[object, str]) -> None:
    import aiohttp

    gateway = await gateway_factory(fake[1])  # type: ignore[operator]
    async with aiohttp.ClientSession() as http:
        async with http.get(gateway.url + "/health") as resp:
            assert resp.status == 200
        async with http.get(gateway.url + "/ready") as resp:
            assert resp.status == 200
            assert (await resp.json())["status"] == "ready"
        last = db.migration_ids()[-1]
        async with gateway.database.acquire() as conn:
            await conn.execute("DELETE FROM _yoyo_migration WHERE migration_id = $1", last)
        async with http.get(gateway.url + "/ready") as resp:
            assert resp.status == 503
            body = await resp.json()
            assert last in body["missing"]
