"""`ccproxy`: serve the gateway, migrate, and manage users, keys and usage from a shell.

Every management command goes through the same service functions the admin API uses,
against `CCPROXY_DATABASE_URL` or the embedded PostgreSQL in the data directory (shared
with a running `ccproxy serve`). `--json` prints machine-readable output for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import datetime as dt
import decimal
import os
import sys
import zoneinfo
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Literal

import asyncpg
import msgspec
import orjson

from gateway import (
    attribution,
    circuit,
    db,
    envelope,
    errors,
    keys,
    limits,
    model_map,
    price_table,
    pricing,
    teams,
    usage,
    users,
)
from gateway import config as config_mod


def _default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | memoryview):
        raise TypeError("refusing to print raw bytes")
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _print(data: Any, as_json: bool, columns: Sequence[str] | None = None) -> None:
    if as_json:
        sys.stdout.write(orjson.dumps(data, default=_default, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    rows = data if isinstance(data, list) else [data]
    if not rows:
        print("(none)")
        return
    cols = list(columns or rows[0].keys())
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


@contextlib.asynccontextmanager
async def _database(config: config_mod.Config) -> AsyncIterator[db.Database]:
    dsn = await db.resolve_dsn(config)
    db.load_queries()
    await db.migrate_async(dsn)
    # A CLI call needs one connection, not the server's pool.
    database = await db.connect(config.replace(db_pool_size=1, db_max_overflow=1), dsn)
    try:
        yield database
    finally:
        await database.close()


# --- commands --------------------------------------------------------------------------------


async def cmd_migrate(config: config_mod.Config, _args: argparse.Namespace) -> None:
    dsn = await db.resolve_dsn(config)
    applied = await db.migrate_async(dsn)
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))


async def cmd_users_create(config: config_mod.Config, args: argparse.Namespace) -> None:
    async with _database(config) as database:
        user = await users.create(database, args.name, args.description)
    _print(user, args.json, ["id", "name", "status", "created_at"])


async def cmd_users_list(config: config_mod.Config, args: argparse.Namespace) -> None:
    async with _database(config) as database:
        rows = await users.list_users(database, args.search, args.limit, args.offset)
    _print(rows, args.json, ["id", "name", "status", "team", "monthly_budget_usd", "active_keys", "created_at"])


def _limit_changes(args: argparse.Namespace) -> dict[str, Any]:
    """Only the options given on the command line become changes."""
    changes: dict[str, Any] = {}
    if args.monthly_budget is not None:
        changes["monthly_budget"] = limits.parse_budget(args.monthly_budget)
    if args.allow_models is not None:
        changes["allowed_models"] = limits.parse_models(args.allow_models)
    if args.alert_thresholds is not None:
        try:
            changes["alert_thresholds"] = [int(v) for v in args.alert_thresholds.split(",") if v.strip()]
        except ValueError:
            raise errors.InvalidRequest("--alert-thresholds takes percentages like 50,80,100") from None
    return changes


async def cmd_users_update(config: config_mod.Config, args: argparse.Namespace) -> None:
    changes = _limit_changes(args)
    if args.team is not None:
        changes["team"] = None if args.team.lower() in ("", "none") else args.team
    if args.description is not None:
        changes["description"] = args.description
    if not changes:
        raise errors.InvalidRequest("nothing to update (see ccproxy users update --help)")
    async with _database(config) as database:
        user = await users.update(database, args.name, **changes)
    _print(user, args.json, ["id", "name", "team_id", "monthly_budget_usd", "allowed_models", "alert_thresholds"])


async def cmd_teams_create(config: config_mod.Config, args: argparse.Namespace) -> None:
    changes = _limit_changes(args)
    changes.pop("alert_thresholds", None)
    async with _database(config) as database:
        team = await teams.create(database, args.name, description=args.description, **changes)
        if args.alert_thresholds is not None:
            team = await teams.update(database, args.name, alert_thresholds=_limit_changes(args)["alert_thresholds"])
    _print(team, args.json, ["id", "name", "monthly_budget_usd", "allowed_models", "alert_thresholds"])


async def cmd_teams_update(config: config_mod.Config, args: argparse.Namespace) -> None:
    changes = _limit_changes(args)
    if not changes:
        raise errors.InvalidRequest("nothing to update (see ccproxy teams update --help)")
    async with _database(config) as database:
        team = await teams.update(database, args.name, **changes)
    _print(team, args.json, ["id", "name", "monthly_budget_usd", "allowed_models", "alert_thresholds"])


async def cmd_teams_list(config: config_mod.Config, args: argparse.Namespace) -> None:
    async with _database(config) as database:
        rows = await teams.list_teams(database)
    _print(rows, args.json, ["id", "name", "members", "monthly_budget_usd", "allowed_models", "alert_thresholds"])


async def cmd_keys_issue(config: config_mod.Config, args: argparse.Namespace) -> None:
    hasher = keys.KeyHasher(keys.load_secret(config.key_hash_secret, config.data_path))
    async with _database(config) as database:
        issued = await keys.issue(
            database, hasher, args.user, bedrock_region=args.bedrock_region, bedrock_model=args.bedrock_model
        )
    if args.json:
        _print(issued, True)
        return
    print(f"Access key {issued['id']} for {issued['user']}:\n\n    {issued['key']}\n")
    print("This is the only time the full key is shown. Point Claude Code at it with")
    print(f"    ANTHROPIC_BASE_URL=http://{config.host}:{config.port}/ak/{issued['key']}")


async def cmd_keys_list(config: config_mod.Config, args: argparse.Namespace) -> None:
    async with _database(config) as database:
        rows = await keys.list_for_user(database, args.user)
    _print(rows, args.json, ["id", "prefix", "status", "bedrock_region", "bedrock_model", "created_at", "revoked_at"])


async def cmd_keys_revoke(config: config_mod.Config, args: argparse.Namespace) -> None:
    async with _database(config) as database:
        result = await keys.revoke(database, args.key_id)
    _print(result, args.json)


async def cmd_keys_update(config: config_mod.Config, args: argparse.Namespace) -> None:
    if all(v is None for v in (args.bedrock_region, args.bedrock_model, args.bedrock_default_credentials, args.rpm)):
        raise errors.InvalidRequest(
            "nothing to update: give --bedrock-region, --bedrock-model, --[no-]bedrock-default-credentials or --rpm"
        )
    if args.rpm is not None and args.rpm < 0:
        raise errors.InvalidRequest("--rpm must be 0 (no limit) or more")
    async with _database(config) as database:
        row = await keys.update_bedrock(
            database,
            args.key_id,
            region=args.bedrock_region,
            model=args.bedrock_model,
            default_credentials=args.bedrock_default_credentials,
            rpm_limit=args.rpm,
        )
    _print(row, args.json, ["id", "prefix", "status", "bedrock_region", "bedrock_model", "bedrock_default_credentials"])


async def cmd_keys_bedrock_key(config: config_mod.Config, args: argparse.Namespace) -> None:
    secret = None
    if not args.remove:
        # From stdin, never from argv: command lines end up in shell history and `ps`.
        secret = sys.stdin.readline()
        if not secret.strip():
            raise errors.InvalidRequest("no Bedrock API key on standard input")
    keyring = envelope.keyring_from_config(config)
    try:
        async with _database(config) as database:
            result = await keys.set_bedrock_key(database, keyring, args.key_id, secret)
    finally:
        close = getattr(keyring, "close", None)
        if close is not None:
            await close()
    _print(result, args.json)


async def cmd_circuits_list(config: config_mod.Config, args: argparse.Namespace) -> None:
    async with _database(config) as database:
        rows = await circuit.list_states(database)
    _print(
        rows, args.json, ["access_key_id", "prefix", "user_name", "state", "failures", "opened_at", "last_error_class"]
    )


async def cmd_circuits_reset(config: config_mod.Config, args: argparse.Namespace) -> None:
    async with _database(config) as database:
        result = await circuit.reset(database, args.key_id)
    _print(result, args.json)


PRICE_COLUMNS = [
    "model",
    "region",
    "input",
    "output",
    "cache_write_5m",
    "cache_write_1h",
    "cache_read",
    "effective_date",
]


async def cmd_pricing_list(config: config_mod.Config, args: argparse.Namespace) -> None:
    async with _database(config) as database:
        book = await price_table.load_book(database)
    _print([price_table.as_dict(p) for p in book.rows], args.json, PRICE_COLUMNS)


async def cmd_pricing_set(config: config_mod.Config, args: argparse.Namespace) -> None:
    row = {
        "model": args.model,
        "region": args.region,
        "input": args.input,
        "output": args.output,
        "cache_write_5m": args.cache_write_5m,
        "cache_write_1h": args.cache_write_1h,
        "cache_read": args.cache_read,
        "effective_date": args.effective_date or dt.date.today().isoformat(),
    }
    try:
        prices = pricing.load_rows(orjson.dumps([row]), "json")
    except ValueError as exc:
        raise errors.InvalidRequest(str(exc)) from None
    async with _database(config) as database:
        await price_table.upsert(database, prices)
    _print([price_table.as_dict(p) for p in prices], args.json, PRICE_COLUMNS)


async def cmd_pricing_import(config: config_mod.Config, args: argparse.Namespace) -> None:
    path = Path(args.file)
    fmt: Literal["json", "csv"] = "csv" if path.suffix.lower() == ".csv" else "json"
    try:
        prices = pricing.load_rows(path.read_bytes(), fmt)  # noqa: ASYNC240 - a CLI; nothing else runs
    except (OSError, ValueError) as exc:
        raise errors.InvalidRequest(f"{path}: {exc}") from None
    async with _database(config) as database:
        count = await price_table.upsert(database, prices)
    _print({"imported": count, "file": str(path)}, args.json)


USAGE_COLUMNS = [
    "created_at",
    "user",
    "access_key_prefix",
    "provider",
    "model",
    "status",
    "error_class",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "latency_ms",
]


async def cmd_usage_recent(config: config_mod.Config, args: argparse.Namespace) -> None:
    async with _database(config) as database:
        rows = await usage.recent(database, args.limit, args.user)
    for row in rows:
        row["request_id"] = str(row["request_id"])
        row["access_key_prefix"] = row["access_key_prefix"] + "…"
    _print(rows, args.json, USAGE_COLUMNS)


def _moment(raw: str | None, zone: zoneinfo.ZoneInfo, default: dt.datetime) -> dt.datetime:
    if raw is None:
        return default
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise errors.InvalidRequest(f"{raw!r} is not a date or date-time (YYYY-MM-DD[THH:MM])") from None
    return value if value.tzinfo else value.replace(tzinfo=zone)


async def cmd_usage_summary(config: config_mod.Config, args: argparse.Namespace) -> None:
    zone = zoneinfo.ZoneInfo(config.report_tz)
    local_now = dt.datetime.now(zone)
    month_start = local_now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    next_hour = local_now.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    since = _moment(args.since, zone, month_start)
    until = _moment(args.until, zone, next_hour)
    if args.by in attribution.GROUPINGS:
        await _attribution_summary(config, args, since, until)
        return
    async with _database(config) as database:
        result = await usage.summary(
            database,
            by=args.by,
            since=since,
            until=until,
            report_tz=config.report_tz,
            user=args.user,
            minute_rollup_days=config.minute_rollup_days,
        )
    if args.csv:
        writer = csv.writer(sys.stdout)
        columns = ["group_key", *result["totals"].keys()]
        writer.writerow([args.by, *columns[1:]])
        for row in result["groups"]:
            writer.writerow([row[c] for c in columns])
        writer.writerow(["TOTAL", *result["totals"].values()])
        return
    if args.json:
        _print(result, True)
        return
    rows = [*result["groups"], {"group_key": "TOTAL", **result["totals"]}]
    print(f"{result['since']} .. {result['until']} ({result['report_tz']}, from {result['granularity']} rollups)")
    _print(rows, False, ["group_key", "requests", "fallback_requests", "input_tokens", "output_tokens", "cost_usd"])


ATTRIBUTION_COLUMNS = ["group_key", "user", "requests", "input_tokens", "output_tokens", "cost_usd", "last_seen"]


async def _attribution_summary(
    config: config_mod.Config, args: argparse.Namespace, since: dt.datetime, until: dt.datetime
) -> None:
    """`usage summary --by session|agent`: from the events (the rollups lack those ids)."""
    async with _database(config) as database:
        groups = await attribution.summary(database, by=args.by, since=since, until=until, user=args.user)
    rows = [msgspec.structs.asdict(g) for g in groups]
    if args.csv:
        writer = csv.writer(sys.stdout)
        columns = list(attribution.Group.__struct_fields__)
        writer.writerow([args.by, *columns[1:]])
        for row in rows:
            writer.writerow([row[c] for c in columns])
        return
    _print(rows, args.json, ATTRIBUTION_COLUMNS)


MODEL_COLUMNS = ["anthropic_name", "bedrock_model_id", "source", "updated_at"]


async def cmd_models_list(config: config_mod.Config, args: argparse.Namespace) -> None:
    async with _database(config) as database:
        entries = await model_map.list_entries(database)
    _print([msgspec.structs.asdict(e) for e in entries], args.json, MODEL_COLUMNS)


async def cmd_models_set(config: config_mod.Config, args: argparse.Namespace) -> None:
    async with _database(config) as database:
        entry = await model_map.set_entry(database, args.name, args.bedrock_model_id)
    _print(msgspec.structs.asdict(entry), args.json)


async def cmd_models_delete(config: config_mod.Config, args: argparse.Namespace) -> None:
    async with _database(config) as database:
        entry = await model_map.delete_entry(database, args.name)
    _print({"deleted": args.name, "was": entry.bedrock_model_id, "source": entry.source}, args.json)


async def cmd_models_unmapped(config: config_mod.Config, args: argparse.Namespace) -> None:
    zone = zoneinfo.ZoneInfo(config.report_tz)
    since = _moment(args.since, zone, dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) if args.since else None
    async with _database(config) as database:
        rows = await model_map.unmapped(database, since)
    _print([msgspec.structs.asdict(r) for r in rows], args.json, ["requested", "served_by", "requests", "last_seen"])


def cmd_serve(config: config_mod.Config, args: argparse.Namespace) -> int:
    from gateway import serve  # the server's imports are not needed by other commands

    return serve.run(config)


# --- argument parsing ---------------------------------------------------------------------------


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ccproxy", description="ClaudeCodeProxy gateway")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--host", help="listen address (CCPROXY_HOST)")
    serve.add_argument("--port", type=int, help="listen port (CCPROXY_PORT)")
    serve.add_argument("--workers", type=_positive_int, help="processes sharing the port (CCPROXY_WORKERS)")
    serve.set_defaults(sync=cmd_serve)

    sub.add_parser("migrate", help="apply database migrations").set_defaults(run=cmd_migrate)

    users_p = sub.add_parser("users", help="manage users").add_subparsers(dest="action", required=True)
    create = users_p.add_parser("create", help="create a user")
    create.add_argument("name")
    create.add_argument("--description")
    create.add_argument("--json", action="store_true")
    create.set_defaults(run=cmd_users_create)
    list_u = users_p.add_parser("list", help="list users")
    list_u.add_argument("--search")
    list_u.add_argument("--limit", type=_positive_int, default=100)
    list_u.add_argument("--offset", type=int, default=0)
    list_u.add_argument("--json", action="store_true")
    list_u.set_defaults(run=cmd_users_list)

    def limit_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--monthly-budget", help="Bedrock USD per calendar month, or 'none' for unlimited")
        p.add_argument("--allow-models", help="comma-separated patterns like 'claude-sonnet-*', or 'all'")
        p.add_argument("--alert-thresholds", help="budget percentages that alert, e.g. 80,100")

    update_u = users_p.add_parser("update", help="change a user's budget, team, model allow-list")
    update_u.add_argument("name")
    update_u.add_argument("--team", help="team name, or 'none'")
    update_u.add_argument("--description")
    limit_options(update_u)
    update_u.add_argument("--json", action="store_true")
    update_u.set_defaults(run=cmd_users_update)

    teams_p = sub.add_parser("teams", help="manage teams").add_subparsers(dest="action", required=True)
    create_t = teams_p.add_parser("create", help="create a team")
    create_t.add_argument("name")
    create_t.add_argument("--description")
    limit_options(create_t)
    create_t.add_argument("--json", action="store_true")
    create_t.set_defaults(run=cmd_teams_create)
    update_t = teams_p.add_parser("update", help="change a team's budget or model allow-list")
    update_t.add_argument("name")
    limit_options(update_t)
    update_t.add_argument("--json", action="store_true")
    update_t.set_defaults(run=cmd_teams_update)
    list_t = teams_p.add_parser("list", help="list teams")
    list_t.add_argument("--json", action="store_true")
    list_t.set_defaults(run=cmd_teams_list)

    keys_p = sub.add_parser("keys", help="manage access keys").add_subparsers(dest="action", required=True)
    issue = keys_p.add_parser("issue", help="issue an access key (shown once)")
    issue.add_argument("--user", required=True)
    issue.add_argument("--bedrock-region")
    issue.add_argument("--bedrock-model")
    issue.add_argument("--json", action="store_true")
    issue.set_defaults(run=cmd_keys_issue)
    list_k = keys_p.add_parser("list", help="list a user's keys")
    list_k.add_argument("--user", required=True)
    list_k.add_argument("--json", action="store_true")
    list_k.set_defaults(run=cmd_keys_list)
    revoke = keys_p.add_parser("revoke", help="revoke a key (all instances within 1 s)")
    revoke.add_argument("key_id", type=int)
    revoke.add_argument("--json", action="store_true")
    revoke.set_defaults(run=cmd_keys_revoke)

    update = keys_p.add_parser("update", help="set a key's Bedrock region, model or default-credentials use")
    update.add_argument("key_id", type=int)
    update.add_argument("--bedrock-region", help="AWS region ('' resets to the default)")
    update.add_argument("--bedrock-model", help="Bedrock model id or inference profile ('' resets)")
    update.add_argument(
        "--bedrock-default-credentials",
        action=argparse.BooleanOptionalAction,
        help="allow falling back on the deployment's own AWS credentials (SigV4)",
    )
    update.add_argument("--rpm", type=int, help="requests per minute for this key (0 removes the limit)")
    update.add_argument("--json", action="store_true")
    update.set_defaults(run=cmd_keys_update)
    bkey = keys_p.add_parser("bedrock-key", help="register a Bedrock API key (read from stdin) for a key")
    bkey.add_argument("key_id", type=int)
    bkey.add_argument("--remove", action="store_true", help="remove the registered Bedrock key")
    bkey.add_argument("--json", action="store_true")
    bkey.set_defaults(run=cmd_keys_bedrock_key)

    circuits_p = sub.add_parser("circuits", help="plan circuit breakers").add_subparsers(dest="action", required=True)
    list_c = circuits_p.add_parser("list", help="keys whose plan circuit is not closed")
    list_c.add_argument("--json", action="store_true")
    list_c.set_defaults(run=cmd_circuits_list)
    reset_c = circuits_p.add_parser("reset", help="close a key's circuit now")
    reset_c.add_argument("key_id", type=int)
    reset_c.add_argument("--json", action="store_true")
    reset_c.set_defaults(run=cmd_circuits_reset)

    pricing_p = sub.add_parser("pricing", help="the Bedrock price table").add_subparsers(dest="action", required=True)
    list_p = pricing_p.add_parser("list", help="prices in force and their history")
    list_p.add_argument("--json", action="store_true")
    list_p.set_defaults(run=cmd_pricing_list)
    set_p = pricing_p.add_parser("set", help="add or change one price row (USD per million tokens)")
    set_p.add_argument("model")
    set_p.add_argument("--region", default="*")
    for name in ("input", "output", "cache-write-5m", "cache-write-1h", "cache-read"):
        set_p.add_argument(f"--{name}", required=True)
    set_p.add_argument("--effective-date", help="YYYY-MM-DD (default: today)")
    set_p.add_argument("--json", action="store_true")
    set_p.set_defaults(run=cmd_pricing_set)
    import_p = pricing_p.add_parser("import", help="import price rows from a .json or .csv file")
    import_p.add_argument("file")
    import_p.add_argument("--json", action="store_true")
    import_p.set_defaults(run=cmd_pricing_import)

    usage_p = sub.add_parser("usage", help="usage events").add_subparsers(dest="action", required=True)
    recent = usage_p.add_parser("recent", help="the latest usage events, newest first")
    recent.add_argument("--limit", type=_positive_int, default=20)
    recent.add_argument("--user")
    recent.add_argument("--json", action="store_true")
    recent.set_defaults(run=cmd_usage_recent)

    summary = usage_p.add_parser("summary", help="totals from the rollups, grouped")
    summary.add_argument("--by", default="user", choices=(*usage.GROUPINGS, *attribution.GROUPINGS))
    summary.add_argument("--since", help="start (YYYY-MM-DD[THH:MM], reporting zone; default: month start)")
    summary.add_argument("--until", help="end, exclusive (default: the end of this hour)")
    summary.add_argument("--user")
    out = summary.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true")
    out.add_argument("--csv", action="store_true")
    summary.set_defaults(run=cmd_usage_summary)

    models_p = sub.add_parser("models", help="the Anthropic-name -> Bedrock-id mapping").add_subparsers(
        dest="action", required=True
    )
    list_m = models_p.add_parser("list", help="mappings in force (shipped defaults and operator rows)")
    list_m.add_argument("--json", action="store_true")
    list_m.set_defaults(run=cmd_models_list)
    set_m = models_p.add_parser("set", help="map a model name to a Bedrock model id (every instance at once)")
    set_m.add_argument("name")
    set_m.add_argument("bedrock_model_id")
    set_m.add_argument("--json", action="store_true")
    set_m.set_defaults(run=cmd_models_set)
    delete_m = models_p.add_parser("delete", help="remove a mapping (a shipped default is hidden)")
    delete_m.add_argument("name")
    delete_m.add_argument("--json", action="store_true")
    delete_m.set_defaults(run=cmd_models_delete)
    unmapped_m = models_p.add_parser("unmapped", help="requested names Bedrock served with the default model")
    unmapped_m.add_argument("--since", help="only requests since (YYYY-MM-DD[THH:MM])")
    unmapped_m.add_argument("--json", action="store_true")
    unmapped_m.set_defaults(run=cmd_models_unmapped)

    bench = sub.add_parser("bench", help="run the bench suite (see bench/README.md)", add_help=False)
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    return parser


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from bench.__main__ import main as bench_main

        return int(bench_main(argv[1:]) or 0)
    args = build_parser().parse_args(argv)
    environ = dict(os.environ)
    for option in ("host", "port", "workers"):
        value = getattr(args, option, None)
        if value is not None:
            environ[f"CCPROXY_{option.upper()}"] = str(value)
    try:
        config = config_mod.load(environ)
    except config_mod.ConfigError as exc:
        print(f"ccproxy: invalid setting: {exc}", file=sys.stderr)
        return 2
    if hasattr(args, "sync"):
        sync: Callable[[config_mod.Config, argparse.Namespace], int] = args.sync
        try:
            return sync(config, args)
        except Exception as exc:
            if not (isinstance(exc, (db.QueryFileError, db.MigrationError)) or _database_error(exc)):
                raise
            print(f"ccproxy: cannot start: {_one_line(exc)}", file=sys.stderr)
            return 1
    run: Callable[[config_mod.Config, argparse.Namespace], Coroutine[Any, Any, None]] = args.run
    try:
        asyncio.run(run(config, args))
    except errors.GatewayError as exc:
        print(f"ccproxy: {exc.message}", file=sys.stderr)
        return 1
    except db.QueryFileError as exc:
        print(f"ccproxy: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if not _database_error(exc):
            raise
        print(f"ccproxy: cannot use the database: {_one_line(exc)}", file=sys.stderr)
        return 1
    return 0


def _database_error(exc: BaseException) -> bool:
    """A failure to reach or use PostgreSQL (or the disk under it), said in one line.
    psycopg is looked up, not imported: only migrations load it, and `ccproxy serve`
    would otherwise carry its ~5 MB for nothing."""
    psycopg = sys.modules.get("psycopg")
    return isinstance(exc, (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)) or (
        psycopg is not None and isinstance(exc, psycopg.Error)
    )


if __name__ == "__main__":
    sys.exit(main())
