"""Evaluation matches: a policy in its seat, a line-up in the others, a fixed list of episode seeds.

Runs as a generator that yields after every tick, so the server can answer trainers between ticks
of a long evaluation. Fixed seeds make two policies comparable on identical episodes (the paired
comparisons that rate cooperative policies).
"""

from __future__ import annotations

from collections.abc import Generator, Hashable, Mapping, Sequence
from dataclasses import dataclass, field

from mpimarl.envs.spec import EnvSpec
from mpimarl.rollout.runner import ActingPolicy, VectorMatches
from mpimarl.rollout.seating import SeatedKey, seating, seats_of_role

OWN = "evaluated"


@dataclass
class EpisodeResults:
    """Per-episode returns of the evaluated side and of everyone else, in seed order."""

    own: list[float] = field(default_factory=list)
    other: list[float] = field(default_factory=list)
    length: list[int] = field(default_factory=list)

    @property
    def episodes(self) -> int:
        """Number of finished episodes."""
        return len(self.own)


def play_episodes(matches: VectorMatches, spec: EnvSpec, own: ActingPolicy, own_role: str,
                  lineup: Sequence[SeatedKey], policies: Mapping[Hashable, ActingPolicy],
                  seeds: Sequence[int]) -> Generator[None, None, EpisodeResults]:
    """Play one episode per seed with `own` in a seat of `own_role` (alternating seats per episode)."""
    own_seats = seats_of_role(spec, own_role)
    table: dict[Hashable, ActingPolicy] = dict(policies)
    table[OWN] = own
    results: list[tuple[float, float, int] | None] = [None] * len(seeds)
    next_episode = 0

    def launch(env_index: int) -> None:
        nonlocal next_episode
        k = next_episode
        next_episode += 1
        seat = own_seats[k % len(own_seats)]
        matches.start(env_index, seating(spec, seat, OWN, lineup), tag=k, seed=int(seeds[k]))

    for i in range(min(len(matches.envs), len(seeds))):
        launch(i)
    while matches.num_active:
        for ep in matches.tick(table):
            results[ep.tag] = (*ep.side_returns(OWN), ep.length)
            if next_episode < len(seeds):
                launch(ep.env_index)
        yield
    out = EpisodeResults()
    for item in results:
        assert item is not None
        out.own.append(item[0])
        out.other.append(item[1])
        out.length.append(item[2])
    return out
