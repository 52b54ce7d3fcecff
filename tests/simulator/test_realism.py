"""The simulated world measured as a fraud data scientist would: density, leaks, overlap with the
rules, money, travel, and the live stream against the history (real Kafka broker).

One history of ``ROWS`` rows with the default (derived) number of cards is generated per module.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest
from confluent_kafka import Consumer, Producer

from batch import generate_history as gh
from batch.backtest import BacktestConfig, run_backtest
from batch.density import density_of
from simulator import audit, default_cards
from streaming.decode import RawRecord, decode_batch
from streaming.kafka_io import producer_config
from streaming.produce import produce, simulated_events

ROWS = 1_500_000
RULES = ("high_amount", "high_frequency", "unusual_hour", "geo_mismatch")


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("realism") / "hist"
    gh.generate_history(gh.HistoryConfig(rows=ROWS, out=out, seed=5, workers=2), progress=False)
    return out


@pytest.fixture(scope="module")
def files(history: Path) -> list[str]:
    return sorted(str(p) for p in history.glob("year=*/month=*/*.parquet"))


@pytest.fixture(scope="module")
def con(files: list[str]) -> duckdb.DuckDBPyConnection:
    return audit._con(files)


@pytest.fixture(scope="module")
def hits(history: Path):
    return run_backtest(BacktestConfig(input=str(history), progress=False)).overall


def test_density_is_that_of_a_real_issuer(files: list[str]):
    d = density_of(files)
    assert 1.0 <= d.per_card_day <= 3.0, d
    assert d.cards <= default_cards(ROWS, 2000, 2025)
    assert d.median_active_days > 90  # cards live for years, not days


def test_no_single_feature_gives_fraud_away(con):
    cues = audit.leak_cues(con)
    for name, (n, precision) in cues.items():
        assert precision is None or n < 20 or precision <= 0.5, (name, n, precision)
    assert cues["device shared by > 1 card"][0] > 0  # households share devices
    assert cues["amount exactly 1.00"][0] > 0 and cues["new device for the card"][0] > 0


def test_scenarios_are_caught_partly_not_by_construction(hits):
    recall = hits.rules["flagged"].recall_by_scenario
    assert len(recall) >= 6
    partial = [s for s, r in recall.items() if 0.05 < r < 0.95]
    assert len(partial) >= 4, recall
    assert recall["merchant_compromise"] < 0.05  # no rule looks for it
    for rule in RULES:  # every rule has genuine false positives
        assert hits.rules[rule].precision is not None and hits.rules[rule].precision < 0.9


def test_fraud_rate_and_a_drifting_mix(con):
    figures = audit.figures(con)
    assert 0.0015 <= figures["fraud_rate"] <= 0.004
    mix = con.sql("""
        SELECT year(ts) >= 2018 AS late, avg((fraud_scenario = 'counterfeit')::INT) AS cp,
               avg((fraud_scenario IN ('account_takeover', 'card_testing'))::INT) AS cnp
        FROM source WHERE is_fraud AND (year(ts) <= 2006 OR year(ts) >= 2018) GROUP BY 1
    """).pl().sort("late")
    assert mix["cp"][0] > 2 * mix["cp"][1] and mix["cnp"][1] > 2 * mix["cnp"][0]


def test_money_price_levels_and_inflation(con):
    figures = audit.figures(con)
    assert 35 <= figures["median_amount"] <= 60
    by_year = dict(con.execute("""
        SELECT year(ts) >= 2024, median(amount) FROM source
        WHERE NOT is_fraud AND (year(ts) <= 2001 OR year(ts) >= 2024) GROUP BY 1""").fetchall())
    assert 1.4 <= float(by_year[True]) / float(by_year[False]) <= 2.4
    grocery = dict(con.execute("""
        SELECT country, median(amount) FROM source
        WHERE category = 'grocery' AND channel = 'pos' AND country IN ('US', 'IN', 'BD')
          AND year(ts) >= 2015 GROUP BY 1""").fetchall())
    assert float(grocery["US"]) > 2 * float(max(grocery.get("IN", 0), grocery.get("BD", 0)))


def test_travel_is_mostly_domestic_and_merchants_spread_over_the_metro(con):
    figures = audit.figures(con)
    assert 0.003 <= figures["travel_share"] <= 0.1
    assert figures["travel_abroad_share"] < 0.5
    spread_km = con.execute("""
        SELECT quantile_cont(111 * abs(lat - avg_lat), 0.9) FROM (
            SELECT lat, avg(lat) OVER (PARTITION BY city) AS avg_lat FROM source
            WHERE city = 'New York' AND channel = 'pos')""").fetchone()[0]
    assert 10 <= spread_km <= 80


def test_genuine_near_misses_come_from_behaviour(history: Path, tmp_path: Path):
    flags = tmp_path / "flags.parquet"
    run_backtest(BacktestConfig(input=str(history), flags_out=flags, progress=False))
    df = (pl.scan_parquet(str(history / "**" / "*.parquet"), hive_partitioning=False)
          .join(pl.scan_parquet(flags), on="transaction_id")
          .filter(~pl.col("is_fraud")).collect())
    night = df.filter(pl.col("unusual_hour"))
    assert night.filter(pl.col("category") == "subscription").height > 0  # bills at night
    assert night.filter(pl.col("category") != "subscription").height > 0  # night shifts
    assert df.filter(pl.col("high_frequency") & (pl.col("category") == "transit")).height > 0
    assert df.filter(pl.col("geo_mismatch")).height > 0  # travellers, mobile IPs
    assert df.filter(pl.col("high_amount")).height > 0


# --- the live stream against the history --------------------------------------------------


def _read(bootstrap: str, topic: str, expect: int) -> pl.DataFrame:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-reader",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    records: list[RawRecord] = []
    try:
        deadline = datetime.now(UTC).timestamp() + 60
        while len(records) < expect and datetime.now(UTC).timestamp() < deadline:
            for m in consumer.consume(10_000, 1.0):
                if m.error() is None:
                    records.append(RawRecord(m.value(), m.key(), m.topic(), m.partition(),
                                             m.offset()))
    finally:
        consumer.close()
    decoded, dead = decode_batch(records)
    assert dead == [] and decoded.height == expect
    return decoded


def _shares(path: Path) -> dict[str, float]:
    overall = run_backtest(BacktestConfig(input=str(path), progress=False)).overall
    return {r: overall.rules[r].flag_rate for r in (*RULES, "flagged")}


@pytest.mark.parametrize("rate, count", [(0.0, 60_000), (5000.0, 25_000)])
def test_live_flag_shares_match_the_history(kafka_bootstrap: str, make_topic, history: Path,
                                            tmp_path: Path, rate: float, count: int):
    topic = make_topic(4)
    sent_at = datetime.now(UTC)
    producer = Producer(producer_config(kafka_bootstrap))
    stats = produce(producer, topic, simulated_events(7, 10_000, count), rate=rate,
                    count=count, progress=False)
    del producer  # flushed by produce(); no reconnect attempts after the test
    assert stats.events == count and stats.failed == 0
    if rate:
        assert stats.seconds >= 0.9 * count / rate
    live = _read(kafka_bootstrap, topic, count)
    assert live["ts"].max() <= sent_at  # event time never ahead of the wall clock
    path = tmp_path / "live.parquet"
    live.select([c for c in live.columns if not c.startswith("_")]).write_parquet(path)
    got, want = _shares(path), _shares(history)
    for rule, share in want.items():
        expected = share * count
        if expected >= 30:
            assert share / 2 <= got[rule] <= 2 * share, (rule, got[rule], share)
        else:  # too few to compare a ratio: no more than a generous Poisson bound
            assert got[rule] * count <= 2 * expected + 15, (rule, got[rule], share)
