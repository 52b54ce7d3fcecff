"""A micro-batch's two sink writes, off the consume loop's thread.

``SinkWrites.submit`` hands a decided batch's lake parts to the lake thread (Parquet encoding,
mostly outside the GIL; one thread keeps the files in order) and its flagged rows to the flag
thread when the store is thread safe (MongoDB is; a sqlite3 connection is not: then inline),
and returns the ``PendingBatch`` the loop commits once both writes are done. Both sinks are
idempotent, so a batch written twice after a crash still lands once.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl
from confluent_kafka import TopicPartition

from flagstore.protocols import FlagWriter
from streaming.lake_sink import LakeSink

#: One partition's share of a batch for the lake: (events, topic, partition, first offset,
#: last offset).
LakePart = tuple[pl.DataFrame, str, int, int, int]


@dataclass(frozen=True)
class PendingBatch:
    """A batch whose dead letters are sent and whose lake files and flags are being written."""

    flags: Future  # -> (documents written, wall time in ms when they were)
    lake: Future  # -> wall time in ms when the batch's lake files were written
    offsets: list[TopicPartition]
    created_ms: np.ndarray | None

    def wait(self) -> None:
        """Let both writes finish (their errors are for the committer to raise)."""
        self.lake.exception()
        self.flags.exception()


class SinkWrites:
    """The lake and flag writes of the consume loop, each on its own background thread."""

    def __init__(self, lake: LakeSink, flags: FlagWriter) -> None:
        self.lake = lake
        self.flags = flags
        self._flag_thread = ThreadPoolExecutor(1, "flag-writer") if flags.thread_safe else None
        self._lake_thread = ThreadPoolExecutor(1, "lake-writer")

    def submit(self, lake_parts: list[LakePart], flagged: pl.DataFrame | None,
               offsets: list[TopicPartition], created_ms: np.ndarray | None) -> PendingBatch:
        lake = self._lake_thread.submit(self._write_lake, lake_parts)
        if self._flag_thread is not None:
            flags = self._flag_thread.submit(self._write_flags, flagged)
        else:
            flags = Future()
            flags.set_result(self._write_flags(flagged))
        return PendingBatch(flags, lake, offsets, created_ms)

    def _write_lake(self, parts: list[LakePart]) -> float:
        for frame, topic, partition, first, last in parts:
            self.lake.write(frame, topic, partition, first, last)
        return time.time() * 1000

    def _write_flags(self, frame: pl.DataFrame | None) -> tuple[int, float]:
        written = self.flags.upsert(frame) if frame is not None else 0
        return written, time.time() * 1000

    def close(self) -> None:
        """Wait for the writes in flight and stop the threads."""
        if self._flag_thread is not None:
            self._flag_thread.shutdown(wait=True)
        self._lake_thread.shutdown(wait=True)
