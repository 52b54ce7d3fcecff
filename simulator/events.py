"""Events as column arrays, and their assembly into a contract-conformant Arrow table.

Samplers produce ``Events`` (numpy arrays of ids and numbers); ``to_table`` sorts them by
``ts`` (stable), numbers them, looks up the UTC offsets and turns ids into dictionary-encoded
string columns (no per-row Python, no string building except the transaction id digits).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np
import polars as pl
import pyarrow as pa

from fraudlake.contract import CHANNELS, EVENT_SCHEMA
from simulator.arrow import numeric_array, string_array
from simulator.tz import OffsetGrid, OffsetTable
from simulator.world import World

SCENARIOS: tuple[str, ...] = (
    "counterfeit", "card_testing", "slow_card_testing", "account_takeover", "cnp_big_ticket",
    "merchant_compromise", "lost_stolen",
)
GENUINE = -1
CURRENCY = "USD"  # amounts are in the issuer's billing currency
ID_DIGITS = 10
_DIGITS4 = (48 + np.arange(10_000)[:, None] // 10 ** np.arange(3, -1, -1) % 10).astype(
    np.uint8)  # ASCII digits of 0000..9999


@dataclass(frozen=True)
class Events:
    """Column arrays of a batch of events (any order)."""

    user: np.ndarray  # int32 user index
    ts: np.ndarray  # int64 seconds since the epoch (UTC)
    city: np.ndarray  # int32 city where the card was used
    lat: np.ndarray  # float64
    lon: np.ndarray  # float64
    merchant: np.ndarray  # int32
    cents: np.ndarray  # int64 amount in cents
    channel: np.ndarray  # int8 index into CHANNELS
    device: np.ndarray  # int64 device code (``cards.mix64``), -1 = none (card present)
    scenario: np.ndarray  # int8 index into SCENARIOS, GENUINE = -1

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, index: np.ndarray) -> Events:
        return Events(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


def concat(parts: list[Events]) -> Events:
    return Events(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                     for f in fields(Events)})


def sort_events(ev: Events) -> Events:
    """Stable order by ts (ties keep their generation order, which is seeded)."""
    return ev.take(stable_order(ev.ts))


def stable_order(ts: np.ndarray) -> np.ndarray:
    """``np.argsort(ts, kind="stable")``, computed as one (SIMD) sort of unique int64 keys
    ``(ts - min) * n + position`` where they fit (several times faster), else the argsort."""
    n = len(ts)
    if n < 2:
        return np.arange(n, dtype=np.int64)
    lo = int(ts.min())
    span = int(ts.max()) - lo
    if span >= (1 << 62) // n:
        return np.argsort(ts, kind="stable")
    keys = (ts - lo) * n
    keys += np.arange(n, dtype=np.int64)
    keys.sort()
    return keys % n


def transaction_ids(prefix: str, first_seq: int, n: int) -> pa.Array:
    """``{prefix}{seq:010d}`` for seq = first_seq .. first_seq + n - 1, built from digit bytes."""
    p = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    width = len(p) + ID_DIGITS
    buf = np.empty((n, width), dtype=np.uint8)
    buf[:, : len(p)] = p
    # consecutive numbers: the last four digits cycle through "0000".."9999", the others
    # change once per 10,000 ids (copies of small tables, no per-row arithmetic)
    start = first_seq % 10_000
    buf[:, width - 4:] = np.tile(_DIGITS4, (-(-(start + n) // 10_000), 1))[start: start + n]
    blocks = np.arange(first_seq // 10_000, (first_seq + n - 1) // 10_000 + 1, dtype=np.int64)
    high = 48 + blocks[:, None] // 10 ** np.arange(ID_DIGITS - 5, -1, -1) % 10
    rows = np.full(len(blocks), 10_000)
    if n:
        rows[0] = min(n, 10_000 - start)
        rows[-1] = n - rows[:-1].sum() if len(blocks) > 1 else rows[0]
    buf[:, len(p): width - 4] = np.repeat(high.astype(np.uint8), rows, axis=0)
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(buf))


@lru_cache(maxsize=16)
def _fixed_pool(values: tuple[str, ...]) -> pa.Array:
    """``string_array`` of a small constant pool (scenarios, cities, ...), built once instead
    of for every month (a fixed cost per month)."""
    return string_array(values)


def _dict(index: np.ndarray, pool: pa.Array, valid: np.ndarray | None = None) -> pa.Array:
    """Dictionary array of ``pool[index]`` holding only the pool entries actually used."""
    used = np.zeros(len(pool), dtype=bool)
    used[index] = True
    remap = np.cumsum(used, dtype=np.int32) - 1
    return pa.DictionaryArray.from_arrays(
        numeric_array(remap[index], valid=valid), pool.take(numeric_array(np.flatnonzero(used)))
    )


def _device_pool(code: np.ndarray) -> tuple[np.ndarray, pa.Array, np.ndarray]:
    """(index, pool of ``dev-<12 hex>`` strings, valid) of device codes; -1 is null."""
    valid = code >= 0
    uniq, inverse = np.unique(code[valid], return_inverse=True)
    index = np.zeros(len(code), dtype=np.int32)
    index[valid] = inverse
    return index, device_strings(uniq), valid


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_DEV_SHIFTS = np.arange(44, -1, -4, dtype=np.int64)  # 12 hex digits of a 48-bit code


def device_strings(code: np.ndarray) -> pa.Array:
    """``dev-<12 hex>`` of non-negative device codes, built from digit bytes (no Python
    string per device: a month of many cards holds a hundred thousand of them)."""
    if len(code) and int(code.max()) >= 1 << 48:  # wider than 12 digits: format them
        return string_array([f"dev-{c:012x}" for c in code.tolist()])
    buf = np.empty((len(code), 16), dtype=np.uint8)
    buf[:, :4] = np.frombuffer(b"dev-", dtype=np.uint8)
    for j, shift in enumerate(_DEV_SHIFTS.tolist()):  # a column at a time: small temporaries
        buf[:, 4 + j] = _HEX[(code >> shift) & 15]
    offsets = np.arange(0, 16 * (len(code) + 1), 16, dtype=np.int32)
    return pa.StringArray.from_buffers(len(code), pa.py_buffer(offsets), pa.py_buffer(buf),
                                       null_count=0)


def _decimal(cents: np.ndarray) -> pa.Array:
    words = np.empty((len(cents), 2), dtype=np.int64)
    words[:, 0] = cents
    words[:, 1] = np.where(cents < 0, -1, 0)
    return pa.Array.from_buffers(pa.decimal128(18, 2), len(cents), [None, pa.py_buffer(words)])


def _parts(world: World, ev: Events, id_prefix: str, first_seq: int,
           tz: OffsetTable | OffsetGrid | None) -> tuple[dict[str, pa.Array], dict[str, tuple]]:
    """The contract columns of ts-sorted events: plain Arrow arrays, and the string columns
    as (index, pool, valid) to be looked up (``valid`` None: never null)."""
    n = len(ev)
    c, m = world.cities, world.merchants
    offset = (tz or world.tz).offset_min(c.zone_id[ev.city], ev.ts // 1_000_000)
    fraud = ev.scenario >= 0
    plain = {
        "transaction_id": transaction_ids(id_prefix, first_seq, n),
        "user_id": numeric_array(world.user_id(ev.user)),
        "ts": numeric_array(ev.ts, pa.timestamp("us", tz="UTC")),
        "amount": _decimal(ev.cents),
        "lat": numeric_array(ev.lat),
        "lon": numeric_array(ev.lon),
        "utc_offset_min": numeric_array(offset.astype(np.int32)),
        "is_fraud": numeric_array(fraud),
    }
    strings = {
        "fraud_scenario": (np.where(fraud, ev.scenario, 0), _fixed_pool(SCENARIOS), fraud),
        "currency": (np.zeros(n, dtype=np.int32), _fixed_pool((CURRENCY,)), None),
        "merchant_id": (ev.merchant, m.merchant_id, None),
        "merchant_name": (m.name_id[ev.merchant], m.names, None),
        "category": (m.category[ev.merchant], _fixed_pool(world.categories.name), None),
        "channel": (ev.channel, _fixed_pool(CHANNELS), None),
        "city": (ev.city, _fixed_pool(c.name), None),
        "country": (c.country_id[ev.city], _fixed_pool(c.countries), None),
        "card_last4": (world.cards.last4_at(ev.user, ev.ts // 1_000_000), world.last4_pool,
                       None),
        "device_id": _device_pool(ev.device),
    }
    return plain, strings


def to_table(world: World, ev: Events, id_prefix: str, first_seq: int = 0,
             tz: OffsetTable | OffsetGrid | None = None) -> pa.Table:
    """Contract columns (strings dictionary-encoded) of already ts-sorted events."""
    plain, strings = _parts(world, ev, id_prefix, first_seq, tz)
    index, pool, valid = strings.pop("device_id")  # its pool holds exactly the used devices
    cols = {**plain, **{k: _dict(*v) for k, v in strings.items()},
            "device_id": pa.DictionaryArray.from_arrays(numeric_array(index, valid=valid), pool)}
    return pa.table({k: cols[k] for k in EVENT_SCHEMA})


def to_frame(world: World, ev: Events, id_prefix: str, first_seq: int = 0,
             tz: OffsetTable | OffsetGrid | None = None) -> pl.DataFrame:
    """``to_polars(to_table(...))`` built directly: strings gathered from their pools."""
    plain, strings = _parts(world, ev, id_prefix, first_seq, tz)
    cols = {k: _series(v) for k, v in plain.items()}
    for name, (index, pool, valid) in strings.items():
        idx = pl.Series(np.asarray(index, dtype=np.uint32))
        if valid is not None:
            idx = pl.select(pl.when(pl.Series(valid)).then(idx)).to_series()
        cols[name] = _pool(pool).gather(idx)
    return pl.DataFrame([cols[k].alias(k) for k in EVENT_SCHEMA])


def _pool(pool: pa.Array) -> pl.Series:
    """A Polars String series of an Arrow pool; the world's large pools are converted once."""
    if len(pool) < 1_000:
        return _series(pool).cast(pl.String)
    hit = _POOLS.get(id(pool))
    if hit is None or hit[0] is not pool:  # (the entry holds the pool: its id stays its own)
        if len(_POOLS) >= 16:
            _POOLS.clear()
        hit = _POOLS[id(pool)] = (pool, _series(pool).cast(pl.String))
    return hit[1]


_POOLS: dict[int, tuple[pa.Array, pl.Series]] = {}


def _series(array: pa.Array) -> pl.Series:
    out = pl.from_arrow(array)
    assert isinstance(out, pl.Series)
    return out


def to_polars(table: pa.Table) -> pl.DataFrame:
    """A contract-typed Polars frame (String columns, Decimal(18,2), Datetime(us, UTC))."""
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    return df.with_columns(
        [pl.col(k).cast(v) for k, v in EVENT_SCHEMA.items() if df.schema[k] != v]
    )
