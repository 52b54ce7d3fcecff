"""lake.export: incremental, idempotent, crash-safe export of flags (SQLite store and FerretDB)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from flagstore.mongo import MongoFlagReader
from flagstore.schema import FLAG_SCHEMA
from flagstore.sqlite import SqliteFlagReader, SqliteFlagStore
from fraudlake.contract import AMOUNT_DTYPE, RULE_NAMES, TS_DTYPE
from lake.export import (
    STATE_NAME,
    ExportState,
    advance,
    export_flags,
    load_state,
    main,
    new_rows,
)


def flagged(start: int, n: int) -> pl.DataFrame:
    """``n`` flagged events with ids ``tx-<start>``…; every rule fires on some."""
    i = pl.int_range(start, start + n, eager=True)
    base = datetime(2025, 3, 1, tzinfo=UTC)
    ks = i.to_list()
    df = pl.DataFrame({
        "transaction_id": [f"tx-{k:06d}" for k in ks],
        "user_id": pl.Series([k % 7 for k in ks], dtype=pl.Int64),
        "ts": pl.Series([base + timedelta(seconds=37 * k) for k in ks], dtype=TS_DTYPE),
        "amount": pl.Series([Decimal(f"{1000 + k}.{k % 100:02d}") for k in ks],
                            dtype=AMOUNT_DTYPE),
        "lat": [48.0 + k / 1000 for k in ks], "lon": [2.0 - k / 1000 for k in ks],
        "utc_offset_min": pl.Series([60] * n, dtype=pl.Int32),
        "is_fraud": [k % 3 == 0 for k in ks],
        "fraud_scenario": ["card_testing" if k % 3 == 0 else None for k in ks],
    }).with_columns(
        currency=pl.lit("EUR"), merchant_id=pl.lit("m1"), merchant_name=pl.lit("Shop"),
        category=pl.lit("5411"), channel=pl.lit("pos"), city=pl.lit("Paris"),
        country=pl.lit("FR"),
        high_amount=pl.lit(True), high_frequency=pl.col("user_id") == 1,
        unusual_hour=pl.col("user_id") == 2, geo_mismatch=pl.col("user_id") == 3,
    )
    return df.with_columns(flagged=pl.any_horizontal(*RULE_NAMES))


def exported(tmp_path: Path) -> tuple[pl.DataFrame, pl.DataFrame, list[Path]]:
    files = sorted((tmp_path / "filtered").glob("flags-*.parquet"))
    parquet = pl.concat([pl.read_parquet(p) for p in files]) if files else pl.DataFrame()
    csvs = sorted((tmp_path / "exported").glob("flags-*.csv"))
    csv = pl.concat([pl.read_csv(p, infer_schema=False) for p in csvs]) if csvs else pl.DataFrame()
    assert [p.stem for p in csvs] == [p.stem for p in files]
    return parquet, csv, files


def run_export(source, tmp_path: Path, lookback: float = 60.0, chunk_rows: int = 250_000):
    return export_flags(source, tmp_path / "filtered", tmp_path / "exported",
                        timedelta(seconds=lookback), chunk_rows)


def check_incremental(source, write, tmp_path: Path, chunk_rows: int = 250_000) -> None:
    """First export writes all, second nothing, new flags → only those; files reconcile."""
    write(flagged(0, 300))
    first = run_export(source, tmp_path, chunk_rows=chunk_rows)
    assert first.rows == 300 and len(first.parquet) == -(-300 // chunk_rows)
    again = run_export(source, tmp_path, chunk_rows=chunk_rows)
    assert again.rows == 0 and again.parquet == again.csv == ()
    assert len(exported(tmp_path)[2]) == len(first.parquet)
    write(flagged(300, 40))
    write(flagged(0, 25))  # replays of exported flags are not new
    third = run_export(source, tmp_path, chunk_rows=chunk_rows)
    assert third.rows == 40
    parquet, csv, files = exported(tmp_path)
    assert [p.name for p in files] == [p.name for p in (*first.parquet, *third.parquet)]
    assert files == sorted(files) and len(set(files)) == len(files)
    ids = set(flagged(0, 340)["transaction_id"])
    assert parquet.height == csv.height == 340 == len(ids)
    assert set(parquet["transaction_id"]) == set(csv["transaction_id"]) == ids
    assert dict(parquet.schema) == FLAG_SCHEMA
    src = flagged(0, 340).sort("transaction_id")
    got = parquet.sort("transaction_id")
    assert got["amount"].to_list() == src["amount"].to_list()
    assert got["ts"].to_list() == src["ts"].to_list()
    fired = [[r for r in RULE_NAMES if row[r]] for row in src.iter_rows(named=True)]
    assert got["rules_fired"].to_list() == fired
    assert csv.filter(pl.col("user_id") == "1")["rules_fired"].unique().to_list() == [
        "high_amount,high_frequency"]
    assert csv.sort("transaction_id")["amount"].to_list() == [
        str(a) for a in src["amount"]]
    assert load_state(tmp_path / "filtered" / STATE_NAME).rows == 340


def test_local_store_incremental(tmp_path: Path) -> None:
    with SqliteFlagStore(tmp_path / "flags.sqlite") as store:
        check_incremental(SqliteFlagReader(tmp_path / "flags.sqlite"), store.upsert, tmp_path)


def test_local_store_incremental_in_chunks(tmp_path: Path) -> None:
    with SqliteFlagStore(tmp_path / "flags.sqlite") as store:
        check_incremental(SqliteFlagReader(tmp_path / "flags.sqlite"), store.upsert, tmp_path,
                          chunk_rows=64)


def test_mongo_incremental(mongo_uri: str, mongo_collection, tmp_path: Path) -> None:
    from flagstore.mongo import MongoFlagStore

    db, coll = mongo_collection.database.name, mongo_collection.name
    store = MongoFlagStore(mongo_uri, db, coll)
    source = MongoFlagReader(mongo_uri, db, coll)
    try:
        check_incremental(source, store.upsert, tmp_path, chunk_rows=128)
        assert mongo_collection.count_documents({}) == 340
    finally:
        source.close()
        store.close()


def _frame(stamps: list[tuple[str, datetime]]) -> pl.DataFrame:
    return pl.DataFrame({"transaction_id": [t for t, _ in stamps],
                         "flagged_at": pl.Series([s for _, s in stamps], dtype=TS_DTYPE)})


def test_same_flagged_at_at_the_mark_is_neither_skipped_nor_duplicated() -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    state = advance(ExportState(), _frame([("a", t0), ("b", t0)]), timedelta(0), "f1")
    assert state.watermark == t0 and state.since(timedelta(0)) == t0
    later = _frame([("a", t0), ("b", t0), ("c", t0), ("d", t0 + timedelta(seconds=1))])
    assert new_rows(later, state)["transaction_id"].to_list() == ["c", "d"]


def test_late_commit_within_lookback_is_exported_once() -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    lookback = timedelta(seconds=60)
    state = advance(ExportState(), _frame([("a", t0), ("b", t0 + timedelta(seconds=30))]),
                    lookback, "f1")
    assert state.since(lookback) == t0 + timedelta(seconds=30) - lookback
    late = _frame([("a", t0), ("x", t0 + timedelta(seconds=10)),
                   ("b", t0 + timedelta(seconds=30))])
    assert new_rows(late, state)["transaction_id"].to_list() == ["x"]
    moved = advance(state, _frame([("z", t0 + timedelta(hours=1))]), lookback, "f2")
    assert [tid for _, tid in moved.recent] == ["z"]  # old ids pruned below the lookback


def test_crash_after_parquet_rename_is_recovered_not_duplicated(tmp_path: Path) -> None:
    with SqliteFlagStore(tmp_path / "flags.sqlite") as store:
        store.upsert(flagged(0, 50))
        source = SqliteFlagReader(tmp_path / "flags.sqlite")
        run_export(source, tmp_path)
        state_path = tmp_path / "filtered" / STATE_NAME
        saved = state_path.read_text()
        store.upsert(flagged(50, 20))
        second = run_export(source, tmp_path)
        assert second.rows == 20
        state_path.write_text(saved)  # as if killed before the state was written …
        second.csv[0].unlink()  # … and before the CSV was renamed
        res = run_export(source, tmp_path)
        assert (res.rows, res.recovered) == (0, 1)
        parquet, csv, _ = exported(tmp_path)
        assert parquet.height == csv.height == 70
        assert parquet["transaction_id"].n_unique() == 70
    assert not list((tmp_path / "filtered").glob(".*tmp*"))


def test_cli_local_and_bad_input(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("MONGO_URI", raising=False)
    monkeypatch.setenv("LOCAL_FLAGS_PATH", str(tmp_path / "missing.sqlite"))
    args = ["--filtered-dir", str(tmp_path / "filtered"), "--exported-dir",
            str(tmp_path / "exported")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.sqlite" in err
    assert main([*args, "--source", "mongo"]) == 2
    with pytest.raises(SystemExit) as exc:
        main([*args, "--lookback-seconds", "x"])
    assert exc.value.code == 2
    assert not (tmp_path / "filtered").exists()
    with SqliteFlagStore(tmp_path / "f.sqlite") as store:
        store.upsert(flagged(0, 12))
    monkeypatch.setenv("LOCAL_FLAGS_PATH", str(tmp_path / "f.sqlite"))
    assert main(args) == 0 and "exported 12 new flag(s)" in capsys.readouterr().out
    assert main(args) == 0 and "exported 0 new flag(s)" in capsys.readouterr().out


@pytest.mark.parametrize("other", ["local:/elsewhere"])
def test_state_of_another_source_is_refused(tmp_path: Path, other: str) -> None:
    (tmp_path / "filtered").mkdir()
    (tmp_path / "filtered" / STATE_NAME).write_text(f'{{"source": "{other}"}}')
    with SqliteFlagStore(tmp_path / "f.sqlite") as store:
        store.upsert(flagged(0, 3))
    from fraudlake.cli import UsageError

    with pytest.raises(UsageError, match="holds exports of"):
        run_export(SqliteFlagReader(tmp_path / "f.sqlite"), tmp_path)
