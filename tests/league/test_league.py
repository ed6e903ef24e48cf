"""The league's decisions without MPI: evaluation plans, ratings from played matches, payoff rows.

Episodes are not played here: the tests hand the league the per-seat returns a server would have
measured, so every rule (who is evaluated against whom, how outcomes become ratings) is checked on
known numbers.
"""

from __future__ import annotations

import numpy as np
import pytest

from mpimarl.config import load_config
from mpimarl.league.league import League, PlannedMatch, SideResults
from mpimarl.league.pool import RANDOM_KEY, Snapshot, SnapshotKey
from mpimarl.roles.context import RunContext
from mpimarl.rollout.evaluate import OWN
from mpimarl.rollout.seating import SeatedKey
from tests.conftest import CONFIGS


def _league(config: str, *overrides: str) -> League:
    cfg = load_config(CONFIGS / config, list(overrides))
    ctx = RunContext.build(cfg, None)
    return League(cfg, ctx.spec, seed=123)


def _snap(pid: str, version: int, role: str) -> Snapshot:
    parent = SnapshotKey(pid, version - 1) if version else None
    return Snapshot(SnapshotKey(pid, version), role, parent, 1, 1000 * version, 0.0, np.zeros(3, np.float32))


def _two_seat_results(own_returns: list[float], opponent: SeatedKey) -> SideResults:
    """Episodes alternating the evaluated policy between seat 0 and seat 1."""
    seats, occupants = [], []
    for k, r in enumerate(own_returns):
        if k % 2 == 0:
            seats.append([r, -r])
            occupants.append([OWN, opponent])
        else:
            seats.append([-r, r])
            occupants.append([opponent, OWN])
    return SideResults(own_returns, [-r for r in own_returns], [10] * len(own_returns), seats, occupants)


def _play(league: League, match: PlannedMatch, res: SideResults) -> dict[str, list[dict[str, object]]]:
    return league.record_match(match, res, now=1.0, generation=1)


def test_connect_four_plan_rates_against_random_and_the_pool() -> None:
    league = _league("connect_four_league.yaml", "baselines=[]", "evaluation.pool_opponents=1")
    assert league.admit(_snap("player-0", 0, "player")) is None
    league.admit(_snap("player-1", 0, "player"))
    plan = league.admit(_snap("player-0", 1, "player"))
    assert plan is not None and plan.key == SnapshotKey("player-0", 1)
    kinds = [m.kind for m in plan.matches]
    assert kinds == ["baseline", "pool"]
    assert plan.matches[0].lineup[0].key == RANDOM_KEY and plan.matches[0].episodes == 50
    assert plan.matches[1].lineup[0].key != SnapshotKey("player-0", 1)

    league.begin_evaluation(plan)
    rows = _play(league, plan.matches[0], _two_seat_results([1.0] * 50, plan.matches[0].lineup[0]))
    assert rows["matches"][0]["wins"] == 50 and rows["matches"][0]["matchmaker"] == "baseline"
    rating = league.ratings.rating("player", SnapshotKey("player-0", 1))
    assert rating.elo > 1000 and rating.games == 50
    assert league.ratings.rating("player", RANDOM_KEY).elo == 1000  # the anchor never moves
    payoff = rows["payoff"][0]
    assert payoff["row_id"] == "player-0@1" and payoff["column_id"] == "random" and payoff["score"] == 1.0
    assert 0.9 < payoff["score_low"] < 1.0


def test_a_child_starts_at_its_parents_rating_when_its_evaluation_begins() -> None:
    league = _league("connect_four_league.yaml", "baselines=[]", "evaluation.pool_opponents=0")
    league.admit(_snap("player-0", 0, "player"))
    league.admit(_snap("player-1", 0, "player"))
    first = league.admit(_snap("player-0", 1, "player"))
    second = league.admit(_snap("player-0", 2, "player"))  # admitted before the first was played
    assert first is not None and second is not None
    assert ("player", SnapshotKey("player-0", 2)) not in league.ratings
    league.begin_evaluation(first)
    _play(league, first.matches[0], _two_seat_results([1.0] * 50, first.matches[0].lineup[0]))
    league.begin_evaluation(second)
    parent = league.ratings.rating("player", SnapshotKey("player-0", 1)).elo
    assert league.ratings.rating("player", SnapshotKey("player-0", 2)).elo == pytest.approx(parent)


def test_a_game_against_copies_of_itself_is_rated_once_per_snapshot() -> None:
    league = _league("connect_four_league.yaml", "baselines=[]")
    league.admit(_snap("player-0", 0, "player"))
    league.admit(_snap("player-1", 0, "player"))
    own = SeatedKey(SnapshotKey("player-1", 0), "player")
    other = SeatedKey(SnapshotKey("player-0", 0), "player")
    match = PlannedMatch("pool", own, (other,), 4, 0)
    _play(league, match, _two_seat_results([1.0, 1.0, -1.0, 1.0], other))
    assert league.ratings.rating("player", own.key).games == 4
    assert league.ratings.rating("player", other.key).games == 4
    # A snapshot that meets only itself is not rated at all (and nothing raises).
    self_match = PlannedMatch("pool", own, (own,), 2, 0)
    _play(league, self_match, _two_seat_results([1.0, -1.0], own))
    assert league.ratings.rating("player", own.key).games == 4


def test_baseline_episodes_zero_plays_no_baseline_match() -> None:
    league = _league("connect_four_league.yaml", "baselines=[]", "evaluation.baseline_episodes=0")
    league.admit(_snap("player-0", 0, "player"))
    league.admit(_snap("player-1", 0, "player"))
    plan = league.admit(_snap("player-0", 1, "player"))
    assert plan is not None and all(m.kind == "pool" for m in plan.matches)


def test_simple_tag_ratings_move_both_ways_for_both_roles() -> None:
    league = _league("simple_tag_roles.yaml", "evaluation.pool_opponents=0")
    assert league.outcome == "par"
    start = league.start_plan()
    assert start is not None and start.matches[0].kind == "par"
    # Reference: random predators catch nobody in most episodes; random prey drift out of bounds.
    rng = np.random.default_rng(0)
    ref_seats = [[float(rng.choice([0, 0, 0, 10])), float(-rng.uniform(0, 30))] for _ in range(200)]
    league.record_match(
        start.matches[0],
        SideResults([s[0] for s in ref_seats], [s[1] for s in ref_seats], [25] * 200, ref_seats, [[OWN, None]] * 200),
        0.0,
        0,
    )
    assert league.par is not None
    for pid, role in (("predator-0", "predator"), ("prey-0", "prey")):
        league.admit(_snap(pid, 0, role))
    pred = league.admit(_snap("predator-0", 1, "predator"))
    prey = league.admit(_snap("prey-0", 1, "prey"))
    assert pred is not None and prey is not None
    league.begin_evaluation(pred)
    rand_prey = pred.matches[0].lineup[0]
    assert rand_prey.key == RANDOM_KEY and rand_prey.role == "prey"
    # This predator catches the random prey twice per episode: it wins, its rating rises.
    seats = [[20.0, -20.0]] * 10
    _play(league, pred.matches[0], SideResults([20.0] * 10, [-20.0] * 10, [25] * 10, seats, [[OWN, rand_prey]] * 10))
    pred_key = SnapshotKey("predator-0", 1)
    assert league.ratings.rating("predator", pred_key).elo > 1000
    league.begin_evaluation(prey)
    # This prey is never caught and stays in bounds against the random predator: it wins too.
    rand_pred = prey.matches[0].lineup[0]
    seats = [[0.0, 0.0]] * 10
    _play(league, prey.matches[0], SideResults([0.0] * 10, [0.0] * 10, [25] * 10, seats, [[rand_pred, OWN]] * 10))
    prey_key = SnapshotKey("prey-0", 1)
    up = league.ratings.rating("prey", prey_key).elo
    assert up > 1000
    # Then the strong predator catches it every episode: the prey's rating falls, the predator's rises.
    before = league.ratings.rating("predator", pred_key).elo
    match = PlannedMatch("pool", SeatedKey(prey_key, "prey"), (SeatedKey(pred_key, "predator"),), 10, 0)
    seats = [[30.0, -30.0]] * 10
    _play(
        league,
        match,
        SideResults([-30.0] * 10, [30.0] * 10, [25] * 10, seats, [[SeatedKey(pred_key, "predator"), OWN]] * 10),
    )
    assert league.ratings.rating("prey", prey_key).elo < up
    assert league.ratings.rating("predator", pred_key).elo > before


def test_cooperative_comparators_play_with_their_own_partners() -> None:
    league = _league("speaker_listener_team.yaml", "evaluation.pool_opponents=2")
    for pid, role in (("speaker-0", "speaker"), ("listener-0", "listener")):
        league.admit(_snap(pid, 0, role))
    first = league.admit(_snap("speaker-0", 1, "speaker"))
    league.admit(_snap("listener-0", 1, "listener"))
    second = league.admit(_snap("speaker-0", 2, "speaker"))
    assert first is not None and second is not None
    assert first.matches[0].lineup[0].key == SnapshotKey("listener-0", 0)
    pool_matches = [m for m in second.matches if m.comparator is not None and not m.comparator.is_baseline]
    assert pool_matches, "the older speaker is a comparator"
    m = pool_matches[0]
    assert m.lineup[0].key == SnapshotKey("listener-0", 1)  # the new speaker with the newest listener
    assert m.comparator_lineup[0].key == SnapshotKey("listener-0", 0)  # the old one with its own partner
    assert m.episodes == league.cfg.evaluation.pool_episodes


def test_training_lineups_give_fixed_shares_to_baselines() -> None:
    league = _league(
        "connect_four_league.yaml", "baselines=[]", "matchmaking.baseline_fraction=0.25", "matchmaking.lineups=8"
    )
    league.admit(_snap("player-0", 0, "player"))
    league.admit(_snap("player-1", 0, "player"))
    lineups = league.training_lineups("player-0", "player")
    sources = [s for _, s in lineups]
    assert len(lineups) == 8 and sources.count("baseline") == 2
    assert all(lu[0].key == RANDOM_KEY for lu, s in lineups if s == "baseline")


def test_free_for_all_ranks_every_seat_and_counts_a_repeated_snapshot_once() -> None:
    league = _league("holdem_ffa.yaml")
    for pid in ("player-0", "player-1"):
        league.admit(_snap(pid, 0, "player"))
    own = SeatedKey(SnapshotKey("player-0", 0), "player")
    twice = SeatedKey(SnapshotKey("player-1", 0), "player")
    rand = SeatedKey(RANDOM_KEY, "player")
    lineup = (twice, twice, rand, rand)
    # The evaluated snapshot wins every hand; player-1@0 (two seats) comes second and third.
    seats = [[5.0, 2.0, 1.0, -4.0, -4.0]] * 3
    occupants = [[OWN, twice, twice, rand, rand]] * 3
    res = SideResults([5.0] * 3, [-1.25] * 3, [10] * 3, seats, occupants)
    rows = _play(league, PlannedMatch("pool", own, lineup, 3, 0), res)
    assert league.ratings.rating("player", own.key).games == 3
    assert league.ratings.rating("player", twice.key).games == 3  # once per game, not once per seat
    assert league.ratings.rating("player", own.key).mu > league.ratings.rating("player", twice.key).mu
    assert rows["matches"][0]["wins"] == 3  # beat the whole field: a win
    assert rows["payoff"][0]["column_id"] == "player-1@0+player-1@0+random+random"
    assert league.payoff.pair("player-0@0", "player-1@0").games == 3


def test_exact_pairings_seat_the_new_snapshot_in_every_seat_of_its_role() -> None:
    league = _league("kuhn_psro.yaml")
    assert league.admit(_snap("player-0", 0, "player")) is None
    league.admit(_snap("player-1", 0, "player"))
    league.exact = True
    plan = league.admit(_snap("player-0", 1, "player"))
    assert plan is not None and all(m.kind == "baseline" for m in plan.matches)  # no sampled pool games
    new = SnapshotKey("player-0", 1)
    pairings = dict(league.exact_pairings(new))
    assert set(pairings) == {SnapshotKey("player-0", 0), SnapshotKey("player-1", 0)}
    other = SnapshotKey("player-1", 0)
    assert pairings[other] == [[new, other], [other, new]]
    # As player 0 it gains 0.2, as player 1 it loses 0.1 (zero-sum): a mean of +0.05 for the new one.
    rows = league.record_exact(new, other, pairings[other], [[0.2, -0.2], [0.1, -0.1]], 1.0, 1)
    assert league.payoff.get("player-0@1", "player-1@0").value == pytest.approx(0.05)
    assert league.payoff.get("player-1@0", "player-0@1").value == pytest.approx(-0.05)
    assert {r["source"] for r in rows} == {"exact"} and rows[0]["games"] == 0
    # Exact values are expected returns, not win rates: Nash averaging takes them as they are.
    league.payoff.set_exact("player-0@1", "player-0@0", 1.5, -1.5)
    league.payoff.set_exact("player-0@0", "player-0@1", -1.5, 1.5)
    meta = {(r["policy_id"], r["version"]): r for r in league.meta_rows(2.0, 1)}
    assert meta[("player-0", 1)]["nash_weight"] == pytest.approx(1.0)
    assert meta[("player-0", 1)]["nash_rating"] == pytest.approx(0.0, abs=1e-6)
    assert meta[("player-0", 0)]["nash_rating"] == pytest.approx(-1.5)


def test_main_exploiters_meet_only_the_latest_main_snapshots() -> None:
    """An exploiter's line-ups are the newest snapshots of the main policies, never baselines,
    old snapshots or other exploiters; the main policies keep their matchmaker and see exploiters."""
    cfg = load_config(CONFIGS / "connect_four_league.yaml", ["matchmaking.exploiters=1"])
    ctx = RunContext.build(cfg, 5)  # server + player-0, player-1 (main) + player-2, player-3 (exploiters)
    assert ctx.exploiter_ids() == ["player-3"]
    league = League(cfg, ctx.spec, seed=5, exploiters=["player-2", "player-3"])
    for version in range(3):
        for pid in ("player-0", "player-1", "player-2", "player-3"):
            league.admit(_snap(pid, version, "player"))
    drawn = league.training_lineups("player-3", "player")
    assert len(drawn) == cfg.matchmaking.lineups
    assert {source for _, source in drawn} == {"exploiter"}
    met = {item.key for lineup, _ in drawn for item in lineup}
    assert met == {SnapshotKey("player-0", 2), SnapshotKey("player-1", 2)}
    main = league.training_lineups("player-0", "player")
    assert {source for _, source in main} <= {"pfsp", "baseline"}
    # Exploiter games do not move the main policies' matchmaker state.
    before = league.matchmaker.meta_strategy(league.pool, "player", league.payoff)
    league.record_training(SnapshotKey("player-3", 2), drawn[0][0], [1.0] * 20)
    assert league.matchmaker.meta_strategy(league.pool, "player", league.payoff) == before


def test_exploiters_need_a_main_trainer_per_role() -> None:
    from mpimarl.errors import WorldSizeError

    cfg = load_config(CONFIGS / "connect_four_league.yaml", ["matchmaking.exploiters=1"])
    with pytest.raises(WorldSizeError, match="exploiter"):
        RunContext.build(cfg, 2)


def test_exploiters_of_fixed_targets_draw_them_by_weight_and_fill_other_roles() -> None:
    """An exploit job: exploiters only; a targeted role's seats follow the target weights (old
    snapshots included); targets must be pool snapshots."""
    cfg = load_config(CONFIGS / "simple_tag_roles.yaml", ["matchmaking.lineups=4000"])
    ctx = RunContext.build(cfg, None)
    league = League(cfg, ctx.spec, seed=5, exploiters=["exploiter-prey-0"])
    targets = [_snap("predator-0", 0, "predator"), _snap("predator-0", 3, "predator")]
    weights = {SnapshotKey("predator-0", 0): 0.25, SnapshotKey("predator-0", 3): 0.75}
    league.add_targets(targets, {"predator": weights})
    league.admit(_snap("exploiter-prey-0", 0, "prey"))
    drawn = league.training_lineups("exploiter-prey-0", "prey")
    keys = [lineup[0].key for lineup, _ in drawn]
    assert {source for _, source in drawn} == {"exploiter"}
    assert keys.count(SnapshotKey("predator-0", 0)) / len(keys) == pytest.approx(0.25, abs=0.03)
    with pytest.raises(ValueError, match="not in the pool"):
        league.add_targets([], {"predator": {SnapshotKey("predator-0", 9): 1.0}})


def test_an_exploit_layout_deals_ranks_to_the_exploiting_roles_only() -> None:
    cfg = load_config(CONFIGS / "simple_tag_roles.yaml")
    ctx = RunContext.build(cfg, None)
    job = RunContext(cfg, ctx.factory, ctx.spec, 3, learning_roles=("prey",), id_prefix="exploiter-",
                     all_exploiters=True)
    assert [(u.policy_id, u.ranks) for u in job.units] == [("exploiter-prey-0", (1,)), ("exploiter-prey-1", (2,))]
    assert job.exploiter_ids() == ["exploiter-prey-0", "exploiter-prey-1"] and job.min_world_size() == 2
