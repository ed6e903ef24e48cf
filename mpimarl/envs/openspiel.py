"""Adapter from an OpenSpiel game (pyspiel) to `MultiAgentEnv`, and the one observation encoding.

Written on pyspiel directly. Player ``p`` is the agent ``player_p``. At a decision node of a
sequential game the current player acts; at a simultaneous node every player with a legal action
acts at once. Chance nodes never reach the caller: the adapter samples them with its own numpy
Generator, seeded by ``reset(seed)``. The reward of every player in one `step` is the change of
``state.returns()`` since the previous step, so each player receives its final payoff exactly once,
whoever made the last move. OpenSpiel games end only at terminal states: there is no truncation.

`state_encoder` is the observation the networks see, here and in the exact evaluation of
`mpimarl.league.exploitability`, so a policy is evaluated on exactly the inputs it was trained on.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from typing import Any

import gymnasium
import numpy as np
import pyspiel

from mpimarl.envs.base import API_AEC, API_PARALLEL, StepResult, check_actions_match
from mpimarl.errors import EnvironmentSpecError

AGENT_PREFIX = "player_"
"""OpenSpiel player p is the agent f"{AGENT_PREFIX}{p}"."""

StateEncoder = Callable[[pyspiel.State, int], np.ndarray]
"""(state, player) -> that player's flat float32 observation."""


def agent_name(player: int) -> str:
    """The agent name of OpenSpiel player `player`."""
    return f"{AGENT_PREFIX}{player}"


# ---- loading ----------------------------------------------------------------------------------


def load_game(env_id: str, name: str, params: dict[str, Any]) -> pyspiel.Game:
    """`pyspiel.load_game(name, params)`; EnvironmentSpecError naming `env_id` when it fails.

    An unknown name lists the nearest registered games; a bad parameter repeats OpenSpiel's reason
    (the parameters the game accepts, or the type it expected).
    """
    registered = pyspiel.registered_names()
    if name not in registered:
        close = difflib.get_close_matches(name, registered, n=3)
        suggestion = f"; did you mean {', '.join('openspiel:' + c for c in close)}?" if close else ""
        raise EnvironmentSpecError(
            f"env {env_id!r}: {name!r} is not a registered OpenSpiel game{suggestion} "
            "(pyspiel.registered_names() lists them all)"
        )
    try:
        return pyspiel.load_game(name, dict(params))
    except Exception as exc:  # noqa: BLE001 - SpielError, TypeError from the bindings: all bad input
        reason = str(exc).strip().splitlines()
        raise EnvironmentSpecError(
            f"env {env_id!r}: OpenSpiel could not load game {name!r} with parameters {dict(params)}: "
            f"{' '.join(reason) or type(exc).__name__}"
        ) from exc


def game_api(game: pyspiel.Game) -> str:
    """The loader API a game behaves like: "parallel" for simultaneous-move games, else "aec"."""
    return API_PARALLEL if game.get_type().dynamics == pyspiel.GameType.Dynamics.SIMULTANEOUS else API_AEC


# ---- the observation encoding -------------------------------------------------------------------


def _tensor_shape(game: pyspiel.Game) -> tuple[str, tuple[int, ...]]:
    """Which tensor encodes a state ("information_state", "observation" or "" for none) and its shape."""
    game_type = game.get_type()
    if game_type.provides_information_state_tensor:
        return "information_state", tuple(game.information_state_tensor_shape())
    if game_type.provides_observation_tensor:
        return "observation", tuple(game.observation_tensor_shape())
    return "", (0,)


def observation_shape(game: pyspiel.Game) -> tuple[int, ...]:
    """The shape of `state_encoder(game)`'s observation before flattening.

    A 3-D tensor (OpenSpiel boards are channels-first) becomes (height, width, channels), the
    layout mpimarl's conv torso reads; anything else is flat. A game with no tensor gets one
    constant feature, so a network still has an input (its policy is then a plain mixed strategy).
    """
    _, shape = _tensor_shape(game)
    size = math.prod(shape)
    if size == 0:
        return (1,)
    if len(shape) == 3:
        return (shape[1], shape[2], shape[0])
    return (size,)


def state_encoder(game: pyspiel.Game) -> StateEncoder:
    """The function (state, player) -> flat float32 observation of `player` at a state of `game`.

    The information state tensor when the game provides one (what the player knows, its own past
    actions included), else the observation tensor; see `observation_shape` for the layout.
    """
    kind, shape = _tensor_shape(game)
    if math.prod(shape) == 0:
        constant = np.ones(1, np.float32)

        def encode_constant(state: pyspiel.State, player: int) -> np.ndarray:
            return constant.copy()

        return encode_constant

    read = pyspiel.State.information_state_tensor if kind == "information_state" else pyspiel.State.observation_tensor
    if len(shape) == 3:

        def encode_board(state: pyspiel.State, player: int) -> np.ndarray:
            tensor = np.asarray(read(state, player), np.float32).reshape(shape)
            return np.ascontiguousarray(tensor.transpose(1, 2, 0)).ravel()

        return encode_board

    def encode_flat(state: pyspiel.State, player: int) -> np.ndarray:
        return np.asarray(read(state, player), np.float32)

    return encode_flat


def encode_state(state: pyspiel.State, player: int) -> np.ndarray:
    """`player`'s flat float32 observation at `state` (one-off form of `state_encoder`)."""
    return state_encoder(state.get_game())(state, player)


def legal_mask(state: pyspiel.State, player: int, num_actions: int) -> np.ndarray:
    """Bool mask over the game's distinct actions of `player`'s legal actions at `state`."""
    mask = np.zeros(num_actions, bool)
    mask[state.legal_actions(player)] = True
    return mask


# ---- the adapter ------------------------------------------------------------------------------


class OpenSpielEnv:
    """`MultiAgentEnv` over one pyspiel game (sequential or simultaneous, any number of players)."""

    def __init__(self, game: pyspiel.Game) -> None:
        """Wrap `game`; a new state is created at every `reset`."""
        self._game = game
        self._num_players = game.num_players()
        self._num_actions = game.num_distinct_actions()
        self.possible_agents: list[str] = [agent_name(p) for p in range(self._num_players)]
        self._player = {agent: p for p, agent in enumerate(self.possible_agents)}
        self._encode = state_encoder(game)
        self._shape = observation_shape(game)
        self._space = gymnasium.spaces.Discrete(self._num_actions)
        self._rng = np.random.default_rng()
        self._state: pyspiel.State = game.new_initial_state()
        self._returns = np.zeros(self._num_players)
        self._resolve_chance()

    @property
    def raw_env(self) -> pyspiel.Game:
        """The wrapped game."""
        return self._game

    @property
    def state(self) -> pyspiel.State:
        """The current OpenSpiel state (never a chance node)."""
        return self._state

    def obs_size(self, agent: str) -> int:
        """Length of the flat observation (the same for every player)."""
        return math.prod(self._shape)

    def obs_shape(self, agent: str) -> tuple[int, ...]:
        """The observation's shape before flattening (see `observation_shape`)."""
        return self._shape

    def action_space(self, agent: str) -> gymnasium.spaces.Space:
        """Discrete(num_distinct_actions); `observe`'s mask says which are legal."""
        return self._space

    def reset(self, seed: int | None = None) -> None:
        """Start a new episode; a seed reseeds the chance sampler (None keeps its stream going)."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._state = self._game.new_initial_state()
        self._returns = np.zeros(self._num_players)
        self._resolve_chance()

    def acting_agents(self) -> list[str]:
        """The current player, every player with a legal action at a simultaneous node, or nobody at the end."""
        state = self._state
        if state.is_terminal():
            return []
        if state.is_simultaneous_node():
            return [agent for p, agent in enumerate(self.possible_agents) if state.legal_actions(p)]
        return [self.possible_agents[state.current_player()]]

    def observe(self, agent: str) -> tuple[np.ndarray, np.ndarray | None]:
        """`agent`'s encoded state and its legal-action mask (all False when it need not act)."""
        player = self._player[agent]
        return self._encode(self._state, player), legal_mask(self._state, player, self._num_actions)

    def step(self, actions: dict[str, Any]) -> StepResult:
        """Apply the acting agents' actions, sample chance, and hand every player its change of return."""
        state = self._state
        acting = self.acting_agents()
        check_actions_match(actions, acting)
        if not acting:
            raise RuntimeError("step() called after the episode ended; call reset() first")
        if state.is_simultaneous_node():
            joint = [pyspiel.INVALID_ACTION] * self._num_players
            for agent in acting:
                joint[self._player[agent]] = self._legal_action(agent, actions[agent])
            state.apply_actions(joint)
        else:
            state.apply_action(self._legal_action(acting[0], actions[acting[0]]))
        self._resolve_chance()
        returns = np.asarray(state.returns(), np.float64)
        delta = returns - self._returns
        self._returns = returns
        rewards = {agent: float(delta[p]) for p, agent in enumerate(self.possible_agents) if delta[p]}
        if not state.is_terminal():
            return StepResult(rewards, {}, {}, False)
        return StepResult(rewards, dict.fromkeys(self.possible_agents, False), {}, True)

    def render_text(self) -> str:
        """The current state as OpenSpiel prints it (board, cards, betting history)."""
        return str(self._state)

    def close(self) -> None:
        """Nothing to release."""

    def _legal_action(self, agent: str, action: Any) -> int:
        """`action` as an int, or ValueError naming the agent and its legal actions (a caller bug)."""
        action = int(action)
        legal = self._state.legal_actions(self._player[agent])
        if action not in legal:
            raise ValueError(f"agent {agent!r} played action {action}, which is not legal now; legal actions: {legal}")
        return action

    def _resolve_chance(self) -> None:
        """Sample chance outcomes with the adapter's Generator until a player must act (or the end)."""
        state = self._state
        while state.is_chance_node():
            outcomes = state.chance_outcomes()
            cumulative = np.cumsum([probability for _, probability in outcomes])
            index = int(np.searchsorted(cumulative, self._rng.random() * cumulative[-1], side="right"))
            state.apply_action(outcomes[min(index, len(outcomes) - 1)][0])
