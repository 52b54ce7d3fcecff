"""Write the analyst notebooks (``*.ipynb`` beside this file) from the cell sources below.

    .venv/bin/python notebooks/build_notebooks.py

The notebooks are committed WITHOUT outputs or execution counts; edit the cells here and
re-run this script rather than committing an executed notebook. Charts use Altair (shipped
with Streamlit); tables are Polars frames.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent



def setup(*project_imports: str) -> nbformat.NotebookNode:
    """The first code cell: imports, then where the data comes from."""
    imports = "\n".join(sorted(project_imports))
    return new_code_cell(f"""\
import altair as alt
import nbdata
import polars as pl

{imports}

pl.Config.set_tbl_rows(30)
root = nbdata.data_root()  # FRAUDLAKE_NOTEBOOK_DATA, or a small generated sample
print("data:", root)""")


EXPLORE = [
    new_markdown_cell("# Explore the history\n\nThe labelled history "
                      "(`storage/historical/year=YYYY/month=MM`) read by DuckDB through "
                      "`queries.staging`, with the project's analytics queries "
                      "(`queries/analytics/*.sql`). Set `FRAUDLAKE_NOTEBOOK_DATA` to a storage "
                      "root (e.g. `../storage`) to read the real lake; unset, a small sample "
                      "is generated."),
    setup("from queries.sql import execute"),
    new_code_cell("""\
con = nbdata.open_lake(nbdata.history_path(root))
overview = con.sql(\"\"\"
    select count(*) as transactions, min(ts) as first_ts, max(ts) as last_ts,
           count(distinct user_id) as users, count_if(is_fraud) as fraud
    from transactions\"\"\").pl()
overview"""),
    new_markdown_cell("## Volumes by year"),
    new_code_cell("""\
daily = pl.from_arrow(execute(con, "daily_volume"))
yearly = (
    daily.group_by(year=pl.col("day").dt.year())
    .agg(pl.col("transactions").sum(), pl.col("amount_total").sum(),
         pl.col("fraud_transactions").cast(pl.Int64).sum())
    .with_columns(fraud_rate=pl.col("fraud_transactions") / pl.col("transactions"))
    .sort("year")
)
assert yearly["transactions"].sum() == overview["transactions"][0]
display(yearly)
alt.Chart(yearly.select("year", "transactions")).mark_bar().encode(
    x="year:O", y="transactions:Q").properties(title="Transactions per year", width=500)"""),
    new_markdown_cell("## Amount distribution\n\nQuantiles (exact decimals) and a histogram "
                      "over log-spaced bins; genuine vs fraud."),
    new_code_cell("""\
quantiles = con.sql(\"\"\"
    select is_fraud, count(*) as n,
           quantile_cont(amount::double, [0.5, 0.9, 0.99, 0.999]) as p50_p90_p99_p999,
           max(amount) as max_amount
    from transactions group by is_fraud order by is_fraud\"\"\").pl()
display(quantiles)
hist = con.sql(\"\"\"
    select is_fraud, power(10, floor(log10(greatest(amount::double, 0.01)) * 4) / 4) as bin_low,
           count(*) as n
    from transactions group by all order by all\"\"\").pl().with_columns(
    share=pl.col("n") / pl.col("n").sum().over("is_fraud"))
alt.Chart(hist).mark_line(point=True).encode(
    x=alt.X("bin_low:Q", scale=alt.Scale(type="log"), title="amount (log bins)"),
    y=alt.Y("share:Q", title="share of rows"), color="is_fraud:N",
).properties(title="Amount distribution", width=500)"""),
    new_markdown_cell("## Fraud by scenario"),
    new_code_cell("""\
mix = pl.from_arrow(execute(con, "scenario_mix_by_year"))
by_scenario = (mix.group_by("fraud_scenario").agg(pl.col("fraud_transactions").sum())
               .with_columns(share=pl.col("fraud_transactions")
                             / pl.col("fraud_transactions").sum())
               .sort("fraud_transactions", descending=True))
assert by_scenario["fraud_transactions"].sum() == overview["fraud"][0]
display(by_scenario)
display(mix.pivot(on="fraud_scenario", index="year", values="fraud_transactions").sort("year"))
alt.Chart(mix).mark_bar().encode(x="year:O", y="fraud_transactions:Q",
                                 color="fraud_scenario:N").properties(
    title="Fraud by scenario and year", width=500)"""),
    new_markdown_cell("## By local hour\n\nLocal hour = hour of `ts + utc_offset_min`, the "
                      "clock the `unusual_hour` rule reads."),
    new_code_cell("""\
hours = pl.from_arrow(execute(con, "fraud_rate_by_local_hour")).with_columns(
    pl.col("fraud_transactions").cast(pl.Int64))
assert hours["transactions"].sum() == overview["transactions"][0]
display(hours)
base = alt.Chart(hours).encode(x="local_hour:O")
(base.mark_bar().encode(y="transactions:Q")
 | base.mark_line(point=True, color="firebrick").encode(y="fraud_rate:Q"))"""),
]

TUNE = [
    new_markdown_cell("# Tune a rule with one sweep\n\nEvery value of `high_amount.threshold` "
                      "decided in ONE pass over the history (`batch.whatif_run.run_whatif`, "
                      "the same as `python -m batch.backtest --sweep "
                      "high_amount.threshold=250:5000:250 --alert-budget N`), then the best "
                      "point within an alert budget, what it changes per fraud scenario "
                      "(an A/B diff with evidence), and how fast each scenario is caught. "
                      "Precision = fraud among alerts, recall = alerts among fraud. On the "
                      "47M-row history the sweep takes about as long as one backtest."),
    setup("from batch.backtest import BacktestConfig, run_backtest",
          "from batch.whatif_run import WhatIfConfig, run_whatif",
          "from batch.whatif_sweep import parse_sweep", "from rules.model import load_rule_set"),
    new_code_cell("""\
history = nbdata.history_path(root)
current = load_rule_set(None)  # rules/default.toml: high_amount.threshold = 1000
SWEEP = "high_amount.threshold=250:5000:250"
BUDGET_SHARE = 0.9  # the alert budget: 90 % of the alerts per day the current set raises"""),
    new_code_cell("""\
today = run_whatif(WhatIfConfig(input=history, rule_set=current, value=True, progress=False))
budget = BUDGET_SHARE * today["a"]["alerts_per_day"]["mean"]
report = run_whatif(WhatIfConfig(input=history, rule_set=current,
                                 sweeps=(parse_sweep(SWEEP, current),), alert_budget=budget,
                                 progress=False))
sweep = report["sweep"]
points = pl.DataFrame([
    {"threshold": float(p["point"].split("=")[1]), "alerts": p["alerts"],
     "alerts_per_day": p["alerts_per_day"], "p95_day": p["alerts_p95_day"],
     "precision": p["precision"], "recall": p["recall"],
     "frontier": p["point"] in sweep["frontier"],
     **{f"recall_{k}": v for k, v in p["recall_by_scenario"].items()}}
    for p in sweep["points"]])
assert points["alerts"].is_sorted(descending=True)  # a higher threshold never alerts more
print(f"{points.height} points in one pass of {report['seconds']:.1f} s; "
      f"budget {budget:.1f} alerts/day")
points"""),
    new_markdown_cell("## The trade-off\n\nLeft: precision and recall against the threshold. "
                      "Right: recall against the alert load; the dashed line is the budget, "
                      "the frontier joins the points no other point beats on both."),
    new_code_cell("""\
long = points.unpivot(index="threshold", on=["precision", "recall"], variable_name="metric")
curve = alt.Chart(long).mark_line(point=True).encode(
    x=alt.X("threshold:Q", scale=alt.Scale(type="log")), y="value:Q", color="metric:N"
).properties(title="high_amount threshold sweep", width=330)
load = alt.Chart(points).mark_point().encode(
    x=alt.X("alerts_per_day:Q", title="alerts per day"), y="recall:Q",
    color="frontier:N", tooltip=["threshold", "alerts_per_day", "precision", "recall"])
rule = alt.Chart(pl.DataFrame({"budget": [budget]})).mark_rule(strokeDash=[4, 4]).encode(
    x="budget:Q")
curve | (load + rule).properties(title="recall vs alert load", width=330)"""),
    new_markdown_cell("## Pick a threshold\n\nThe best point within the budget (highest recall "
                      "that fits), checked against a single backtest at that value."),
    new_code_cell("""\
best_name = sweep["best_within_budget"]
assert best_name is not None, "no point fits the budget: widen the sweep"
best = points.filter(pl.col("threshold") == float(best_name.split("=")[1])).row(0, named=True)
chosen = current.with_overrides([best_name])
single = run_backtest(BacktestConfig(input=history, rule_set=chosen, progress=False))
assert single.overall.rules["flagged"].flagged == best["alerts"]  # one pass == a backtest
base = today["a"]["rules"]["flagged"]
print(f"best within budget: {best_name} ({best['alerts_per_day']:.1f} alerts/day vs "
      f"{today['a']['alerts_per_day']['mean']:.1f}, recall {best['recall']:.3f} vs "
      f"{base['recall']:.3f}, precision {best['precision']:.3f} vs {base['precision']:.3f})")
points.filter(pl.col("threshold").is_in([1000.0, best["threshold"]]))"""),
    new_markdown_cell("## What the change does\n\nAn A/B diff of the current set against the "
                      "chosen one: alerts lost and gained per fraud scenario, a sample of "
                      "flipped transactions with the evidence of each rule that fired, and "
                      "detection speed (fraud events before the first alert, per incident)."),
    new_code_cell("""\
ab = run_whatif(WhatIfConfig(input=history, rule_set=current, compare=chosen, speed=True,
                             sample=6, progress=False))
flips = ab["flips"]["flagged"]
per_scenario = pl.DataFrame([
    {"scenario": s, "recall_a": ab["a"]["rules"]["flagged"]["recall_by_scenario"].get(s),
     "recall_b": ab["b"]["rules"]["flagged"]["recall_by_scenario"].get(s),
     "fraud_alerts_lost": v["lost"], "fraud_alerts_gained": v["gained"]}
    for s, v in flips["by_scenario"].items()])
print(f"alerts: -{flips['lost']:,} / +{flips['gained']:,} over the history")
display(per_scenario)
display(pl.DataFrame([{k: f[k] for k in ("flip", "transaction_id", "amount", "is_fraud")}
                      | {"evidence_a": f["evidence"]["a"], "evidence_b": f["evidence"]["b"]}
                      for f in ab["flip_sample"]]))
pl.DataFrame([{"scenario": s, "set": k, **v} for k in ("a", "b")
              for s, v in ab["detection_speed"][k].items()]).select(
    "scenario", "set", "incidents", "never_alerted_share", "median_events_before_first_alert")"""),
    new_markdown_cell("## What each rule is worth today\n\nRecall of the current set without "
                      "each rule (its marginal contribution) and how many alerts rules share."),
    new_code_cell("""\
value = today["rule_value"]
display(pl.DataFrame([{"rule": r, **v} for r, v in value["rules"].items()]))
pl.DataFrame([{"rule": r, **row} for r, row in value["overlap"].items()])"""),
]

LIVE = [
    new_markdown_cell("# Live lake vs history\n\nThe live lake "
                      "(`storage/lake/transactions`, written by the consumer with its rule "
                      "columns) beside the history. Same schema, same DuckDB reader "
                      "(`queries.staging`), same rules (`batch.backtest`)."),
    setup("from batch.backtest import BacktestConfig, run_backtest",
          "from fraudlake.contract import FLAGGED, RULE_NAMES", "from queries.sql import execute"),
    new_code_cell("""\
history, live = nbdata.history_path(root), nbdata.live_path(root)
hist_con, live_con = nbdata.open_lake(history), nbdata.open_lake(live)
summary_sql = \"\"\"
    select count(*) as transactions, min(ts) as first_ts, max(ts) as last_ts,
           count(distinct user_id) as users, avg(amount::double) as mean_amount,
           avg(is_fraud::int) as fraud_rate
    from transactions\"\"\"
pl.concat([hist_con.sql(summary_sql).pl().with_columns(lake=pl.lit("history")),
           live_con.sql(summary_sql).pl().with_columns(lake=pl.lit("live"))])"""),
    new_markdown_cell("## Flag rates per rule\n\nHistory: backtested now. Live: the rule "
                      "columns the stream wrote, and a backtest of the live lake, which must "
                      "agree with them (stream and SQL decide alike)."),
    new_code_cell("""\
hist_bt = run_backtest(BacktestConfig(input=history, progress=False)).overall
live_bt = run_backtest(BacktestConfig(input=live, progress=False)).overall
cols = [*RULE_NAMES, FLAGGED]
stored = live_con.sql(\"\"\"
    select count_if(list_contains(rules_fired, 'high_amount')) as high_amount,
           count_if(list_contains(rules_fired, 'high_frequency')) as high_frequency,
           count_if(list_contains(rules_fired, 'unusual_hour')) as unusual_hour,
           count_if(list_contains(rules_fired, 'geo_mismatch')) as geo_mismatch,
           count_if(flagged) as flagged
    from source\"\"\").pl()  # the decisions the stream wrote (lake v2: rules_fired)
rates = pl.DataFrame({
    "rule": cols,
    "history_rate": [hist_bt.rules[c].flag_rate for c in cols],
    "live_rate": [live_bt.rules[c].flag_rate for c in cols],
    "live_stored_flags": [int(stored[c][0]) for c in cols],
    "live_backtest_flags": [live_bt.rules[c].flagged for c in cols],
    "history_precision": [hist_bt.rules[c].precision for c in cols],
    "live_precision": [live_bt.rules[c].precision for c in cols],
}).with_columns(live_vs_history=pl.col("live_rate") / pl.col("history_rate"))
agree = rates["live_stored_flags"].to_list() == rates["live_backtest_flags"].to_list()
print("stream and backtest agree on every rule" if agree
      else "MISMATCH between the stream's rule columns and the backtest")
rates"""),
    new_code_cell("""\
long = rates.unpivot(index="rule", on=["history_rate", "live_rate"], variable_name="lake")
alt.Chart(long).mark_bar().encode(
    x=alt.X("lake:N", title=None), y=alt.Y("value:Q", title="flag rate"), color="lake:N",
    column="rule:N").properties(title="Flag rate: live vs history", width=80)"""),
    new_markdown_cell("## Local-hour mix\n\nShare of transactions per local hour: a shift "
                      "here moves `unusual_hour`."),
    new_code_cell("""\
def hour_mix(con, lake):
    h = pl.from_arrow(execute(con, "fraud_rate_by_local_hour"))
    return h.select("local_hour", share=pl.col("transactions") / pl.col("transactions").sum(),
                    lake=pl.lit(lake))

mix = pl.concat([hour_mix(hist_con, "history"), hour_mix(live_con, "live")])
alt.Chart(mix).mark_line(point=True).encode(x="local_hour:O", y="share:Q", color="lake:N"
    ).properties(title="Transactions by local hour", width=500)"""),
]


def notebook(cells: list) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    return nb


NOTEBOOKS = {
    "01_explore_history.ipynb": EXPLORE,
    "02_tune_rule.ipynb": TUNE,
    "03_live_vs_history.ipynb": LIVE,
}


def main() -> int:
    for name, cells in NOTEBOOKS.items():
        nb = notebook(cells)
        nbformat.validate(nb)
        nbformat.write(nb, HERE / name)
        print(f"wrote {HERE / name} ({len(cells)} cells)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
