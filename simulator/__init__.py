"""The simulated world shared by the history generator and the live producer.

API (deterministic for its seeds, no per-row Python, Faker's surname table only to name merchants):

``build_world(seed, n_cards, start_year=2000, end_year=2025) -> World``
    Cards as processes (issue, closure, reissue, heterogeneous rates, dormant spells, devices,
    households, night-shift workers, commuters, travellers, subscriptions) living in ~180 real
    cities with their time zones and price levels; merchants spread over each metro.
    ``default_cards(rows, start_year, end_year)``: the number of cards that makes ``rows``
    payments a realistic density (``DENSITY_PER_DAY`` per open card per day).

``generate_month(world, seed, year, month, n_rows) -> Iterator[pa.Table]``
    One month of history (``batch.generate_history`` writes these as Parquet).

``simulate(world, end, count, seed, chunk_rows=10_000) -> Iterator[pl.DataFrame]``
    The live stream: ``count`` events of the same processes over a past span ending at ``end``
    (compressed time: the span ``count`` payments take at the world's density).

``SCENARIOS``: seven fraud scenarios whose mix drifts over the years (``simulator.scenarios``).
"""

from simulator.cards import DENSITY_PER_DAY, default_cards
from simulator.events import SCENARIOS, to_polars
from simulator.history import generate_month
from simulator.stream import simulate
from simulator.world import World, build_world

__all__ = ["DENSITY_PER_DAY", "SCENARIOS", "World", "build_world", "default_cards",
           "generate_month", "simulate", "to_polars"]
