"""Playing many episodes between fixed policies, for the baselines' tests."""

from __future__ import annotations

from collections.abc import Callable, Hashable

import numpy as np

from mpimarl.envs.base import MultiAgentEnv
from mpimarl.rollout.evaluate import play_fixed as play
from mpimarl.rollout.runner import ActingPolicy

__all__ = ["connect_four_score", "play"]


def connect_four_score(factory: Callable[[], MultiAgentEnv], first: ActingPolicy, second: ActingPolicy,
                       games: int, seed: int = 0) -> dict[str, float]:
    """`first`'s score (wins + draws/2) against `second`, with the first move alternating."""

    def seating(k: int) -> dict[str, Hashable]:
        return {"player_0": "a", "player_1": "b"} if k % 2 == 0 else {"player_0": "b", "player_1": "a"}

    eps = play(factory, seating, {"a": first, "b": second}, games, seed)
    own = np.array([ep.side_returns("a")[0] for ep in eps])
    return {"score": float(np.mean((own + 1) / 2)), "wins": float(np.mean(own > 0)),
            "draws": float(np.mean(own == 0)), "losses": float(np.mean(own < 0))}
