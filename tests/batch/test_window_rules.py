"""batch.window_rules: the one sort of a chunk by (user_id, ts, transaction_id), against Python's
sort of the same keys, and transaction ids kept in parts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batch.window_rules import IdParts, arrow_int64, order_events

T0 = datetime(2024, 3, 10, 12, 0, 0, tzinfo=UTC)
SECONDS = [0, 0, 1, 5, 15, 30, 59, 60, 61, 90, 120, 600, 3600, 7200, 18000, 86400]
USERS = [1, 2, 3, -7, 2**62]


def make_event(tid: str, user: int, ts: datetime) -> dict:
    return {"transaction_id": tid, "user_id": user, "ts": ts, "lat": 0.0, "lon": 0.0}


@st.composite
def event_sets(draw) -> list[dict]:
    n = draw(st.integers(1, 40))
    ids = draw(st.permutations(range(n)))
    return [make_event(
        f"t{ids[i]:02d}", draw(st.sampled_from(USERS)),
        T0 + timedelta(seconds=draw(st.sampled_from(SECONDS)),
                       microseconds=draw(st.sampled_from([0, 0, 1, 999_999])))) for i in range(n)]


def arrays(events: list[dict]):
    ts = np.array([int((e["ts"] - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))
                   for e in events], dtype=np.int64)
    return (np.array([e["user_id"] for e in events], dtype=np.int64), ts,
            np.array([e["lat"] for e in events]), np.array([e["lon"] for e in events]),
            pa.chunked_array([pa.array([e["transaction_id"] for e in events])]))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_sets(), ts_sorted=st.booleans())
def test_order_events_sorts_by_user_ts_and_id(events, ts_sorted):
    if ts_sorted:  # the packed-sort path (ties still in random id order)
        events = sorted(events, key=lambda e: e["ts"])
    user, ts, _, _, tid = arrays(events)
    perm, us, tss = order_events(user, ts, tid)
    keys = [(e["user_id"], e["ts"], e["transaction_id"]) for e in events]
    assert [keys[i] for i in perm] == sorted(keys)
    assert us.tolist() == user[perm].tolist() and tss.tolist() == ts[perm].tolist()


def test_id_parts_take_across_parts_keeps_the_asked_order():
    parts = [pa.array(["a0", "a1"]), pa.array([], pa.string()), pa.array(["b0", "b1", "b2"])]
    ids = IdParts(parts)
    assert ids.take(arrow_int64(np.array([4, 0, 2, 1, 3]))).to_pylist() == [
        "b2", "a0", "b0", "a1", "b1"]
    assert ids.take(arrow_int64(np.zeros(0, dtype=np.int64))).to_pylist() == []


def test_empty_and_single_rows():
    empty = np.zeros(0, dtype=np.int64)
    perm, us, ts = order_events(empty, empty, pa.chunked_array([pa.array([], pa.string())]))
    assert len(perm) == len(us) == len(ts) == 0
    user, ts1, _, _, tid = arrays([make_event("a", 5, T0)])
    assert order_events(user, ts1, tid)[0].tolist() == [0]
