"""Rank 0, the server: the one home of the pool, matchmaker, evaluator, ratings and recorder.

It answers trainers point to point, pushes each generation's plan to everyone with a broadcast
(sync schedule), and plays evaluation matches whenever no message is waiting.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Generator, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from mpi4py import MPI

from mpimarl.algos.networks import FrozenPolicy, RandomPolicy
from mpimarl.comm.channel import (
    Deadline,
    Tag,
    bcast_json,
    recv_json_now,
    recv_weights,
    send_json,
    send_weights,
    tag_name,
)
from mpimarl.errors import PeerFailed, ProtocolError
from mpimarl.league.elo import EloTable
from mpimarl.league.matchmaking import make_matchmaker
from mpimarl.league.outcomes import match_score, tally
from mpimarl.league.pool import RANDOM_KEY, PolicyPool, Snapshot, SnapshotKey
from mpimarl.record.recorder import RunRecorder
from mpimarl.roles.context import RunContext
from mpimarl.roles.progress import Progress
from mpimarl.rollout.evaluate import EpisodeResults, play_episodes
from mpimarl.rollout.runner import ActingPolicy, VectorMatches
from mpimarl.rollout.seating import Lineup, SeatedKey, other_seat_roles, policy_key, random_key, seats_of_role


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
    results: dict[int, list[tuple[SnapshotKey, SnapshotKey, float]]] = field(default_factory=dict)


@dataclass
class _EvalPlan:
    """The evaluation matches of one new snapshot, decided when it enters the pool."""

    own: SeatedKey
    seed_base: int
    opponents: list[Lineup] = field(default_factory=list)  # competitive: line-ups to play against
    partners: list[Lineup] = field(default_factory=list)  # cooperative: teammates to play with
    comparators: list[SeatedKey] = field(default_factory=list)  # cooperative: compared on equal episodes

    def seeds(self, n: int) -> list[int]:
        """Episode seeds shared by every match of this plan."""
        return [self.seed_base + i for i in range(n)]


def _seated(drawn: list[tuple[SnapshotKey, ...]], roles: list[str]) -> list[Lineup]:
    """A matchmaker's key line-ups with the role of each seat attached."""
    return [tuple(SeatedKey(k, r) for k, r in zip(lineup, roles)) for lineup in drawn]


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    """None (JSON's stand-in for NaN) -> NaN."""
    return {k: (float("nan") if v is None else v) for k, v in row.items()}


def _joined(lineup: Lineup) -> tuple[str, int, str]:
    """(opponent_id, opponent_version, opponent_role) columns for a line-up."""
    if not lineup:
        return "-", -1, "-"
    if len(lineup) == 1:
        item = lineup[0]
        return item.key.policy_id, item.key.version, item.role
    return ("+".join(str(i.key) for i in lineup), -1, "+".join(i.role for i in lineup))


class Server:
    """Rank 0's duties for one run."""

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
        self.rng = np.random.default_rng(ctx.rank_seed(0))
        self.pool = PolicyPool()
        mm = cfg.matchmaking
        self.matchmaker = make_matchmaker(mm.strategy, latest_fraction=mm.latest_fraction, quality_lr=mm.quality_lr)
        self.eval_pool_sampler = make_matchmaker("uniform")
        self.partner_sampler = make_matchmaker("latest")
        ev = cfg.evaluation
        self.elo = EloTable(k=ev.elo_k, initial=ev.elo_initial)
        self.elo.fix(RANDOM_KEY, ev.elo_initial)
        self.trainers = {
            r: _TrainerState(r, ctx.policy_id(r), ctx.trainer_role(r)) for r in range(1, ctx.world_size)
        }
        self.round_ = _Round()
        self.deferred: list[tuple[_TrainerState, dict[str, Any]]] = []  # async requests before every v0
        self.generation = 0  # sync: the round being collected (trainers publish version == generation)
        self.final_plan_sent = False
        self.eval_queue: deque[_EvalPlan] = deque()
        self.eval_job: Generator[None, None, None] | None = None
        self.eval_rng = np.random.default_rng(ctx.rank_seed(0) + 2)
        self.eval_matches = VectorMatches([ctx.factory() for _ in range(ev.num_envs)], seed=ctx.rank_seed(0))
        self.device = torch.device("cpu")
        torch.manual_seed(ctx.rank_seed(0))  # evaluation samples actions: seeded, so sync runs repeat
        self.frozen: dict[SnapshotKey, FrozenPolicy] = {}
        self.randoms = {role: RandomPolicy(rs.action_space, np.random.default_rng(ctx.rank_seed(0) + 1))
                        for role, rs in ctx.spec.roles.items()}
        self.scores: dict[SnapshotKey, float] = {}
        self.baseline_rates: dict[str, float] = {}

    # -- time -------------------------------------------------------------------------------------
    def now(self) -> float:
        """Seconds since the server started."""
        return time.monotonic() - self.start_time

    # -- main loop --------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Serve until every trainer is done and every evaluation has been played."""
        status = MPI.Status()
        pause = 5e-5
        while True:
            if self.comm.Iprobe(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=status):
                self.handle(status)
                pause = 5e-5
                continue
            if self._finished():
                if not self._evaluate_step():
                    break
                continue
            self._watchdog()
            if self._evaluate_step():
                continue
            time.sleep(pause)
            pause = min(pause * 2, 0.005)
            self.progress.maybe_print(self)
        self.progress.close(self)
        return self.summary()

    def _finished(self) -> bool:
        return all(t.done for t in self.trainers.values()) and (not self.sync or self.final_plan_sent)

    def _watchdog(self) -> None:
        limit = self.cfg.server.timeout_s
        now = time.monotonic()
        for t in self.trainers.values():
            if not t.done and now - t.last_seen > limit:
                raise TimeoutError(
                    f"server: trainer rank {t.rank} ({t.policy_id}) sent nothing for {limit:.0f} s; "
                    "it is stuck or dead (server.timeout_s sets this limit)"
                )

    # -- messages ---------------------------------------------------------------------------------
    def handle(self, status: MPI.Status) -> None:
        """Dispatch one pending message by its tag."""
        source = status.Get_source()
        tag = status.Get_tag()
        state = self.trainers.get(source)
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
            if self.deferred and self._all_published():
                for waiting, request in self.deferred:
                    self.on_request(waiting, request)
                self.deferred.clear()

    def _all_published(self) -> bool:
        return all(t.published >= 0 for t in self.trainers.values())

    def _admit(self, snap: Snapshot) -> None:
        """Put a snapshot into the pool, the matchmaker, the ratings and the evaluation queue."""
        self.pool.add(snap)
        self.matchmaker.on_publish(snap)
        self.elo.add_child(snap.key, snap.parent)
        if snap.key.version > 0:
            self.eval_queue.append(self._plan_evaluation(snap.key))

    def _close_round(self) -> None:
        """Sync: every trainer published `generation`; admit in rank order, then broadcast the plan."""
        for rank in sorted(self.round_.results):
            for learner, opponent, score in self.round_.results[rank]:
                self.matchmaker.record_result(learner, opponent, score)
        for rank in sorted(self.round_.snapshots):
            self._admit(self.round_.snapshots[rank])
        self.round_ = _Round()
        if self.generation >= self.ctx.generations:
            return  # the stop plan goes out once every trainer said DONE
        plan = {"generation": self.generation, "stop": False,
                "lineups": {str(r): [[s.to_json() for s in lu] for lu in self._lineups(r)]
                            for r in sorted(self.trainers)}}
        bcast_json(self.plan_comm, plan, 0, None)
        self.generation += 1

    def _lineups(self, rank: int) -> list[Lineup]:
        """Line-ups for trainer `rank`'s next generation, drawn by the matchmaker."""
        state = self.trainers[rank]
        own_seat = seats_of_role(self.ctx.spec, state.role)[0]
        roles = other_seat_roles(self.ctx.spec, own_seat)
        if not roles:
            return [()]  # one empty line-up: the learner's team fills every seat
        learner = self.pool.latest(state.policy_id).key
        mm = self.cfg.matchmaking
        drawn = self.matchmaker.lineups(self.pool, learner, state.role, roles, mm.lineups, self.rng)
        lineups = _seated(drawn, roles)
        if mm.baseline_fraction > 0:
            # floor(n * fraction) line-ups for sure, one more with the leftover probability.
            share = mm.baseline_fraction * len(lineups)
            count = min(len(lineups), int(share) + int(self.rng.random() < share - int(share)))
            baseline = tuple(random_key(r) for r in roles)
            lineups = [baseline] * count + lineups[count:]
        return lineups

    def on_request(self, state: _TrainerState, msg: dict[str, Any]) -> None:
        """Line-ups (planned or drawn now) and every snapshot's weights the trainer lacks."""
        if msg.get("lineups") is not None:
            lineups = [tuple(SeatedKey.from_json(i) for i in lu) for lu in msg["lineups"]]
        elif not self._all_published():
            # Async: another role's pool may still be empty; answer once every version 0 is in.
            self.deferred.append((state, msg))
            return
        else:
            lineups = self._lineups(state.rank)
        cached = {SnapshotKey(str(p), int(v)) for p, v in msg["cached"]}
        needed: dict[SnapshotKey, str] = {}
        for lineup in lineups:
            for item in lineup:
                if not item.is_random and item.key not in cached:
                    needed[item.key] = item.role
        snaps = [self.pool.get(k) for k in needed]
        reply = {
            "lineups": [[s.to_json() for s in lu] for lu in lineups],
            "sent": [[s.key.policy_id, s.key.version, s.role] for s in snaps],
            "sizes": {str(s.key): int(s.weights.size) for s in snaps},
        }
        send_json(self.comm, reply, state.rank, Tag.ASSIGN)
        for snap in snaps:
            send_weights(self.comm, snap.weights, state.rank)

    def on_train_stats(self, state: _TrainerState, msg: dict[str, Any]) -> None:
        """One train-table row."""
        row = _clean(msg)
        row["time"] = self.now()
        state.last_row = row
        state.env_steps = int(row["env_steps"])
        self.recorder.append("train", [row])
        self.progress.update(self)

    def on_match_results(self, state: _TrainerState, msg: dict[str, Any]) -> None:
        """Training tallies: recorded as `training` matches, fed to the matchmaker's quality scores."""
        learner = SnapshotKey(str(msg["policy_id"]), int(msg["version"]))
        rows = []
        outcomes: list[tuple[SnapshotKey, SnapshotKey, float]] = []
        for r in msg["rows"]:
            lineup = tuple(SeatedKey.from_json(i) for i in r["opponents"])
            opp_id, opp_version, opp_role = _joined(lineup)
            rows.append(_clean({
                "time": self.now(), "generation": int(msg["generation"]), "kind": "training", "rank": state.rank,
                "policy_id": learner.policy_id, "version": learner.version, "role": state.role,
                "opponent_id": opp_id, "opponent_version": opp_version, "opponent_role": opp_role,
                "episodes": r["episodes"], "wins": r["wins"], "draws": r["draws"], "losses": r["losses"],
                "return_mean": r["return_mean"], "opponent_return_mean": r["opponent_return_mean"],
                "length_mean": r["length_mean"],
            }))
            for item in lineup:
                if not item.is_random:
                    outcomes.extend((learner, item.key, float(s)) for s in r["scores"])
        self.recorder.append("matches", rows)
        if self.sync:
            self.round_.results.setdefault(state.rank, []).extend(outcomes)
        else:
            for learner_key, opponent, score in outcomes:
                self.matchmaker.record_result(learner_key, opponent, score)

    def on_failed(self, state: _TrainerState, msg: dict[str, Any]) -> None:
        """A trainer hit an error: end the job (the caller closes the run file first)."""
        raise PeerFailed(f"trainer rank {state.rank} ({state.policy_id}) failed: {msg.get('error')}",
                         int(msg.get("code", 1)))

    def on_done(self, state: _TrainerState, msg: dict[str, Any]) -> None:
        """A trainer finished its budget; in sync mode the last one triggers the stop plan."""
        state.done = True
        state.env_steps = int(msg["env_steps"])
        if self.sync and all(t.done for t in self.trainers.values()) and not self.final_plan_sent:
            bcast_json(self.plan_comm, {"generation": self.generation, "stop": True, "lineups": {}}, 0, None)
            self.final_plan_sent = True

    # -- evaluation -------------------------------------------------------------------------------
    def _evaluate_step(self) -> bool:
        """Advance evaluation by one tick; False when there is nothing to evaluate."""
        if self.eval_job is None:
            if not self.eval_queue:
                return False
            self.eval_job = self._evaluate(self.eval_queue.popleft())
        try:
            next(self.eval_job)
        except StopIteration:
            self.eval_job = None
        return True

    def _policy(self, seated: SeatedKey) -> ActingPolicy:
        if seated.is_random:
            return self.randoms[seated.role]
        if seated.key not in self.frozen:
            snap = self.pool.get(seated.key)
            self.frozen[seated.key] = FrozenPolicy(self.ctx.shape(snap.role), snap.weights, self.device,
                                                   greedy=self.cfg.evaluation.greedy)
            while len(self.frozen) > 64:
                self.frozen.pop(next(iter(self.frozen)))
        return self.frozen[seated.key]

    def _play(self, own: SeatedKey, lineup: Lineup, seeds: list[int]) -> Generator[None, None, EpisodeResults]:
        policies: dict[Hashable, ActingPolicy] = {policy_key(s): self._policy(s) for s in lineup}
        return (yield from play_episodes(self.eval_matches, self.ctx.spec, self._policy(own), own.role,
                                         lineup, policies, seeds))

    def _plan_evaluation(self, key: SnapshotKey) -> _EvalPlan:
        """Decide a new snapshot's evaluation matches now, from the pool as it is at admission.

        Drawing opponents at admission (not when the job runs) keeps sync runs deterministic: the
        same snapshots meet the same opponents however evaluation interleaves with training.
        """
        snap = self.pool.get(key)
        ev = self.cfg.evaluation
        own_seat = seats_of_role(self.ctx.spec, snap.role)[0]
        roles = other_seat_roles(self.ctx.spec, own_seat)
        plan = _EvalPlan(SeatedKey(key, snap.role), seed_base=self.ctx.rank_seed(0) + 10_000 * len(self.pool))
        if self.cfg.task.kind == "competitive":
            if ev.baseline_episodes:
                plan.opponents.append(tuple(random_key(r) for r in roles))
            if ev.pool_opponents and ev.pool_episodes:
                drawn = self.eval_pool_sampler.lineups(self.pool, key, snap.role, roles, ev.pool_opponents,
                                                       self.eval_rng)
                plan.opponents += [lu for lu in _seated(drawn, roles) if any(s.key != key for s in lu)]
        else:
            plan.partners = [()]
            if roles:
                drawn = self.partner_sampler.lineups(self.pool, key, snap.role, roles, 1, self.eval_rng)
                plan.partners = _seated(drawn, roles)
            plan.comparators = [random_key(snap.role)]
            others = [s.key for s in self.pool.snapshots(snap.role) if s.key != key]
            if others and ev.pool_opponents:
                picks = self.eval_rng.choice(len(others), size=min(ev.pool_opponents, len(others)), replace=False)
                plan.comparators += [SeatedKey(others[int(i)], snap.role) for i in sorted(picks)]
        return plan

    def _evaluate(self, plan: _EvalPlan) -> Generator[None, None, None]:
        """Play one snapshot's scheduled evaluation matches; record matches and ratings."""
        own = plan.own
        key = own.key
        ev = self.cfg.evaluation
        margin = self.cfg.task.draw_margin
        touched: set[SnapshotKey] = {key}
        for lineup in plan.opponents:
            baseline = all(s.is_random for s in lineup)
            n = ev.baseline_episodes if baseline else ev.pool_episodes
            res = yield from self._play(own, lineup, plan.seeds(n))
            w, d, lo = tally(match_score(o, t, margin) for o, t in zip(res.own, res.other))
            for item in lineup:
                self.elo.update_many(key, RANDOM_KEY if item.is_random else item.key, w, d, lo)
                touched.add(item.key)
            if baseline:
                self.scores[key] = float(np.mean(res.own))
                self.baseline_rates[key.policy_id] = (w + 0.5 * d) / max(1, n)
            self._record_match(own, lineup, res, (w, d, lo))
        for lineup in plan.partners:
            seeds = plan.seeds(max(ev.baseline_episodes, 1))
            mine = yield from self._play(own, lineup, seeds)
            self.scores[key] = float(np.mean(mine.own))
            self._record_match(own, lineup, mine, (0, 0, 0))
            for comp in plan.comparators:
                # Paired comparison: the comparator takes the same seat with the same partners on the
                # same episode seeds; the better team return wins the episode.
                theirs = yield from self._play(comp, lineup, seeds)
                w, d, lo = tally(match_score(a, b, margin) for a, b in zip(mine.own, theirs.own))
                self.elo.update_many(key, comp.key, w, d, lo)
                touched.add(comp.key)
                if comp.is_random:
                    self.baseline_rates[key.policy_id] = (w + 0.5 * d) / max(1, len(seeds))
                self._record_match(own, (comp,), EpisodeResults(mine.own, theirs.own, mine.length), (w, d, lo))
        self._record_ratings(touched)

    def _record_match(self, own: SeatedKey, lineup: Lineup, res: EpisodeResults, wdl: tuple[int, int, int]) -> None:
        opp_id, opp_version, opp_role = _joined(lineup)
        other = [x for x in res.other if not math.isnan(x)]
        self.recorder.append("matches", [{
            "time": self.now(), "generation": own.key.version, "kind": "evaluation", "rank": 0,
            "policy_id": own.key.policy_id, "version": own.key.version, "role": own.role,
            "opponent_id": opp_id, "opponent_version": opp_version, "opponent_role": opp_role,
            "episodes": res.episodes, "wins": wdl[0], "draws": wdl[1], "losses": wdl[2],
            "return_mean": float(np.mean(res.own)),
            "opponent_return_mean": float(np.mean(other)) if other else float("nan"),
            "length_mean": float(np.mean(res.length)),
        }])

    def _record_ratings(self, keys: set[SnapshotKey]) -> None:
        rows = []
        for key in sorted(keys):
            if key == RANDOM_KEY or key not in self.pool:
                continue
            rows.append({"time": self.now(), "generation": key.version, "policy_id": key.policy_id,
                         "version": key.version, "role": self.pool.get(key).role, "elo": self.elo.rating(key),
                         "games": self.elo.games(key), "score": self.scores.get(key, float("nan"))})
        self.recorder.append("ratings", rows)

    # -- the end ----------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Per policy: role, steps, latest version, Elo, last evaluation score and baseline rate."""
        out = {}
        for t in self.trainers.values():
            latest = self.pool.latest(t.policy_id).key
            out[t.policy_id] = {
                "rank": t.rank, "role": t.role, "version": latest.version, "env_steps": t.env_steps,
                "elo": round(self.elo.rating(latest), 1), "score": self.scores.get(latest),
                "vs_random": self.baseline_rates.get(t.policy_id),
            }
        return out
