"""Trajectory segments: what an IMPALA actor ships to its learner, as one flat float32 array.

An actor plays into an ordinary :class:`mpimarl.algos.ppo.StreamRollout` (the rollout runner's
sink); once it holds enough complete transitions, :func:`pack_segment` copies ALL its rows into one
(rows, width) float32 array and the open rows are carried over to the next segment. The complete
rows are the training data; the open rows (an agent that acted but whose transition is not finished)
are shipped too, only so that the learner can value the state a chain was cut at (its bootstrap).

The column layout is fixed by the policy's shape (:class:`SegmentLayout`), so the learner and its
actors agree on it without sending it. Integers (actions of discrete spaces, successor indices) and
flags are exact in float32 up to 2**24, far above a segment's length.

Per row: observation, action mask (discrete actions only), action, the centralised critic's input
(MAPPO's global state or agent-specific state, `ppo.critic` state/agent_state only), behaviour log-probability,
reward, next value (0 at a termination, the behaviour critic's bootstrap at a truncation), index of
the stream's next row in this segment (-1: none), episode boundary flag, complete flag.
This module is compute only (no MPI).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpimarl.algos.networks import PolicyShape
from mpimarl.algos.ppo import StreamRollout


@dataclass(frozen=True)
class SegmentLayout:
    """Where each field sits in a segment row, for one policy shape."""

    obs_size: int
    mask_size: int  # action_dim for discrete actions, else 0
    action_size: int  # 1 for discrete actions, else action_dim
    discrete: bool
    critic_size: int = 0  # a centralised critic's input (MAPPO), else 0

    @staticmethod
    def of(shape: PolicyShape) -> SegmentLayout:
        """The layout for a policy of `shape`: a centralised V critic's input travels with every row
        (a local critic reads the observation, already there). COMA's Q critic is not supported: its
        input ends with the other agents' actions, filled in after the row was written."""
        if shape.central and shape.critic_outputs != 1:
            raise ValueError("segments carry a centralised V critic's input, not COMA's Q critic's")
        return SegmentLayout(shape.obs_size, shape.action_dim if shape.discrete else 0,
                             1 if shape.discrete else shape.action_dim, shape.discrete,
                             shape.critic_input if shape.central else 0)

    @property
    def mask_at(self) -> int:
        return self.obs_size

    @property
    def action_at(self) -> int:
        return self.obs_size + self.mask_size

    @property
    def critic_at(self) -> int:
        return self.action_at + self.action_size

    @property
    def scalars_at(self) -> int:
        """Start of the six scalar columns: logp, reward, next_value, next_index, chain_break, complete."""
        return self.critic_at + self.critic_size

    @property
    def width(self) -> int:
        """Floats per row."""
        return self.scalars_at + 6


LOGP, REWARD, NEXT_VALUE, NEXT_INDEX, CHAIN_BREAK, COMPLETE = range(6)


def pack_segment(rollout: StreamRollout, layout: SegmentLayout) -> np.ndarray:
    """Every row of `rollout` as a (rows, width) float32 array; then carry its open rows over.

    Returns the segment; the rollout keeps only its open transitions, as after a PPO update."""
    n = rollout.size
    out = np.zeros((n, layout.width), np.float32)
    out[:, : layout.obs_size] = rollout.obs[:n]
    if layout.mask_size:
        assert rollout.mask is not None
        out[:, layout.mask_at : layout.action_at] = rollout.mask[:n]
    action = rollout.action[:n]
    out[:, layout.action_at : layout.critic_at] = action.reshape(n, -1)
    if layout.critic_size:
        assert rollout.critic_in is not None
        out[:, layout.critic_at : layout.scalars_at] = rollout.critic_in[:n]
    s = layout.scalars_at
    out[:, s + LOGP] = rollout.logp[:n]
    out[:, s + REWARD] = rollout.reward[:n]
    out[:, s + NEXT_VALUE] = rollout.next_value[:n]
    out[:, s + NEXT_INDEX] = rollout.next_index[:n]
    out[:, s + CHAIN_BREAK] = rollout.chain_break[:n]
    out[:, s + COMPLETE] = rollout.complete[:n]
    rollout.carry_over()
    return out


@dataclass
class SegmentRows:
    """Segments unpacked into typed columns (several segments concatenated, indices rebased)."""

    obs: np.ndarray
    mask: np.ndarray | None
    action: np.ndarray
    behaviour_logp: np.ndarray
    reward: np.ndarray
    next_value: np.ndarray
    next_index: np.ndarray
    chain_break: np.ndarray
    complete: np.ndarray
    critic_in: np.ndarray | None = None  # a centralised critic's input per row

    @property
    def size(self) -> int:
        """Rows (complete and open)."""
        return len(self.reward)


def unpack_segments(segments: list[np.ndarray], layout: SegmentLayout) -> SegmentRows:
    """Concatenate segments into typed columns; each segment's successor indices are offset by the
    rows before it (a chain never leaves its segment)."""
    for seg in segments:
        if seg.dtype != np.float32 or seg.ndim != 2 or seg.shape[1] != layout.width:
            raise ValueError(f"segment of shape {seg.shape} {seg.dtype}; expected (rows, {layout.width}) float32")
    data = np.concatenate(segments) if segments else np.zeros((0, layout.width), np.float32)
    s = layout.scalars_at
    next_index = data[:, s + NEXT_INDEX].astype(np.int64)
    base = 0
    for seg in segments:
        part = next_index[base : base + len(seg)]
        part[part >= 0] += base
        base += len(seg)
    action = data[:, layout.action_at : layout.critic_at]
    return SegmentRows(
        obs=np.ascontiguousarray(data[:, : layout.obs_size]),
        mask=data[:, layout.mask_at : layout.action_at] > 0.5 if layout.mask_size else None,
        action=action[:, 0].astype(np.int64) if layout.discrete else np.ascontiguousarray(action),
        behaviour_logp=data[:, s + LOGP].copy(),
        reward=data[:, s + REWARD].copy(),
        next_value=data[:, s + NEXT_VALUE].copy(),
        next_index=next_index,
        chain_break=data[:, s + CHAIN_BREAK] > 0.5,
        complete=data[:, s + COMPLETE] > 0.5,
        critic_in=np.ascontiguousarray(data[:, layout.critic_at : s]) if layout.critic_size else None,
    )
