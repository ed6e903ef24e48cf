"""The IMPALA learner: PPO's clipped update on segments played by actors, with V-trace targets.

Actors play with the newest weights they have (the *behaviour* policy mu, possibly some updates
old); the learner holds the current (*target*) policy pi. Before each update it evaluates every
received row with pi: log-probabilities and values V(x). Along each chain of one agent's consecutive
transitions it computes V-trace (:func:`mpimarl.algos.vtrace.vtrace`, truncation levels rho_bar and
c_bar): the value targets v_s and the policy-gradient advantages rho_s (r_s + gamma v_{s+1} - V(x_s)).
A chain ends at an episode's end (termination: no bootstrap; truncation: the behaviour critic's value
of the final observation, the one value not recomputed) or at the segment's end, where it bootstraps
from pi's value of the stream's next (open) row, which the actor ships for that purpose.

The update itself is PPO's (same minibatches, clipping and loss, :class:`mpimarl.algos.ppo.PPOLearner`)
with the V-trace advantages, v_s as value targets, and pi's log-probabilities before the update as the
"old" policy of the ratio: the behaviour policy's lag is corrected by V-trace, the size of the step by
the clipping. With no lag (sync actors) pi = mu, every rho is 1 and every c is lambda (rho_bar,
c_bar >= 1; `trainer.vtrace_lambda`, by default `ppo.gae_lambda`), and the targets are TD(lambda) returns.
Compute only: no MPI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from mpimarl.algos.networks import PolicyShape, flat_weights, load_flat_weights, num_weights
from mpimarl.algos.ppo import PPOBatch, PPOLearner
from mpimarl.algos.vtrace import vtrace
from mpimarl.config import PPOConfig
from mpimarl.rollout.segment import SegmentLayout, SegmentRows, unpack_segments

if TYPE_CHECKING:
    from mpimarl.algos.data_parallel import GradientGroup

# ---------------------------------------------------------------------------------------------
# What actors need of the learner: its weights and, with ppo.value_norm, the normaliser's statistics
# ---------------------------------------------------------------------------------------------

_NORM_STATS = 2  # mean and variance of the value normaliser, appended to the weights


def behaviour_size(learner: PPOLearner) -> int:
    """Floats in the buffer :func:`behaviour_weights` makes for `learner`'s shape and config."""
    return num_weights(learner.net) + (_NORM_STATS if learner.value_norm is not None else 0)


def behaviour_weights(learner: PPOLearner) -> np.ndarray:
    """The flat float32 buffer the learner broadcasts to its actors: the weights, then (value
    normalisation) the normaliser's mean and variance, which the actors' critic needs to turn its
    output into returns for the bootstraps it ships (truncated episodes)."""
    weights = flat_weights(learner.net)
    if learner.value_norm is None:
        return weights
    stats = np.array([learner.value_norm.mean, learner.value_norm.var], np.float32)
    return np.concatenate([weights, stats])


def load_behaviour_weights(learner: PPOLearner, buf: np.ndarray) -> None:
    """An actor takes a :func:`behaviour_weights` buffer (the network may keep views of `buf`)."""
    if buf.dtype != np.float32 or buf.shape != (behaviour_size(learner),):
        raise ValueError(f"behaviour buffer of {buf.shape} {buf.dtype}; expected ({behaviour_size(learner)},) float32")
    n = num_weights(learner.net)
    load_flat_weights(learner.net, buf[:n])
    learner.weights_changed()
    if learner.value_norm is not None:
        learner.value_norm.mean, learner.value_norm.var = float(buf[n]), float(buf[n + 1])


@dataclass
class ReceivedSegment:
    """One actor's segment and the policy version (updates made) it was played with."""

    data: np.ndarray
    behaviour_version: int
    complete_rows: int
    env_steps: int = 0  # environment steps the actor took to play it


def vtrace_rows(rows: SegmentRows, target_logp: np.ndarray, values: np.ndarray, gamma: float,
                rho_bar: float, c_bar: float, lam: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices of the complete rows in row order, their V-trace targets v_s, their pg advantages).

    `target_logp` and `values` are the target policy's log-probabilities and values of every row.
    Each chain of linked complete rows goes through :func:`vtrace` as one time-major sequence."""
    n = rows.size
    complete = rows.complete
    nxt = rows.next_index
    link = complete & ~rows.chain_break & (nxt >= 0)
    linked_complete = np.zeros(n, bool)
    linked_complete[link] = complete[nxt[link]]
    successor_of_chain = np.zeros(n, bool)
    successor_of_chain[nxt[linked_complete]] = True
    vs = np.zeros(n, np.float32)
    adv = np.zeros(n, np.float32)
    for head in np.flatnonzero(complete & ~successor_of_chain):
        chain = [int(head)]
        while linked_complete[chain[-1]]:
            chain.append(int(nxt[chain[-1]]))
        last = chain[-1]
        rewards = rows.reward[chain].astype(np.float64)
        dones = np.zeros(len(chain))
        bootstrap = 0.0
        if rows.chain_break[last]:  # episode end: the stored bootstrap (0 at a termination) closes it
            rewards[-1] += gamma * rows.next_value[last]
            dones[-1] = 1.0
        elif link[last]:  # cut at the segment's end: pi's value of the stream's open next row
            bootstrap = float(values[nxt[last]])
        else:
            bootstrap = float(rows.next_value[last])
        out = vtrace(rows.behaviour_logp[chain], target_logp[chain], rewards, values[chain], bootstrap, dones,
                     gamma, rho_bar, c_bar, lam)
        vs[chain] = out.vs
        adv[chain] = out.pg_advantages
    idx = np.flatnonzero(complete)
    return idx, vs[idx], adv[idx]


class VTraceLearner(PPOLearner):
    """A PPO learner whose batches are actors' segments, corrected with V-trace.

    It never acts for training: :meth:`add_segment` queues what actors send; :attr:`ready` is true
    once the queue holds `ppo.rollout_steps` complete transitions; `update` (PPO's) then trains on
    the whole queue."""

    def __init__(self, shape: PolicyShape, cfg: PPOConfig, device: torch.device, seed: int,
                 rho_bar: float = 1.0, c_bar: float = 1.0, lam: float = 1.0) -> None:
        super().__init__(shape, cfg, device, seed)
        self.layout = SegmentLayout.of(shape)
        self.rho_bar = rho_bar
        self.c_bar = c_bar
        self.lam = lam  # V-trace's lambda: c_t = lam * min(c_bar, pi/mu)
        self.queue: list[ReceivedSegment] = []
        self.version = 0  # updates made: the policy version actors report back as their behaviour
        self.last_lags: list[int] = []  # learner version minus behaviour version, per segment of the last batch
        self.last_rho_mean = float("nan")
        self.last_env_steps = 0  # environment steps behind the last batch

    def add_segment(self, data: np.ndarray, behaviour_version: int, env_steps: int = 0) -> None:
        """Queue one segment (a (rows, width) float32 array from :func:`pack_segment`), played with
        policy version `behaviour_version` in `env_steps` environment steps."""
        if data.ndim != 2 or data.shape[1] != self.layout.width:
            raise ValueError(f"segment of shape {data.shape}; this policy's rows have {self.layout.width} floats")
        complete = int(np.count_nonzero(data[:, self.layout.scalars_at + 5] > 0.5))
        self.queue.append(ReceivedSegment(data, behaviour_version, complete, env_steps))

    def clear(self) -> None:
        """Drop every queued segment (a fresh best response must not learn from its predecessor's play)."""
        self.queue.clear()

    @property
    def queued(self) -> int:
        """Complete transitions queued."""
        return sum(s.complete_rows for s in self.queue)

    @property
    def queued_env_steps(self) -> int:
        """Environment steps behind the queued segments."""
        return sum(s.env_steps for s in self.queue)

    @property
    def ready(self) -> bool:
        """True once the queue holds a batch (ppo.rollout_steps complete transitions)."""
        return self.queued >= self.cfg.rollout_steps

    @torch.no_grad()
    def prepare_batch(self, group: GradientGroup | None = None) -> PPOBatch:
        """The queued segments as one batch with V-trace advantages and targets (the queue empties).
        A learner fed by actors is one rank: it takes no learner `group`."""
        if group is not None:
            raise ValueError("a V-trace learner is not part of a data-parallel learner group")
        segments, self.queue = self.queue, []
        self.last_lags = [self.version - s.behaviour_version for s in segments]
        self.last_env_steps = sum(s.env_steps for s in segments)
        rows = unpack_segments([s.data for s in segments], self.layout)
        dev = self.device
        obs = torch.from_numpy(rows.obs).to(dev)
        mask = torch.from_numpy(rows.mask).to(dev) if rows.mask is not None else None
        actions = torch.from_numpy(rows.action).to(dev)
        critic_in = torch.from_numpy(rows.critic_in).to(dev) if rows.critic_in is not None else None
        # The critic's raw output (normalised units with ppo.value_norm) and the same as returns.
        logp_t, _, raw_t = self._evaluate(obs, mask, actions, critic_in)
        target_logp = logp_t.cpu().numpy()
        raw = raw_t.float().cpu().numpy()
        values = self._denorm(raw)
        idx, vs, adv = vtrace_rows(rows, target_logp, values, self.cfg.gamma, self.rho_bar, self.c_bar,
                                   self.lam)
        ratio = np.exp(np.minimum(target_logp[idx] - rows.behaviour_logp[idx], 50.0))
        self.last_rho_mean = float(np.mean(np.minimum(self.rho_bar, ratio))) if len(idx) else float("nan")
        self.version += 1  # the update that consumes this batch makes the next version
        sel = torch.from_numpy(idx).to(dev)
        old_value = torch.from_numpy(values[idx]).to(dev)
        returns = torch.from_numpy(vs).to(dev)
        old_v_target, v_target = old_value, returns
        if self.value_norm is not None:  # the critic learns normalised targets, as PPOLearner's does
            old_v_target = raw_t[sel].float()
            self.value_norm.update(vs)
            v_target = torch.from_numpy(self.value_norm.normalize(vs)).to(dev)
        return PPOBatch(
            obs=obs[sel], mask=None if mask is None else mask[sel], actions=actions[sel],
            old_logp=logp_t[sel].float(), old_value=old_value, adv=torch.from_numpy(adv).to(dev),
            returns=returns, critic_in=None if critic_in is None else critic_in[sel],
            old_v_target=old_v_target, v_target=v_target,
        )
