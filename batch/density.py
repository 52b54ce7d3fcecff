"""How dense a lake is: transactions per active card per day.

A card is active from its first to its last transaction in the data (a card seen on one day
counts one day). Rule hit rates depend on it (velocity and impossible-travel rules fire more
often on denser data), so the backtest report states it; issuers see ~1–3 a day per card.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import duckdb

_SQL = """
WITH per_card AS (
    SELECT user_id, count(*) AS n,
           (epoch(max(ts)) - epoch(min(ts))) / 86400.0 + 1.0 AS active_days
    FROM source
    WHERE user_id IS NOT NULL AND ts IS NOT NULL
    GROUP BY user_id
)
SELECT count(*) AS cards, coalesce(sum(n), 0) AS rows, coalesce(sum(active_days), 0) AS days,
       coalesce(median(active_days), 0) AS median_days
FROM per_card
"""


@dataclass(frozen=True)
class Density:
    cards: int
    rows: int
    active_card_days: float
    median_active_days: float

    @property
    def per_card_day(self) -> float:
        """Transactions per active card per day."""
        return self.rows / self.active_card_days if self.active_card_days else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "per_card_day": round(self.per_card_day, 3)}

    def line(self) -> str:
        return (f"density: {self.per_card_day:.2f} transactions per active card per day "
                f"({self.rows:,} over {self.cards:,} cards, median active span "
                f"{self.median_active_days:,.0f} days)")


def density(con: duckdb.DuckDBPyConnection, source: str = "source") -> Density:
    """Density of the relation ``source`` (a view over the lake, as ``open_source`` makes)."""
    cards, rows, days, median_days = con.execute(_SQL.replace("source", source)).fetchall()[0]
    return Density(int(cards), int(rows), float(days), float(median_days))


def density_of(paths: list[str]) -> Density:
    """Density of Parquet files (no labels needed)."""
    con = duckdb.connect()
    try:
        con.read_parquet(paths, union_by_name=True).create_view("source")
        return density(con)
    finally:
        con.close()
