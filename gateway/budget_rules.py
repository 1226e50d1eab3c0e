"""The rules for what users and teams share: monthly budgets, alert thresholds, model
allow-lists and names — the checks both services run, and the parsers that turn the
CLI's strings into the typed values the services take."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from msgspec import UnsetType

from gateway import errors

CENT = Decimal("0.01")
MIN_BUDGET = Decimal("0.01")
MAX_BUDGET = Decimal("999999.99")
DEFAULT_THRESHOLDS = [80, 100]


def name(field: str, value: str, what: str) -> str:
    value = value.strip()
    if not value or len(value) > 200:
        raise errors.ValidationFailed(field, f"{what} name must be 1 to 200 characters")
    return value


def description(value: str | None) -> str | None:
    if value is not None and len(value) > 2000:
        raise errors.ValidationFailed("description", "description must be at most 2000 characters")
    return value


def budget(value: Decimal | None, field: str = "monthly_budget_usd") -> Decimal | None:
    """None = unlimited; else USD between 0.01 and 999999.99, kept to the cent."""
    if value is None:
        return None
    if not value.is_finite() or not MIN_BUDGET <= value <= MAX_BUDGET:
        raise errors.ValidationFailed(field, "monthly budget must be between 0.01 and 999999.99 USD (or none)")
    if value != value.quantize(CENT):
        raise errors.ValidationFailed(field, "monthly budget has at most 2 decimal places")
    return value.quantize(CENT)


def thresholds(values: list[int], field: str = "alert_thresholds") -> list[int]:
    if len(values) > 20 or any(not 1 <= v <= 1000 for v in values):
        raise errors.ValidationFailed(field, "alert thresholds are up to 20 percentages between 1 and 1000")
    return sorted(set(values))


def models(patterns: list[str] | None, field: str = "allowed_models") -> list[str] | None:
    """None = every model; else fnmatch patterns such as `claude-sonnet-*`."""
    if patterns is None:
        return None
    cleaned = [p.strip() for p in patterns]
    if len(cleaned) > 100 or any(not p or len(p) > 200 for p in cleaned):
        raise errors.ValidationFailed(
            field, "allowed models are up to 100 non-empty patterns of at most 200 characters"
        )
    return cleaned


# --- the CLI's strings -------------------------------------------------------------------


def parse_budget(raw: str) -> Decimal | None:
    """'none'/'' → unlimited; else a USD amount (checked by `budget`)."""
    if raw.strip().lower() in ("", "none", "unlimited"):
        return None
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        raise errors.ValidationFailed("monthly_budget_usd", f"budget {raw!r} is not a number") from None
    return budget(value)


def parse_models(raw: str) -> list[str] | None:
    """'all'/'' → every model; else comma-separated fnmatch patterns."""
    if raw.strip().lower() in ("", "all", "*"):
        return None
    return models([p for p in raw.split(",") if p.strip()])


def parse_thresholds(raw: str) -> list[int]:
    try:
        values = [int(v) for v in raw.split(",") if v.strip()]
    except ValueError:
        raise errors.ValidationFailed("alert_thresholds", "alert thresholds take percentages like 50,80,100") from None
    return thresholds(values)


def owner_changes(spec: Any, kind: str) -> dict[str, Any]:
    """The checked changes of an update to a budgeted owner (a user or a team): every rule
    both share, applied to the fields `spec` sets (the others are UNSET)."""
    changes: dict[str, Any] = {}
    if not isinstance(spec.name, UnsetType):
        changes["name"] = name("name", spec.name, kind)
    if not isinstance(spec.description, UnsetType):
        changes["description"] = description(spec.description)
    if not isinstance(spec.monthly_budget_usd, UnsetType):
        changes["monthly_budget_usd"] = budget(spec.monthly_budget_usd)
    if not isinstance(spec.alert_thresholds, UnsetType):
        changes["alert_thresholds"] = thresholds(spec.alert_thresholds)
    if not isinstance(spec.allowed_models, UnsetType):
        changes["allowed_models"] = models(spec.allowed_models)
    return changes
