"""Admin login, tokens and roles: what opens /admin and what does not."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import jwt
import orjson
import pytest
from admin_client import PASSWORD, AdminClient, make_admin
from conftest import Gateway

from gateway import admins, audit, keys


@pytest.fixture(autouse=True)
def quick_bcrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    # bcrypt's cost is the point in production; these tests hash dozens of passwords.
    monkeypatch.setattr(admins, "BCRYPT_ROUNDS", 4)


@pytest.fixture
async def api(gateway: Gateway, http: aiohttp.ClientSession) -> AdminClient:
    await make_admin(gateway.database, "root")
    client = AdminClient(http, gateway.url)
    assert (await client.login("root", PASSWORD))[0] == 200
    return client


def _secret(gateway: Gateway) -> bytes:
    return admins.load_jwt_secret(gateway.config.jwt_secret, gateway.config.data_path)


async def test_login_answers_a_bearer_token_that_says_who_i_am(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    await make_admin(gateway.database, "root")
    client = AdminClient(http, gateway.url)
    status, body = await client.login("ROOT", PASSWORD)  # usernames are case-insensitive
    assert status == 200
    assert body["token_type"] == "bearer" and body["expires_in"] == 86400
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 86400 and claims["aud"] == admins.AUDIENCE
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "HS256"
    status, me = await client.get("/admin/me")
    assert (status, me["username"], me["role"]) == (200, "root", "admin")


async def test_a_wrong_password_and_an_unknown_username_get_the_same_answer_and_are_audited(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    await make_admin(gateway.database, "root")
    client = AdminClient(http, gateway.url)
    wrong = await client.login("root", "not the password")
    unknown = await client.login("nobody", "not the password")
    assert wrong[0] == unknown[0] == 401
    assert wrong[1] == unknown[1]
    assert wrong[1]["error"]["code"] == "unauthorized"
    page = await audit.list_entries(gateway.database, action="admin.login_failed")
    assert {e.actor for e in page.items} == {"root", "nobody"}
    assert all(e.client_address == "127.0.0.1" for e in page.items)
    assert all("not the password" not in orjson.dumps(e.changes).decode() for e in page.items)


async def test_failed_logins_are_refused_per_username_and_per_address_after_the_limit(
    gateway_factory: Any, fake: Any, http: aiohttp.ClientSession
) -> None:
    gw = await gateway_factory(fake[1], login_max_failures="3", login_window_seconds="60")
    await make_admin(gw.database, "root")
    await make_admin(gw.database, "other")
    client = AdminClient(http, gw.url)
    for _ in range(3):
        assert (await client.login("root", "wrong password"))[0] == 401
    status, body = await client.login("root", PASSWORD)  # even the right password waits
    assert status == 429 and body["error"]["code"] == "login_throttled"
    # The same address is over its limit too, for any username.
    assert (await client.login("other", PASSWORD))[0] == 429
    async with gw.database.acquire() as conn:
        await conn.execute("UPDATE audit_log SET at = at - interval '2 minutes'")
    assert (await client.login("root", PASSWORD))[0] == 200


async def test_tokens_that_must_not_open_the_admin_api(api: AdminClient, gateway: Gateway) -> None:
    secret = _secret(gateway)
    good = jwt.decode(api.token or "", secret, algorithms=["HS256"], audience=admins.AUDIENCE)
    now = int(time.time())

    def signed(claims: dict[str, Any], key: bytes = secret, **header: Any) -> str:
        return jwt.encode(claims, key, algorithm="HS256", headers=header or None)

    forged = {
        "no token": None,
        "alg none": jwt.encode(good, None, algorithm="none"),
        "wrong signature": signed(good, b"x" * 40),
        "expired": signed({**good, "iat": now - 100, "exp": now - 10}),
        "wrong typ": signed({**good, "typ": "refresh"}),
        "wrong audience": signed({**good, "aud": "someone-else"}),
        "no password version": signed({k: v for k, v in good.items() if k != "pwv"}),
        "garbage": "not.a.jwt",
    }
    for name, token in forged.items():
        headers = {"authorization": f"Bearer {token}"} if token else {"authorization": ""}
        status, body = await api.call("GET", "/admin/me", headers=headers)
        assert status == 401, name
        assert body["error"]["code"] == "unauthorized", name


async def test_a_password_change_or_deletion_ends_the_admins_tokens(api: AdminClient, gateway: Gateway) -> None:
    assert (await api.get("/admin/me"))[0] == 200
    await admins.set_password(gateway.database, audit.SYSTEM, "root", "a brand new password")
    assert (await api.get("/admin/me"))[0] == 401
    assert (await api.login("root", "a brand new password"))[0] == 200
    assert (await api.get("/admin/me"))[0] == 200
    await admins.delete(gateway.database, audit.SYSTEM, "root")
    assert (await api.get("/admin/me"))[0] == 401
    assert (await api.login("root", "a brand new password"))[0] == 401


async def test_an_access_key_never_opens_admin_and_an_admin_token_never_opens_the_relay(
    api: AdminClient, gateway: Gateway
) -> None:
    issued = await gateway.issue_key("alice")
    for headers in ({"authorization": f"Bearer {issued['key']}"}, {"x-api-key": issued["key"]}):
        status, body = await api.call("GET", "/admin/users", headers={"authorization": "", **headers})
        assert status == 401 and body["error"]["code"] == "unauthorized"
    body = orjson.dumps(
        {"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    )
    for headers in ({"authorization": f"Bearer {api.token}"}, {"x-api-key": api.token or ""}):
        async with api.http.post(f"{gateway.url}/v1/messages", data=body, headers=headers) as resp:
            assert resp.status in (401, 404), resp.status
            error = orjson.loads(await resp.read())
            assert error["type"] == "error"  # the relay's Anthropic shape, not the admin one
    async with api.http.post(f"{gateway.url}/ak/{api.token}/v1/messages", data=body) as resp:
        assert resp.status == 404


# Every endpoint, with a body a write would accept (ids need not exist: the role check
# comes first).
ENDPOINTS: list[tuple[str, str, Any]] = [
    ("GET", "/admin/me", None),
    ("GET", "/admin/users", None),
    ("POST", "/admin/users", {"name": "zoe"}),
    ("GET", "/admin/users/1", None),
    ("PATCH", "/admin/users/1", {"description": "x"}),
    ("DELETE", "/admin/users/1", None),
    ("POST", "/admin/users/1/deactivate", None),
    ("GET", "/admin/users/1/budget", None),
    ("PUT", "/admin/users/1/budget", {"monthly_budget_usd": "10"}),
    ("GET", "/admin/users/1/access-keys", None),
    ("POST", "/admin/users/1/access-keys", {}),
    ("GET", "/admin/teams", None),
    ("POST", "/admin/teams", {"name": "t"}),
    ("GET", "/admin/teams/1", None),
    ("PATCH", "/admin/teams/1", {"description": "x"}),
    ("DELETE", "/admin/teams/1", None),
    ("GET", "/admin/access-keys/1", None),
    ("PATCH", "/admin/access-keys/1", {"rpm_limit": 5}),
    ("DELETE", "/admin/access-keys/1", None),
    ("POST", "/admin/access-keys/1/rotate", None),
    ("GET", "/admin/access-keys/1/bedrock-key", None),
    ("PUT", "/admin/access-keys/1/bedrock-key", {"api_key": "ABSK-x"}),
    ("DELETE", "/admin/access-keys/1/bedrock-key", None),
    ("GET", "/admin/usage", None),
    ("GET", "/admin/usage/top-users", None),
    ("GET", "/admin/usage/events", None),
    ("GET", "/admin/usage/export.csv", None),
    ("GET", "/admin/pricing", None),
    (
        "PUT",
        "/admin/pricing",
        {"model": "m", "input": 1, "output": 1, "cache_write_5m": 1, "cache_write_1h": 1, "cache_read": 1},
    ),
    ("POST", "/admin/pricing/reload", None),
    ("GET", "/admin/circuits", None),
    ("POST", "/admin/circuits/1/reset", None),
    ("GET", "/admin/audit", None),
]


async def test_the_role_matrix_viewers_read_everything_and_write_nothing_and_strangers_nothing(
    api: AdminClient, gateway: Gateway
) -> None:
    await gateway.issue_key("alice")
    await make_admin(gateway.database, "watcher", role="viewer")
    viewer = AdminClient(api.http, gateway.url)
    assert (await viewer.login("watcher", PASSWORD))[0] == 200
    anonymous = AdminClient(api.http, gateway.url)
    for method, path, body in ENDPOINTS:
        status, answer = await anonymous.call(method, path, body)
        assert status == 401, (method, path, status)
        status, answer = await viewer.call(method, path, body)
        if method == "GET":
            assert status in (200, 404), (method, path, status, answer)
        else:
            assert status == 403, (method, path, status)
            assert answer["error"]["code"] == "forbidden"
    # Nothing the viewer tried was written.
    assert (await audit.list_entries(gateway.database, actor="watcher")).total == 1  # its login only
    assert (await viewer.get("/admin/me"))[1]["role"] == "viewer"


async def test_the_env_bootstrap_admin_can_log_in_on_every_start(
    gateway_factory: Any, fake: Any, http: aiohttp.ClientSession
) -> None:
    hashed = admins.hash_password("bootstrap password")
    gw = await gateway_factory(fake[1], admin_username="ops", admin_password_hash=hashed)
    second = await gateway_factory(fake[1], admin_username="ops", admin_password_hash=hashed)
    client = AdminClient(http, second.url)
    assert (await client.login("ops", "bootstrap password"))[0] == 200
    assert (await client.get("/admin/me"))[1]["role"] == "admin"
    assert (await admins.list_admins(gw.database)).total == 1
    await asyncio.sleep(0)
    assert keys.KEY_PREFIX not in (client.token or "")
