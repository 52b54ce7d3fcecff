"""Detection speed: per fraud scenario and incident, what went through before the first alert.

An incident is a card's run of fraud events of one scenario; a gap of more than 30 days starts
a new one. Pure: a function over the fraud rows of a pass.
"""

from __future__ import annotations

import polars as pl

from batch.whatif_results import money, ratio

DAY_US = 86_400_000_000
#: Fraud events of a card further apart than this start a new incident.
INCIDENT_GAP_US = 30 * DAY_US


def incidents_report(fraud_rows: pl.DataFrame, flag_col: str) -> dict:
    """Per scenario: incidents, share never alerted, fraud events and money before the first
    alert, from fraud rows (user_id, ts_us, transaction_id, amount_cents, fraud_scenario and
    the bool ``flag_col``) sorted by (user_id, ts_us, transaction_id)."""
    df = fraud_rows.with_columns(
        new=(pl.col("user_id") != pl.col("user_id").shift(1)).fill_null(True)
        | (pl.col("fraud_scenario") != pl.col("fraud_scenario").shift(1)).fill_null(True)
        | ((pl.col("ts_us") - pl.col("ts_us").shift(1)) > INCIDENT_GAP_US).fill_null(True))
    df = df.with_columns(incident=pl.col("new").cum_sum())
    df = df.with_columns(
        alerted_so_far=pl.col(flag_col).cast(pl.Int32).cum_sum().over("incident"))
    before = pl.col("alerted_so_far") == 0  # strictly before the first alert
    per = df.group_by("incident").agg(
        pl.col("fraud_scenario").first(),
        pl.len().alias("events"),
        pl.col(flag_col).any().alias("alerted"),
        before.sum().alias("events_before"),
        (pl.col("amount_cents") * before).sum().alias("cents_before"),
        pl.col("amount_cents").sum().alias("cents"),
    )
    out = {}
    for (scenario,), g in per.group_by("fraud_scenario", maintain_order=True):
        alerted = g.filter(pl.col("alerted"))
        out[str(scenario)] = {
            "incidents": g.height,
            "never_alerted_share": ratio(g.height - alerted.height, g.height),
            "fraud_events": int(g["events"].sum()),
            "median_events_before_first_alert": _median(alerted["events_before"]),
            "mean_events_before_first_alert": _mean(alerted["events_before"]),
            "median_money_before_first_alert": _money_or_none(_median(alerted["cents_before"])),
            "money_before_first_alert": money(int(g["cents_before"].sum())),
            "money_total": money(int(g["cents"].sum())),
        }
    return dict(sorted(out.items()))


def _money_or_none(cents: float | None) -> str | None:
    return None if cents is None else money(round(cents))


def _median(s: pl.Series) -> float | None:
    return None if s.len() == 0 else float(s.median())  # type: ignore[arg-type]


def _mean(s: pl.Series) -> float | None:
    return None if s.len() == 0 else float(s.mean())  # type: ignore[arg-type]
