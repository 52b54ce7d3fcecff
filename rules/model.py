"""Rule sets as versioned data: parse, validate, identify (docs/design.md, "Rule sets (v2)").

A rule set is a TOML file::

    version = "default-1"
    alert_threshold = 1.0
    [[rule]]
    id = "high_amount"
    kind = "amount_over"
    threshold = "1000.00"
    weight = 1.0                      # optional
    channels = ["online"]             # optional scope, also `categories`

``load_rule_set(path)`` reads and validates one (``None`` = the packaged ``rules/default.toml``);
every problem is a ``RuleSetError`` whose message is one line naming the file, the rule and
the problem. The parsed ``RuleSet`` is immutable and typed: each ``Rule.params`` holds every
parameter of its kind with defaults filled in (``Decimal`` for money, ratios and weights,
``int`` for counts, hours and windows, ``float`` for distances and speeds, a sorted tuple of
strings for list values, a list ``file`` already read).

The id is ``<version>@<first 12 hex of sha256>`` over the canonical JSON of the parsed set
(``canonical_json``: sorted keys, no whitespace, decimals as normalised strings, floats as
their ``repr``, lists deduplicated and sorted, list files replaced by their values), so two
files that mean the same get the same id whatever their spelling.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
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
DEFAULT_RULES = "rules/default.toml"
_ID = re.compile(r"[a-z][a-z0-9_]*\Z")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}\Z")
_MAX_ID = 64
_MAX_VALUE_LEN = 256
_MAX_LIST_VALUES = 1_000_000


class RuleSetError(ValueError):
    """A rule set that cannot be used; the message is one line naming file, rule and problem."""


# --- parameter kinds --------------------------------------------------------------------------

@dataclass(frozen=True)
class _Param:
    """How one parameter is read: its type, bounds and default (``...`` = required)."""

    type: str  # "decimal" | "int" | "float" | "field"
    low: float | int | Decimal | None = None
    high: float | int | Decimal | None = None
    low_open: bool = False  # True: value must be > low (else >= low)
    places: int | None = None  # decimals: at most this many decimal places
    default: Any = ...


_MONEY = dict(low=Decimal(0), high=Decimal(10) ** 15, places=2)
_WINDOW = _Param("int", 0, 366 * 86400)

PARAMS: Mapping[str, Mapping[str, _Param]] = MappingProxyType({
    "amount_over": {"threshold": _Param("decimal", **_MONEY)},
    "velocity_count": {"window_seconds": _WINDOW, "count": _Param("int", 1, 1_000_000),
                       "max_amount": _Param("decimal", **_MONEY, default=None)},
    "velocity_amount": {"window_seconds": _WINDOW, "total": _Param("decimal", **_MONEY)},
    "local_hour": {"start_hour": _Param("int", 0, 24), "end_hour": _Param("int", 0, 24)},
    "impossible_travel": {
        "distance_km": _Param("float", 0.0, 1e5), "speed_kmh": _Param("float", 0.0, 1e9),
        "min_hours": _Param("float", 0.0, 1e6, low_open=True),
        "earth_radius_km": _Param("float", 0.0, 1e6, low_open=True, default=6371.0)},
    "amount_vs_history": {
        "ratio": _Param("decimal", Decimal(0), Decimal(1000), low_open=True, places=4),
        "history": _Param("int", 1, 100), "min_history": _Param("int", 1, 100)},
    "new_device": {"lookback_days": _Param("int", 0, 3660), "min_history": _Param("int", 0,
                                                                                    1_000_000)},
    "in_list": {"field": _Param("field")},
})
_WEIGHT = _Param("decimal", Decimal(0), Decimal(10) ** 6, low_open=True, places=6)
_COMMON_KEYS = ("id", "kind", "weight", "channels", "categories")


# --- the model --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """One rule: an id, a kind, its typed parameters, a weight and an optional scope."""

    id: str
    kind: str
    params: Mapping[str, Any]
    weight: Decimal = Decimal(1)
    channels: tuple[str, ...] | None = None
    categories: tuple[str, ...] | None = None

    def param(self, name: str) -> Any:
        return self.params[name]

    @property
    def scoped(self) -> bool:
        return self.channels is not None or self.categories is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, canonical: every default filled in, decimals as normalised strings."""
        out: dict[str, Any] = {"id": self.id, "kind": self.kind,
                               "weight": normalise(self.weight),
                               "channels": list(self.channels) if self.channels else None,
                               "categories": list(self.categories) if self.categories else None}
        for name, value in self.params.items():
            out[name] = _jsonable(value)
        return out


@dataclass(frozen=True)
class RuleSet:
    """A validated rule set; ``id`` names exactly what it decides."""

    version: str
    alert_threshold: Decimal
    rules: tuple[Rule, ...]
    source: str = DEFAULT_RULES

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return tuple(r.id for r in self.rules)

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    def canonical_json(self) -> str:
        body = {"alert_threshold": normalise(self.alert_threshold),
                "rules": [r.to_dict() for r in self.rules]}
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)

    @property
    def id(self) -> str:
        digest = hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()
        return f"{self.version}@{digest[:12]}"

    def weight_units(self) -> tuple[tuple[int, ...], int, int]:
        """``(units per rule in file order, threshold units, scale)``: every weight and the
        threshold is ``units / scale`` exactly, so ``flagged`` = the integer sum of the fired
        rules' units ``>= threshold units`` and ``score`` = that sum / scale."""
        places = max(_places(d) for d in (self.alert_threshold, *(r.weight for r in self.rules)))
        scale = 10 ** places
        units = tuple(int(r.weight * scale) for r in self.rules)
        return units, int(self.alert_threshold * scale), scale

    def to_dict(self) -> dict[str, Any]:
        """The resolved set (list files inlined) as JSON-able data; ``from_dict`` reads it."""
        return {"version": self.version, **json.loads(self.canonical_json())}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> RuleSet:
        return _build(data, source, base_dir=None)

    def with_overrides(self, assignments: Iterable[str]) -> RuleSet:
        """Apply ``RULE_ID.PARAM=VALUE`` / ``alert_threshold=VALUE`` texts (list parameters as
        comma-separated text); RuleSetError names a bad one."""
        assignments = list(assignments)
        if not assignments:
            return self
        data = self.to_dict()
        for text in assignments:
            _apply_override(data, text, self)
        return _build(data, self.source, base_dir=None)

    def __str__(self) -> str:
        return self.id


# --- loading ----------------------------------------------------------------------------------

def load_rule_set(path: str | Path | None = None, overrides: Iterable[str] = ()) -> RuleSet:
    """Read, validate and identify a rule set file (None = the packaged default), then apply
    ``--set`` style overrides."""
    if path is None:
        ref = resources.files("rules").joinpath("default.toml")
        with resources.as_file(ref) as real:
            rule_set = _load_file(Path(real), DEFAULT_RULES)
    else:
        rule_set = _load_file(Path(path), str(path))
    return rule_set.with_overrides(overrides)


def parse_rule_set(text: str, source: str = "<text>", base_dir: Path | None = None) -> RuleSet:
    """A rule set from TOML text; list files are read relative to ``base_dir``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleSetError(f"{source}: not valid TOML: {exc}") from None
    return _build(data, source, base_dir)


def rule_set_from_cli(path: str | Path | None, assignments: Sequence[str] = ()) -> RuleSet:
    """``load_rule_set`` for a command line: a problem becomes a one-line UsageError (exit 2)."""
    from fraudlake.cli import UsageError

    try:
        return load_rule_set(path, assignments)
    except RuleSetError as exc:
        raise UsageError(str(exc)) from None


def _load_file(path: Path, source: str) -> RuleSet:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RuleSetError(f"{source}: no such rule set file") from None
    except IsADirectoryError:
        raise RuleSetError(f"{source}: is a directory, not a rule set file") from None
    except OSError as exc:
        raise RuleSetError(f"{source}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RuleSetError(f"{source}: not UTF-8 text") from None
    return parse_rule_set(text, source, base_dir=path.parent)


# --- validation -------------------------------------------------------------------------------

def _build(data: Mapping[str, Any], source: str, base_dir: Path | None) -> RuleSet:
    def fail(problem: str) -> RuleSetError:
        return RuleSetError(f"{source}: {problem}")

    unknown = sorted(set(data) - {"version", "alert_threshold", "rule", "rules"})
    if unknown:
        raise fail(f"unknown key {unknown[0]!r} (allowed: version, alert_threshold, [[rule]])")
    version = data.get("version")
    if not isinstance(version, str) or not _VERSION.match(version):
        raise fail("version must be a label of letters, digits, '.', '_', '+' or '-' "
                   f"(1-64 characters), got {version!r}")
    try:
        threshold = _read(data.get("alert_threshold", Decimal(1)), _WEIGHT, "alert_threshold")
    except ValueError as exc:
        raise fail(str(exc)) from None
    rules_raw = data.get("rule", data.get("rules"))
    if rules_raw is None or not isinstance(rules_raw, list) or not rules_raw:
        raise fail("a rule set needs at least one [[rule]]")
    rules: list[Rule] = []
    for i, raw in enumerate(rules_raw, 1):
        rule = _rule(raw, i, base_dir, lambda p, name: RuleSetError(f"{source}: rule {name}: {p}"))
        if rule.id in {r.id for r in rules}:
            raise fail(f"rule '{rule.id}': duplicate id")
        rules.append(rule)
    return RuleSet(version=version, alert_threshold=threshold, rules=tuple(rules), source=source)


def _rule(raw: Any, index: int, base_dir: Path | None,
          error: Callable[[str, str], RuleSetError]) -> Rule:
    if not isinstance(raw, Mapping):
        raise error("must be a table", f"#{index}")
    rid = raw.get("id")
    if not isinstance(rid, str) or not _ID.match(rid) or len(rid) > _MAX_ID:
        raise error(f"id must match [a-z][a-z0-9_]* (at most {_MAX_ID} characters), got "
                    f"{rid!r}", f"#{index}")
    name = f"'{rid}'"
    if rid in RESERVED_IDS or rid.startswith("shadow_"):
        raise error("id is reserved (a column name of the flag outputs or the event "
                    "contract, or starts with shadow_)", name)
    kind = raw.get("kind")
    if kind not in KINDS:
        raise error(f"unknown kind {kind!r} (kinds: {', '.join(KINDS)})", name)
    spec = PARAMS[kind]
    allowed = {*_COMMON_KEYS, *spec} | ({"values", "file"} if kind == "in_list" else set())
    extra = sorted(set(raw) - allowed)
    if extra:
        raise error(f"unknown parameter {extra[0]!r} for kind {kind} (allowed: "
                    f"{', '.join(sorted(allowed - {'id', 'kind'}))})", name)
    try:
        params: dict[str, Any] = {}
        for pname, p in spec.items():
            if pname not in raw and p.default is ...:
                raise ValueError(f"missing parameter {pname!r}")
            params[pname] = _read(raw.get(pname, p.default), p, pname)
        if kind == "in_list":
            params["values"] = _list_values(raw, base_dir)
        _check_relations(kind, params)
        weight = _read(raw.get("weight", Decimal(1)), _WEIGHT, "weight")
        channels = _scope(raw.get("channels"), "channels")
        if channels and (bad := sorted(set(channels) - set(CHANNELS))):
            raise ValueError(f"unknown channel {bad[0]!r} (channels: {', '.join(CHANNELS)})")
        categories = _scope(raw.get("categories"), "categories")
    except ValueError as exc:
        raise error(str(exc), name) from None
    return Rule(id=rid, kind=kind, params=MappingProxyType(params), weight=weight,
                channels=channels, categories=categories)


def _check_relations(kind: str, params: dict[str, Any]) -> None:
    if kind == "amount_vs_history" and params["min_history"] > params["history"]:
        raise ValueError(f"min_history ({params['min_history']}) must be <= history "
                         f"({params['history']})")


def _read(value: Any, p: _Param, name: str) -> Any:
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
    if places is not None and _places(out) > places:
        raise ValueError(f"{name} may have at most {places} decimal places, got {value!r}")
    return out


def _bounds(value: Any, p: _Param, name: str) -> None:
    low_ok = p.low is None or (value > p.low if p.low_open else value >= p.low)
    high_ok = p.high is None or value <= p.high
    if not (low_ok and high_ok):
        lo = f"> {p.low}" if p.low_open else f">= {p.low}"
        raise ValueError(f"{name} must be {lo} and <= {p.high}, got {_jsonable(value)}")


def _scope(value: Any, name: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = _strings(value, name)
    if not items:
        raise ValueError(f"{name} must not be an empty list (leave it out for no scope)")
    return items


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"{name} must be a list of strings, got {type(value).__name__}")
    for v in value:
        if not isinstance(v, str):
            raise ValueError(f"{name} must hold strings (write \"0042\", not 42), got {v!r}")
        if not v or len(v) > _MAX_VALUE_LEN:
            raise ValueError(f"{name}: values must be 1-{_MAX_VALUE_LEN} characters")
    return tuple(sorted(set(value)))


def _list_values(raw: Mapping[str, Any], base_dir: Path | None) -> tuple[str, ...]:
    has_values, has_file = "values" in raw, "file" in raw
    if has_values == has_file:
        raise ValueError("give exactly one of values = [..] or file = \"lists/x.txt\"")
    if has_values:
        return _strings(raw["values"], "values")
    file = raw["file"]
    if not isinstance(file, str) or not file:
        raise ValueError(f"file must be a path relative to the rule set file, got {file!r}")
    if base_dir is None:
        raise ValueError("file lists need a rule set read from a file")
    path = base_dir / file
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"list file {file!r} not found (looked at {path})") from None
    except UnicodeDecodeError:
        raise ValueError(f"list file {file!r} is not UTF-8 text") from None
    except OSError as exc:
        raise ValueError(f"list file {file!r}: {exc.strerror or exc}") from None
    values = read_list_text(text)
    if len(values) > _MAX_LIST_VALUES:
        raise ValueError(f"list file {file!r} has more than {_MAX_LIST_VALUES:,} values")
    return _strings(values, f"list file {file!r}")


def read_list_text(text: str) -> list[str]:
    """One value a line, each stripped; blank lines and lines starting with ``#`` ignored."""
    return [s for line in text.splitlines() if (s := line.strip()) and not s.startswith("#")]


# --- overrides --------------------------------------------------------------------------------

def _apply_override(data: dict[str, Any], text: str, rule_set: RuleSet) -> None:
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key:
        raise RuleSetError(f"--set {text!r}: expected RULE_ID.PARAM=VALUE or "
                           "alert_threshold=VALUE")
    if key == "alert_threshold":
        data["alert_threshold"] = raw
        return
    rid, dot, pname = key.partition(".")
    rules = {r["id"]: r for r in data["rules"]}
    if not dot or rid not in rules:
        raise RuleSetError(f"--set {key}: unknown rule {rid!r} in {rule_set.source} (rules: "
                           f"{', '.join(rule_set.rule_ids)})")
    target = rules[rid]
    spec = PARAMS[target["kind"]]
    lists = {"channels", "categories"} | ({"values"} if target["kind"] == "in_list" else set())
    if pname in lists:
        target[pname] = [v.strip() for v in raw.split(",") if v.strip()] if raw else []
    elif pname == "weight" or pname in spec:
        target[pname] = raw
    else:
        known = sorted({"weight", *lists, *spec})
        raise RuleSetError(f"--set {key}: unknown parameter {pname!r} for rule '{rid}' "
                           f"({target['kind']}; parameters: {', '.join(known)})")


# --- canonical values -------------------------------------------------------------------------

def normalise(d: Decimal) -> str:
    """A decimal's canonical text: no exponent, no trailing zeros (``1000.00`` → ``1000``)."""
    text = format(d.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def _places(d: Decimal) -> int:
    exp = d.normalize().as_tuple().exponent
    return max(0, -exp) if isinstance(exp, int) else 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return normalise(value)
    if isinstance(value, tuple):
        return list(value)
    return value
