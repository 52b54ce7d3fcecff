"""Rule parameters (v1) — the ONE place they live.

Both the DuckDB SQL (bound as named parameters, never formatted in) and the streaming rule
engine read a ``RuleParams``. What-if runs override single values: ``high_amount.threshold=2500``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from decimal import Decimal, InvalidOperation
from typing import Any


@dataclass(frozen=True)
class RuleParams:
    # high_amount: amount > threshold (decimal compare)
    high_amount_threshold: Decimal = Decimal("1000.00")
    # high_frequency: >= count events (this one included) with ts >= this.ts - window_seconds
    high_frequency_window_seconds: int = 60
    high_frequency_count: int = 5
    # unusual_hour: start_hour <= local hour < end_hour; wraps past midnight when start > end
    unusual_hour_start_hour: int = 0
    unusual_hour_end_hour: int = 5
    # geo_mismatch: d >= distance_km and d / max(hours, min_hours) > speed_kmh
    geo_mismatch_distance_km: float = 100.0
    geo_mismatch_speed_kmh: float = 900.0
    geo_mismatch_min_hours: float = 1 / 60
    geo_mismatch_earth_radius_km: float = 6371.0

    def __post_init__(self) -> None:
        if self.high_amount_threshold < 0:
            raise ValueError("high_amount.threshold must be >= 0")
        if self.high_frequency_window_seconds < 0:
            raise ValueError("high_frequency.window_seconds must be >= 0")
        if self.high_frequency_count < 1:
            raise ValueError("high_frequency.count must be >= 1")
        for name in ("unusual_hour_start_hour", "unusual_hour_end_hour"):
            if not 0 <= getattr(self, name) <= 24:
                raise ValueError(f"{_dotted(name)} must be within 0..24")
        if self.geo_mismatch_min_hours <= 0 or self.geo_mismatch_earth_radius_km <= 0:
            raise ValueError("geo_mismatch.min_hours and earth_radius_km must be > 0")

    def with_overrides(self, assignments: Iterable[str]) -> RuleParams:
        """Apply ``rule.param=value`` strings; ValueError names a bad one."""
        changes: dict[str, Any] = {}
        types = {f.name: f.type for f in fields(self)}
        for text in assignments:
            key, sep, raw = text.partition("=")
            name = key.strip().replace(".", "_")
            if not sep or name not in types:
                raise ValueError(f"unknown parameter {key.strip()!r}; known: {', '.join(names())}")
            changes[name] = _parse(raw.strip(), types[name], key.strip())
        return replace(self, **changes)

    def sql_params(self) -> dict[str, object]:
        """Named parameters for the rule SQL (``$high_amount_threshold`` …)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def as_dict(self) -> dict[str, str | int | float]:
        """Dotted names for reports: ``{"high_amount.threshold": "1000.00", …}``."""
        return {
            _dotted(f.name): (str(v) if isinstance(v := getattr(self, f.name), Decimal) else v)
            for f in fields(self)
        }


def names() -> list[str]:
    return [_dotted(f.name) for f in fields(RuleParams)]


_RULES = ("high_amount", "high_frequency", "unusual_hour", "geo_mismatch")


def _dotted(field_name: str) -> str:
    for rule in _RULES:
        if field_name.startswith(rule + "_"):
            return f"{rule}.{field_name[len(rule) + 1:]}"
    return field_name


def _parse(raw: str, type_name: object, key: str) -> object:
    try:
        if type_name in ("Decimal", Decimal):
            return Decimal(raw).quantize(Decimal("0.01"))
        if type_name in ("int", int):
            return int(raw)
        return float(raw)
    except (InvalidOperation, ValueError):
        raise ValueError(f"bad value for {key}: {raw!r}") from None


DEFAULT_PARAMS = RuleParams()


def params_from_cli(assignments: Iterable[str]) -> RuleParams:
    """``DEFAULT_PARAMS`` with the ``--set RULE.PARAM=VALUE`` overrides of a command line; a bad
    one is a one-line ``UsageError`` naming ``--set``."""
    from fraudlake.cli import UsageError

    try:
        return DEFAULT_PARAMS.with_overrides(assignments)
    except ValueError as exc:
        raise UsageError(f"--set: {exc}") from None
