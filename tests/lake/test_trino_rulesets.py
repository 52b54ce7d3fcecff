"""Every rule kind of the rule sets (v2) on the real Trino decides exactly as DuckDB does.

- the hand-built boundary cases of ``tests/queries/test_kind_boundaries.py`` (every kind's
  edges: thresholds, window edges and ties, even-count and half-cent medians, the lookback
  edge, NULL/empty devices, quoted list values, NULL scope, exact scores, NULL core rows),
  replayed on Trino under a non-UTC session zone;
- random rule sets (all kinds, scopes, weights) over dense random event streams (ties, NULL
  core columns, quoted list values): every rule column, the score and flagged.
"""

from __future__ import annotations

import inspect
import uuid

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings

import tests.queries._ruleset_data as _ruleset_data
import tests.queries.test_kind_boundaries as test_kind_boundaries
from fraudlake import services
from lake import trino
from queries import sql
from queries.compose import compose_flags
from queries.staging import connect, open_source, resolve_input
from queries.trino_sql import to_trino
from rules.model import RuleSet, load_rule_set
from tests.lake._trinodata import lake_folder
from tests.queries._ruleset_data import event_streams, frame, rule_sets

SCHEMA = f"pytest_rs_{uuid.uuid4().hex[:8]}"
_DRAW = settings(max_examples=12, deadline=None, database=None,
                 suppress_health_check=list(HealthCheck))
_CASE = "starts_with(transaction_id, $fl_case)"


def _draw(strategy, n: int) -> list:
    out: list = []

    @settings(_DRAW, max_examples=n)
    @given(value=strategy)
    def collect(value):
        out.append(value)

    collect()
    return out


def _target(uri: str, zone: str | None = None) -> trino.TrinoTarget:
    return trino.TrinoTarget(uri=uri, schema=SCHEMA, timezone=zone)


@pytest.fixture(scope="module")
def folder(trino_uri):
    """A fresh folder below the server's lake root; this module's schema dropped at the end."""
    yield from lake_folder(services.trino_root())
    trino.execute(_target(trino_uri).connect(), f"DROP SCHEMA IF EXISTS hive.{SCHEMA} CASCADE")


def on_trino(con, table: str, rule_set: RuleSet, case: str | None = None) -> pl.DataFrame:
    """The rule set's flags (columns by rule id) decided by Trino, over the rows of ``table``
    whose transaction_id starts with ``case`` (all rows when None), sorted by id."""
    rendered = to_trino(sql.named_flags_tree(rule_set), table, where=_CASE if case else None)
    bound = {**compose_flags(rule_set).params, **({"fl_case": case} if case else {})}
    got = pl.from_arrow(trino.run_rendered(con, rendered, bound))
    assert isinstance(got, pl.DataFrame)
    return got.select("transaction_id", *rule_set.rule_ids, "score", "flagged") \
        .sort("transaction_id")


def boundary_cases(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[dict], RuleSet]]:
    """(events, rule set) of every call the boundary tests make, recorded by running them."""
    calls: list[tuple[list[dict], RuleSet]] = []
    run = _ruleset_data.run_rule_set

    def record(events: list[dict], rule_set: RuleSet) -> pl.DataFrame:
        calls.append((events, rule_set))
        return run(events, rule_set)

    monkeypatch.setattr(test_kind_boundaries, "run_rule_set", record)
    for name, fn in inspect.getmembers(test_kind_boundaries, inspect.isfunction):
        if not name.startswith("test_"):
            continue
        marks = [m for m in getattr(fn, "pytestmark", []) if m.name == "parametrize"]
        if not marks:
            fn()
            continue
        argnames = [a.strip() for a in marks[0].args[0].split(",")]
        for values in marks[0].args[1]:
            fn(**dict(zip(argnames, values, strict=True)))
    return calls


def test_kind_boundary_cases_equal_duckdb(trino_uri, folder, monkeypatch):
    cases = boundary_cases(monkeypatch)
    kinds = {r.kind for _, rs in cases for r in rs.rules}
    assert kinds == set(_ruleset_data.KIND_PARAMS), kinds  # every kind has its edges here
    rows = [{**e, "transaction_id": f"c{k:03d}:{e['transaction_id']}"}
            for k, (events, _) in enumerate(cases) for e in events]
    (folder / "edges").mkdir()
    frame(rows).write_parquet(folder / "edges" / "part-0.parquet")
    con, table = trino.open_input(_target(trino_uri, "America/New_York"),
                                  str(folder / "edges"))
    fired = 0
    for k, (events, rule_set) in enumerate(cases):
        prefix = f"c{k:03d}:"
        want = _ruleset_data.run_rule_set(
            [{**e, "transaction_id": prefix + e["transaction_id"]} for e in events], rule_set)
        got = on_trino(con, table, rule_set, prefix)
        assert got.equals(want), (k, rule_set.canonical_json(), got, want)
        fired += int(want["flagged"].sum())
    assert len(cases) >= 15 and fired >= 20


@pytest.fixture(scope="module")
def streams(trino_uri, folder):
    """12 random streams with disjoint users, one unpartitioned table below the lake root."""
    rows = []
    for k, events in enumerate(_draw(event_streams(), 12)):
        for e in events:
            e = {**e, "transaction_id": f"s{k}-{e['transaction_id']}"}
            if e["user_id"] is not None:
                e["user_id"] += 1000 * k
            rows.append(e)
    (folder / "streams").mkdir()
    frame(rows).write_parquet(folder / "streams" / "part-0.parquet")
    con, table = trino.open_input(_target(trino_uri), str(folder / "streams"))
    duck = connect()
    open_source(duck, resolve_input(str(folder / "streams")))
    return con, table, duck


def test_random_rule_sets_of_every_kind_equal_duckdb(streams):
    con, table, duck = streams
    sets = _draw(rule_sets(), 10)
    while len({r.kind for rs in sets for r in rs.rules}) < 6 and len(sets) < 30:
        sets += _draw(rule_sets(), 5)  # random draws, but always a broad mix of kinds
    kinds = set()
    for rs in sets:
        kinds |= {r.kind for r in rs.rules}
        got = on_trino(con, table, rs)
        want = pl.from_arrow(sql.execute(duck, "flags", rs)).sort("transaction_id")
        for col in (*rs.rule_ids, "score", "flagged"):
            assert got[col].to_list() == want[col].to_list(), (col, rs.canonical_json())
    assert len(kinds) >= 6, kinds


@pytest.mark.parametrize("rules", ["rules/default.toml", "rules/example.toml"])
def test_the_athena_rendering_runs_on_trino_and_equals_duckdb(streams, rules):
    """What ``python -m queries flags --dialect athena`` / ``lake.athena`` print, executed
    with the listed values in order."""
    con, table, duck = streams
    rs = load_rule_set(rules)
    text, order = sql.render_athena("rules/flags", table=table, rule_set=rs)
    values = sql.render_values("rules/flags", rs)
    got = pl.from_arrow(trino.execute(con, text, [values[n] for n in order]))
    want = pl.from_arrow(sql.execute(duck, "flags", rs))
    assert isinstance(got, pl.DataFrame) and isinstance(want, pl.DataFrame)
    cols = ["transaction_id", *rs.rule_ids, "score", "flagged"]
    assert got.select(cols).sort("transaction_id").equals(want.select(cols).sort("transaction_id"))
