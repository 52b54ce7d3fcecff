"""Helpers for rule tests: build contract events by hand and run a named query over them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import polars as pl

from fraudlake.contract import CORE_SCHEMA
from queries import sql
from queries.staging import check_schema, connect, staging_sql
from rules.model import RuleSet, load_rule_set

#: rules/default.toml: the four v1 rules
DEFAULT = load_rule_set(None)

T0 = datetime(2024, 3, 10, 12, 0, 0, tzinfo=UTC)


def event(tid: str, user: int = 1, ts: datetime = T0, amount: str = "10.00", lat: float = 0.0,
          lon: float = 0.0, offset: int = 0, seconds: float = 0.0, **labels) -> dict:
    """One contract event; ``seconds`` shifts ``ts``."""
    return {"transaction_id": tid, "user_id": user, "ts": ts + timedelta(seconds=seconds),
            "amount": Decimal(amount), "lat": lat, "lon": lon, "utc_offset_min": offset,
            "is_fraud": labels.get("is_fraud"), "fraud_scenario": labels.get("fraud_scenario")}


def frame(events: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(events, schema=CORE_SCHEMA)


def open_frame(con, frame: pl.DataFrame) -> None:
    """Register an in-memory frame as ``source`` and its staged view ``transactions``."""
    check_schema(frame.schema)
    con.register("source", frame.to_arrow())
    con.execute(f"CREATE OR REPLACE TEMP VIEW transactions AS {staging_sql(frame.columns)}")


def run_sql(events: list[dict] | pl.DataFrame, params: RuleSet = DEFAULT,
            name: str = "flags", extra: dict[str, str] | None = None) -> pl.DataFrame:
    """The named query's result over ``events``, sorted by transaction_id when present."""
    con = connect()
    open_frame(con, events if isinstance(events, pl.DataFrame) else frame(events))
    out = pl.from_arrow(sql.execute(con, name, params, extra))
    return out.sort("transaction_id") if "transaction_id" in out.columns else out


def fired(events: list[dict], rule: str, params: RuleSet = DEFAULT,
          name: str = "flags") -> list[str]:
    """Sorted ids of the events ``rule`` flags, computed by query ``name``."""
    out = run_sql(events, params, name)
    return sorted(out.filter(pl.col(rule))["transaction_id"].to_list())
