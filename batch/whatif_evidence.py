"""Evidence for the sampled flips of an A/B diff, as the stream and the flags carry it.

The one-pass engine keeps bits, not evidence; after the pass the few sampled cards' events
(rows the engines decide: no NULL core column) up to the newest sampled flip are read back in
``(user_id, ts, transaction_id)`` order and ``streaming.evidence.evidence_json`` says, for each
sampled flip, why each rule of A and of B fired there. Only the month files the rules can look
back into are read (``lookback``) when the input is partitioned by month; when a sampled card
has fewer earlier events there than a count-based rule needs, every file is read instead.
I/O: one or two DuckDB queries.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import duckdb
import numpy as np
import polars as pl

from queries.staging import ParquetFile, open_source
from rules.kernels import CORE_COLUMNS
from rules.model import RuleSet
from streaming.evidence import evidence_json

_ROWS = """
select *, epoch_us(ts) as ts_us from whatif_evidence_rows
where list_contains(?, user_id) and epoch_us(ts) <= ? and {decidable}
order by user_id, ts, transaction_id
"""


def lookback(sets: Sequence[RuleSet]) -> tuple[int, int]:
    """(months of files before a flip's own month that hold every event a time-windowed rule
    can see, events before the flip a count-based rule needs)."""
    days, events = 0.0, 0
    for rule in (r for rs in sets for r in rs.rules):
        p = rule.params
        if "window_seconds" in p:
            days = max(days, p["window_seconds"] / 86_400)
        if rule.kind == "new_device":
            days = max(days, p["lookback_days"])
        if rule.kind == "amount_vs_history":
            events = max(events, p["history"])
        if rule.kind == "impossible_travel":
            events = max(events, 1)
    return math.ceil(days / 28), events


def attach_evidence(con: duckdb.DuckDBPyConnection, files: Sequence[ParquetFile],
                    sample: list[dict], sets: Mapping[str, RuleSet]) -> None:
    """Add ``evidence`` = ``{side: {rule_id: {...}}}`` to each sampled flip, for each side
    (``"a"``, ``"b"``) of ``sets`` over the rules that fired there (``<side>_fired``)."""
    if not sample:
        return
    months, events = lookback(list(sets.values()))
    near = _files_near(files, [s["ts_us"] for s in sample], months)
    frame = _rows(con, near or files, sample)
    positions = _positions(frame, sample)
    if near is not None and len(near) < len(files) and not _enough_history(
            frame, positions, events):
        frame = _rows(con, files, sample)
        positions = _positions(frame, sample)
    for s in sample:
        s["evidence"] = {}
    for side, rule_set in sets.items():
        fired = {rid: np.zeros(frame.height, dtype=bool) for rid in rule_set.rule_ids}
        for s, i in zip(sample, positions, strict=True):
            for rid in s[f"{side}_fired"]:
                fired[rid][i] = True
        texts = evidence_json(frame, positions, fired, rule_set)
        for s, text in zip(sample, texts, strict=True):
            s["evidence"][side] = json.loads(text)


def _files_near(files: Sequence[ParquetFile], times_us: Sequence[int],
                months: int) -> list[ParquetFile] | None:
    """The month files from ``months`` before each time to its own month; None when the
    input is not partitioned by month."""
    if any(f.year is None or f.month is None for f in files):
        return None
    wanted: set[int] = set()
    for t in times_us:
        day = datetime.fromtimestamp(t // 1_000_000, UTC)
        m = day.year * 12 + day.month - 1
        wanted.update(range(m - months - 1, m + 1))  # one more: a window crossing a month start
    return [f for f in files if f.year * 12 + f.month - 1 in wanted]  # type: ignore[operator]


def _rows(con: duckdb.DuckDBPyConnection, files: Sequence[ParquetFile],
          sample: list[dict]) -> pl.DataFrame:
    open_source(con, files, source="whatif_evidence_source", view="whatif_evidence_rows")
    users = sorted({int(s["user_id"]) for s in sample})
    newest = max(int(s["ts_us"]) for s in sample)
    decidable = " and ".join(f"{c} is not null" for c in CORE_COLUMNS)
    table = con.sql(_ROWS.format(decidable=decidable), params=[users, newest]).to_arrow_table()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _positions(frame: pl.DataFrame, sample: list[dict]) -> np.ndarray:
    where = {tid: i for i, tid in enumerate(frame["transaction_id"].to_list())}
    return np.array([where[s["transaction_id"]] for s in sample], dtype=np.int64)


def _enough_history(frame: pl.DataFrame, positions: np.ndarray, events: int) -> bool:
    """Every sampled flip has at least ``events`` earlier events of its card in ``frame``."""
    user = frame["user_id"].to_numpy()
    for i in positions.tolist():
        first = i
        while first > 0 and user[first - 1] == user[i] and i - first < events:
            first -= 1
        if i - first < events:
            return False
    return True
