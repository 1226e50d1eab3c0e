"""The CLI as the admin API's other face: admin accounts, rotation, deactivation, and the
same answers as the API on the same data."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from admin_client import AdminClient
from conftest import Gateway, cli_env, run_cli

from gateway import admins, audit


@pytest.fixture(autouse=True)
def quick_bcrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    # bcrypt's cost is the point in production; the in-process logins here pay it.
    monkeypatch.setattr(admins, "BCRYPT_ROUNDS", 4)


def env_for(gateway: Gateway, tmp_path: Path) -> dict[str, str]:
    assert gateway.config.database_url is not None
    return cli_env(
        tmp_path,
        database_url=gateway.config.database_url,
        key_hash_secret=gateway.config.key_hash_secret or "",
        data_dir=str(gateway.config.data_path),
    )


def cli_in(env: dict[str, str], stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], env=env, input=stdin, capture_output=True, text=True, timeout=120
    )


def cli_json(env: dict[str, str], *args: str) -> Any:
    return orjson.loads(run_cli(env, *args, "--json").stdout)


def same_times(value: Any) -> Any:
    """Both faces print ISO 8601 with an offset; orjson writes +00:00 where msgspec writes Z."""
    if isinstance(value, dict):
        return {k: same_times(v) for k, v in value.items()}
    if isinstance(value, list):
        return [same_times(v) for v in value]
    if isinstance(value, str) and len(value) >= 20 and value[4] == "-" and value[10] == "T":
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


async def test_admin_accounts_from_the_cli_log_in_and_lose_their_tokens_on_a_new_password(
    gateway: Gateway, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    env = env_for(gateway, tmp_path)
    mismatch = cli_in(env, "first password\nsecond password\n", "admin", "create", "root", "--role", "admin")
    assert mismatch.returncode == 1 and mismatch.stderr.strip() == "ccproxy: the two passwords differ"
    short = cli_in(env, "short\nshort\n", "admin", "create", "root", "--role", "admin")
    assert short.returncode == 1 and "at least 8" in short.stderr
    created = cli_in(env, "a long password\na long password\n", "admin", "create", "root", "--role", "viewer", "--json")
    assert created.returncode == 0, created.stderr
    assert orjson.loads(created.stdout)["role"] == "viewer"
    assert "a long password" not in created.stdout + created.stderr
    dup = cli_in(env, "a long password\na long password\n", "admin", "create", "ROOT", "--role", "admin")
    assert dup.returncode == 1 and "already exists" in dup.stderr
    assert [a["username"] for a in cli_json(env, "admin", "list")] == ["root"]
    api = AdminClient(http, gateway.url)
    assert (await api.login("root", "a long password"))[0] == 200
    assert (await api.get("/admin/me"))[1]["role"] == "viewer"
    changed = cli_in(env, "another password\nanother password\n", "admin", "set-password", "root")
    assert changed.returncode == 0, changed.stderr
    assert (await api.get("/admin/me"))[0] == 401
    assert (await api.login("root", "another password"))[0] == 200
    run_cli(env, "admin", "delete", "root")
    assert (await api.get("/admin/me"))[0] == 401
    assert cli_json(env, "admin", "list") == []
    assert "no admin named 'root'" in run_cli(env, "admin", "delete", "root", check=False).stderr
    actions = [e["action"] for e in cli_json(env, "audit", "list", "--actor", "root")]
    assert "admin.login_failed" not in actions and "admin.login" in actions


async def test_the_cli_and_the_api_give_the_same_answers_on_the_same_data(
    gateway: Gateway, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    env = env_for(gateway, tmp_path)
    run_cli(env, "teams", "create", "platform", "--monthly-budget", "500", "--alert-thresholds", "50,90")
    run_cli(env, "users", "create", "alice", "--description", "dev")
    run_cli(env, "users", "create", "bob")
    run_cli(
        env, "users", "update", "alice", "--team", "platform", "--monthly-budget", "20", "--allow-models", "claude-*"
    )
    run_cli(env, "keys", "issue", "--user", "alice", "--bedrock-region", "eu-west-1", "--rpm", "30")
    await admins.create(gateway.database, audit.SYSTEM, "root", "admin", "a long password")
    api = AdminClient(http, gateway.url)
    assert (await api.login("root", "a long password"))[0] == 200

    _, users_page = await api.get("/admin/users")
    assert same_times(cli_json(env, "users", "list")) == same_times(users_page["items"])
    _, teams_page = await api.get("/admin/teams")
    assert same_times(cli_json(env, "teams", "list")) == same_times(teams_page["items"])
    assert teams_page["items"][0]["alert_thresholds"] == [50, 90]  # created in one write
    alice = users_page["items"][0]
    _, keys_page = await api.get(f"/admin/users/{alice['id']}/access-keys")
    cli_keys = cli_json(env, "keys", "list", "--user", "alice")
    assert [k["prefix"] for k in cli_keys] == [k["prefix"] + "…" for k in keys_page["items"]]
    assert same_times([{**k, "prefix": k["prefix"][:-1]} for k in cli_keys]) == same_times(keys_page["items"])
    _, log = await api.get("/admin/audit", actor=audit.cli_actor().name)  # this test's OS user
    assert same_times(cli_json(env, "audit", "list", "--limit", "50")) == same_times(
        (await api.get("/admin/audit"))[1]["items"]
    )
    assert [e["action"] for e in log["items"]] == [
        "key.issue",
        "user.update",
        "user.create",
        "user.create",
        "team.create",
    ]
    # The same rule refuses the same input on both faces, naming the same thing.
    cli_error = run_cli(env, "users", "update", "bob", "--monthly-budget", "0", check=False).stderr
    status, api_error = await api.patch(f"/admin/users/{users_page['items'][1]['id']}", {"monthly_budget_usd": "0"})
    assert status == 422 and cli_error.strip() == "ccproxy: " + api_error["error"]["message"]
    assert run_cli(env, "users", "update", "bob", check=False).stderr.strip() == "ccproxy: nothing to update"


async def test_rotate_deactivate_and_delete_from_the_cli(
    gateway_factory: Any, fake: Any, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gateway = await gateway_factory(fake[1], key_rotation_grace_seconds="60")
    env = {**env_for(gateway, tmp_path), "CCPROXY_KEY_ROTATION_GRACE_SECONDS": "60"}
    run_cli(env, "users", "create", "alice")
    old = cli_json(env, "keys", "issue", "--user", "alice")
    rotated = cli_json(env, "keys", "rotate", str(old["id"]))
    assert rotated["replaces"] == old["id"] and rotated["key"].startswith("ak_") and rotated["key"] != old["key"]
    body = orjson.dumps(
        {"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    )
    headers = {"x-api-key": "sk-ant-developer-own-key", "anthropic-version": "2023-06-01"}
    for key in (old["key"], rotated["key"]):
        async with http.post(f"{gateway.url}/ak/{key}/v1/messages", data=body, headers=headers) as resp:
            assert resp.status == 200  # the old one inside its grace period
    again = run_cli(env, "keys", "rotate", str(old["id"]), check=False)
    assert again.returncode == 1 and again.stderr.strip() == f"ccproxy: access key {old['id']} was already rotated"
    plain = run_cli(env, "keys", "rotate", str(rotated["id"])).stdout
    assert "keeps working until" in plain and "only time" in plain
    assert cli_json(env, "users", "deactivate", "alice")["status"] == "inactive"
    assert "already inactive" in run_cli(env, "users", "deactivate", "alice", check=False).stderr
    assert {k["status"] for k in cli_json(env, "keys", "list", "--user", "alice")} == {"revoked"}
    assert cli_json(env, "users", "delete", "alice")["status"] == "deleted"
    assert cli_json(env, "users", "list") == []
    assert cli_json(env, "users", "create", "alice")["status"] == "active"  # the name is free again
    assert "424242" in run_cli(env, "keys", "rotate", "424242", check=False).stderr
