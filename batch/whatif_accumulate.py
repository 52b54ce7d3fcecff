"""The what-if aggregates of several variants over the chunks of one pass (``WhatIf``).

Per chunk everything is counted with ``np.bincount`` over one small integer key per row
(month and label); only the rare rows with a fraud scenario (a fraction of a per cent) are
grouped by Polars. Kept between chunks: those count cells, alerts per day, the "without this
rule" sums and overlap matrices, a fixed-size random sample of flips and, only when detection
speed is wanted, the fraud rows. Memory is therefore independent of the history's length except
for those fraud rows. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from batch.whatif import FLAGGED, FRAUD, NO_MONTH, ChunkRows, Variant, variant_flags, variant_score
from batch.whatif_results import drift_frame, flips_dict, money, rule_value_dict
from batch.whatif_speed import incidents_report

DAY_US = 86_400_000_000
Pair = tuple[str, str]


class WhatIf:
    """Aggregates of ``variants`` over the chunks of one pass.

    ``pairs``: (a, b) names to diff (gained = fires under b, not a); ``value``: the variants
    whose rule value (set without each rule, overlap) is wanted; ``sample``: flips kept per
    pair (half gained, half lost when there are enough of both; a seeded random sample over
    the whole pass); ``speed``: keep the fraud rows for ``detection_speed`` (they grow with
    the history: the one accumulator that does).
    """

    def __init__(self, variants: Mapping[str, Variant], pairs: Sequence[Pair] = (),
                 sample: int = 20, value: Sequence[str] | None = None, seed: int = 17,
                 speed: bool = True) -> None:
        self.variants = dict(variants)
        self.pairs = list(pairs)
        self.sample = sample
        self.speed = speed
        self.value = list(self.variants) if value is None else list(value)
        self._flag_col = {name: f"f{i}" for i, name in enumerate(self.variants)}
        self._cells: list[pl.DataFrame] = []
        self._daily: list[tuple[int, dict[str, np.ndarray]]] = []
        self._without = {n: np.zeros((len(self.variants[n].columns), 2), np.int64)
                         for n in self.value}
        self._overlap = {n: np.zeros((len(self.variants[n].columns),) * 2, np.int64)
                         for n in self.value}
        self._samples: dict[Pair, dict[str, list[tuple[float, dict]]]] = {
            p: {"gained": [], "lost": []} for p in self.pairs}
        self._fraud: list[pl.DataFrame] = []
        self._rng = np.random.default_rng(seed)
        self.first_day: int | None = None
        self.last_day: int | None = None

    # --- per chunk -------------------------------------------------------------------------------

    def add(self, rows: ChunkRows, fired: Mapping[str, np.ndarray]) -> None:
        """One decided chunk: ``fired`` has one bool array per combined rule column."""
        n = len(rows)
        if n == 0:
            return
        flags = {name: variant_flags(v, fired, n) for name, v in self.variants.items()}
        decided = {**fired, **{self._flag_col[k]: f for k, f in flags.items()}}
        for a, b in self.pairs:
            decided.update(self._flip_bits(rows, (a, b), fired, flags))
        self._cells.append(cells(rows, decided))
        if len(self._cells) >= 8:
            self._cells = [self._total()]
        self._add_daily(rows, flags)
        for name in self.value:
            self._add_value(name, fired, flags[name], rows.label == FRAUD)
        fraud = np.flatnonzero(rows.label == FRAUD) if self.speed else np.empty(0, np.int64)
        if len(fraud):
            self._fraud.append(pl.DataFrame({
                "user_id": rows.user_id[fraud], "ts_us": rows.ts_us[fraud],
                "transaction_id": rows.ids(fraud),
                "amount_cents": rows.amount_cents[fraud],
                "fraud_scenario": rows.scenarios(fraud),
                **{f"flagged_{k}": f[fraud] for k, f in flags.items()}}))

    def _flip_bits(self, rows: ChunkRows, pair: Pair, fired: Mapping[str, np.ndarray],
                   flags: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        a, b = (self.variants[x] for x in pair)
        a_cols = dict(zip(a.rule_set.rule_ids, a.columns, strict=True))
        b_cols = dict(zip(b.rule_set.rule_ids, b.columns, strict=True))
        out = {}
        tag = self.pairs.index(pair)
        never = np.zeros(len(rows), dtype=bool)
        for rid in [*a_cols, *(r for r in b_cols if r not in a_cols), FLAGGED]:
            if rid != FLAGGED and a_cols.get(rid) == b_cols.get(rid):
                continue  # the same decided column: nothing flips
            fa = flags[pair[0]] if rid == FLAGGED else fired.get(a_cols.get(rid, ""), never)
            fb = flags[pair[1]] if rid == FLAGGED else fired.get(b_cols.get(rid, ""), never)
            gained, lost = fb & ~fa, fa & ~fb  # a rule in one set only never fires in the other
            out[f"g{tag}:{rid}"], out[f"l{tag}:{rid}"] = gained, lost
            if rid == FLAGGED:
                self._sample(pair, rows, gained, lost, fired, a_cols, b_cols)
        return out

    def _sample(self, pair: Pair, rows: ChunkRows, gained: np.ndarray, lost: np.ndarray,
                fired: Mapping[str, np.ndarray], a_cols: Mapping[str, str],
                b_cols: Mapping[str, str]) -> None:
        """A seeded random sample: every flip gets a random key, the smallest keys are kept."""
        quota = self.sample  # of each kind; flip_sample balances the two
        for how, mask in (("gained", gained), ("lost", lost)):
            idx = np.flatnonzero(mask)
            if quota == 0 or len(idx) == 0:
                continue
            keys = self._rng.random(len(idx))
            best = np.argsort(keys)[:quota]
            kept = self._samples[pair][how]
            for j in best:
                i = int(idx[j])
                if len(kept) >= quota and keys[j] >= kept[-1][0]:
                    break
                kept.append((float(keys[j]), {
                    "flip": how, "transaction_id": rows.transaction_id[i].as_py(),
                    "user_id": int(rows.user_id[i]), "ts_us": int(rows.ts_us[i]),
                    "amount": money(int(rows.amount_cents[i])),
                    "is_fraud": _label(int(rows.label[i])),
                    "fraud_scenario": rows.scenario[i].as_py(),
                    "a_fired": [r for r, c in a_cols.items() if fired[c][i]],
                    "b_fired": [r for r, c in b_cols.items() if fired[c][i]]}))
                kept.sort(key=lambda kv: kv[0])
                del kept[quota:]

    def _add_daily(self, rows: ChunkRows, flags: Mapping[str, np.ndarray]) -> None:
        timed = rows.month != NO_MONTH
        if not timed.any():
            return
        day = rows.ts_us // DAY_US
        lo, hi = int(day[timed].min()), int(day[timed].max())
        self.first_day = lo if self.first_day is None else min(self.first_day, lo)
        self.last_day = hi if self.last_day is None else max(self.last_day, hi)
        span = hi - lo + 1
        self._daily.append((lo, {k: np.bincount(day[f] - lo, minlength=span)
                                 for k, f in flags.items()}))

    def _add_value(self, name: str, fired: Mapping[str, np.ndarray], flagged: np.ndarray,
                   fraud: np.ndarray) -> None:
        v = self.variants[name]
        units, threshold = v.units()
        score = variant_score(v, fired, len(flagged))
        for k, (col, u) in enumerate(zip(v.columns, units, strict=True)):
            without = flagged.copy()
            hit = fired[col] & flagged
            without[hit] = score[hit] - u >= threshold
            self._without[name][k] += (int(without.sum()), int((without & fraud).sum()))
        idx = np.flatnonzero(flagged)
        matrix = np.stack([fired[c][idx] for c in v.columns]).astype(np.int64)
        self._overlap[name] += matrix @ matrix.T

    # --- results ---------------------------------------------------------------------------------

    def _total(self) -> pl.DataFrame:
        """The cells summed over chunks: one row per (month, label, fraud_scenario)."""
        keys = ["month", "label", "fraud_scenario"]
        if not self._cells:
            return pl.DataFrame(schema={"month": pl.Int64, "label": pl.Int8,
                                        "fraud_scenario": pl.String, "rows": pl.Int64})
        df = pl.concat(self._cells, how="diagonal_relaxed")
        values = [c for c in df.columns if c not in keys]
        return df.with_columns(pl.col(values).fill_null(0)).group_by(keys).agg(
            pl.col(values).sum()).sort(keys, nulls_last=True)

    def _decoded(self) -> pl.DataFrame:
        """The cells with year, month (NULL without a time) and is_fraud decoded."""
        month = pl.col("month")
        timed = month != NO_MONTH
        return self._total().with_columns(
            year=pl.when(timed).then((month - 1) // 12).cast(pl.Int32),
            month=pl.when(timed).then((month - 1) % 12 + 1).cast(pl.Int32),
            is_fraud=pl.col("label").cast(pl.Int64).replace_strict(
                {0: None, 1: False, 2: True}, return_dtype=pl.Boolean))

    def _variant_cells(self, name: str) -> pl.DataFrame:
        """Cells with the variant's rule ids and ``flagged``."""
        v = self.variants[name]
        df = self._decoded()
        return df.select(
            "year", "month", "is_fraud", "fraud_scenario", "rows",
            **{rid: _col(df, c) for rid, c in zip(v.rule_set.rule_ids, v.columns, strict=True)},
            **{FLAGGED: _col(df, self._flag_col[name])})

    def counts(self, name: str) -> pl.DataFrame:
        """The variant's counts frame (``batch.hitrates``): one row per (year, is_fraud,
        fraud_scenario) with ``rows``, one count per rule id and ``flagged``."""
        df = self._variant_cells(name)
        keys = ["year", "is_fraud", "fraud_scenario"]
        values = [c for c in df.columns if c not in (*keys, "month")]
        return df.group_by(keys).agg(pl.col(values).sum()).sort(keys, nulls_last=True)

    def drift(self, name: str) -> pl.DataFrame:
        """Per rule (and ``flagged``), year and month: rows, fired, flag rate, precision and
        recall — a decaying rule shows as a falling line."""
        v = self.variants[name]
        return drift_frame(self._variant_cells(name), [*v.rule_set.rule_ids, FLAGGED])

    def alerts_per_day(self, name: str) -> dict[str, float]:
        """Mean alerts per calendar day over the data's span (days without alerts count) and
        the 95th-percentile day."""
        if self.first_day is None or self.last_day is None:
            return {"days": 0, "mean": 0.0, "p95": 0.0, "max": 0.0}
        per_day = np.zeros(self.last_day - self.first_day + 1, dtype=np.int64)
        for lo, counts in self._daily:
            c = counts[name]
            per_day[lo - self.first_day: lo - self.first_day + len(c)] += c
        return {"days": len(per_day), "mean": float(per_day.mean()),
                "p95": float(np.percentile(per_day, 95)), "max": float(per_day.max())}

    def flips(self, pair: Pair) -> dict:
        """``{rule_id_or_flagged: {"gained", "lost", "by_year", "by_scenario"}}``."""
        a, b = (self.variants[x] for x in pair)
        tag = self.pairs.index(pair)
        rids = sorted({*a.rule_set.rule_ids, *b.rule_set.rule_ids}) + [FLAGGED]
        df = self._decoded()
        frame = df.select("year", "fraud_scenario", **{
            f"{side}__{rid}": _col(df, f"{side[0]}{tag}:{rid}")
            for rid in rids for side in ("gained", "lost")})
        return flips_dict(frame, rids)

    def flip_sample(self, pair: Pair) -> list[dict]:
        """At most ``sample`` flips, half gained and half lost when both are that many (else
        the other kind fills in); gained first, each kind in time order."""
        gained, lost = ([row for _k, row in self._samples[pair][how]]
                        for how in ("gained", "lost"))
        n_gained = min(len(gained), max(self.sample - len(lost), (self.sample + 1) // 2))
        picked = gained[:n_gained] + lost[:self.sample - n_gained]
        return sorted(picked, key=lambda r: (r["flip"] != "gained", r["ts_us"],
                                             r["transaction_id"]))

    def rule_value(self, name: str) -> dict:
        """Per rule: recall and precision of the set without it (its marginal contribution),
        and the overlap matrix (alerts in which both rules fired)."""
        v = self.variants[name]
        return rule_value_dict(self.counts(name), v.rule_set.rule_ids, self._without[name],
                               self._overlap[name])

    def detection_speed(self, name: str) -> dict:
        """Per fraud scenario and incident (``batch.whatif_speed``); needs ``speed``."""
        if not self.speed:
            raise ValueError("detection_speed needs WhatIf(speed=True)")
        if not self._fraud:
            return {}
        df = pl.concat(self._fraud, how="vertical_relaxed").sort(
            "user_id", "ts_us", "transaction_id")
        return incidents_report(df, f"flagged_{name}")


def cells(rows: ChunkRows, decided: Mapping[str, np.ndarray]) -> pl.DataFrame:
    """Per (month, label, fraud_scenario): ``rows`` and how many rows each decided column
    holds. A bincount per column over the month-label key; the rows with a scenario (rare)
    are taken out and grouped by Polars."""
    key = rows.month * 4 + rows.label
    lo = int(key.min())
    k = key - lo
    size = int(k.max()) + 1
    plain = {"key": np.arange(size) + lo, "rows": np.bincount(k, minlength=size)}
    for name, bits in decided.items():
        plain[name] = np.bincount(k[bits], minlength=size)
    rare = rows.with_scenario()
    frames = []
    if len(rare):
        by = pl.DataFrame({"key": key[rare], "fraud_scenario": rows.scenarios(rare),
                           **{name: bits[rare] for name, bits in decided.items()}})
        frames.append(by.group_by("key", "fraud_scenario").agg(
            pl.len().cast(pl.Int64).alias("rows"),
            *[pl.col(c).sum().cast(pl.Int64) for c in decided]))
        kr = k[rare]
        plain["rows"] = plain["rows"] - np.bincount(kr, minlength=size)
        for name, bits in decided.items():
            plain[name] = plain[name] - np.bincount(kr[bits[rare]], minlength=size)
    common = pl.DataFrame(plain).filter(pl.col("rows") > 0).with_columns(
        fraud_scenario=pl.lit(None, pl.String))
    out = pl.concat([f.select("key", "fraud_scenario", "rows", *decided).cast(
        {"key": pl.Int64, "rows": pl.Int64, **dict.fromkeys(decided, pl.Int64)})
        for f in [common, *frames]])
    return out.select((pl.col("key") // 4).alias("month"),
                      (pl.col("key") % 4).cast(pl.Int8).alias("label"),
                      "fraud_scenario", "rows", *decided)


def _col(df: pl.DataFrame, name: str) -> pl.Expr:
    return pl.col(name) if name in df.columns else pl.lit(0, pl.Int64)


def _label(code: int) -> bool | None:
    return {0: None, 1: False, 2: True}[code]
