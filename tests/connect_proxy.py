"""A tiny outbound HTTP proxy on loopback, as corporate networks put in front of the
gateway: CONNECT tunnels (RFC 9110 §9.3.6) and absolute-form forwarding of plain http
requests (what aiohttp sends for an http:// target). It records what it was asked."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class ConnectProxy:
    """`async with ConnectProxy() as proxy:` … `proxy.url`; `refuse` answers every
    request with that status line instead (e.g. "407 Proxy Authentication Required")."""

    refuse: str | None = None
    tunnels: list[str] = field(default_factory=list)  # CONNECT targets, host:port
    forwarded: list[str] = field(default_factory=list)  # absolute-form request targets
    credentials: list[str | None] = field(default_factory=list)  # user:password per request
    url: str = ""
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def __aenter__(self) -> ConnectProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            self.credentials.append(_basic(lines[1:]))
            if self.refuse is not None:
                writer.write(f"HTTP/1.1 {self.refuse}\r\nContent-Length: 0\r\n\r\n".encode())
                await writer.drain()
                return
            if method == "CONNECT":
                self.tunnels.append(target)
                host, _, port = target.rpartition(":")
                up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
                writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                await writer.drain()
            else:  # absolute-form: forward the request as origin-form
                self.forwarded.append(target)
                parts = urlsplit(target)
                up_reader, up_writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
                path = parts.path + ("?" + parts.query if parts.query else "")
                kept = [line for line in lines[1:] if not line.lower().startswith("proxy-")]
                up_writer.write(f"{method} {path} HTTP/1.1\r\n".encode() + "\r\n".join(kept).encode())
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()


def _basic(header_lines: list[str]) -> str | None:
    for line in header_lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == "proxy-authorization":
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "basic":
                return base64.b64decode(token).decode()
    return None


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except ConnectionError:
        pass
    finally:
        with contextlib.suppress(Exception):
            sink.close()
