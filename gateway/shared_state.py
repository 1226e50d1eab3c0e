"""What the in-memory copies of shared state have in common: background writes that must
finish before shutdown, and per-access-key rows other instances change (circuits, quota
routing), kept true by NOTIFY with a periodic full reload behind it."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import structlog

logger = structlog.get_logger("gateway.shared_state")


class TaskSet:
    """Fire-and-forget coroutines (a database write off the request path). The set keeps
    each task referenced, since the loop holds tasks only weakly, and `drain()` awaits them
    at shutdown so no write is cut off."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class KeyedStates:
    """Rows per access key that any instance may change. A NOTIFY whose payload is a key id
    reloads that row; any other payload reloads them all; `reload_forever` reloads them
    all every few seconds, for a NOTIFY missed while the listener reconnected."""

    reload_failed = "state_reload_failed"  # the warning a failed periodic reload logs

    def __init__(self) -> None:
        self.tasks = TaskSet()

    async def reload_all(self) -> None:
        raise NotImplementedError

    async def reload(self, key_id: int) -> None:
        raise NotImplementedError

    async def reload_forever(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.reload_all()
            except Exception as exc:
                logger.warning(self.reload_failed, error=type(exc).__name__)

    def on_notify(self, payload: str) -> None:
        try:
            key_id = int(payload)
        except ValueError:
            self.tasks.spawn(self.reload_all())
            return
        self.tasks.spawn(self.reload(key_id))
