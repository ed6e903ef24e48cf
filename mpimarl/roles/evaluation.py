"""Evaluation off rank 0 (`evaluation.workers: trainers`).

Rank 0 still plans every evaluation and owns every rating; it hands each planned match to a
trainer (a group leader) as an *evaluation job* and gets back only the per-episode results, so its
work per new snapshot grows with the number of matches, not episodes. Trainers play jobs between
updates, while they wait for the sync plan, and after their last generation until the server says
goodbye.

Weights: in the sync schedule the round's new snapshots travel once to every rank with the plan,
by broadcast on the plan communicator; anything else a job needs (an older pool member the worker
never got) follows the job point to point, and the server remembers what each worker holds.

A job is played with its own seeds: the episode seeds the league planned and a torch/NumPy seed
derived from them, inside a forked torch RNG, so its results do not depend on which rank plays it
(rank 0 plays leftovers itself the same way once every trainer is done) and playing it does not
disturb the trainer's own random streams (CPU, and CUDA on a GPU trainer: only the CPU generator is
seeded): the sync schedule stays deterministic.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Hashable
from typing import Any, Protocol

import numpy as np
import torch
from mpi4py import MPI

from mpimarl.algos.networks import FrozenPolicy
from mpimarl.comm.channel import (
    SERVER_RANK,
    Deadline,
    Tag,
    bcast_weights,
    recv_json_now,
    recv_weights,
    send_json,
)
from mpimarl.comm.outbox import Outbox
from mpimarl.league.league import EvalPlan, League, SideResults
from mpimarl.league.pool import SnapshotKey
from mpimarl.roles.context import RunContext
from mpimarl.rollout.evaluate import OWN, play_episodes
from mpimarl.rollout.runner import ActingPolicy, VectorMatches
from mpimarl.rollout.seating import Lineup, SeatedKey, policy_key, seat_occupants, seats_of_role


class EvaluationHost(Protocol):
    """What rank 0's evaluation dispatcher needs of rank 0 (:class:`mpimarl.roles.server.Server`)."""

    ctx: RunContext
    comm: MPI.Comm
    league: League
    eval_matches: VectorMatches
    outbox: Outbox

    def acting_policy(self, seated: SeatedKey) -> ActingPolicy:
        """The policy that plays `seated` in rank 0's own evaluation episodes."""
        ...

    def record_rows(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        """Append rows (table -> rows) to the run file."""
        ...

    def now(self) -> float:
        """Seconds since the run started."""
        ...

    def handle(self, status: MPI.Status) -> None:
        """Serve the pending message `status` describes."""
        ...


def job_seed(seeds: list[int], comparator: bool) -> int:
    """The RNG seed of one job, from its episode seeds (the same wherever it is played)."""
    return int(np.random.SeedSequence([int(seeds[0]), len(seeds), int(comparator)]).generate_state(1)[0])


def play_job(ctx: RunContext, matches: VectorMatches, snapshot: Any, own: SeatedKey, lineup: Lineup,
             seeds: list[int], seed: int) -> Generator[None, None, dict[str, Any]]:
    """Play one job's episodes; `snapshot(key)` gives the acting policy of a pool member."""
    baselines = ctx.baseline_policies(seed)

    def policy(s: SeatedKey) -> ActingPolicy:
        return baselines[policy_key(s)] if s.is_baseline else snapshot(s.key)

    table: dict[Hashable, ActingPolicy] = {policy_key(s): policy(s) for s in lineup}
    # The job's snapshots act on the CPU, so only the CPU generator is seeded and restored:
    # torch.manual_seed would also reseed every CUDA generator, which fork_rng(devices=[]) leaves
    # unrestored, and a trainer's stream on a GPU would then depend on when jobs arrive.
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        res = yield from play_episodes(matches, ctx.spec, policy(own), own.role, lineup, table, seeds)
    return {"own": res.own, "other": [None if np.isnan(x) else x for x in res.other], "length": res.length,
            "seats": res.seats}


def side_results(ctx: RunContext, own: SeatedKey, lineup: Lineup, result: dict[str, Any]) -> SideResults:
    """A job's results as the league reads them (who sat where is recomputed here, not sent)."""
    own_seats = seats_of_role(ctx.spec, own.role)
    n = len(result["own"])
    occupants = [seat_occupants(ctx.spec, own_seats[k % len(own_seats)], OWN, lineup) for k in range(n)]
    other = [float("nan") if x is None else float(x) for x in result["other"]]
    return SideResults([float(x) for x in result["own"]], other, [int(x) for x in result["length"]],
                       [[float(v) for v in seats] for seats in result["seats"]], occupants)


# -------------------------------------------------------------------------------------------------
# The trainer's side
# -------------------------------------------------------------------------------------------------


def receive_round(plan_comm: MPI.Comm, plan: dict[str, Any], timeout_s: float) -> np.ndarray | None:
    """Sync plan with `snapshots`: take part in the broadcast of their weights (every trainer rank
    must, whether or not it keeps them). None when the plan carries no snapshots."""
    entries = plan.get("snapshots")
    if entries is None:
        return None
    total = sum(int(e[3]) for e in entries)
    return bcast_weights(plan_comm, None, total, SERVER_RANK, Deadline(timeout_s, "the round's snapshots"))


class EvaluationWorker:
    """Plays the server's evaluation jobs on a trainer rank (a group leader), on the CPU."""

    def __init__(self, ctx: RunContext, comm: MPI.Comm, seed: int) -> None:
        self.ctx = ctx
        self.comm = comm
        self.matches = VectorMatches([ctx.factory() for _ in range(ctx.config.evaluation.num_envs)], seed=seed)
        self.store: dict[SnapshotKey, FrozenPolicy] = {}
        self.greedy = ctx.config.evaluation.greedy
        self.finished = False
        self.jobs_played = 0
        self.busy_s = 0.0

    def _add(self, key: SnapshotKey, role: str, weights: np.ndarray) -> None:
        self.store[key] = FrozenPolicy(self.ctx.shape(role), weights, torch.device("cpu"), greedy=self.greedy)

    def keep_round(self, entries: list[list[Any]], buf: np.ndarray) -> None:
        """Keep the round's new snapshots (from :func:`receive_round`)."""
        offset = 0
        for pid, version, role, size in entries:
            self._add(SnapshotKey(str(pid), int(version)), str(role), buf[offset : offset + int(size)].copy())
            offset += int(size)

    def serve(self) -> None:
        """Play every job the server has sent (none pending: return at once)."""
        status = MPI.Status()
        while not self.finished and self.comm.Iprobe(source=SERVER_RANK, tag=int(Tag.EVAL_JOB), status=status):
            self._one(recv_json_now(self.comm, status))

    def serve_until(self, tag: Tag, deadline: Deadline) -> None:
        """Play the jobs ahead of the next message with `tag` from the server, until that one is pending."""
        pause = 5e-5
        while True:
            self.serve()
            if self.comm.Iprobe(source=SERVER_RANK, tag=int(tag)):
                return
            deadline.check(self.comm)
            time.sleep(pause)
            pause = min(2 * pause, 0.005)

    def serve_until_goodbye(self) -> None:
        """After the last generation: play what is still coming until the server says goodbye."""
        deadline = Deadline(self.ctx.config.server.timeout_s, "the server's last evaluation jobs")
        pause = 5e-5
        while not self.finished:
            before = self.jobs_played
            self.serve()
            if self.jobs_played == before and not self.finished:
                deadline.check(self.comm)
                time.sleep(pause)
                pause = min(2 * pause, 0.005)

    def _one(self, job: dict[str, Any]) -> None:
        if job.get("goodbye"):
            self.finished = True
            return
        t0 = time.perf_counter()
        for pid, version, role, size in job["weights"]:
            w = recv_weights(self.comm, SERVER_RANK, int(size),
                             Deadline(self.ctx.config.server.timeout_s, f"weights of {pid}@{version}"))
            self._add(SnapshotKey(str(pid), int(version)), str(role), w)
        own = SeatedKey.from_json(job["own"])
        lineup = tuple(SeatedKey.from_json(i) for i in job["lineup"])
        gen = play_job(self.ctx, self.matches, self.store.__getitem__, own, lineup, list(job["seeds"]), job["seed"])
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                result = stop.value
                break
        result["id"] = job["id"]
        send_json(self.comm, result, SERVER_RANK, Tag.EVAL_RESULT)
        self.jobs_played += 1
        self.busy_s += time.perf_counter() - t0


# -------------------------------------------------------------------------------------------------
# The server's side
# -------------------------------------------------------------------------------------------------


class RemoteEvaluation:
    """Rank 0's dispatcher of evaluation jobs to the trainers' workers."""

    def __init__(self, server: EvaluationHost, workers: list[int]) -> None:
        self.server = server
        self.ctx = server.ctx
        self.comm = server.comm
        self.holds: dict[int, set[SnapshotKey]] = {r: set() for r in workers}
        self.outstanding: dict[int, int] = dict.fromkeys(workers, 0)
        self.retired: set[int] = set()
        self.results: dict[int, dict[str, Any]] = {}
        self.next_id = 0
        self.jobs_sent = 0
        self.jobs_local = 0
        self.sent_to: dict[str, int] = {str(r): 0 for r in workers}

    def counts(self) -> dict[str, Any]:
        """Jobs handed to trainers (per rank) and played by rank 0 itself, for the run file."""
        return {"remote": self.jobs_sent, "local": self.jobs_local, "per_rank": dict(self.sent_to)}

    def _available(self) -> list[int]:
        return [r for r in self.outstanding if r not in self.retired]

    def retire(self, rank: int) -> None:
        """A trainer finished: it gets no more jobs, and goodbye after the ones it has."""
        self.retired.add(rank)
        send_json(self.comm, {"goodbye": True}, rank, Tag.EVAL_JOB)

    def broadcast_round(self, snaps: list[Any]) -> dict[str, Any]:
        """Sync: the plan's entry for the round's snapshots; call `send_round` after the plan."""
        for r in self.holds:
            self.holds[r].update(s.key for s in snaps)
        return {"snapshots": [[s.key.policy_id, s.key.version, s.role, int(s.weights.size)] for s in snaps]}

    def send_round(self, plan_comm: MPI.Comm, snaps: list[Any]) -> None:
        """The round's snapshots, concatenated into one flat buffer, broadcast on the plan communicator."""
        buf = np.concatenate([s.weights for s in snaps]).astype(np.float32, copy=False) if snaps \
            else np.zeros(0, np.float32)
        bcast_weights(plan_comm, np.ascontiguousarray(buf), int(buf.size), SERVER_RANK, None)

    def on_result(self, rank: int, msg: dict[str, Any]) -> None:
        """One job's results came back."""
        self.outstanding[rank] -= 1
        self.results[int(msg["id"])] = msg

    def _dispatch(self, own: SeatedKey, lineup: Lineup, seeds: list[int], comparator: bool) -> int | dict[str, Any]:
        """Send a job to the least busy worker (its id), or play it here when no worker is left."""
        seed = job_seed(seeds, comparator)
        workers = self._available()
        if not workers:
            self.jobs_local += 1
            gen = play_job(self.ctx, self.server.eval_matches, self._local_policy, own, lineup, seeds, seed)
            while True:
                try:
                    next(gen)
                except StopIteration as stop:
                    return stop.value
        rank = min(workers, key=lambda r: (self.outstanding[r], r))
        job_id = self.next_id
        self.next_id += 1
        needed = [s.key for s in (own, *lineup) if not s.is_baseline and s.key not in self.holds[rank]]
        pool = self.server.league.pool
        snaps = [(pool.get(k), pool.weights(k)) for k in dict.fromkeys(needed)]
        job = {"id": job_id, "own": own.to_json(), "lineup": [s.to_json() for s in lineup], "seeds": seeds,
               "seed": seed, "weights": [[s.key.policy_id, s.key.version, s.role, int(w.size)] for s, w in snaps]}
        send_json(self.comm, job, rank, Tag.EVAL_JOB)
        for s, w in snaps:
            self.server.outbox.send_weights(w, rank)
            self.holds[rank].add(s.key)
        self.outstanding[rank] += 1
        self.jobs_sent += 1
        self.sent_to[str(rank)] += 1
        return job_id

    def _local_policy(self, key: SnapshotKey) -> ActingPolicy:
        return self.server.acting_policy(SeatedKey(key, self.server.league.pool.get(key).role))

    def evaluate(self, plan: EvalPlan) -> Generator[None, None, None]:
        """Hand out every match of the plan at once, then record the results in plan order."""
        league = self.server.league
        league.begin_evaluation(plan)
        generation = plan.key.version if plan.key is not None else 0
        tickets = []
        for match in plan.matches:
            a = self._dispatch(match.own, match.lineup, match.seeds(), False)
            b = None
            if match.comparator is not None:
                b = self._dispatch(match.comparator, match.comparator_lineup, match.seeds(), True)
            tickets.append((match, a, b))
        for match, a, b in tickets:
            res_a = yield from self._wait(a)
            res = side_results(self.ctx, match.own, match.lineup, res_a)
            if b is not None:
                res_b = yield from self._wait(b)
                res.comparator_own = side_results(self.ctx, match.comparator, match.comparator_lineup, res_b).own
            self.server.record_rows(league.record_match(match, res, self.server.now(), generation))

    def _wait(self, ticket: int | dict[str, Any]) -> Generator[None, None, dict[str, Any]]:
        if isinstance(ticket, dict):
            return ticket
        while ticket not in self.results:
            yield
        return self.results.pop(ticket)

    def poll(self) -> None:
        """While rank 0 drains evaluations: take results (and failures) only, sleeping briefly."""
        status = MPI.Status()
        for tag in (Tag.EVAL_RESULT, Tag.FAILED):
            if self.comm.Iprobe(source=MPI.ANY_SOURCE, tag=int(tag), status=status):
                self.server.handle(status)
                return
        time.sleep(2e-4)
