"""The Bertrand pricing example (examples/bertrand): a PettingZoo env that mpimarl trains as it is."""

from __future__ import annotations

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test

from examples.bertrand.pricing import BertrandEnv, Market, monopoly_price, nash_price, parallel_env
from mpimarl.cli import main
from tests.conftest import REPO

CONFIG = REPO / "examples" / "bertrand" / "bertrand.yaml"


def test_passes_pettingzoos_parallel_api_test() -> None:
    parallel_api_test(parallel_env(horizon=30), num_cycles=100)


def test_passes_mpimarls_env_checker_through_its_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(CONFIG), "--episodes", "2"]) == 0
    out = capsys.readouterr().out
    assert "role firm: agents firm_0, firm_1; obs 30, actions Discrete(15), one seat per agent" in out
    assert "'mean_length': 100.0" in out


def test_market_reproduces_calvano_et_al_benchmarks() -> None:
    """p_N = 1.473 and p_M = 1.925 (Calvano et al. 2020, section II): Nash is a best response to itself."""
    market = Market()
    assert market.nash_price == pytest.approx(1.4729, abs=1e-4)
    assert market.monopoly_price == pytest.approx(1.9250, abs=1e-4)
    deviations = np.linspace(1.0, 2.5, 301)
    own = [market.profits(np.array([p, market.nash_price]))[0] for p in deviations]
    assert deviations[int(np.argmax(own))] == pytest.approx(market.nash_price, abs=0.006)  # no profitable deviation
    joint = [market.profits(market.symmetric(p)).sum() for p in deviations]
    assert deviations[int(np.argmax(joint))] == pytest.approx(market.monopoly_price, abs=0.006)
    assert market.collusion_index(market.profits(market.symmetric(market.monopoly_price))[0]) == pytest.approx(1.0)


def test_state_is_last_prices_own_first_and_rewards_are_profits() -> None:
    env = BertrandEnv()
    env.reset(seed=3)
    obs, rewards, terms, truncs, infos = env.step({"firm_0": 2, "firm_1": 9})
    assert np.flatnonzero(obs["firm_0"]).tolist() == [2, 15 + 9]
    assert np.flatnonzero(obs["firm_1"]).tolist() == [9, 15 + 2]
    assert infos["firm_0"]["price"] == pytest.approx(env.grid[2])
    expected = env.market.profits(env.grid[[2, 9]])
    assert [rewards["firm_0"], rewards["firm_1"]] == pytest.approx(expected.tolist())
    assert rewards["firm_0"] > rewards["firm_1"]  # the cheaper firm sells more, at a margin
    assert not any(terms.values()) and not any(truncs.values())
    assert env.grid[nash_price(obs["firm_0"], None)] == pytest.approx(env.market.nash_price, abs=0.02)
    assert env.grid[monopoly_price(obs["firm_0"], None)] == pytest.approx(env.market.monopoly_price, abs=0.02)


def test_bad_parameters_are_named() -> None:
    with pytest.raises(ValueError, match="firms must be at least 2"):
        BertrandEnv(firms=1)
    with pytest.raises(ValueError, match="points"):
        BertrandEnv(points=1)
