"""Match scores from returns, and tallies of scores."""

from __future__ import annotations

import math

import pytest

from mpimarl.league.outcomes import ParReference, match_score, pairwise_score, rank_sides, score_class, tally


def test_match_score_without_margin() -> None:
    assert match_score(1.0, -1.0) == 1.0
    assert match_score(-1.0, 1.0) == 0.0
    assert match_score(0.3, 0.3) == 0.5


def test_match_score_draw_margin() -> None:
    assert match_score(10.0, 9.5, draw_margin=1.0) == 0.5
    assert match_score(9.5, 10.0, draw_margin=1.0) == 0.5
    assert match_score(10.0, 8.5, draw_margin=1.0) == 1.0
    assert match_score(8.5, 10.0, draw_margin=1.0) == 0.0


@pytest.mark.parametrize(
    ("own", "other", "margin"), [(math.nan, 0.0, 0.0), (0.0, math.inf, 0.0), (1.0, 0.0, -0.1)]
)
def test_match_score_rejects_bad_input(own: float, other: float, margin: float) -> None:
    with pytest.raises(ValueError):
        match_score(own, other, draw_margin=margin)


def test_tally() -> None:
    assert tally([1.0, 0.5, 0.0, 1.0, 1, 0]) == (3, 1, 2)
    assert tally([]) == (0, 0, 0)
    with pytest.raises(ValueError, match=r"0\.7"):
        tally([1.0, 0.7])


# ---- sides, ranks and the par reference ---------------------------------------------------------


def test_two_sides_rank_like_match_score() -> None:
    assert rank_sides([1.0, -1.0]) == [0, 1]
    assert rank_sides([-1.0, 1.0]) == [1, 0]
    assert rank_sides([0.3, 0.0], margin=0.5) == [0, 0]
    for own, other in [(1.0, -1.0), (0.0, 0.0), (-2.0, 3.0)]:
        assert pairwise_score(rank_sides([own, other]), 0) == match_score(own, other)


def test_free_for_all_ranks_and_pairwise_scores() -> None:
    ranks = rank_sides([5.0, 1.0, 5.0, -3.0, 2.0])
    assert ranks == [0, 3, 0, 4, 2]
    assert pairwise_score(ranks, 0) == (0.5 + 1 + 1 + 1) / 4
    assert pairwise_score(ranks, 3) == 0.0
    assert score_class(pairwise_score(ranks, 0)) == 0.5  # shared first place is tallied as a draw
    assert score_class(1.0) == 1.0 and score_class(0.0) == 0.0


def test_rank_sides_rejects_nan() -> None:
    with pytest.raises(ValueError, match="finite"):
        rank_sides([1.0, float("nan")])


def test_par_standing_places_returns_in_their_own_roles_distribution() -> None:
    # simple_tag-like: predators mostly score 0, prey mostly lose a little to the boundary.
    par = ParReference({"predator": [0, 0, 0, 10, 10, 20], "prey": [-30, -20, -15, -10, -5, 0]})
    assert par.standing("predator", 10) == pytest.approx((3 + 1) / 6)
    assert par.standing("predator", 30) == 1.0
    assert par.standing("prey", -100) == 0.0
    # A predator that catches twice out-ranks a prey caught twice (-20): both roles can win and lose.
    assert rank_sides([par.standing("predator", 20), par.standing("prey", -20)]) == [0, 1]
    assert rank_sides([par.standing("predator", 0), par.standing("prey", 0)]) == [1, 0]
    assert par.mean("predator") == pytest.approx(40 / 6)
    with pytest.raises(ValueError, match="prey"):
        ParReference({"prey": []})
