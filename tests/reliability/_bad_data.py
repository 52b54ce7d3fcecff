"""Parquet inputs that pass the schema check but hold data the engines choke on: the bad-data
class of issue 16 (scrambled pages, a decimal(38,2) amount beyond decimal(18,2), a uint64
user_id above 2^63, timestamps in year 1 and 9999, lat = inf, a corrupt lake file)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from lake.layout import file_name, partition_dir, to_lake_frame, write_lake_file


def _events(n: int = 40) -> pl.DataFrame:
    from tests.streaming._kafka_data import make_events

    events = make_events(n)
    extra = {"merchant_name": "shop", "category": "grocery", "country": "FR",
             "card_last4": "1234", "device_id": None}
    return events.with_columns(
        [pl.lit(v, pl.String).alias(k) for k, v in extra.items() if k not in events.columns])


def scrambled(path: Path) -> None:
    """Valid footer and schema, garbage in the data pages."""
    _events(400).write_parquet(path, compression="uncompressed", statistics=False)
    raw = bytearray(path.read_bytes())
    meta_len = int.from_bytes(raw[-8:-4], "little")
    end = len(raw) - 8 - meta_len
    for i in range(8, end, 7):  # keep the magic and the footer
        raw[i] = (raw[i] * 31 + 17) % 256
    path.write_bytes(bytes(raw))


def wide_decimal(path: Path) -> None:
    """amount as decimal(38,2) with one value above decimal(18,2)'s range."""
    table = _events().to_arrow()
    amounts = [Decimal(str(v)) for v in table["amount"].to_pylist()]
    amounts[3] = Decimal("12345678901234567890123.45")
    i = table.schema.get_field_index("amount")
    table = table.set_column(i, "amount", pa.array(amounts, pa.decimal128(38, 2)))
    pq.write_table(table, path)


def huge_user_id(path: Path) -> None:
    """user_id as uint64 with one value above 2^63."""
    table = _events().to_arrow()
    ids = [int(v) for v in table["user_id"].to_pylist()]
    ids[5] = 2**63 + 12345
    i = table.schema.get_field_index("user_id")
    table = table.set_column(i, "user_id", pa.array(ids, pa.uint64()))
    pq.write_table(table, path)


def extreme_years(path: Path) -> None:
    """One event in year 1 and one in year 9999 (a naive month-by-month loop never ends)."""
    df = _events()
    ts = df["ts"].to_list()
    ts[0] = datetime(1, 1, 1, tzinfo=UTC)
    ts[-1] = datetime(9999, 12, 31, 23, 59, tzinfo=UTC)
    df.with_columns(pl.Series("ts", ts, dtype=df.schema["ts"])).write_parquet(path)


def infinite_lat(path: Path) -> None:
    """lat = inf and lon = nan on a few rows."""
    df = _events()
    lat = df["lat"].to_list()
    lon = df["lon"].to_list()
    lat[4] = float("inf")
    lat[9] = float("-inf")
    lon[9] = float("nan")
    df.with_columns(pl.Series("lat", lat), pl.Series("lon", lon)).write_parquet(path)


def not_parquet(path: Path) -> None:
    path.write_bytes(b"PAR1 this is not a parquet file at all PAR1")


def truncated(path: Path) -> None:
    """A Parquet file cut in half (a crashed copy)."""
    _events(400).write_parquet(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


FILES: dict[str, Callable[[Path], None]] = {
    "scrambled": scrambled, "wide_decimal": wide_decimal, "huge_user_id": huge_user_id,
    "extreme_years": extreme_years, "infinite_lat": infinite_lat, "truncated": truncated,
}


def lake_with(folder: Path, corrupt: Callable[[Path], None] | None, files: int = 9) -> Path:
    """A live lake (``folder/transactions/year=/month=``) of ``files`` small sink files, old
    enough to compact; with ``corrupt``, the middle one is replaced by that bad file."""
    events = _events(files * 10)
    ts0 = events["ts"][0]
    month = folder / "transactions" / partition_dir(ts0.year, ts0.month)
    month.mkdir(parents=True)
    frame = to_lake_frame(events)
    for i in range(files):
        path = month / file_name("transactions", 0, i * 10, i * 10 + 9)
        write_lake_file(frame.slice(i * 10, 10), path)
        if corrupt is not None and i == files // 2:
            corrupt(path)
    import os

    for p in month.iterdir():
        os.utime(p, (1e9, 1e9))
    return folder
