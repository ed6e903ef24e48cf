"""Match scores from returns, and tallies of scores."""

from __future__ import annotations

import math

import pytest

from mpimarl.league.outcomes import match_score, tally


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
