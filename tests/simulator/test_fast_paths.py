"""The generator's fast paths give exactly what the plain computations give."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from simulator import build_world
from simulator.behaviour import _all_subscriptions, _cut, _subscriptions, _widen
from simulator.cards import PERSONAS
from simulator.events import stable_order, to_frame, to_polars, to_table, transaction_ids
from simulator.history import generate_window, month_window, rng_for, weights
from simulator.world import _WORLDS, adopt_world


@pytest.fixture(scope="module")
def world():
    return build_world(13, 2_000)


def _plain_ids(prefix: str, first: int, n: int) -> list[str]:
    return [f"{prefix}{i:010d}" for i in range(first, first + n)]


@pytest.mark.parametrize("first,n", [(0, 0), (0, 1), (9_999, 2), (0, 10_001), (5_000, 20_000),
                                     (9_999_999_990, 10), (123_456_789, 31_234)])
def test_transaction_ids_match_the_plain_format(first: int, n: int):
    assert transaction_ids("202401-", first, n).to_pylist() == _plain_ids("202401-", first, n)


@pytest.mark.parametrize("n,span", [(0, 1), (1, 1), (7, 3), (50_000, 5), (50_000, 10**6),
                                    (20_000, 2**62)])
def test_stable_order_is_the_stable_argsort(n: int, span: int):
    ts = np.random.default_rng(n).integers(0, span, n, dtype=np.int64)
    assert np.array_equal(stable_order(ts), np.argsort(ts, kind="stable"))


def test_frames_built_directly_equal_the_arrow_route(world):
    win = month_window(world, 2024, 3)
    cum = weights(world, win)
    for seed, n in ((1, 30_000), (2, 3), (3, 1)):
        ev = generate_window(world, rng_for(seed), win, n, cum)
        direct = to_frame(world, ev, "L-", 7, win.tz)
        via_arrow = to_polars(to_table(world, ev, "L-", 7, win.tz))
        assert direct.schema == via_arrow.schema
        assert direct.equals(via_arrow)
        assert direct["device_id"].null_count() == (ev.device < 0).sum()


def _table_of(world) -> tuple[np.ndarray, ...]:
    return _all_subscriptions(world.seed, world.n_cards, world.start_year, world.end_year)


def test_subscriptions_cut_from_the_world_table(world):
    keep = np.random.default_rng(0).random(world.n_cards) < 0.4
    cut = _widen(_cut(_table_of(world), keep))
    for a, b in zip(cut, _subscriptions(world, np.flatnonzero(keep)), strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("parts", [1, 3])
def test_a_windows_subscriptions_are_those_of_its_open_cards(world, parts):
    """Found once per window (cached) and cut per piece: the subscriptions of the cards open
    in the window that the piece carries (``card % parts == part``)."""
    from simulator.behaviour import _window_subscriptions

    win = month_window(world, 2012, 5)
    k = world.cards
    open_ = np.flatnonzero((k.issue_s < win.end_s) & (k.close_s > win.start_s))
    seen = 0
    for part in range(parts):
        want = _subscriptions(world, open_[open_ % parts == part])
        got = _window_subscriptions(world, win, part, parts)
        assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
        seen += len(got[0])
    assert 0 < seen < len(_subscriptions(world, np.arange(world.n_cards))[0])


def test_the_subscription_table_built_in_chunks_is_the_whole_table(world, monkeypatch):
    from simulator import behaviour

    whole = behaviour._subscriptions(world, np.arange(world.n_cards))
    monkeypatch.setattr(behaviour, "_SUB_CHUNK", 333)  # chunk edges inside the cards
    behaviour._all_subscriptions.cache_clear()
    try:
        for a, b in zip(_widen(_table_of(world)), whole, strict=True):
            assert np.array_equal(a, b) and a.dtype == b.dtype
    finally:
        behaviour._all_subscriptions.cache_clear()


def test_an_adopted_world_is_used_instead_of_a_new_build(world):
    copy = pickle.loads(pickle.dumps(world))  # a world built elsewhere
    key = (world.seed, world.n_cards, world.start_year, world.end_year)
    saved = dict(_WORLDS)
    try:
        _WORLDS.clear()
        adopt_world(copy)
        assert build_world(*key) is copy
    finally:
        _WORLDS.clear()
        _WORLDS.update(saved)


def test_categories_are_drawn_as_by_each_profiles_searchsorted(world):
    """``draw_categories`` gives exactly ``searchsorted(cum[row], u, "right")`` (in float64,
    capped at the last category) for every event's spending profile, edge uniforms included."""
    from simulator.models import draw_categories

    cum = world.cards.persona_cum
    n, k = cum.shape
    rng = np.random.default_rng(7)
    rows = rng.integers(0, n, 100_000).astype(np.uint16)
    u = rng.random(len(rows))
    u[:200] = 1.0 - np.ldexp(1.0, -rng.integers(1, 60, 200))  # just under 1: rounding edges
    u[200:300] = 0.0
    u[300:400] = cum[rows[300:400], rng.integers(0, k, 100)]  # exactly on a boundary
    want = np.asarray([min(int(np.searchsorted(cum[r].astype(np.float64), x, "right")), k - 1)
                       for r, x in zip(rows.tolist(), u.tolist(), strict=True)])
    assert np.array_equal(draw_categories(cum, rows, u), want)
    # a card's profile is one of the PERSONAS rows: 2 bytes per card, not a mix per card
    assert world.cards.persona.dtype == np.uint16 and cum.shape[0] == PERSONAS


def test_a_47m_history_is_written_one_file_per_month():
    """Pieces (row groups) bound the memory of every month of 47M rows and more; files stay
    one per month at 47M rows (FILE_ROWS), several for the large months of 470M."""
    from batch.generate_history import FILE_ROWS
    from simulator.history import PIECE_ROWS
    from simulator.volume import rows_per_month

    assert max(rows_per_month(47_000_000, 2000, 2025)) <= FILE_ROWS
    assert max(rows_per_month(47_000_000, 2000, 2025)) > 4 * PIECE_ROWS
    assert max(rows_per_month(470_000_000, 2000, 2025)) > 2 * FILE_ROWS
