"""A rank of a data-parallel learner group (DD-PPO): several consecutive ranks train one policy.

Every rank of the group plays its own environment copies (its own seeds) and collects its share of
the policy's batch (`ppo.rollout_steps` divided by the group size); the ranks update in lockstep,
averaging gradients over the group's communicator (:mod:`mpimarl.algos.data_parallel`), so their
weights stay identical (a checksum is compared every generation). The group's first rank, the
leader, is the only one that talks to rank 0: it publishes snapshots, fetches line-ups and opponent
weights and broadcasts them to the group, and sends the train rows and match tallies aggregated
over the group. The server sees one trainer per policy, whatever the group size.

A generation ends at the first update after which the group's summed environment steps reach the
generation's budget (every rank learns the sum in the same collective, so every rank stops at the
same update); with one rank per policy the plain :class:`mpimarl.roles.trainer.Trainer` runs.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from mpi4py import MPI

from mpimarl.algos.networks import FrozenPolicy, flat_weights, load_flat_weights, num_weights
from mpimarl.algos.ppo import PPOLearner, UpdateStats
from mpimarl.comm.channel import SERVER_RANK, Deadline, Tag, send_json
from mpimarl.comm.group import GroupComm, RolloutNotices
from mpimarl.league.pool import SnapshotKey
from mpimarl.roles import faults
from mpimarl.roles.context import RunContext
from mpimarl.roles.tallies import Tally, finite_row, sum_tallies, tallies_to_json
from mpimarl.roles.trainer import Trainer
from mpimarl.rollout.seating import Lineup, SeatedKey

# The counters summed over the group with every update (float64): cumulative env steps and
# episodes of the rank, and since the previous train row: sum and count of episode returns, sum of
# episode lengths, seconds waited on the server (the leader's).
_STEPS, _EPISODES, _RETURN_SUM, _RETURN_N, _LENGTH_SUM, _WAIT = range(6)


class GroupTrainer(Trainer):
    """One learner rank of a policy trained by a group of ranks."""

    def __init__(self, ctx: RunContext, comm: MPI.Comm, plan_comm: MPI.Comm, device: str,
                 group: GroupComm) -> None:
        super().__init__(ctx, comm, plan_comm, device)
        self.group = group
        self.leader = ctx.unit_of(self.rank).leader
        ppo = ctx.config.ppo
        # The policy's batch stays ppo.rollout_steps: each rank collects its share of it.
        share = max(ppo.minibatches, math.ceil(ppo.rollout_steps / group.size))
        self.learner = PPOLearner(self.shape, ppo.model_copy(update={"rollout_steps": share}), self.device,
                                  self.seed)
        # Identical start: every rank takes the leader's initial weights.
        mine = flat_weights(self.learner.net) if group.is_leader else None
        start = group.bcast_weights(mine, num_weights(self.learner.net))
        load_flat_weights(self.learner.net, start.copy())
        self.learner.weights_changed()
        self.group_env_steps = 0
        self.group_episodes = 0
        self.checksums: list[int] = []
        # DD-PPO's straggler cut-off (trainer.straggler_cutoff < 1, async only): see _rollout_done.
        self.notices = RolloutNotices(group) if ctx.config.trainer.straggler_cutoff < 1 else None
        self._cut_ranks = 0

    @property
    def policy_env_steps(self) -> int:
        """The group's environment steps (as of its last update)."""
        return self.group_env_steps

    # -- talking to the server (the leader only) ------------------------------------------------
    def publish(self) -> None:
        """The leader publishes the group's (identical) weights."""
        if self.group.is_leader:
            super().publish()

    def fetch_lineups_for_group(self, planned: list[list[object]] | None, stop: bool,
                                wait_s: float | None = None) -> list[Lineup] | None:
        """The leader asks the server and broadcasts line-ups and new weights; None: stop (async time
        limit). Async checkpoints: a cut rank 0 asks for is saved by every rank of the group on the way
        (`_save_cut`); the other ranks wait for the leader at most `wait_s` (default server.timeout_s)."""
        group = self.group
        msg: dict[str, Any] | None = None
        if group.is_leader:
            before = set(self.cache)
            lineups = None if stop else self.fetch_lineups(planned)
            if lineups is None:  # the group's own time limit, or rank 0's: save the last cut if asked
                self._save_cut()
                stop = True
            new = [k for k in self.cache if k not in before]
            msg = {
                "stop": stop,
                "lineups": [[s.to_json() for s in lu] for lu in lineups or []],
                "sent": [[k.policy_id, k.version, self.cache[k].shape.layout, self.cache[k].weights.size]
                         for k in new],
                "cache": [[k.policy_id, k.version] for k in self.cache],
            }
        t0 = time.perf_counter()
        msg = group.bcast_json(msg, wait_s)
        while not group.is_leader and self.checkpoints is not None and self.checkpoints.follow_cut(msg, group):
            msg = group.bcast_json(None, wait_s)  # saved the leader's cut: now the line-ups (or stop)
        roles = {self.ctx.shape(r).layout: r for r in self.ctx.spec.roles}
        for pid, version, layout, size in msg["sent"]:
            key = SnapshotKey(str(pid), int(version))
            shape = self.ctx.shape(roles[layout])  # roles with one layout have one shape
            mine = self.cache[key].weights if group.is_leader else None
            weights = group.bcast_weights(mine, int(size))
            if not group.is_leader:
                self.cache[key] = FrozenPolicy(shape, weights, torch.device("cpu"))  # opponents act on the CPU
        if not group.is_leader:
            keep = [SnapshotKey(str(p), int(v)) for p, v in msg["cache"]]
            self.cache = type(self.cache)((k, self.cache[k]) for k in keep)
            self.wait_s += time.perf_counter() - t0
        if msg["stop"]:
            return None
        return [tuple(SeatedKey.from_json(item) for item in lineup) for lineup in msg["lineups"]]

    # -- the main loop -------------------------------------------------------------------------
    def run(self) -> None:
        """Trainer.run for a group: the leader speaks for it; the sync plan reaches every rank."""
        cfg = self.ctx.config
        sync = cfg.schedule.mode == "sync"
        limit = cfg.schedule.time_limit_s
        started = time.monotonic()
        if not self.restored:  # resumed: version `start_generation` is published already
            self.publish()
            self._boundary()
        else:  # every rank loaded its own checkpoint: they must hold the same weights
            self.group.check_identical(flat_weights(self.learner.net), "resuming from a checkpoint")
        last_generation_s = 0.0
        stopped_early = False
        for generation in range(self.start_generation, self.ctx.generations):
            self.generation = generation
            planned = None
            stop = False
            if sync:
                planned = self._receive_plan(Deadline(self.timeout + 4 * last_generation_s, "the generation plan"),
                                             self.leader)
                if planned is None:
                    stopped_early = True
                    break
            elif limit is not None and self.group.is_leader and self.checkpoints is None:
                stop = time.monotonic() - started > limit  # the leader decides for the whole group
            # (with async checkpoints rank 0 keeps the time limit: a last cut, then stop)
            lineups = self.fetch_lineups_for_group(planned, stop, self.timeout + 4 * last_generation_s)
            if lineups is None:
                break
            t_start = time.perf_counter()
            tallies = self.play(lineups, self.ctx.generation_budget(generation))
            last_generation_s = time.perf_counter() - t_start
            self.checksums.append(self.group.check_identical(flat_weights(self.learner.net),
                                                             f"generation {generation}"))
            self.report_matches(lineups, self._gather_tallies(tallies))
            self.version += 1
            if self.publish_due(generation):  # async pool cadence (pool.publish_every)
                self.publish()
            self._boundary()  # checkpoints (mpimarl/roles/resume.py)
        if self.group.is_leader:
            send_json(self.comm, self._done_message(), SERVER_RANK, Tag.DONE)
            self.finish_evaluations()
        if sync and not stopped_early:
            self._receive_stop_plan(Deadline(self.timeout + 4 * last_generation_s, "the final plan"))

    def play(self, lineups: list[Lineup], budget: int) -> dict[int, Tally]:
        """Play and learn until the group's summed steps reach `budget` more (at an update)."""
        matches = self.matches
        policies = self._start_generation(lineups)
        tallies: dict[int, Tally] = {}
        start = self.group_env_steps
        target = start + budget
        competitive = self.ctx.config.task.kind == "competitive"
        margin = self.ctx.config.task.draw_margin
        if budget <= 0:
            return tallies
        while True:
            for ep in matches.tick(policies, self.learner):
                self._account(ep, tallies, competitive, margin)
                self._seat_next(ep.env_index, lineups)
            if self._rollout_done():
                stats = self._group_update(self.ctx.learning_progress(self.group_env_steps, start, budget))
                self.send_train_row(stats)
                self.serve_evaluations()
                faults.reached("training")
                if self.group_env_steps >= target:
                    return tallies

    def _save_cut(self) -> None:
        """async, the leader: the group's ranks save the cut rank 0 asked for, with the same weights."""
        if self.checkpoints is not None:
            self.checkpoints.lead_cut(self.group, identical=True)

    def _rollout_done(self) -> bool:
        """Whether this rank stops collecting for the next update: it has its whole share, or (DD-PPO's
        straggler cut-off) enough of the group has finished while it has at least its minimum share.
        Its partial rollout then trains like a whole one: the group's gradient is the per-sample mean
        over what every rank collected (:func:`mpimarl.algos.data_parallel.group_update`)."""
        notices = self.notices
        if notices is None:
            return self.learner.ready
        trainer = self.ctx.config.trainer
        if self.learner.ready:
            notices.announce(full=True)
        else:
            needed = math.ceil(trainer.straggler_cutoff * self.group.size - 1e-9)
            minimum = trainer.straggler_min_share * self.learner.cfg.rollout_steps
            if self.learner.rollout.num_complete < minimum or notices.poll() < needed:
                return False
            notices.announce(full=False)
        self._cut_ranks = notices.finish()
        return True

    def _group_update(self, progress: float) -> UpdateStats:
        extra = np.zeros(6, np.float64)
        extra[_STEPS] = self.matches.env_steps
        extra[_EPISODES] = self._episodes
        extra[_RETURN_SUM] = float(np.sum(self._returns)) if self._returns else 0.0
        extra[_RETURN_N] = len(self._returns)
        extra[_LENGTH_SUM] = float(np.sum(self._lengths)) if self._lengths else 0.0
        extra[_WAIT] = self.wait_s
        stats = self.learner.update(progress, group=self.group, extra=extra)
        self.group_env_steps = int(extra[_STEPS])
        self.group_episodes = int(extra[_EPISODES])
        self._group_row = extra
        return stats

    _group_row: np.ndarray

    def send_train_row(self, stats: UpdateStats) -> None:
        """The leader sends one row per group update: the group's sums and means."""
        extra = self._group_row
        now = time.perf_counter()
        if self.group.is_leader:
            n = extra[_RETURN_N]
            row = {
                "generation": self.generation, "rank": self.rank, "policy_id": self.policy_id, "role": self.role,
                "version": self.version, "env_steps": self.group_env_steps, "episodes": self.group_episodes,
                "episode_return_mean": extra[_RETURN_SUM] / n if n else float("nan"),
                "episode_length_mean": extra[_LENGTH_SUM] / n if n else float("nan"),
                "policy_loss": stats.policy_loss, "value_loss": stats.value_loss, "entropy": stats.entropy,
                "approx_kl": stats.approx_kl, "clip_fraction": stats.clip_fraction,
                "explained_variance": stats.explained_variance, "learning_rate": stats.learning_rate,
                "steps_per_s": (self.group_env_steps - self._last_row_steps) / max(now - self._last_row_time, 1e-9),
                "wait_s": extra[_WAIT] / self.group.size,
                "learner_ranks": float(self.group.size),
            }
            if self.notices is not None:
                row["cut_off_ranks"] = float(self._cut_ranks)
            send_json(self.comm, finite_row(row), SERVER_RANK, Tag.TRAIN_STATS)
        self._returns.clear()
        self._lengths.clear()
        self.wait_s = 0.0
        self._last_row_time = now
        self._last_row_steps = self.group_env_steps

    def _gather_tallies(self, tallies: dict[int, Tally]) -> dict[int, Tally]:
        """The group's training tallies per line-up, summed at the leader (empty elsewhere)."""
        parts = self.group.gather_json(tallies_to_json(tallies))
        return {} if parts is None else sum_tallies(parts)

    def report_matches(self, lineups: list[Lineup], tallies: dict[int, Tally]) -> None:
        """The leader reports the group's tallies."""
        if self.group.is_leader:
            super().report_matches(lineups, tallies)



def make_trainer(ctx: RunContext, comm: MPI.Comm, plan_comm: MPI.Comm, device: str,
                 group: GroupComm | None) -> Trainer:
    """The trainer for this rank: a plain Trainer, or a member of a data-parallel learner group.
    With evaluation.workers 'trainers', the rank that speaks to the server also plays evaluation jobs."""
    trainer = (GroupTrainer(ctx, comm, plan_comm, device, group) if group is not None
               else Trainer(ctx, comm, plan_comm, device))
    rank = comm.Get_rank()
    if ctx.config.evaluation.workers == "trainers" and ctx.unit_of(rank).leader == rank:
        from mpimarl.roles.evaluation import EvaluationWorker

        trainer.evaluator = EvaluationWorker(ctx, comm, ctx.rank_seed(rank) + 17)
    return trainer
