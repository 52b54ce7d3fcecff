"""Pure aggregation behind the page: frames and filter values in, frames and numbers out.

No I/O except ``read_report`` / ``read_lag`` (small JSON files). Flag frames follow
``dashboard.page_flags.PAGE_COLUMNS``; series and baselines follow ``dashboard.lake_queries``.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from dashboard.lake_queries import BASELINE_SCHEMA, SERIES_SCHEMA
from flagstore.schema import TS_TEXT
from fraudlake.contract import RULE_NAMES

#: DuckDB date_trunc unit → Polars truncate interval.
UNITS: dict[str, str] = {"minute": "1m", "hour": "1h", "day": "1d", "month": "1mo"}


class ReportError(ValueError):
    """The backtest report exists but cannot be used; the message is one line."""


def merge_baselines(history: pl.DataFrame, live: pl.DataFrame) -> pl.DataFrame:
    """One baseline row per user from history + live lake: counts add up, first/last seen
    span both; the usual amount and city come from the part with more transactions."""
    both = pl.concat([history.select(list(BASELINE_SCHEMA)), live.select(list(BASELINE_SCHEMA))])
    if both.is_empty():
        return pl.DataFrame(schema=BASELINE_SCHEMA)
    return (
        both.sort("txn_count", descending=True)
        .group_by("user_id", maintain_order=True)
        .agg(pl.col("txn_count").sum(), pl.col("median_amount").first(),
             pl.col("usual_city").first(), pl.col("first_seen").min(),
             pl.col("last_seen").max())
        .select(list(BASELINE_SCHEMA))
    )


def with_baselines(top: pl.DataFrame, baselines: pl.DataFrame) -> pl.DataFrame:
    """Top users joined with their lake baseline; ``x_usual`` = biggest flag / usual amount."""
    joined = top.join(baselines, on="user_id", how="left")
    return joined.with_columns(
        pl.when(pl.col("median_amount") > 0)
        .then(pl.col("max_amount") / pl.col("median_amount")).otherwise(None)
        .round(1).alias("x_usual")
    )


def rebucket(series: pl.DataFrame, unit: str, since: datetime | None,
             until: datetime | None = None) -> pl.DataFrame:
    """Restrict a series to [since, until) and sum it into ``unit`` buckets."""
    s = series
    if since is not None:
        s = s.filter(pl.col("bucket") >= since)
    if until is not None:
        s = s.filter(pl.col("bucket") < until)
    return (s.group_by(pl.col("bucket").dt.truncate(UNITS[unit]))
            .agg(pl.col("events").sum(), pl.col("amount").sum()).sort("bucket")
            .cast(SERIES_SCHEMA))


def table_view(flags: pl.DataFrame, tz: str | None = None) -> pl.DataFrame:
    """What the flag tables show: amount as a number (sorts as one), times in ``tz``."""
    ts = pl.col("ts") if tz is None else pl.col("ts").dt.convert_time_zone(tz)
    cols = [ts, "transaction_id", "user_id", pl.col("amount").cast(pl.Float64), "currency",
            pl.col("score"), "merchant_name", "category", "channel", "city", "country",
            pl.col("rules_fired").list.join(", ").alias("rules"), "rule_set_id", "is_fraud",
            "fraud_scenario"]
    if "status" in flags.columns:
        cols.insert(2, "status")
    return flags.select(cols)


def csv_view(flags: pl.DataFrame) -> pl.DataFrame:
    """What the CSV holds: exact amounts as text, UTC times, no analyst data."""
    return flags.select(
        "ts", "transaction_id", "user_id", pl.col("amount").cast(pl.String), "currency",
        "score", "merchant_name", "category", "channel", "city", "country",
        pl.col("rules_fired").list.join(", ").alias("rules"), "rule_set_id", "is_fraud",
        "fraud_scenario",
    )


def to_csv(flags: pl.DataFrame) -> bytes:
    """Exactly these rows as CSV (UTF-8, ISO-8601 UTC timestamps, exact amounts)."""
    buf = io.BytesIO()
    csv_view(flags).write_csv(buf, datetime_format=TS_TEXT)
    return buf.getvalue()


def read_report(path: Path) -> dict | None:
    """The backtest report; None when absent; ``ReportError`` (one line) when unusable."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ReportError(f"cannot read the backtest report {path}: {exc.strerror}") from exc
    try:
        report = json.loads(text)
    except ValueError as exc:
        raise ReportError(f"backtest report {path} is not valid JSON "
                          f"({str(exc).splitlines()[0][:120]})") from exc
    if not isinstance(report, dict) or not isinstance(report.get("rules"), dict) or not all(
            isinstance(v, dict) for v in report["rules"].values()):
        raise ReportError(f"backtest report {path} has no per-rule figures "
                          "(expected an object with 'rules': {rule: {...}})")
    return report


def read_whatif(path: Path) -> dict | None:
    """A what-if report (``batch.backtest --compare/--sweep``, saved as JSON): None when absent;
    ``ReportError`` when it is not one."""
    try:
        report = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ReportError(f"what-if report {path} is unreadable "
                          f"({str(exc).splitlines()[0][:120]})") from exc
    if not isinstance(report, dict) or not any(k in report for k in WHATIF_PARTS):
        raise ReportError(f"what-if report {path} has no A/B diff, sweep or drift")
    return report


#: The parts a ``batch.backtest --compare/--sweep/--drift/--value/--speed`` report may hold.
WHATIF_PARTS = ("sweep", "flips", "b", "drift", "rule_value", "detection_speed")


def drift_by_year(report: dict) -> pl.DataFrame:
    """A what-if report's ``drift`` (per rule, year and month) summed per rule and year, with
    flag rate, precision and recall: a rule that decays shows as a falling line."""
    counts = ("rows", "fraud", "fired", "true_pos")
    schema = {"rule": pl.String(), "year": pl.Int64(), **{c: pl.Int64() for c in counts}}
    rows = [{k: r.get(k) for k in schema} for r in report.get("drift") or []
            if isinstance(r, dict)]
    per_year = (pl.DataFrame(rows, schema=schema, orient="row", strict=False)
                .group_by("rule", "year").agg(pl.col(*counts).sum()).sort("rule", "year"))
    return per_year.with_columns(
        flag_rate=pl.col("fired") / pl.col("rows"),
        precision=pl.when(pl.col("fired") > 0).then(pl.col("true_pos") / pl.col("fired")),
        recall=pl.when(pl.col("fraud") > 0).then(pl.col("true_pos") / pl.col("fraud")))


def sweep_points(report: dict) -> pl.DataFrame:
    """One row per sweep point: alerts/day, precision, recall, on the frontier or not."""
    sweep = report.get("sweep") or {}
    frontier = set(sweep.get("frontier") or [])
    rows = [{"point": str(p.get("point")), "rule_set_id": p.get("rule_set_id"),
             "alerts_per_day": p.get("alerts_per_day"), "precision": p.get("precision"),
             "recall": p.get("recall"), "frontier": p.get("point") in frontier}
            for p in sweep.get("points") or [] if isinstance(p, dict)]
    schema = {"point": pl.String(), "rule_set_id": pl.String(), "alerts_per_day": pl.Float64(),
              "precision": pl.Float64(), "recall": pl.Float64(), "frontier": pl.Boolean()}
    return pl.DataFrame(rows, schema=schema, orient="row", strict=False)


def flips(report: dict) -> pl.DataFrame:
    """Per rule: decisions B gains and loses against A."""
    rows = [{"rule": r, "gained": int(v.get("gained") or 0), "lost": int(v.get("lost") or 0)}
            for r, v in (report.get("flips") or {}).items() if isinstance(v, dict)]
    return pl.DataFrame(rows, schema={"rule": pl.String(), "gained": pl.Int64(),
                                      "lost": pl.Int64()}, orient="row")


def report_params(report: dict) -> pl.DataFrame:
    """The backtest's parameters, one row each, as text: the rule-set id and file, the alert
    threshold, then each rule's kind, weight and parameters (``rule_set`` of a rule-set
    report) or the v1 ``params``. Unset options (null scope) are left out."""
    rows = []
    for key in ("rule_set_id", "rule_set_source", "rules_file"):
        if report.get(key) is not None:
            rows.append({"parameter": key, "value": str(report[key])})
    rule_set = report.get("rule_set")
    if isinstance(rule_set, dict):
        if rule_set.get("alert_threshold") is not None:
            rows.append({"parameter": "alert_threshold", "value": str(rule_set["alert_threshold"])})
        for rule in rule_set.get("rules") or []:
            if not isinstance(rule, dict):
                continue
            rid = rule.get("id", "?")
            for name, value in rule.items():
                if name != "id" and value is not None:
                    rows.append({"parameter": f"{rid}.{name}", "value": _text(value)})
    params = report.get("params") or {}
    if isinstance(params, dict):
        for name, value in sorted(_flatten(params).items()):
            rows.append({"parameter": name, "value": str(value)})
    return pl.DataFrame(rows, schema={"parameter": pl.String(), "value": pl.String()})


def _text(value: object) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def variants(report: dict) -> pl.DataFrame:
    """A what-if report's A and B side by side: rule set, alerts, precision, recall, alerts/day."""
    rows = []
    for key in ("a", "b"):
        v = report.get(key)
        if not isinstance(v, dict):
            continue
        flagged = ((v.get("rules") or {}).get("flagged") or {})
        rows.append({"variant": key.upper(), "rule_set_id": v.get("rule_set_id"),
                     "rule_set_source": v.get("rule_set_source"),
                     "alerts": flagged.get("flagged"), "precision": flagged.get("precision"),
                     "recall": flagged.get("recall"),
                     "alerts_per_day": (v.get("alerts_per_day") or {}).get("mean")})
    return pl.DataFrame(rows, schema={
        "variant": pl.String(), "rule_set_id": pl.String(), "rule_set_source": pl.String(),
        "alerts": pl.Int64(), "precision": pl.Float64(), "recall": pl.Float64(),
        "alerts_per_day": pl.Float64()}, orient="row", strict=False)


def _flatten(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def rule_table(report: dict) -> pl.DataFrame:
    """One row per rule (then ``flagged``): flagged, flag rate, precision, recall."""
    rows = []
    rules = report.get("rules") or {}
    order = [r for r in RULE_NAMES if r in rules] + \
            [r for r in rules if r not in RULE_NAMES and r != "flagged"] + \
            [r for r in ("flagged",) if r in rules]
    for name in order:
        r = rules[name] or {}
        rows.append({"rule": name, "flagged": r.get("flagged"), "flag_rate": r.get("flag_rate"),
                     "precision": r.get("precision"), "recall": r.get("recall")})
    schema = {"rule": pl.String(), "flagged": pl.Int64(), "flag_rate": pl.Float64(),
              "precision": pl.Float64(), "recall": pl.Float64()}
    return pl.DataFrame(rows, schema=schema, orient="row", strict=False)


def scenario_table(report: dict) -> pl.DataFrame:
    """Recall per fraud scenario (rows) and rule (columns)."""
    rules = report.get("rules") or {}
    names = [r for r in RULE_NAMES if r in rules] + \
            [r for r in rules if r not in RULE_NAMES and r != "flagged"] + \
            [r for r in ("flagged",) if r in rules]
    scenarios = sorted({s for r in names for s in (rules[r] or {}).get("recall_by_scenario") or {}})
    data: dict[str, list] = {"scenario": scenarios}
    for r in names:
        by = (rules[r] or {}).get("recall_by_scenario") or {}
        data[r] = [by.get(s) for s in scenarios]
    schema = {"scenario": pl.String(), **{r: pl.Float64() for r in names}}
    return pl.DataFrame(data, schema=schema, strict=False)


def read_lag(path: Path, now: datetime, max_age: timedelta = timedelta(minutes=5)
             ) -> int | None:
    """Consumer lag from the consumer's metrics file; None when absent, unreadable or stale."""
    try:
        doc = json.loads(Path(path).read_text())
        lag = int(doc["lag"])
        updated = datetime.fromisoformat(str(doc["updated_at"]).replace("Z", "+00:00"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if updated.tzinfo is None:
        updated = updated.replace(tzinfo=UTC)
    return lag if now - updated <= max_age else None
