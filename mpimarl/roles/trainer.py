"""A trainer rank: owns one learning policy, plays its matches, learns, publishes snapshots.

Per generation: get line-ups (sync: from the server's broadcast plan; async: by asking), fetch the
weights it does not have cached, play and learn for the generation's step budget, report training
match tallies, publish the new snapshot.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

import numpy as np
import torch
from mpi4py import MPI

from mpimarl.algos.networks import FrozenPolicy, flat_weights
from mpimarl.algos.ppo import PPOLearner, UpdateStats
from mpimarl.comm.channel import (
    SERVER_RANK,
    Deadline,
    ServerWatch,
    Tag,
    bcast_json,
    recv_json,
    recv_weights,
    send_json,
    send_weights,
)
from mpimarl.devices import apply_device
from mpimarl.league.outcomes import match_score, tally
from mpimarl.league.pool import SnapshotKey
from mpimarl.roles import faults
from mpimarl.roles.context import RunContext
from mpimarl.roles.evaluation import EvaluationWorker, receive_round
from mpimarl.roles.tallies import Tally, finite_row
from mpimarl.rollout.runner import LEARNER, ActingPolicy, FinishedEpisode, VectorMatches
from mpimarl.rollout.seating import Lineup, SeatedKey, seating, seats_of_role


class Trainer:
    """The learning side of one rank."""

    def __init__(self, ctx: RunContext, comm: MPI.Comm, plan_comm: MPI.Comm, device: str = "cpu") -> None:
        cfg = ctx.config
        self.ctx = ctx
        self.comm = comm
        self.plan_comm = plan_comm
        self.rank = comm.Get_rank()
        self.role = ctx.trainer_role(self.rank)
        self.policy_id = ctx.policy_id(self.rank)
        self.seed = ctx.rank_seed(self.rank)
        self.timeout = cfg.server.timeout_s
        torch.set_num_threads(cfg.trainer.torch_threads)
        # Dealt by the launcher (mpimarl/devices.py): a GPU for ranks that learn, when there is one.
        self.device = apply_device(device)
        self.shape = ctx.shape(self.role)
        self.learner = PPOLearner(self.shape, cfg.ppo, self.device, self.seed, **ctx.learner_options(self.role))
        envs = [ctx.factory() for _ in range(cfg.ppo.num_envs)]
        # A centralised critic reads the global state of these copies (MAPPO, COMA); None: local critic.
        self.matches = VectorMatches(envs, seed=self.seed, critic_inputs=ctx.critic_inputs(self.role, envs))
        self.own_seats = seats_of_role(ctx.spec, self.role)
        self.cache: OrderedDict[SnapshotKey, FrozenPolicy] = OrderedDict()
        self.baselines = ctx.baseline_policies(self.seed + 7)
        self.version = 0
        self.generation = 0
        self.wait_s = 0.0
        self._episodes = 0
        self._episode_counter = 0
        self._returns: list[float] = []
        self._lengths: list[int] = []
        self._last_row_time = time.perf_counter()
        self._last_row_steps = 0
        # Resume (mpimarl/roles/resume.py): set by the launcher when checkpoints are on.
        self.checkpoints: Any = None
        self.start_generation = 0  # the checkpoint's generation when restored
        self.restored = False  # restored from a checkpoint: version `start_generation` is already published
        self.last_published = -1  # the version of the last snapshot sent (the next one's parent)
        self.last_publish_time = time.monotonic()

    # -- evaluation jobs (evaluation.workers: trainers; mpimarl/roles/evaluation.py) -----------------
    evaluator: EvaluationWorker | None = None  # set on the ranks that play evaluation jobs

    def serve_evaluations(self) -> None:
        """Play the evaluation jobs the server has sent (between updates, while waiting for a plan)."""
        if self.evaluator is not None:
            self.evaluator.serve()

    def receive_round(self, plan: dict[str, Any]) -> None:
        """Take part in the broadcast of the round's snapshots that a sync plan may announce."""
        buf = receive_round(self.plan_comm, plan, self.timeout)
        if buf is not None and self.evaluator is not None:
            self.evaluator.keep_round(plan["snapshots"], buf)

    def finish_evaluations(self) -> None:
        """After the last generation: play the remaining jobs until the server says goodbye."""
        if self.evaluator is not None:
            self.evaluator.serve_until_goodbye()

    @property
    def policy_env_steps(self) -> int:
        """Environment steps taken for this policy (by this rank; a learner group sums its ranks)."""
        return self.matches.env_steps

    # -- talking to the server -----------------------------------------------------------------
    def _deadline(self, what: str) -> Deadline:
        return Deadline(self.timeout, what)

    def publish(self) -> None:
        """Send the current weights as snapshot `self.version` (a header, then one flat buffer)."""
        weights = flat_weights(self.learner.net)
        header = {
            "policy_id": self.policy_id,
            "role": self.role,
            "version": self.version,
            "parent_version": self.last_published if self.version > 0 else -1,
            "env_steps": self.policy_env_steps,
            "size": int(weights.size),
            "layout": self.shape.layout,
            "generation": self.generation,
        }
        send_json(self.comm, header, SERVER_RANK, Tag.PUBLISH)
        send_weights(self.comm, weights, SERVER_RANK)
        self.last_published = self.version
        self.last_publish_time = time.monotonic()

    def publish_due(self, generation: int) -> bool:
        """Async pool cadence (pool.publish_every generations, pool.publish_every_s seconds): whether
        this generation's snapshot goes to the pool. The last generation always publishes."""
        pc = self.ctx.config.pool
        if generation + 1 >= self.ctx.generations:
            return True
        if (generation + 1) % pc.publish_every:
            return False
        return pc.publish_every_s is None or time.monotonic() - self.last_publish_time >= pc.publish_every_s

    def fetch_lineups(self, planned: list[list[object]] | None) -> list[Lineup] | None:
        """Ask the server for line-ups (or the planned ones) and the weights missing from the cache;
        None: stop (async checkpoints: rank 0's time limit)."""
        t0 = time.perf_counter()
        request = {
            "generation": self.generation,
            "cached": [[k.policy_id, k.version] for k in self.cache],
            "lineups": planned,
        }
        if self.checkpoints is not None:  # async: say that the checkpoint rank 0 asked for is saved
            request.update(self.checkpoints.acknowledge())
        send_json(self.comm, request, SERVER_RANK, Tag.REQUEST)
        # Async: rank 0 holds the answer while a checkpoint waits for other trainers (with heartbeats).
        watch = ServerWatch(self.comm, self.timeout, "line-ups from the server")
        if self.evaluator is not None:  # evaluation jobs sent before the answer come first
            self.evaluator.serve_until(Tag.ASSIGN, watch)
        pause = 5e-5
        while not self.comm.Iprobe(source=SERVER_RANK, tag=int(Tag.ASSIGN)):
            watch.check(self.comm)
            time.sleep(pause)
            pause = min(2 * pause, 0.005)
        reply = recv_json(self.comm, SERVER_RANK, Tag.ASSIGN, self._deadline("line-ups from the server"))
        for pid, version, role in reply["sent"]:
            key = SnapshotKey(str(pid), int(version))
            shape = self.ctx.shape(str(role))
            weights = recv_weights(self.comm, SERVER_RANK, int(reply["sizes"][f"{pid}@{version}"]),
                                   self._deadline(f"weights of {key}"))
            self.cache[key] = FrozenPolicy(shape, weights, torch.device("cpu"))  # opponents act on the CPU
        lineups = [tuple(SeatedKey.from_json(item) for item in lineup) for lineup in reply["lineups"]]
        for lineup in lineups:
            for item in lineup:
                if not item.is_baseline:
                    if item.key not in self.cache:
                        raise RuntimeError(f"rank {self.rank}: the server did not send weights of {item.key}")
                    self.cache.move_to_end(item.key)
        while len(self.cache) > max(self.ctx.config.trainer.cache_size, self._keys_in_use(lineups)):
            self.cache.popitem(last=False)
        self.wait_s += time.perf_counter() - t0
        asked = self.checkpoints.take_reply(reply) if self.checkpoints is not None else None
        if asked == "save":  # async: save at this boundary now, then ask again (mpimarl/roles/resume.py)
            self._save_cut()
            return self.fetch_lineups(planned)
        return None if asked == "stop" else lineups

    def _save_cut(self) -> None:
        """async: save the cut rank 0 asked for, at this boundary (a policy of several ranks has its
        other ranks save it too: GroupTrainer, ImpalaLearner)."""
        self._boundary()

    def _done_message(self) -> dict[str, Any]:
        """DONE's content: the policy's steps, and (async) the cut saved since the last request."""
        done: dict[str, Any] = {"env_steps": self.policy_env_steps}
        if self.checkpoints is not None:
            done.update(self.checkpoints.acknowledge())
        return done

    @staticmethod
    def _keys_in_use(lineups: list[Lineup]) -> int:
        return len({item.key for lineup in lineups for item in lineup if not item.is_baseline})

    # -- the main loop -------------------------------------------------------------------------
    def run(self) -> None:
        """Publish version 0, then train generation after generation, then say DONE."""
        sync = self.ctx.config.schedule.mode == "sync"
        limit = self.ctx.config.schedule.time_limit_s
        started = time.monotonic()
        faults.reached("startup")
        if not self.restored:
            self.publish()
            self._boundary()
        stopped_early = False
        for generation in range(self.start_generation, self.ctx.generations):
            self.generation = generation
            if generation == 1:
                faults.reached("evaluation")  # rank 0 is evaluating generation 0 and planning
            planned = None
            if sync:
                # The plan waits for the slowest trainer, however long it takes; meanwhile the server
                # watches that trainer and sends this one heartbeats (and evaluation jobs, if asked).
                planned = self._receive_plan(ServerWatch(self.comm, self.timeout, "the generation plan"), self.rank)
                if planned is None:  # the server's time limit: it will not wait for more
                    stopped_early = True
                    break
            elif limit is not None and self.checkpoints is None and time.monotonic() - started > limit:
                break  # with async checkpoints, rank 0 keeps the time limit (a last checkpoint, then stop)
            lineups = self.fetch_lineups(planned)
            if lineups is None:
                self._boundary(final=True)
                break
            tallies = self.play(lineups, self.ctx.generation_budget(generation))
            self.report_matches(lineups, tallies)
            self.version += 1
            if self.publish_due(generation):
                self.publish()
            self._boundary()
        send_json(self.comm, self._done_message(), SERVER_RANK, Tag.DONE)
        faults.reached("end")
        self.finish_evaluations()
        if sync and not stopped_early:
            self._receive_stop_plan(ServerWatch(self.comm, self.timeout, "the final plan"))

    def _receive_plan(self, deadline: Deadline | ServerWatch, rank: int) -> list[list[object]] | None:
        """Take a sync generation's plan broadcast (playing evaluation jobs while it waits) and count
        the wait; the line-ups planned for `rank` (a group's or a learner's rank that speaks for it),
        or None when the plan says stop, after saving that boundary as every rank does (rank 0 saved
        it too: a resume continues there)."""
        t0 = time.perf_counter()
        plan = bcast_json(self.plan_comm, None, SERVER_RANK, deadline, idle=self.serve_evaluations)
        self.receive_round(plan)
        self.wait_s += time.perf_counter() - t0
        if plan.get("stop"):
            self._boundary(final=True)
            return None
        return list(plan["lineups"][str(rank)])

    def _receive_stop_plan(self, deadline: Deadline | ServerWatch) -> None:
        """After the last generation of a sync run: the server's closing plan, which must say stop."""
        plan = bcast_json(self.plan_comm, None, SERVER_RANK, deadline)
        if not plan.get("stop"):
            raise RuntimeError(f"rank {self.rank}: expected the server's stop plan after the last generation")

    def _boundary(self, final: bool = False) -> None:
        """After publishing: with checkpoints on, cut matches, reseed baselines, save when due."""
        if self.checkpoints is not None:  # resume.trainer_boundary, bound by the launcher
            self.checkpoints.boundary(final)

    def _policies(self) -> dict[Hashable, ActingPolicy]:
        policies: dict[Hashable, ActingPolicy] = dict(self.baselines)
        policies.update(self.cache)
        return policies

    def _seat_next(self, index: int, lineups: list[Lineup]) -> None:
        """Start a new episode in copy `index` with the next line-up and the next own seat."""
        n = self._episode_counter
        self._episode_counter += 1
        lineup_index = n % len(lineups)
        own_seat = self.own_seats[(n // len(lineups)) % len(self.own_seats)]
        self.matches.start(index, seating(self.ctx.spec, own_seat, LEARNER, lineups[lineup_index]), tag=lineup_index)

    def _start_generation(self, lineups: list[Lineup]) -> dict[Hashable, ActingPolicy]:
        """The start of a generation's play, shared by every trainer kind: the policies it may seat,
        a fresh network where the config asks for one, matches whose opponents left the cache cut
        (with bootstrapping), and every free environment copy seated from `lineups`."""
        matches = self.matches
        policies = self._policies()
        self._reset_if_asked()
        for i, slot in enumerate(matches.slots):
            if slot is not None and any(k != LEARNER and k not in policies for k in slot.seating.values()):
                matches.abandon(i, self.learner)
            elif slot is not None:
                slot.tag = None  # its line-up belongs to the previous generation's tallies
        for i, slot in enumerate(matches.slots):
            if slot is None:
                self._seat_next(i, lineups)
        return policies

    def play(self, lineups: list[Lineup], budget: int) -> dict[int, Tally]:
        """Play and learn for `budget` environment steps against `lineups`."""
        matches = self.matches
        policies = self._start_generation(lineups)
        tallies: dict[int, Tally] = {}
        start = matches.env_steps
        target = start + budget
        competitive = self.ctx.config.task.kind == "competitive"
        margin = self.ctx.config.task.draw_margin
        while matches.env_steps < target:
            finished = matches.tick(policies, self.learner)
            for ep in finished:
                self._account(ep, tallies, competitive, margin)
                self._seat_next(ep.env_index, lineups)
            if self.learner.ready:
                stats = self.learner.update(progress=self.ctx.learning_progress(matches.env_steps, start, budget))
                self.send_train_row(stats)
                self.serve_evaluations()
                faults.reached("training")
        return tallies

    def _reset_if_asked(self) -> None:
        """`ppo.reset_each_generation`: a new best response each generation, from fresh weights and
        with no experience of the previous generation's policy (its matches are dropped)."""
        if not self.ctx.config.ppo.reset_each_generation or self.generation == 0:
            return
        for i in range(len(self.matches.slots)):
            self.matches.abandon(i, None)
        # Seeded by the policy (a learner group's ranks share it), so its ranks start identical.
        seed = np.random.SeedSequence([self.ctx.rank_seed(self.ctx.unit_of(self.rank).leader), self.generation])
        self.learner.reset(int(seed.generate_state(1)[0]))

    def _account(self, ep: FinishedEpisode, tallies: dict[int, Tally], competitive: bool, margin: float) -> None:
        own_mean, other_mean = ep.side_returns(LEARNER)
        has_other = not np.isnan(other_mean)
        self._returns.append(own_mean)
        self._lengths.append(ep.length)
        self._episodes += 1
        if ep.tag is None:
            return
        t = tallies.setdefault(ep.tag, Tally())
        t.episodes += 1
        t.own_return += own_mean
        t.other_return += other_mean if has_other else 0.0
        t.length += ep.length
        if competitive and has_other:
            t.scores.append(match_score(own_mean, other_mean, margin))

    def send_train_row(self, stats: UpdateStats) -> None:
        """One row of the train table for the update just made."""
        now = time.perf_counter()
        steps = self.matches.env_steps
        row = {
            "generation": self.generation,
            "rank": self.rank,
            "policy_id": self.policy_id,
            "role": self.role,
            "version": self.version,
            "env_steps": steps,
            "episodes": self._episodes,
            "episode_return_mean": float(np.mean(self._returns)) if self._returns else float("nan"),
            "episode_length_mean": float(np.mean(self._lengths)) if self._lengths else float("nan"),
            "policy_loss": stats.policy_loss,
            "value_loss": stats.value_loss,
            "entropy": stats.entropy,
            "approx_kl": stats.approx_kl,
            "clip_fraction": stats.clip_fraction,
            "explained_variance": stats.explained_variance,
            "learning_rate": stats.learning_rate,
            "steps_per_s": (steps - self._last_row_steps) / max(now - self._last_row_time, 1e-9),
            "wait_s": self.wait_s,
        }
        send_json(self.comm, finite_row(row), SERVER_RANK, Tag.TRAIN_STATS)
        self._returns.clear()
        self._lengths.clear()
        self.wait_s = 0.0
        self._last_row_time = now
        self._last_row_steps = steps

    def report_matches(self, lineups: list[Lineup], tallies: dict[int, Tally]) -> None:
        """Training tallies per line-up, for the matches table and the matchmaker's quality scores."""
        rows = []
        for index, t in sorted(tallies.items()):
            lineup = lineups[index]
            wins, draws, losses = tally(t.scores)
            rows.append({
                "opponents": [item.to_json() for item in lineup],
                "episodes": t.episodes,
                "wins": wins,
                "draws": draws,
                "losses": losses,
                "return_mean": t.own_return / t.episodes,
                "opponent_return_mean": t.other_return / t.episodes if lineup else None,
                "length_mean": t.length / t.episodes,
                "scores": t.scores,
            })
        msg = {"policy_id": self.policy_id, "version": self.version, "role": self.role,
               "generation": self.generation, "rows": rows}
        send_json(self.comm, msg, SERVER_RANK, Tag.MATCH_RESULTS)
