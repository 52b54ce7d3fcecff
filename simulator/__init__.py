"""Card-payment simulator shared by the history generator and the live producer.

API (everything deterministic for its seeds, no per-row Python, Faker only to name merchants):

``build_world(seed: int, n_users: int) -> World``
    Card holders (home city among ~180 real cities with IANA zones, activity rate, spending
    profile and category mix, night owls, travel habit), ~25k merchants per city and category
    plus online shops, and the UTC-offset tables. Cached per process (~2 s the first time).

``simulate(world, start: datetime, count: int, seed: int, events_per_second: float,
chunk_rows: int = 10_000) -> Iterator[pl.DataFrame]``
    Live events: contract-typed Polars frames (``fraudlake.contract.EVENT_SCHEMA``, exact
    types) whose ``ts`` go from ``start`` in steps of ``1/events_per_second``, strictly
    increasing across frames; same holders, merchants, fraud scenarios and labels as the
    history. Transaction ids ``L<yyyymmddHHMMSSffffff of start>-<seed>-<seq:010d>``.

``generate_month(world, seed, year, month, n_rows, active) -> Iterator[pa.Table]``
    One month of history (``batch.generate_history`` writes these as Parquet). Arrow tables
    with dictionary-encoded string columns; ``to_polars`` gives the exact contract types.

``SCENARIOS``: card_testing, account_takeover, night_spend, big_ticket, merchant_collusion
(see ``simulator.scenarios``). Genuine payments also trip the rules now and then (big
purchases, night owls and jet lag, mislocated online payments, group payments at a kiosk).
"""

from simulator.events import SCENARIOS, to_polars
from simulator.history import generate_month
from simulator.stream import simulate
from simulator.world import World, build_world

__all__ = ["SCENARIOS", "World", "build_world", "generate_month", "simulate", "to_polars"]
