"""Threshold sweeps: ``RULE_ID.PARAM=START:STOP:STEP`` → the grid of rule sets to decide in one
pass, and the best point within an alert budget. Pure; values step exactly (decimals)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from rules.model import PARAMS, RuleSet, RuleSetError, normalise

MAX_POINTS = 201


@dataclass(frozen=True)
class Sweep:
    rule_id: str
    param: str
    values: tuple[str, ...]  # exact text of each point, e.g. "1000", "1200"

    @property
    def key(self) -> str:
        return f"{self.rule_id}.{self.param}"


def parse_sweep(text: str, rule_set: RuleSet) -> Sweep:
    """``RULE_ID.PARAM=START:STOP:STEP`` (STOP included); RuleSetError names a bad one."""
    key, sep, spec = text.partition("=")
    rid, dot, param = key.strip().partition(".")
    parts = spec.split(":")
    if not sep or not dot or len(parts) != 3:
        raise RuleSetError(f"--sweep {text!r}: expected RULE_ID.PARAM=START:STOP:STEP")
    if rid not in rule_set.rule_ids:
        raise RuleSetError(f"--sweep {key}: unknown rule {rid!r} (rules: "
                           f"{', '.join(rule_set.rule_ids)})")
    kind = rule_set.rule(rid).kind
    numeric = {p for p, spec_ in PARAMS[kind].items() if spec_.type != "field"} | {"weight"}
    if param not in numeric:
        raise RuleSetError(f"--sweep {key}: {param!r} is not a numeric parameter of {kind} "
                           f"({', '.join(sorted(numeric))})")
    try:
        start, stop, step = (Decimal(p.strip()) for p in parts)
    except InvalidOperation:
        raise RuleSetError(f"--sweep {key}: START:STOP:STEP must be numbers, got {spec!r}"
                           ) from None
    if not all(d.is_finite() for d in (start, stop, step)) or step <= 0 or stop < start:
        raise RuleSetError(f"--sweep {key}: need finite START <= STOP and STEP > 0, got {spec!r}")
    count = int((stop - start) / step) + 1
    if count > MAX_POINTS:
        raise RuleSetError(f"--sweep {key}: {count} points, at most {MAX_POINTS}")
    values = tuple(normalise(start + k * step) for k in range(count))
    return Sweep(rid, param, values)


def sweep_sets(base: RuleSet, sweeps: Sequence[Sweep]) -> dict[str, RuleSet]:
    """Every grid point as a rule set, named ``rule.param=value[,rule.param=value]``; each is
    validated (a point outside a parameter's range is a RuleSetError naming it)."""
    if not 1 <= len(sweeps) <= 2:
        raise RuleSetError("--sweep: give one or two parameters")
    if len({s.key for s in sweeps}) != len(sweeps):
        raise RuleSetError("--sweep: the same parameter twice")
    grid = itertools.product(*[[(s.key, v) for v in s.values] for s in sweeps])
    points = 1
    for s in sweeps:
        points *= len(s.values)
    if points > MAX_POINTS:
        raise RuleSetError(f"--sweep: {points} grid points, at most {MAX_POINTS}")
    out = {}
    for combo in grid:
        name = ",".join(f"{k}={v}" for k, v in combo)
        out[name] = base.with_overrides([f"{k}={v}" for k, v in combo])
    return out


def best_within_budget(points: Sequence[dict], budget_per_day: float) -> dict | None:
    """The point with the highest recall whose mean alerts per day fit the budget (ties: higher
    precision, then fewer alerts); None when no point fits."""
    fits = [p for p in points if p["alerts_per_day"] <= budget_per_day]
    if not fits:
        return None
    return max(fits, key=lambda p: (p["recall"] or 0.0, p["precision"] or 0.0,
                                    -p["alerts_per_day"]))


def frontier(points: Sequence[dict]) -> list[dict]:
    """Points no other point beats on both recall (higher) and alerts per day (fewer)."""
    out = []
    for p in points:
        beaten = any((q["recall"] or 0) >= (p["recall"] or 0)
                     and q["alerts_per_day"] <= p["alerts_per_day"]
                     and ((q["recall"] or 0) > (p["recall"] or 0)
                          or q["alerts_per_day"] < p["alerts_per_day"])
                     for q in points)
        if not beaten:
            out.append(p)
    return sorted(out, key=lambda p: p["alerts_per_day"])
