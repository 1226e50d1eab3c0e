"""A small client for the admin API in tests: logs in, keeps the token, returns
(status, decoded JSON or text) for each call."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from gateway import admins, audit, db


class AdminClient:
    def __init__(self, http: aiohttp.ClientSession, base: str, token: str | None = None) -> None:
        self.http = http
        self.base = base.rstrip("/")
        self.token = token

    async def login(self, username: str, password: str) -> tuple[int, Any]:
        status, body = await self.call("POST", "/admin/auth/login", {"username": username, "password": password})
        if status == 200:
            self.token = body["access_token"]
        return status, body

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        sent = dict(headers or {})
        if self.token and "authorization" not in {k.lower() for k in sent}:
            sent["authorization"] = f"Bearer {self.token}"
        data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
        if data is not None:
            sent.setdefault("content-type", "application/json")
        async with self.http.request(method, self.base + path, data=data, params=params, headers=sent) as resp:
            text = await resp.read()
            if resp.content_type == "application/json":
                return resp.status, orjson.loads(text) if text else None
            return resp.status, text.decode()

    async def get(self, path: str, **params: Any) -> tuple[int, Any]:
        return await self.call("GET", path, params={k: str(v) for k, v in params.items()})

    async def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        return await self.call("POST", path, body)

    async def patch(self, path: str, body: Any) -> tuple[int, Any]:
        return await self.call("PATCH", path, body)

    async def put(self, path: str, body: Any) -> tuple[int, Any]:
        return await self.call("PUT", path, body)

    async def delete(self, path: str) -> tuple[int, Any]:
        return await self.call("DELETE", path)


PASSWORD = "correct horse battery"


async def make_admin(database: db.Database, username: str, role: str = "admin", password: str = PASSWORD) -> None:
    await admins.create(database, audit.SYSTEM, username, role, password)
