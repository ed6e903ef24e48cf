"""Matchmakers: latest (naive self-play), uniform (fictitious self-play), openai_five, pfsp, psro."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest

from mpimarl.league.matchmaking import (
    MATCHMAKER_NAMES,
    PFSP_WEIGHTINGS,
    QUALITY_FLOOR_GAP,
    Matchmaker,
    OpenAIFiveMatchmaker,
    PFSPMatchmaker,
    make_matchmaker,
    win_rate,
)
from mpimarl.league.payoff import PayoffTable
from mpimarl.league.pool import RANDOM_KEY, PolicyPool, Snapshot, SnapshotKey

PoolFactory = Callable[[list[tuple[str, str, int]]], PolicyPool]
SnapshotFactory = Callable[[str, int, str], Snapshot]

# simple_tag-like: the learner is one predator; the other seats are two predators and one prey
PREDATOR_SEATS = ("predator", "predator", "prey")


@pytest.fixture
def symmetric(pool_factory: PoolFactory) -> PolicyPool:
    """Two player policies: player-0@0..4 and player-1@0..2 (8 snapshots)."""
    return pool_factory([("player-0", "player", 5), ("player-1", "player", 3)])


@pytest.fixture
def asymmetric(pool_factory: PoolFactory) -> PolicyPool:
    """predator-0@0..3, prey-0@0..2, prey-1@0..1."""
    return pool_factory(
        [("predator-0", "predator", 4), ("prey-0", "prey", 3), ("prey-1", "prey", 2)]
    )


def keys_of(pool: PolicyPool, role: str) -> set[SnapshotKey]:
    return {s.key for s in pool.snapshots(role)}


# ---- every strategy --------------------------------------------------------------------------


@pytest.mark.parametrize("name", MATCHMAKER_NAMES)
def test_factory_builds_protocol_conforming_matchmakers(name: str) -> None:
    mm = make_matchmaker(name)
    assert isinstance(mm, Matchmaker)
    assert mm.name == name


def test_factory_rejects_unknown_names_listing_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"'sarsa'.*'latest', 'uniform', 'openai_five', 'pfsp', 'psro'"):
        make_matchmaker("sarsa")


def test_factory_passes_openai_five_parameters() -> None:
    mm = make_matchmaker("openai_five", latest_fraction=0.3, quality_lr=0.5)
    assert isinstance(mm, OpenAIFiveMatchmaker)
    assert (mm.latest_fraction, mm.quality_lr) == (0.3, 0.5)
    with pytest.raises(ValueError, match="latest_fraction"):
        make_matchmaker("openai_five", latest_fraction=1.5)
    with pytest.raises(ValueError, match="quality_lr"):
        make_matchmaker("openai_five", quality_lr=0.0)


@pytest.mark.parametrize("name", MATCHMAKER_NAMES)
def test_seats_get_snapshots_of_their_own_role(name: str, asymmetric: PolicyPool) -> None:
    mm = make_matchmaker(name)
    learner = SnapshotKey("predator-0", 3)
    lineups = mm.lineups(
        asymmetric, learner, "predator", PREDATOR_SEATS, 300, np.random.default_rng(0)
    )
    assert len(lineups) == 300
    for lineup in lineups:
        assert len(lineup) == 3
        assert [asymmetric.get(k).role for k in lineup] == list(PREDATOR_SEATS)
    prey_seen = {lineup[2] for lineup in lineups}
    assert prey_seen <= keys_of(asymmetric, "prey")
    assert {k.policy_id for k in prey_seen} == {"prey-0", "prey-1"}  # both prey policies meet it


@pytest.mark.parametrize("name", MATCHMAKER_NAMES)
def test_same_seed_same_lineups_other_seed_other_lineups(name: str, asymmetric: PolicyPool) -> None:
    learner = SnapshotKey("predator-0", 3)

    def draw(seed: int) -> list[tuple[SnapshotKey, ...]]:
        mm = make_matchmaker(name)
        return mm.lineups(
            asymmetric, learner, "predator", PREDATOR_SEATS, 50, np.random.default_rng(seed)
        )

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)


@pytest.mark.parametrize("name", MATCHMAKER_NAMES)
def test_missing_seat_role_is_a_runtime_error_naming_it(
    name: str, pool_factory: PoolFactory
) -> None:
    pool = pool_factory([("predator-0", "predator", 2)])
    mm = make_matchmaker(name)
    with pytest.raises(RuntimeError, match="role 'prey'"):
        mm.lineups(
            pool, SnapshotKey("predator-0", 1), "predator", ["prey"], 1, np.random.default_rng(0)
        )


@pytest.mark.parametrize("name", MATCHMAKER_NAMES)
def test_bad_requests_are_rejected(name: str, asymmetric: PolicyPool) -> None:
    mm = make_matchmaker(name)
    rng = np.random.default_rng(0)
    with pytest.raises(RuntimeError, match="'ghost-0'"):
        mm.lineups(asymmetric, SnapshotKey("ghost-0", 0), "predator", ["prey"], 1, rng)
    with pytest.raises(ValueError, match="role 'predator'"):
        mm.lineups(asymmetric, SnapshotKey("predator-0", 3), "prey", ["prey"], 1, rng)
    with pytest.raises(ValueError, match="non-negative"):
        mm.lineups(asymmetric, SnapshotKey("predator-0", 3), "predator", ["prey"], -1, rng)
    assert mm.lineups(asymmetric, SnapshotKey("predator-0", 3), "predator", ["prey"], 0, rng) == []
    with pytest.raises(ValueError, match="score"):
        mm.record_result(SnapshotKey("predator-0", 3), SnapshotKey("prey-0", 0), 2.0)


# ---- latest ------------------------------------------------------------------------------------


def test_latest_always_picks_own_latest_for_own_role_seats(symmetric: PolicyPool) -> None:
    mm = make_matchmaker("latest")
    learner = SnapshotKey("player-0", 4)
    lineups = mm.lineups(
        symmetric, learner, "player", ["player", "player"], 100, np.random.default_rng(0)
    )
    assert set(lineups) == {(learner, learner)}  # never player-1, never an old version


def test_latest_other_roles_get_latest_of_a_uniform_policy(asymmetric: PolicyPool) -> None:
    mm = make_matchmaker("latest")
    learner = SnapshotKey("predator-0", 3)
    lineups = mm.lineups(
        asymmetric, learner, "predator", PREDATOR_SEATS, 2000, np.random.default_rng(1)
    )
    assert {lineup[:2] for lineup in lineups} == {(learner, learner)}
    prey = Counter(lineup[2] for lineup in lineups)
    assert set(prey) == {SnapshotKey("prey-0", 2), SnapshotKey("prey-1", 1)}
    assert abs(prey[SnapshotKey("prey-0", 2)] / 2000 - 0.5) < 0.05


def test_prey_learner_gets_predators_in_predator_seats(asymmetric: PolicyPool) -> None:
    mm = make_matchmaker("latest")
    learner = SnapshotKey("prey-1", 1)
    lineups = mm.lineups(
        asymmetric,
        learner,
        "prey",
        ["predator", "predator", "predator"],
        10,
        np.random.default_rng(0),
    )
    assert set(lineups) == {(SnapshotKey("predator-0", 3),) * 3}


# ---- uniform -----------------------------------------------------------------------------------


def test_uniform_covers_every_snapshot_of_the_role_evenly(symmetric: PolicyPool) -> None:
    mm = make_matchmaker("uniform")
    n = 8000
    lineups = mm.lineups(
        symmetric, SnapshotKey("player-0", 4), "player", ["player"], n, np.random.default_rng(3)
    )
    counts = Counter(lineup[0] for lineup in lineups)
    assert set(counts) == keys_of(symmetric, "player")
    expected = n / 8
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < 24.3  # 99.9% quantile of chi-square with 7 degrees of freedom


def test_uniform_asymmetric_seats_sample_their_roles(asymmetric: PolicyPool) -> None:
    mm = make_matchmaker("uniform")
    lineups = mm.lineups(
        asymmetric,
        SnapshotKey("predator-0", 3),
        "predator",
        PREDATOR_SEATS,
        1000,
        np.random.default_rng(4),
    )
    assert {lineup[0] for lineup in lineups} == keys_of(asymmetric, "predator")
    assert {lineup[2] for lineup in lineups} == keys_of(asymmetric, "prey")


# ---- openai_five -------------------------------------------------------------------------------


@pytest.mark.parametrize("latest_fraction", [0.8, 0.5])
def test_openai_five_plays_latest_at_the_configured_rate(
    latest_fraction: float, pool_factory: PoolFactory
) -> None:
    pool = pool_factory([("player-0", "player", 20)])
    learner = SnapshotKey("player-0", 19)
    mm = make_matchmaker("openai_five", latest_fraction=latest_fraction)
    n = 5000
    lineups = mm.lineups(pool, learner, "player", ["player"], n, np.random.default_rng(5))
    # the past branch draws the latest snapshot too, with probability 1/20 while all q are equal
    expected = latest_fraction + (1 - latest_fraction) / 20
    assert abs(sum(lineup == (learner,) for lineup in lineups) / n - expected) < 0.025
    assert len({lineup[0] for lineup in lineups}) == 20  # the past branch reaches every version


def test_openai_five_quality_update_follows_the_formula(symmetric: PolicyPool) -> None:
    mm = OpenAIFiveMatchmaker(quality_lr=0.01)
    for snapshot in symmetric.snapshots():
        mm.on_publish(snapshot)
    learner, past = SnapshotKey("player-0", 4), SnapshotKey("player-0", 1)
    assert mm.probabilities("player")[past] == pytest.approx(1 / 8)
    mm.record_result(learner, past, 1.0)
    assert mm.quality(past) == pytest.approx(-0.01 / (8 * (1 / 8)))
    p = mm.probabilities("player")[past]
    mm.record_result(learner, past, 1.0)
    assert mm.quality(past) == pytest.approx(-0.01 - 0.01 / (8 * p))
    assert sum(mm.probabilities("player").values()) == pytest.approx(1.0)


def test_openai_five_only_wins_against_past_snapshots_lower_quality(symmetric: PolicyPool) -> None:
    mm = OpenAIFiveMatchmaker()
    for snapshot in symmetric.snapshots():
        mm.on_publish(snapshot)
    learner, past = SnapshotKey("player-0", 4), SnapshotKey("player-0", 1)
    mm.record_result(learner, past, 0.5)
    mm.record_result(learner, past, 0.0)
    mm.record_result(learner, learner, 1.0)  # its current self is not a past snapshot
    mm.record_result(learner, RANDOM_KEY, 1.0)  # the baseline is not in the pool
    assert all(mm.quality(s.key) == 0.0 for s in symmetric.snapshots())
    mm.record_result(
        learner, SnapshotKey("player-1", 2), 1.0
    )  # another policy's latest is fair game
    assert mm.quality(SnapshotKey("player-1", 2)) < 0.0


def test_openai_five_snapshot_beaten_again_and_again_fades(symmetric: PolicyPool) -> None:
    mm = OpenAIFiveMatchmaker(latest_fraction=0.0)
    learner, past = SnapshotKey("player-0", 4), SnapshotKey("player-0", 1)

    def share_of_past(seed: int) -> float:
        lineups = mm.lineups(
            symmetric, learner, "player", ["player"], 4000, np.random.default_rng(seed)
        )
        return sum(lineup == (past,) for lineup in lineups) / 4000

    before = share_of_past(0)
    assert abs(before - 1 / 8) < 0.02
    qualities, probs = [mm.quality(past)], [mm.probabilities("player")[past]]
    for _ in range(100):
        mm.record_result(learner, past, 1.0)
        qualities.append(mm.quality(past))
        probs.append(mm.probabilities("player")[past])
    assert all(b < a for a, b in itertools.pairwise(qualities))
    assert all(b < a for a, b in itertools.pairwise(probs))
    assert probs[-1] < probs[0] / 3
    after = share_of_past(1)
    assert after < before / 3
    assert after == pytest.approx(probs[-1], abs=0.015)


def test_openai_five_quality_stays_finite_however_often_a_snapshot_loses(
    symmetric: PolicyPool,
) -> None:
    mm = OpenAIFiveMatchmaker(latest_fraction=0.0)
    for snapshot in symmetric.snapshots():
        mm.on_publish(snapshot)
    learner, past = SnapshotKey("player-0", 4), SnapshotKey("player-0", 1)
    for _ in range(1000):  # unweighted, the 1/p step reaches -inf after about 105 reports
        mm.record_result(learner, past, 1.0)
    assert mm.quality(past) == pytest.approx(-QUALITY_FLOOR_GAP)
    probs = mm.probabilities("player")
    assert 0.0 < probs[past] < 1e-12
    assert all(np.isfinite(p) for p in probs.values())
    lineups = mm.lineups(symmetric, learner, "player", ["player"], 500, np.random.default_rng(0))
    assert (past,) not in lineups


def test_openai_five_new_snapshot_starts_at_max_quality_of_its_role(
    symmetric: PolicyPool, make_snapshot: SnapshotFactory
) -> None:
    mm = OpenAIFiveMatchmaker()
    for snapshot in symmetric.snapshots():
        mm.on_publish(snapshot)
    learner = SnapshotKey("player-0", 4)
    # beat every player snapshot, the older ones more often, so that every q is below 0
    for i, snapshot in enumerate(symmetric.snapshots("player")):
        if snapshot.key != learner:
            for _ in range(8 - i):
                mm.record_result(learner, snapshot.key, 1.0)
    mm.record_result(SnapshotKey("player-1", 3), learner, 1.0)
    best = max(mm.quality(s.key) for s in symmetric.snapshots("player"))
    assert best < 0.0
    new = make_snapshot("player-0", 5, "player")
    symmetric.add(new)
    mm.on_publish(new)
    assert mm.quality(new.key) == pytest.approx(best)
    mm.on_publish(new)  # publishing twice changes nothing
    assert mm.quality(new.key) == pytest.approx(best)
    first_of_role = make_snapshot("speaker-0", 0, "speaker")
    symmetric.add(first_of_role)
    mm.on_publish(first_of_role)
    assert mm.quality(first_of_role.key) == 0.0
    with pytest.raises(KeyError, match="ghost@0"):
        mm.quality(SnapshotKey("ghost", 0))


def test_openai_five_registers_pool_snapshots_it_was_not_told_about(symmetric: PolicyPool) -> None:
    mm = OpenAIFiveMatchmaker()
    assert mm.probabilities("player") == {}
    mm.lineups(
        symmetric, SnapshotKey("player-0", 4), "player", ["player"], 1, np.random.default_rng(0)
    )
    probs = mm.probabilities("player")
    assert list(probs) == [s.key for s in symmetric.snapshots("player")]
    assert all(p == pytest.approx(1 / 8) for p in probs.values())


# ---- pfsp -------------------------------------------------------------------------------------


def _scored(table: PayoffTable, row: str, column: str, score: float, games: int = 100) -> None:
    wins = round(score * games)
    table.add(row, column, wins, 0, games - wins, 0.0, 0.0)


@pytest.mark.parametrize(
    ("weighting", "x", "expected"),
    [("hard", 0.25, 0.75**2), ("variance", 0.25, 0.25 * 0.75), ("linear", 0.25, 0.75),
     ("linear_capped", 0.25, 0.5), ("linear_capped", 0.75, 0.25)],
)
def test_pfsp_weightings_are_alphastars(weighting: str, x: float, expected: float) -> None:
    assert PFSP_WEIGHTINGS[weighting](x, 2.0) == pytest.approx(expected)


def test_pfsp_hard_draws_the_opponents_the_learner_loses_to(symmetric: PolicyPool) -> None:
    table = PayoffTable()
    learner = SnapshotKey("player-0", 4)
    # The learner's newest evaluated version (3) beats player-1@0 always and loses to player-1@2 80%.
    _scored(table, "player-0@3", "player-1@0", 1.0)
    _scored(table, "player-0@3", "player-1@2", 0.2)
    mm = make_matchmaker("pfsp", weighting="hard", exponent=2.0)
    weights = mm.meta_strategy(symmetric, "player", table)  # averaged over both learners
    direct = mm.weights(symmetric, learner, "player", table)
    assert SnapshotKey("player-1", 0) not in direct  # beaten every time: weight (1-1)^2 = 0
    # unmeasured snapshots count as x = 0.5 -> 0.25; player-1@2 -> 0.64
    assert direct[SnapshotKey("player-1", 2)] / direct[SnapshotKey("player-0", 1)] == pytest.approx(0.64 / 0.25)
    assert sum(weights.values()) == pytest.approx(1.0)
    lineups = mm.lineups(symmetric, learner, "player", ["player"], 2000, np.random.default_rng(0), table)
    counts = Counter(lu[0] for lu in lineups)
    assert counts[SnapshotKey("player-1", 0)] == 0
    assert counts[SnapshotKey("player-1", 2)] / 2000 == pytest.approx(direct[SnapshotKey("player-1", 2)], abs=0.03)


def test_pfsp_reads_mirrored_entries_and_falls_back_to_uniform(symmetric: PolicyPool) -> None:
    table = PayoffTable()
    _scored(table, "player-1@1", "player-0@2", 0.0)  # the learner (player-0@2) always beat player-1@1
    assert win_rate(table, SnapshotKey("player-0", 2), SnapshotKey("player-1", 1)) == pytest.approx(1.0)
    assert np.isnan(win_rate(table, SnapshotKey("player-0", 2), SnapshotKey("player-1", 2)))
    everything = PayoffTable()
    for s in symmetric.snapshots():
        _scored(everything, "player-0@4", str(s.key), 1.0)
    mm = make_matchmaker("pfsp", weighting="hard")
    weights = mm.weights(symmetric, SnapshotKey("player-0", 4), "player", everything)
    # Beats all but its current self (0.5): the only weight left is on player-0@4 itself.
    assert weights == {SnapshotKey("player-0", 4): pytest.approx(1.0)}


def test_pfsp_priorities_follow_the_learners_recent_games(symmetric: PolicyPool) -> None:
    """Reported games override the stale payoff table and fade with `memory` games."""
    table = PayoffTable()
    learner = SnapshotKey("player-0", 4)
    hard, easy = SnapshotKey("player-1", 2), SnapshotKey("player-1", 0)
    _scored(table, "player-0@1", str(hard), 0.1)  # an old evaluation: the learner lost 90%
    mm = make_matchmaker("pfsp", weighting="hard", memory=10)
    assert isinstance(mm, PFSPMatchmaker)
    assert mm.estimate(table, learner, hard) == pytest.approx(0.1)
    for _ in range(30):  # it has since learned to beat it
        mm.record_result(learner, hard, 1.0)
    assert mm.estimate(table, learner, hard) == pytest.approx(1.0)
    assert hard not in mm.weights(symmetric, learner, "player", table)
    for _ in range(10):  # ten losses with a memory of 10 games: x = 30-game wins faded by e^-1
        mm.record_result(learner, hard, 0.0)
    wins = sum(0.9**k for k in range(10, 40))
    assert mm.estimate(table, learner, hard) == pytest.approx(wins / sum(0.9**k for k in range(40)))
    # the other learner's games say nothing about this one's
    mm.record_result(SnapshotKey("player-1", 2), easy, 1.0)
    assert np.isnan(mm.estimate(table, learner, easy))
    # the record survives a checkpoint
    again = make_matchmaker("pfsp", weighting="hard", memory=10)
    again.load_state(mm.to_state())
    assert again.estimate(table, learner, hard) == pytest.approx(mm.estimate(table, learner, hard))
    # memory 0: only the payoff table counts
    table_only = make_matchmaker("pfsp", memory=0)
    table_only.record_result(learner, hard, 1.0)
    assert table_only.estimate(table, learner, hard) == pytest.approx(0.1)


def test_pfsp_self_play_share_meets_the_latest_snapshots(symmetric: PolicyPool) -> None:
    learner = SnapshotKey("player-0", 4)
    mm = make_matchmaker("pfsp", self_play=0.35)
    lineups = mm.lineups(symmetric, learner, "player", ["player"], 4000, np.random.default_rng(3), PayoffTable())
    own_latest = sum(lu[0] == learner for lu in lineups) / 4000
    # 35% self-play plus its share of the PFSP draw (8 snapshots, all unmeasured: 1/8 each)
    assert own_latest == pytest.approx(0.35 + 0.65 / 8, abs=0.025)
    meta = mm.meta_strategy(symmetric, "player", PayoffTable())
    assert sum(meta.values()) == pytest.approx(1.0)
    assert meta[learner] == pytest.approx(0.35 / 2 + 0.65 / 8)  # two learners, one of them this one
    with pytest.raises(ValueError, match="self_play"):
        make_matchmaker("pfsp", self_play=1.5)


def test_pfsp_rejects_unknown_weightings() -> None:
    with pytest.raises(ValueError, match="'steep'.*'hard', 'variance', 'linear', 'linear_capped'"):
        make_matchmaker("pfsp", weighting="steep")


# ---- psro -------------------------------------------------------------------------------------


def _rps_pool(pool_factory: PoolFactory) -> PolicyPool:
    return pool_factory([("player-0", "player", 3)])


def test_psro_meta_strategy_is_the_nash_of_the_payoff_table(pool_factory: PoolFactory) -> None:
    pool = _rps_pool(pool_factory)  # player-0@0 rock, @1 paper, @2 scissors
    table = PayoffTable()
    beats = {("player-0@1", "player-0@0"), ("player-0@2", "player-0@1"), ("player-0@0", "player-0@2")}
    for row, col in beats:
        _scored(table, row, col, 1.0)
    mm = make_matchmaker("psro", solver="lp")
    weights = mm.meta_strategy(pool, "player", table)
    assert [weights[SnapshotKey("player-0", v)] for v in range(3)] == pytest.approx([1 / 3] * 3, abs=1e-6)
    lineups = mm.lineups(pool, SnapshotKey("player-0", 2), "player", ["player"], 3000, np.random.default_rng(1), table)
    counts = Counter(lu[0].version for lu in lineups)
    assert all(abs(counts[v] / 3000 - 1 / 3) < 0.03 for v in range(3))


def test_psro_systematic_lineups_follow_the_meta_strategy_within_one_seat(pool_factory: PoolFactory) -> None:
    """psro_sampling 'systematic': each snapshot fills within one of n w of a generation's line-ups, for
    every n and seed, where independent draws are off by about sqrt(n w)."""
    pool = _rps_pool(pool_factory)
    table = PayoffTable()
    _scored(table, "player-0@1", "player-0@0", 0.8)   # rock loses to paper...
    _scored(table, "player-0@0", "player-0@2", 0.6)   # ...beats scissors (weaker)...
    _scored(table, "player-0@2", "player-0@1", 0.7)   # ...which beat paper: an uneven cycle
    mm = make_matchmaker("psro", sampling="systematic")
    weights = mm.meta_strategy(pool, "player", table)
    assert len(weights) == 3 and max(weights.values()) - min(weights.values()) > 0.05
    for n, seed in [(7, 0), (64, 1), (64, 2), (1000, 3)]:
        lineups = mm.lineups(pool, SnapshotKey("player-0", 2), "player", ["player"], n, np.random.default_rng(seed),
                             table)
        counts = Counter(lu[0] for lu in lineups)
        assert sum(counts.values()) == n
        assert all(abs(counts[k] - n * w) < 1.0 for k, w in weights.items()), (n, seed, counts, weights)
    orders = {tuple(lu[0].version for lu in mm.lineups(pool, SnapshotKey("player-0", 2), "player", ["player"], 30,
                                                       np.random.default_rng(seed), table)) for seed in range(5)}
    assert len(orders) > 1  # shuffled: the seats a learner meets first are not always the same snapshot


def test_psro_puts_no_weight_on_a_dominated_snapshot(pool_factory: PoolFactory) -> None:
    pool = _rps_pool(pool_factory)
    table = PayoffTable()
    _scored(table, "player-0@1", "player-0@0", 0.9)
    _scored(table, "player-0@2", "player-0@0", 0.8)
    _scored(table, "player-0@2", "player-0@1", 0.7)
    for solver in ("lp", "max_entropy", "replicator"):
        weights = make_matchmaker("psro", solver=solver).meta_strategy(pool, "player", table)
        assert weights.get(SnapshotKey("player-0", 2), 0.0) > 0.95, solver


def test_psro_max_entropy_keeps_every_equilibrium_snapshot(pool_factory: PoolFactory) -> None:
    """Two snapshots that play alike (paper and a copy of it): lp may put all of paper's weight on one;
    max_entropy splits it between both, so the mixture keeps every snapshot an equilibrium plays."""
    pool = pool_factory([("player-0", "player", 4)])  # @0 rock, @1 paper, @2 scissors, @3 paper again
    table = PayoffTable()
    for row, col in [("1", "0"), ("2", "1"), ("0", "2"), ("3", "0"), ("2", "3")]:
        _scored(table, f"player-0@{row}", f"player-0@{col}", 1.0)
    _scored(table, "player-0@3", "player-0@1", 0.5)
    weights = make_matchmaker("psro", solver="max_entropy").meta_strategy(pool, "player", table)
    expected = [1 / 3, 1 / 6, 1 / 3, 1 / 6]
    assert [weights[SnapshotKey("player-0", v)] for v in range(4)] == pytest.approx(expected, abs=1e-6)


def test_psro_uses_exact_values_and_a_window(pool_factory: PoolFactory) -> None:
    pool = pool_factory([("player-0", "player", 4)])
    table = PayoffTable()
    table.set_exact("player-0@3", "player-0@2", 0.5, -0.5)
    table.set_exact("player-0@3", "player-0@0", -0.2, 0.2)  # outside the window of 2: ignored
    weights = make_matchmaker("psro", window=2).meta_strategy(pool, "player", table)
    assert weights == {SnapshotKey("player-0", 3): pytest.approx(1.0)}


def test_psro_asymmetric_roles_get_one_meta_strategy_each(asymmetric: PolicyPool) -> None:
    table = PayoffTable()
    # predator-0@3 beats prey-0@2 but loses to prey-1@1; predator-0@2 the other way round (matching pennies)
    _scored(table, "predator-0@3", "prey-0@2", 1.0)
    _scored(table, "predator-0@3", "prey-1@1", 0.0)
    _scored(table, "predator-0@2", "prey-0@2", 0.0)
    _scored(table, "predator-0@2", "prey-1@1", 1.0)
    mm = make_matchmaker("psro")
    mm.lineups(asymmetric, SnapshotKey("predator-0", 3), "predator", ["prey"], 1, np.random.default_rng(0), table)
    predators = mm.meta_strategy(asymmetric, "predator", table)
    prey = mm.meta_strategy(asymmetric, "prey", table)
    half = pytest.approx(0.5)
    assert predators == {SnapshotKey("predator-0", 2): half, SnapshotKey("predator-0", 3): half}
    assert prey == {SnapshotKey("prey-0", 2): half, SnapshotKey("prey-1", 1): half}


def test_psro_without_measurements_plays_the_latest(symmetric: PolicyPool) -> None:
    weights = make_matchmaker("psro").meta_strategy(symmetric, "player", PayoffTable())
    assert weights == {SnapshotKey("player-0", 4): 0.5, SnapshotKey("player-1", 2): 0.5}


@pytest.mark.parametrize("name", MATCHMAKER_NAMES)
def test_every_meta_strategy_is_a_distribution_over_the_role(name: str, asymmetric: PolicyPool) -> None:
    mm = make_matchmaker(name)
    weights = mm.meta_strategy(asymmetric, "prey", PayoffTable())
    assert weights and sum(weights.values()) == pytest.approx(1.0)
    assert all(asymmetric.get(k).role == "prey" for k in weights)


# ---- rank 0's per-request work: indexed, with the same answers as the plain scans ------------------


def _win_rate_by_walking(payoff: PayoffTable, learner: SnapshotKey, opponent: SnapshotKey) -> float:
    """`win_rate` as it was: every version of the learner from its own down to 0, both directions."""
    from mpimarl.league.matchmaking import _entry_rate

    if opponent.policy_id == learner.policy_id and opponent.version >= learner.version:
        return 0.5
    for version in range(learner.version, -1, -1):
        row = f"{learner.policy_id}@{version}"
        for entry, mirrored in ((payoff.pair(row, str(opponent)), False), (payoff.pair(str(opponent), row), True)):
            if entry is not None and np.isfinite(rate := _entry_rate(entry)):
                return 1.0 - rate if mirrored else rate
    return float("nan")


def _random_payoff(rng: np.random.Generator, ids: list[str], entries: int) -> PayoffTable:
    """Entries in random order: single and several-member columns, both directions, exact entries,
    batches with no games (a NaN rate the walk must skip) and a baseline."""
    payoff = PayoffTable()
    for _ in range(entries):
        row, *others = rng.choice(ids, size=int(rng.integers(2, 4)), replace=False).tolist()
        column = "+".join(others)
        if rng.random() < 0.1:
            payoff.set_exact(row, others[0], float(rng.normal()), 0.0)
        elif rng.random() < 0.1:
            payoff.add(row, column, 0, 0, 0, 0.0, 0.0)
        else:
            w, d, lo = (int(x) for x in rng.integers(0, 5, size=3))
            payoff.add(row, column, w, d, lo, float(w - lo), float(lo - w))
    return payoff


def test_win_rate_reads_the_payoff_index_and_answers_as_the_walk_over_versions() -> None:
    rng = np.random.default_rng(5)
    ids = [f"player-{p}@{v}" for p in range(3) for v in range(12)] + ["tactical"]
    payoff = _random_payoff(rng, ids, 300)
    restored = PayoffTable.from_state(payoff.to_state())  # a resumed server rebuilds the index
    keys = [SnapshotKey(p, v) for p in ("player-0", "player-1", "player-2") for v in range(12)]
    answered = 0
    for learner in keys:
        for opponent in keys:
            expected = _win_rate_by_walking(payoff, learner, opponent)
            for table in (payoff, restored):
                got = win_rate(table, learner, opponent)
                assert got == expected or (np.isnan(got) and np.isnan(expected)), (learner, opponent)
            answered += not np.isnan(expected)
    assert answered > 200  # most pairs have an entry somewhere in the learner's history


def test_the_payoff_tables_measured_ids_are_every_row_and_column_member() -> None:
    payoff = _random_payoff(np.random.default_rng(6), [f"player-0@{v}" for v in range(20)] + ["random"], 100)
    scanned = set(payoff.rows())
    for _, column, _ in payoff.entries():
        scanned.update(column.split("+"))
    assert payoff.measured() == scanned == PayoffTable.from_state(payoff.to_state()).measured()


class _OpenAIFiveByScanning(OpenAIFiveMatchmaker):
    """openai_five's quality updates as they were: max and softmax over every snapshot of the role."""

    def on_publish(self, snapshot: Snapshot) -> None:
        if snapshot.key in self._quality:
            return
        keys = self._by_role.setdefault(snapshot.role, [])
        self._quality[snapshot.key] = max((self._quality[k] for k in keys), default=0.0)
        self._role_of[snapshot.key] = snapshot.role
        keys.append(snapshot.key)

    def record_result(self, learner: SnapshotKey, opponent: SnapshotKey, score: float) -> None:
        if score != 1.0 or opponent not in self._quality:
            return
        if opponent.policy_id == learner.policy_id and opponent.version >= learner.version:
            return
        keys = self._by_role[self._role_of[opponent]]
        p = self._softmax(keys)[keys.index(opponent)]
        floor = max(self._quality[k] for k in keys) - QUALITY_FLOOR_GAP
        step = self.quality_lr / (len(keys) * p)
        self._quality[opponent] = max(float(self._quality[opponent] - step), floor)

    def _candidates(self, role: str, pool: PolicyPool | None) -> list[SnapshotKey]:
        keys = self._by_role.get(role, [])
        return keys if pool is None else [k for k in keys if pool.drawable(k)]


@pytest.mark.parametrize("quality_lr", [0.01, 0.5])  # 0.5: scores reach the floor and the maximum falls
def test_openai_five_keeps_its_scores_incrementally_with_the_same_results_as_the_full_scan(
        quality_lr: float, make_snapshot: SnapshotFactory) -> None:
    rng = np.random.default_rng(7)
    new, old = OpenAIFiveMatchmaker(0.2, quality_lr), _OpenAIFiveByScanning(0.2, quality_lr)
    pools = [PolicyPool(), PolicyPool()]
    draws_new, draws_old = np.random.default_rng(1), np.random.default_rng(1)
    for version in range(60):
        for pid in ("player-0", "player-1"):
            for pool, mm in zip(pools, (new, old), strict=True):
                snap = make_snapshot(pid, version, "player")
                pool.add(snap)
                mm.on_publish(snap)
                if version > 8 and version % 3:  # a retention policy drops some older weights
                    pool.drop_weights(SnapshotKey(pid, version - 8))
        learner = SnapshotKey("player-0", version)
        lineups = [mm.lineups(pool, learner, "player", ["player"], 6, g)
                   for pool, mm, g in ((pools[0], new, draws_new), (pools[1], old, draws_old))]
        assert lineups[0] == lineups[1]
        for (opponent,) in lineups[0] + [(SnapshotKey("player-1", int(rng.integers(version + 1))),)] * 20:
            score = float(rng.random() < 0.8)
            new.record_result(learner, opponent, score)
            old.record_result(learner, opponent, score)
        keys = list(old._quality)
        np.testing.assert_allclose([new.quality(k) for k in keys], [old.quality(k) for k in keys],
                                   rtol=1e-9, atol=1e-9)
    assert min(old._quality.values()) < -1.0  # the scores moved: the comparison is not between zeros
    restored = OpenAIFiveMatchmaker(0.2, quality_lr)
    restored.load_state(new.to_state())
    key = SnapshotKey("player-1", 59)
    for mm in (new, restored, old):
        mm.record_result(SnapshotKey("player-0", 59), key, 1.0)
    assert new.quality(key) == pytest.approx(old.quality(key), rel=1e-9)
    assert restored.quality(key) == pytest.approx(old.quality(key), rel=1e-9)
