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
from mpimarl.league.pool import SnapshotKey, baseline_key, is_baseline_id


@dataclass(frozen=True)
class SeatedKey:
    """A policy in a line-up: the snapshot (or a fixed baseline) and the role it plays."""

    key: SnapshotKey
    role: str

    @property
    def is_random(self) -> bool:
        """True for the uniform-random baseline."""
        return self.key.policy_id == RANDOM_ID

    @property
    def is_baseline(self) -> bool:
        """True for a fixed baseline (random or scripted), which is not in the pool."""
        return is_baseline_id(self.key.policy_id)

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


def baseline_seat(name: str, role: str) -> SeatedKey:
    """The fixed baseline `name` (random or scripted) playing `role`."""
    return SeatedKey(baseline_key(name), role)


def policy_key(seated: SeatedKey) -> Hashable:
    """The key a runner groups agents by: baselines are per role (their action spaces differ)."""
    return (seated.key.policy_id, seated.role) if seated.is_baseline else seated.key


def seats_of_role(spec: EnvSpec, role: str) -> list[int]:
    """Indices of the seats that `role` can take."""
    return [i for i, (r, _) in enumerate(spec.seats()) if r == role]


def other_seat_roles(spec: EnvSpec, own_seat: int) -> list[str]:
    """Roles of every seat but `own_seat`, in seat order."""
    return [r for i, (r, _) in enumerate(spec.seats()) if i != own_seat]


def seat_occupants(spec: EnvSpec, own_seat: int, own: object,
                   lineup: Sequence[SeatedKey]) -> list[object]:
    """Who sits in each seat, in seat order: `own` in `own_seat`, the line-up in the others.

    The line-up's entries are matched to the other seats by role, in order, so a line-up drawn for
    one seat of a role also fits another seat of the same role.
    """
    queues: dict[str, list[SeatedKey]] = {}
    for item in lineup:
        queues.setdefault(item.role, []).append(item)
    out: list[object] = []
    for i, (role, _) in enumerate(spec.seats()):
        if i == own_seat:
            out.append(own)
            continue
        queue = queues.get(role)
        if not queue:
            raise ValueError(f"line-up {[str(k.key) for k in lineup]} has no policy for a seat of role {role!r}")
        out.append(queue.pop(0))
    return out


def seating(spec: EnvSpec, own_seat: int, own: Hashable, lineup: Sequence[SeatedKey]) -> dict[str, Hashable]:
    """Map every agent to the policy key that controls it (see `seat_occupants` for the matching)."""
    out: dict[str, Hashable] = {}
    occupants = seat_occupants(spec, own_seat, own, lineup)
    for (_, agents), occupant in zip(spec.seats(), occupants):
        key = policy_key(occupant) if isinstance(occupant, SeatedKey) else occupant
        for agent in agents:
            out[agent] = key
    return out
