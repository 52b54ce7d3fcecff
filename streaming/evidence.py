"""Why a flag was raised: per fired rule, the evidence a fraud analyst reads (docs/design.md table).

``evidence_json(rows, positions, fired, rule_set)`` → one JSON object per position, ``{rule_id:
{...}}`` over the rules that fired there. ``rows`` are the engine's decided rows, sorted by
``(user_id, ts, transaction_id)`` with the users' state rows as context, so every earlier event
a rule looked at is there. Pure and only run for flagged rows (a few per cent), so a plain loop.

Per kind (decimals as exact strings; ``text`` is a one-line summary for people)::

    amount_over        {amount, threshold}
    velocity_count     {n, window_seconds}            n = events counted in the window
    velocity_amount    {sum, total, window_seconds}
    local_hour         {local_time "HH:MM", start_hour, end_hour}
    impossible_travel  {from_city, to_city, from_lat, from_lon, km, minutes, kmh}
    amount_vs_history  {amount, median, ratio, history}   history = amounts in the median
    new_device         {device_id, devices_seen [...], lookback_days}
    in_list            {field, value}

e.g. impossible_travel: "Los Angeles → Moscow: 9,765 km in 15.5 min = 37,800 km/h".
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from decimal import Decimal

import numpy as np
import polars as pl

from rules.model import Rule

_US_PER_MIN = 60_000_000
MAX_DEVICES = 20  # devices_seen lists at most this many (the newest first)


class _Rows:
    """Column access for the evidence loops: numpy for numbers, lists for text (lazily)."""

    def __init__(self, frame: pl.DataFrame) -> None:
        self.frame = frame
        self.user = frame["user_id"].to_numpy()
        self.ts = frame["ts_us"].to_numpy()
        self.cents = (frame["amount"].cast(pl.Decimal(20, 2)) * 100).cast(pl.Int64).to_numpy()
        self._text: dict[str, list] = {}

    def text(self, column: str) -> list:
        if column not in self._text:
            self._text[column] = (self.frame[column].to_list() if column in self.frame.columns
                                  else [None] * self.frame.height)
        return self._text[column]

    def number(self, column: str) -> np.ndarray:
        return self.frame[column].to_numpy()


def _money(cents: int) -> str:
    return str(Decimal(int(cents)).scaleb(-2))


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _scope_mask(rule, rows: _Rows) -> np.ndarray:
    mask = np.ones(rows.frame.height, dtype=bool)
    for column, allowed in (("channel", rule.channels), ("category", rule.categories)):
        if allowed is not None:
            mask &= np.array([v in allowed for v in rows.text(column)], dtype=bool)
    return mask


def _window_back(rows: _Rows, i: int, window_us: int) -> range:
    """Positions j <= i of i's user with ts >= ts_i - window (sorted rows)."""
    lo, j = rows.ts[i] - window_us, i
    while j > 0 and rows.user[j - 1] == rows.user[i] and rows.ts[j - 1] >= lo:
        j -= 1
    return range(j, i + 1)


def _previous(rows: _Rows, i: int, k: int) -> range:
    """Up to k positions of i's user right before i."""
    j = i
    while j > 0 and i - j < k and rows.user[j - 1] == rows.user[i]:
        j -= 1
    return range(j, i)


def _velocity(rule, rows: _Rows, i: int, scope: np.ndarray) -> dict:
    p = rule.params
    window = p["window_seconds"]
    cap = p.get("max_amount")
    cap_cents = None if cap is None else int(cap * 100)
    picked = [j for j in _window_back(rows, i, window * 1_000_000)
              if scope[j] and (cap_cents is None or rows.cents[j] <= cap_cents)]
    if rule.kind == "velocity_count":
        out = {"n": len(picked), "window_seconds": window}
        if cap is not None:
            out["max_amount"] = _dec(cap)
        out["text"] = f"{len(picked)} in {window} s"
        return out
    total = _money(sum(int(rows.cents[j]) for j in picked))
    return {"sum": total, "total": _dec(p["total"]), "window_seconds": window,
            "text": f"{total} in {window} s (> {p['total']})"}


def _local_hour(rule, rows: _Rows, i: int) -> dict:
    local_s = int(rows.ts[i]) // 1_000_000 + int(rows.number("utc_offset_min")[i]) * 60
    hhmm = f"{local_s // 3600 % 24:02d}:{local_s // 60 % 60:02d}"
    p = rule.params
    return {"local_time": hhmm, "start_hour": p["start_hour"], "end_hour": p["end_hour"],
            "text": f"local time {hhmm}"}


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float, radius: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * radius * math.asin(math.sqrt(min(max(a, 0.0), 1.0)))


def _travel(rule, rows: _Rows, i: int) -> dict:
    p = rule.params
    lat, lon = rows.number("lat"), rows.number("lon")
    j = i - 1
    km = haversine_km(float(lat[j]), float(lon[j]), float(lat[i]), float(lon[i]),
                      p["earth_radius_km"])
    minutes = (int(rows.ts[i]) - int(rows.ts[j])) / _US_PER_MIN
    kmh = km / max(minutes / 60, p["min_hours"])
    cities = rows.text("city")
    src, dst = cities[j], cities[i]
    return {"from_city": src, "to_city": dst, "from_lat": float(lat[j]),
            "from_lon": float(lon[j]), "km": round(km, 1), "minutes": round(minutes, 1),
            "kmh": round(kmh), "text": f"{src or '?'} → {dst or '?'}: {km:,.0f} km in "
                                       f"{minutes:,.1f} min = {kmh:,.0f} km/h"}


def _median(cents: list[int]) -> Decimal:
    s = sorted(cents)
    n = len(s)
    mid = Decimal(s[n // 2]) if n % 2 else Decimal(s[n // 2 - 1] + s[n // 2]) / 2
    return mid.scaleb(-2)


def _history(rule, rows: _Rows, i: int) -> dict:
    prev = [int(rows.cents[j]) for j in _previous(rows, i, rule.params["history"])]
    median = _median(prev)
    amount = _money(int(rows.cents[i]))
    ratio = rule.params["ratio"]
    return {"amount": amount, "median": str(median), "ratio": str(ratio), "history": len(prev),
            "text": f"{amount} > {ratio} × median {median} of the last {len(prev)}"}


def _new_device(rule, rows: _Rows, i: int) -> dict:
    days = rule.params["lookback_days"]
    devices = rows.text("device_id")
    lo = rows.ts[i] - days * 86_400_000_000
    seen: list[str] = []
    for j in reversed(_previous(rows, i, i + 1)):
        if rows.ts[j] < lo:
            break
        d = devices[j] or None
        if d is not None and d not in seen:
            seen.append(d)
    return {"device_id": devices[i], "devices_seen": seen[:MAX_DEVICES], "lookback_days": days,
            "text": f"device {devices[i]} not among {len(seen)} seen in {days} days"}


def _in_list(rule, rows: _Rows, i: int) -> dict:
    field = rule.params["field"]
    value = rows.text(field)[i]
    return {"field": field, "value": value, "text": f"{field} {value} is listed"}


def _users_of(frame: pl.DataFrame, positions: np.ndarray, fired: dict[str, np.ndarray]
              ) -> tuple[pl.DataFrame, np.ndarray, dict[str, np.ndarray]]:
    """Only the rows of the users at ``positions`` (a few per cent of a batch), positions
    and fired flags mapped onto them: evidence looks at nothing else."""
    user = frame["user_id"].to_numpy()
    keep = np.isin(user, np.unique(user[positions]))
    new_pos = np.cumsum(keep) - 1
    return (frame.filter(pl.Series(keep)), new_pos[positions],
            {rid: arr[keep] for rid, arr in fired.items()})


def evidence_json(frame: pl.DataFrame, positions: np.ndarray, fired: dict[str, np.ndarray],
                  rule_set) -> list[str]:
    """``{rule_id: evidence}`` as JSON for each position (see the module docstring)."""
    frame, positions, fired = _users_of(frame, positions, fired)
    rows = _Rows(frame)
    scopes: dict[str, np.ndarray] = {}
    makers: dict[str, Callable[[Rule, _Rows, int], dict]] = {
        "amount_over": lambda r, rw, i: {
            "amount": _money(int(rw.cents[i])), "threshold": _dec(r.params["threshold"]),
            "text": f"{_money(int(rw.cents[i]))} > {r.params['threshold']}"},
        "local_hour": _local_hour, "impossible_travel": _travel,
        "amount_vs_history": _history, "new_device": _new_device, "in_list": _in_list,
    }
    out = []
    for i in positions.tolist():
        doc = {}
        for rule in rule_set.rules:
            if not fired[rule.id][i]:
                continue
            if rule.kind in ("velocity_count", "velocity_amount"):
                if rule.id not in scopes:
                    scopes[rule.id] = _scope_mask(rule, rows)
                doc[rule.id] = _velocity(rule, rows, i, scopes[rule.id])
            else:
                doc[rule.id] = makers[rule.kind](rule, rows, i)
        out.append(json.dumps(doc, ensure_ascii=False, separators=(",", ":")))
    return out
