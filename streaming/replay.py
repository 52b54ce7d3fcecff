"""Replay Parquet events through the streaming rule engine, in-process, and write its flags.

``python -m streaming.replay --input PATH --flags-out FILE [--rules TOML] [--set ID.PARAM=V …]``
``python -m streaming.replay --from-kafka TOPIC --flags-out FILE [--rules-topic T] [--rules TOML]``

PATH is a Parquet file, a folder (searched recursively, e.g. a hive lake) or a glob; it needs
the core columns and those the rule set reads (channel, category, device_id, a list field;
any row order, any extra columns). Events are sorted globally by ``(ts, transaction_id)`` and
fed to the SAME ``RuleEngine`` as the live consumer in micro-batches, so the output shows what
the stream would have flagged. FILE (``.parquet`` or ``.csv``) gets ``transaction_id``, one
Boolean column per rule id (file order), ``score`` and ``flagged``, written atomically; a
Parquet file carries the rule-set id in its key-value metadata ``fraudlake.rule_set_id``. Bad
input or a bad rule file: one line on stderr, exit 2, nothing written.

``--from-kafka TOPIC`` replays the topic's offsets instead (every partition, start to the end
as it is now) WITH the rule control log (``--rules-topic``, env KAFKA_RULES_TOPIC, default
``rules.control``; see ``streaming.replay_control``): each offset is decided by the set that
decided it live, rule-set id and shadow columns included; offsets no switch covers by
``--rules``. FILE then gets ``transaction_id, _partition, _offset, rule_set_id, score,
flagged, rules_fired`` and the ``shadow_*`` columns (in CSV, rule lists comma-joined).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import BinaryIO

import polars as pl
import pyarrow.parquet as pq
from tqdm import tqdm

from fraudlake.atomic import naming, temp_path
from fraudlake.cli import (
    ArgumentParser,
    UsageError,
    check_disjoint,
    check_output_file,
    positive_count_arg,
    run,
)
from fraudlake.contract import EVENT_SCHEMA, FLAGGED, REQUIRED_COLUMNS, ContractError, conform
from fraudlake.settings import Settings
from lake.layout import resolve_files
from rules.arguments import add_rule_arguments, rule_set_from_args
from rules.model import RuleSet
from streaming.engine import RuleEngine

log = logging.getLogger(__name__)

INPUT_COLUMNS = REQUIRED_COLUMNS
RULE_SET_KEY = "fraudlake.rule_set_id"


def output_columns(rule_set: RuleSet) -> tuple[str, ...]:
    """``--flags-out`` columns: transaction_id, one per rule id, score, flagged."""
    return ("transaction_id", *rule_set.rule_ids, "score", FLAGGED)


def output_schema(rule_set: RuleSet) -> dict[str, pl.DataType]:
    return {"transaction_id": pl.String(), **{r: pl.Boolean() for r in rule_set.rule_ids},
            "score": pl.Float64(), FLAGGED: pl.Boolean()}


def scan_events(files: list[Path], columns: Sequence[str] = INPUT_COLUMNS) -> pl.LazyFrame:
    """The core columns (and ``columns``) of every file, contract-typed (lazy); UsageError if a
    core column is not there (an optional one that is absent reads as nulls)."""
    try:
        lazy = pl.scan_parquet(files, hive_partitioning=False, missing_columns="insert",
                               extra_columns="ignore")
        schema = lazy.collect_schema()
        wanted = dict.fromkeys([*INPUT_COLUMNS, *columns])
        return conform(lazy.select(
            [pl.col(c) if c in schema else pl.lit(None, EVENT_SCHEMA[c]).alias(c)
             for c in wanted if c in schema or c not in INPUT_COLUMNS]))
    except ContractError as exc:
        raise UsageError(f"--input: {exc}") from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise UsageError(f"--input: cannot read Parquet: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def month_slices(lazy: pl.LazyFrame) -> Iterator[pl.DataFrame]:
    """The events one UTC calendar month at a time, each sorted by (ts, transaction_id).

    Months partition time, so their concatenation is globally sorted while only one month is
    in memory (Parquet statistics let each month's filter skip the other files' row groups).
    """
    try:
        bounds = lazy.select(pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi"),
                             pl.len().alias("n"), *[pl.col(c).null_count().alias(c)
                                                    for c in INPUT_COLUMNS]).collect()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise UsageError(f"--input: cannot read Parquet: {_first_line(exc)}") from None
    nulls = [c for c in INPUT_COLUMNS if bounds[c].item()]
    if nulls:
        raise UsageError(f"--input: null values in core column(s): {', '.join(nulls)}")
    if not bounds["n"].item():
        return
    try:  # only the months that hold events: a year-1 and a year-9999 event are two months
        present = (lazy.select(pl.col("ts").dt.year().alias("y"), pl.col("ts").dt.month()
                               .alias("m")).unique().sort("y", "m").collect().rows())
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise UsageError(f"--input: cannot read Parquet: {_first_line(exc)}") from None
    for year, month in present:
        start = datetime(year, month, 1, tzinfo=UTC)
        in_month = pl.col("ts") >= start
        if (year, month) < (9999, 12):
            nxt = (year + month // 12, month % 12 + 1)
            in_month &= pl.col("ts") < datetime(*nxt, 1, tzinfo=UTC)
        try:
            month_events = lazy.filter(in_month).sort("ts", "transaction_id").collect()
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise UsageError(f"--input: cannot read Parquet: {_first_line(exc)}") from None
        yield month_events


def replay_batches(months: Iterable[pl.DataFrame], rule_set: RuleSet | None = None,
                   batch_rows: int = 200_000) -> Iterator[pl.DataFrame]:
    """Feed ts-sorted events through one fresh engine; yield the ``--flags-out`` columns."""
    engine = RuleEngine(rule_set)
    columns = output_columns(engine.rule_set)
    for events in months:
        for start in range(0, events.height, batch_rows):
            yield engine.process(events.slice(start, batch_rows)).select(columns)



class FlagsWriter:
    """Streams replay output to a temp file beside ``out``; ``commit`` renames it into place."""

    def __init__(self, out: Path, rule_set: RuleSet) -> None:
        self.out = out
        self.rule_set = rule_set
        self.tmp = temp_path(out)
        self.counts = dict.fromkeys((*rule_set.rule_ids, FLAGGED), 0)
        self.rows = 0
        self._pq: pq.ParquetWriter | None = None
        self._csv: BinaryIO | None = None

    def write(self, part: pl.DataFrame) -> None:
        with naming(self.out):
            self._write(part)

    def _write(self, part: pl.DataFrame) -> None:
        self.rows += part.height
        for c in self.counts:
            self.counts[c] += int(part[c].sum())
        if self.out.suffix == ".parquet":
            table = part.to_arrow()
            if self._pq is None:
                schema = table.schema.with_metadata({RULE_SET_KEY: self.rule_set.id})
                self._pq = pq.ParquetWriter(self.tmp, schema)
            self._pq.write_table(table.replace_schema_metadata(
                {RULE_SET_KEY: self.rule_set.id}))
        else:
            first = self._csv is None
            if first:
                self._csv = open(self.tmp, "wb")  # closed in commit/abort
            part.write_csv(self._csv, include_header=first)

    def commit(self) -> None:
        if self.rows == 0:
            self.write(pl.DataFrame(schema=output_schema(self.rule_set)))
        with naming(self.out):
            self._close()
            with open(self.tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(self.tmp, self.out)

    def abort(self) -> None:
        try:
            self._close()
        except Exception:  # noqa: BLE001 - the first error is the one reported
            pass
        self.tmp.unlink(missing_ok=True)

    def _close(self) -> None:
        pq_writer, csv, self._pq, self._csv = self._pq, self._csv, None, None
        try:
            if pq_writer is not None:
                pq_writer.close()
        finally:
            if csv is not None:
                csv.close()


def replay_from_kafka(args, rule_set: RuleSet) -> int:
    """``--from-kafka``: the topic's offsets with the control log → ``--flags-out``."""
    from fraudlake.cli import EnvironmentFailure
    from streaming import replay_control
    from streaming.rules_control import read_control

    if not args.bootstrap:
        raise UsageError("--from-kafka: no Kafka: pass --bootstrap or set KAFKA_BOOTSTRAP_SERVERS")
    t0 = time.perf_counter()
    extra = {**Settings.from_env().kafka_extra, "log_level": "0"}
    try:
        state = read_control(args.bootstrap, args.rules_topic, extra)
        records = replay_control.read_topic_records(args.bootstrap, args.from_kafka, extra)
    except LookupError as exc:
        raise UsageError(f"--from-kafka: {exc}") from None
    except Exception as exc:  # librdkafka / broker errors: the environment failed
        raise EnvironmentFailure(f"cannot read Kafka at {args.bootstrap}: {exc}") from None
    out = replay_control.replay_topic(args.from_kafka, records, state, rule_set,
                                      args.batch_rows)
    write_decisions(out, args.flags_out)
    ids = out["rule_set_id"].value_counts().sort("rule_set_id").rows()
    log.info("replayed %s events of %s in %.1f s with the control log of %s: %s; flagged=%d → %s",
             f"{out.height:,}", args.from_kafka, time.perf_counter() - t0, args.rules_topic,
             ", ".join(f"{i}={n}" for i, n in ids) or "no events", int(out["flagged"].sum()),
             args.flags_out)
    return 0


def write_decisions(out: pl.DataFrame, path: Path) -> None:
    """Atomically write a decision frame (CSV: list columns comma-joined)."""
    from fraudlake.atomic import replacing

    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        if path.suffix == ".parquet":
            out.write_parquet(tmp)
        else:
            out.with_columns(pl.col(c).list.join(",") for c, t in out.schema.items()
                             if isinstance(t, pl.List)).write_csv(tmp)


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m streaming.replay", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input",
                        help="Parquet file, folder (recursive) or glob with the core columns")
    source.add_argument("--from-kafka", metavar="TOPIC",
                        help="replay this Kafka topic's offsets with the rule control log")
    settings = Settings.from_env()
    parser.add_argument("--bootstrap", default=settings.kafka_bootstrap_servers,
                        help="Kafka bootstrap servers for --from-kafka "
                             "(env KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--rules-topic",
                        default=settings.rules_topic,
                        help="the rule control topic read with --from-kafka (env "
                             "KAFKA_RULES_TOPIC; default rules.control; absent = --rules only)")
    parser.add_argument("--flags-out", type=Path, required=True,
                        help="output file, .parquet or .csv: transaction_id + rule columns")
    add_rule_arguments(parser)
    parser.add_argument("--batch-rows", type=positive_count_arg, default=200_000,
                        help="micro-batch size fed to the engine (default 200000)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.flags_out.suffix not in (".parquet", ".csv"):
        raise UsageError(f"--flags-out {args.flags_out}: must end in .parquet or .csv")
    check_output_file(args.flags_out, "--flags-out")
    check_disjoint(args.flags_out, [p for p in (args.input, args.rules) if p], "--flags-out")
    rule_set = rule_set_from_args(args)
    if args.from_kafka:
        return replay_from_kafka(args, rule_set)
    t0 = time.perf_counter()
    engine_columns = RuleEngine(rule_set).state_columns
    lazy = scan_events(resolve_files(args.input), engine_columns)
    writer = None
    try:
        months = month_slices(lazy)
        first = next(months, None)  # reads and checks the input before creating any file
        args.flags_out.parent.mkdir(parents=True, exist_ok=True)
        writer = FlagsWriter(args.flags_out, rule_set)
        with tqdm(unit="ev", disable=True if args.quiet else None, file=sys.stderr) as bar:
            for part in replay_batches(
                    chain([first], months) if first is not None else [], rule_set, args.batch_rows):
                writer.write(part)
                bar.update(part.height)
        writer.commit()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    counts = ", ".join(f"{c}={n}" for c, n in writer.counts.items())
    log.info("replayed %s events in %.1f s with rule set %s: %s → %s", f"{writer.rows:,}",
             time.perf_counter() - t0, rule_set.id, counts, args.flags_out)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
