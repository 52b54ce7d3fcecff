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
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from rules.params import (  # noqa: F401 - the public names of rule sets live here too
    CHANNELS,
    KINDS,
    LIST_FIELDS,
    PARAMS,
    RESERVED_IDS,
    RuleSetError,
    decimal_places,
    jsonable,
    normalise,
    read_list_text,
)
from rules.text_file import TextFileError, read_text_file

DEFAULT_RULES = "rules/default.toml"


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
            out[name] = jsonable(value)
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
        places = max(decimal_places(d)
                     for d in (self.alert_threshold, *(r.weight for r in self.rules)))
        scale = 10 ** places
        units = tuple(int(r.weight * scale) for r in self.rules)
        return units, int(self.alert_threshold * scale), scale

    def to_dict(self) -> dict[str, Any]:
        """The resolved set (list files inlined) as JSON-able data; ``from_dict`` reads it."""
        return {"version": self.version, **json.loads(self.canonical_json())}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> RuleSet:
        from rules.validate import build

        return build(data, source, base_dir=None)

    def with_overrides(self, assignments: Iterable[str]) -> RuleSet:
        """Apply ``RULE_ID.PARAM=VALUE`` / ``alert_threshold=VALUE`` texts (list parameters as
        comma-separated text); RuleSetError names a bad one."""
        assignments = list(assignments)
        if not assignments:
            return self
        from rules.validate import apply_override, build

        data = self.to_dict()
        for text in assignments:
            apply_override(data, text, self)
        return build(data, self.source, base_dir=None)

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
    from rules.validate import build

    return build(data, source, base_dir)


def rule_set_from_cli(path: str | Path | None, assignments: Sequence[str] = ()) -> RuleSet:
    """``load_rule_set`` for a command line: a problem becomes a one-line UsageError (exit 2)."""
    from fraudlake.cli import UsageError

    try:
        return load_rule_set(path, assignments)
    except RuleSetError as exc:
        raise UsageError(str(exc)) from None


def _load_file(path: Path, source: str) -> RuleSet:
    try:
        text = read_text_file(path, "rule set file")
    except TextFileError as exc:
        raise RuleSetError(f"{source}: {exc}") from None
    return parse_rule_set(text, source, base_dir=path.parent)


