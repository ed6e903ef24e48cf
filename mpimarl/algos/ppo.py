"""PPO for one role's policy, read top to bottom in the order of the maths:
rollout storage -> advantages (GAE) -> clipped loss -> update.

The rollout is organised in *streams*: one stream per (environment copy, agent) the learner
controls. Agents act at different times (turn-based AEC games) or together (parallel games), so a
transition is only complete when its agent acts again (its reward and bootstrap value are known
then) or its episode ends. Incomplete transitions carry over into the next rollout. Time-limit
truncation bootstraps from the value of the final observation instead of zero.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mpimarl.algos.adam import Adam
from mpimarl.algos.coma import counterfactual_advantage, expected_q
from mpimarl.algos.data_parallel import GradientGroup, feature_moments, group_moments, group_update
from mpimarl.algos.networks import ActorCritic, PolicyShape
from mpimarl.algos.value_norm import ValueNormalizer
from mpimarl.config import PPOConfig

# ---------------------------------------------------------------------------------------------
# Rollout storage
# ---------------------------------------------------------------------------------------------


class StreamRollout:
    """Transitions of the learner's agents, stored flat, chained per stream."""

    def __init__(self, shape: PolicyShape, capacity: int) -> None:
        self.shape = shape
        self.capacity = capacity
        act_shape: tuple[int, ...] = () if shape.discrete else (shape.action_dim,)
        self.obs = np.zeros((capacity, shape.obs_size), np.float32)
        # A centralised critic's input (global state, + the others' actions for COMA) per transition.
        self.critic_in = np.zeros((capacity, shape.critic_input), np.float32) if shape.central else None
        self.mask = np.ones((capacity, shape.action_dim), bool) if shape.discrete else None
        self.action = np.zeros((capacity, *act_shape), np.int64 if shape.discrete else np.float32)
        self.logp = np.zeros(capacity, np.float32)
        self.value = np.zeros(capacity, np.float32)
        self.reward = np.zeros(capacity, np.float32)
        self.next_value = np.zeros(capacity, np.float32)
        self.chain_break = np.zeros(capacity, bool)  # no GAE link to the stream's next transition
        self.next_index = np.full(capacity, -1, np.int64)
        self.complete = np.zeros(capacity, bool)
        self.size = 0
        self.num_complete = 0
        self.pending: dict[Hashable, int] = {}  # stream -> index of its open transition

    def add(self, streams: Sequence[Hashable], obs: np.ndarray, mask: np.ndarray | None,
            action: np.ndarray, logp: np.ndarray, value: np.ndarray,
            critic_in: np.ndarray | None = None) -> int:
        """Open one transition per stream; the stream's previous one completes with this value.

        Returns the index of the first new transition (COMA fills in the others' actions there).
        """
        n = len(streams)
        start = self.size
        if start + n > self.capacity:
            self.grow(start + n)
        end = start + n
        self.obs[start:end] = obs
        if self.critic_in is not None and critic_in is not None:
            self.critic_in[start:end, : critic_in.shape[1]] = critic_in
        if self.mask is not None and mask is not None:
            self.mask[start:end] = mask
        self.action[start:end] = action
        self.logp[start:end] = logp
        self.value[start:end] = value
        self.reward[start:end] = 0.0
        self.complete[start:end] = False
        self.chain_break[start:end] = False
        self.next_index[start:end] = -1
        pending = self.pending
        for j, stream in enumerate(streams):
            prev = pending.get(stream)
            if prev is not None:
                self.next_value[prev] = value[j]
                self.next_index[prev] = start + j
                self.complete[prev] = True
                self.num_complete += 1
            pending[stream] = start + j
        self.size = end
        return start

    def add_reward(self, stream: Hashable, reward: float) -> None:
        """Credit a reward to the stream's open transition (ignored before its first action)."""
        idx = self.pending.get(stream)
        if idx is not None:
            self.reward[idx] += reward

    def is_open(self, stream: Hashable) -> bool:
        """Whether the stream has an open transition."""
        return stream in self.pending

    def end(self, stream: Hashable, bootstrap: float | None) -> None:
        """Close the stream's episode: terminated (bootstrap None) or truncated (value of final obs)."""
        idx = self.pending.pop(stream, None)
        if idx is None:
            return
        self.next_value[idx] = 0.0 if bootstrap is None else bootstrap
        self.chain_break[idx] = True
        self.complete[idx] = True
        self.num_complete += 1

    def grow(self, need: int) -> None:
        """Make room for at least `need` transitions (the capacity at least doubles)."""
        new_cap = max(need, 2 * self.capacity)
        for name in ("obs", "critic_in", "mask", "action", "logp", "value", "reward", "next_value", "chain_break",
                     "next_index", "complete"):
            arr = getattr(self, name)
            if arr is None:
                continue
            fill = -1 if name == "next_index" else (1 if name == "mask" else 0)
            bigger = np.full((new_cap, *arr.shape[1:]), fill, arr.dtype)
            bigger[: self.size] = arr[: self.size]
            setattr(self, name, bigger)
        self.capacity = new_cap

    def carry_over(self) -> None:
        """Drop complete transitions; move the open ones to the front for the next rollout."""
        keep = np.array(sorted(self.pending.values()), np.int64)
        remap = {int(old): new for new, old in enumerate(keep)}
        for name in ("obs", "critic_in", "mask", "action", "logp", "value", "reward"):
            arr = getattr(self, name)
            if arr is not None and len(keep):
                arr[: len(keep)] = arr[keep]
        self.complete[: len(keep)] = False
        self.chain_break[: len(keep)] = False
        self.next_index[: len(keep)] = -1
        self.pending = {s: remap[i] for s, i in self.pending.items()}
        self.size = len(keep)
        self.num_complete = 0


# ---------------------------------------------------------------------------------------------
# Advantages
# ---------------------------------------------------------------------------------------------


def compute_gae(reward: np.ndarray, value: np.ndarray, next_value: np.ndarray, chain_break: np.ndarray,
                next_index: np.ndarray, complete: np.ndarray, gamma: float, lam: float) -> np.ndarray:
    """Generalised advantage estimation over chained transitions.

    delta_i = r_i + gamma * next_value_i - v_i, and A_i = delta_i + gamma * lam * A_next(i) when the
    transition links to a complete successor in this rollout (no episode end in between); at a
    rollout boundary the lambda-sum is truncated, as in standard PPO. Successors always have higher
    indices, so one backward sweep suffices.
    """
    n = len(reward)
    adv = np.zeros(n, np.float32)
    delta = reward + gamma * next_value - value
    link = (~chain_break) & (next_index >= 0)
    coef = gamma * lam
    for i in range(n - 1, -1, -1):
        if not complete[i]:
            continue
        a = delta[i]
        if link[i]:
            j = next_index[i]
            if complete[j]:
                a += coef * adv[j]
        adv[i] = a
    return adv


# ---------------------------------------------------------------------------------------------
# Loss and update
# ---------------------------------------------------------------------------------------------


def trainable(net: nn.Module) -> list[nn.Parameter]:
    """The parameters the optimiser moves (not the input normalisers' statistics)."""
    return [p for p in net.parameters() if p.requires_grad]


@dataclass
class UpdateStats:
    """What one PPO update measured (averaged over minibatches)."""

    policy_loss: float
    value_loss: float
    entropy: float
    approx_kl: float
    clip_fraction: float
    explained_variance: float
    learning_rate: float
    samples: int


@dataclass
class PPOBatch:
    """One update's training data: the complete transitions as tensors on the learner's device."""

    obs: torch.Tensor
    mask: torch.Tensor | None
    actions: torch.Tensor
    old_logp: torch.Tensor
    old_value: torch.Tensor
    adv: torch.Tensor
    returns: torch.Tensor
    critic_in: torch.Tensor | None = None  # centralised critic input (MAPPO, COMA)
    old_v_target: torch.Tensor | None = None  # old values in the critic's units (value normalisation)
    v_target: torch.Tensor | None = None  # value targets in the critic's units

    @property
    def size(self) -> int:
        """Number of transitions."""
        return len(self.adv)


class PPOLearner:
    """One role's learning policy: acts for the rollout and improves itself with clipped PPO.

    The critic reads the agent's observation (independent PPO) or, when `shape.central`, a
    centralised input stored with every transition (MAPPO).

    Devices: the network learns on `device`; acting (tiny batches, every step) always runs on the
    CPU: on a GPU the learner acts with a CPU copy of its weights (:attr:`acting_net`), refreshed by
    :meth:`weights_changed` after every update, so a rollout step makes no host<->device round trip.
    Actions are sampled from torch's CPU generator on every device. With `advantage="coma"` the critic is
    COMA's Q over the agent's actions, whose input ends with the other agents' actions
    (`others_size` values, filled in by the rollout once every agent has acted).
    """

    def __init__(self, shape: PolicyShape, cfg: PPOConfig, device: torch.device, seed: int,
                 advantage: str = "gae", others_size: int = 0) -> None:
        self.cfg = cfg
        self.shape = shape
        self.device = device
        self.central = shape.central
        self.coma = advantage == "coma"
        if self.coma and not (shape.central and shape.discrete and shape.critic_outputs == shape.action_dim):
            raise ValueError("COMA needs Discrete actions and a centralised critic with one output per action")
        self.state_input = shape.critic_input - others_size  # where the others' actions begin (COMA)
        self.ent_coef = cfg.ent_coef  # set_learning_rate anneals it with ppo.ent_coef_final
        self.reset(seed)

    def reset(self, seed: int) -> None:
        """Fresh weights, optimiser state, value normaliser and an empty rollout, all derived from `seed`.

        Open transitions are dropped with the rest: the caller ends the matches that made them.
        """
        torch.manual_seed(seed)
        self.value_norm = ValueNormalizer() if getattr(self.cfg, "value_norm", False) else None
        self.net = ActorCritic(self.shape).to(self.device)
        # Only what has a gradient: input normalisers' statistics are parameters too (in the buffer).
        self.optimizer = Adam(trainable(self.net), lr=self.cfg.learning_rate, eps=1e-5)
        self.rollout = StreamRollout(self.shape, capacity=self.cfg.rollout_steps + 4 * self.cfg.num_envs)
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.acting_net = self.net
        if self.device.type != "cpu":
            with torch.random.fork_rng(devices=[]):  # its initial weights are overwritten at once
                self.acting_net = ActorCritic(self.shape)
            self.acting_net.requires_grad_(False)
            self.weights_changed()

    def weights_changed(self) -> None:
        """Refresh the CPU acting copy after the weights changed (an update, a load): one flat
        device-to-host copy. Nothing to do when the network is on the CPU already."""
        if self.acting_net is self.net:
            return
        flat = torch.nn.utils.parameters_to_vector([p.detach() for p in self.net.parameters()]).cpu()
        torch.nn.utils.vector_to_parameters(flat, list(self.acting_net.parameters()))

    def _denorm(self, values: np.ndarray) -> np.ndarray:
        """The critic's raw outputs as returns (undoing value normalisation)."""
        return values if self.value_norm is None else self.value_norm.denormalize(values)

    # -- acting ---------------------------------------------------------------------------------
    @property
    def sink(self) -> StreamRollout:
        """Where the rollout runner writes this learner's transitions (its local buffer)."""
        return self.rollout

    @torch.inference_mode()
    def act(self, obs: np.ndarray, mask: np.ndarray | None,
            critic_in: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sample actions; return (actions, log-probs, values) as numpy arrays.

        Centralised critics value `critic_in`; COMA's values are computed at update time (they
        need the other agents' actions of the same step), so it returns zeros here.
        """
        net = self.acting_net
        o = torch.from_numpy(obs)
        m = None if mask is None else torch.from_numpy(mask)
        if not self.central:
            action, logp, value = net.act_with_value(o, m)
            return action.numpy(), logp.numpy(), self._denorm(value.numpy())
        action, logp = net.act(o, m)
        if self.coma or critic_in is None:
            value_np = np.zeros(len(obs), np.float32)
        else:
            value_np = self._denorm(net.value(torch.from_numpy(critic_in)).numpy())
        return action.numpy(), logp.numpy(), value_np

    @torch.inference_mode()
    def values(self, obs: np.ndarray) -> np.ndarray:
        """Critic values for a batch of observations (truncation bootstraps, local critic)."""
        return self._denorm(self.acting_net.value(torch.from_numpy(obs)).numpy())

    @torch.inference_mode()
    def bootstrap(self, streams: Sequence[Hashable], obs: np.ndarray,
                  critic_in: np.ndarray | None) -> np.ndarray:
        """Values of the final observations of cut episodes (time limits, abandoned matches).

        COMA: V = sum_u pi(u|o) Q(s, (u_-a, u)), with the others' actions of each stream's last
        transition standing in for the actions they would take next.
        """
        if not self.central or critic_in is None:
            return self.values(obs)
        net = self.acting_net
        x = torch.from_numpy(np.ascontiguousarray(critic_in, np.float32))
        if not self.coma:
            return self._denorm(net.value(x).numpy())
        ro = self.rollout
        rows = [ro.pending[s] for s in streams]
        assert ro.critic_in is not None
        others = torch.from_numpy(ro.critic_in[rows, self.state_input:])
        q = torch.from_numpy(self._denorm(net.action_values(torch.cat([x, others], 1)).numpy()))
        probs = net.probabilities(torch.from_numpy(obs), None)
        return expected_q(q, probs).numpy()

    @property
    def ready(self) -> bool:
        """True once the rollout holds enough complete transitions for an update."""
        return self.rollout.num_complete >= self.cfg.rollout_steps

    # -- advantages -----------------------------------------------------------------------------
    @torch.no_grad()
    def coma_values(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """COMA before the update: Q of every action, Q of the taken one, and each transition's
        successor value (the successor's taken Q, or the bootstrap stored at an episode end)."""
        ro = self.rollout
        assert ro.critic_in is not None
        q_all = self._denorm(self.net.action_values(torch.from_numpy(ro.critic_in[:n]).to(self.device)).cpu().numpy())
        q_taken = q_all[np.arange(n), ro.action[:n]]
        next_value = ro.next_value[:n].copy()
        link = (~ro.chain_break[:n]) & (ro.next_index[:n] >= 0)
        next_value[link] = q_taken[ro.next_index[:n][link]]
        return q_all, q_taken.astype(np.float32), next_value

    @torch.no_grad()
    def advantages(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(indices of the complete transitions, their advantages, value targets, old values).

        GAE: advantages on V, targets = advantages + V. COMA: targets are TD(lambda) returns over the
        taken actions' Q values, and the advantage is the counterfactual one,
        Q(s, u) - sum_u' pi(u'|o) Q(s, (u_-a, u')), with pi the current policy (the behaviour policy
        of this rollout) and Q the critic before this update (the role of COMA's target network).
        """
        cfg, ro = self.cfg, self.rollout
        n = ro.size
        if self.coma:
            q_all, value_np, next_value = self.coma_values(n)
        else:
            value_np, next_value = ro.value[:n], ro.next_value[:n]
        adv_all = compute_gae(ro.reward[:n], value_np, next_value, ro.chain_break[:n],
                              ro.next_index[:n], ro.complete[:n], cfg.gamma, cfg.gae_lambda)
        idx = np.flatnonzero(ro.complete[:n])
        value = value_np[idx].astype(np.float32)
        returns = (adv_all[idx] + value).astype(np.float32)
        adv = adv_all[idx]
        if self.coma:
            dev = self.device
            obs = torch.from_numpy(ro.obs[idx]).to(dev)
            mask = torch.from_numpy(ro.mask[idx]).to(dev) if ro.mask is not None else None
            probs = self.net.probabilities(obs, mask)
            actions = torch.from_numpy(ro.action[idx]).to(dev)
            adv = counterfactual_advantage(torch.from_numpy(q_all[idx]).to(dev), probs, actions).cpu().numpy()
        return idx, adv.astype(np.float32), returns, value

    # -- update ---------------------------------------------------------------------------------
    def update(self, progress: float, group: GradientGroup | None = None,
               extra: np.ndarray | None = None) -> UpdateStats:
        """One PPO update on the complete transitions; `progress` in [0, 1] anneals the LR.

        With `group` (a data-parallel learner group, :mod:`mpimarl.algos.data_parallel`), every
        minibatch step averages the gradient over the group's ranks; `extra` (float64 numbers, e.g.
        step counts) is summed over the group on the way and written back in place.
        """
        if group is not None:
            return group_update(self, group, progress, extra)
        cfg = self.cfg
        lr = self.set_learning_rate(progress)
        b = self.prepare_batch()
        batch = b.size
        mb_size = max(1, batch // cfg.minibatches)
        sums = torch.zeros(5, dtype=torch.float64, device=self.device)  # read back once, after the update
        count = 0
        stop = False
        for _ in range(cfg.epochs):
            perm = torch.randperm(batch, generator=self.generator).to(self.device)
            for start in range(0, batch - mb_size + 1, mb_size):
                mb = perm[start : start + mb_size]
                mb_adv = b.adv[mb]
                if cfg.norm_adv and len(mb) > 1:
                    mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                loss, terms = self.minibatch_loss(b, mb, mb_adv)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(trainable(self.net), cfg.max_grad_norm)
                self.optimizer.step()
                sums += torch.stack([t.detach() for t in terms]).double()
                count += 1
                if cfg.target_kl is not None and terms[3].item() > cfg.target_kl:  # early stop: one sync
                    stop = True
                    break
            if stop:
                break
        return self.finish_update(b, sums.cpu().numpy() / max(count, 1), lr)

    def set_learning_rate(self, progress: float) -> float:
        """Set the optimiser's learning rate for `progress` in [0, 1] (annealed when ppo.anneal_lr) and return it;
        the entropy coefficient follows `progress` too when ppo.ent_coef_final is set."""
        cfg = self.cfg
        final = cfg.ent_coef if cfg.ent_coef_final is None else cfg.ent_coef_final
        self.ent_coef = cfg.ent_coef + (final - cfg.ent_coef) * min(max(progress, 0.0), 1.0)
        lr = cfg.learning_rate * (1.0 - progress) if cfg.anneal_lr else cfg.learning_rate
        lr = max(lr, 1e-8)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def prepare_batch(self, group: GradientGroup | None = None) -> PPOBatch:
        """The complete transitions of the rollout as tensors, with advantages (GAE, or COMA's
        counterfactual ones) and value targets (normalised when value normalisation is on; in a
        learner `group` the normaliser takes the moments of the whole group's returns, so the ranks'
        normalisers stay identical and equal to one learner's over the union batch)."""
        ro = self.rollout
        idx, adv_np, returns_np, value_np = self.advantages()
        dev = self.device
        old_value = torch.from_numpy(value_np).to(dev)
        returns = torch.from_numpy(returns_np).to(dev)
        # The critic learns in normalised units when value normalisation is on.
        old_v_target, v_target = old_value, returns
        if self.value_norm is not None:
            old_v_target = torch.from_numpy(self.value_norm.normalize(value_np)).to(dev)
            if group is None:
                self.value_norm.update(returns_np)
            else:
                self.value_norm.update_moments(*group_moments(returns_np, group))
            v_target = torch.from_numpy(self.value_norm.normalize(returns_np)).to(dev)
        return PPOBatch(
            obs=torch.from_numpy(ro.obs[idx]).to(dev),
            mask=torch.from_numpy(ro.mask[idx]).to(dev) if ro.mask is not None else None,
            actions=torch.from_numpy(ro.action[idx]).to(dev),
            old_logp=torch.from_numpy(ro.logp[idx]).to(dev),
            old_value=old_value,
            adv=torch.from_numpy(adv_np).to(dev),
            returns=returns,
            critic_in=torch.from_numpy(ro.critic_in[idx]).to(dev) if ro.critic_in is not None else None,
            old_v_target=old_v_target,
            v_target=v_target,
        )

    def minibatch_loss(self, b: PPOBatch, mb: torch.Tensor, mb_adv: torch.Tensor
                       ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """The clipped PPO loss of one minibatch (indices `mb`, advantages already normalised), and
        its terms (policy loss, value loss, entropy, approximate KL, clip fraction)."""
        cfg = self.cfg
        new_logp, entropy, new_value = self._evaluate(
            b.obs[mb], None if b.mask is None else b.mask[mb], b.actions[mb],
            None if b.critic_in is None else b.critic_in[mb])
        entropy = entropy.mean()
        log_ratio = new_logp - b.old_logp[mb]
        ratio = log_ratio.exp()
        with torch.no_grad():
            approx_kl = ((ratio - 1) - log_ratio).mean()
            clip_frac = ((ratio - 1.0).abs() > cfg.clip_coef).float().mean()
        pg_loss = torch.max(-mb_adv * ratio,
                            -mb_adv * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef)).mean()
        assert b.v_target is not None and b.old_v_target is not None
        returns = b.v_target[mb]
        if cfg.clip_value:
            old_value = b.old_v_target[mb]
            v_clipped = old_value + (new_value - old_value).clamp(-cfg.clip_coef, cfg.clip_coef)
            v_loss = 0.5 * torch.max((new_value - returns) ** 2, (v_clipped - returns) ** 2).mean()
        else:
            v_loss = 0.5 * ((new_value - returns) ** 2).mean()
        loss = pg_loss - self.ent_coef * entropy + cfg.vf_coef * v_loss
        return loss, (pg_loss, v_loss, entropy, approx_kl, clip_frac)

    def finish_update(self, b: PPOBatch, m: np.ndarray, lr: float,
                      group: GradientGroup | None = None) -> UpdateStats:
        """Fold the rollout's inputs into the input normalisers (after the epochs, so the update's
        ratios start from the policy that acted), explained variance, carry the open transitions over,
        refresh the acting copy, and the update's statistics. In a learner `group` the normalisers
        take the moments of the whole group's inputs, so the ranks' weights stay identical."""
        net = self.net
        for norm, x in ((net.obs_norm, b.obs), (net.critic_norm, b.critic_in)):
            if norm is not None and x is not None:
                norm.update_moments(*feature_moments(x.cpu().numpy(), group))
        self.weights_changed()
        ret_np = b.returns.cpu().numpy()
        var_ret = float(np.var(ret_np))
        ev = float("nan") if var_ret == 0 else 1.0 - float(np.var(ret_np - b.old_value.cpu().numpy())) / var_ret
        self.rollout.carry_over()
        return UpdateStats(policy_loss=m[0], value_loss=m[1], entropy=m[2], approx_kl=m[3],
                           clip_fraction=m[4], explained_variance=ev, learning_rate=lr, samples=b.size)

    def _evaluate(self, obs: torch.Tensor, mask: torch.Tensor | None, actions: torch.Tensor,
                  critic_in: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log-probabilities, entropies, critic outputs) of a minibatch; the critic output is V
        (local or centralised) or, for COMA, Q of the taken action."""
        if not self.central or critic_in is None:
            return self.net.evaluate_with_value(obs, mask, actions)
        logp, entropy = self.net.evaluate(obs, mask, actions)
        if self.coma:
            value = self.net.action_values(critic_in).gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
        else:
            value = self.net.value(critic_in)
        return logp, entropy, value
