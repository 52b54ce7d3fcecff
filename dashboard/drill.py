"""Drill-down behind one flag: the card's recent transactions and each fired rule's evidence.

The evidence comes from the flag itself (``evidence``: {rule_id: {...}}, written by the rule-set
engine, see DESIGN.md "Rule sets (v2)"). A v1 flag has none: the page says "no evidence
recorded", and for impossible travel reconstructs the jump from the card's previous
transaction in the lake (marked as reconstructed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl

from dashboard import lake_queries
from lake.layout import HIVE_TYPES, month_of

CARD_COLUMNS = ("ts", "transaction_id", "amount", "currency", "merchant_name", "category",
                "channel", "city", "country", "lat", "lon", "flagged", "rules_fired", "score",
                "rule_set_id", "is_fraud", "source")

#: Decision columns of lake v2 (``rules_fired`` joined as text); NULL where a file lacks them
#: (history, v1 lake files).
_DECISIONS = {"flagged": "flagged", "rules_fired": "array_to_string(rules_fired, ', ')",
              "score": "score", "rule_set_id": "rule_set_id"}
_NULLS = {"flagged": "BOOLEAN", "rules_fired": "VARCHAR", "score": "DOUBLE",
          "rule_set_id": "VARCHAR"}

_CARD_SQL = f"""
SELECT ts, transaction_id, amount::DOUBLE AS amount, currency, merchant_name, category, channel,
       city, country, lat, lon, {{decisions}}, is_fraud, $label AS source
FROM {lake_queries._SOURCE}
WHERE user_id = $user AND ts <= $until AND ts >= $since
ORDER BY ts DESC, transaction_id DESC
LIMIT $limit
"""  # noqa: S608 - constant fragments; values bound


def card_transactions(user_id: int, until: datetime, live_files: Sequence[Path],
                      history_files: Sequence[Path], days: int = 30, limit: int = 50,
                      con: duckdb.DuckDBPyConnection | None = None) -> pl.DataFrame:
    """The card's transactions up to ``until`` (flagged or not): the live lake over the last
    ``days``, then the history's latest two months before ``until`` (history has no decision
    columns: flagged, rules_fired, score and rule_set_id are null there)."""
    con = con or lake_queries.connect()
    since = until - timedelta(days=days)
    parts = []
    live = lake_queries.files_in_range(live_files, since, until + timedelta(seconds=1))
    if live:
        parts.append(_read(con, live, "live", user_id, since, until, limit))
    hist = _latest_months(history_files, until, 2)
    if hist:
        parts.append(_read(con, hist, "history", user_id, datetime.min.replace(
            tzinfo=until.tzinfo), until, limit))
    parts = [p for p in parts if not p.is_empty()]
    if not parts:
        return pl.DataFrame(schema={c: pl.String() for c in CARD_COLUMNS})
    return pl.concat(parts, how="diagonal_relaxed").sort(
        ["ts", "transaction_id"], descending=True).head(limit)


def _read(con, files, label: str, user_id: int, since, until, limit) -> pl.DataFrame:
    base = {"files": [str(p) for p in files], "ht": dict(HIVE_TYPES)}
    have = lake_queries.columns(files, con)
    decisions = ", ".join(f"{expr if name in have else f'NULL::{_NULLS[name]}'} AS {name}"
                          for name, expr in _DECISIONS.items())
    sql = _CARD_SQL.format(decisions=decisions)
    params = {**base, "user": user_id, "since": since, "until": until, "limit": limit,
              "label": label}
    return pl.from_arrow(con.sql(sql, params=params).to_arrow_table())  # type: ignore[return-value]


def _latest_months(files: Sequence[Path], until: datetime, months: int) -> list[Path]:
    """The history files of the latest ``months`` month folders at or before ``until``."""
    keyed: dict[int, list[Path]] = {}
    limit = until.year * 12 + until.month - 1
    for p in files:
        ym = month_of(p)
        if ym is None:
            continue
        k = ym[0] * 12 + ym[1] - 1
        if k <= limit:
            keyed.setdefault(k, []).append(p)
    return [p for k in sorted(keyed)[-months:] for p in keyed[k]]


def evidence_rows(flag: dict) -> dict[str, dict | None]:
    """rule id → its evidence (or None when not recorded), for every rule that fired."""
    fired = flag.get("rules_fired") or flag.get("rules") or []
    evidence = flag.get("evidence") or {}
    if not isinstance(evidence, dict):
        evidence = {}
    return {r: (evidence.get(r) if isinstance(evidence.get(r), dict) else None) for r in fired}


def evidence_table(evidence: dict) -> pl.DataFrame:
    """One rule's evidence as (field, value) text rows; the one-line ``text`` is shown apart,
    lists (e.g. ``devices_seen``) are joined."""
    rows = {k: ", ".join(map(str, v)) if isinstance(v, list) else str(v)
            for k, v in evidence.items() if k != "text"}
    return pl.DataFrame({"field": list(rows), "value": list(rows.values())},
                        schema={"field": pl.String(), "value": pl.String()})


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float,
                 radius_km: float = 6371.0) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * radius_km * math.asin(math.sqrt(a))


def travel_from_history(flag: dict, card: pl.DataFrame) -> dict | None:
    """The jump to this flag from the card's transaction just before it (as the v1
    impossible-travel rule sees it), or None when the card has no earlier transaction."""
    if card.is_empty() or flag.get("lat") is None:
        return None
    ts = flag["ts"]
    before = card.filter((pl.col("ts") < ts) | ((pl.col("ts") == ts)
                                                & (pl.col("transaction_id")
                                                   < flag["transaction_id"])))
    if before.is_empty() or before["lat"][0] is None:
        return None
    prev = before.row(0, named=True)
    km = haversine_km(prev["lat"], prev["lon"], float(flag["lat"]), float(flag["lon"]))
    minutes = (ts - prev["ts"]).total_seconds() / 60
    hours = max(minutes / 60, 1 / 60)
    return {"from_city": prev["city"], "from_lat": prev["lat"], "from_lon": prev["lon"],
            "km": round(km, 1), "minutes": round(minutes, 1), "kmh": round(km / hours, 1),
            "reconstructed": True}


def jump_points(flag: dict, travel: dict) -> pl.DataFrame:
    """Two points (from → to) for the map."""
    return pl.DataFrame({
        "lat": [float(travel["from_lat"]), float(flag["lat"])],
        "lon": [float(travel["from_lon"]), float(flag["lon"])],
        "where": [f"from {travel.get('from_city') or '?'}", f"to {flag.get('city') or '?'}"],
    })


def in_window(card: pl.DataFrame, ts: datetime, window_seconds: int) -> pl.DataFrame:
    """The card's transactions with ``ts - window <= t <= ts`` (the velocity window)."""
    return card.filter(pl.col("ts").is_between(ts - timedelta(seconds=window_seconds), ts))


def card_median(card: pl.DataFrame, exclude_id: str) -> float | None:
    """The median amount of the card's other recent transactions."""
    others = card.filter(pl.col("transaction_id") != exclude_id)["amount"]
    return None if others.is_empty() else float(others.median())  # type: ignore[arg-type]
