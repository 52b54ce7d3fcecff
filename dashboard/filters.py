"""The dashboard's filters: widget input parsed into the one ``flagstore.query.FlagFilter``
(which ``flagstore.query`` binds into every store's query and applies to held flags)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from flagstore.query import RULE_ID, FilterError, FlagFilter
from fraudlake.contract import RULE_NAMES

#: Time-range presets shown in the sidebar (label → span back from now; None = all time).
TIME_RANGES: dict[str, timedelta | None] = {
    "Last 15 minutes": timedelta(minutes=15),
    "Last hour": timedelta(hours=1),
    "Last 24 hours": timedelta(days=1),
    "Last 7 days": timedelta(days=7),
    "Last 30 days": timedelta(days=30),
    "All time": None,
}
DEFAULT_TIME_RANGE = "Last hour"


def ordered_rules(rules: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """v1 rules in their order, then any other rule ids sorted (one spelling per filter)."""
    return (*(r for r in RULE_NAMES if r in rules), *sorted({r for r in rules
                                                             if r not in RULE_NAMES}))


def time_bounds(label: str, now: datetime) -> tuple[datetime | None, datetime | None]:
    """(since, until) for a preset; ``until`` is None (open) so new events keep arriving."""
    if label not in TIME_RANGES:
        raise FilterError(f"unknown time range {label!r}")
    span = TIME_RANGES[label]
    return (None if span is None else now - span), None


def parse_user_id(text: str) -> int | None:
    t = (text or "").strip()
    if not t:
        return None
    if not t.isdigit() or len(t) > 18:
        raise FilterError(f"user id must be a whole number, got {text!r}")
    return int(t)


def parse_amount_cents(text: str, what: str) -> int | None:
    """'1000', '1000.5', '1,000.50' → cents; blank → None."""
    t = (text or "").strip().replace(",", "").replace("_", "")
    if not t:
        return None
    try:
        value = Decimal(t)
    except InvalidOperation:
        raise FilterError(f"{what} must be an amount like 1000.00, got {text!r}") from None
    if not value.is_finite() or value < 0 or value.as_tuple().exponent < -2:  # type: ignore[operator]
        raise FilterError(f"{what} must be a non-negative amount with at most 2 decimals")
    if value > Decimal("1000000000"):
        raise FilterError(f"{what} is too large")
    return int(value * 100)


def parse_country(text: str) -> str | None:
    t = (text or "").strip().upper()
    if not t:
        return None
    if not (t.isascii() and t.isalpha() and 2 <= len(t) <= 3):
        raise FilterError(f"country must be a 2–3 letter code, got {text!r}")
    return t


def build_filter(*, time_range: str, now: datetime, rules: list[str] | tuple[str, ...],
                 min_amount: str = "", max_amount: str = "", user: str = "",
                 country: str = "") -> FlagFilter:
    """Widget values → FlagFilter; raises FilterError naming the first bad input."""
    unknown = [r for r in rules if not RULE_ID.match(str(r))]
    if unknown:
        raise FilterError(f"unknown rule(s): {', '.join(map(str, unknown))}")
    since, until = time_bounds(time_range, now)
    lo = parse_amount_cents(min_amount, "min amount")
    hi = parse_amount_cents(max_amount, "max amount")
    if lo is not None and hi is not None and lo > hi:
        raise FilterError("min amount is above max amount")
    return FlagFilter(since=since, until=until, rules=ordered_rules(rules),
                      min_cents=lo, max_cents=hi, user_id=parse_user_id(user),
                      country=parse_country(country))
