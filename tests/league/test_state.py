"""Checkpoint state of rank 0's league, without MPI: every `to_state` survives JSON and restores a
component that behaves exactly as the original from then on (same draws, same ratings)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from mpimarl.league.league import EvalPlan, League, PlannedMatch, SideResults
from mpimarl.league.matchmaking import (
    MATCHMAKER_NAMES,
    load_matchmaker_state,
    make_matchmaker,
    matchmaker_state,
)
from mpimarl.league.outcomes import ParReference
from mpimarl.league.payoff import PayoffTable
from mpimarl.league.pool import RANDOM_KEY, PolicyPool, Snapshot, SnapshotKey
from mpimarl.league.ratings import Ratings
from mpimarl.rollout.evaluate import OWN
from mpimarl.rollout.seating import SeatedKey, random_key
from tests.league.test_league import _league, _snap, _two_seat_results


def _json(state: Any) -> Any:
    """What a checkpoint does to a state: JSON out and back (NaN allowed, as the store writes it)."""
    return json.loads(json.dumps(state, allow_nan=True))


def _weights(key: SnapshotKey) -> np.ndarray:
    return np.full(4, key.version, np.float32) + (0.5 if key.policy_id.endswith("1") else 0.0)


def _pool() -> PolicyPool:
    pool = PolicyPool()
    for v in range(3):
        for pid, role in (("pred-0", "predator"), ("prey-1", "prey")):
            parent = SnapshotKey(pid, v - 1) if v else None
            pool.add(Snapshot(SnapshotKey(pid, v), role, parent, 1, 100 * v, 0.25 * v, _weights(SnapshotKey(pid, v))))
    return pool


def test_pool_round_trip_keeps_order_lineage_and_weights() -> None:
    pool = _pool()
    back = PolicyPool.from_state(_json(pool.to_state()), _weights)
    assert [s.key for s in back] == [s.key for s in pool]
    for a, b in zip(pool, back):
        assert (a.role, a.parent, a.rank, a.env_steps, a.time) == (b.role, b.parent, b.rank, b.env_steps, b.time)
        np.testing.assert_array_equal(pool.weights(a.key), back.weights(b.key))
    assert back.policy_ids() == pool.policy_ids() and back.latest("pred-0").key == SnapshotKey("pred-0", 2)
    with pytest.raises(ValueError, match="already in the pool"):  # the restored pool keeps its rules
        back.add(pool.get(SnapshotKey("pred-0", 2)))


def test_ratings_round_trip_is_exact_and_rates_on_identically() -> None:
    ratings = Ratings(elo_k=24.0)
    a, b = ("player", SnapshotKey("p-0", 1)), ("player", SnapshotKey("p-1", 1))
    ratings.add_anchor("player", RANDOM_KEY)
    ratings.add_anchor("player", SnapshotKey("tactical", 0), win_probability=0.9)
    ratings.add(*a, None)
    ratings.add(*b, None)
    for ranks in ([0, 1], [1, 0], [0, 0], [0, 1]):
        ratings.rate_game([[a], [b]], ranks)
    back = Ratings.from_state(_json(ratings.to_state()))
    assert back.items() == ratings.items() and back.elo_k == 24.0
    assert back.is_anchor("player", SnapshotKey("tactical", 0))
    for r in (ratings, back):
        r.rate_game([[a], [("player", RANDOM_KEY)]], [0, 1])
    assert back.items() == ratings.items()  # bit-equal floats after more games


def test_payoff_round_trip_keeps_direct_pairwise_and_exact_entries() -> None:
    table = PayoffTable()
    table.add("p@1", "q@0", 3, 1, 2, 2.5, -2.5)
    table.add("p@1", "q@0+random", 1, 0, 0, 1.0, -1.0)
    table.set_exact("p@2", "q@0", 0.25, -0.25)
    back = PayoffTable.from_state(_json(table.to_state()))
    # repr compares NaN fields as equal (NaN != NaN under ==)
    assert repr(list(back.entries())) == repr(list(table.entries()))
    for row, member in (("p@1", "q@0"), ("p@1", "random"), ("p@2", "q@0")):
        assert repr(back.pair(row, member)) == repr(table.pair(row, member))
    assert math.isnan(back.get("p@2", "q@0").score)  # NaN survives the JSON trip
    np.testing.assert_array_equal(back.matrix(["p@1", "p@2"], ["q@0"], "value"),
                                  table.matrix(["p@1", "p@2"], ["q@0"], "value"))


def test_par_reference_round_trip() -> None:
    par = ParReference({"predator": [3.0, 1.0, 2.0], "prey": [-1.0, -5.0]})
    back = ParReference.from_state(_json(par.to_state()))
    assert back.roles() == par.roles()
    assert [back.standing("predator", x) for x in (0.0, 2.0, 9.0)] == [par.standing("predator", x)
                                                                       for x in (0.0, 2.0, 9.0)]


@pytest.mark.parametrize("name", MATCHMAKER_NAMES)
def test_every_matchmaker_round_trip_draws_the_same_lineups(name: str) -> None:
    pool = _pool()
    payoff = PayoffTable()
    payoff.add("pred-0@2", "prey-1@0", 5, 0, 1, 4.0, -4.0)
    payoff.add("prey-1@2", "pred-0@1", 1, 0, 5, -4.0, 4.0)
    original = make_matchmaker(name, window=2) if name == "psro" else make_matchmaker(name)
    rng = np.random.default_rng(0)
    learner = SnapshotKey("pred-0", 2)
    for snap in pool:
        original.on_publish(snap)
    original.lineups(pool, learner, "predator", ["prey"], 4, rng, payoff)
    original.lineups(pool, SnapshotKey("prey-1", 2), "prey", ["predator"], 4, rng, payoff)
    for opp in (SnapshotKey("prey-1", 0), SnapshotKey("prey-1", 1)):
        original.record_result(learner, opp, 1.0)

    restored = make_matchmaker(name, window=2) if name == "psro" else make_matchmaker(name)
    load_matchmaker_state(restored, _json(matchmaker_state(original)))
    assert matchmaker_state(restored) == matchmaker_state(original)
    for role in ("predator", "prey"):
        assert restored.meta_strategy(pool, role, payoff) == original.meta_strategy(pool, role, payoff)
    draws = [m.lineups(pool, learner, "predator", ["prey"], 8, np.random.default_rng(5), payoff)
             for m in (original, restored)]
    assert draws[0] == draws[1]


def test_eval_plan_round_trip() -> None:
    own = SeatedKey(SnapshotKey("agent-0", 3), "agent")
    plan = EvalPlan(own.key, "agent", [
        PlannedMatch("baseline", own, (random_key("agent"),), 10, 123),
        PlannedMatch("comparator", own, (SeatedKey(SnapshotKey("agent-1", 2), "agent"),), 4, 77,
                     comparator=SeatedKey(SnapshotKey("agent-0", 1), "agent"),
                     comparator_lineup=(SeatedKey(SnapshotKey("agent-1", 0), "agent"),)),
    ])
    assert EvalPlan.from_state(_json(plan.to_state())) == plan
    start = EvalPlan(None, "agent", [PlannedMatch("par", random_key("agent"), (), 5, 1)])
    assert EvalPlan.from_state(_json(start.to_state())) == start


def _played_league() -> League:
    """A connect four league with a few snapshots admitted, evaluated and trained against."""
    league = _league("connect_four_league.yaml", "evaluation.pool_opponents=1")
    start = league.start_plan()
    assert start is not None
    for match in start.matches:  # the tactical anchor's calibration against random
        league.record_match(match, _two_seat_results([1.0, 1.0, -1.0, 1.0], match.lineup[0]), 0.0, 0)
    for pid in ("player-0", "player-1"):
        league.admit(_snap(pid, 0, "player"))
    league.training_lineups("player-0", "player")
    for v in (1, 2):
        for pid in ("player-0", "player-1"):
            plan = league.admit(_snap(pid, v, "player"))
            assert plan is not None
            league.begin_evaluation(plan)
            for i, match in enumerate(plan.matches):
                own = [1.0, -1.0, 0.0, 1.0][i % 4:] + [1.0] * 3
                league.record_match(match, _two_seat_results(own[:4], match.lineup[0]), 1.0, v)
        league.record_training(SnapshotKey("player-0", v), (SeatedKey(SnapshotKey("player-1", v - 1), "player"),),
                               [1.0, 0.0, 0.5])
        league.training_lineups("player-1", "player")
    return league


def test_league_round_trip_restores_everything_and_draws_the_same_future() -> None:
    league = _played_league()
    state = _json(league.to_state())
    restored = _league("connect_four_league.yaml", "evaluation.pool_opponents=1")
    restored.load_state(state, league.pool.weights)
    assert repr(_json(restored.to_state())) == repr(state)  # repr: NaN fields compare equal
    assert restored.summary(["player-0", "player-1"]) == league.summary(["player-0", "player-1"])
    assert restored.meta_rows(2.0, 2) == league.meta_rows(2.0, 2)
    # The future is the same: the next plans, line-ups and ratings.
    for lg in (league, restored):
        lg.admit(_snap("player-0", 3, "player"))
    assert restored.training_lineups("player-0", "player") == league.training_lineups("player-0", "player")
    plans = [lg.admit(_snap("player-1", 3, "player")) for lg in (league, restored)]
    assert plans[0] == plans[1] and plans[0] is not None
    results: list[SideResults] = []
    for lg, plan in zip((league, restored), plans):
        lg.begin_evaluation(plan)
        rows = lg.record_match(plan.matches[0], _two_seat_results([1.0, 0.0, -1.0, 1.0], plan.matches[0].lineup[0]),
                               3.0, 3)
        results.append(rows)  # type: ignore[arg-type]
    assert results[0] == results[1]


def test_league_state_names_no_object_json_cannot_hold() -> None:
    state = _played_league().to_state()
    text = json.dumps(state, allow_nan=True)  # raises TypeError on any object JSON cannot hold
    assert json.dumps(json.loads(text), allow_nan=True) == text  # and reads back to the same document
    assert OWN not in json.dumps(state)  # no evaluation bookkeeping leaks into the state
