"""The shadow comparison over the lake: counts and precision against a naive loop, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl

from rules.model import load_rule_set
from streaming.lake_sink import LakeSink
from streaming.rule_switch import PartitionRules
from streaming.rules_control import ControlState, Switch
from streaming.shadow import compare
from tests.streaming._kafka_data import make_events

ROOT = Path(__file__).resolve().parents[2]


def _random_lake(n: int = 4000, seed: int = 9) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    shadow = rng.choice(["s1", "s2", None], n).tolist()
    fraud = rng.choice([True, False, None], n, p=[0.1, 0.6, 0.3]).tolist()
    return pl.DataFrame({
        "rule_set_id": rng.choice(["a1", "a2"], n).tolist(),
        "shadow_rule_set_id": shadow,
        "flagged": (rng.random(n) < 0.2).tolist(),
        "shadow_flagged": [None if s is None else bool(x) for s, x in
                           zip(shadow, rng.random(n) < 0.3, strict=True)],
        "is_fraud": fraud,
    }, schema={"rule_set_id": pl.String, "shadow_rule_set_id": pl.String,
               "flagged": pl.Boolean, "shadow_flagged": pl.Boolean, "is_fraud": pl.Boolean})


def test_compare_matches_a_naive_count() -> None:
    lake = _random_lake()
    got = {(r["rule_set_id"], r["shadow_rule_set_id"]): r
           for r in compare(lake).iter_rows(named=True)}
    assert len(got) == 4  # (a1|a2) × (s1|s2); rows without a shadow are left out
    for (a, s), r in got.items():
        rows = [x for x in lake.iter_rows(named=True)
                if x["rule_set_id"] == a and x["shadow_rule_set_id"] == s]
        act = [x["flagged"] for x in rows]
        sh = [x["shadow_flagged"] for x in rows]
        lab = [x for x in rows if x["is_fraud"] is not None]
        assert r["events"] == len(rows)
        assert r["added"] == sum(1 for p, q in zip(act, sh, strict=True) if q and not p)
        assert r["removed"] == sum(1 for p, q in zip(act, sh, strict=True) if p and not q)
        tp = sum(1 for x in lab if x["shadow_flagged"] and x["is_fraud"])
        alerts = sum(1 for x in lab if x["shadow_flagged"])
        assert r["shadow_precision"] == tp / alerts
        assert r["active_recall"] == sum(1 for x in lab if x["flagged"] and x["is_fraud"]) / \
            sum(1 for x in lab if x["is_fraud"])


def test_compare_without_labels_has_no_precision() -> None:
    lake = _random_lake(200).with_columns(is_fraud=pl.lit(None, pl.Boolean))
    out = compare(lake)
    assert out["labelled"].sum() == 0 and out["shadow_precision"].null_count() == out.height


def test_cli_compare_reads_a_lake_written_with_a_shadow_set(tmp_path: Path) -> None:
    a = load_rule_set()
    b = a.with_overrides(["high_amount.threshold=200"])
    state = ControlState(sets={a.id: a, b.id: b})
    state.add_switch(Switch("t", 0, "shadow", 0, b.id, ""))
    events = make_events(2000, users=20, seed=4).with_columns(
        _offset=pl.int_range(2000, dtype=pl.Int64), is_fraud=pl.int_range(2000) % 7 == 0)
    decided = PartitionRules("t", 0, lambda: state, lambda *_: None, a).decide(events, 0)
    LakeSink(tmp_path).write(decided, "t", 0, 0, 1999)
    out = subprocess.run([sys.executable, "-m", "streaming.rules", "compare", "--lake",
                          str(tmp_path), "--json"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)
    assert (row["rule_set_id"], row["shadow_rule_set_id"]) == (a.id, b.id)
    assert row["events"] == 2000 and row["removed"] == 0
    assert row["added"] == int((decided["shadow_flagged"] & ~decided["flagged"]).sum()) > 0
    text = subprocess.run([sys.executable, "-m", "streaming.rules", "compare", "--lake",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120).stdout
    assert f"shadow adds {row['added']:,}" in text and "precision" in text


def test_lake_files_with_and_without_shadow_columns_read_and_compact_together(
        tmp_path: Path) -> None:
    from lake.compact import merge_chunk
    from lake.layout import partition_files, transactions_dir
    from streaming.engine import RuleEngine
    from streaming.shadow import scan_lake

    a = load_rule_set()
    b = a.with_overrides(["high_amount.threshold=200"])
    events = make_events(1000, users=10, seed=6).with_columns(
        _offset=pl.int_range(1000, dtype=pl.Int64))
    sink = LakeSink(tmp_path)
    sink.write(RuleEngine(a).process(events.head(500)), "t", 0, 0, 499)  # no shadow columns
    state = ControlState(sets={a.id: a, b.id: b})
    state.add_switch(Switch("t", 0, "shadow", 500, b.id, ""))
    rules = PartitionRules("t", 0, lambda: state, lambda *_: events.head(500), a)
    sink.write(rules.decide(events.slice(500), 500), "t", 0, 500, 999)
    out = compare(scan_lake(tmp_path))
    assert out.height == 1 and out["events"].item() == 500
    files = partition_files(transactions_dir(tmp_path), "t", 0)
    assert len(files) >= 2
    merge_chunk(files)
    merged = pl.read_parquet(list(transactions_dir(tmp_path).rglob("*.c.parquet")))
    assert merged.height == 1000 and merged["shadow_rule_set_id"].null_count() == 500
    assert compare(scan_lake(tmp_path)).equals(out)
