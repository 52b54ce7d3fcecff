"""Decoding throughput: the vectorised ``decode_batch`` vs per-record ``json.loads`` + checks.

``.venv/bin/python bench/bench_decode.py [--events 200000]``

Records are the JSON the producer sends (``streaming.produce.encode_events``) for generated
events. Measured in this process: clean batches, and batches with 1% poison (which take the
per-record structural fallback when a record is not JSON). The baseline is the seed-style
decoder: ``json.loads`` per record, Python checks, then ``pl.DataFrame`` from the dicts.
Writes ``bench/results/decode.md``. Shared 2-core machine: figures are noisy; compare ratios.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import polars as pl

sys.path[:0] = [str(Path(__file__).parents[1]), str(Path(__file__).parents[1] / "tests/streaming")]
from _stream_events import random_events  # noqa: E402

from fraudlake.cli import ArgumentParser, positive_count_arg  # noqa: E402
from fraudlake.contract import EVENT_SCHEMA  # noqa: E402
from streaming.decode import RawRecord, decode_batch  # noqa: E402
from streaming.produce import encode_events  # noqa: E402

RESULTS = Path(__file__).parent / "results"
POISON = [b"not json", b'{"user_id": true}', b'{"lat": NaN}', b"[1]"]


def baseline_decode(records: list[RawRecord]) -> tuple[pl.DataFrame, int]:
    """Seed style: one json.loads and a few Python checks per record, then a frame."""
    rows, bad = [], 0
    for r in records:
        try:
            obj = json.loads(r.value)
            uid = obj["user_id"]
            if not isinstance(uid, int) or isinstance(uid, bool):
                raise ValueError("user_id")
            amount = Decimal(str(obj["amount"]))
            if amount < 0 or amount.as_tuple().exponent < -2:
                raise ValueError("amount")
            if not -90 <= float(obj["lat"]) <= 90 or not -180 <= float(obj["lon"]) <= 180:
                raise ValueError("coords")
            obj["ts"] = datetime.fromisoformat(obj["ts"])
            obj["amount"] = amount
            rows.append(obj)
        except (ValueError, KeyError, TypeError, ArithmeticError):
            bad += 1
    return pl.DataFrame(rows, schema=EVENT_SCHEMA), bad


def measure(fn, batches: list[list[RawRecord]]) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    good = bad = 0
    for b in batches:
        df, dead = fn(b)
        good += df.height
        bad += dead if isinstance(dead, int) else len(dead)
    return time.perf_counter() - t0, good, bad


def main() -> int:
    parser = ArgumentParser(prog="bench/bench_decode.py", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=positive_count_arg, default=200_000)
    parser.add_argument("--batch", type=positive_count_arg, default=20_000)
    args = parser.parse_args()
    _, values = encode_events(random_events(args.events, n_users=10_000, seed=1))
    clean = [RawRecord(v, None, "tx", 0, i) for i, v in enumerate(values)]
    dirty = [RawRecord(POISON[i % 4] if i % 100 == 7 else v, None, "tx", 0, i)
             for i, v in enumerate(values)]
    rows = []
    for label, records in (("clean", clean), ("1% poison", dirty)):
        batches = [records[i:i + args.batch] for i in range(0, len(records), args.batch)]
        vec_s, good, bad = measure(decode_batch, batches)
        base_s, base_good, base_bad = measure(baseline_decode, batches)
        assert good == base_good and bad == base_bad, (good, base_good, bad, base_bad)
        rows.append((label, len(records) / vec_s, len(records) / base_s, base_s / vec_s, bad))
        print(f"{label}: vectorised {len(records) / vec_s:,.0f} rec/s, json.loads baseline "
              f"{len(records) / base_s:,.0f} rec/s, {base_s / vec_s:.1f}x", file=sys.stderr)
    RESULTS.mkdir(exist_ok=True)
    lines = [
        "# Decoding throughput", "",
        f"`.venv/bin/python bench/bench_decode.py` — {args.events:,} producer-encoded JSON "
        f"records in batches of {args.batch:,}; same process, same records; valid/invalid "
        "counts checked equal between the two decoders.",
        "The machine (2 cores) is shared with other work (load average "
        f"{__import__('os').getloadavg()[0]:.1f} when written): absolute figures are noisy.", "",
        "| input | decode_batch (records/s) | json.loads per record (records/s) | speed-up "
        "| dead letters |", "|---|---:|---:|---:|---:|",
        *[f"| {r[0]} | {r[1]:,.0f} | {r[2]:,.0f} | {r[3]:.1f}x | {r[4]:,} |" for r in rows],
    ]
    (RESULTS / "decode.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
