"""The OpenSpiel adapter on real games: turns, chance, rewards, masks, seeding, ids and role specs."""

from __future__ import annotations

import numpy as np
import pyspiel
import pytest
from gymnasium import spaces
from open_spiel.python import policy as os_policy
from open_spiel.python.algorithms import expected_game_score

from mpimarl.envs import check_env, list_environments, resolve_env
from mpimarl.envs.openspiel import OpenSpielEnv, encode_state, observation_shape, state_encoder
from mpimarl.envs.spec import RoleRule, build_env_spec
from mpimarl.errors import EnvironmentSpecError

PLAYERS = ("player_0", "player_1")


def _kuhn() -> OpenSpielEnv:
    return OpenSpielEnv(pyspiel.load_game("kuhn_poker"))


def _random_episode(env: OpenSpielEnv, rng: np.random.Generator, seed: int | None) -> tuple[dict, list, int]:
    """Play one episode with uniformly random legal actions; (total rewards, per-step rewards, steps)."""
    env.reset(seed=seed)
    totals = dict.fromkeys(env.possible_agents, 0.0)
    per_step = []
    steps = 0
    while True:
        acting = env.acting_agents()
        actions = {}
        for agent in acting:
            _, mask = env.observe(agent)
            actions[agent] = int(rng.choice(np.flatnonzero(mask)))
        result = env.step(actions)
        steps += 1
        per_step.append(result.rewards)
        for agent, reward in result.rewards.items():
            totals[agent] += reward
        if result.episode_over:
            assert result.ended == dict.fromkeys(env.possible_agents, False)  # terminated, never truncated
            assert env.acting_agents() == []
            return totals, per_step, steps


def test_kuhn_episodes_are_zero_sum_and_pay_each_player_once() -> None:
    env = _kuhn()
    rng = np.random.default_rng(0)
    for episode in range(300):
        totals, per_step, steps = _random_episode(env, rng, seed=episode)
        assert steps in (2, 3)
        assert totals["player_0"] in (-2.0, -1.0, 1.0, 2.0)
        assert totals["player_0"] + totals["player_1"] == 0.0
        # Each player's final payoff arrives exactly once, whoever made the last move.
        for agent in PLAYERS:
            assert sum(1 for rewards in per_step if rewards.get(agent)) == 1
        assert totals["player_1"] == env.state.returns()[1]
        assert totals["player_0"] == env.state.returns()[0]


def test_masks_and_observations_match_the_game_state() -> None:
    env = _kuhn()
    rng = np.random.default_rng(1)
    for episode in range(50):
        env.reset(seed=episode)
        while env.acting_agents():
            (agent,) = env.acting_agents()
            state = env.state
            assert not state.is_chance_node() and agent == f"player_{state.current_player()}"
            for p, name in enumerate(PLAYERS):
                obs, mask = env.observe(name)
                assert obs.dtype == np.float32 and obs.shape == (env.obs_size(name),) == (11,)
                np.testing.assert_array_equal(obs, state.information_state_tensor(p))
                assert mask.dtype == np.bool_ and mask.shape == (2,)
                assert np.flatnonzero(mask).tolist() == state.legal_actions(p)  # empty for the waiting player
            env.step({agent: int(rng.choice(np.flatnonzero(env.observe(agent)[1])))})


def test_seeding_reproduces_the_deals() -> None:
    def deals(env: OpenSpielEnv, seeds: list[int | None]) -> list[list[int]]:
        out = []
        for seed in seeds:
            env.reset(seed=seed)
            out.append(env.state.history()[:2])  # the two chance moves: the cards dealt
        return out

    seeds = list(range(20))
    first = deals(_kuhn(), seeds)
    assert first == deals(_kuhn(), seeds)
    assert len({tuple(d) for d in first}) > 1  # different seeds, different deals
    # reset(None) continues the stream: same sequence after the same seed.
    assert deals(_kuhn(), [7, None, None]) == deals(_kuhn(), [7, None, None])


def test_random_play_matches_the_uniform_policy_value() -> None:
    game = pyspiel.load_game("kuhn_poker")
    uniform = os_policy.UniformRandomPolicy(game)
    exact = expected_game_score.policy_value(game.new_initial_state(), [uniform, uniform])
    assert exact[0] == pytest.approx(0.125) and exact[0] + exact[1] == pytest.approx(0.0)
    env = OpenSpielEnv(game)
    rng = np.random.default_rng(2)
    env.reset(seed=2)
    returns = np.array([_random_episode(env, rng, seed=None)[0]["player_0"] for _ in range(6000)])
    standard_error = returns.std() / np.sqrt(len(returns))
    # The first player gains 0.125 a hand when both play uniformly: about 6 standard errors from 0.
    assert abs(returns.mean() - exact[0]) < 3 * standard_error


def test_rps_is_simultaneous_and_both_act() -> None:
    env = OpenSpielEnv(pyspiel.load_game("matrix_rps"))
    env.reset(seed=0)
    assert env.acting_agents() == list(PLAYERS)
    for agent in PLAYERS:
        obs, mask = env.observe(agent)
        assert mask.tolist() == [True, True, True] and obs.dtype == np.float32
    assert env.action_space("player_0") == spaces.Discrete(3)
    with pytest.raises(ValueError, match="one action for each acting agent"):
        env.step({"player_0": 0})
    result = env.step({"player_0": 1, "player_1": 0})  # paper beats rock
    assert result.rewards == {"player_0": 1.0, "player_1": -1.0}
    assert result.episode_over and result.ended == {"player_0": False, "player_1": False}
    with pytest.raises(RuntimeError, match="reset"):
        env.step({})


def test_simultaneous_game_with_chance_pays_returns_once() -> None:
    # Goofspiel: simultaneous bids, the prize cards drawn by chance.
    env = OpenSpielEnv(pyspiel.load_game("goofspiel", {"num_cards": 4}))
    rng = np.random.default_rng(3)
    for episode in range(20):
        totals, _, steps = _random_episode(env, rng, seed=episode)
        assert steps == 3  # one simultaneous bid per prize card; OpenSpiel plays the forced last one itself
        assert [totals[a] for a in PLAYERS] == env.state.returns()


def test_illegal_action_names_the_agent() -> None:
    env = _kuhn()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="player_0.*not legal"):
        env.step({"player_0": 5})


def test_board_observations_are_channels_last() -> None:
    game = pyspiel.load_game("connect_four")
    env = OpenSpielEnv(game)
    env.reset(seed=0)
    env.step({"player_0": 3})
    assert observation_shape(game) == (6, 7, 3) == env.obs_shape("player_1")
    obs, _ = env.observe("player_1")
    tensor = np.asarray(env.state.observation_tensor(1)).reshape(3, 6, 7)
    np.testing.assert_array_equal(obs.reshape(6, 7, 3), tensor.transpose(1, 2, 0))
    np.testing.assert_array_equal(encode_state(env.state, 1), obs)
    assert "x" in env.render_text() or "o" in env.render_text()
    assert env.render_text() == str(env.state)


def test_encoder_is_the_information_state_for_poker() -> None:
    game = pyspiel.load_game("leduc_poker")
    state = game.new_initial_state()
    state.apply_action(0)
    state.apply_action(3)
    np.testing.assert_array_equal(state_encoder(game)(state, 1), state.information_state_tensor(1))
    assert observation_shape(game) == (30,)


# ---- through the loader and the spec ----------------------------------------------------------


@pytest.mark.parametrize(("env_id", "api"), [("openspiel:kuhn_poker", "aec"), ("openspiel:matrix_rps", "parallel")])
def test_loader_resolves_and_the_spec_builds(env_id: str, api: str) -> None:
    factory = resolve_env(env_id, {})
    assert (factory.env_id, factory.api) == (env_id, api)
    assert isinstance(factory(), OpenSpielEnv)
    spec = build_env_spec(factory, [RoleRule("player", "player_.*", team=False)])
    assert spec.agents == PLAYERS and spec.api == api
    role = spec.roles["player"]
    assert role.agents == PLAYERS and role.has_mask and not role.team
    assert isinstance(role.action_space, spaces.Discrete)
    assert [seat for _, seat in spec.seats()] == [("player_0",), ("player_1",)]
    report = check_env(factory, spec, episodes=5)  # the checker users run passes
    assert report["episodes"] == 5


def test_game_parameters_come_from_kwargs() -> None:
    env = resolve_env("openspiel:kuhn_poker", {"players": 3})()
    assert env.possible_agents == ["player_0", "player_1", "player_2"]


def test_unknown_game_gives_one_clear_error() -> None:
    with pytest.raises(EnvironmentSpecError) as info:
        resolve_env("openspiel:kuhn_pokr", {})
    message = str(info.value)
    assert "'openspiel:kuhn_pokr'" in message and "not a registered OpenSpiel game" in message
    assert "did you mean openspiel:kuhn_poker" in message
    assert "\n" not in message  # not OpenSpiel's list of every game


def test_bad_parameter_names_it() -> None:
    with pytest.raises(EnvironmentSpecError, match=r"'openspiel:kuhn_poker'.*Unknown parameter 'cards'.*players"):
        resolve_env("openspiel:kuhn_poker", {"cards": 4})
    with pytest.raises(EnvironmentSpecError, match="names no game"):
        resolve_env("openspiel:", {})


def test_catalog_lists_openspiel_games_with_the_loader_api() -> None:
    listed = dict(list_environments())
    for env_id in ("openspiel:kuhn_poker", "openspiel:matrix_rps", "openspiel:leduc_poker"):
        assert resolve_env(env_id, {}).api == listed[env_id]
