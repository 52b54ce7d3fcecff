"""The dashboard bench's report: bench/results/NAME.{json,md} from ``bench_dashboard``'s figures."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_results(out: dict, name: str) -> None:
    m = out["mongo"]
    res = ROOT / "bench" / "results"
    res.mkdir(parents=True, exist_ok=True)
    (res / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        "# Dashboard refresh benchmark", "",
        "`.venv/bin/python -m bench.bench_dashboard` — one refresh's data work "
        "(`dashboard.refresh.load_refresh`, what the page calls every second) with warm caches "
        "vs a naive uncached refresh measured in the same run (ratio = naive / cached).", "",
        (f"- flags: {out['flags']:,} (SQLite store); MongoDB: {m['note']}"
         if any(r["source"] == "sqlite" for r in out["results"])
         else f"- MongoDB: {m['note']}"),
        f"- lake: history {out['history']} ({out['history_rows']:,} rows) + "
        f"{out['live_events']:,} live events",
        f"- history cache: ready in {out['history_cache_build_s']} s (built only if missing), "
        f"loaded in {out['history_cache_load_ms']} ms",
        first_load_line(out.get("first_load") or {}),
        f"- cached: median of {out['runs']} runs"
        + (f"; naive (SQLite rows): median of {out['naive_runs']} runs"
           if any(r["source"] == "sqlite" for r in out["results"]) else ""),
        "- 2 shared cores, other work running: figures are noisy.", "",
        *mongo_lines(m, out),
        "| source | filter | cached ms (median) | cached ms (max) | naive ms | ratio |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in out["results"]:
        if "error" in r:
            lines.append(f"| {r['source']} | {r['filter']} | failed: {r['error']} | | | |")
            continue
        naive = "not run" if r["naive_ms"] is None else r["naive_ms"]
        ratio = "" if r["ratio"] is None else f"{r['ratio']}×"
        lines.append(f"| {r['source']} | {r['filter']} | {r['cached_ms']} | "
                     f"{r['cached_max_ms']} | {naive} | {ratio} |")
    (res / f"{name}.md").write_text("\n".join(lines) + "\n")


def first_load_line(fl: dict) -> str:
    if not fl:
        return "- first load: not measured (--skip-sqlite)"
    return (f"- first load of a page process (SQLite: every flag read into the page, then one "
            f"refresh over all time aggregating {fl['all_time_flags_aggregated']:,} flags): "
            f"{fl['sqlite_s']} s; flags held: {fl['snapshot_mib']} MiB")


def mongo_lines(m: dict, out: dict) -> list[str]:
    """What the MongoDB rows mean, and the cache's own costs."""
    if "insert_s" not in m:
        return []
    lines = [
        "MongoDB rows: *cached* = the page's source (`dashboard.cached_reader`): flags held in "
        "the page process, filtered in Polars; *naive* = the same refresh querying the store "
        f"directly (find/sort/limit + count), {out['direct_runs']} run(s).", "",
        f"- loading {m['note'].split(' flags')[0]} flags: {m['insert_s']} s; the page's cold "
        f"load (once per page process): {m.get('cold_load_s')} s, "
        f"{m.get('snapshot_rows', 0):,} rows, {m.get('snapshot_mib')} MiB",
    ]
    if m.get("sync_ms"):
        lines.append(f"- one sync after {out.get('new_flags', '?')} new flags (the background "
                     f"thread's query, not part of a refresh): {m['sync_ms']} ms")
    if "FerretDB" in m["note"]:
        lines.append("- FerretDB 1.24 pushes no range filter, sort or limit down to its storage "
                     "(its explain: filterPushdown/sortPushdown false), so the cold load, every "
                     "sync and every naive query decode the whole collection inside FerretDB; "
                     "on MongoDB the cold load is an index-ordered read and a sync an index range "
                     "on flagged_at (not measurable here: no mongod on this machine)")
    if m.get("error"):
        lines.append(f"- failed: {m['error']}")
    return [*lines, ""]
