"""The flags in the page process: one cold load, then only what is new (pure core).

Why: the page refreshes every second. Even index-served, re-reading thousands of documents
per refresh and session costs the store; and FerretDB (the dev/test stand-in for MongoDB)
pushes no range filter, sort or limit down at all (its ``explain`` says ``filterPushdown:
false, sortPushdown: false``): every such query decodes every document in Go, ~0.2–0.3 ms
each here, i.e. minutes at 1M flags. So the MongoDB source keeps a ``Snapshot``:

- cold load: every flag, or the newest ``max_rows`` by ts (then ``complete_since`` says from
  which ts on the snapshot holds every flag; older ones are read from the store on demand);
- sync: the documents whose ``flagged_at`` is at or after ``watermark - overlap``. The sink
  stamps ``flagged_at`` once, at insert (``$setOnInsert``), so this is every document that
  appeared since, provided an insert becomes visible within ``overlap`` of its stamp;
  documents already held (the overlap) are recognised by id and skipped;
- reads: the filter applied in Polars (the same predicate as ``flagstore.query.apply``,
  which agrees with the MongoDB filter document), newest first by (ts, transaction_id).

The snapshot is a frozen value; ``merge``/``view`` return new values (sources swap them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

import polars as pl

from flagstore.query import FlagFilter, apply
from fraudlake.contract import RULE_NAMES
from fraudlake.settings import DashboardSettings

ORDER = ["ts", "transaction_id"]  # the snapshot is sorted ascending; views are reversed
_MASK = "_rule_mask"  # one bit per RULE_NAMES entry: cheap "any of these rules" filter
MASK = _MASK
_ROW = "_row"  # a row number while filtering (``view``)


@dataclass(frozen=True)
class CacheConfig:
    """How the page's flag cache behaves (environment: see ``from_env``)."""

    max_rows: int = DashboardSettings.cache_flags  # flags held in memory (~250 B each)
    #: re-read window behind the newest flagged_at
    overlap: timedelta = timedelta(seconds=DashboardSettings.sync_overlap_seconds)
    sync_seconds: float = DashboardSettings.sync_seconds  # at most one sync per this many s
    background: bool = True  # sync in a thread: reads never wait for the store
    stale_seconds: float = 60.0  # without a successful sync for this long, reads fail

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> CacheConfig:
        """DASHBOARD_CACHE_FLAGS (max rows, 0 = no cache: query the store every refresh),
        DASHBOARD_SYNC_OVERLAP_S, DASHBOARD_SYNC_SECONDS, DASHBOARD_SYNC=background|inline."""
        d = DashboardSettings.from_env(env)
        return cls(max_rows=d.cache_flags, overlap=timedelta(seconds=d.sync_overlap_seconds),
                   sync_seconds=d.sync_seconds, background=d.sync_mode == "background")


@dataclass(frozen=True)
class Snapshot:
    frame: pl.DataFrame  # PAGE_COLUMNS + _rule_mask, ascending by (ts, transaction_id)
    complete_since: datetime | None  # None: every flag in the store; else every one with ts >= it
    watermark: datetime | None  # newest flagged_at seen
    recent: pl.DataFrame  # (transaction_id, flagged_at) held with flagged_at >= watermark - overlap


def _with_mask(flags: pl.DataFrame) -> pl.DataFrame:
    bits = [pl.col("rules_fired").list.contains(r).cast(pl.UInt8) * (1 << i)
            for i, r in enumerate(RULE_NAMES)]
    return flags.with_columns(pl.sum_horizontal(bits).cast(pl.UInt8).alias(_MASK))


def _recent(ids: pl.DataFrame, watermark: datetime | None, overlap: timedelta) -> pl.DataFrame:
    ids = ids.select("transaction_id", "flagged_at")
    if watermark is None:
        return ids.clear()
    return ids.filter(pl.col("flagged_at") >= watermark - overlap).unique("transaction_id")


def _trim(frame: pl.DataFrame, max_rows: int, complete_since: datetime | None
          ) -> tuple[pl.DataFrame, datetime | None]:
    """Keep the newest rows (at most max_rows) so that every flag with ts >= the returned
    boundary is kept: a ts shared across the cut is dropped whole."""
    if frame.height <= max_rows:
        return frame, complete_since
    cut = frame.height - max_rows
    ts = frame["ts"]
    keep_from = int(ts.search_sorted(ts[cut - 1], side="right"))
    if keep_from >= frame.height:  # one ts for everything: hold nothing rather than lie
        return frame.clear(), ts[-1] + timedelta(microseconds=1)
    return frame.slice(keep_from), ts[keep_from]


def cold(chunks: Iterable[pl.DataFrame], empty: pl.DataFrame, max_rows: int,
         overlap: timedelta) -> Snapshot:
    """A snapshot from the store's documents, in any order: every flag of the store, or (a
    read sorted by ts descending) the newest ``max_rows + 1``; ``empty`` gives the schema."""
    parts: list[pl.DataFrame] = []
    rows = 0
    since: datetime | None = None
    marks: list[datetime] = []
    for chunk in chunks:
        parts.append(chunk)
        mark = chunk["flagged_at"].max()
        if mark is not None:
            marks.append(mark)  # type: ignore[arg-type]
        rows += chunk.height
        if rows > 2 * max_rows:  # bound memory while streaming an unsorted scan
            kept, since = _trim(pl.concat(parts).sort(ORDER), max_rows, since)
            parts, rows = [kept], kept.height
    held = pl.concat([empty, *parts])
    if since is not None:  # rows read after a cut, older than what is kept
        held = held.filter(pl.col("ts") >= since)
    frame, since = _trim(_with_mask(held.sort(ORDER)), max_rows, since)
    watermark = max(marks) if marks else None
    return Snapshot(frame.rechunk(), since, watermark, _recent(held, watermark, overlap))


def merge(snap: Snapshot, delta: pl.DataFrame, max_rows: int, overlap: timedelta) -> Snapshot:
    """Fold the documents of one sync (flagged_at >= watermark - overlap) into the snapshot."""
    if delta.is_empty():
        return snap
    delta = delta.unique("transaction_id", keep="last")
    fresh = delta.join(snap.recent, on="transaction_id", how="anti")
    if snap.watermark is None:  # nothing stamped held yet: the sync read everything
        fresh = fresh.join(snap.frame.select("transaction_id"), on="transaction_id", how="anti")
    newest = cast(datetime | None, delta["flagged_at"].max())
    watermark = max((d for d in (snap.watermark, newest) if d is not None), default=None)
    recent = _recent(pl.concat([snap.recent, delta.select("transaction_id", "flagged_at")]),
                     watermark, overlap)
    if snap.complete_since is not None:  # older than what we hold: left to the store
        fresh = fresh.filter(pl.col("ts") >= snap.complete_since)
    if fresh.is_empty():
        return dataclasses.replace(snap, watermark=watermark, recent=recent)
    fresh = _with_mask(fresh.sort(ORDER))
    at = int(snap.frame["ts"].search_sorted(fresh["ts"][0], side="left"))
    tail = pl.concat([snap.frame.slice(at), fresh]).sort(ORDER)
    frame = pl.concat([snap.frame.slice(0, at), tail])
    if frame.n_chunks() > 32:
        frame = frame.rechunk()
    frame, since = _trim(frame, max_rows, snap.complete_since)
    return Snapshot(frame, since, watermark, recent)


def covers(snap: Snapshot, f: FlagFilter) -> bool:
    """True when every flag matching ``f`` is in the snapshot."""
    return snap.complete_since is None or (f.since is not None and f.since >= snap.complete_since)


def older(f: FlagFilter, snap: Snapshot) -> FlagFilter:
    """The part of ``f`` the snapshot does not hold (ts before complete_since)."""
    assert snap.complete_since is not None
    until = snap.complete_since if f.until is None else min(f.until, snap.complete_since)
    return dataclasses.replace(f, until=until)


def _sliced(snap: Snapshot, f: FlagFilter) -> pl.DataFrame:
    """The held flags of ``f``'s time range, cut by binary search (ascending; no copy)."""
    frame = snap.frame
    if f.since is not None:
        frame = frame.slice(int(frame["ts"].search_sorted(f.since, side="left")))
    if f.until is not None:
        frame = frame.head(int(frame["ts"].search_sorted(f.until, side="left")))
    return frame


def _filtered(frame: pl.DataFrame, f: FlagFilter) -> pl.LazyFrame:
    """``frame`` (already cut to the time range) filtered by the rest of ``f`` in one pass:
    rules by bit mask, the rest by ``flagstore.query.apply``."""
    lazy = frame.lazy()
    if f.rules:
        wanted = sum(1 << i for i, r in enumerate(RULE_NAMES) if r in f.rules)
        pred = (pl.col(_MASK) & wanted) != 0
        for r in f.rules:  # rule-set ids beyond v1: looked up in the list
            if r not in RULE_NAMES:
                pred |= pl.col("rules_fired").list.contains(r)
        lazy = lazy.filter(pred)
    rest = dataclasses.replace(f, since=None, until=None, rules=())
    return apply(rest, lazy) if rest != FlagFilter() else lazy


def _matching(snap: Snapshot, f: FlagFilter) -> pl.LazyFrame:
    """Held flags matching ``f``, ascending."""
    return _filtered(_sliced(snap, f), f)


def matching(snap: Snapshot, f: FlagFilter) -> pl.DataFrame:
    """Held flags matching ``f``, ascending by (ts, transaction_id)."""
    return _matching(snap, f).collect().drop(_MASK)


def lazy_matching(snap: Snapshot, f: FlagFilter) -> pl.LazyFrame:
    """Held flags matching ``f``, ascending, lazily (the aggregates run over it in place);
    with the ``_rule_mask`` column (one bit per v1 rule: per-rule counts without exploding
    the lists, see ``dashboard.aggregates``)."""
    return _matching(snap, f)


def count(snap: Snapshot, f: FlagFilter) -> int:
    """How many held flags match ``f`` (nothing copied)."""
    return int(_matching(snap, f).select(pl.len()).collect().item())


def view(snap: Snapshot, f: FlagFilter, limit: int | None = None) -> pl.DataFrame:
    """Matching flags newest first (at most ``limit``), in ``PAGE_COLUMNS``."""
    if limit is None:
        return _matching(snap, f).collect().reverse().drop(_MASK)
    # the filter over the predicate's columns and a row number only, then a gather of the
    # last ``limit`` rows: no copy of every matching row's text and lists
    frame = _sliced(snap, f)
    rows = _filtered(frame.with_row_index(_ROW), f).select(_ROW).tail(limit).collect()[_ROW]
    return frame[rows].reverse().drop(_MASK)
