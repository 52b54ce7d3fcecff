"""The two interfaces every flag store implements: a writer for the consumer, a reader for the
dashboard and ``lake.export``. Rows are ``flagstore.schema.FLAG_SCHEMA`` frames."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Protocol

import polars as pl

from flagstore.query import FlagFilter


class FlagReadError(RuntimeError):
    """The flag store cannot be read; the message says which one and why (one line)."""


class FlagWriter(Protocol):
    """Where the consumer puts flagged events. Delivery: at-least-once in, exactly one flag per
    ``transaction_id`` stored — ``upsert`` is idempotent (a replay of the same events leaves one
    flag each; ``flagged_at`` keeps the first write)."""

    #: ``upsert`` may be called from a background thread (the consumer then overlaps the flag
    #: write with deciding the next batch).
    thread_safe: bool

    def prepare(self) -> None:
        """Reach the store and set it up (indexes), retrying transient errors; an entry point
        calls it at start so an unreachable store fails there, not at the first flag."""
        ...

    def upsert(self, flagged: pl.DataFrame) -> int:
        """Store flagged decided events (contract + decision columns); return how many."""
        ...

    def close(self) -> None: ...


class FlagReader(Protocol):
    """Reads a flag store; every frame is ``FLAG_SCHEMA``, newest ``ts`` first unless said."""

    @property
    def label(self) -> str:
        """What a page shows as the flags' origin."""
        ...

    @property
    def key(self) -> str:
        """Identifies the store in ``lake.export``'s state (``mongo:db.coll``, ``local:…``)."""
        ...

    def recent(self, f: FlagFilter, limit: int) -> pl.DataFrame:
        """The latest ``limit`` flags matching ``f``."""
        ...

    def count(self, f: FlagFilter, cap: int) -> int:
        """How many flags match ``f``, counting at most ``cap`` (bounded cost)."""
        ...

    def export(self, f: FlagFilter) -> pl.DataFrame:
        """Every flag matching ``f``."""
        ...

    def read_since(self, since: datetime | None, chunk_rows: int) -> Iterator[pl.DataFrame]:
        """Flags with ``flagged_at >= since`` in ``(flagged_at, transaction_id)`` order, as
        frames of at most ``chunk_rows`` rows."""
        ...

    def close(self) -> None: ...
