"""Evaluation matches: a policy in its seat, a line-up in the others, a fixed list of episode seeds.

Runs as a generator that yields after every tick, so the server can answer trainers between ticks
of a long evaluation. Fixed seeds make two policies comparable on identical episodes (the paired
comparisons that rate cooperative policies).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from mpimarl.envs.base import MultiAgentEnv
from mpimarl.envs.spec import EnvSpec
from mpimarl.rollout.runner import ActingPolicy, FinishedEpisode, VectorMatches
from mpimarl.rollout.seating import SeatedKey, seat_occupants, seating, seats_of_role

OWN = "evaluated"


@dataclass
class EpisodeResults:
    """Per-episode results of the evaluated side, in seed order.

    `own` / `other`: mean per-agent return of the evaluated policy's agents and of everyone else's
    (NaN when nobody else plays). `seats`: the mean per-agent return of every seat, in seat order,
    and `occupants`: who sat there (`OWN` for the evaluated policy, else a `SeatedKey`), so that
    free-for-all games can be ranked seat by seat.
    """

    own: list[float] = field(default_factory=list)
    other: list[float] = field(default_factory=list)
    length: list[int] = field(default_factory=list)
    seats: list[list[float]] = field(default_factory=list)
    occupants: list[list[object]] = field(default_factory=list)

    @property
    def episodes(self) -> int:
        """Number of finished episodes."""
        return len(self.own)


def seat_returns(spec: EnvSpec, ep: FinishedEpisode) -> list[float]:
    """Mean per-agent return of every seat of `spec` in a finished episode, in seat order."""
    return [float(np.mean([ep.returns.get(a, 0.0) for a in agents])) for _, agents in spec.seats()]


def play_episodes(matches: VectorMatches, spec: EnvSpec, own: ActingPolicy, own_role: str,
                  lineup: Sequence[SeatedKey], policies: Mapping[Hashable, ActingPolicy],
                  seeds: Sequence[int]) -> Generator[None, None, EpisodeResults]:
    """Play one episode per seed with `own` in a seat of `own_role` (alternating seats per episode)."""
    own_seats = seats_of_role(spec, own_role)
    table: dict[Hashable, ActingPolicy] = dict(policies)
    table[OWN] = own
    finished: list[FinishedEpisode | None] = [None] * len(seeds)
    next_episode = 0

    def own_seat(k: int) -> int:
        return own_seats[k % len(own_seats)]

    def launch(env_index: int) -> None:
        nonlocal next_episode
        k = next_episode
        next_episode += 1
        matches.start(env_index, seating(spec, own_seat(k), OWN, lineup), tag=k, seed=int(seeds[k]))

    for i in range(min(len(matches.envs), len(seeds))):
        launch(i)
    while matches.num_active:
        for ep in matches.tick(table):
            finished[ep.tag] = ep
            if next_episode < len(seeds):
                launch(ep.env_index)
        yield
    out = EpisodeResults()
    for k, ep in enumerate(finished):
        if ep is None:
            raise RuntimeError(f"evaluation episode {k} (seed {seeds[k]}) never finished")
        own_mean, other_mean = ep.side_returns(OWN)
        out.own.append(own_mean)
        out.other.append(other_mean)
        out.length.append(ep.length)
        out.seats.append(seat_returns(spec, ep))
        out.occupants.append(seat_occupants(spec, own_seat(k), OWN, lineup))
    return out


def play_fixed(factory: Callable[[], MultiAgentEnv], seating_of: Callable[[int], dict[str, Hashable]],
               policies: Mapping[Hashable, ActingPolicy], episodes: int, seed: int = 0,
               copies: int = 16) -> list[FinishedEpisode]:
    """Play `episodes` episodes between fixed policies outside any run (episode k seated by
    `seating_of(k)`, env seed `seed + k`) on `copies` environment copies stepped together; the finished
    episodes ordered by k. For measurements of scripted players and tests of their strength."""
    envs = [factory() for _ in range(min(copies, episodes))]
    matches = VectorMatches(envs, seed)
    done: list[FinishedEpisode] = []
    started = 0
    for i in range(len(envs)):
        matches.start(i, seating_of(started), tag=started, seed=seed + started)
        started += 1
    while matches.num_active:
        for ep in matches.tick(policies):
            done.append(ep)
            if started < episodes:
                matches.start(ep.env_index, seating_of(started), tag=started, seed=seed + started)
                started += 1
    for env in envs:
        env.close()
    return sorted(done, key=lambda ep: ep.tag)
