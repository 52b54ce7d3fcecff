"""A rich rule set (every kind, two velocity windows, card testing, scopes, a list, weights,
an alert threshold > 1) and events that exercise it: channels, categories, devices (some
null or empty), merchants and cities drawn from small pools so rules fire often."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from rules.model import RuleSet, load_rule_set
from tests.streaming._stream_events import random_events

RICH_TOML = """
version = "rich-test-1"
alert_threshold = "1.5"

[[rule]]
id = "big"
kind = "amount_over"
threshold = "1000.00"
weight = 1.5

[[rule]]
id = "burst_1m"
kind = "velocity_count"
window_seconds = 60
count = 4

[[rule]]
id = "burst_1h"
kind = "velocity_count"
window_seconds = 3600
count = 9
weight = 0.5

[[rule]]
id = "card_testing"
kind = "velocity_count"
window_seconds = 600
count = 3
max_amount = "5.00"
channels = ["online"]
weight = 1.5

[[rule]]
id = "spend_10m"
kind = "velocity_amount"
window_seconds = 600
total = "2500.00"
categories = ["electronics", "jewelry"]

[[rule]]
id = "night"
kind = "local_hour"
start_hour = 23
end_hour = 5
weight = 0.25

[[rule]]
id = "travel"
kind = "impossible_travel"
distance_km = 100.0
speed_kmh = 900.0
min_hours = 0.016666666666666666

[[rule]]
id = "spike"
kind = "amount_vs_history"
ratio = "3"
history = 4
min_history = 2
weight = 0.75

[[rule]]
id = "fresh_device"
kind = "new_device"
lookback_days = 1
min_history = 2
channels = ["online", "pos"]
weight = 0.5

[[rule]]
id = "blocked"
kind = "in_list"
field = "merchant_id"
file = "lists/blocked.txt"
weight = 2

[[rule]]
id = "odd_country"
kind = "in_list"
field = "country"
values = ["RU", "KP", "x;'\\""]
categories = ["atm_cash", "electronics"]
"""

BLOCKED = "# blocked merchants\nm3\n\n m7 \nm'; drop\n"


def rich_rule_set(tmp: Path) -> RuleSet:
    (tmp / "lists").mkdir(parents=True, exist_ok=True)
    (tmp / "lists" / "blocked.txt").write_text(BLOCKED)
    path = tmp / "rich.toml"
    path.write_text(RICH_TOML)
    return load_rule_set(path)


def rich_events(n: int, n_users: int = 20, seed: int = 0, span_s: int = 4 * 3600
                ) -> pl.DataFrame:
    return with_rich_columns(random_events(n, n_users, seed, span_s), seed)


def with_rich_columns(df: pl.DataFrame, seed: int) -> pl.DataFrame:
    """``df`` with amounts, channels, categories, devices, merchants, countries and cities
    drawn so that every rule of ``RICH_TOML`` fires."""
    n = df.height
    rng = np.random.default_rng(seed + 1000)

    def pick(values: list, p=None) -> pl.Series:
        return pl.Series([values[i] for i in rng.choice(len(values), n, p=p)], dtype=pl.String)

    cents = rng.choice([100, 300, 500, 501, 100_001, 40_000], n)
    cents = np.where(rng.random(n) < 0.5, rng.integers(0, 60_000, n), cents)
    return df.with_columns(
        amount=pl.Series([int(c) for c in cents]).cast(pl.Decimal(18, 2)) / 100,
        channel=pick(["pos", "online", "atm", None], [0.4, 0.4, 0.15, 0.05]),
        category=pick(["grocery", "electronics", "jewelry", "atm_cash", None]),
        device_id=pick(["d1", "d2", "d3", "d4", "", None], [0.3, 0.2, 0.2, 0.1, 0.1, 0.1]),
        merchant_id=pick([f"m{i}" for i in range(10)] + ["m'; drop"]),
        country=pick(["FR", "GB", "US", "RU", "x;'\""]),
        city=pick(["Paris", "London", "New York", "Tokyo", "Sydney"]),
    ).with_columns(pl.col("amount").cast(pl.Decimal(18, 2)))
