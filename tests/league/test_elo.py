"""EloTable: expected scores, zero-sum updates, anchors, lineage seeding."""

from __future__ import annotations

import math

import pytest

from mpimarl.league.elo import EloTable
from mpimarl.league.pool import RANDOM_KEY, SnapshotKey

A = SnapshotKey("player-0", 1)
B = SnapshotKey("player-1", 1)


def test_expected_score_is_symmetric_and_follows_the_logistic() -> None:
    elo = EloTable()
    assert elo.expected(A, B) == pytest.approx(0.5)
    elo.fix(B, 1400.0)
    assert elo.expected(A, B) == pytest.approx(1.0 / 11.0)
    assert elo.expected(B, A) == pytest.approx(10.0 / 11.0)
    assert elo.expected(A, B) + elo.expected(B, A) == pytest.approx(1.0)


def test_winner_gains_what_loser_loses() -> None:
    elo = EloTable(k=32.0, initial=1000.0)
    elo.update(A, B, 1.0)
    assert elo.rating(A) == pytest.approx(1016.0)
    assert elo.rating(B) == pytest.approx(984.0)
    before = elo.rating(A) + elo.rating(B)
    elo.update(A, B, 0.0)
    elo.update(A, B, 0.5)
    assert elo.rating(A) + elo.rating(B) == pytest.approx(before)
    assert elo.games(A) == elo.games(B) == 3


def test_draw_between_unequal_players_moves_them_together() -> None:
    elo = EloTable()
    elo.update(A, B, 1.0)
    elo.update(A, B, 0.5)
    assert elo.rating(A) < 1016.0 and elo.rating(B) > 984.0


def test_anchor_never_moves() -> None:
    elo = EloTable()
    elo.fix(RANDOM_KEY, 1000.0)
    for _ in range(20):
        elo.update(A, RANDOM_KEY, 1.0)
    elo.update(RANDOM_KEY, A, 1.0)
    assert elo.rating(RANDOM_KEY) == 1000.0
    assert elo.is_fixed(RANDOM_KEY) and not elo.is_fixed(A)
    assert elo.games(RANDOM_KEY) == 21
    assert elo.rating(A) > 1100.0


def test_many_wins_make_a_stronger_player() -> None:
    elo = EloTable()
    for _ in range(50):
        elo.update(A, B, 1.0)
    assert elo.rating(A) > 1200.0 > 800.0 > elo.rating(B)
    assert elo.expected(A, B) > 0.9
    # the gain per win shrinks as the expected score approaches 1
    before = elo.rating(A)
    elo.update(A, B, 1.0)
    assert 0.0 < elo.rating(A) - before < 16.0


@pytest.mark.parametrize("score", [1.5, -0.1, math.nan])
def test_update_rejects_scores_outside_unit_interval(score: float) -> None:
    with pytest.raises(ValueError, match="score"):
        EloTable().update(A, B, score)


def test_update_rejects_self_play() -> None:
    with pytest.raises(ValueError, match="itself"):
        EloTable().update(A, A, 1.0)


def test_update_many_interleaves_deterministically() -> None:
    batch, manual = EloTable(), EloTable()
    batch.update_many(A, B, wins=3, draws=1, losses=2)
    for score in (1.0, 0.5, 0.0, 1.0, 0.0, 1.0):
        manual.update(A, B, score)
    assert batch.items() == manual.items()
    assert batch.games(A) == 6
    # interleaving keeps an even batch near even; all wins then all losses would not
    even = EloTable()
    even.update_many(A, B, wins=10, draws=0, losses=10)
    assert abs(even.rating(A) - 1000.0) < 20.0


def test_update_many_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="losses"):
        EloTable().update_many(A, B, wins=1, draws=0, losses=-1)


def test_child_starts_at_parent_rating() -> None:
    elo = EloTable(initial=1200.0)
    parent = SnapshotKey("player-0", 0)
    elo.fix(RANDOM_KEY, 1000.0)
    for _ in range(5):
        elo.update(parent, RANDOM_KEY, 1.0)
    child = SnapshotKey("player-0", 1)
    assert elo.add_child(child, parent) == elo.rating(parent) != 1200.0
    assert elo.rating(child) == elo.rating(parent)
    assert elo.games(child) == 0
    assert elo.add_child(SnapshotKey("player-0", 2), SnapshotKey("ghost", 0)) == 1200.0
    assert elo.add_child(SnapshotKey("player-1", 0), None) == 1200.0
    with pytest.raises(ValueError, match="player-0@1"):
        elo.add_child(child, parent)


def test_items_lists_every_rated_key_sorted() -> None:
    elo = EloTable()
    elo.fix(RANDOM_KEY, 1000.0)
    elo.update(B, A, 1.0)
    keys = [key for key, _, _ in elo.items()]
    assert keys == sorted([A, B, RANDOM_KEY])
    assert dict((k, (r, g)) for k, r, g in elo.items())[B] == (pytest.approx(1016.0), 1)
