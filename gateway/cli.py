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
import getpass
import os
import sys
import uuid
import zoneinfo
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Literal

import asyncpg
import msgspec
import orjson

from gateway import (
    admins,
    audit,
    budget_rules,
    circuit,
    db,
    decoding,
    envelope,
    errors,
    keys,
    paging,
    price_table,
    pricing,
    teams,
    usage_reports,
    users,
)
from gateway import config as config_mod


def _default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, msgspec.Struct):
        return msgspec.structs.asdict(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | memoryview):
        raise TypeError("refusing to print raw bytes")
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _plain(data: Any) -> Any:
    """Structs (and pages of them) as the dicts the table and JSON printers take."""
    if isinstance(data, paging.Page):
        return [_plain(item) for item in data.items]
    if isinstance(data, msgspec.Struct):
        return msgspec.structs.asdict(data)
    if isinstance(data, list):
        return [_plain(item) for item in data]
    return data


def _masked(row: dict[str, Any], field: str = "prefix") -> dict[str, Any]:
    """Faces show a key as `ak_` + 6 characters + `…` (SPEC §7)."""
    return {**row, field: row[field] + "…"} if row.get(field) else row


def _print(data: Any, as_json: bool, columns: Sequence[str] | None = None) -> None:
    data = _plain(data)
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


ACTOR = audit.cli_actor


async def cmd_users_create(config: config_mod.Config, args: argparse.Namespace) -> None:
    async with _database(config) as database:
        user = await users.create(database, ACTOR(), users.UserCreate(name=args.name, description=args.description))
    _print(user, args.json, ["id", "name", "status", "created_at"])


async def cmd_users_list(config: config_mod.Config, args: argparse.Namespace) -> None:
    async with _database(config) as database:
        team_id = None if args.team is None else (await teams.get_by_name(database, args.team)).id
        page = await users.list_users(
            database, args.search, args.limit, args.offset, team_id=team_id, status=args.status
        )
    _print(page, args.json, ["id", "name", "status", "team", "monthly_budget_usd", "active_keys", "created_at"])


def _limit_changes(args: argparse.Namespace) -> dict[str, Any]:
    """Only the options given on the command line become changes (parsed by the rules
    the services check)."""
    changes: dict[str, Any] = {}
    if args.monthly_budget is not None:
        changes["monthly_budget_usd"] = budget_rules.parse_budget(args.monthly_budget)
    if args.allow_models is not None:
        changes["allowed_models"] = budget_rules.parse_models(args.allow_models)
    if args.alert_thresholds is not None:
        changes["alert_thresholds"] = budget_rules.parse_thresholds(args.alert_thresholds)
    if getattr(args, "description", None) is not None:
        changes["description"] = args.description
    return changes


USER_COLUMNS = ["id", "name", "status", "team", "monthly_budget_usd", "allowed_models", "alert_thresholds"]


async def cmd_users_update(config: config_mod.Config, args: argparse.Namespace) -> None:
    changes = _limit_changes(args)
    async with _database(config) as database:
        if args.team is not None:
            none = args.team.lower() in ("", "none")
            changes["team_id"] = None if none else (await teams.get_by_name(database, args.team)).id
        user = await users.get_by_name(database, args.name)
        user = await users.update(database, ACTOR(), user.id, users.UserUpdate(**changes))
    _print(user, args.json, USER_COLUMNS)


async def cmd_users_deactivate(config: config_mod.Config, args: argparse.Namespace) -> None:
    async with _database(config) as database:
        user = await users.get_by_name(database, args.name)
        user = await users.deactivate(database, ACTOR(), user.id)
    _print(user, args.json, ["id", "name", "status", "deactivated_at"])


async def cmd_users_delete(config: config_mod.Config, args: argparse.Namespace) -> None:
    async with _database(config) as database:
        user = await users.get_by_name(database, args.name)
        await users.delete(database, ACTOR(), user.id)
    _print({"id": user.id, "name": user.name, "status": "deleted"}, args.json)


TEAM_COLUMNS = ["id", "name", "members", "monthly_budget_usd", "allowed_models", "alert_thresholds"]


async def cmd_teams_create(config: config_mod.Config, args: argparse.Namespace) -> None:
    spec = teams.TeamCreate(name=args.name, **_limit_changes(args))
    async with _database(config) as database:
        team = await teams.create(database, ACTOR(), spec)
    _print(team, args.json, TEAM_COLUMNS)


async def cmd_teams_update(config: config_mod.Config, args: argparse.Namespace) -> None:
    spec = teams.TeamUpdate(**_limit_changes(args))
    async with _database(config) as database:
        team = await teams.get_by_name(database, args.name)
        team = await teams.update(database, ACTOR(), team.id, spec)
    _print(team, args.json, TEAM_COLUMNS)


async def cmd_teams_list(config: config_mod.Config, args: argparse.Namespace) -> None:
    async with _database(config) as database:
        page = await teams.list_teams(database, args.search, args.limit, args.offset)
    _print(page, args.json, TEAM_COLUMNS)


def _hasher(config: config_mod.Config) -> keys.KeyHasher:
    return keys.KeyHasher(keys.load_secret(config.key_hash_secret, config.data_path))


def _show_new_key(config: config_mod.Config, issued: keys.IssuedKey, as_json: bool) -> None:
    if as_json:
        # `key` is what this command has always printed; `raw_key` is the API's name.
        _print({**_masked(msgspec.structs.asdict(issued)), "key": issued.raw_key, "user": issued.user_name}, True)
        return
    print(f"Access key {issued.id} for {issued.user_name}:\n\n    {issued.raw_key}\n")
    print("This is the only time the full key is shown. Point Claude Code at it with")
    print(f"    ANTHROPIC_BASE_URL=http://{config.host}:{config.port}/ak/{issued.raw_key}")


async def cmd_keys_issue(config: config_mod.Config, args: argparse.Namespace) -> None:
    spec = keys.KeyIssue(bedrock_region=args.bedrock_region, bedrock_model=args.bedrock_model, rpm_limit=args.rpm)
    async with _database(config) as database:
        user = await users.get_by_name(database, args.user)
        issued = await keys.issue(database, _hasher(config), ACTOR(), user.id, spec)
    _show_new_key(config, issued, args.json)


async def cmd_keys_rotate(config: config_mod.Config, args: argparse.Namespace) -> None:
    async with _keyring(config) as keyring, _database(config) as database:
        rotated = await keys.rotate(
            database, _hasher(config), keyring, ACTOR(), args.key_id, config.key_rotation_grace_seconds
        )
    if not args.json:
        print(f"Access key {rotated.replaces} keeps working until {_cell(rotated.old_key_expires_at)} UTC.")
    _show_new_key(config, rotated, args.json)


KEY_COLUMNS = ["id", "prefix", "status", "bedrock_region", "bedrock_model", "created_at", "revoked_at"]


async def cmd_keys_list(config: config_mod.Config, args: argparse.Namespace) -> None:
    async with _database(config) as database:
        user = await users.get_by_name(database, args.user)
        page = await keys.list_for_user(database, user.id, args.limit, args.offset)
    _print([_masked(k) for k in _plain(page)], args.json, KEY_COLUMNS)


async def cmd_keys_revoke(config: config_mod.Config, args: argparse.Namespace) -> None:
    async with _database(config) as database:
        key = await keys.revoke(database, ACTOR(), args.key_id)
    _print({"id": key.id, "status": key.status, "prefix": key.prefix + "…"}, args.json)


async def cmd_keys_update(config: config_mod.Config, args: argparse.Namespace) -> None:
    changes: dict[str, Any] = {}
    # '' resets region/model to the defaults; --rpm 0 removes the limit.
    if args.bedrock_region is not None:
        changes["bedrock_region"] = args.bedrock_region or None
    if args.bedrock_model is not None:
        changes["bedrock_model"] = args.bedrock_model or None
    if args.bedrock_default_credentials is not None:
        changes["bedrock_default_credentials"] = args.bedrock_default_credentials
    if args.rpm is not None:
        if args.rpm < 0:
            raise errors.ValidationFailed("rpm_limit", "--rpm must be 0 (no limit) or more")
        changes["rpm_limit"] = args.rpm or None
    async with _database(config) as database:
        key = await keys.update(database, ACTOR(), args.key_id, keys.KeyUpdate(**changes))
    _print(
        _masked(_plain(key)),
        args.json,
        ["id", "prefix", "status", "bedrock_region", "bedrock_model", "bedrock_default_credentials", "rpm_limit"],
    )


@contextlib.asynccontextmanager
async def _keyring(config: config_mod.Config) -> AsyncIterator[envelope.Keyring]:
    keyring = envelope.keyring_from_config(config)
    try:
        yield keyring
    finally:
        close = getattr(keyring, "close", None)
        if close is not None:
            await close()


async def cmd_keys_bedrock_key(config: config_mod.Config, args: argparse.Namespace) -> None:
    secret = None
    if not args.remove:
        # From stdin, never from argv: command lines end up in shell history and `ps`.
        secret = sys.stdin.readline()
        if not secret.strip():
            raise errors.ValidationFailed("api_key", "no Bedrock API key on standard input")
    async with _keyring(config) as keyring, _database(config) as database:
        state = await keys.set_bedrock_key(database, keyring, ACTOR(), args.key_id, secret)
    _print({"id": state.access_key_id, "bedrock_key": "registered" if state.registered else "removed"}, args.json)


async def cmd_circuits_list(config: config_mod.Config, args: argparse.Namespace) -> None:
    async with _database(config) as database:
        page = await circuit.list_states(database, args.limit, args.offset)
    _print(
        [_masked(r) for r in _plain(page)],
        args.json,
        ["access_key_id", "prefix", "user_name", "state", "failures", "opened_at", "last_error_class"],
    )


async def cmd_circuits_reset(config: config_mod.Config, args: argparse.Namespace) -> None:
    async with _database(config) as database:
        result = await circuit.reset(database, ACTOR(), args.key_id)
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
    spec = decoding.convert(
        {
            "model": args.model,
            "region": args.region,
            "input": args.input,
            "output": args.output,
            "cache_write_5m": args.cache_write_5m,
            "cache_write_1h": args.cache_write_1h,
            "cache_read": args.cache_read,
            "effective_date": args.effective_date,
        },
        price_table.PriceInput,
    )
    price = price_table.make_price(spec)
    async with _database(config) as database:
        await price_table.upsert(database, ACTOR(), [price])
    _print([price_table.as_dict(price)], args.json, PRICE_COLUMNS)


async def cmd_pricing_import(config: config_mod.Config, args: argparse.Namespace) -> None:
    path = Path(args.file)
    fmt: Literal["json", "csv"] = "csv" if path.suffix.lower() == ".csv" else "json"
    try:
        prices = pricing.load_rows(path.read_bytes(), fmt)  # noqa: ASYNC240 - a CLI; nothing else runs
    except (OSError, ValueError) as exc:
        raise errors.ValidationFailed("file", f"{path}: {exc}") from None
    async with _database(config) as database:
        count = await price_table.upsert(database, ACTOR(), prices)
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
        user_id = None if args.user is None else (await users.get_by_name(database, args.user)).id
        events = await usage_reports.recent(database, args.limit, user_id)
    rows = [{**_masked(_plain(e), "access_key_prefix"), "user": e.user_name} for e in events]
    _print(rows, args.json, USAGE_COLUMNS)


async def cmd_usage_summary(config: config_mod.Config, args: argparse.Namespace) -> None:
    zone = zoneinfo.ZoneInfo(config.report_tz)
    since = None if args.since is None else usage_reports.parse_moment(args.since, zone, "since")
    until = None if args.until is None else usage_reports.parse_moment(args.until, zone, "until")
    async with _database(config) as database:
        result = await usage_reports.summary(
            database,
            by=args.by,
            since=since,
            until=until,
            report_tz=config.report_tz,
            user=args.user,
            minute_rollup_days=config.minute_rollup_days,
        )
    groups = [msgspec.structs.asdict(g) for g in result.groups]
    if result.by == "key":
        groups = [_masked(g, "group_key") for g in groups]
    totals = msgspec.structs.asdict(result.totals)
    if args.csv:
        writer = csv.writer(sys.stdout)
        columns = ["group_key", *totals.keys()]
        writer.writerow([args.by, *columns[1:]])
        for row in groups:
            writer.writerow([row[c] for c in columns])
        writer.writerow(["TOTAL", *totals.values()])
        return
    if args.json:
        _print({**msgspec.structs.asdict(result), "groups": groups}, True)
        return
    rows = [*groups, {"group_key": "TOTAL", **totals}]
    print(f"{result.since} .. {result.until} ({result.report_tz}, from {result.granularity} rollups)")
    _print(rows, False, ["group_key", "requests", "fallback_requests", "input_tokens", "output_tokens", "cost_usd"])


# --- admin accounts ------------------------------------------------------------------------------


def _read_password(twice: bool = True) -> str:
    """The password from stdin (a prompt without echo on a terminal), entered twice.
    Never from argv: command lines end up in shell history and `ps`."""
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        second = getpass.getpass("Again: ") if twice else first
    else:
        first = sys.stdin.readline().rstrip("\n")
        second = sys.stdin.readline().rstrip("\n") if twice else first
    if not first:
        raise errors.ValidationFailed("password", "no password on standard input")
    if first != second:
        raise errors.ValidationFailed("password", "the two passwords differ")
    return first


ADMIN_COLUMNS = ["id", "username", "role", "created_at"]


async def cmd_admin_create(config: config_mod.Config, args: argparse.Namespace) -> None:
    password = _read_password()
    async with _database(config) as database:
        admin = await admins.create(database, ACTOR(), args.name, args.role, password)
    _print(admin, args.json, ADMIN_COLUMNS)


async def cmd_admin_list(config: config_mod.Config, args: argparse.Namespace) -> None:
    async with _database(config) as database:
        page = await admins.list_admins(database, args.limit, args.offset)
    _print(page, args.json, ADMIN_COLUMNS)


async def cmd_admin_delete(config: config_mod.Config, args: argparse.Namespace) -> None:
    async with _database(config) as database:
        await admins.delete(database, ACTOR(), args.name)
    _print({"username": args.name, "status": "deleted"}, args.json)


async def cmd_admin_set_password(config: config_mod.Config, args: argparse.Namespace) -> None:
    password = _read_password()
    async with _database(config) as database:
        admin = await admins.set_password(database, ACTOR(), args.name, password)
    _print({"username": admin.username, "password": "changed"}, args.json)


async def cmd_audit_list(config: config_mod.Config, args: argparse.Namespace) -> None:
    async with _database(config) as database:
        page = await audit.list_entries(
            database, actor=args.actor, action=args.audit_action, limit=args.limit, offset=args.offset
        )
    _print(page, args.json, ["id", "at", "actor", "action", "target_type", "target_id", "client_address"])


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
    list_u.add_argument("--team", help="only this team's members")
    list_u.add_argument("--status", choices=["active", "inactive"])
    list_u.add_argument("--json", action="store_true")
    list_u.set_defaults(run=cmd_users_list)
    deactivate_u = users_p.add_parser("deactivate", help="deactivate a user and revoke all their keys (no way back)")
    deactivate_u.add_argument("name")
    deactivate_u.add_argument("--json", action="store_true")
    deactivate_u.set_defaults(run=cmd_users_deactivate)
    delete_u = users_p.add_parser("delete", help="soft-delete a user: keys revoked, name freed, usage kept")
    delete_u.add_argument("name")
    delete_u.add_argument("--json", action="store_true")
    delete_u.set_defaults(run=cmd_users_delete)

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
    update_t.add_argument("--description")
    limit_options(update_t)
    update_t.add_argument("--json", action="store_true")
    update_t.set_defaults(run=cmd_teams_update)
    list_t = teams_p.add_parser("list", help="list teams")
    list_t.add_argument("--search")
    list_t.add_argument("--limit", type=_positive_int, default=100)
    list_t.add_argument("--offset", type=int, default=0)
    list_t.add_argument("--json", action="store_true")
    list_t.set_defaults(run=cmd_teams_list)

    keys_p = sub.add_parser("keys", help="manage access keys").add_subparsers(dest="action", required=True)
    issue = keys_p.add_parser("issue", help="issue an access key (shown once)")
    issue.add_argument("--user", required=True)
    issue.add_argument("--bedrock-region")
    issue.add_argument("--bedrock-model")
    issue.add_argument("--rpm", type=_positive_int, help="requests per minute for this key")
    issue.add_argument("--json", action="store_true")
    issue.set_defaults(run=cmd_keys_issue)
    rotate = keys_p.add_parser("rotate", help="issue a successor key; the old one works for the grace period")
    rotate.add_argument("key_id", type=int)
    rotate.add_argument("--json", action="store_true")
    rotate.set_defaults(run=cmd_keys_rotate)
    list_k = keys_p.add_parser("list", help="list a user's keys")
    list_k.add_argument("--user", required=True)
    list_k.add_argument("--limit", type=_positive_int, default=100)
    list_k.add_argument("--offset", type=int, default=0)
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
    list_c.add_argument("--limit", type=_positive_int, default=100)
    list_c.add_argument("--offset", type=int, default=0)
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
    summary.add_argument("--by", default="user", choices=usage_reports.GROUPINGS)
    summary.add_argument("--since", help="start (YYYY-MM-DD[THH:MM], reporting zone; default: month start)")
    summary.add_argument("--until", help="end, exclusive (default: the end of this hour)")
    summary.add_argument("--user")
    out = summary.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true")
    out.add_argument("--csv", action="store_true")
    summary.set_defaults(run=cmd_usage_summary)

    admin_p = sub.add_parser("admin", help="admin API accounts").add_subparsers(dest="action", required=True)
    create_a = admin_p.add_parser("create", help="create an admin (password from stdin, twice)")
    create_a.add_argument("name")
    create_a.add_argument("--role", choices=admins.ROLES, required=True)
    create_a.add_argument("--json", action="store_true")
    create_a.set_defaults(run=cmd_admin_create)
    list_a = admin_p.add_parser("list", help="list admins")
    list_a.add_argument("--limit", type=_positive_int, default=100)
    list_a.add_argument("--offset", type=int, default=0)
    list_a.add_argument("--json", action="store_true")
    list_a.set_defaults(run=cmd_admin_list)
    delete_a = admin_p.add_parser("delete", help="delete an admin (its tokens stop working)")
    delete_a.add_argument("name")
    delete_a.add_argument("--json", action="store_true")
    delete_a.set_defaults(run=cmd_admin_delete)
    password_a = admin_p.add_parser("set-password", help="change an admin's password (stdin, twice)")
    password_a.add_argument("name")
    password_a.add_argument("--json", action="store_true")
    password_a.set_defaults(run=cmd_admin_set_password)

    audit_p = sub.add_parser("audit", help="the audit log").add_subparsers(dest="action", required=True)
    list_au = audit_p.add_parser("list", help="audit rows, newest first")
    list_au.add_argument("--actor")
    list_au.add_argument("--action", dest="audit_action")
    list_au.add_argument("--limit", type=_positive_int, default=50)
    list_au.add_argument("--offset", type=int, default=0)
    list_au.add_argument("--json", action="store_true")
    list_au.set_defaults(run=cmd_audit_list)

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
