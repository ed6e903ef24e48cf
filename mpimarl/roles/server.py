"""Rank 0, the server: the one home of the pool, matchmaker, evaluator, ratings and recorder.

It answers trainers point to point, pushes each generation's plan to everyone with a broadcast
(sync schedule), and plays evaluation matches whenever no message is waiting.
"""

from __future__ import annotations

import signal
import time
from collections import deque
from collections.abc import Generator, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from mpi4py import MPI

from mpimarl.algos.networks import FrozenPolicy
from mpimarl.comm.channel import (
    Deadline,
    Tag,
    bcast_json,
    recv_json_now,
    recv_weights,
    send_json,
    tag_name,
)
from mpimarl.comm.outbox import Outbox
from mpimarl.errors import Interrupted, PeerFailed, ProtocolError
from mpimarl.league.league import EXPLOITER_SOURCE, EvalPlan, League, SideResults, lineup_label
from mpimarl.league.pool import Snapshot, SnapshotKey
from mpimarl.record.recorder import RunRecorder
from mpimarl.roles import faults
from mpimarl.roles.context import RunContext
from mpimarl.roles.evaluation import RemoteEvaluation
from mpimarl.roles.progress import Progress
from mpimarl.rollout.evaluate import play_episodes
from mpimarl.rollout.runner import ActingPolicy, VectorMatches
from mpimarl.rollout.seating import Lineup, SeatedKey, policy_key


@dataclass
class _TrainerState:
    rank: int
    policy_id: str
    role: str
    published: int = -1  # last version received
    env_steps: int = 0
    done: bool = False
    last_seen: float = field(default_factory=time.monotonic)
    last_row: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Round:
    """What the sync schedule collects from every trainer before a generation is closed."""

    snapshots: dict[int, Snapshot] = field(default_factory=dict)
    results: dict[int, list[tuple[SnapshotKey, Lineup, list[float]]]] = field(default_factory=dict)


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    """None (JSON's stand-in for NaN) -> NaN."""
    return {k: (float("nan") if v is None else v) for k, v in row.items()}


class Server:
    """Rank 0's duties for one run: the MPI side of the league (messages, plan broadcasts, playing
    the evaluation episodes the league plans) and the recorder."""

    def __init__(self, ctx: RunContext, comm: MPI.Comm, plan_comm: MPI.Comm, recorder: RunRecorder,
                 progress: Progress) -> None:
        cfg = ctx.config
        self.ctx = ctx
        self.cfg = cfg
        self.comm = comm
        self.plan_comm = plan_comm
        self.recorder = recorder
        self.progress = progress
        self.sync = cfg.schedule.mode == "sync"
        self.start_time = time.monotonic()
        # The pool keeps weights in a bounded cache and reads the others back from the run file.
        self.league = League(cfg, ctx.spec, ctx.rank_seed(0), exact=ctx.exact_payoff, exploiters=ctx.exploiter_ids(),
                             load=lambda key: self.recorder.read_weights(key.policy_id, key.version))
        recorder.configure(commit_window_s=cfg.pool.commit_window_s, compression=cfg.pool.compression)
        self.trainers = {
            r: _TrainerState(r, ctx.policy_id(r), ctx.trainer_role(r)) for r in ctx.leader_ranks
        }  # one per policy: a learner group or an IMPALA learner speaks through its leader
        self.round_ = _Round()
        self.deferred: list[tuple[_TrainerState, dict[str, Any]]] = []  # async requests before every v0
        self.generation = 0  # sync: the round being collected (trainers publish version == generation)
        self.final_plan_sent = False
        self.eval_queue: deque[EvalPlan] = deque()
        self.eval_job: Generator[None, None, None] | None = None
        self.eval_plan: EvalPlan | None = None  # the plan eval_job plays
        self._last_heartbeat = time.monotonic()
        self.eval_matches = VectorMatches([ctx.factory() for _ in range(cfg.evaluation.num_envs)],
                                          seed=ctx.rank_seed(0))
        self.device = torch.device("cpu")
        torch.manual_seed(ctx.rank_seed(0))  # evaluation samples actions: seeded, so sync runs repeat
        self.frozen: dict[SnapshotKey, FrozenPolicy] = {}
        self.baseline_policies = ctx.baseline_policies(ctx.rank_seed(0) + 1)
        self.exploitability = ctx.exploitability_meter()
        self.outbox = Outbox(comm)
        # Resume (mpimarl/roles/resume.py): set by the launcher when checkpoints are on.
        self.checkpoints: Any = None
        self.async_cut: Any = None  # async schedule: resume.AsyncCut, rank 0's side of consistent checkpoints
        self.stop_after_generation: int | None = None  # test aid: --stop-after-generation
        self.limit_origin = 0.0  # seconds of now() already spent by earlier jobs of a resumed run
        # With checkpoints on, dropped weights leave the run file only once a checkpoint that knows
        # they are dropped is saved: a resume from the previous one still finds every weight it needs.
        self.pending_drops: list[tuple[SnapshotKey, str]] = []
        start = self.league.start_plan()
        if start is not None:
            self.eval_queue.append(start)
        # evaluation.workers 'trainers': the leaders play the planned episodes (mpimarl/roles/evaluation.py).
        self.remote: RemoteEvaluation | None = None
        if cfg.evaluation.workers == "trainers":
            self.remote = RemoteEvaluation(self, sorted(self.trainers))

    # -- time -------------------------------------------------------------------------------------
    def now(self) -> float:
        """Seconds since the server started."""
        return time.monotonic() - self.start_time

    # -- main loop --------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Serve until every trainer is done and every evaluation has been played."""
        status = MPI.Status()
        pause = 5e-5
        faults.reached("startup")
        while True:
            if self.comm.Iprobe(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=status):
                self.handle(status)
                self.recorder.commit_due()  # a busy rank 0 still commits once per window
                pause = 5e-5
                continue
            if self._finished():
                if not self.evaluate_step():
                    break
                continue
            self._watchdog()
            self.outbox.poll()
            self.recorder.commit_due()  # a commit window (pool.commit_window_s) groups the commits
            if self.evaluate_step():
                continue
            time.sleep(pause)
            pause = min(pause * 2, 0.005)
            self.progress.maybe_print(self)
        self.outbox.drain(Deadline(self.cfg.server.timeout_s, "the last weight sends"))
        self._record_population(self.generation)
        if self.remote is not None:
            self.recorder.set_attr("evaluation_jobs", self.remote.counts())
        pool = self.league.pool
        self.recorder.set_attr("pool_memory", {
            "snapshots": len(pool), "weights_dropped": pool.dropped_count, "cache_snapshots": len(pool.cache),
            "cache_mb": round(pool.cache.bytes / 2**20, 3), "cache_hits": pool.cache.hits,
            "cache_misses": pool.cache.misses, "commits": self.recorder.commits})
        self.progress.close(self)
        return self.summary()

    def _finished(self) -> bool:
        return all(t.done for t in self.trainers.values()) and (not self.sync or self.final_plan_sent)

    def _watchdog(self) -> None:
        """Abort when a trainer that owes the server a message has been silent too long.

        A trainer waiting for the server (sync: it has published for the open round, or is done and
        awaits the stop plan; async: its request is deferred) is not silent: its clock does not run,
        and it gets heartbeats so that its own wait does not run out (:class:`ServerWatch`).
        """
        limit = self.cfg.server.timeout_s
        now = time.monotonic()
        for t in self.trainers.values():
            if self._waiting(t):
                t.last_seen = now
            elif not t.done and now - t.last_seen > limit:
                raise TimeoutError(
                    f"server: trainer rank {t.rank} ({t.policy_id}) sent nothing for {limit:.0f} s; "
                    "it is stuck or dead (server.timeout_s sets this limit)"
                )
        self.send_heartbeats(now)

    def _waiting(self, t: _TrainerState) -> bool:
        if self.sync:
            return t.rank in self.round_.snapshots or (t.done and not self.final_plan_sent)
        held = self.async_cut is not None and self.async_cut.holding(t.rank)  # waits for a checkpoint
        return held or any(waiting is t for waiting, _ in self.deferred)

    def send_heartbeats(self, now: float) -> None:
        """Sync: tell the trainers waiting at the barrier (async: for a checkpoint), every timeout_s / 4,
        that rank 0 is alive."""
        if (not self.sync and self.async_cut is None) or now - self._last_heartbeat < self.cfg.server.timeout_s / 4:
            return
        self._last_heartbeat = now
        for t in self.trainers.values():
            if self._waiting(t):
                send_json(self.comm, {}, t.rank, Tag.HEARTBEAT)

    def check_failures(self) -> None:
        """Take a pending FAILED report now (it raises PeerFailed): used inside long steps such as
        draining evaluations, so that a trainer's failure is recorded before that trainer aborts."""
        status = MPI.Status()
        if self.comm.Iprobe(source=MPI.ANY_SOURCE, tag=int(Tag.FAILED), status=status):
            self.handle(status)

    # -- messages ---------------------------------------------------------------------------------
    def handle(self, status: MPI.Status) -> None:
        """Dispatch one pending message by its tag."""
        source = status.Get_source()
        tag = status.Get_tag()
        state = self.trainers.get(source)
        if state is None and tag == Tag.FAILED:  # an IMPALA actor (it speaks to rank 0 only to fail)
            msg = recv_json_now(self.comm, status)
            raise PeerFailed(f"actor rank {source} ({self.ctx.policy_id(source)}) failed: {msg.get('error')}",
                             int(msg.get("code", 1)))
        if state is None:
            raise ProtocolError(f"server received tag {tag} from rank {source}, which is not a trainer")
        state.last_seen = time.monotonic()
        handlers = {
            Tag.PUBLISH: self.on_publish,
            Tag.REQUEST: self.on_request,
            Tag.TRAIN_STATS: self.on_train_stats,
            Tag.MATCH_RESULTS: self.on_match_results,
            Tag.DONE: self.on_done,
            Tag.FAILED: self.on_failed,
            Tag.EVAL_RESULT: self.on_eval_result,
        }
        if tag not in handlers:
            raise ProtocolError(
                f"server expected one of {[t.name for t in handlers]} from rank {source} "
                f"but received {tag_name(tag)}"
            )
        msg = recv_json_now(self.comm, status)
        handlers[Tag(tag)](state, msg)

    def on_publish(self, state: _TrainerState, msg: dict[str, Any]) -> None:
        """A trainer's new snapshot: header already received, the weight buffer follows."""
        layout = self.ctx.shape(state.role).layout
        if msg["layout"] != layout or msg["policy_id"] != state.policy_id:
            raise ProtocolError(f"server: rank {state.rank} published {msg['policy_id']} with layout "
                                f"{msg['layout']}, expected {state.policy_id} with {layout}")
        weights = recv_weights(self.comm, state.rank, int(msg["size"]),
                               Deadline(self.cfg.server.timeout_s, f"weights from rank {state.rank}"))
        version = int(msg["version"])
        key = SnapshotKey(state.policy_id, version)
        parent = SnapshotKey(state.policy_id, version - 1) if version > 0 else None
        snap = Snapshot(key, state.role, parent, state.rank, int(msg["env_steps"]), self.now(), weights)
        parent_version = int(msg.get("parent_version", version - 1))
        if version > 0 and parent_version != version - 1:  # async pool.publish_every: versions skipped
            parent = SnapshotKey(state.policy_id, parent_version) if parent_version >= 0 else None
            snap.parent = parent
        state.published = version
        state.env_steps = snap.env_steps
        self.recorder.save_weights(state.policy_id, version, state.role, weights,
                                   parent=(parent.policy_id, parent.version) if parent else None, layout=layout)
        self.recorder.append("pool", [{
            "time": snap.time, "generation": int(msg["generation"]), "policy_id": state.policy_id,
            "role": state.role, "version": version, "parent_id": parent.policy_id if parent else "",
            "parent_version": parent.version if parent else -1, "rank": state.rank, "env_steps": snap.env_steps,
        }])
        if self.sync:
            self.round_.snapshots[state.rank] = snap
            if len(self.round_.snapshots) == len(self.trainers):
                self._close_round()
        else:
            self._admit(snap)
            self._retain(snap.key.policy_id)
            if self.async_cut is not None:
                self.async_cut.after_publish(self)
            if self.deferred and self.all_published():
                for waiting, request in self.deferred:
                    self.on_request(waiting, request)
                self.deferred.clear()

    def all_published(self) -> bool:
        """Whether every trainer has published at least one snapshot."""
        return all(t.published >= 0 for t in self.trainers.values())

    def _admit(self, snap: Snapshot) -> None:
        """Put a snapshot into the league; queue the evaluation it plans."""
        plan = self.league.admit(snap)
        if self.league.exact and self.exploitability is not None and snap.key.version > 0:
            for other, seatings in self.league.exact_pairings(snap.key):
                returns = [self.exploitability.expected_returns(self.league, seating) for seating in seatings]
                self.recorder.append("payoff", self.league.record_exact(snap.key, other, seatings, returns,
                                                                       self.now(), self.generation))
        if plan is not None:
            self.eval_queue.append(plan)

    def _retain(self, policy_id: str) -> None:
        """The retention policy (pool.keep*) after a publish of `policy_id`: drop the weights of the
        snapshots that left its latest pool.keep_latest and are not kept forever; record each decision.
        Snapshots a queued evaluation will seat are decided at a later publish."""
        retention = self.league.retention
        if retention is None:
            return
        league = self.league
        pinned = {m.key for plan in [*self.eval_queue, *([self.eval_plan] if self.eval_plan else [])]
                  for m in plan.seated()}
        decisions = retention.apply(league.pool, policy_id,
                                    lambda role: league.matchmaker.meta_strategy(league.pool, role, league.payoff),
                                    pinned)
        if not decisions:
            return
        archive = self.cfg.pool.archive
        rows = []
        for key, reason in decisions:
            if reason == "dropped":
                self.pending_drops.append((key, archive))
                self.frozen.pop(key, None)
            rows.append({"time": self.now(), "generation": self.generation, "policy_id": key.policy_id,
                         "role": league.pool.get(key).role, "version": key.version,
                         "weights": (archive if archive != "none" else "none") if reason == "dropped" else "float32",
                         "reason": reason})
        self.recorder.append("retention", rows)
        if self.checkpoints is None:
            self.after_checkpoint()

    def after_checkpoint(self) -> None:
        """A checkpoint is saved (or there are none): remove the dropped weights from the run file."""
        for key, archive in self.pending_drops:
            self.recorder.drop_weights(key.policy_id, key.version, archive, "dropped")
        self.pending_drops.clear()

    def _close_round(self) -> None:
        """Sync: every trainer published `generation`; admit in rank order, then broadcast the plan.

        Evaluations queued in earlier rounds are finished first (they normally are, having had a whole
        generation to run), so matchmakers that read the payoff table (pfsp, psro) see the same table
        in every run with this seed: the schedule stays deterministic.
        """
        if self.stop_after_generation is not None and self.generation > self.stop_after_generation:
            # as if SIGTERM came now, after checkpoint g
            raise Interrupted(signal.SIGTERM,
                              f"stopped after generation {self.stop_after_generation} (--stop-after-generation)")
        self._drain_evaluations()
        for rank in sorted(self.round_.results):
            for learner, lineup, scores in self.round_.results[rank]:
                self.league.record_training(learner, lineup, scores)
        admitted = [self.round_.snapshots[rank] for rank in sorted(self.round_.snapshots)]
        for snap in admitted:
            self._admit(snap)
        for snap in admitted:
            self._retain(snap.key.policy_id)
        self.round_ = _Round()
        self._record_population(self.generation)
        time_up = self.time_is_up()
        if self.checkpoints is not None:  # resume.server_boundary, bound by the launcher
            self.checkpoints.boundary(final=time_up)
        self.next_plan(time_up, admitted)

    def time_is_up(self) -> bool:
        """Whether schedule.time_limit_s has passed (counted from this job's start)."""
        limit = self.cfg.schedule.time_limit_s
        return limit is not None and self.now() - self.limit_origin > limit

    def next_plan(self, time_up: bool, admitted: Sequence[Snapshot] = ()) -> None:
        """Sync: broadcast the next generation's plan, or the stop plan when the time limit ran out;
        `admitted` (the round's new snapshots) go to remote evaluation workers with the plan."""
        if self.generation >= self.ctx.generations:
            return  # the stop plan goes out once every trainer said DONE
        if time_up:
            bcast_json(self.plan_comm, {"generation": self.generation, "stop": True, "lineups": {}}, 0, None)
            self.final_plan_sent = True
            return
        plan = {"generation": self.generation, "stop": False,
                "lineups": {str(r): [[s.to_json() for s in lu] for lu, _ in self._lineups(r)]
                            for r in sorted(self.trainers)}}
        if self.remote is not None:  # the round's snapshots reach every evaluation worker by broadcast
            plan.update(self.remote.broadcast_round(admitted))
        bcast_json(self.plan_comm, plan, 0, None)
        if self.remote is not None:
            self.remote.send_round(self.plan_comm, admitted)
        self.generation += 1
        for t in self.trainers.values():  # each starts its generation now, not when it published
            t.last_seen = time.monotonic()

    def _drain_evaluations(self) -> None:
        while self.evaluate_step():
            self.recorder.commit_due()
            if self.remote is not None:
                self.remote.poll()  # results of jobs out at the trainers
            self.send_heartbeats(time.monotonic())
            self.check_failures()

    def _lineups(self, rank: int) -> list[tuple[Lineup, str]]:
        """Line-ups for trainer `rank`'s next generation, with the source that drew each."""
        state = self.trainers[rank]
        return self.league.training_lineups(state.policy_id, state.role)

    def on_request(self, state: _TrainerState, msg: dict[str, Any]) -> None:
        """Line-ups (planned or drawn now) and every snapshot's weights the trainer lacks."""
        if self.async_cut is not None and self.async_cut.hold(self, state, msg):
            return  # answered once every trainer has saved the checkpoint (mpimarl/roles/resume.py)
        checkpoint = self.async_cut.answer(self, state) if self.async_cut is not None else {}
        if checkpoint:
            msg = dict(msg, lineups=[])  # save now, or stop: no line-ups this time
        if msg.get("lineups") is not None:
            lineups = [tuple(SeatedKey.from_json(i) for i in lu) for lu in msg["lineups"]]
        elif not self.all_published():
            # Async: another role's pool may still be empty; answer once every version 0 is in.
            self.deferred.append((state, msg))
            return
        else:
            lineups = [lu for lu, _ in self._lineups(state.rank)]
        cached = {SnapshotKey(str(p), int(v)) for p, v in msg["cached"]}
        needed: dict[SnapshotKey, str] = {}
        for lineup in lineups:
            for item in lineup:
                if not item.is_baseline and item.key not in cached:
                    needed[item.key] = item.role
        pool = self.league.pool
        snaps = [(pool.get(k), pool.weights(k)) for k in needed]
        reply = {
            "lineups": [[s.to_json() for s in lu] for lu in lineups],
            "sent": [[s.key.policy_id, s.key.version, s.role] for s, _ in snaps],
            "sizes": {str(s.key): int(w.size) for s, w in snaps},
            **checkpoint,
        }
        send_json(self.comm, reply, state.rank, Tag.ASSIGN)
        for _, weights in snaps:
            self.outbox.send_weights(weights, state.rank)  # nonblocking: a slow receiver stalls no one

    def on_train_stats(self, state: _TrainerState, msg: dict[str, Any]) -> None:
        """One train-table row."""
        row = _clean(msg)
        row["time"] = self.now()
        state.last_row = row
        state.env_steps = int(row["env_steps"])
        self.recorder.append("train", [row])
        self.progress.update(self)
        faults.reached("training")

    def on_match_results(self, state: _TrainerState, msg: dict[str, Any]) -> None:
        """Training tallies: recorded as `training` matches, fed to the matchmaker's quality scores."""
        learner = SnapshotKey(str(msg["policy_id"]), int(msg["version"]))
        rows = []
        outcomes: list[tuple[SnapshotKey, Lineup, list[float]]] = []
        for r in msg["rows"]:
            lineup = tuple(SeatedKey.from_json(i) for i in r["opponents"])
            opp_id, opp_version, opp_role = lineup_label(lineup)
            if state.policy_id in self.league.exploiters:
                source = EXPLOITER_SOURCE
            elif lineup and all(i.is_baseline for i in lineup):
                source = "baseline"
            else:
                source = self.league.matchmaker.name
            rows.append(_clean({
                "time": self.now(), "generation": int(msg["generation"]), "kind": "training", "matchmaker": source,
                "rank": state.rank, "policy_id": learner.policy_id, "version": learner.version, "role": state.role,
                "opponent_id": opp_id, "opponent_version": opp_version, "opponent_role": opp_role,
                "episodes": r["episodes"], "wins": r["wins"], "draws": r["draws"], "losses": r["losses"],
                "return_mean": r["return_mean"], "opponent_return_mean": r["opponent_return_mean"],
                "length_mean": r["length_mean"],
            }))
            outcomes.append((learner, lineup, [float(x) for x in r["scores"]]))
        self.recorder.append("matches", rows)
        if self.sync:
            self.round_.results.setdefault(state.rank, []).extend(outcomes)
        else:
            for learner_key, lineup, scores in outcomes:
                self.league.record_training(learner_key, lineup, scores)

    def on_failed(self, state: _TrainerState, msg: dict[str, Any]) -> None:
        """A trainer hit an error: end the job (the caller closes the run file first)."""
        raise PeerFailed(f"trainer rank {state.rank} ({state.policy_id}) failed: {msg.get('error')}",
                         int(msg.get("code", 1)))

    def on_eval_result(self, state: _TrainerState, msg: dict[str, Any]) -> None:
        """Results of an evaluation job a trainer played."""
        if self.remote is None:
            raise ProtocolError(f"server: rank {state.rank} sent evaluation results, "
                                "but evaluation.workers is 'server'")
        self.remote.on_result(state.rank, msg)

    def on_done(self, state: _TrainerState, msg: dict[str, Any]) -> None:
        """A trainer finished its budget; in sync mode the last one triggers the stop plan."""
        state.done = True
        if self.remote is not None:
            self.remote.retire(state.rank)
        state.env_steps = int(msg["env_steps"])
        if self.async_cut is not None:
            self.async_cut.on_done(self, state, msg)
        if self.sync and all(t.done for t in self.trainers.values()) and not self.final_plan_sent:
            bcast_json(self.plan_comm, {"generation": self.generation, "stop": True, "lineups": {}}, 0, None)
            self.final_plan_sent = True

    # -- evaluation -------------------------------------------------------------------------------
    def evaluate_step(self) -> bool:
        """Advance evaluation by one tick; False when there is nothing to evaluate."""
        if self.eval_job is None:
            if not self.eval_queue:
                return False
            plan = self.eval_queue.popleft()
            self.eval_plan = plan
            remote = self.remote is not None and plan.key is not None
            self.eval_job = self.remote.evaluate(plan) if remote else self._evaluate(plan)  # type: ignore[union-attr]
        try:
            next(self.eval_job)
        except StopIteration:
            self.eval_job = None
            self.eval_plan = None
        return True

    def acting_policy(self, seated: SeatedKey) -> ActingPolicy:
        """The policy that plays `seated` in rank 0's evaluations: a baseline, or a pool snapshot's frozen
        network (the newest 64 are kept)."""
        if seated.is_baseline:
            return self.baseline_policies[policy_key(seated)]
        if seated.key not in self.frozen:
            snap = self.league.pool.get(seated.key)
            weights = self.league.pool.weights(seated.key)
            self.frozen[seated.key] = FrozenPolicy(self.ctx.shape(snap.role), weights, self.device,
                                                   greedy=self.cfg.evaluation.greedy)
            while len(self.frozen) > 64:
                self.frozen.pop(next(iter(self.frozen)))
        return self.frozen[seated.key]

    def _play(self, own: SeatedKey, lineup: Lineup, seeds: list[int]) -> Generator[None, None, SideResults]:
        policies: dict[Hashable, ActingPolicy] = {policy_key(s): self.acting_policy(s) for s in lineup}
        res = yield from play_episodes(self.eval_matches, self.ctx.spec, self.acting_policy(own), own.role,
                                       lineup, policies, seeds)
        return SideResults(res.own, res.other, res.length, res.seats, res.occupants)

    def _evaluate(self, plan: EvalPlan) -> Generator[None, None, None]:
        """Play one plan's matches in order; the league rates them; record what it returns."""
        self.league.begin_evaluation(plan)
        generation = plan.key.version if plan.key is not None else 0
        for match in plan.matches:
            faults.reached("evaluation")
            res = yield from self._play(match.own, match.lineup, match.seeds())
            if match.comparator is not None:
                theirs = yield from self._play(match.comparator, match.comparator_lineup, match.seeds())
                res.comparator_own = theirs.own
            self.record_rows(self.league.record_match(match, res, self.now(), generation))
        if plan.key is None and self.league.par is not None:
            self.recorder.set_attr("par", {r: self.league.par.mean(r) for r in self.league.par.roles()})
        if plan.key is None and self.league.anchor_scores:
            self.recorder.set_attr("anchors", {f"{role}/{name}": score for (role, name), score
                                               in self.league.anchor_scores.items()})

    def record_rows(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        """Append the league's rows (table -> rows) to the run file."""
        for table, table_rows in rows.items():
            if table_rows:
                self.recorder.append(table, table_rows)

    def _record_population(self, generation: int) -> None:
        """Meta-strategies, Nash averages and (where exact) exploitability after a round or at the end."""
        self.recorder.append("meta", self.league.meta_rows(self.now(), generation))
        if self.exploitability is not None and self.ctx.measures_exploitability:
            rows = self.exploitability.measure(self.league, generation)
            for row in rows:
                row["time"] = self.now()
            self.recorder.append("exploitability", rows)

    # -- the end ----------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Per policy: rank, steps, and the league's ratings and baseline scores of its latest snapshot."""
        out = self.league.summary([t.policy_id for t in self.trainers.values()])
        for t in self.trainers.values():
            out[t.policy_id].update(rank=t.rank, env_steps=t.env_steps)
        return out
