"""Budget alerts to an operator's webhook: a JSON POST, retried with backoff in the
background (the budget checks in `limits.py` decide when an alert fires)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import structlog

logger = structlog.get_logger("gateway.alert_webhook")


class AlertWebhook:
    def __init__(self, url: str, session: aiohttp.ClientSession, attempts: int = 4) -> None:
        self._url = url
        self._session = session
        self._attempts = attempts

    async def post(self, event: dict[str, Any]) -> bool:
        """True once the webhook accepted the event (2xx); False after the last attempt."""
        for attempt in range(self._attempts):
            try:
                async with self._session.post(self._url, json=event, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                    if resp.status < 300:
                        return True
                    reason = f"status {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason = type(exc).__name__
            logger.warning("budget_webhook_failed", attempt=attempt + 1, reason=reason)
            if attempt + 1 < self._attempts:
                await asyncio.sleep(0.5 * 2**attempt)
        return False
