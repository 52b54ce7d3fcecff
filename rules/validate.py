"""TOML data → a validated ``RuleSet`` (``build``), and ``--set`` overrides applied to the data
(``apply_override``). Every problem is a one-line ``RuleSetError`` naming file, rule and problem."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rules.model import Rule, RuleSet
from rules.params import (
    CHANNELS,
    COMMON_KEYS,
    ID_PATTERN,
    KINDS,
    MAX_ID,
    MAX_LIST_VALUES,
    PARAMS,
    RESERVED_IDS,
    VERSION_PATTERN,
    WEIGHT,
    RuleSetError,
    read_list_text,
    read_scope,
    read_strings,
    read_value,
)
from rules.text_file import TextFileError, read_text_file


def build(data: Mapping[str, Any], source: str, base_dir: Path | None) -> RuleSet:
    def fail(problem: str) -> RuleSetError:
        return RuleSetError(f"{source}: {problem}")

    unknown = sorted(set(data) - {"version", "alert_threshold", "rule", "rules"})
    if unknown:
        raise fail(f"unknown key {unknown[0]!r} (allowed: version, alert_threshold, [[rule]])")
    version = data.get("version")
    if not isinstance(version, str) or not VERSION_PATTERN.match(version):
        raise fail("version must be a label of letters, digits, '.', '_', '+' or '-' "
                   f"(1-64 characters), got {version!r}")
    try:
        threshold = read_value(data.get("alert_threshold", Decimal(1)), WEIGHT, "alert_threshold")
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
    if not isinstance(rid, str) or not ID_PATTERN.match(rid) or len(rid) > MAX_ID:
        raise error(f"id must match [a-z][a-z0-9_]* (at most {MAX_ID} characters), got "
                    f"{rid!r}", f"#{index}")
    name = f"'{rid}'"
    if rid in RESERVED_IDS or rid.startswith("shadow_"):
        raise error("id is reserved (a column name of the flag outputs or the event "
                    "contract, or starts with shadow_)", name)
    kind = raw.get("kind")
    if kind not in KINDS:
        raise error(f"unknown kind {kind!r} (kinds: {', '.join(KINDS)})", name)
    spec = PARAMS[kind]
    allowed = {*COMMON_KEYS, *spec} | ({"values", "file"} if kind == "in_list" else set())
    extra = sorted(set(raw) - allowed)
    if extra:
        raise error(f"unknown parameter {extra[0]!r} for kind {kind} (allowed: "
                    f"{', '.join(sorted(allowed - {'id', 'kind'}))})", name)
    try:
        params: dict[str, Any] = {}
        for pname, p in spec.items():
            if pname not in raw and p.default is ...:
                raise ValueError(f"missing parameter {pname!r}")
            params[pname] = read_value(raw.get(pname, p.default), p, pname)
        if kind == "in_list":
            params["values"] = _list_values(raw, base_dir)
        _check_relations(kind, params)
        weight = read_value(raw.get("weight", Decimal(1)), WEIGHT, "weight")
        channels = read_scope(raw.get("channels"), "channels")
        if channels and (bad := sorted(set(channels) - set(CHANNELS))):
            raise ValueError(f"unknown channel {bad[0]!r} (channels: {', '.join(CHANNELS)})")
        categories = read_scope(raw.get("categories"), "categories")
    except ValueError as exc:
        raise error(str(exc), name) from None
    return Rule(id=rid, kind=kind, params=MappingProxyType(params), weight=weight,
                channels=channels, categories=categories)


def _check_relations(kind: str, params: dict[str, Any]) -> None:
    if kind == "amount_vs_history" and params["min_history"] > params["history"]:
        raise ValueError(f"min_history ({params['min_history']}) must be <= history "
                         f"({params['history']})")


def _list_values(raw: Mapping[str, Any], base_dir: Path | None) -> tuple[str, ...]:
    has_values, has_file = "values" in raw, "file" in raw
    if has_values == has_file:
        raise ValueError("give exactly one of values = [..] or file = \"lists/x.txt\"")
    if has_values:
        return read_strings(raw["values"], "values")
    file = raw["file"]
    if not isinstance(file, str) or not file:
        raise ValueError(f"file must be a path relative to the rule set file, got {file!r}")
    if base_dir is None:
        raise ValueError("file lists need a rule set read from a file")
    path = base_dir / file
    try:
        text = read_text_file(path, "list file")
    except TextFileError as exc:
        raise ValueError(f"list file {file!r}: {exc} (looked at {path})") from None
    values = read_list_text(text)
    if len(values) > MAX_LIST_VALUES:
        raise ValueError(f"list file {file!r} has more than {MAX_LIST_VALUES:,} values")
    return read_strings(values, f"list file {file!r}")


# --- overrides --------------------------------------------------------------------------------

def apply_override(data: dict[str, Any], text: str, rule_set: RuleSet) -> None:
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


