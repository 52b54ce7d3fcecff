"""Rule-set parameters: the kinds, each kind's parameters with their types and bounds, and
how one value is read and checked (pure; ``rules.validate`` uses it, ``rules.model`` re-exports
the public names)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any

KINDS: tuple[str, ...] = (
    "amount_over", "velocity_count", "velocity_amount", "local_hour",
    "impossible_travel", "amount_vs_history", "new_device", "in_list",
)
#: Event columns an ``in_list`` rule may match.
LIST_FIELDS: tuple[str, ...] = ("merchant_id", "device_id", "card_last4", "country", "city")
CHANNELS: tuple[str, ...] = ("pos", "online", "atm")
#: Columns of the flag outputs and of the event contract: never a rule id.
RESERVED_IDS: frozenset[str] = frozenset({
    "transaction_id", "score", "flagged", "rule_set_id", "rules_fired",
    "user_id", "ts", "amount", "lat", "lon", "utc_offset_min", "is_fraud", "fraud_scenario",
    "currency", "merchant_id", "merchant_name", "category", "channel", "city", "country",
    "card_last4", "device_id", "year", "month", "rows",
})
ID_PATTERN = re.compile(r"[a-z][a-z0-9_]*\Z")
VERSION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}\Z")
MAX_ID = 64
MAX_VALUE_LEN = 256
MAX_LIST_VALUES = 1_000_000


class RuleSetError(ValueError):
    """A rule set that cannot be used; the message is one line naming file, rule and problem."""


# --- parameter kinds --------------------------------------------------------------------------

@dataclass(frozen=True)
class Param:
    """How one parameter is read: its type, bounds and default (``...`` = required)."""

    type: str  # "decimal" | "int" | "float" | "field"
    low: float | int | Decimal | None = None
    high: float | int | Decimal | None = None
    low_open: bool = False  # True: value must be > low (else >= low)
    places: int | None = None  # decimals: at most this many decimal places
    default: Any = ...


def _money(default: Any = ...) -> Param:
    """An amount: a decimal in [0, 10^15] with at most 2 decimal places."""
    return Param("decimal", Decimal(0), Decimal(10) ** 15, places=2, default=default)


_WINDOW = Param("int", 0, 366 * 86400)

PARAMS: Mapping[str, Mapping[str, Param]] = MappingProxyType({
    "amount_over": {"threshold": _money()},
    "velocity_count": {"window_seconds": _WINDOW, "count": Param("int", 1, 1_000_000),
                       "max_amount": _money(default=None)},
    "velocity_amount": {"window_seconds": _WINDOW, "total": _money()},
    "local_hour": {"start_hour": Param("int", 0, 24), "end_hour": Param("int", 0, 24)},
    "impossible_travel": {
        "distance_km": Param("float", 0.0, 1e5), "speed_kmh": Param("float", 0.0, 1e9),
        "min_hours": Param("float", 0.0, 1e6, low_open=True),
        "earth_radius_km": Param("float", 0.0, 1e6, low_open=True, default=6371.0)},
    "amount_vs_history": {
        "ratio": Param("decimal", Decimal(0), Decimal(1000), low_open=True, places=4),
        "history": Param("int", 1, 100), "min_history": Param("int", 1, 100)},
    "new_device": {"lookback_days": Param("int", 0, 3660), "min_history": Param("int", 0,
                                                                                    1_000_000)},
    "in_list": {"field": Param("field")},
})
WEIGHT = Param("decimal", Decimal(0), Decimal(10) ** 6, low_open=True, places=6)
COMMON_KEYS = ("id", "kind", "weight", "channels", "categories")



def read_value(value: Any, p: Param, name: str) -> Any:
    """One parameter value of type ``p.type``, checked against its bounds."""
    if value is None:
        if p.default is None:
            return None
        raise ValueError(f"{name} must not be empty")
    if p.type == "field":
        if value not in LIST_FIELDS:
            raise ValueError(f"{name} must be one of {', '.join(LIST_FIELDS)}, got {value!r}")
        return value
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if p.type == "int":
        out: Any = _int(value, name)
    elif p.type == "float":
        out = _float(value, name)
    else:
        out = _decimal(value, name, p.places)
    _bounds(out, p, name)
    return out


def _int(value: Any, name: str) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d{1,18}", value.strip()):
        return int(value)
    raise ValueError(f"{name} must be a whole number, got {value!r}")


def _float(value: Any, name: str) -> float:
    try:
        out = float(value) if isinstance(value, int | float | str) else math.nan
    except ValueError:
        out = math.nan
    if not math.isfinite(out):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return out


def _decimal(value: Any, name: str, places: int | None) -> Decimal:
    if isinstance(value, float):
        text = repr(value)  # a TOML number is read by its shortest decimal form
    elif isinstance(value, int | str | Decimal):
        text = str(value).strip()
    else:
        raise ValueError(f"{name} must be a decimal (a string like \"1000.00\"), got {value!r}")
    try:
        out = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{name} must be a decimal, got {value!r}") from None
    if not out.is_finite():
        raise ValueError(f"{name} must be a finite decimal, got {value!r}")
    if places is not None and decimal_places(out) > places:
        raise ValueError(f"{name} may have at most {places} decimal places, got {value!r}")
    return out


def _bounds(value: Any, p: Param, name: str) -> None:
    low_ok = p.low is None or (value > p.low if p.low_open else value >= p.low)
    high_ok = p.high is None or value <= p.high
    if not (low_ok and high_ok):
        lo = f"> {p.low}" if p.low_open else f">= {p.low}"
        raise ValueError(f"{name} must be {lo} and <= {p.high}, got {jsonable(value)}")


def read_scope(value: Any, name: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = read_strings(value, name)
    if not items:
        raise ValueError(f"{name} must not be an empty list (leave it out for no scope)")
    return items


def read_strings(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"{name} must be a list of strings, got {type(value).__name__}")
    for v in value:
        if not isinstance(v, str):
            raise ValueError(f"{name} must hold strings (write \"0042\", not 42), got {v!r}")
        if not v or len(v) > MAX_VALUE_LEN:
            raise ValueError(f"{name}: values must be 1-{MAX_VALUE_LEN} characters")
    return tuple(sorted(set(value)))


def normalise(d: Decimal) -> str:
    """A decimal's canonical text: no exponent, no trailing zeros (``1000.00`` → ``1000``)."""
    text = format(d.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def decimal_places(d: Decimal) -> int:
    exp = d.normalize().as_tuple().exponent
    return max(0, -exp) if isinstance(exp, int) else 0


def jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return normalise(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def read_list_text(text: str) -> list[str]:
    """One value a line, each stripped; blank lines and lines starting with ``#`` ignored."""
    return [s for line in text.splitlines() if (s := line.strip()) and not s.startswith("#")]
