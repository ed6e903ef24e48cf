"""Ratings: per-role anchors, lineage seeding, merged seats, Elo and Plackett-Luce updates."""

from __future__ import annotations

import math

import pytest

from mpimarl.league.pool import RANDOM_KEY, SnapshotKey, baseline_key
from mpimarl.league.ratings import Ratings

A = SnapshotKey("player-0", 1)
B = SnapshotKey("player-1", 1)
C = SnapshotKey("player-2", 1)
ROLE = "player"


def make_ratings(*keys: SnapshotKey, role: str = ROLE) -> Ratings:
    """Ratings with the role's random anchor and `keys` registered from scratch."""
    ratings = Ratings()
    ratings.add_anchor(role, RANDOM_KEY)
    for key in keys:
        ratings.add(role, key, None)
    return ratings


def test_new_snapshots_and_random_anchor_start_at_the_initial_rating() -> None:
    ratings = make_ratings(A)
    r = ratings.rating(ROLE, A)
    assert (r.elo, r.mu, r.sigma, r.games) == (1000.0, 25.0, pytest.approx(25 / 3), 0)
    anchor = ratings.rating(ROLE, RANDOM_KEY)
    assert (anchor.elo, anchor.mu) == (1000.0, 25.0)
    assert 0.0 < anchor.sigma < 0.01
    assert ratings.is_anchor(ROLE, RANDOM_KEY) and not ratings.is_anchor(ROLE, A)
    assert (ROLE, A) in ratings and (ROLE, B) not in ratings


def test_a_win_against_the_anchor_raises_elo_and_mu_and_the_anchor_never_moves() -> None:
    ratings = make_ratings(A)
    before = ratings.rating(ROLE, RANDOM_KEY)
    for _ in range(3):
        ratings.rate_game([[(ROLE, A)], [(ROLE, RANDOM_KEY)]], [0, 1])
    r = ratings.rating(ROLE, A)
    assert r.elo > 1000.0 and r.mu > 25.0 and r.games == 3
    after = ratings.rating(ROLE, RANDOM_KEY)
    assert (after.elo, after.mu, after.sigma) == (before.elo, before.mu, before.sigma)


def test_one_duel_moves_elo_by_half_k() -> None:
    ratings = make_ratings(A, B)
    ratings.rate_game([[(ROLE, A)], [(ROLE, B)]], [0, 1])
    assert ratings.rating(ROLE, A).elo == pytest.approx(1008.0)  # K = 16, expected 0.5
    assert ratings.rating(ROLE, B).elo == pytest.approx(992.0)


def test_child_starts_at_its_parents_rating_with_full_uncertainty() -> None:
    ratings = make_ratings(A)
    for _ in range(5):
        ratings.rate_game([[(ROLE, A)], [(ROLE, RANDOM_KEY)]], [0, 1])
    parent = ratings.rating(ROLE, A)
    child = ratings.add(ROLE, SnapshotKey("player-0", 2), A)
    assert (child.elo, child.mu) == (parent.elo, parent.mu)
    assert child.sigma == pytest.approx(25 / 3) and parent.sigma < 25 / 3
    assert child.games == 0
    orphan = ratings.add(ROLE, SnapshotKey("player-0", 3), SnapshotKey("player-0", 99))
    assert (orphan.elo, orphan.mu) == (1000.0, 25.0)
    with pytest.raises(ValueError, match="already rated"):
        ratings.add(ROLE, A, None)


def test_one_key_in_three_seats_counts_once() -> None:
    ratings = make_ratings(A, B, C)
    seats = [[(ROLE, A)], [(ROLE, B)], [(ROLE, A)], [(ROLE, C)], [(ROLE, A)]]
    ratings.rate_game(seats, [0, 1, 3, 2, 4])
    a, b, c = (ratings.rating(ROLE, k) for k in (A, B, C))
    assert a.games == b.games == c.games == 1
    # A won a seat but its mean rank (7/3) is last: a three-way game of B > C > A.
    assert a.elo < 1000.0 < b.elo and a.mu < c.mu < b.mu
    reference = make_ratings(A, B, C)
    reference.rate_game([[(ROLE, B)], [(ROLE, C)], [(ROLE, A)]], [0, 1, 2])
    for key in (A, B, C):
        assert ratings.rating(ROLE, key) == reference.rating(ROLE, key)


def test_a_key_against_itself_rates_nobody() -> None:
    ratings = make_ratings(A)
    before = ratings.rating(ROLE, A)
    ratings.rate_game([[(ROLE, A)], [(ROLE, A)]], [0, 1])
    assert ratings.rating(ROLE, A) == before


def test_anchors_are_separate_per_role() -> None:
    ratings = Ratings()
    for role in ("predator", "prey"):
        ratings.add_anchor(role, RANDOM_KEY)
    ratings.add("predator", A, None)
    ratings.rate_game([[("predator", A)], [("prey", RANDOM_KEY)]], [0, 1])
    ratings.add_anchor("prey", baseline_key("scripted"), win_probability=0.75)
    assert ratings.rating("prey", baseline_key("scripted")).elo > 1000.0
    with pytest.raises(KeyError, match="predator"):
        ratings.rating("predator", baseline_key("scripted"))
    assert [(r, k) for r, k, _ in ratings.items("prey")] == [("prey", RANDOM_KEY), ("prey", baseline_key("scripted"))]
    assert len(ratings.items()) == 4


def test_scripted_anchor_sits_at_its_calibrated_elo_and_win_probability() -> None:
    ratings = make_ratings()
    scripted = baseline_key("scripted")
    ratings.add_anchor(ROLE, scripted, win_probability=0.9)
    r = ratings.rating(ROLE, scripted)
    assert r.elo == pytest.approx(1000.0 + 400.0 * math.log10(9.0))
    random = ratings.rating(ROLE, RANDOM_KEY)
    model = ratings.model
    p = model.predict_win([[model.rating(mu=r.mu, sigma=r.sigma)], [model.rating(mu=random.mu, sigma=random.sigma)]])
    assert p[0] == pytest.approx(0.9, abs=0.02)
    # re-fixing moves it, and it stays fixed under games
    ratings.add_anchor(ROLE, scripted, win_probability=0.5)
    assert ratings.rating(ROLE, scripted).elo == pytest.approx(1000.0)
    ratings.add(ROLE, A, None)
    ratings.rate_game([[(ROLE, A)], [(ROLE, scripted)]], [0, 1])
    assert ratings.rating(ROLE, scripted).elo == pytest.approx(1000.0)
    with pytest.raises(ValueError, match="win probability"):
        ratings.add_anchor(ROLE, scripted, win_probability=1.0)


def test_free_for_all_moves_winner_up_and_loser_down() -> None:
    ratings = make_ratings(A, B, C)
    ratings.rate_game([[(ROLE, A)], [(ROLE, B)], [(ROLE, C)]], [1, 0, 2])
    a, b, c = (ratings.rating(ROLE, k) for k in (A, B, C))
    assert b.elo > a.elo > c.elo and b.elo > 1000.0 > c.elo
    assert a.elo == pytest.approx(1000.0)  # one win, one loss against equals
    assert b.mu > 25.0 > c.mu
    assert b.elo - 1000.0 == pytest.approx(8.0)  # K / (n - 1) per pair: one duel's worth


def test_elo_deltas_do_not_depend_on_seat_order() -> None:
    first = make_ratings(A, B, C)
    second = make_ratings(A, B, C)
    for ratings in (first, second):  # unequal ratings before the game
        ratings.rate_game([[(ROLE, A)], [(ROLE, B)]], [0, 1])
    first.rate_game([[(ROLE, A)], [(ROLE, B)], [(ROLE, C)]], [2, 0, 1])
    second.rate_game([[(ROLE, C)], [(ROLE, A)], [(ROLE, B)]], [1, 2, 0])
    for key in (A, B, C):
        assert first.rating(ROLE, key).elo == pytest.approx(second.rating(ROLE, key).elo, abs=1e-12)


def test_ties_leave_equal_ratings_in_place() -> None:
    ratings = make_ratings(A, B)
    ratings.rate_game([[(ROLE, A)], [(ROLE, B)]], [0, 0])
    assert ratings.rating(ROLE, A).elo == pytest.approx(1000.0)
    assert ratings.rating(ROLE, A).mu == pytest.approx(ratings.rating(ROLE, B).mu)


def test_sigma_shrinks_with_games() -> None:
    ratings = make_ratings(A, B)
    sigmas = [ratings.rating(ROLE, A).sigma]
    for i in range(5):
        ratings.rate_game([[(ROLE, A)], [(ROLE, B)]], [i % 2, 1 - i % 2])
        sigmas.append(ratings.rating(ROLE, A).sigma)
    assert all(later < earlier for earlier, later in zip(sigmas, sigmas[1:]))


def test_team_members_share_the_teams_delta() -> None:
    ratings = make_ratings(A, B, C)
    ratings.rate_game([[(ROLE, A), (ROLE, B)], [(ROLE, C)]], [0, 1])
    a, b, c = (ratings.rating(ROLE, k) for k in (A, B, C))
    assert a.elo == pytest.approx(b.elo) and a.elo - 1000.0 == pytest.approx(1000.0 - c.elo)
    assert a.mu > 25.0 > c.mu and a.games == b.games == c.games == 1


def test_bad_games_name_the_problem() -> None:
    ratings = make_ratings(A)
    with pytest.raises(KeyError, match="player-1@1"):
        ratings.rate_game([[(ROLE, A)], [(ROLE, B)]], [0, 1])
    with pytest.raises(ValueError, match="one rank per side"):
        ratings.rate_game([[(ROLE, A)], [(ROLE, RANDOM_KEY)]], [0])
    with pytest.raises(ValueError, match="at least one member"):
        ratings.rate_game([[(ROLE, A)], []], [0, 1])
    with pytest.raises(ValueError, match="finite"):
        ratings.rate_game([[(ROLE, A)], [(ROLE, RANDOM_KEY)]], [0, math.nan])
    assert ratings.rating(ROLE, A).games == 0
    with pytest.raises(KeyError, match="player-1@1"):
        ratings.rating(ROLE, B)
