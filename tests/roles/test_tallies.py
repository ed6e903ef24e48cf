"""Training match tallies: what a group leader or an IMPALA learner sums from its ranks and reports."""

from __future__ import annotations

import json
import math

from mpimarl.roles.tallies import Tally, finite_row, sum_tallies, tallies_to_json


def test_tallies_survive_json_and_sum_per_lineup() -> None:
    a = {0: Tally(2, 1.0, -1.0, 10.0, [1.0, 0.5]), 3: Tally(1, 0.0, 0.0, 4.0, [0.0])}
    b = {0: Tally(1, 2.0, -2.0, 6.0, [1.0])}
    parts = [json.loads(json.dumps(tallies_to_json(t))) for t in (a, b)]
    total = sum_tallies(parts)
    assert sorted(total) == [0, 3]
    assert total[0] == Tally(3, 3.0, -3.0, 16.0, [1.0, 0.5, 1.0])
    assert total[3] == Tally(1, 0.0, 0.0, 4.0, [0.0])


def test_finite_row_sends_none_for_nan_and_infinity() -> None:
    row = finite_row({"a": math.nan, "b": math.inf, "c": 1.5, "d": "x", "e": 3})
    assert row == {"a": None, "b": None, "c": 1.5, "d": "x", "e": 3}
    json.dumps(row, allow_nan=False)  # valid JSON
