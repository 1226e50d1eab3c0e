"""What the fake upstreams share when they run as their own processes (the bench starts
them with `python -m bench.fake_anthropic` / `python -m bench.fake_bedrock`)."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

T = TypeVar("T")


async def serve_app(app: web.Application, host: str, port: int, label: str) -> None:
    """Serve an aiohttp app until the process is stopped."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=4096).start()
    print(f"{label} listening on http://{host}:{port}", flush=True)
    await asyncio.Event().wait()


def arguments(description: str, default_port: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--default", default="text", help="scenario for requests that name none")
    return parser


def run(serve: Callable[[str, int, str], Awaitable[None]], args: argparse.Namespace) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    asyncio.run(serve(args.host, args.port, args.default))  # type: ignore[arg-type]


def cached(cache: dict[tuple[str, int, str], T], key: tuple[str, int, str], make: Callable[[], T]) -> T:
    """A canned stream body from `cache`, made on first use; the bench asks for the same few,
    so the cache stops growing at 256 entries."""
    value = cache.get(key)
    if value is None:
        value = make()
        if len(cache) < 256:
            cache[key] = value
    return value
