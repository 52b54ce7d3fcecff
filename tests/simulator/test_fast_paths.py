"""The generator's fast paths give exactly what the plain computations give."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from simulator import build_world
from simulator.behaviour import _subscriptions, _subscriptions_of
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


def test_subscriptions_cut_from_the_world_table(world):
    cards = np.flatnonzero(np.random.default_rng(0).random(world.n_cards) < 0.4)
    for a, b in zip(_subscriptions_of(world, cards), _subscriptions(world, cards), strict=True):
        assert np.array_equal(a, b)


def test_the_subscription_table_built_in_chunks_is_the_whole_table(world, monkeypatch):
    from simulator import behaviour

    whole = behaviour._subscriptions(world, np.arange(world.n_cards))
    monkeypatch.setattr(behaviour, "_SUB_CHUNK", 333)  # chunk edges inside the cards
    behaviour._all_subscriptions.cache_clear()
    try:
        cards = np.arange(world.n_cards)
        for a, b in zip(_subscriptions_of(world, cards), whole, strict=True):
            assert np.array_equal(a, b) and a.dtype == b.dtype
    finally:
        behaviour._all_subscriptions.cache_clear()


def test_an_adopted_world_is_used_instead_of_a_new_build(world):
    copy = pickle.loads(pickle.dumps(world))  # what a worker process receives
    key = (world.seed, world.n_cards, world.start_year, world.end_year)
    saved = dict(_WORLDS)
    try:
        _WORLDS.clear()
        adopt_world(copy)
        assert build_world(*key) is copy
    finally:
        _WORLDS.clear()
        _WORLDS.update(saved)


def test_categories_are_drawn_as_by_the_flat_table_without_it(world):
    """``draw_categories`` gives exactly the categories of one ``searchsorted`` over the
    flattened ``card + cum`` table of all cards (the draw before it; same bytes), edge
    uniforms included, without building that table (8 bytes per card and category)."""
    from simulator.models import draw_categories

    cum = world.cards.category_cum
    n, k = cum.shape
    flat = (np.arange(n, dtype=np.float64)[:, None] + cum).ravel()
    rng = np.random.default_rng(7)
    cards = np.sort(rng.integers(0, n, 100_000)).astype(np.int32)
    u = rng.random(len(cards))
    u[:200] = 1.0 - np.ldexp(1.0, -rng.integers(1, 60, 200))  # just under 1: rounding edges
    u[200:300] = 0.0
    u[300:400] = cum[cards[300:400], rng.integers(0, k, 100)]  # exactly on a boundary
    value = cards + u
    want = np.minimum(np.searchsorted(flat, value, side="right") - cards.astype(np.int64) * k,
                      k - 1)
    assert np.array_equal(draw_categories(cum, cards, value), want)
    assert not hasattr(world.cards, "_flat")


def test_a_47m_history_is_written_one_piece_per_month():
    """Pieces bound the memory of big months; the default 47M history stays unsplit (its
    bytes are those of a single-piece month)."""
    from simulator.history import PIECE_ROWS
    from simulator.volume import rows_per_month

    assert max(rows_per_month(47_000_000, 2000, 2025)) <= PIECE_ROWS
    assert max(rows_per_month(470_000_000, 2000, 2025)) > 8 * PIECE_ROWS
