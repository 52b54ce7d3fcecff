"""What-if over the history: several rule sets decided in ONE pass, then compared.

``combine`` merges every variant (A and B of a diff, the points of a sweep) into one rule set
whose rules are the distinct rules of all variants (a rule shared by A and B is decided once);
the engine decides that set chunk by chunk and hands each chunk to ``WhatIf.add``, which keeps
only additive aggregates (and the fraud rows, a small share, for detection speed). Each
variant's ``flagged`` is rebuilt exactly from its rules' bits and integer weight units.

Pure functions over Polars/NumPy data; no I/O (``batch.whatif_run`` drives the engine,
``batch.whatif_report`` writes reports and plots).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType

import numpy as np
import polars as pl

from rules.model import Rule, RuleSet

DAY_US = 86_400_000_000
#: Columns a chunk handed to ``WhatIf.add`` must carry beside the fired bits.
CHUNK_COLUMNS = ("transaction_id", "user_id", "ts_us", "amount_cents", "is_fraud",
                 "fraud_scenario")
#: Fraud events of a card further apart than this start a new incident.
INCIDENT_GAP_US = 30 * DAY_US
FLAGGED = "flagged"


@dataclass(frozen=True)
class Variant:
    """One rule set among those decided together: its rules' columns in the combined set."""

    name: str
    rule_set: RuleSet
    columns: tuple[str, ...]  # combined column of each rule, in the set's file order

    def units(self) -> tuple[tuple[int, ...], int]:
        units, threshold, _scale = self.rule_set.weight_units()
        return units, threshold

    def scale(self) -> int:
        return self.rule_set.weight_units()[2]


def combine(variants: Mapping[str, RuleSet]) -> tuple[RuleSet, dict[str, Variant]]:
    """One rule set deciding every distinct rule of ``variants`` once (ids ``w0, w1, …``), and
    where each variant's rules are in it. Rules are the same when kind, parameters and scope
    are (weights do not change what fires)."""
    combined: list[Rule] = []
    index: dict[str, str] = {}
    out: dict[str, Variant] = {}
    for name, rule_set in variants.items():
        columns = []
        for rule in rule_set.rules:
            key = _firing_key(rule)
            if key not in index:
                index[key] = f"w{len(combined)}"
                combined.append(Rule(id=index[key], kind=rule.kind, params=rule.params,
                                     channels=rule.channels, categories=rule.categories))
            columns.append(index[key])
        out[name] = Variant(name, rule_set, tuple(columns))
    merged = RuleSet(version="whatif", alert_threshold=Decimal(1), rules=tuple(combined),
                     source="(combined)")
    return merged, out


def _firing_key(rule: Rule) -> str:
    body = rule.to_dict()
    body.pop("id")
    body.pop("weight")
    return json.dumps(body, sort_keys=True)


def variant_flags(variant: Variant, fired: Mapping[str, np.ndarray]) -> np.ndarray:
    """The variant's ``flagged`` bits: integer weight units of its fired rules >= threshold."""
    units, threshold = variant.units()
    n = len(next(iter(fired.values()))) if fired else 0
    score = np.zeros(n, dtype=np.int64)
    for col, u in zip(variant.columns, units, strict=True):
        score += fired[col].astype(np.int64) * u
    return score >= threshold


# --- aggregates ---------------------------------------------------------------------------------

@dataclass
class _Parts:
    frames: list[pl.DataFrame] = field(default_factory=list)

    def add(self, frame: pl.DataFrame) -> None:
        if frame.height:
            self.frames.append(frame)

    def total(self, keys: Sequence[str], schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
        if not self.frames:
            return pl.DataFrame(schema=dict(schema))
        df = pl.concat(self.frames, how="diagonal_relaxed")
        values = [c for c in df.columns if c not in keys]
        out = df.group_by(list(keys)).agg(pl.col(values).sum()).sort(list(keys), nulls_last=True)
        self.frames = [out]
        return out


class WhatIf:
    """Aggregates of several variants over the chunks of one pass."""

    def __init__(self, variants: Mapping[str, Variant], pairs: Sequence[tuple[str, str]] = (),
                 sample: int = 20) -> None:
        self.variants = dict(variants)
        self.pairs = list(pairs)  # (a, b) name pairs to diff: gained = b and not a
        self.sample = sample
        self._counts = {name: _Parts() for name in self.variants}
        self._monthly = {name: _Parts() for name in self.variants}
        self._daily = _Parts()
        self._value = {name: _Parts() for name in self.variants}
        self._overlap = {name: np.zeros((len(v.columns),) * 2, dtype=np.int64)
                         for name, v in self.variants.items()}
        self._flips = {pair: _Parts() for pair in self.pairs}
        self._samples: dict[tuple[str, str], list[dict]] = {pair: [] for pair in self.pairs}
        self._fraud = _Parts()
        self.first_day: int | None = None
        self.last_day: int | None = None

    def add(self, chunk: pl.DataFrame, fired: Mapping[str, np.ndarray],
            evidence: Mapping[str, Mapping[str, np.ndarray]] | None = None) -> None:
        """One decided chunk: ``chunk`` has CHUNK_COLUMNS, ``fired`` one bool array per
        combined rule column (same length and order as ``chunk``)."""
        if chunk.height == 0:
            return
        base = _base(chunk)
        days = base["day"].to_numpy()
        self.first_day = _min(self.first_day, int(days.min()))
        self.last_day = _max(self.last_day, int(days.max()))
        flags = {name: variant_flags(v, fired) for name, v in self.variants.items()}
        daily = base.select("day").with_columns(
            **{f"alerts_{name}": pl.Series(f, dtype=pl.Int64) for name, f in flags.items()})
        self._daily.add(daily.group_by("day").agg(pl.all().sum()))
        fraud = base["is_fraud"].fill_null(False).to_numpy()
        for name, v in self.variants.items():
            bits = {rid: fired[col] for rid, col in zip(v.rule_set.rule_ids, v.columns,
                                                        strict=True)}
            self._add_variant(name, v, base, bits, flags[name], fired, fraud)
        for a, b in self.pairs:
            self._add_flips((a, b), base, fired, flags, evidence)
        if fraud.any():
            cols = {f"flagged_{name}": f[fraud] for name, f in flags.items()}
            self._fraud.add(base.filter(pl.Series(fraud)).select(
                "user_id", "ts_us", "transaction_id", "amount_cents", "fraud_scenario")
                .with_columns(**{k: pl.Series(v) for k, v in cols.items()}))

    def _add_variant(self, name: str, v: Variant, base: pl.DataFrame,
                     bits: Mapping[str, np.ndarray], flagged: np.ndarray,
                     fired: Mapping[str, np.ndarray], fraud: np.ndarray) -> None:
        cols = {rid: pl.Series(b, dtype=pl.Int64) for rid, b in bits.items()}
        frame = base.with_columns(rows=pl.lit(1, pl.Int64), **cols,
                                  **{FLAGGED: pl.Series(flagged, dtype=pl.Int64)})
        values = ["rows", *bits, FLAGGED]
        self._counts[name].add(frame.group_by("year", "is_fraud", "fraud_scenario")
                               .agg(pl.col(values).sum()))
        self._monthly[name].add(frame.group_by("year", "month", "is_fraud")
                                .agg(pl.col(values).sum()))
        units, threshold = v.units()
        score = np.zeros(len(flagged), dtype=np.int64)
        for col, u in zip(v.columns, units, strict=True):
            score += fired[col].astype(np.int64) * u
        without = {}
        for rid, col, u in zip(v.rule_set.rule_ids, v.columns, units, strict=True):
            w = (score - fired[col].astype(np.int64) * u) >= threshold
            without[f"without_{rid}"] = int(w.sum())
            without[f"without_{rid}_fraud"] = int((w & fraud).sum())
        self._value[name].add(pl.DataFrame({"k": [0], **{k: [x] for k, x in without.items()}}))
        matrix = np.stack([fired[c] & flagged for c in v.columns]).astype(np.int64)
        self._overlap[name] += matrix @ matrix.T

    def _add_flips(self, pair: tuple[str, str], base: pl.DataFrame,
                   fired: Mapping[str, np.ndarray], flags: Mapping[str, np.ndarray],
                   evidence: Mapping[str, Mapping[str, np.ndarray]] | None) -> None:
        a, b = (self.variants[n] for n in pair)
        a_cols = dict(zip(a.rule_set.rule_ids, a.columns, strict=True))
        b_cols = dict(zip(b.rule_set.rule_ids, b.columns, strict=True))
        n = base.height
        never = np.zeros(n, dtype=bool)
        cols: dict[str, pl.Series] = {}
        for rid in [*a_cols, *(r for r in b_cols if r not in a_cols), FLAGGED]:
            fa = flags[a.name] if rid == FLAGGED else fired[a_cols[rid]] if rid in a_cols else never
            fb = flags[b.name] if rid == FLAGGED else fired[b_cols[rid]] if rid in b_cols else never
            gained, lost = fb & ~fa, fa & ~fb
            cols[f"gained__{rid}"] = pl.Series(gained, dtype=pl.Int64)
            cols[f"lost__{rid}"] = pl.Series(lost, dtype=pl.Int64)
            if rid == FLAGGED:
                self._sample(pair, base, gained, lost, fired, a_cols, b_cols, evidence)
        frame = base.select("year", "fraud_scenario").with_columns(**cols)
        self._flips[pair].add(frame.group_by("year", "fraud_scenario").agg(pl.all().sum()))

    def _sample(self, pair: tuple[str, str], base: pl.DataFrame, gained: np.ndarray,
                lost: np.ndarray, fired: Mapping[str, np.ndarray], a_cols: Mapping[str, str],
                b_cols: Mapping[str, str],
                evidence: Mapping[str, Mapping[str, np.ndarray]] | None) -> None:
        kept = self._samples[pair]
        if len(kept) >= self.sample:
            return
        for how, mask in (("gained", gained), ("lost", lost)):
            for i in np.flatnonzero(mask)[: self.sample - len(kept)]:
                row = base.row(int(i), named=True)
                kept.append({
                    "flip": how, "transaction_id": row["transaction_id"],
                    "user_id": row["user_id"], "ts_us": row["ts_us"],
                    "amount": _money(row["amount_cents"]), "is_fraud": row["is_fraud"],
                    "fraud_scenario": row["fraud_scenario"],
                    "a_fired": [r for r, c in a_cols.items() if fired[c][i]],
                    "b_fired": [r for r, c in b_cols.items() if fired[c][i]],
                    "evidence": _evidence_at(evidence, {**a_cols, **b_cols}, fired, int(i)),
                })

    # --- results ---------------------------------------------------------------------------------

    def counts(self, name: str) -> pl.DataFrame:
        """The variant's counts frame: one row per (year, is_fraud, fraud_scenario) with
        ``rows``, one count per rule id and ``flagged``."""
        v = self.variants[name]
        schema = {"year": pl.Int32, "is_fraud": pl.Boolean, "fraud_scenario": pl.String,
                  "rows": pl.Int64, **{r: pl.Int64 for r in v.rule_set.rule_ids},
                  FLAGGED: pl.Int64}
        return self._counts[name].total(("year", "is_fraud", "fraud_scenario"), schema)

    def alerts_per_day(self, name: str) -> dict[str, float]:
        """Mean alerts per calendar day over the data's span (days without alerts count) and
        the 95th-percentile day."""
        if self.first_day is None or self.last_day is None:
            return {"days": 0, "mean": 0.0, "p95": 0.0, "max": 0.0}
        daily = self._daily.total(("day",), {"day": pl.Int64})
        span = self.last_day - self.first_day + 1
        per_day = np.zeros(span, dtype=np.int64)
        per_day[daily["day"].to_numpy() - self.first_day] = daily[f"alerts_{name}"].to_numpy()
        return {"days": int(span), "mean": float(per_day.mean()),
                "p95": float(np.percentile(per_day, 95)), "max": float(per_day.max())}

    def flips(self, pair: tuple[str, str]) -> dict:
        """``{rule_id_or_flagged: {"gained", "lost", "by_year", "by_scenario"}}``."""
        df = self._flips[pair].total(("year", "fraud_scenario"), {"year": pl.Int32})
        rids = sorted({c.split("__", 1)[1] for c in df.columns if "__" in c},
                      key=lambda r: (r == FLAGGED, r))
        out = {}
        for rid in rids:
            g, lost = f"gained__{rid}", f"lost__{rid}"
            by_year = df.group_by("year").agg(pl.col(g, lost).sum()).sort("year")
            by_scen = (df.filter(pl.col("fraud_scenario").is_not_null())
                       .group_by("fraud_scenario").agg(pl.col(g, lost).sum())
                       .sort("fraud_scenario"))
            out[rid] = {
                "gained": int(df[g].sum()), "lost": int(df[lost].sum()),
                "by_year": {str(y): {"gained": int(a), "lost": int(b)}
                            for y, a, b in by_year.iter_rows() if a or b},
                "by_scenario": {s: {"gained": int(a), "lost": int(b)}
                                for s, a, b in by_scen.iter_rows() if a or b},
            }
        return out

    def flip_sample(self, pair: tuple[str, str]) -> list[dict]:
        return list(self._samples[pair])

    def drift(self, name: str) -> pl.DataFrame:
        """Per (year, month) and rule (and ``flagged``): rows, fired, flag rate, precision,
        recall — a decaying rule shows as a falling line."""
        v = self.variants[name]
        monthly = self._monthly[name].total(("year", "month", "is_fraud"), {"year": pl.Int32})
        rules = [*v.rule_set.rule_ids, FLAGGED]
        if monthly.height == 0:
            return pl.DataFrame()
        fraud = pl.col("is_fraud").fill_null(False)
        parts = []
        for rid in rules:
            parts.append(monthly.group_by("year", "month").agg(
                pl.lit(rid).alias("rule"), pl.col("rows").sum(),
                (pl.col("rows") * fraud).sum().alias("fraud"),
                pl.col(rid).sum().alias("fired"),
                (pl.col(rid) * fraud).sum().alias("true_pos")))
        df = pl.concat(parts).with_columns(
            flag_rate=pl.col("fired") / pl.col("rows"),
            precision=pl.when(pl.col("fired") > 0).then(pl.col("true_pos") / pl.col("fired")),
            recall=pl.when(pl.col("fraud") > 0).then(pl.col("true_pos") / pl.col("fraud")))
        return df.sort("rule", "year", "month")

    def rule_value(self, name: str) -> dict:
        """Per rule: recall and precision of the set without it (its marginal contribution),
        and the overlap matrix (alerts in which both rules fired)."""
        v = self.variants[name]
        counts = self.counts(name)
        fraud_rows = int(counts.filter(pl.col("is_fraud").fill_null(False))["rows"].sum())
        flagged = int(counts[FLAGGED].sum())
        tp = int(counts.filter(pl.col("is_fraud").fill_null(False))[FLAGGED].sum())
        parts = self._value[name].frames
        totals = pl.concat(parts).sum() if parts else None
        rules = {}
        for rid in v.rule_set.rule_ids:
            n = int(totals[f"without_{rid}"][0]) if totals is not None else 0
            t = int(totals[f"without_{rid}_fraud"][0]) if totals is not None else 0
            rules[rid] = {
                "alerts_without": n, "recall_without": _ratio(t, fraud_rows),
                "precision_without": _ratio(t, n),
                "recall_lost_pp": _pp(_ratio(tp, fraud_rows), _ratio(t, fraud_rows)),
                "alerts_only_this_rule_adds": flagged - n,
            }
        ids = list(v.rule_set.rule_ids)
        matrix = self._overlap[name]
        return {"set": {"alerts": flagged, "recall": _ratio(tp, fraud_rows),
                        "precision": _ratio(tp, flagged)},
                "rules": rules,
                "overlap": {a: {b: int(matrix[i, j]) for j, b in enumerate(ids)}
                            for i, a in enumerate(ids)}}

    def detection_speed(self, name: str) -> dict:
        """Per fraud scenario, over incidents (a card's fraud events of one scenario, a new
        incident after a gap of more than 30 days): how many fraud events and how much money
        went through before the first alert, and the share never alerted."""
        fraud = self._fraud.frames
        if not fraud:
            return {}
        df = pl.concat(fraud, how="diagonal_relaxed").sort("user_id", "ts_us", "transaction_id")
        return incidents_report(df, f"flagged_{name}")


def incidents_report(fraud_rows: pl.DataFrame, flag_col: str) -> dict:
    """Detection speed from fraud rows sorted by (user_id, ts_us, transaction_id)."""
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
            "never_alerted_share": _ratio(g.height - alerted.height, g.height),
            "fraud_events": int(g["events"].sum()),
            "median_events_before_first_alert": _median(alerted["events_before"]),
            "mean_events_before_first_alert": _mean(alerted["events_before"]),
            "median_money_before_first_alert": _money_or_none(_median(alerted["cents_before"])),
            "money_before_first_alert": _money(int(g["cents_before"].sum())),
            "money_total": _money(int(g["cents"].sum())),
        }
    return dict(sorted(out.items()))


# --- helpers ------------------------------------------------------------------------------------

def _base(chunk: pl.DataFrame) -> pl.DataFrame:
    ts = pl.col("ts_us")
    dt = pl.from_epoch(ts, time_unit="us")
    return chunk.select(*CHUNK_COLUMNS).with_columns(
        year=dt.dt.year().cast(pl.Int32), month=dt.dt.month().cast(pl.Int32),
        day=(ts // DAY_US).cast(pl.Int64))


def _evidence_at(evidence: Mapping[str, Mapping[str, np.ndarray]] | None,
                 cols: Mapping[str, str], fired: Mapping[str, np.ndarray], i: int) -> dict:
    if not evidence:
        return {}
    out = {}
    for rid, col in cols.items():
        if fired[col][i] and col in evidence:
            out[rid] = {k: _plain(v[i]) for k, v in evidence[col].items()}
    return out


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    return value


def _money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    cents = abs(int(cents))
    return f"{sign}{cents // 100}.{cents % 100:02d}"


def _money_or_none(cents: float | None) -> str | None:
    return None if cents is None else _money(round(cents))


def _median(s: pl.Series) -> float | None:
    return None if s.len() == 0 else float(s.median())  # type: ignore[arg-type]


def _mean(s: pl.Series) -> float | None:
    return None if s.len() == 0 else float(s.mean())  # type: ignore[arg-type]


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _pp(before: float | None, after: float | None) -> float | None:
    if before is None or after is None:
        return None
    return round(100 * (before - after), 4)


def _min(a: int | None, b: int) -> int:
    return b if a is None else min(a, b)


def _max(a: int | None, b: int) -> int:
    return b if a is None else max(a, b)


EMPTY: Mapping[str, np.ndarray] = MappingProxyType({})
