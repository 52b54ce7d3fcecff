"""The embedded end-to-end demo: simulator → JSON → decode → rules → lake + local flag store.

``python -m streaming.demo [--count 200000] [--seed 7]`` — the README's main command. No Kafka
and no MongoDB: an in-process source plays the live simulator (``simulator``), each event is
serialised to the same JSON a Kafka message carries and decoded by the same code as the
consumer (``streaming.pipeline.process_batch``), then written to the hive-partitioned lake
(``streaming.lake_sink``) and the SQLite flag store the dashboard reads
(``flagstore.sqlite``). Offsets are positions in the simulated stream of topic ``demo``,
partition 0; a run starts by removing what an earlier demo run wrote for that topic, so the
outputs always describe this run.

``--follow`` instead runs until stopped (Ctrl-C / SIGTERM) as a live feed for the dashboard:
about ``--rate`` events per wall-clock second with event time = now (``streaming.live_feed``:
the cards are scaled to the rate so the density stays realistic), decided and written about
once a second, APPENDED after what earlier runs wrote (offsets continue, nothing is removed);
it rewrites the consumer metrics file (env CONSUMER_METRICS) with the embedded lag each batch.
"""

from __future__ import annotations

import logging
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from tqdm import tqdm

from flagstore.sqlite import SqliteFlagStore
from fraudlake.atomic import os_error
from fraudlake.cli import (
    ArgumentParser,
    UsageError,
    check_output_dir,
    check_output_file,
    float_range_arg,
    positive_count_arg,
    run,
    seed_arg,
)
from fraudlake.contract import FLAGGED
from fraudlake.settings import Settings
from lake.layout import folder_files, month_folders, transactions_dir
from rules.arguments import add_rule_arguments, rule_set_from_args
from rules.model import RuleSet, load_rule_set
from streaming.consume_loop import ConsumeStats, write_metrics
from streaming.decode import RawRecord
from streaming.engine import RuleEngine
from streaming.lake_sink import LakeSink
from streaming.live_feed import LiveFeed
from streaming.pipeline import process_batch

log = logging.getLogger(__name__)

TOPIC = "demo"
PARTITION = 0
USERS = 20_000  # cards of a batch run
FOLLOW_RATE = 5.0  # events per wall-clock second of --follow (~720k cards)


@dataclass
class DemoSummary:
    events: int = 0
    dead_letters: int = 0
    flags: dict[str, int] = field(default_factory=dict)  # rule id / flagged -> count
    lake_files: set[Path] = field(default_factory=set)
    seconds: float = 0.0
    rule_set_id: str = ""

    def lines(self, lake: Path, flags_db: Path) -> list[str]:
        rate = self.events / self.seconds if self.seconds else 0.0
        rules = "  ".join(f"{k}={v:,}" for k, v in self.flags.items())
        return [
            f"events: {self.events:,} in {self.seconds:.1f} s ({rate:,.0f} events/s), "
            f"dead letters: {self.dead_letters:,}",
            f"rule set: {self.rule_set_id}",
            f"flags: {rules}",
            f"lake: {len(self.lake_files)} files under {transactions_dir(lake)}",
            f"flag store: {flags_db} (SQLite, table flags)",
        ]


def json_records(frames: Iterator[pl.DataFrame], first_offset: int = 0) -> Iterator[
        list[RawRecord]]:
    """Contract frames → the JSON records a Kafka consumer would receive (offsets numbered)."""
    from streaming.produce import encode_events

    offset = first_offset
    for frame in frames:
        keys, values = encode_events(frame)
        yield [RawRecord(v, k, TOPIC, PARTITION, offset + i)
               for i, (k, v) in enumerate(zip(keys, values, strict=True))]
        offset += len(values)


def simulated_frames(count: int, seed: int, users: int,
                     batch: int) -> Iterator[pl.DataFrame]:
    """The live simulator's frames (ending now), re-cut into micro-batches of ``batch`` events."""
    from streaming.produce import simulated_events

    pending: list[pl.DataFrame] = []
    size = 0
    for frame in simulated_events(seed, users, count):
        pending.append(frame)
        size += frame.height
        while size >= batch:
            whole = pl.concat(pending)
            yield whole.head(batch)
            rest = whole.slice(batch)
            pending, size = [rest], rest.height
    if size:
        yield pl.concat(pending)


def reset_demo_outputs(lake: Path, store: SqliteFlagStore) -> None:
    """Remove what an earlier demo run wrote for the demo topic (lake files, flags)."""
    for folder in month_folders(transactions_dir(lake)):
        for f in folder_files(folder):
            if f.topic == TOPIC:
                f.path.unlink(missing_ok=True)
    store.delete_source_prefix(f"{TOPIC}:")


def run_demo(count: int, seed: int, users: int, batch: int, lake: Path,
             flags_db: Path, rule_set: RuleSet | None = None,
             progress: bool = True) -> DemoSummary:
    """Run the embedded pipeline end to end; return what it did."""
    engine = RuleEngine(rule_set if rule_set is not None else load_rule_set())
    summary = DemoSummary(flags=dict.fromkeys((*engine.rule_ids, FLAGGED), 0),
                          rule_set_id=engine.rule_set_id)
    sink = LakeSink(lake)
    t0 = time.perf_counter()
    with SqliteFlagStore(flags_db) as store, tqdm(total=count, unit="ev", file=sys.stderr,
                                                  disable=None if progress else True) as bar:
        reset_demo_outputs(lake, store)
        for records in json_records(simulated_frames(count, seed, users, batch)):
            result = process_batch(records, engine)
            decided = result.events_with_rules
            summary.lake_files.update(
                sink.write(decided, TOPIC, PARTITION, records[0].offset, records[-1].offset))
            store.upsert(result.flagged)
            summary.events += decided.height
            summary.dead_letters += len(result.dead_letters)
            for name in summary.flags:
                summary.flags[name] += int(decided[name].sum())
            bar.update(len(records))
    summary.seconds = time.perf_counter() - t0
    return summary


def next_offset(lake: Path) -> int:
    """The first demo-topic offset no lake file covers yet (``--follow`` appends after it)."""
    last = -1
    for folder in month_folders(transactions_dir(lake)):
        for f in folder_files(folder):
            if f.topic == TOPIC and f.partition == PARTITION:
                last = max(last, f.last)
    return last + 1


def follow_demo(seed: int, rate: float, lake: Path, flags_db: Path,
                rule_set: RuleSet | None, metrics: Path | None, tick: float = 1.0,
                stop: Callable[[], bool] = lambda: False,
                on_start: Callable[[LiveFeed], None] = lambda _feed: None) -> DemoSummary:
    """The embedded live feed: events due by the wall clock, decided and appended every
    ``tick`` seconds until ``stop()`` says so (checked between batches: a batch in hand is
    always written to both the lake and the flag store)."""
    engine = RuleEngine(rule_set if rule_set is not None else load_rule_set())
    summary = DemoSummary(flags=dict.fromkeys((*engine.rule_ids, FLAGGED), 0),
                          rule_set_id=engine.rule_set_id)
    sink = LakeSink(lake)
    feed = LiveFeed(seed, rate)
    on_start(feed)
    offset = next_offset(lake)
    t0 = time.perf_counter()
    with SqliteFlagStore(flags_db) as store:
        while not stop():
            time.sleep(tick)
            now = datetime.now(UTC)
            due = feed.due(now)
            if not due.is_empty():
                records = next(json_records(iter([due]), offset))
                offset += len(records)
                result = process_batch(records, engine)
                decided = result.events_with_rules
                summary.lake_files.update(sink.write(decided, TOPIC, PARTITION,
                                                     records[0].offset, records[-1].offset))
                store.upsert(result.flagged)
                summary.events += decided.height
                summary.dead_letters += len(result.dead_letters)
                for name in summary.flags:
                    summary.flags[name] += int(decided[name].sum())
            if metrics is not None:  # the consumer's metrics file (lag 0: nothing waits)
                write_metrics(metrics, ConsumeStats(
                    events=summary.events, flags=summary.flags[FLAGGED],
                    dead_letters=summary.dead_letters, lag=0))
    summary.seconds = time.perf_counter() - t0
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    settings = Settings.from_env()
    parser = ArgumentParser(prog="python -m streaming.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=positive_count_arg, default=200_000,
                        help="events to simulate (default 200000; 2e5 style accepted)")
    parser.add_argument("--seed", type=seed_arg, default=7, help="simulator seed (default 7)")
    parser.add_argument("--users", type=positive_count_arg, default=None,
                        help=f"card holders in the simulated world (default {USERS}; not with "
                             "--follow)")
    parser.add_argument("--rate", type=float_range_arg(0.001, 1e7), default=None,
                        help="with --follow: events per wall-clock second on average "
                             f"(default {FOLLOW_RATE:g}); the cards are scaled to it so each "
                             "pays ~1.6 times a day")
    parser.add_argument("--batch", type=positive_count_arg, default=20_000,
                        help="micro-batch size, like one consumer poll (default 20000)")
    parser.add_argument("--lake", type=Path, default=settings.lake_dir,
                        help=f"lake folder (env LAKE_DIR, default {settings.lake_dir})")
    parser.add_argument("--flags-db", type=Path, default=settings.local_flags_path,
                        help="SQLite flag store (env LOCAL_FLAGS_PATH, "
                             f"default {settings.local_flags_path})")
    add_rule_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--follow", action="store_true",
                        help="run as a live feed until stopped: --rate events per wall-clock "
                             "second (default 20 here), appended to earlier runs' outputs")
    args = parser.parse_args(argv)
    rule_set = rule_set_from_args(args)
    if args.follow and args.users is not None:
        raise UsageError("--follow scales the cards to --rate (a realistic density): "
                         "leave out --users")
    if not args.follow and args.rate is not None:
        raise UsageError("--rate needs --follow (a batch run sends as fast as it can)")
    check_output_dir(args.lake, "--lake")
    check_output_file(args.flags_db, "--flags-db")
    if not settings.embedded:
        log.warning("KAFKA_BOOTSTRAP_SERVERS/MONGO_URI are set, but the demo always runs "
                    "embedded; use streaming.produce + streaming.consume for the services")
    try:
        if args.follow:
            metrics = settings.consumer_metrics_path
            stopping = threading.Event()  # Ctrl-C / SIGTERM: finish the batch in hand, then stop
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stopping.set())
            rate = FOLLOW_RATE if args.rate is None else args.rate
            summary = follow_demo(args.seed, rate, args.lake, args.flags_db, rule_set, metrics,
                                  stop=stopping.is_set, on_start=lambda feed: log.info(
                                      "following: ~%g events/s (%s cards, event time = now) "
                                      "into %s and %s (Ctrl-C stops)", rate,
                                      f"{feed.cards:,}", args.lake, args.flags_db))
        else:
            summary = run_demo(args.count, args.seed, args.users or USERS, args.batch,
                               args.lake, args.flags_db, rule_set, progress=not args.quiet)
    except Exception as exc:  # a disk failure names the file it hit (one line, exit 1)
        err = os_error(exc, args.flags_db if isinstance(exc, sqlite3.Error) else args.lake)
        if err is None or err is exc:
            raise
        raise err from exc
    for line in summary.lines(args.lake, args.flags_db):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
