"""IMPALA actor ranks and the learner they feed (`trainer.actors_per_learner`).

A policy with actors is trained by one learner rank followed by k actor ranks
(:class:`mpimarl.roles.context.PolicyUnit`). Only the learner talks to rank 0, exactly as a plain
trainer does (publish, line-ups, train rows, match tallies, DONE): rank 0's protocol is unchanged,
and the actors take no part in its plan broadcasts. The learner does not play; the actors do.

Per generation the learner gets its line-ups from rank 0 and forwards them, with the opponent
weights its actors lack, on the unit's control communicator; then it broadcasts its weights. Each
actor plays those line-ups on its own environment copies (CPU, its own seeds) with the newest
weights it has received, writes the learner's transitions into a local
:class:`mpimarl.algos.ppo.StreamRollout` through the ordinary rollout runner, and ships them as
flat segments (:mod:`mpimarl.rollout.segment`, :mod:`mpimarl.comm.segments`) of
``ceil(ppo.rollout_steps / k)`` complete transitions, each labelled with the policy version it was
played with. The learner trains on ``ppo.rollout_steps`` transitions at a time with V-trace targets
(:mod:`mpimarl.algos.impala`) and broadcasts the new weights after every update; the train row
records the policy lag of the batch (learner version minus each segment's behaviour version).

- **sync**: after each segment an actor waits for the next weights, and the learner trains on one
  segment from every actor, taken in actor order. Nothing depends on timing: the run is
  deterministic for a seed and world size, and the policy lag is always 0.
- **async**: actors play on while the learner learns, taking the newest weights that have arrived
  (every broadcast completed so far, not one per step); an actor sends at most
  :data:`SEGMENTS_AHEAD` segments with one version before it waits for a newer one. That alone does
  not bound the lag: actors faster than the learner produce more segments per update than a batch
  takes, and the surplus queues up. The learner trains on the segments in arrival order and
  discards those more than ``trainer.max_policy_lag`` updates old (their steps still count).

A generation ends at the first update after which the actors' summed environment steps reach its
budget; that update's broadcast says so, every actor sends a final header and its match tallies, and
segments still in flight are kept for the next generation's first batch.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np
from mpi4py import MPI

from mpimarl.algos.impala import VTraceLearner, behaviour_size, behaviour_weights, load_behaviour_weights
from mpimarl.algos.networks import FrozenPolicy
from mpimarl.algos.ppo import PPOLearner, UpdateStats
from mpimarl.comm.channel import SERVER_RANK, ServerWatch, Tag, bcast_json, send_json
from mpimarl.comm.segments import HEADER_SIZE, ActorLink, Command, Header
from mpimarl.league.pool import SnapshotKey
from mpimarl.roles import faults
from mpimarl.roles.context import RunContext
from mpimarl.roles.tallies import Tally, finite_row, sum_tallies, tallies_to_json
from mpimarl.roles.trainer import Trainer
from mpimarl.rollout.seating import Lineup, SeatedKey
from mpimarl.rollout.segment import SegmentLayout, pack_segment

SEGMENTS_AHEAD = 2
"""async: segments an actor may send with one policy version before it waits for a newer one."""


# ---------------------------------------------------------------------------------------------
# The learner
# ---------------------------------------------------------------------------------------------


class ImpalaLearner(Trainer):
    """The learner rank of a policy with actors: talks to rank 0, learns from its actors' segments."""

    def __init__(self, ctx: RunContext, comm: MPI.Comm, plan_comm: MPI.Comm, device: str,
                 link: ActorLink) -> None:
        super().__init__(ctx, comm, plan_comm, device)
        cfg = ctx.config
        self.link = link
        self.sync = cfg.schedule.mode == "sync"
        self.learner = VTraceLearner(self.shape, cfg.ppo, self.device, self.seed,
                                     cfg.trainer.vtrace_rho_bar, cfg.trainer.vtrace_c_bar, cfg.vtrace_lambda)
        self.layout = self.learner.layout
        # Per actor index: steps reported so far (cumulative) and steps not yet in a queued segment.
        self.actor_steps = np.zeros(link.num_actors + 1, np.int64)
        self.uncounted = np.zeros(link.num_actors + 1, np.int64)
        self.actor_episodes = np.zeros(link.num_actors + 1, np.int64)
        # The policy's environment steps are those of the segments learned from: steps actors played
        # ahead (segments in flight at a generation's end) count in the batch that uses them, so a
        # generation's budget and the learning-rate schedule follow what the learner has seen.
        self.steps_learned = 0
        self._return_sum = 0.0
        self._return_n = 0
        self._length_sum = 0.0
        self.max_lag = None if self.sync else cfg.trainer.max_policy_lag  # sync: the lag is always 0
        self._dropped = 0  # segments discarded for their lag since the last train row
        self._dropped_steps = 0  # their environment steps, counted at the next update

    @property
    def policy_env_steps(self) -> int:
        """Environment steps behind the segments learned from so far."""
        return self.steps_learned

    # -- generation protocol ---------------------------------------------------------------------
    def forward_lineups(self, lineups: list[Lineup] | None, new: list[SnapshotKey]) -> None:
        """Send the generation's line-ups and the opponent weights new in the cache to the actors
        (None: stop); then the learner's own weights."""
        control = self.link.control
        msg = {
            "stop": lineups is None, "generation": self.generation,
            "lineups": [] if lineups is None else [[s.to_json() for s in lu] for lu in lineups],
            "sent": [[k.policy_id, k.version, self.cache[k].shape.layout, self.cache[k].weights.size] for k in new],
            "cache": [[k.policy_id, k.version] for k in self.cache],
        }
        control.bcast_json(msg)
        for key in new:
            control.bcast_weights(self.cache[key].weights, self.cache[key].weights.size)
        if lineups is not None:
            self.link.broadcast_weights(self.learner.version, Command.CONTINUE, behaviour_weights(self.learner))

    def run(self) -> None:
        """Trainer.run for a learner fed by actors: line-ups reach the actors through the learner."""
        cfg = self.ctx.config
        limit = cfg.schedule.time_limit_s
        started = time.monotonic()
        faults.reached("startup")
        if not self.restored:  # resumed: version `start_generation` is published already
            self.publish()
            self._boundary()
        stopped_early = False
        for generation in range(self.start_generation, self.ctx.generations):
            self.generation = generation
            if generation == 1:
                faults.reached("evaluation")
            planned = None
            if self.sync:
                planned = self._receive_plan(ServerWatch(self.comm, self.timeout, "the generation plan"), self.rank)
                if planned is None:
                    stopped_early = True
                    break
            elif limit is not None and self.checkpoints is None and time.monotonic() - started > limit:
                break  # with async checkpoints, rank 0 keeps the time limit (a last cut, then stop)
            before = set(self.cache)
            lineups = self.fetch_lineups(planned)
            if lineups is None:  # rank 0's time limit: the unit saves the last cut if asked, then stops
                self._save_cut()
                break
            if cfg.ppo.reset_each_generation and generation > 0:
                seed = np.random.SeedSequence([self.ctx.rank_seed(self.rank), generation])
                self.learner.reset(int(seed.generate_state(1)[0]))
                self.learner.clear()
            self.forward_lineups(lineups, [k for k in self.cache if k not in before])
            tallies = self.learn(self.ctx.generation_budget(generation))
            self.report_matches(lineups, tallies)
            self.version += 1
            if self.publish_due(generation):  # async pool cadence (pool.publish_every)
                self.publish()
            self._boundary()  # checkpoints (mpimarl/roles/resume.py)
        self.forward_lineups(None, [])
        self.link.drain_broadcasts()
        send_json(self.comm, self._done_message(), SERVER_RANK, Tag.DONE)
        faults.reached("end")
        self.finish_evaluations()
        if self.sync and not stopped_early:
            self._receive_stop_plan(ServerWatch(self.comm, self.timeout, "the final plan"))

    def _save_cut(self) -> None:
        """async: the actors and this learner save the cut rank 0 asked for. It comes at a generation
        boundary, where nothing is in flight: every segment an actor sent came before its final header,
        which `learn` waited for, so each transition is either in this learner's saved queue or in its
        actor's saved rollout, and every weight broadcast is drained."""
        if self.checkpoints is not None:
            self.checkpoints.lead_cut(self.link.control, identical=False)

    def _take(self, got: tuple[int, np.ndarray, np.ndarray | None]) -> bool:
        """Account one header (and queue its segment); True if it was the actor's final one."""
        source, header, segment = got
        steps = int(header[Header.ENV_STEPS])
        self.uncounted[source] += steps - self.actor_steps[source]
        self.actor_steps[source] = steps
        self.actor_episodes[source] = int(header[Header.EPISODES])
        self._return_sum += float(header[Header.RETURN_SUM])
        self._return_n += int(header[Header.RETURN_N])
        self._length_sum += float(header[Header.LENGTH_SUM])
        if segment is not None:
            version = int(header[Header.VERSION])
            if self.max_lag is not None and self.learner.version - version > self.max_lag:
                self._dropped += 1  # too stale for V-trace: played, counted, not learned from
                self._dropped_steps += int(self.uncounted[source])
            else:
                self.learner.add_segment(segment, version, int(self.uncounted[source]))
            self.uncounted[source] = 0
        return bool(header[Header.FINAL])

    def learn(self, budget: int) -> dict[int, Tally]:
        """Learn from the actors until their summed steps reach `budget` more (at an update); then
        end the actors' generation and collect their tallies."""
        start = self.steps_learned
        target = self.policy_env_steps + budget
        width = self.layout.width
        ended: set[int] = set()
        done = budget <= 0
        if done:  # nothing to learn: the actors, already playing, still end their generation
            self.link.broadcast_weights(self.learner.version, Command.END_GENERATION, behaviour_weights(self.learner))
        while not done:
            if self.sync:  # one segment from every actor, in actor order: nothing depends on timing
                for actor in range(1, self.link.num_actors + 1):
                    self._take(self.link.receive(actor, width, self.link.deadline(f"a segment of actor {actor}")))
            else:
                while not self.learner.ready:  # whatever has arrived, from any actor
                    self._take(self.link.receive(MPI.ANY_SOURCE, width, self.link.deadline("segments from the actors")))
            stats = self.learner.update(progress=self.ctx.learning_progress(
                self.steps_learned + self.learner.queued_env_steps, start, budget))
            self.steps_learned += self.learner.last_env_steps + self._dropped_steps
            self._dropped_steps = 0
            done = self.policy_env_steps >= target
            self.link.broadcast_weights(self.learner.version, Command.END_GENERATION if done else Command.CONTINUE,
                                        behaviour_weights(self.learner))
            self.send_train_row(stats)
            self.serve_evaluations()
            faults.reached("training")
        deadline = self.link.deadline("the actors' final segments")
        while len(ended) < self.link.num_actors:
            got = self.link.receive(MPI.ANY_SOURCE, width, deadline)
            if self._take(got):
                ended.add(got[0])
        self.link.drain_broadcasts()
        parts = self.link.control.gather_json({})
        assert parts is not None
        return sum_tallies(parts[1:])

    def send_train_row(self, stats: UpdateStats) -> None:
        """One train row per update, with the batch's policy lag and the actors' episode statistics."""
        now = time.perf_counter()
        steps = self.policy_env_steps
        lags = self.learner.last_lags or [0]
        n = self._return_n
        row = {
            "generation": self.generation, "rank": self.rank, "policy_id": self.policy_id, "role": self.role,
            "version": self.version, "env_steps": steps, "episodes": int(self.actor_episodes.sum()),
            "episode_return_mean": self._return_sum / n if n else float("nan"),
            "episode_length_mean": self._length_sum / n if n else float("nan"),
            "policy_loss": stats.policy_loss, "value_loss": stats.value_loss, "entropy": stats.entropy,
            "approx_kl": stats.approx_kl, "clip_fraction": stats.clip_fraction,
            "explained_variance": stats.explained_variance, "learning_rate": stats.learning_rate,
            "steps_per_s": (steps - self._last_row_steps) / max(now - self._last_row_time, 1e-9),
            "wait_s": self.wait_s,
            "actor_ranks": float(self.link.num_actors),
            "policy_lag_mean": float(np.mean(lags)), "policy_lag_max": float(np.max(lags)),
            "vtrace_rho_mean": self.learner.last_rho_mean,
            "segments_dropped": float(self._dropped),
        }
        self._dropped = 0
        send_json(self.comm, finite_row(row), SERVER_RANK, Tag.TRAIN_STATS)
        self._return_sum, self._return_n, self._length_sum = 0.0, 0, 0.0
        self.wait_s = 0.0
        self._last_row_time = now
        self._last_row_steps = steps


# ---------------------------------------------------------------------------------------------
# The actors
# ---------------------------------------------------------------------------------------------


class ActorRank(Trainer):
    """An actor rank: plays its learner's line-ups with the newest weights received, streams segments.

    It reuses the trainer's acting side (environment copies, seating, opponent cache, baselines) and
    never talks to rank 0. It always runs on the CPU."""

    def __init__(self, ctx: RunContext, comm: MPI.Comm, link: ActorLink) -> None:
        cfg = ctx.config
        cpu = cfg.model_copy(update={"trainer": cfg.trainer.model_copy(update={"device": "cpu"})})
        super().__init__(dataclasses.replace(ctx, config=cpu), comm, None, "cpu")
        self.link = link
        self.sync = cfg.schedule.mode == "sync"
        self.share = max(1, math.ceil(cfg.ppo.rollout_steps / link.num_actors))
        # The acting policy: PPO's network and rollout buffer (the runner's sink), never updated here.
        self.learner = PPOLearner(self.shape, cfg.ppo, self.device, self.seed)
        self.layout = SegmentLayout.of(self.shape)
        self.size = behaviour_size(self.learner)  # weights (+ value normaliser statistics)
        self.policy_version = 0  # the learner's update count of the weights held
        self._sent_with_version = 0
        self._last_generation_s = 0.0

    def run(self) -> None:
        """Take each generation's line-ups from the learner, play, stream; until the learner says stop."""
        faults.reached("startup")
        if not self.restored:
            self._boundary()  # version 0's checkpoint, as the learner's
        while True:
            lineups = self.receive_lineups()
            if lineups is None:
                self._boundary(final=True)  # a time-limit stop's checkpoint (saved already at the end)
                break
            t0 = time.perf_counter()
            tallies = self.play(lineups, 0)
            self._last_generation_s = time.perf_counter() - t0
            self.link.control.gather_json(tallies_to_json(tallies))
            self.version = self.generation + 1  # the learner's version after this generation
            self._boundary()
        faults.reached("end")

    def receive_lineups(self) -> list[Lineup] | None:
        """The learner's control broadcast: line-ups and new opponent weights (None: stop)."""
        control = self.link.control
        # The learner may wait at rank 0's sync barrier for the slowest trainer in between.
        wait = self.timeout + 4 * self._last_generation_s
        msg = bcast_json(control.comm, None, 0, self.link.deadline("the learner's line-ups", wait))
        while self.checkpoints is not None and self.checkpoints.follow_cut(msg, control):  # async: a cut
            msg = bcast_json(control.comm, None, 0, self.link.deadline("the learner's line-ups", wait))
        roles = {self.ctx.shape(r).layout: r for r in self.ctx.spec.roles}
        for pid, version, layout, size in msg["sent"]:
            weights = control.bcast_weights(None, int(size))
            self.cache[SnapshotKey(str(pid), int(version))] = FrozenPolicy(self.ctx.shape(roles[layout]), weights,
                                                                          self.device)
        keep = [SnapshotKey(str(p), int(v)) for p, v in msg["cache"]]
        self.cache = type(self.cache)((k, self.cache[k]) for k in keep)
        if msg["stop"]:
            return None
        self.generation = int(msg["generation"])
        self.link.post_weights(self.size)
        self._apply(self.link.wait_weights(self.link.deadline("the learner's weights")))
        return [tuple(SeatedKey.from_json(item) for item in lineup) for lineup in msg["lineups"]]

    def _apply(self, got: tuple[int, Command, np.ndarray]) -> Command:
        version, command, weights = got
        if command == Command.CONTINUE:
            load_behaviour_weights(self.learner, weights)
            if version != self.policy_version:
                self._sent_with_version = 0
            self.policy_version = version
            self.link.post_weights(self.size)
        return command

    def _header(self, rows: int, final: bool) -> np.ndarray:
        header = np.zeros(HEADER_SIZE, np.float64)
        header[Header.ROWS] = rows
        header[Header.WIDTH] = self.layout.width
        header[Header.VERSION] = self.policy_version
        header[Header.ENV_STEPS] = self.matches.env_steps
        header[Header.EPISODES] = self._episodes
        header[Header.RETURN_SUM] = float(np.sum(self._returns)) if self._returns else 0.0
        header[Header.RETURN_N] = len(self._returns)
        header[Header.LENGTH_SUM] = float(np.sum(self._lengths)) if self._lengths else 0.0
        header[Header.FINAL] = float(final)
        self._returns.clear()
        self._lengths.clear()
        return header

    def play(self, lineups: list[Lineup], budget: int) -> dict[int, Tally]:
        """Play and stream segments until the learner's broadcast ends the generation (`budget` unused:
        the learner counts the steps)."""
        matches = self.matches
        policies = self._start_generation(lineups)
        tallies: dict[int, Tally] = {}
        competitive = self.ctx.config.task.kind == "competitive"
        margin = self.ctx.config.task.draw_margin
        command = Command.CONTINUE
        while command == Command.CONTINUE:
            for ep in matches.tick(policies, self.learner):
                self._account(ep, tallies, competitive, margin)
                self._seat_next(ep.env_index, lineups)
            if self.learner.rollout.num_complete >= self.share:
                segment = pack_segment(self.learner.rollout, self.layout)
                self.link.send_segment(self._header(len(segment), False), segment)
                self._sent_with_version += 1
                faults.reached("training")
                if self.sync or self._sent_with_version >= SEGMENTS_AHEAD:
                    command = self._apply(self.link.wait_weights(self.link.deadline("the learner's weights")))
                    continue
            if not self.sync:  # take every broadcast that has arrived: act with the newest weights
                got = self.link.weights_arrived()
                while got is not None:
                    command = self._apply(got)
                    got = self.link.weights_arrived() if command == Command.CONTINUE else None
        self.link.send_segment(self._header(0, True), None)
        self.link.drain_sends()
        return tallies

    def _reset_if_asked(self) -> None:
        """A fresh best response each generation: end the running matches and drop their transitions
        (the new weights come from the learner)."""
        if not self.ctx.config.ppo.reset_each_generation or self.generation == 0:
            return
        for i in range(len(self.matches.slots)):
            self.matches.abandon(i, None)
        self.learner.rollout = type(self.learner.rollout)(self.shape, self.learner.rollout.capacity)


def make_unit_rank(ctx: RunContext, comm: MPI.Comm, plan_comm: Any, device: str, link: ActorLink) -> Trainer:
    """The learner or an actor of a policy with actors (this rank's place in its unit decides)."""
    if not link.is_learner:
        return ActorRank(ctx, comm, link)
    trainer = ImpalaLearner(ctx, comm, plan_comm, device, link)
    if ctx.config.evaluation.workers == "trainers":
        from mpimarl.roles.evaluation import EvaluationWorker

        trainer.evaluator = EvaluationWorker(ctx, comm, ctx.rank_seed(comm.Get_rank()) + 17)
    return trainer
