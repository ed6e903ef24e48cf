"""Playing many episodes between fixed policies, for the baselines' tests and measurements."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping

import numpy as np

from mpimarl.envs.base import MultiAgentEnv
from mpimarl.rollout.runner import ActingPolicy, FinishedEpisode, VectorMatches


def play(factory: Callable[[], MultiAgentEnv], seating: Callable[[int], dict[str, Hashable]],
         policies: Mapping[Hashable, ActingPolicy], episodes: int, seed: int = 0,
         copies: int = 16) -> list[FinishedEpisode]:
    """Play `episodes` episodes (episode k seated by `seating(k)`, env seed `seed + k`) on `copies`
    env copies stepped together; returns the finished episodes ordered by k."""
    envs = [factory() for _ in range(min(copies, episodes))]
    matches = VectorMatches(envs, seed)
    done: list[FinishedEpisode] = []
    started = 0
    for i in range(len(envs)):
        matches.start(i, seating(started), tag=started, seed=seed + started)
        started += 1
    while matches.num_active:
        for ep in matches.tick(policies):
            done.append(ep)
            if started < episodes:
                matches.start(ep.env_index, seating(started), tag=started, seed=seed + started)
                started += 1
    for env in envs:
        env.close()
    return sorted(done, key=lambda ep: ep.tag)


def connect_four_score(factory: Callable[[], MultiAgentEnv], first: ActingPolicy, second: ActingPolicy,
                       games: int, seed: int = 0) -> dict[str, float]:
    """`first`'s score (wins + draws/2) against `second`, with the first move alternating."""

    def seating(k: int) -> dict[str, Hashable]:
        return {"player_0": "a", "player_1": "b"} if k % 2 == 0 else {"player_0": "b", "player_1": "a"}

    eps = play(factory, seating, {"a": first, "b": second}, games, seed)
    own = np.array([ep.side_returns("a")[0] for ep in eps])
    return {"score": float(np.mean((own + 1) / 2)), "wins": float(np.mean(own > 0)),
            "draws": float(np.mean(own == 0)), "losses": float(np.mean(own < 0))}
