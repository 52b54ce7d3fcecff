"""Backtest a rule set over any lake path: hit rates per rule, optional per-transaction flags.

    python -m batch.backtest --input storage/historical [--rules rules/example.toml]
        [--set high_amount.threshold=2500 ...] [--by-year] [--report [out.json]]
        [--flags-out flags.parquet]

``--input``: a Parquet file, a folder (searched recursively; hive ``year=/month=`` folders or
not) or a glob, holding at least the core contract columns; ``is_fraud``/``fraud_scenario`` are
optional (without them precision and recall are "n/a"). The input is decided in time chunks
(see ``batch.chunked_flags``) by one of two engines with the same decisions and the same call
(``flag_counts(con, chunks, rule_set, sink, progress)``): by default the fast one
(``batch.fast_flags``), or, with ``--engine sql`` (or when the fast engine cannot decide the
set or the input), the rule set's composed SQL run by DuckDB (the SQL engine). ``--rules``
names the rule set (default: the packaged ``rules/default.toml``), ``--set`` overrides a
parameter, weight or the alert threshold. Prints one table per rule id and for ``flagged``, and
the rule-set id; ``--report`` writes the same as JSON (default path
``storage/reports/backtest.json``, which the dashboard reads); ``--flags-out`` writes
transaction_id, one bool per rule id, score and flagged, with the rule-set id in the Parquet
key-value metadata ``fraudlake.rule_set_id``. Outputs are written atomically.
"""

from __future__ import annotations

import inspect
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
from batch.chunked_flags import flags_schema, plan_chunks
from batch.density import Density, density
from batch.hitrates import (
    CountsError,
    HitRates,
    check_rule_ids,
    format_table,
    hit_rates,
    hit_rates_by_year,
    normalize_counts,
)
from batch.malloc_tuning import reuse_freed_memory
from fraudlake.atomic import naming, write_text
from fraudlake.cli import (
    ArgumentParser,
    UsageError,
    check_disjoint,
    check_output_file,
    float_range_arg,
    positive_count_arg,
    run,
)
from lake.trino import TrinoTarget, add_backend_args, target_from_args
from queries.compose import RULE_SET_METADATA
from queries.staging import connect, open_source, resolve_input
from rules.arguments import add_rule_arguments, rule_set_from_args
from rules.model import RuleSet, load_rule_set, rule_set_from_cli

DEFAULT_REPORT = Path("storage/reports/backtest.json")
DEFAULT_CHUNK_ROWS = 2_000_000  # a chunk column < 32 MiB: batch.malloc_tuning reuses it
ENGINES = ("auto", "sql")  # auto: batch.fast_flags when it can decide the set and the input


@dataclass(frozen=True)
class BacktestConfig:
    input: str
    rule_set: RuleSet = field(default_factory=lambda: load_rule_set(None))
    by_year: bool = False
    report: Path | None = None
    flags_out: Path | None = None
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    threads: int | None = None
    memory_limit: str | None = None
    progress: bool = True
    engine: str = "auto"
    backend: str = "duckdb"  # or "trino": batch.trino_backtest
    trino: TrinoTarget | None = None


@dataclass(frozen=True)
class BacktestResult:
    input: str
    rule_set: RuleSet
    seconds: float
    chunks: int
    overall: HitRates
    by_year: dict[int, HitRates] | None = None
    engine: str = "fast"  # "fast" (batch.fast_flags) or "sql" (batch.chunked_flags)
    density: Density | None = None  # transactions per active card per day of the input
    generated_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())


def run_backtest(cfg: BacktestConfig) -> BacktestResult:
    """Decide every input transaction, count hits, write the optional outputs."""
    if cfg.backend == "trino":
        from batch import trino_backtest

        return trino_backtest.run_backtest(cfg)
    start = time.perf_counter()
    files = resolve_input(cfg.input)
    con = connect(cfg.threads, cfg.memory_limit)
    open_source(con, files, view=None)  # all schemas checked before anything is written
    chunks = plan_chunks(con, files, cfg.chunk_rows)
    engine = choose_engine(cfg, con, files)
    if engine == "fast":
        reuse_freed_memory()  # chunk-sized arrays: reused, not re-faulted (batch.malloc_tuning)
    flag_counts = _fast_flag_counts(cfg.rule_set) if engine == "fast" \
        else chunked_flags.flag_counts
    total = sum(c.rows for c in chunks) or None
    with _FlagsWriter(cfg.flags_out, cfg.rule_set) as writer, tqdm(
        total=total, unit="rows", unit_scale=True, file=sys.stderr,
        disable=None if cfg.progress else True,
        desc="backtest",
    ) as bar:
        counts = flag_counts(con, chunks, cfg.rule_set, writer.write if cfg.flags_out else None,
                             bar.update)
    counts = normalize_counts(counts, cfg.rule_set.rule_ids)
    result = BacktestResult(
        input=cfg.input, rule_set=cfg.rule_set, seconds=time.perf_counter() - start,
        chunks=len(chunks), overall=hit_rates(counts),
        by_year=hit_rates_by_year(counts) if cfg.by_year else None, engine=engine,
        density=density(con),
    )
    if cfg.report:
        write_text(cfg.report, json.dumps(report_dict(result), indent=2) + "\n")
    return result


def choose_engine(cfg: BacktestConfig, con, files) -> str:
    """``sql`` when asked for, or when the fast engine cannot decide this set or input."""
    fast = _fast_flag_counts(cfg.rule_set)
    if cfg.engine == "sql" or fast is None or fast_flags.needs_sql_engine(con, files):
        return "sql"
    if fast is not fast_flags.flag_counts:  # transitional v1 engine: no NULL core values
        from batch import v1_fast

        return "fast" if v1_fast.null_free(con, files) else "sql"
    return "fast"


def _fast_flag_counts(rule_set: RuleSet):
    """The fast engine's ``flag_counts`` for ``rule_set``, or None when it cannot decide it.

    Transitional: until the rule-set fast engine (issue-13vec) is merged, ``batch.fast_flags``
    takes v1 parameters and decides only the default-shaped set (``batch.v1_fast``)."""
    if "rule_set" in inspect.signature(fast_flags.flag_counts).parameters:
        return fast_flags.flag_counts
    from batch import v1_fast

    return v1_fast.flag_counts if v1_fast.supports(rule_set) else None


class _FlagsWriter:
    """Streams flag batches into one Parquet file; renamed into place only on success."""

    def __init__(self, path: Path | None, rule_set: RuleSet) -> None:
        self.schema = flags_schema(rule_set).with_metadata({RULE_SET_METADATA: rule_set.id})
        self.path = path
        self.tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}") if path else None
        self.writer: pq.ParquetWriter | None = None

    def __enter__(self) -> _FlagsWriter:
        if self.path and self.tmp:
            try:
                with naming(self.path):
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self.writer = pq.ParquetWriter(self.tmp, self.schema)
            except BaseException:
                self.tmp.unlink(missing_ok=True)
                raise
        return self

    def write(self, batch: pa.RecordBatch) -> None:
        assert self.writer is not None and self.path is not None
        with naming(self.path):
            self.writer.write_batch(batch.cast(self.schema))

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.writer is None or self.path is None or self.tmp is None:
            return
        try:
            with naming(self.path):
                self.writer.close()
                if exc_type is None:
                    os.replace(self.tmp, self.path)
        finally:
            self.tmp.unlink(missing_ok=True)


def report_dict(result: BacktestResult) -> dict:
    """The JSON report (shape shared with the dashboard)."""
    out: dict = {
        "input": result.input,
        "rows": result.overall.rows,
        "fraud_rows": result.overall.fraud_rows,
        "rule_set_id": result.rule_set.id,
        "rule_set_source": result.rule_set.source,
        "rule_set": result.rule_set.to_dict(),
        "generated_at": result.generated_at,
        "seconds": round(result.seconds, 3),
        "rules": result.overall.rules_dict(),
    }
    if result.density is not None:
        out["density"] = result.density.as_dict()
    if result.by_year is not None:
        out["by_year"] = {str(y): {"rows": r.rows, "rules": r.rules_dict()}
                          for y, r in result.by_year.items()}
    return out


def format_result(result: BacktestResult) -> str:
    parts = [format_table(result.overall, f"{result.input}: ")]
    if result.density is not None:
        parts.append(result.density.line())
    for year, rates in (result.by_year or {}).items():
        parts.append(format_table(rates, f"{year}: "))
    parts.append(f"rule set {result.rule_set.id} ({result.rule_set.source}): "
                 f"{result.overall.rows:,} rows in {result.seconds:.1f} s "
                 f"({result.chunks} chunk{'s' if result.chunks != 1 else ''}, "
                 f"{result.engine} engine)")
    return "\n\n".join(parts)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m batch.backtest", description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True,
                   help="Parquet file, folder (recursive, hive or not) or glob")
    add_rule_arguments(p)
    p.add_argument("--by-year", action="store_true", help="add a breakdown per UTC year")
    p.add_argument("--report", nargs="?", const=str(DEFAULT_REPORT), metavar="PATH",
                   help=f"write the report as JSON (no PATH: {DEFAULT_REPORT})")
    p.add_argument("--flags-out", metavar="PATH",
                   help="write one row per transaction: transaction_id, one boolean per rule id, "
                        "score, flagged (Parquet; metadata fraudlake.rule_set_id)")
    p.add_argument("--chunk-rows", type=positive_count_arg, default=DEFAULT_CHUNK_ROWS,
                   help="target rows per time chunk, e.g. 4e6 (default %(default)s); more rows "
                        "= more memory, fewer chunks")
    p.add_argument("--threads", type=positive_count_arg, default=None,
                   help="DuckDB threads (default: all cores)")
    p.add_argument("--memory-limit", default=None, help="DuckDB memory_limit, e.g. 2GiB")
    p.add_argument("--engine", choices=ENGINES, default="auto",
                   help="auto (default): the fast engine (batch.fast_flags) when it can decide "
                        "the rule set and the input, else SQL; sql: always the rule set's "
                        "composed SQL in DuckDB (batch.chunked_flags)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_backend_args(p)
    w = p.add_argument_group("what-if (one pass of the fast engine over every variant)")
    w.add_argument("--compare", metavar="B.toml",
                   help="A/B diff: decide this rule set beside --rules (A) and report alerts "
                        "gained and lost per rule, year and scenario, with a sample of flips")
    w.add_argument("--sweep", action="append", default=[], metavar="RULE_ID.PARAM=START:STOP:STEP",
                   help="sweep one parameter (give twice for a grid); STOP included")
    w.add_argument("--alert-budget", type=float_range_arg(0, 1e9, low_open=True),
                   metavar="N", help="with --sweep: mark the best point within N alerts per day")
    w.add_argument("--plot", metavar="PNG",
                   help="with --sweep: write the precision-recall / alerts-per-day plot here")
    w.add_argument("--value", action="store_true",
                   help="rule value: recall/precision of the set without each rule, overlap")
    w.add_argument("--speed", action="store_true",
                   help="detection speed per fraud scenario (per incident)")
    w.add_argument("--drift", action="store_true",
                   help="flag rate, precision and recall per rule and month")
    return p


def config_from_args(argv: Sequence[str] | None) -> BacktestConfig:
    args = build_parser().parse_args(argv)
    rule_set = rule_set_from_args(args)
    try:
        check_rule_ids(rule_set.rule_ids)
    except CountsError as exc:
        raise UsageError(f"{rule_set.source}: {exc}") from None
    for path, flag in ((args.report, "--report"), (args.flags_out, "--flags-out")):
        if path:
            check_output_file(path, flag)
            check_disjoint(path, _inputs(args), flag)
    return BacktestConfig(
        input=args.input, rule_set=rule_set, by_year=args.by_year,
        report=Path(args.report) if args.report else None,
        flags_out=Path(args.flags_out) if args.flags_out else None,
        chunk_rows=args.chunk_rows, threads=args.threads, memory_limit=args.memory_limit,
        progress=not args.quiet, engine=args.engine,
        backend=args.backend, trino=target_from_args(args),
    )


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.compare or args.sweep or args.value or args.speed or args.drift:
        return _whatif(args)
    if args.alert_budget is not None or args.plot:
        raise UsageError("--alert-budget and --plot need --sweep")
    result = run_backtest(config_from_args(argv))
    print(format_result(result))
    return 0


def _inputs(args) -> list[str]:
    """What the run reads: an output may not be (or contain, or lie inside) any of these."""
    return [p for p in (args.input, args.rules, args.compare) if p]


def _whatif(args) -> int:
    """The what-if path (batch.whatif_run): the fast engine only."""
    from batch.whatif_run import WhatIfConfig, format_whatif, plot_sweep, run_whatif
    from batch.whatif_sweep import parse_sweep
    from rules.model import RuleSetError

    if args.engine == "sql" or args.backend != "duckdb":
        raise UsageError("--compare/--sweep/--value/--speed/--drift run on the fast engine; "
                         "drop --engine sql / --backend trino")
    if args.flags_out:
        raise UsageError("--flags-out is not available with what-if options")
    rule_set = rule_set_from_args(args)
    compare = rule_set_from_cli(args.compare, args.set) if args.compare else None
    try:
        sweeps = tuple(parse_sweep(s, rule_set) for s in args.sweep)
        if not 0 <= len(sweeps) <= 2:
            raise RuleSetError("--sweep: give one or two parameters")
    except RuleSetError as exc:
        raise UsageError(str(exc)) from None
    if (args.alert_budget is not None or args.plot) and not sweeps:
        raise UsageError("--alert-budget and --plot need --sweep")
    for path, flag in ((args.report, "--report"), (args.plot, "--plot")):
        if path:
            check_output_file(path, flag)
            check_disjoint(path, _inputs(args), flag)
    cfg = WhatIfConfig(input=args.input, rule_set=rule_set, compare=compare, sweeps=sweeps,
                       alert_budget=args.alert_budget, value=args.value, speed=args.speed,
                       drift=args.drift, by_year=args.by_year, chunk_rows=args.chunk_rows,
                       threads=args.threads, memory_limit=args.memory_limit,
                       progress=not args.quiet)
    try:
        report = run_whatif(cfg)
    except RuleSetError as exc:
        raise UsageError(str(exc)) from None
    if args.report:
        write_text(Path(args.report), json.dumps(report, indent=2, default=str) + "\n")
    if args.plot:
        plot_sweep(report, Path(args.plot))
    print(format_whatif(report))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
