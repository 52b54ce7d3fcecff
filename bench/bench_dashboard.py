"""Benchmark one dashboard refresh's data work: cached (what the page does) vs naive uncached.

    .venv/bin/python -m bench.bench_dashboard [--flags 1e6] [--mongo-flags 1e6] [--live 300000]
                                              [--history storage/historical] [--runs 10]

Data: N flags (default 1M, over the last 24 h) in a SQLite flag store and, when FerretDB can
be started (fraudlake.services), in MongoDB too; the lake = ``--history`` (default
storage/historical, 47M rows, if present, else a generated one) + a generated live lake_queries.

Measured per flag source and filter, median of ``--runs`` calls of
``dashboard.refresh.load_refresh`` with warm caches (flags held in the page process, synced
before every refresh; history cache built once and loaded; live baselines memoised like the
page's st.cache_data), against a naive refresh in the SAME run: flags by SQL from the store,
per-user baselines and the chart over the whole lake by DuckDB every time. Both aggregate EVERY
matching flag of the range (no window of the latest). The first load (a fresh page process:
every flag read into it, then the first refresh) is measured once.
The machine has 2 cores shared with other work: figures are noisy.
Writes bench/results/dashboard.md and dashboard.json.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
from tqdm import tqdm

from bench.dashboard_report import write_results
from dashboard import aggregates, baseline, cases, data, lake_queries, rule_sets
from dashboard.cached_reader import MongoFlagSource
from dashboard.filters import FlagFilter
from dashboard.flag_cache import CacheConfig
from dashboard.refresh import (
    DashboardConfig,
    Refresh,
    flag_view,
    load_refresh,
    rule_band,
    rule_hits,
    traffic,
    triage,
)
from dashboard.sources import SqliteFlagSource
from flagstore.mongo import flag_documents
from flagstore.protocols import FlagReadError
from flagstore.sqlite import SqliteFlagStore
from fraudlake.contract import DECISION_SCHEMA, LAKE_SCHEMA, RULE_NAMES
from fraudlake.settings import Settings
from lake.layout import data_files, partition_dir, transactions_dir

ROOT = Path(__file__).resolve().parents[1]

RULE_SET_ID = "default-1@0789644e74d5"
SHADOW_SET_ID = "strict-1@0123456789ab"
#: What the page's syncs need beyond flagstore.mongo.INDEXES (range on flagged_at).
PAGE_INDEXES = (("flagged_at", [("flagged_at", -1)]),)
CITIES = np.array(["Berlin", "Paris", "Madrid", "Rome", "Vienna", "Lisbon"])
COUNTRIES = np.array(["DE", "FR", "ES", "IT", "AT", "PT"])


def events(n: int, now: datetime, span: timedelta, seed: int, flagged_only: bool) -> pl.DataFrame:
    """n lake rows with ts uniformly over [now - span, now); users from the history's range."""
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(0, int(span.total_seconds() * 1e6), n))
    users = rng.integers(0, 250_000, n)
    rule = rng.integers(0, 4, n)
    fires = np.ones(n, bool) if flagged_only else rng.random(n) < 0.02
    cents = np.where(fires & (rule == 0), rng.integers(100_001, 900_000, n),
                     rng.integers(100, 50_000, n))
    place = users % len(CITIES)
    df = pl.DataFrame({
        "transaction_id": [f"b{seed}-{i:09d}" for i in range(n)],
        "user_id": users,
        "ts": pl.Series(ts + int((now - span).timestamp() * 1e6)).cast(
            pl.Datetime("us", "UTC")),
        "amount": pl.Series(cents).cast(pl.Decimal(18, 0)) / 100,
        "lat": 48.0, "lon": 11.0, "utc_offset_min": 60,
        "is_fraud": rng.random(n) < 0.4, "fraud_scenario": None, "currency": "EUR",
        "merchant_id": "m1", "merchant_name": "Shop", "category": "5411", "channel": "pos",
        "city": CITIES[place], "country": COUNTRIES[place], "card_last4": "1234",
        "device_id": None,
        "rule_set_id": RULE_SET_ID, "score": fires.astype(float), "flagged": fires,
        "rules_fired": [[RULE_NAMES[r]] if f else [] for r, f in zip(rule, fires, strict=True)],
    })
    return df.with_columns(pl.col(c).cast(t) for c, t in LAKE_SCHEMA.items())


def with_shadow(live: pl.DataFrame, seed: int) -> pl.DataFrame:
    """The live lake as a consumer with a shadow set writes it (issue 14's shadow_* columns):
    the shadow set keeps 80 % of the active alerts and adds 1 % of the events."""
    rng = np.random.default_rng(seed)
    keep = rng.random(live.height) < 0.8
    add = rng.random(live.height) < 0.01
    shadow = (live["flagged"].to_numpy() & keep) | add
    return live.with_columns(
        shadow_rule_set_id=pl.lit(SHADOW_SET_ID), shadow_score=pl.Series(shadow.astype(float)),
        shadow_flagged=pl.Series(shadow),
        shadow_rules_fired=pl.Series([["high_amount"] if x else [] for x in shadow],
                                     dtype=pl.List(pl.String)))


def write_sqlite(path: Path, flags: pl.DataFrame) -> None:
    with SqliteFlagStore(path) as store:
        for chunk in tqdm(flags.iter_slices(100_000), desc="sqlite flags", file=sys.stderr,
                          total=-(-flags.height // 100_000)):
            store.upsert(chunk)


def write_mongo(uri: str, db: str, flags: pl.DataFrame) -> None:
    """The flags as the sink writes them (flagged_at = a second after ts, as if flagged live),
    with the sink's indexes plus one on flagged_at (what the page's syncs query)."""
    from pymongo import MongoClient

    from flagstore.mongo import INDEXES

    coll = MongoClient(uri)[db]["flags"]
    coll.drop()
    for name, keys in (*INDEXES, *PAGE_INDEXES):
        coll.create_index(keys, name=name)
    for chunk in tqdm(flags.iter_slices(10_000), desc="mongo flags", file=sys.stderr,
                      total=-(-flags.height // 10_000)):
        docs = flag_documents(chunk)
        for d in docs:
            d["flagged_at"] = d["ts"] + timedelta(seconds=1)
        coll.insert_many(docs, ordered=False)


def write_live(root: Path, live: pl.DataFrame) -> None:
    keyed = live.with_columns(pl.col("ts").dt.year().alias("_y"),
                              pl.col("ts").dt.month().alias("_m"))
    for (y, m), part in keyed.group_by(["_y", "_m"]):
        folder = transactions_dir(root) / partition_dir(int(y), int(m))  # type: ignore[arg-type]
        folder.mkdir(parents=True, exist_ok=True)
        for i, piece in enumerate(part.drop("_y", "_m").iter_slices(20_000)):
            piece.write_parquet(folder / f"transactions-p0-o{i:020d}-{i:020d}.parquet")


def naive_refresh(path: Path, cfg: DashboardConfig, f: FlagFilter, now: datetime,
                  history_files: list[Path]) -> Refresh:
    """The same page data without any cache: flags by SQL from the store every time
    (``SqliteFlagSource`` without its held snapshot), baselines and the chart over the whole
    lake (history files read directly, not the history cache)."""
    source = SqliteFlagSource(path)  # no cache: SQL every call
    live_files = data_files(cfg.settings.lake_transactions_dir)
    all_files = [*history_files, *live_files]
    con = lake_queries.connect()
    t = traffic(cfg, now, con)
    start = f.since or (now - timedelta(days=365 * 26))
    view = flag_view(source, cfg, f, start, now)
    base = lake_queries.user_baselines(all_files, view.agg.top["user_id"].to_list(), con=con)
    top = data.with_baselines(view.agg.top, base)
    series = lake_queries.amount_series(all_files, view.unit, f.since, None, con=con)
    chart = aggregates.chart_frame(aggregates.bucket_range(start, now, view.unit), series,
                                   view.agg.series, None)
    case_frame = pl.DataFrame(schema=cases.CASE_COLUMNS)
    return Refresh(now, t, view, top, chart, triage(source, f, case_frame),
                   rule_band(rule_hits(cfg, source, f, view, con), chart, None))


def measure(sname: str, fname: str, cached, naive, runs: int, naive_runs: int) -> dict:
    """Median of ``runs`` cached refreshes (after one warm-up) vs ``naive_runs`` naive ones."""
    try:
        cached()
        cached_ms, all_ms = timed(cached, runs)
        naive_ms, _ = timed(naive, naive_runs) if naive_runs else (None, [])
    except FlagReadError as exc:
        row = {"source": sname, "filter": fname, "error": str(exc)}
        print(row, file=sys.stderr)
        return row
    row = {"source": sname, "filter": fname, "cached_ms": round(cached_ms, 1),
           "cached_max_ms": round(max(all_ms), 1),
           "naive_ms": None if naive_ms is None else round(naive_ms, 1),
           "ratio": None if naive_ms is None else round(naive_ms / cached_ms, 1)}
    print(row, file=sys.stderr)
    return row


def bench_mongo(args, flags: pl.DataFrame, filters: dict, cfg: DashboardConfig, now: datetime,
                cache, history_files, live_baselines, results: list) -> dict:
    """Load the flags into the MongoDB-wire store; time the page's cached source (cold load,
    refreshes, syncs with new flags) against the uncached per-refresh queries."""
    from pymongo import MongoClient

    from fraudlake import services

    uri = args.mongo_uri
    backend = "given by --mongo-uri"
    try:
        if uri is None:
            server = services.mongo_server()
            uri = services.up(server).server.address
            backend = f"FerretDB 1.24, {services.ferretdb_backend()} backend"
        t0 = time.perf_counter()
        write_mongo(uri, "bench_dashboard", flags)
        load_s = time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001 - the bench still reports SQLite
        return {"note": f"unavailable: {str(exc).splitlines()[0]}"}
    info = MongoClient(uri).admin.command("buildInfo")
    server_name = ("FerretDB" if "ferretdbVersion" in info  # 1.24 reports "unknown"
                   else f"MongoDB {info.get('version')}")
    # inline syncs only when asked: refresh timings = the page's own work on its snapshot
    quiet = CacheConfig(background=False, sync_seconds=1e9)
    cached = MongoFlagSource(uri, "bench_dashboard", "flags", timeout_ms=10_000, cache=quiet)
    direct = MongoFlagSource(uri, "bench_dashboard", "flags", timeout_ms=10_000, cache=None)
    out: dict = {"note": f"{flags.height:,} flags in {server_name} ({backend}) at {uri}",
                 "insert_s": round(load_s, 1)}
    try:
        t0 = time.perf_counter()
        snap = cached.snapshot()
        out["cold_load_s"] = round(time.perf_counter() - t0, 1)
        out["snapshot_rows"] = snap.frame.height
        out["snapshot_mib"] = round(snap.frame.estimated_size("mb"), 1)
        assert snap.frame.height == flags.height, "cold load missed flags"
        direct_names = {"default": list(filters)[:1], "all": list(filters), "none": []}[
            args.direct_filters]
        for fname, f in filters.items():
            runs = args.direct_runs if fname in direct_names else 0
            results.append(measure("mongodb", fname, lambda f=f: load_refresh(
                cached, cfg, f, now, cache, history_files, live_baselines), lambda f=f: (
                load_refresh(direct, cfg, f, now, cache, history_files, live_baselines)),
                args.runs, runs))
        coll = MongoClient(uri, tz_aware=True)["bench_dashboard"]["flags"]
        sync_ms = []
        for i in range(args.sync_runs):
            new = events(args.new_flags, datetime.now(UTC), timedelta(seconds=1),
                         seed=100 + i, flagged_only=True)
            docs = flag_documents(new)
            stamp = datetime.now(UTC)
            for d in docs:
                d["flagged_at"] = stamp
            coll.insert_many(docs, ordered=False)
            before = cached.snapshot().frame.height
            t0 = time.perf_counter()
            after = cached.sync().frame.height
            sync_ms.append((time.perf_counter() - t0) * 1000)
            assert after == before + args.new_flags, f"sync saw {after - before} new flags"
            print({"sync_ms": round(sync_ms[-1], 1), "new": args.new_flags}, file=sys.stderr)
        out["sync_ms"] = [round(x, 1) for x in sync_ms]
    except (FlagReadError, AssertionError) as exc:
        out["error"] = str(exc).splitlines()[0]
    finally:
        cached.close()
        direct.close()
        MongoClient(uri).drop_database("bench_dashboard")
    return out


def bench_shadow(cfg: DashboardConfig, filters: dict, runs: int) -> list[dict]:
    """The page's "Rule sets in force" panel: the range's shadow decisions read from the live
    lake (DuckDB) and compared (``streaming.shadow.compare`` when issue 14 provides it, else
    the read alone), every refresh."""
    try:
        from streaming.shadow import compare
    except ImportError:
        compare = None
    con = lake_queries.connect()
    files = data_files(cfg.settings.lake_transactions_dir)
    rows = []
    for fname, f in filters.items():
        def panel(f=f) -> None:
            got = rule_sets.shadow_rows(files, f.since, f.until, con)
            if compare is not None and got is not None and not got.is_empty():
                compare(got)
        panel()
        ms, all_ms = timed(panel, runs)
        rows.append({"source": "lake, shadow panel" + ("" if compare else " (read only)"),
                     "filter": fname, "cached_ms": round(ms, 1),
                     "cached_max_ms": round(max(all_ms), 1), "naive_ms": None, "ratio": None})
        print(rows[-1], file=sys.stderr)
    return rows


def timed(fn, runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flags", type=float, default=1e6)
    ap.add_argument("--mongo-flags", type=float, default=1e4,
                    help="flags put in the MongoDB-wire store (0 = skip MongoDB; loading 1M "
                         "into FerretDB takes minutes)")
    ap.add_argument("--mongo-uri", default=None,
                    help="use this MongoDB-wire server (default: start FerretDB with "
                         "fraudlake.services, FRAUDLAKE_MONGO_PORT / FRAUDLAKE_FERRETDB_BACKEND)")
    ap.add_argument("--direct-runs", type=int, default=1,
                    help="runs of the uncached MongoDB refresh (FerretDB scans: minutes at 1M)")
    ap.add_argument("--direct-filters", default="default", choices=("default", "all", "none"),
                    help="filters timed for the uncached MongoDB refresh (default: the page's "
                         "default filter only)")
    ap.add_argument("--new-flags", type=int, default=50,
                    help="flags inserted before each timed sync (one busy second of the stream)")
    ap.add_argument("--sync-runs", type=int, default=2, help="timed syncs")
    ap.add_argument("--skip-sqlite", action="store_true", help="time the MongoDB source only")
    ap.add_argument("--live", type=float, default=300_000, help="live lake events (last 24 h)")
    ap.add_argument("--history", type=Path, default=ROOT / "storage" / "historical")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--naive-runs", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--name", default="dashboard",
                    help="results file name: bench/results/<name>.md/.json")
    ap.add_argument("--cache-dir", type=Path, default=ROOT / baseline.DEFAULT_CACHE_DIR,
                    help="history cache (shared with the page; built if missing)")
    args = ap.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-dash-"))
    now = datetime.now(UTC)
    flags = events(int(args.flags), now, timedelta(days=1), seed=1, flagged_only=True)
    live = events(int(args.live), now, timedelta(days=1), seed=2, flagged_only=False)
    history = args.history
    if not any(history.glob("year=*")):
        history = work / "historical"
        write_live(work / "gen", events(2_000_000, datetime(2025, 12, 31, tzinfo=UTC),
                                        timedelta(days=365), 3, False).drop(*DECISION_SCHEMA))
        shutil.move(work / "gen" / "transactions", history)
    write_live(work / "lake", with_shadow(live, seed=4))
    if not args.skip_sqlite:
        write_sqlite(work / "flags.sqlite", flags)

    settings = Settings(lake_dir=work / "lake", history_dir=history,
                        local_flags_path=work / "flags.sqlite")
    cfg = DashboardConfig(settings=settings, cache_dir=args.cache_dir)
    t0 = time.perf_counter()
    key, history_files = baseline.history_key(history)
    cache = baseline.load_or_build(history, cfg.cache_dir)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    baseline.load_or_build(history, cfg.cache_dir)
    load_ms = (time.perf_counter() - t0) * 1000

    memo: dict = {}

    def live_baselines(files, ids):
        k = (tuple(files), tuple(ids))
        if k not in memo:
            memo[k] = lake_queries.user_baselines(files, ids)
        return memo[k]

    filters = {
        "last hour (default)": FlagFilter(since=now - timedelta(hours=1)),
        "all time": FlagFilter(),
        "last 24 h, high_amount, amount ≥ 2000": FlagFilter(
            since=now - timedelta(days=1), rules=("high_amount",), min_cents=200_000),
        "one user, all time": FlagFilter(user_id=int(flags["user_id"][0])),
    }
    results = []
    first_load: dict = {}
    if not args.skip_sqlite:
        # sync_seconds=0: every timed refresh includes the page's check for new rows
        sqlite = SqliteFlagSource(work / "flags.sqlite", cache=CacheConfig(sync_seconds=0))
        t0 = time.perf_counter()
        first = load_refresh(sqlite, cfg, filters["all time"], now, cache, history_files,
                             live_baselines)
        first_load["sqlite_s"] = round(time.perf_counter() - t0, 2)
        assert first.view.agg.total == flags.height, "aggregates missed flags"
        first_load["all_time_flags_aggregated"] = first.view.agg.total
        first_load["snapshot_mib"] = round(sqlite.snapshot().frame.estimated_size("mb"), 1)
        print(first_load, file=sys.stderr)
        for fname, f in filters.items():
            results.append(measure("sqlite", fname, lambda f=f: load_refresh(
                sqlite, cfg, f, now, cache, history_files, live_baselines), lambda f=f: (
                naive_refresh(work / "flags.sqlite", cfg, f, now, history_files)), args.runs,
                args.naive_runs))
        results.extend(bench_shadow(cfg, filters, args.runs))
    mongo: dict = {"note": "skipped (--mongo-flags 0)"}
    if args.mongo_flags > 0:
        mongo = bench_mongo(args, flags.head(int(args.mongo_flags)), filters, cfg, now, cache,
                            history_files, live_baselines, results)

    hist_rows = int(cache.daily["events"].sum()) if not cache.daily.is_empty() else 0
    out = {"flags": int(args.flags), "mongo": mongo, "live_events": int(args.live),
           "history": str(history), "history_rows": hist_rows,
           "history_cache_build_s": round(build_s, 1), "history_cache_load_ms": round(load_ms, 1),
           "first_load": first_load,
           "runs": args.runs, "naive_runs": args.naive_runs,
           "direct_runs": args.direct_runs, "new_flags": args.new_flags, "results": results,
           "measured_at": now.isoformat()}
    write_results(out, args.name)
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
