"""Small, deterministic dashboard data: a history, a live lake and a SQLite flag store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl

from dashboard.filters import FlagFilter
from flagstore.sqlite import SqliteFlagStore
from fraudlake.contract import DECISION_SCHEMA, LAKE_SCHEMA, RULE_NAMES
from lake.layout import partition_dir

CITIES = ("Berlin", "Paris", "Madrid")
COUNTRIES = ("DE", "FR", "ES")

#: The rule set the test flags were decided by (lake v2 and the flag store record it).
RULE_SET_ID = "default-1@0789644e74d5"

#: The flag tests' clock, and the filters every flag source must answer alike.
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

FILTERS = [
    FlagFilter(),
    FlagFilter(since=NOW - timedelta(minutes=20)),
    FlagFilter(rules=("high_amount", "geo_mismatch")),
    FlagFilter(min_cents=2000, max_cents=100_000),
    FlagFilter(user_id=3),
    FlagFilter(country="FR", rules=("unusual_hour",)),
    FlagFilter(since=NOW - timedelta(minutes=50), until=NOW - timedelta(minutes=10),
               min_cents=150_000),
    FlagFilter(user_id=999),
]


def events(n: int, start: datetime, step: timedelta, users: int = 5, seed: int = 0
           ) -> pl.DataFrame:
    """``n`` lake (v2) rows from ``start`` every ``step``; every 3rd event flagged by a rule
    (``rules_fired``), each flagged one with its evidence (the flag store keeps it)."""
    rows = []
    for i in range(n):
        k = i + seed
        u = k % users
        flagged_rule = RULE_NAMES[(k // 3) % 4] if k % 3 == 0 else None
        amount = Decimal(1500 + k) if flagged_rule == "high_amount" else Decimal(10 + k % 50)
        rows.append({
            "transaction_id": f"t{seed:02d}-{i:06d}", "user_id": u, "ts": start + step * i,
            "amount": amount + Decimal("0.25"), "lat": 50.0, "lon": 10.0, "utc_offset_min": 60,
            "is_fraud": (k % 2 == 0) if flagged_rule else False,
            "fraud_scenario": "card_testing" if flagged_rule and k % 2 == 0 else None,
            "currency": "EUR", "merchant_id": f"m{k % 7}", "merchant_name": f"Shop {k % 7}",
            "category": "5411", "channel": "pos", "city": CITIES[u % 3],
            "country": COUNTRIES[u % 3], "card_last4": "1234", "device_id": None,
            "flagged": flagged_rule is not None,
            "rule_set_id": RULE_SET_ID, "score": 1.0 if flagged_rule else 0.0,
            "rules_fired": [flagged_rule] if flagged_rule else [],
            "evidence": json.dumps({flagged_rule: evidence(flagged_rule, CITIES[u % 3])})
            if flagged_rule else None,
        })
    return pl.DataFrame(rows, schema={**LAKE_SCHEMA, "evidence": pl.String()})


def evidence(rule: str, city: str) -> dict:
    """``EVIDENCE[rule]``, an impossible-travel jump ending in the event's ``city``."""
    ev = dict(EVIDENCE[rule])
    if "to_city" in ev:
        ev["to_city"] = city
        ev["text"] = ev["text"].replace("Berlin", city)
    return ev


#: What the rule-set engine records for each v1 rule's kind (``streaming.evidence``).
EVIDENCE = {
    "high_amount": {"amount": "1500.25", "threshold": "1000.00", "text": "1500.25 > 1000.00"},
    "high_frequency": {"n": 5, "window_seconds": 60, "text": "5 in 60 s"},
    "unusual_hour": {"local_time": "03:12", "start_hour": 0, "end_hour": 5,
                     "text": "local time 03:12"},
    "geo_mismatch": {"from_city": "Lisbon", "to_city": "Berlin", "from_lat": 38.72,
                     "from_lon": -9.14, "km": 2311.9, "minutes": 12.0, "kmh": 11560,
                     "text": "Lisbon → Berlin: 2,312 km in 12.0 min = 11,560 km/h"},
}


def write_lake(root: Path, df: pl.DataFrame, name: str = "part-0.parquet",
               with_rules: bool = True) -> None:
    """Write ``df`` into hive month folders under ``root``."""
    keyed = df.with_columns(pl.col("ts").dt.year().alias("_y"), pl.col("ts").dt.month().alias("_m"))
    for (y, m), part in keyed.group_by(["_y", "_m"]):
        folder = root / partition_dir(int(y), int(m))  # type: ignore[arg-type]
        folder.mkdir(parents=True, exist_ok=True)
        out = part.drop("_y", "_m", "evidence", strict=False)
        if not with_rules:
            out = out.drop(*DECISION_SCHEMA)
        out.write_parquet(folder / name)


def write_flags(path: Path, df: pl.DataFrame) -> pl.DataFrame:
    """Store the flagged rows of ``df`` in a SQLite flag store; return them."""
    flagged = df.filter(pl.col("flagged"))
    with SqliteFlagStore(path) as store:
        store.upsert(flagged)
    return flagged


def build_world(tmp: Path, now: datetime | None = None, live_events: int = 60
                ) -> dict[str, str]:
    """History (2 months, last year) + live lake (last hour) + flag store; the env to use."""
    now = now or datetime.now(UTC)
    hist = events(200, datetime(now.year - 1, 3, 1, tzinfo=UTC), timedelta(hours=7), seed=1)
    write_lake(tmp / "historical", hist, with_rules=False)
    live = events(live_events, now - timedelta(minutes=live_events) + timedelta(seconds=30),
                  timedelta(minutes=1), seed=0)
    write_lake(tmp / "lake" / "transactions", live)
    write_flags(tmp / "flags.sqlite", live)
    return {
        "HISTORY_DIR": str(tmp / "historical"), "LAKE_DIR": str(tmp / "lake"),
        "LOCAL_FLAGS_PATH": str(tmp / "flags.sqlite"),
        "DASHBOARD_CACHE_DIR": str(tmp / "cache"),
        "BACKTEST_REPORT": str(tmp / "backtest.json"),
        "CONSUMER_METRICS": str(tmp / "consumer.json"),
        "DASHBOARD_USERS_FILE": str(tmp / "users.txt"),
        "WHATIF_REPORT": str(tmp / "whatif.json"),
    }
