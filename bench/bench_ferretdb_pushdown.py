"""What FerretDB 1.24 pushes down to its storage, and what the page's queries cost there.

    .venv/bin/python -m bench.bench_ferretdb_pushdown [--docs 1e5] [--backends sqlite,postgresql]

For each backend: a FerretDB of its own (free port; PostgreSQL through fraudlake.services),
``--docs`` flag documents with the sink's indexes + flagged_at, then each query the dashboard
could send, timed once, with FerretDB's own ``explain`` pushdown flags. Baseline in the same
run: the ``_id`` lookup (the only filter both backends push down to an index).
Writes bench/results/ferretdb_pushdown.md/.json. 2 shared cores: figures are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pymongo import MongoClient

from bench.bench_dashboard import events, write_mongo
from fraudlake import services

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def probe(uri: str, n: int) -> list[dict]:
    now = datetime.now(UTC)
    flags = events(n, now, timedelta(days=1), seed=1, flagged_only=True)
    t0 = time.perf_counter()
    write_mongo(uri, "pushdown", flags)
    rows = [{"query": f"insert {n:,} flags (10k per insert_many)", "ms": None,
             "s": round(time.perf_counter() - t0, 1)}]
    coll = MongoClient(uri, tz_aware=True)["pushdown"]["flags"]
    hour = now - timedelta(hours=1)
    queries = {
        "find {_id: x}": ({"_id": flags["transaction_id"][n // 2]}, None, 0),
        "find {user_id: u}": ({"user_id": int(flags["user_id"][0])}, None, 0),
        "find {ts >= now-1h} sort ts desc limit 5000 (page table)":
            ({"ts": {"$gte": hour}}, [("ts", -1)], 5000),
        "find {flagged_at >= t} (a sync: nothing new)":
            ({"flagged_at": {"$gte": now + timedelta(hours=1)}}, None, 0),
        "find {} limit 100": ({}, None, 100),
    }
    for name, (flt, sort, limit) in queries.items():
        t0 = time.perf_counter()
        got = len(list(coll.find(flt, sort=sort, limit=limit)))
        ms = (time.perf_counter() - t0) * 1000
        plan = coll.find(flt, sort=sort, limit=limit).explain()
        rows.append({"query": name, "ms": round(ms, 1), "rows": got,
                     **{k: plan.get(k) for k in ("filterPushdown", "sortPushdown",
                                                 "limitPushdown")}})
        print(rows[-1], file=sys.stderr)
    t0 = time.perf_counter()
    coll.count_documents({"ts": {"$gte": hour}})
    rows.append({"query": "count_documents {ts >= now-1h}",
                 "ms": round((time.perf_counter() - t0) * 1000, 1)})
    coll.database.client.drop_database("pushdown")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=float, default=1e5)
    ap.add_argument("--backends", default="sqlite,postgresql")
    args = ap.parse_args()
    out: dict = {"docs": int(args.docs), "measured_at": datetime.now(UTC).isoformat(),
                 "backends": {}}
    for backend in args.backends.split(","):
        os.environ["FRAUDLAKE_FERRETDB_BACKEND"] = backend
        server = services.mongo_server(free_port())
        started = services.up(server)
        try:
            out["backends"][backend] = probe(server.address, int(args.docs))
        finally:
            if started.started:
                services.down(server)
    res = ROOT / "bench" / "results"
    (res / "ferretdb_pushdown.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = ["# FerretDB 1.24: pushdown and the cost of the page's queries", "",
             "`.venv/bin/python -m bench.bench_ferretdb_pushdown` — one run per query, "
             f"{out['docs']:,} flag documents with the sink's indexes + flagged_at. The "
             "pushdown columns are FerretDB's own explain output. Baseline = `_id` lookup. "
             "2 shared cores, other work running: noisy.", ""]
    for backend, rows in out["backends"].items():
        lines += [f"## {backend} backend", "",
                  "| query | ms | rows | filter pushdown | sort pushdown | limit pushdown |",
                  "|---|---:|---:|---|---|---|"]
        for r in rows:
            ms = r["ms"] if r["ms"] is not None else f"{r['s']} s"
            lines.append(f"| {r['query']} | {ms} | {r.get('rows', '')} | "
                         f"{r.get('filterPushdown', '')} | {r.get('sortPushdown', '')} | "
                         f"{r.get('limitPushdown', '')} |")
        lines.append("")
    (res / "ferretdb_pushdown.md").write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
