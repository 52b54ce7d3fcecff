"""What-if over the history: several rule sets decided in ONE pass, then compared.

``combine`` merges every variant (A and B of a diff, the points of a sweep) into one rule set
whose rules are the distinct rules of all variants (a rule shared by A and B is decided once);
the engine decides that set chunk by chunk and hands each chunk (as ``ChunkRows``) with the
combined rules' bits to ``batch.whatif_accumulate.WhatIf``. Each variant's ``flagged`` is
rebuilt exactly from its rules' bits and integer weight units (``variant_flags``).

Pure functions over NumPy/Polars data; no I/O (``batch.whatif_run`` drives the engine).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from rules.model import Rule, RuleSet

DAY_US = 86_400_000_000
FLAGGED = "flagged"
#: Labels as small integers (the fast engine's ``code % 4``): unlabelled, genuine, fraud.
UNLABELLED, GENUINE, FRAUD = 0, 1, 2
#: ``month`` key of a row without a time (a NULL core column: decided false, counted in rows).
NO_MONTH = 0


@dataclass(frozen=True)
class Variant:
    """One rule set among those decided together: its rules' columns in the combined set."""

    name: str
    rule_set: RuleSet
    columns: tuple[str, ...]  # combined column of each rule, in the set's file order

    def units(self) -> tuple[tuple[int, ...], int]:
        units, threshold, _scale = self.rule_set.weight_units()
        return units, threshold


def combine(variants: Mapping[str, RuleSet]) -> tuple[RuleSet, dict[str, Variant]]:
    """One rule set deciding every distinct rule of ``variants`` once (ids ``w0, w1, …``), and
    where each variant's rules are in it. Rules are the same when kind, parameters and scope
    are (weights do not change what fires)."""
    combined: list[Rule] = []
    index: dict[str, str] = {}
    out: dict[str, Variant] = {}
    for name, rule_set in variants.items():
        columns = []
        for rule in rule_set.rules:
            key = _firing_key(rule)
            if key not in index:
                index[key] = f"w{len(combined)}"
                combined.append(Rule(id=index[key], kind=rule.kind, params=rule.params,
                                     channels=rule.channels, categories=rule.categories))
            columns.append(index[key])
        out[name] = Variant(name, rule_set, tuple(columns))
    merged = RuleSet(version="whatif", alert_threshold=Decimal(1), rules=tuple(combined),
                     source="(combined)")
    return merged, out


def _firing_key(rule: Rule) -> str:
    body = rule.to_dict()
    body.pop("id")
    body.pop("weight")
    return json.dumps(body, sort_keys=True)


def variant_score(variant: Variant, fired: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """The variant's score in integer weight units (``rules.model.RuleSet.weight_units``)."""
    units, _threshold = variant.units()
    score = np.zeros(n, dtype=np.int64)
    for col, u in zip(variant.columns, units, strict=True):
        score[fired[col]] += u
    return score


def variant_flags(variant: Variant, fired: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """The variant's ``flagged`` bits: integer weight units of its fired rules >= threshold."""
    units, threshold = variant.units()
    if len(set(units)) == 1 and units[0] >= threshold:  # any rule alone flags: a plain OR
        out = np.zeros(n, dtype=bool)
        for col in variant.columns:
            out |= fired[col]
        return out
    return variant_score(variant, fired, n) >= threshold


@dataclass(frozen=True)
class ChunkRows:
    """One decided chunk's rows as the aggregates read them (same length and order as the
    fired bits): NumPy where counted; the ids and scenarios stay Arrow (read for few rows)."""

    transaction_id: pa.ChunkedArray
    user_id: np.ndarray  # int64
    ts_us: np.ndarray  # int64 epoch µs (anything where ``month`` is NO_MONTH)
    amount_cents: np.ndarray  # int64
    label: np.ndarray  # int8: UNLABELLED, GENUINE, FRAUD
    month: np.ndarray  # int64 year * 12 + month - 1 + 1; NO_MONTH: a row without a time
    scenario: pa.ChunkedArray  # string, NULL for genuine or unlabelled rows

    def __len__(self) -> int:
        return len(self.ts_us)

    def ids(self, idx: np.ndarray) -> pl.Series:
        return _strings(self.transaction_id.take(pa.array(idx, pa.int64())))

    def scenarios(self, idx: np.ndarray) -> pl.Series:
        return _strings(self.scenario.take(pa.array(idx, pa.int64())))

    def with_scenario(self) -> np.ndarray:
        """Positions of the rows with a fraud scenario (a small share)."""
        if self.scenario.null_count == len(self.scenario):
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(np.asarray(
            pc.is_valid(self.scenario).to_numpy(zero_copy_only=False), dtype=bool))


def months_of(ts_us: np.ndarray, timed: np.ndarray | None = None) -> np.ndarray:
    """``year * 12 + month - 1 + 1`` of each epoch-µs time (NO_MONTH where not ``timed``):
    a binary search among the month starts the times span (cheaper than calendar maths)."""
    out = np.full(len(ts_us), NO_MONTH, dtype=np.int64)
    mask = np.ones(len(ts_us), dtype=bool) if timed is None else timed
    if not mask.any():
        return out
    ts = ts_us[mask]
    lo, hi = (datetime.fromtimestamp(int(x) // 1_000_000, UTC) for x in (ts.min(), ts.max()))
    first = lo.year * 12 + lo.month - 1
    starts = [int(datetime(m // 12, m % 12 + 1, 1, tzinfo=UTC).timestamp()) * 1_000_000
              for m in range(first, hi.year * 12 + hi.month)]
    out[mask] = np.searchsorted(np.array(starts, dtype=np.int64), ts, side="right") + first
    return out


def rows_from_scan(table: pa.Table) -> ChunkRows:
    """ChunkRows of a fast-engine scan (``batch.fast_flags``: labels and year in ``code``)."""
    code = _numpy(table, "code")
    ts = _numpy(table, "ts_us")
    return ChunkRows(
        transaction_id=table.column("transaction_id"),
        user_id=_numpy(table, "user_id"), ts_us=ts,
        amount_cents=_numpy(table, "amount_cents"),
        label=(code % 4).astype(np.int8), month=months_of(ts, code >= 4),
        scenario=table.column("fraud_scenario"))


def rows_from_frame(frame: pl.DataFrame) -> ChunkRows:
    """ChunkRows of a frame with transaction_id, user_id, ts_us, amount_cents, is_fraud and
    fraud_scenario (tests, small inputs)."""
    fraud = frame["is_fraud"]
    label = np.where(fraud.is_null().to_numpy(), UNLABELLED,
                     np.where(fraud.fill_null(False).to_numpy(), FRAUD, GENUINE))
    ts = frame["ts_us"]
    return ChunkRows(
        transaction_id=pa.chunked_array([frame["transaction_id"].cast(pl.String).to_arrow()]),
        user_id=frame["user_id"].to_numpy(), ts_us=ts.fill_null(0).to_numpy(),
        amount_cents=frame["amount_cents"].to_numpy(), label=label.astype(np.int8),
        month=months_of(ts.fill_null(0).to_numpy(), ts.is_not_null().to_numpy()),
        scenario=pa.chunked_array([frame["fraud_scenario"].cast(pl.String).to_arrow()]))


def _numpy(table: pa.Table, name: str) -> np.ndarray:
    parts = [c.to_numpy(zero_copy_only=False) for c in table.column(name).chunks]
    return (np.concatenate(parts) if len(parts) > 1 else parts[0]).astype(np.int64, copy=False)


def _strings(values: pa.ChunkedArray | pa.Array) -> pl.Series:
    out = pl.from_arrow(values)
    assert isinstance(out, pl.Series)
    return out.cast(pl.String)
