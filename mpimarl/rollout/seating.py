"""Who sits where in a match: seats, line-ups and the agent -> policy maps the runner uses.

A seat is a set of agents one policy controls in a match: a team role is one seat holding all its
agents, a non-team role gives one seat per agent (the two players of connect_four). A learner (or an
evaluated snapshot) takes one seat of its role; a *line-up* fills every other seat, in seat order.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from mpimarl.envs.spec import EnvSpec
from mpimarl.league.pool import RANDOM_POLICY_ID as RANDOM_ID
from mpimarl.league.pool import SnapshotKey


@dataclass(frozen=True)
class SeatedKey:
    """A policy in a line-up: the snapshot (or the random baseline) and the role it plays."""

    key: SnapshotKey
    role: str

    @property
    def is_random(self) -> bool:
        """True for the uniform-random baseline."""
        return self.key.policy_id == RANDOM_ID

    def to_json(self) -> list[object]:
        """[policy_id, version, role], the form line-ups travel in."""
        return [self.key.policy_id, self.key.version, self.role]

    @staticmethod
    def from_json(item: Sequence[object]) -> SeatedKey:
        """Inverse of `to_json`."""
        return SeatedKey(SnapshotKey(str(item[0]), int(item[1])), str(item[2]))  # type: ignore[call-overload]


Lineup = tuple[SeatedKey, ...]


def random_key(role: str) -> SeatedKey:
    """The uniform-random baseline playing `role`."""
    return SeatedKey(SnapshotKey(RANDOM_ID, 0), role)


def policy_key(seated: SeatedKey) -> Hashable:
    """The key a runner groups agents by: random baselines are per role (their action spaces differ)."""
    return (RANDOM_ID, seated.role) if seated.is_random else seated.key


def seats_of_role(spec: EnvSpec, role: str) -> list[int]:
    """Indices of the seats that `role` can take."""
    return [i for i, (r, _) in enumerate(spec.seats()) if r == role]


def other_seat_roles(spec: EnvSpec, own_seat: int) -> list[str]:
    """Roles of every seat but `own_seat`, in seat order."""
    return [r for i, (r, _) in enumerate(spec.seats()) if i != own_seat]


def seating(spec: EnvSpec, own_seat: int, own: Hashable, lineup: Sequence[SeatedKey]) -> dict[str, Hashable]:
    """Map every agent to the policy key that controls it.

    The line-up's entries are matched to the other seats by role, in order, so a line-up drawn for
    one seat of a role also fits another seat of the same role.
    """
    seats = spec.seats()
    queues: dict[str, list[SeatedKey]] = {}
    for item in lineup:
        queues.setdefault(item.role, []).append(item)
    out: dict[str, Hashable] = {}
    for i, (role, agents) in enumerate(seats):
        if i == own_seat:
            key = own
        else:
            queue = queues.get(role)
            if not queue:
                raise ValueError(f"line-up {[str(k.key) for k in lineup]} has no policy for a seat of role {role!r}")
            key = policy_key(queue.pop(0))
        for agent in agents:
            out[agent] = key
    return out
