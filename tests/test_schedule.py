"""The generation schedule: how a trainer's total steps split into generations (schedule.generation_growth)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mpimarl.config import ScheduleConfig


def _budgets(sched: ScheduleConfig) -> list[int]:
    return [sched.generation_budget(g) for g in range(sched.generations())]


def test_fixed_budget_splits_total_with_a_remainder() -> None:
    sched = ScheduleConfig(total_steps=250, steps_per_generation=100)
    assert sched.generations() == 3
    assert _budgets(sched) == [100, 100, 50]
    assert sched.generation_budget(3) == 0
    assert list(sched.generation_steps()) == [100, 100, 50]


def test_growth_multiplies_each_budget_and_sums_to_total() -> None:
    sched = ScheduleConfig(total_steps=1000, steps_per_generation=100, generation_growth=2.0)
    assert _budgets(sched) == [100, 200, 400, 300]  # the last takes the remainder
    assert sched.generations() == 4
    assert sched.generation_budget(4) == 0


def test_growth_stops_at_the_cap() -> None:
    sched = ScheduleConfig(total_steps=1000, steps_per_generation=100, generation_growth=1.5,
                           max_steps_per_generation=200)
    budgets = _budgets(sched)
    assert budgets[:3] == [100, 150, 200]
    assert max(budgets) == 200 and sum(budgets) == 1000


def test_growth_one_matches_the_closed_form_over_many_generations() -> None:
    sched = ScheduleConfig(total_steps=1_000_003, steps_per_generation=1000, generation_growth=1.0)
    grown = ScheduleConfig(total_steps=1_000_003, steps_per_generation=1000, generation_growth=1.0 + 1e-12)
    assert sched.generations() == grown.generations() == 1001
    assert sched.generation_budget(1000) == grown.generation_budget(1000) == 3


@pytest.mark.parametrize("fields", [{"generation_growth": 0.9}, {"max_steps_per_generation": 50}])
def test_bad_growth_settings_are_rejected_by_name(fields: dict) -> None:
    with pytest.raises(ValidationError, match="generation"):
        ScheduleConfig(total_steps=1000, steps_per_generation=100, **fields)
