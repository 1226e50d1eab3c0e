"""Budgets and limits on the request path (SPEC §6), all answered from memory.

- Model allow-lists per user and team (fnmatch patterns): both must allow the model.
- Requests per minute per access key, counted per gateway instance.
- Monthly Bedrock budgets per user and team, in the reporting time zone. Month-to-date
  spend is read from the month rollups every `refresh` seconds and the costs this
  instance recorded since are added on top, so a check never waits for the database.
- Alert thresholds fire once per budget and period across all instances (the instance
  whose INSERT into budget_alerts wins sends the log event and the webhook).

Largest overshoot (README "Budgets"): a request is admitted while the spend this
instance knows is under the budget. Spend recorded by other instances becomes visible
after at most flush + refresh seconds; a request's own cost is known only when it ends.
So the overshoot is at most the cost of the Bedrock requests already in flight when
the budget is crossed, plus what the other N-1 instances admit in flush + refresh.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import fnmatch
import zoneinfo
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import aiohttp
import structlog

from gateway import alert_webhook, db, errors, keys, shared_state

logger = structlog.get_logger("gateway.limits")

CENT = Decimal("0.01")


def model_allowed(model: str, patterns: Sequence[str] | None) -> bool:
    return patterns is None or any(fnmatch.fnmatchcase(model, p) for p in patterns)


def check_model(ctx: keys.KeyContext, model: str | None) -> None:
    """403 permission_error naming the allowed models when either list excludes the model."""
    if model is None:
        return
    for patterns, whose in ((ctx.allowed_models, "your user"), (ctx.team_allowed_models, "your team")):
        if not model_allowed(model, patterns):
            raise errors.PermissionDenied(
                f"Model {model!r} is not allowed for {whose}. Allowed models: {', '.join(patterns or [])}."
            )


class RateLimiter:
    """A sliding one-minute window of request times per key (this instance only)."""

    __slots__ = ("_windows",)

    def __init__(self) -> None:
        self._windows: dict[int, collections.deque[float]] = {}

    def check(self, key_id: int, limit: int | None, now: float) -> None:
        if limit is None:
            return
        window = self._windows.get(key_id)
        if window is None:
            window = self._windows[key_id] = collections.deque()
        while window and window[0] <= now - 60.0:
            window.popleft()
        if len(window) >= limit:
            retry = max(1, int(window[0] + 60.0 - now) + 1)
            raise errors.RateLimited(
                f"Rate limit of {limit} requests per minute for this access key exceeded.",
                headers={"retry-after": str(retry)},
            )
        window.append(now)


def month_start(now: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    local = now.astimezone(zone)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(start: dt.datetime) -> dt.datetime:
    return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def _money(value: Decimal) -> str:
    return f"{value.quantize(CENT):,.2f}"


class Budgets:
    """Month-to-date Bedrock spend per user and team, with the checks and alerts."""

    def __init__(
        self,
        database: db.Database,
        *,
        report_tz: str,
        refresh: float,
        webhook_url: str | None,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._db = database
        self._clock = clock
        self._zone = zoneinfo.ZoneInfo(report_tz)
        self._refresh = refresh
        self._webhook_url = webhook_url
        self.session = session
        self._period = month_start(self._clock(), self._zone)
        self._user_db: dict[int, Decimal] = {}
        self._team_db: dict[int, Decimal] = {}
        self._user_local: dict[int, Decimal] = collections.defaultdict(Decimal)
        self._team_local: dict[int, Decimal] = collections.defaultdict(Decimal)
        # Costs this instance recorded this period (never replaced by a refresh), and the
        # latest context of every user with a budget, for alerts after a refresh.
        self._user_recorded: dict[int, Decimal] = collections.defaultdict(Decimal)
        self._team_recorded: dict[int, Decimal] = collections.defaultdict(Decimal)
        self._seen: dict[int, keys.KeyContext] = {}
        self._fired: set[tuple[str, int, dt.date, int]] = set()
        self._tasks = shared_state.TaskSet()

    # --- the request path -----------------------------------------------------------------

    def spent(self, ctx: keys.KeyContext) -> tuple[Decimal, Decimal]:
        self._roll_period()
        user = self._user_db.get(ctx.user_id, Decimal(0)) + self._user_local.get(ctx.user_id, Decimal(0))
        team = Decimal(0)
        if ctx.team_id is not None:
            team = self._team_db.get(ctx.team_id, Decimal(0)) + self._team_local.get(ctx.team_id, Decimal(0))
        return user, team

    def check(self, ctx: keys.KeyContext) -> None:
        """Before any Bedrock call: 429 rate_limit_error when the user's or the team's
        budget is used up (the tighter wins). Plan calls are never checked."""
        if ctx.monthly_budget_usd is None and ctx.team_budget_usd is None:
            return
        user_spent, team_spent = self.spent(ctx)
        resets = next_month(self._period).date().isoformat()
        for spent, budget in ((user_spent, ctx.monthly_budget_usd), (team_spent, ctx.team_budget_usd)):
            if budget is not None and spent >= budget:
                raise errors.RateLimited(
                    f"Monthly budget exceeded. Current usage: ${_money(spent)}, "
                    f"Budget limit: ${_money(budget)}. Budget resets on {resets}.",
                    headers={"retry-after": str(self._seconds_to_reset())},
                )

    def record(self, ctx: keys.KeyContext, cost: Decimal) -> None:
        """A Bedrock request's cost, as soon as it is known; fires alerts it crosses."""
        if not cost:
            return
        self._roll_period()
        self._user_local[ctx.user_id] += cost
        self._user_recorded[ctx.user_id] += cost
        if ctx.team_id is not None:
            self._team_local[ctx.team_id] += cost
            self._team_recorded[ctx.team_id] += cost
        if ctx.monthly_budget_usd is not None or ctx.team_budget_usd is not None:
            self._seen[ctx.user_id] = ctx
        user_spent, team_spent = self.spent(ctx)
        self._maybe_alert("user", ctx.user_id, ctx.user_name, user_spent, ctx.monthly_budget_usd, ctx.alert_thresholds)
        if ctx.team_id is not None:
            self._maybe_alert(
                "team", ctx.team_id, ctx.team_name or "", team_spent, ctx.team_budget_usd, ctx.team_alert_thresholds
            )

    def _seconds_to_reset(self) -> int:
        return max(1, int((next_month(self._period) - self._clock()).total_seconds()))

    def _roll_period(self) -> None:
        now_period = month_start(self._clock(), self._zone)
        if now_period != self._period:
            self._period = now_period
            self._user_db.clear()
            self._team_db.clear()
            self._user_local.clear()
            self._team_local.clear()
            self._user_recorded.clear()
            self._team_recorded.clear()

    # --- alerts -------------------------------------------------------------------------------

    def _maybe_alert(
        self, scope: str, scope_id: int, name: str, spent: Decimal, budget: Decimal | None, thresholds: Sequence[int]
    ) -> None:
        if budget is None:
            return
        period = self._period.date()
        for threshold in thresholds:
            key = (scope, scope_id, period, threshold)
            if key in self._fired or spent * 100 < budget * threshold:
                continue
            self._fired.add(key)
            self._tasks.spawn(self._fire(scope, scope_id, name, period, threshold, spent, budget))

    async def _fire(
        self, scope: str, scope_id: int, name: str, period: dt.date, threshold: int, spent: Decimal, budget: Decimal
    ) -> None:
        try:
            row = await self._db.fetchrow("insert-budget-alert", scope, scope_id, period, threshold, spent, budget)
        except Exception as exc:
            logger.warning("budget_alert_write_failed", error=type(exc).__name__)
            self._fired.discard((scope, scope_id, period, threshold))
            return
        if row is None:
            return  # another instance sent it
        event = {
            "event": "budget_alert",
            "scope": scope,
            "scope_id": scope_id,
            "name": name,
            "period": period.isoformat(),
            "threshold_percent": threshold,
            "usage_usd": str(spent.quantize(Decimal("0.000001"))),
            "budget_usd": str(budget),
        }
        logger.warning(**event)
        if self._webhook_url and self.session is not None:
            await alert_webhook.AlertWebhook(self._webhook_url, self.session).post(event)

    async def drain(self) -> None:
        await self._tasks.drain()

    # --- keeping memory true -------------------------------------------------------------------

    async def refresh(self, pending: Sequence[Any] = ()) -> None:
        """Re-read month-to-date spend. Costs not yet in PostgreSQL stay counted: events
        still queued (`pending`, taken before the query) and costs recorded while the
        query ran. An event flushed during the query may count twice until the next
        refresh — the safe direction for a budget."""
        self._roll_period()
        period = self._period
        user_before = dict(self._user_recorded)
        team_before = dict(self._team_recorded)
        rows = await self._db.fetch("list-month-spend", period)
        if period != self._period:
            return  # the month turned while we read; the next refresh starts clean
        users: dict[int, Decimal] = collections.defaultdict(Decimal)
        teams: dict[int, Decimal] = collections.defaultdict(Decimal)
        team_of: dict[int, int] = {}
        for row in rows:
            users[row["user_id"]] += row["cost_usd"]
            if row["team_id"] is not None:
                teams[row["team_id"]] += row["cost_usd"]
                team_of[row["user_id"]] = row["team_id"]
        user_local: dict[int, Decimal] = collections.defaultdict(Decimal)
        team_local: dict[int, Decimal] = collections.defaultdict(Decimal)
        for event in pending:
            if event.cost_usd and event.created_at >= period:
                user_local[event.user_id] += event.cost_usd
                team = team_of.get(event.user_id)
                if team is not None:
                    team_local[team] += event.cost_usd
        for user_id, total in self._user_recorded.items():
            user_local[user_id] += total - user_before.get(user_id, Decimal(0))
        for team_id, total in self._team_recorded.items():
            team_local[team_id] += total - team_before.get(team_id, Decimal(0))
        self._user_db, self._team_db = dict(users), dict(teams)
        self._user_local, self._team_local = user_local, team_local
        self._check_known_budgets()

    def _check_known_budgets(self) -> None:
        """Thresholds crossed by the sum of several instances' spend are only seen after
        a refresh: check every budget this instance has met."""
        for ctx in list(self._seen.values()):
            user_spent, team_spent = self.spent(ctx)
            self._maybe_alert(
                "user", ctx.user_id, ctx.user_name, user_spent, ctx.monthly_budget_usd, ctx.alert_thresholds
            )
            if ctx.team_id is not None:
                self._maybe_alert(
                    "team", ctx.team_id, ctx.team_name or "", team_spent, ctx.team_budget_usd, ctx.team_alert_thresholds
                )

    async def refresh_forever(self, unflushed: Callable[[], Sequence[Any]]) -> None:
        while True:
            await asyncio.sleep(self._refresh)
            try:
                await self.refresh(unflushed())
            except Exception as exc:  # keep counting locally until the database answers
                logger.warning("budget_refresh_failed", error=type(exc).__name__)
