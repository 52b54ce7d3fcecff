"""Run a what-if over a lake path: A/B diff, sweep, rule value, detection speed, drift — in ONE
pass of the fast backtest engine (``batch.fast_flags``) over the combined rule set.

``run_whatif(cfg)`` returns the report (a JSON-able dict); ``batch.backtest`` is the CLI
(``--compare``, ``--sweep``, ``--alert-budget``, ``--value``, ``--speed``, ``--drift``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from batch import fast_flags
from batch.chunked_flags import plan_chunks
from batch.hitrates import hit_rates, hit_rates_by_year, normalize_counts
from batch.whatif import combine, rows_from_scan
from batch.whatif_accumulate import WhatIf
from batch.whatif_evidence import attach_evidence
from batch.whatif_sweep import Sweep, best_within_budget, frontier, sweep_sets
from queries.staging import connect, open_source, resolve_input
from rules.model import RuleSet

A, B = "a", "b"


@dataclass(frozen=True)
class WhatIfConfig:
    input: str
    rule_set: RuleSet
    compare: RuleSet | None = None
    sweeps: tuple[Sweep, ...] = ()
    alert_budget: float | None = None
    value: bool = False
    speed: bool = False
    drift: bool = False
    by_year: bool = False
    chunk_rows: int = 4_000_000
    threads: int | None = None
    memory_limit: str | None = None
    progress: bool = True
    sample: int = 20
    extra: Mapping[str, object] = field(default_factory=dict)


def variants_of(cfg: WhatIfConfig) -> dict[str, RuleSet]:
    """``a`` (the rule set), ``b`` (the compared one) and one per sweep point."""
    out = {A: cfg.rule_set}
    if cfg.compare is not None:
        out[B] = cfg.compare
    if cfg.sweeps:
        out.update(sweep_sets(cfg.rule_set, cfg.sweeps))
    return out


def run_whatif(cfg: WhatIfConfig) -> dict:
    """Decide every variant in one pass; the report as a JSON-able dict."""
    start = time.perf_counter()
    variants = variants_of(cfg)
    combined, placed = combine(variants)
    whatif = WhatIf(placed, [(A, B)] if cfg.compare is not None else [], sample=cfg.sample,
                    value=[A] if cfg.value else [], speed=cfg.speed)
    files = resolve_input(cfg.input)
    con = connect(cfg.threads, cfg.memory_limit)
    open_source(con, files, view=None)
    chunks = plan_chunks(con, files, cfg.chunk_rows)
    total = sum(c.rows for c in chunks) or None
    with tqdm(total=total, unit="rows", unit_scale=True, file=sys.stderr,
              disable=None if cfg.progress else True, desc="what-if") as bar:
        fast_flags.flag_counts(con, chunks, combined, None, bar.update,
                               observe=_observer(whatif))
    report = _report(cfg, variants, whatif, len(chunks), combined)
    if cfg.compare is not None:
        attach_evidence(con, files, report["flip_sample"], {A: cfg.rule_set, B: cfg.compare})
    report["seconds"] = round(time.perf_counter() - start, 3)
    return report


def _observer(whatif: WhatIf) -> Callable[[pa.Table, Mapping[str, np.ndarray]], None]:
    def observe(table: pa.Table, fired: Mapping[str, np.ndarray]) -> None:
        whatif.add(rows_from_scan(table), fired)
    return observe


def _hit_report(name: str, rs: RuleSet, whatif: WhatIf, by_year: bool) -> dict:
    counts = normalize_counts(whatif.counts(name), rs.rule_ids)
    overall = hit_rates(counts)
    out: dict = {"rule_set_id": rs.id, "rule_set_source": rs.source, "rule_set": rs.to_dict(),
                 "rows": overall.rows, "fraud_rows": overall.fraud_rows,
                 "rules": overall.rules_dict(), "alerts_per_day": whatif.alerts_per_day(name)}
    if by_year:
        out["by_year"] = {str(y): {"rows": r.rows, "rules": r.rules_dict()}
                          for y, r in hit_rates_by_year(counts).items()}
    return out


def _report(cfg: WhatIfConfig, variants: dict[str, RuleSet], whatif: WhatIf, chunks: int,
            combined: RuleSet) -> dict:
    report: dict = {"input": cfg.input, "seconds": None, "chunks": chunks,
                    "rules_decided": len(combined.rules),
                    A: _hit_report(A, cfg.rule_set, whatif, cfg.by_year)}
    if cfg.compare is not None:
        report[B] = _hit_report(B, cfg.compare, whatif, cfg.by_year)
        report["flips"] = whatif.flips((A, B))
        report["flip_sample"] = whatif.flip_sample((A, B))
    if cfg.sweeps:
        report["sweep"] = _sweep_report(cfg, variants, whatif)
    if cfg.value:
        report["rule_value"] = whatif.rule_value(A)
    if cfg.speed:
        report["detection_speed"] = {A: whatif.detection_speed(A)}
        if cfg.compare is not None:
            report["detection_speed"][B] = whatif.detection_speed(B)
    if cfg.drift:
        report["drift"] = whatif.drift(A).to_dicts()
    return report


def _sweep_report(cfg: WhatIfConfig, variants: dict[str, RuleSet], whatif: WhatIf) -> dict:
    points = []
    for name, rs in variants.items():
        if name in (A, B):
            continue
        flagged = hit_rates(normalize_counts(whatif.counts(name), rs.rule_ids)).rules["flagged"]
        apd = whatif.alerts_per_day(name)
        points.append({"point": name, "rule_set_id": rs.id, "alerts": flagged.flagged,
                       "precision": flagged.precision, "recall": flagged.recall,
                       "alerts_per_day": apd["mean"], "alerts_p95_day": apd["p95"],
                       "recall_by_scenario": flagged.recall_by_scenario})
    out: dict = {"parameters": [s.key for s in cfg.sweeps], "points": points,
                 "frontier": [p["point"] for p in frontier(points)]}
    if cfg.alert_budget is not None:
        best = best_within_budget(points, cfg.alert_budget)
        out["alert_budget_per_day"] = cfg.alert_budget
        out["best_within_budget"] = best["point"] if best else None
    return out


# --- text and plot ------------------------------------------------------------------------------

def format_whatif(report: dict) -> str:
    """A short human summary of a what-if report."""
    lines = [f"{report['input']}: {report[A]['rows']:,} rows, {report['rules_decided']} distinct "
             f"rules decided in one pass, {report['seconds']:.1f} s"]
    for key in (A, B):
        if key in report:
            r = report[key]
            f = r["rules"]["flagged"]
            lines.append(f"  {key.upper()} {r['rule_set_id']}: alerts {f['flagged']:,} "
                         f"({r['alerts_per_day']['mean']:.1f}/day, p95 day "
                         f"{r['alerts_per_day']['p95']:.0f}), precision {_pct(f['precision'])}, "
                         f"recall {_pct(f['recall'])}")
    if "flips" in report:
        lines.append("  flips (B vs A): " + ", ".join(
            f"{rid} +{v['gained']:,}/-{v['lost']:,}" for rid, v in report["flips"].items()))
    if "sweep" in report:
        s = report["sweep"]
        lines.append(f"  sweep of {', '.join(s['parameters'])}:")
        lines.append(f"    {'point':<40} {'alerts/day':>10} {'precision':>9} {'recall':>8}")
        for p in s["points"]:
            mark = " *" if p["point"] == s.get("best_within_budget") else ""
            lines.append(f"    {p['point']:<40} {p['alerts_per_day']:>10.1f} "
                         f"{_pct(p['precision']):>9} {_pct(p['recall']):>8}{mark}")
        if "alert_budget_per_day" in s:
            lines.append(f"    * best within {s['alert_budget_per_day']:g} alerts/day: "
                         f"{s['best_within_budget'] or 'none fits'}")
    if "rule_value" in report:
        lines.append("  rule value (set without the rule):")
        for rid, v in report["rule_value"]["rules"].items():
            lines.append(f"    {rid:<24} recall {_pct(v['recall_without'])} "
                         f"(-{v['recall_lost_pp'] or 0:.2f} pp), alerts only it adds "
                         f"{v['alerts_only_this_rule_adds']:,}")
    if "detection_speed" in report:
        lines.append("  detection speed (A): scenario, incidents, never alerted, median fraud "
                     "events before the first alert")
        for scen, v in report["detection_speed"][A].items():
            lines.append(f"    {scen:<24} {v['incidents']:>7,} {_pct(v['never_alerted_share']):>8}"
                         f" {v['median_events_before_first_alert'] or 0:>6}")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def plot_sweep(report: dict, path: Path) -> None:
    """PNG: precision–recall and recall–alerts/day of every sweep point, frontier joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fraudlake.atomic import replacing

    s = report["sweep"]
    pts = s["points"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    recall = [100 * (p["recall"] or 0) for p in pts]
    ax1.plot(recall, [100 * (p["precision"] or 0) for p in pts], "o-")
    ax1.set(xlabel="recall (%)", ylabel="precision (%)", title="precision vs recall")
    ax2.plot([p["alerts_per_day"] for p in pts], recall, "o", alpha=0.6)
    front = [p for p in pts if p["point"] in s["frontier"]]
    ax2.plot([p["alerts_per_day"] for p in front], [100 * (p["recall"] or 0) for p in front],
             "-", label="frontier")
    if s.get("alert_budget_per_day") is not None:
        ax2.axvline(s["alert_budget_per_day"], color="grey", linestyle="--", label="budget")
    for p in pts:
        label = p["point"].split("=", 1)[-1]
        ax1.annotate(label, (100 * (p["recall"] or 0), 100 * (p["precision"] or 0)), fontsize=7)
        ax2.annotate(label, (p["alerts_per_day"], 100 * (p["recall"] or 0)), fontsize=7)
    ax2.set(xlabel="alerts per day (mean)", ylabel="recall (%)", title="recall vs alert load")
    ax2.legend()
    fig.suptitle(f"sweep of {', '.join(s['parameters'])}")
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
