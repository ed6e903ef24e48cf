"""benchmarks/league.py's step-matched readings: a table compares runs at equal env steps, so a mark
the run never reached must read as missing, not as the run's final value."""

from __future__ import annotations

import math

import pandas as pd

from benchmarks.league import _at_steps


def test_a_step_mark_reads_the_last_generation_within_it_and_nothing_past_the_run() -> None:
    curve = pd.DataFrame({"steps_per_trainer": [0, 1_000_000, 2_000_000, 3_000_000],
                          "exploitability": [0.46, 0.30, 0.20, 0.25]})
    assert _at_steps(curve, 2_500_000) == 0.20   # the last generation within 2.5M steps
    assert _at_steps(curve, 3_000_000) == 0.25   # exactly at the end
    assert math.isnan(_at_steps(curve, 4_000_000))  # the run ended at 3M: no reading at 4M
    assert math.isnan(_at_steps(curve.iloc[:0], 1_000_000))
