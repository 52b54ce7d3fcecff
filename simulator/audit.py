"""Realism figures and single-feature leak cues of a generated lake (DuckDB over Parquet).

    python -m simulator.audit storage/historical

``figures`` are what the README's realism table compares with published simulators (density,
amounts, fraud rate, night share, travel share, online share). ``leak_cues`` are features an
analyst or a model could exploit if the simulator were careless: for each, how many rows carry
it and which share of them is fraud (precision). A world without leaks keeps every cue's
precision far from 100 %.
"""

from __future__ import annotations

import glob
import sys
from collections.abc import Sequence
from pathlib import Path

import duckdb

FIGURES_SQL = """
WITH t AS (SELECT * FROM source),
home AS (  -- a card's home: the city of most of its card-present payments
    SELECT user_id, arg_max(city, n) AS home_city, arg_max(country, n) AS home_country
    FROM (SELECT user_id, city, country, count(*) AS n FROM t WHERE channel <> 'online'
          GROUP BY ALL)
    GROUP BY user_id
)
SELECT
    count(*) AS rows,
    avg(is_fraud::INT) AS fraud_rate,
    median(amount) AS median_amount,
    avg(amount) AS mean_amount,
    avg((hour(ts + to_minutes(utc_offset_min)) < 5)::INT) AS night_share,
    avg((channel = 'online')::INT) AS online_share,
    avg(CASE WHEN channel <> 'online' AND NOT is_fraud THEN (city <> home_city)::INT END)
        AS travel_share,
    avg(CASE WHEN channel <> 'online' AND NOT is_fraud AND city <> home_city
             THEN (country <> home_country)::INT END) AS travel_abroad_share
FROM t LEFT JOIN home USING (user_id)
"""

CUES: dict[str, str] = {
    "device on a card-present row": "device_id IS NOT NULL AND channel <> 'online'",
    "device shared by > 1 card": "dev_cards > 1",
    "amount exactly 1.00": "amount = 1.00",
    "amount 900.00-999.99": "amount >= 900 AND amount < 1000",
    "new device for the card": "dev_first AND card_dev_rank > 1",
    "highest merchant_id of its city+category": "merchant_id = pool_max",
    "card's first transaction": "card_first",
}

CUES_SQL = """
WITH t AS (SELECT * FROM source),
dev AS (SELECT device_id, count(DISTINCT user_id) AS dev_cards FROM t
        WHERE device_id IS NOT NULL GROUP BY device_id),
pool AS (SELECT city, category, max(merchant_id) AS pool_max FROM t GROUP BY ALL),
ranked AS (
    SELECT t.*, dev.dev_cards, pool.pool_max,
           row_number() OVER (PARTITION BY user_id, device_id ORDER BY ts, transaction_id) = 1
               AS dev_first,
           row_number() OVER (PARTITION BY user_id ORDER BY ts, transaction_id) = 1 AS card_first
    FROM t LEFT JOIN dev USING (device_id) LEFT JOIN pool USING (city, category)
),
firsts AS (
    SELECT *, sum(CASE WHEN device_id IS NOT NULL AND dev_first THEN 1 ELSE 0 END)
              OVER (PARTITION BY user_id ORDER BY ts, transaction_id
                    ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS card_dev_rank
    FROM ranked
)
SELECT {cols} FROM firsts
"""


def _con(paths: Sequence[str]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.read_parquet(list(paths), union_by_name=True).create_view("source")
    return con


def figures(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    cur = con.execute(FIGURES_SQL)
    names = [d[0] for d in cur.description]
    row = cur.fetchall()[0]
    return {k: float(v) if v is not None else 0.0 for k, v in zip(names, row, strict=True)}


def leak_cues(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[int, float | None]]:
    """Cue -> (rows with it, precision = fraud share among them; None without rows)."""
    cols = ", ".join(
        f"count(*) FILTER (WHERE {cond}) AS n{i}, "
        f"count(*) FILTER (WHERE ({cond}) AND is_fraud) AS f{i}"
        for i, cond in enumerate(CUES.values()))
    row = con.execute(CUES_SQL.format(cols=cols)).fetchall()[0]
    out = {}
    for i, name in enumerate(CUES):
        n, f = int(row[2 * i]), int(row[2 * i + 1])
        out[name] = (n, f / n if n else None)
    return out


def files(path: str) -> list[str]:
    p = Path(path)
    return sorted(glob.glob(str(p / "**" / "*.parquet"), recursive=True)) if p.is_dir() else [path]


def main(argv: Sequence[str] | None = None) -> int:
    from fraudlake.cli import ArgumentParser, UsageError

    p = ArgumentParser(prog="python -m simulator.audit",
                       description="A lake's density, realism figures and leak cues.")
    p.add_argument("path", metavar="LAKE_PATH", help="Parquet file or folder (recursive)")
    args = p.parse_args(argv)
    paths = files(args.path)
    if not paths or not Path(paths[0]).is_file():
        raise UsageError(f"{args.path}: no Parquet files there")
    con = _con(paths)
    from batch.density import density

    print(density(con).line())
    for k, v in figures(con).items():
        print(f"{k:<22} {v:,.4f}")
    for name, (n, precision) in leak_cues(con).items():
        shown = "-" if precision is None else f"{precision:.1%}"
        print(f"cue {name:<42} rows {n:>10,}  precision {shown}")
    return 0


if __name__ == "__main__":
    from fraudlake.cli import run

    sys.exit(run(main))
