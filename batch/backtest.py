"""Backtest the rules over any lake path: hit rates per rule, optional per-transaction flags.

    python -m batch.backtest --input storage/historical [--by-year] [--report [out.json]]
        [--flags-out flags.parquet] [--set high_amount.threshold=2500 ...]

``--input``: a Parquet file, a folder (searched recursively; hive ``year=/month=`` folders or
not) or a glob, holding at least the core contract columns; ``is_fraud``/``fraud_scenario`` are
optional (without them precision and recall are "n/a"). The input is decided in time chunks
(see ``batch.chunked_flags``) by one of two engines with the same decisions: by default the fast
one (``batch.fast_flags``: DuckDB scans and decides the per-row rules, NumPy the per-user ones
after one sort per chunk), or, with ``--engine sql`` or when user_id/ts may hold NULLs,
``queries/rules/flags.sql`` run by DuckDB (the SQL engine). Prints one table per rule and for
any-rule (``flagged``); ``--report`` writes the same as JSON (default path
``storage/reports/backtest.json``, which the dashboard reads). Outputs are written atomically.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from batch import chunked_flags, fast_flags
from batch.chunked_flags import FLAG_COLUMNS, plan_chunks
from batch.hitrates import HitRates, format_table, hit_rates, hit_rates_by_year, normalize_counts
from fraudlake.atomic import write_text
from fraudlake.cli import ArgumentParser, check_output_file, positive_count_arg, run
from queries.params import DEFAULT_PARAMS, RuleParams, params_from_cli
from queries.staging import connect, open_source, resolve_input

DEFAULT_REPORT = Path("storage/reports/backtest.json")
DEFAULT_CHUNK_ROWS = 4_000_000
ENGINES = ("auto", "sql")  # auto: batch.fast_flags unless user_id or ts may hold NULLs
FLAGS_SCHEMA = pa.schema([("transaction_id", pa.string()),
                          *[(c, pa.bool_()) for c in FLAG_COLUMNS[1:]]])


@dataclass(frozen=True)
class BacktestConfig:
    input: str
    params: RuleParams = DEFAULT_PARAMS
    by_year: bool = False
    report: Path | None = None
    flags_out: Path | None = None
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    threads: int | None = None
    memory_limit: str | None = None
    progress: bool = True
    engine: str = "auto"


@dataclass(frozen=True)
class BacktestResult:
    input: str
    params: RuleParams
    seconds: float
    chunks: int
    overall: HitRates
    by_year: dict[int, HitRates] | None = None
    engine: str = "fast"  # "fast" (batch.fast_flags) or "sql" (batch.chunked_flags)
    generated_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())


def run_backtest(cfg: BacktestConfig) -> BacktestResult:
    """Decide every input transaction, count hits, write the optional outputs."""
    start = time.perf_counter()
    files = resolve_input(cfg.input)
    con = connect(cfg.threads, cfg.memory_limit)
    open_source(con, files, view=None)  # all schemas checked before anything is written
    chunks = plan_chunks(con, files, cfg.chunk_rows)
    engine = "sql" if cfg.engine == "sql" or fast_flags.needs_sql_engine(con, files) else "fast"
    flag_counts = fast_flags.flag_counts if engine == "fast" else chunked_flags.flag_counts
    total = sum(c.rows for c in chunks) or None
    with _FlagsWriter(cfg.flags_out) as writer, tqdm(
        total=total, unit="rows", unit_scale=True, file=sys.stderr, disable=not cfg.progress,
        desc="backtest",
    ) as bar:
        counts = flag_counts(con, chunks, cfg.params, writer.write if cfg.flags_out else None,
                             bar.update)
    counts = normalize_counts(counts)
    result = BacktestResult(
        input=cfg.input, params=cfg.params, seconds=time.perf_counter() - start,
        chunks=len(chunks), overall=hit_rates(counts),
        by_year=hit_rates_by_year(counts) if cfg.by_year else None, engine=engine,
    )
    if cfg.report:
        write_text(cfg.report, json.dumps(report_dict(result), indent=2) + "\n")
    return result


class _FlagsWriter:
    """Streams flag batches into one Parquet file; renamed into place only on success."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}") if path else None
        self.writer: pq.ParquetWriter | None = None

    def __enter__(self) -> _FlagsWriter:
        if self.path and self.tmp:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.tmp, FLAGS_SCHEMA)
        return self

    def write(self, batch: pa.RecordBatch) -> None:
        assert self.writer is not None
        self.writer.write_batch(batch.cast(FLAGS_SCHEMA))

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.writer is None:
            return
        self.writer.close()
        if exc_type is None and self.path and self.tmp:
            os.replace(self.tmp, self.path)
        elif self.tmp:
            self.tmp.unlink(missing_ok=True)


def report_dict(result: BacktestResult) -> dict:
    """The JSON report (shape shared with the dashboard)."""
    out: dict = {
        "input": result.input,
        "rows": result.overall.rows,
        "fraud_rows": result.overall.fraud_rows,
        "params": result.params.as_dict(),
        "generated_at": result.generated_at,
        "seconds": round(result.seconds, 3),
        "rules": result.overall.rules_dict(),
    }
    if result.by_year is not None:
        out["by_year"] = {str(y): {"rows": r.rows, "rules": r.rules_dict()}
                          for y, r in result.by_year.items()}
    return out


def format_result(result: BacktestResult) -> str:
    parts = [format_table(result.overall, f"{result.input}: ")]
    for year, rates in (result.by_year or {}).items():
        parts.append(format_table(rates, f"{year}: "))
    parts.append(f"{result.overall.rows:,} rows in {result.seconds:.1f} s "
                 f"({result.chunks} chunk{'s' if result.chunks != 1 else ''}, "
                 f"{result.engine} engine)")
    return "\n\n".join(parts)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m batch.backtest", description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True,
                   help="Parquet file, folder (recursive, hive or not) or glob")
    p.add_argument("--set", action="append", default=[], metavar="RULE.PARAM=VALUE",
                   help="override a rule parameter for a what-if run (repeatable), "
                        "e.g. high_amount.threshold=2500")
    p.add_argument("--by-year", action="store_true", help="add a breakdown per UTC year")
    p.add_argument("--report", nargs="?", const=str(DEFAULT_REPORT), metavar="PATH",
                   help=f"write the report as JSON (no PATH: {DEFAULT_REPORT})")
    p.add_argument("--flags-out", metavar="PATH",
                   help="write one row per transaction: transaction_id + rule booleans + flagged")
    p.add_argument("--chunk-rows", type=positive_count_arg, default=DEFAULT_CHUNK_ROWS,
                   help="target rows per time chunk, e.g. 4e6 (default %(default)s); more rows "
                        "= more memory, fewer chunks")
    p.add_argument("--threads", type=positive_count_arg, default=None,
                   help="DuckDB threads (default: all cores)")
    p.add_argument("--memory-limit", default=None, help="DuckDB memory_limit, e.g. 2GiB")
    p.add_argument("--engine", choices=ENGINES, default="auto",
                   help="auto (default): the fast engine (DuckDB scan + NumPy window rules, "
                        "batch.fast_flags), or the SQL engine when user_id/ts may hold NULLs; "
                        "sql: always queries/rules/flags.sql in DuckDB (batch.chunked_flags)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def config_from_args(argv: Sequence[str] | None) -> BacktestConfig:
    args = build_parser().parse_args(argv)
    params = params_from_cli(args.set)
    if args.report:
        check_output_file(args.report, "--report")
    if args.flags_out:
        check_output_file(args.flags_out, "--flags-out")
    return BacktestConfig(
        input=args.input, params=params, by_year=args.by_year,
        report=Path(args.report) if args.report else None,
        flags_out=Path(args.flags_out) if args.flags_out else None,
        chunk_rows=args.chunk_rows, threads=args.threads, memory_limit=args.memory_limit,
        progress=not args.quiet, engine=args.engine,
    )


def _main(argv: Sequence[str] | None) -> int:
    result = run_backtest(config_from_args(argv))
    print(format_result(result))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
