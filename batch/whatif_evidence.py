"""Evidence for the sampled flips of an A/B diff, as the stream and the flags carry it.

The one-pass engine keeps bits, not evidence; after the pass the few sampled cards' events
(those up to the newest sampled flip, rows the engines decide: no NULL core column) are read
back in ``(user_id, ts, transaction_id)`` order and ``streaming.evidence.evidence_json`` says,
for each sampled flip, why each rule of A and of B fired there. I/O: one DuckDB query.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

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


def attach_evidence(con: duckdb.DuckDBPyConnection, files: Sequence[ParquetFile],
                    sample: list[dict], sets: Mapping[str, RuleSet]) -> None:
    """Add ``evidence`` = ``{side: {rule_id: {...}}}`` to each sampled flip, for each side
    (``"a"``, ``"b"``) of ``sets`` over the rules that fired there (``<side>_fired``)."""
    if not sample:
        return
    open_source(con, files, source="whatif_evidence_source", view="whatif_evidence_rows")
    users = sorted({int(s["user_id"]) for s in sample})
    newest = max(int(s["ts_us"]) for s in sample)
    decidable = " and ".join(f"{c} is not null" for c in CORE_COLUMNS)
    table = con.sql(_ROWS.format(decidable=decidable), params=[users, newest]).to_arrow_table()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    where = {tid: i for i, tid in enumerate(frame["transaction_id"].to_list())}
    for s in sample:
        s["evidence"] = {}
    positions = np.array([where[s["transaction_id"]] for s in sample], dtype=np.int64)
    for side, rule_set in sets.items():
        fired = {rid: np.zeros(frame.height, dtype=bool) for rid in rule_set.rule_ids}
        for s, i in zip(sample, positions, strict=True):
            for rid in s[f"{side}_fired"]:
                fired[rid][i] = True
        texts = evidence_json(frame, positions, fired, rule_set)
        for s, text in zip(sample, texts, strict=True):
            s["evidence"][side] = json.loads(text)
