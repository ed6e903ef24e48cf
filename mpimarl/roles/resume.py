"""Checkpoints at generation boundaries and resuming a run from them (`mpimarl train --resume`).

Why a resumed sync run repeats an uninterrupted one exactly
------------------------------------------------------------
A checkpoint must hold everything that decides what happens next. Most of it is plain state:
rank 0's league (pool metadata, matchmaker, ratings, payoff table, par reference, the league's
random generators), the evaluations it has planned but not yet played, its torch generator; each
trainer's network, Adam state, PPO rollout buffer, torch generators and counters. Two things are
not plain state: environments in mid-episode (a PettingZoo or OpenSpiel game cannot be saved in
general) and scripted baselines, whose random generators live inside closures. So, with
checkpoints on, every generation boundary (in every run, interrupted or not) does the same three
things before anything else happens:

1. each trainer *cuts* its running matches: the learner's open transitions end as truncated and
   bootstrap from the value of the current observation (`VectorMatches.abandon`), so no experience
   is lost or mislabelled; the next generation starts fresh episodes, each reset with the next seed
   of the trainer's episode sequence;
2. every rank rebuilds its baseline policies from a fresh stream, the SeedSequence child
   (generation, 1) of its rank seed (`generation_seed`);
3. the ranks whose turn it is (every `checkpoint.every` generations, the last one and a time-limit
   stop) write their checkpoint: a trainer right after publishing the generation's snapshot (the
   cut done), rank 0 right after closing the round (evaluations of earlier rounds played, the new
   snapshots admitted, their evaluations planned but not started) and before it draws the next plan.

The rollout buffer is saved as it is after the cut (its complete transitions, waiting for the next
PPO update), so updates fall on the same steps as in an uninterrupted run. Because boundaries
behave the same whether or not a checkpoint is written there, a run resumed from generation g
takes exactly the steps the uninterrupted run took after g: same weights, same rows (apart from the
wall-clock columns `time`, `steps_per_s`, `wait_s`, and the order in which rows of different ranks
interleave, which is timing even in one uninterrupted run). On a GPU, or with
`trainer.torch_threads` > 1, kernels may not be bitwise repeatable; the resume is then correct but
not bitwise equal.

Tables: rank 0's checkpoint records how many rows each table held; on resume the run file is cut
back to those counts (rows written after the checkpoint are recorded again) and snapshots newer
than the checkpoint are deleted, so every table continues without a gap or a duplicate.

Every layout does this: a learner group member, an IMPALA learner and each of its actors save their
own file at the same boundaries (what each kind adds: `_kind_state`).

The async schedule has no common boundary: rank 0 makes one (`AsyncCut`), and a resumed async run
continues from that consistent cut without gap or duplicate rows, but does not repeat the
uninterrupted run (that one depends on timing anyway). A policy of several ranks takes part through
the rank that speaks for it: a learner group's leader or an IMPALA learner relays the cut to the
other ranks of its policy and confirms it to rank 0 only once each has saved its own file
(`Checkpoints.lead_cut` / `follow_cut`); at that boundary no actor segment is in flight.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import h5py
import numpy as np
import torch

from mpimarl.checkpoint.store import (
    CheckpointError,
    checkpoint_path,
    generation_seed,
    newest_complete,
    prune,
    read_checkpoint,
    write_checkpoint,
)
from mpimarl.config import RunConfig, config_to_dict
from mpimarl.errors import ConfigError, RunFileError
from mpimarl.league.league import EvalPlan
from mpimarl.record.journal import recover
from mpimarl.record.schema import FORMAT_NAME, TABLES

if TYPE_CHECKING:
    from mpimarl.record.recorder import RunRecorder
    from mpimarl.roles.server import Server
    from mpimarl.roles.trainer import Trainer

CHECKPOINT_FOLDER = "checkpoints"
"""Checkpoints live in this folder of the run's folder (beside run.h5)."""

RESUMABLE_DIFFERENCES = ("schedule.total_steps", "schedule.time_limit_s", "trainer.", "server.", "checkpoint.",
                         "logging.")
"""Config keys (or prefixes) a resumed run may change: budgets and per-rank resources. Anything
else would make the continuation a different experiment."""

BASELINE_STREAM = 1
"""SeedSequence stream (per rank and generation) of the baseline policies' random generators."""


def checkpoint_folder(run_dir: str | Path) -> Path:
    """The checkpoint folder of a run folder."""
    return Path(run_dir) / CHECKPOINT_FOLDER


LAYOUT_KEYS = ("trainer.ranks_per_policy", "trainer.actors_per_learner")
"""trainer.* keys a resume may not change: they decide which ranks train a policy and what each rank's
checkpoint holds (a group member's share of the rollout, an actor's unshipped transitions)."""


def checkpoints_enabled(config: RunConfig) -> bool:
    """Checkpoints are on: checkpoint.every > 0, for every layout (learner groups, IMPALA actors,
    evaluation workers) and both schedules."""
    return config.checkpoint.every > 0


class Checkpoints:
    """One rank's checkpoint duties: when to save, where, and keeping only the newest few.

    `boundary` is what the rank does at each generation boundary (:func:`server_boundary` or
    :func:`trainer_boundary` bound to it by the launcher): the server and the trainers call it
    through :meth:`boundary`, so they need not import this module.
    """

    def __init__(self, run_dir: str | Path, config: RunConfig, rank: int,
                 boundary: Callable[[bool], None], checksum: Callable[[], int] | None = None) -> None:
        self._boundary = boundary
        self._checksum = checksum  # the rank's weights' checksum, confirmed with a unit's cut
        self.folder = checkpoint_folder(run_dir)
        self.every = config.checkpoint.every
        self.keep = config.checkpoint.keep
        self.rank = rank
        self.saved: int | None = None  # the generation (async: the cut) last saved by this rank
        # async: the cut rank 0 asked for (saved at the next boundary) and the one saved but not yet
        # acknowledged (the next request or DONE carries it); see AsyncCut.
        self.async_mode = config.schedule.mode == "async"
        self.requested: int | None = None
        self.unacknowledged: int | None = None

    def boundary(self, final: bool) -> None:
        """The rank's generation boundary: cut the running matches, start fresh baseline streams and
        save when due (`final`: the last generation or a time-limit stop, always saved)."""
        self._boundary(final)

    def due(self, generation: int, final: bool) -> bool:
        """Whether generation `generation`'s boundary is saved (and not saved already)."""
        return self.saved != generation and (final or generation % self.every == 0)

    def save(self, generation: int, tree: Any) -> None:
        """Write this rank's checkpoint of `generation` atomically, then drop old ones."""
        write_checkpoint(checkpoint_path(self.folder, generation, self.rank), tree, generation=generation,
                         rank=self.rank)
        self.saved = generation
        prune(self.folder, self.rank, self.keep)

    def acknowledge(self) -> dict[str, int]:
        """async: the entry of a trainer's next request (or DONE) that says it saved a cut."""
        if self.unacknowledged is None:
            return {}
        cut, self.unacknowledged = self.unacknowledged, None
        return {"checkpoint_saved": cut}

    def lead_cut(self, unit: UnitComm, identical: bool) -> None:
        """async, the rank that speaks for a unit of several ranks (a learner group's leader, an IMPALA
        learner), asked by rank 0 to save the cut: the unit's other ranks, waiting for its next broadcast
        on `unit`, save it too (:meth:`follow_cut`), then it saves its own. Returns once every rank of the
        unit has written its file, so its next request may tell rank 0 that the policy saved the cut.
        `identical`: the ranks must have saved the same weights (a learner group)."""
        cut = self.requested
        if cut is None:
            return
        unit.bcast_json({"save": cut})
        self._boundary(False)
        check_unit_saved(unit.gather_json(self._saved_note(cut)), cut, identical)

    def follow_cut(self, msg: dict[str, Any], unit: UnitComm) -> bool:
        """async, any other rank of a unit: if the leader's broadcast `msg` says "save cut c", save it and
        confirm (True: wait for the next broadcast); False: `msg` is the ordinary one."""
        if "save" not in msg:
            return False
        cut = int(msg["save"])
        self.requested = cut
        self._boundary(False)
        self.unacknowledged = None  # the leader speaks to rank 0 for the unit
        unit.gather_json(self._saved_note(cut))
        return True

    def _saved_note(self, cut: int) -> dict[str, Any]:
        note: dict[str, Any] = {"rank": self.rank, "saved": self.saved if self.saved == cut else None}
        if self._checksum is not None:
            note["weights_crc"] = self._checksum()
        return note

    def take_reply(self, reply: dict[str, Any]) -> str | None:
        """async: read rank 0's answer to a request: 'save' (save the cut now and ask again), 'stop'
        (rank 0's time limit: save the cut if asked, then stop) or None (play on)."""
        if not self.async_mode:
            return None
        if reply.get("checkpoint") is not None:
            self.requested = int(reply["checkpoint"])
        if reply.get("stop"):
            return "stop"
        return "save" if self.requested is not None else None


class UnitComm(Protocol):
    """The leader's side of a policy's own communicator (mpimarl.comm.group.GroupComm): a learner
    group's, or an IMPALA learner's control communicator with its actors."""

    def bcast_json(self, obj: Any) -> Any: ...  # noqa: D102

    def gather_json(self, obj: Any) -> list[Any] | None: ...  # noqa: D102


def check_unit_saved(notes: list[dict[str, Any]] | None, cut: int, identical: bool) -> None:
    """The leader's check of its unit's confirmations of cut `cut` (one note per rank, the leader's
    first): every rank saved that cut and, for a learner group (`identical`), saved the same weights.
    RuntimeError naming the ranks otherwise: a checkpoint that could not resume must not be counted."""
    if notes is None:
        raise RuntimeError("only the unit's leader checks its cut")
    missing = [n["rank"] for n in notes if n.get("saved") != cut]
    if missing:
        raise RuntimeError(f"checkpoint {cut}: ranks {missing} of the policy did not save it")
    if identical:
        crcs = {n["rank"]: n.get("weights_crc") for n in notes}
        if len(set(crcs.values())) > 1:
            shown = ", ".join(f"rank {r}: {c:#010x}" if isinstance(c, int) else f"rank {r}: {c}"
                              for r, c in crcs.items())
            raise RuntimeError(f"checkpoint {cut}: the learner group saved different weights ({shown}); "
                               "data-parallel learners must stay identical")


# ---- config check ------------------------------------------------------------------------------


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: data}


def config_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """'key: stored -> now' for every config key whose value differs and may not (sorted)."""
    a, b = _flatten(stored), _flatten(current)
    out = []
    for key in sorted(set(a) | set(b)):
        if key not in LAYOUT_KEYS and any(key == p or (p.endswith(".") and key.startswith(p))
                                          for p in RESUMABLE_DIFFERENCES):
            continue
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            out.append(f"{key}: {a.get(key, '<absent>')!r} -> {b.get(key, '<absent>')!r}")
    return out


def _stored_attrs(path: Path) -> dict[str, Any]:
    """The run file's attributes (JSON ones decoded); RunFileError naming the problem."""
    recover(path)  # a writer killed mid-commit left a whole journal: apply it (mpimarl.record.journal)
    try:
        with h5py.File(path, "r", locking="best-effort") as f:
            attrs = dict(f.attrs)
    except BlockingIOError:
        raise RunFileError(f"--resume: run file {path} is open in another process (is the run still going?)") from None
    except OSError as exc:
        raise RunFileError(f"--resume: run file {path} cannot be opened (truncated or not HDF5?): {exc}") from None
    if attrs.get("format") != FORMAT_NAME:
        raise RunFileError(f"--resume: {path} is not an mpimarl run file (format {attrs.get('format')!r})")
    try:
        json_keys = json.loads(str(attrs.get("json_attrs", "[]")))
        for key in json_keys:
            attrs[key] = json.loads(str(attrs[key]))
    except (ValueError, KeyError) as exc:
        raise RunFileError(f"--resume: run file {path} has damaged attributes: {exc}") from None
    if not isinstance(attrs.get("config"), dict):
        raise RunFileError(f"--resume: run file {path} has no recorded config")
    return attrs


# ---- rank 0: start-up ----------------------------------------------------------------------------


def open_for_resume(config: RunConfig, world_size: int, run_dir: str | None
                    ) -> tuple[RunRecorder, Path, int, dict[str, Any]]:
    """Rank 0: check that `run_dir` holds a resumable run of this config; reopen its run file.

    Returns the recorder (tables cut back to the checkpoint), the run file's path, the checkpoint's
    generation and rank 0's checkpoint state. Every problem is a ConfigError or RunFileError whose
    message names it (start-up turns it into exit code 2 on every rank).
    """
    from mpimarl.record.recorder import RunRecorder

    if run_dir is None:
        raise ConfigError("--resume needs the run's folder: --run-dir DIR --resume, or --resume DIR")
    if not checkpoints_enabled(config):
        raise ConfigError(f"--resume needs checkpoints: checkpoint.every > 0 (this config: every "
                          f"{config.checkpoint.every})")
    folder = Path(run_dir)
    path = folder / "run.h5"
    if not path.is_file():
        raise RunFileError(f"--resume: there is no run file {path}; nothing to resume (start without --resume)")
    attrs = _stored_attrs(path)
    diffs = config_differences(attrs["config"], config_to_dict(config))
    layout = [d for d in diffs if d.split(":")[0] in LAYOUT_KEYS]
    if layout:
        raise ConfigError(f"--resume: {'; '.join(layout)}: the ranks that train each policy may not change on "
                          f"resume ({path} was started with that layout; every rank's checkpoint belongs to it)")
    if diffs:
        shown = "; ".join(diffs[:5]) + (f"; and {len(diffs) - 5} more" if len(diffs) > 5 else "")
        raise ConfigError(f"--resume: the config differs from the one {path} was started with ({shown}); "
                          "only schedule.total_steps, schedule.time_limit_s, trainer.* (not the layout: "
                          "trainer.ranks_per_policy, trainer.actors_per_learner), server.*, checkpoint.* and "
                          "logging.* may change")
    if int(attrs.get("world_size", -1)) != world_size:
        raise ConfigError(f"--resume: {path} was run on {attrs.get('world_size')} ranks, this job has "
                          f"{world_size}; resume with the same mpiexec -n")
    generation = newest_complete(checkpoint_folder(folder), world_size)
    if generation is None:
        raise RunFileError(f"--resume: {checkpoint_folder(folder)} holds no checkpoint saved whole by all "
                           f"{world_size} ranks; nothing to resume from (start a new run)")
    try:
        state = read_checkpoint(checkpoint_path(checkpoint_folder(folder), generation, 0), generation=generation,
                                rank=0)
    except CheckpointError as exc:
        raise RunFileError(f"--resume: {exc}") from None
    sched = config.schedule
    generations = sched.generations()  # RunContext.generations
    published = {str(t.get("policy_id", r)): int(t["published"]) for r, t in state["trainers"].items()}
    done = (generation if config.schedule.mode == "sync" else min(published.values())) >= generations
    if done and attrs.get("finished") and "failure" not in attrs:
        raise RunFileError(f"--resume: {path} already finished all {generations} generations; nothing to "
                           "resume (raise --steps to extend it)")
    # Snapshots published after the checkpoint go (async: each policy's own last version counts).
    recorder = RunRecorder.reopen(path, state["row_counts"], generation if config.schedule.mode == "sync"
                                  else published)
    history = recorder.get_attr("resumes", []) or []
    history.append({"generation": generation, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "previous_failure": recorder.get_attr("failure")})
    recorder.set_attr("resumes", history)
    for stale in ("failure", "summary", "wall_time_s"):
        recorder.del_attr(stale)
    recorder.set_attr("finished", False)
    recorder.set_attr("config", config_to_dict(config))
    return recorder, path, generation, state


# ---- rank 0: boundary, state, restore -----------------------------------------------------------


def server_boundary(server: Server, final: bool) -> None:
    """Rank 0 at the close of a round: fresh baseline streams, then the checkpoint when due."""
    generation = server.generation
    server.baseline_policies = server.ctx.baseline_policies(
        generation_seed(server.ctx.rank_seed(0), generation, BASELINE_STREAM))
    checkpoints = server.checkpoints
    if checkpoints is not None and checkpoints.due(generation, final or generation >= server.ctx.generations):
        checkpoints.save(generation, server_state(server))
        server.after_checkpoint()


def server_state(server: Server) -> dict[str, Any]:
    """Everything rank 0 needs to continue after this boundary (pool weights stay in the run file)."""
    if server.eval_job is not None:
        raise RuntimeError("server: a checkpoint was asked for while an evaluation was being played")
    server.recorder.commit()  # the rows the checkpoint counts are in the file (pool.commit_window_s)
    return {
        "generation": server.generation,
        "elapsed_s": server.now(),
        "league": server.league.to_state(),
        "eval_queue": [plan.to_state() for plan in server.eval_queue],
        "trainers": {str(r): {"published": t.published, "env_steps": t.env_steps, "last_row": t.last_row,
                              "policy_id": t.policy_id}
                     for r, t in server.trainers.items()},
        "torch_rng": torch.get_rng_state(),
        "row_counts": {t: server.recorder.row_count(t) for t in TABLES},
        # evaluation.workers 'trainers': job counts continue (no job is out: the round was drained)
        "remote_jobs": server.remote.counts() if server.remote is not None else None,
    }


def restore_server(server: Server, state: dict[str, Any]) -> None:
    """Put rank 0 back where `server_state` left it; the caller then sends the next plan."""
    from collections import deque

    recorder = server.recorder
    server.league.load_state(state["league"], lambda key: recorder.read_weights(key.policy_id, key.version))
    pool = server.league.pool
    if server.league.retention is not None:  # weights dropped after this checkpoint (an older one resumed)
        for snap in pool.snapshots():
            if pool.latest(snap.key.policy_id).key != snap.key and \
                    not recorder.weights_stored(snap.key.policy_id, snap.key.version):
                pool.drop_weights(snap.key)
    server.eval_queue = deque(EvalPlan.from_state(p) for p in state["eval_queue"])
    server.eval_job = None
    server.generation = int(state["generation"])
    for r, t in state["trainers"].items():
        trainer = server.trainers[int(r)]
        trainer.published = int(t["published"])
        trainer.env_steps = int(t["env_steps"])
        trainer.last_row = dict(t["last_row"])
    torch.set_rng_state(state["torch_rng"])
    if server.remote is not None and state.get("remote_jobs"):
        jobs = state["remote_jobs"]
        server.remote.jobs_sent, server.remote.jobs_local = int(jobs["remote"]), int(jobs["local"])
        server.remote.sent_to.update({str(r): int(n) for r, n in jobs["per_rank"].items()})
    elapsed = float(state["elapsed_s"])
    server.start_time = time.monotonic() - elapsed  # `time` columns continue where they stopped
    server.limit_origin = elapsed  # schedule.time_limit_s counts from this start
    server.baseline_policies = server.ctx.baseline_policies(
        generation_seed(server.ctx.rank_seed(0), server.generation, BASELINE_STREAM))
    if server.checkpoints is not None:
        server.checkpoints.saved = server.generation
    if server.async_cut is not None and "async_cut" in state:
        server.async_cut.load_state(state["async_cut"])


# ---- rank 0: consistent cuts in the async schedule ------------------------------------------------


class AsyncCut:
    """Rank 0's side of a checkpoint in the async schedule, where trainers share no boundary.

    A checkpoint ("cut") must be consistent: rank 0's league and row counts must hold exactly what
    every trainer had sent when it saved its own state. So, every `checkpoint.every` generations per
    trainer on average (counted over all publishes), rank 0 begins cut c:

    1. the next request of each trainer (it comes right after the trainer's generation boundary) is
       answered "save cut c now" instead of with line-ups; the trainer cuts its matches (bootstrapped),
       saves its state and asks again, saying it saved c;
    2. rank 0 holds that request (the trainer waits, with heartbeats), and it knows that it has
       received every message the trainer sent before saving (MPI keeps one sender's order);
    3. once every trainer has saved c (or has finished every generation: rank 0 writes a small
       "finished" checkpoint for it), rank 0 finishes the evaluation it is playing, saves its own
       state last, and answers the held requests.

    So trainers wait for each other only at a cut, at most one generation of the slowest. A file
    of cut c is written by each rank itself, atomically; the loader takes the newest cut that every
    rank saved whole. When `schedule.time_limit_s` runs out, rank 0 (not the trainers) decides:
    every answer says stop, after a last cut.
    """

    def __init__(self, checkpoints: Checkpoints, every: int, num_trainers: int) -> None:
        self.checkpoints = checkpoints
        self.threshold = max(1, every * num_trainers)
        self.next_cut = 1
        self.published_since = 0
        self.pending: int | None = None
        self.saved_by: set[int] = set()
        self.held: list[tuple[Any, dict[str, Any]]] = []
        self.stopping = False

    def to_state(self) -> dict[str, Any]:
        """What a resumed rank 0 continues from."""
        return {"next_cut": self.next_cut}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue numbering cuts after the resumed one."""
        self.next_cut = int(state["next_cut"])

    def _begin(self) -> None:
        self.pending = self.next_cut
        self.next_cut += 1
        self.saved_by.clear()
        self.published_since = 0

    def holding(self, rank: int) -> bool:
        """Whether trainer `rank` waits for the cut to complete (it is not silent)."""
        return any(state.rank == rank for state, _ in self.held)

    def after_publish(self, server: Server) -> None:
        """Count publishes; begin a cut once enough have come (and every version 0 is in)."""
        self.published_since += 1
        if (self.pending is None and not self.stopping and self.published_since >= self.threshold
                and server.all_published()):
            self._begin()

    def hold(self, server: Server, state: Any, msg: dict[str, Any]) -> bool:
        """A request that says its trainer saved the pending cut: hold it (True) until the cut is whole."""
        if self.pending is None or msg.get("checkpoint_saved") != self.pending:
            return False
        self.saved_by.add(state.rank)
        self.held.append((state, msg))
        self._maybe_complete(server)
        return True

    def answer(self, server: Server, state: Any) -> dict[str, Any]:
        """Entries of rank 0's answer to a request: save the cut now, or stop (time limit); {} to play."""
        if not self.stopping and server.time_is_up():
            self.stopping = True
            if self.pending is None:
                self._begin()
        out: dict[str, Any] = {}
        if self.pending is not None and state.rank not in self.saved_by:
            out["checkpoint"] = self.pending
        if self.stopping:
            out["stop"] = True
        return out

    def on_done(self, server: Server, state: Any, msg: dict[str, Any]) -> None:
        """A trainer finished (its DONE may say it saved the pending cut first). When the last one has
        trained every generation, a final cut records that (a resume then finds nothing to do)."""
        if self.pending is not None and msg.get("checkpoint_saved") == self.pending:
            self.saved_by.add(state.rank)
        generations = server.ctx.generations
        if self.pending is None and all(t.done and t.published >= generations for t in server.trainers.values()):
            self._begin()
        self._maybe_complete(server)

    def _maybe_complete(self, server: Server) -> None:
        cut = self.pending
        if cut is None or not all(t.rank in self.saved_by or t.done for t in server.trainers.values()):
            return
        while server.eval_job is not None:  # rank 0 saves between evaluations, as in sync
            server.evaluate_step()
            if server.remote is not None:
                server.remote.poll()
            server.send_heartbeats(time.monotonic())
            server.check_failures()
        folder = self.checkpoints.folder
        for t in server.trainers.values():
            if t.rank not in self.saved_by:  # finished every generation before it could be asked
                tree = {"finished": True, "policy_id": t.policy_id, "generation": t.published,
                        "env_steps": t.env_steps}
                for rank in server.ctx.unit_of(t.rank).ranks:  # its group members and actors too
                    write_checkpoint(checkpoint_path(folder, cut, rank), tree, generation=cut, rank=rank)
                    prune(folder, rank, self.checkpoints.keep)
        state = server_state(server)
        state["async_cut"] = self.to_state()
        self.checkpoints.save(cut, state)  # last: the cut is whole once this file is
        server.after_checkpoint()
        self.pending = None
        held, self.held = self.held, []
        for trainer, msg in held:
            server.on_request(trainer, msg)


# ---- trainers: boundary, state, restore -----------------------------------------------------------


def trainer_boundary(trainer: Trainer, final: bool = False) -> None:
    """A trainer right after publishing version g: cut the matches, fresh baselines, checkpoint when due."""
    generation = trainer.version
    checkpoints = trainer.checkpoints
    if checkpoints is not None and checkpoints.async_mode:  # only the cuts rank 0 asks for
        cut = checkpoints.requested
        if cut is not None:
            _cut_matches(trainer)
            checkpoints.save(cut, trainer_state(trainer))
            checkpoints.requested, checkpoints.unacknowledged = None, cut
        return
    _cut_matches(trainer)
    if checkpoints is not None and checkpoints.due(generation, final or generation >= trainer.ctx.generations):
        checkpoints.save(generation, trainer_state(trainer))


def _cut_matches(trainer: Trainer) -> None:
    """End the running matches (bootstrapped) and start fresh baseline streams for this version."""
    for i, slot in enumerate(trainer.matches.slots):
        if slot is not None:
            trainer.matches.abandon(i, trainer.learner)
    trainer.baselines = trainer.ctx.baseline_policies(generation_seed(trainer.seed, trainer.version, BASELINE_STREAM))


_ROLLOUT_ARRAYS = ("obs", "critic_in", "mask", "action", "logp", "value", "reward", "next_value", "chain_break",
                   "next_index", "complete")


def trainer_state(trainer: Trainer) -> dict[str, Any]:
    """Everything a trainer needs to continue after its boundary (its opponents' weights come again
    from rank 0)."""
    learner = trainer.learner
    ro = learner.rollout
    n = ro.size
    rollout: dict[str, Any] = {name: getattr(ro, name)[:n].copy() for name in _ROLLOUT_ARRAYS
                               if getattr(ro, name) is not None}
    rollout.update(size=n, num_complete=ro.num_complete,
                   pending=[[stream[0], stream[1], index] for stream, index in ro.pending.items()])
    state: dict[str, Any] = {
        "generation": trainer.version,
        "policy_id": trainer.policy_id,
        "net": learner.net.state_dict(),
        "optimizer": learner.optimizer.state_dict(),
        "generator": learner.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "rollout": rollout,
        "counters": {
            "episode_counter": trainer._episode_counter,
            "episodes": trainer._episodes,
            "returns": list(trainer._returns),
            "lengths": list(trainer._lengths),
            "env_steps": trainer.matches.env_steps,
            "episodes_started": trainer.matches._episodes_started,
        },
    }
    if learner.value_norm is not None:
        vn = learner.value_norm
        state["value_norm"] = [vn.mean, vn.var, vn.count]
    if trainer.device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(trainer.device)
    state["kind"] = _kind_state(trainer)
    state["weights_crc"] = weights_checksum(learner.net)
    return state


def weights_checksum(net: torch.nn.Module) -> int:
    """crc32 of the network's flat float32 weights: saved beside them, so that a resume can check
    that it loaded what was saved and that a learner group's ranks saved the same weights."""
    from mpimarl.algos.networks import flat_weights

    return zlib.crc32(flat_weights(net).tobytes())


def restore_trainer(trainer: Trainer, state: dict[str, Any]) -> None:
    """Put a trainer back where `trainer_state` left it: it continues with the next plan."""
    if state["policy_id"] != trainer.policy_id:
        raise CheckpointError(f"the checkpoint of rank {trainer.rank} belongs to {state['policy_id']}, "
                              f"not {trainer.policy_id}")
    if state.get("finished"):  # async: rank 0 wrote it for a policy done with every generation
        trainer.version = trainer.generation = trainer.start_generation = int(state["generation"])
        trainer.matches.env_steps = int(state["env_steps"])
        _restore_finished(trainer, int(state["env_steps"]))
        trainer.restored = True
        return
    learner = trainer.learner
    learner.net.load_state_dict(state["net"])
    if "weights_crc" in state and weights_checksum(learner.net) != int(state["weights_crc"]):
        raise CheckpointError(f"the checkpoint of rank {trainer.rank}: the weights loaded do not match the "
                              "checksum saved with them")
    learner.weights_changed()  # the CPU acting copy of a GPU learner
    learner.optimizer.load_state_dict(state["optimizer"])
    learner.generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and trainer.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"], trainer.device)
    if "value_norm" in state and learner.value_norm is not None:
        learner.value_norm.mean, learner.value_norm.var, learner.value_norm.count = map(float, state["value_norm"])
    ro = learner.rollout
    saved = state["rollout"]
    n = int(saved["size"])
    if n > ro.capacity:
        ro.grow(n)
    for name in _ROLLOUT_ARRAYS:
        if getattr(ro, name) is not None:
            getattr(ro, name)[:n] = saved[name]
    ro.size = n
    ro.num_complete = int(saved["num_complete"])
    ro.pending = {(int(i), str(agent)): int(index) for i, agent, index in saved["pending"]}
    c = state["counters"]
    trainer._episode_counter = int(c["episode_counter"])
    trainer._episodes = int(c["episodes"])
    trainer._returns = [float(x) for x in c["returns"]]
    trainer._lengths = [int(x) for x in c["lengths"]]
    trainer.matches.env_steps = int(c["env_steps"])
    trainer.matches._episodes_started = int(c["episodes_started"])
    trainer._last_row_steps = trainer.matches.env_steps
    generation = int(state["generation"])
    trainer.version = generation
    trainer.last_published = generation  # the parent of its next snapshot (async pool.publish_every: an estimate)
    trainer.generation = generation
    trainer.start_generation = generation
    trainer.restored = True
    _restore_kind(trainer, state.get("kind", {}))
    trainer.baselines = trainer.ctx.baseline_policies(generation_seed(trainer.seed, generation, BASELINE_STREAM))
    if trainer.checkpoints is not None:
        trainer.checkpoints.saved = generation


# ---- what each kind of trainer rank adds (mpimarl/roles/group.py, mpimarl/roles/actor.py) ------------
#
# A learner group's member saves its own envs, rollout share and random streams like a plain trainer,
# plus the group's summed counters. An IMPALA learner saves the segments queued for its next batch and
# its per-actor counters; an actor saves its envs, unshipped transitions and random streams (its
# weights are not saved: every generation starts with the learner's weights broadcast to it).


def _kind_state(trainer: Trainer) -> dict[str, Any]:
    from mpimarl.roles.actor import ActorRank, ImpalaLearner
    from mpimarl.roles.group import GroupTrainer

    if isinstance(trainer, GroupTrainer):
        return {"kind": "group", "group_env_steps": trainer.group_env_steps, "group_episodes": trainer.group_episodes}
    if isinstance(trainer, ImpalaLearner):
        lr = trainer.learner
        return {
            "kind": "impala_learner", "version": lr.version, "last_lags": list(lr.last_lags),
            "last_rho_mean": lr.last_rho_mean, "last_env_steps": lr.last_env_steps,
            "queue": [{"data": s.data, "behaviour_version": s.behaviour_version, "complete_rows": s.complete_rows,
                       "env_steps": s.env_steps} for s in lr.queue],
            "actor_steps": trainer.actor_steps.copy(), "uncounted": trainer.uncounted.copy(),
            "actor_episodes": trainer.actor_episodes.copy(), "steps_learned": trainer.steps_learned,
            "sums": [trainer._return_sum, trainer._return_n, trainer._length_sum],
        }
    if isinstance(trainer, ActorRank):
        return {"kind": "actor", "policy_version": trainer.policy_version,
                "sent_with_version": trainer._sent_with_version}
    return {"kind": "trainer"}


def _restore_finished(trainer: Trainer, env_steps: int) -> None:
    """A rank of a policy that had finished every generation: the policy's step count, which its
    DONE reports again."""
    from mpimarl.roles.actor import ImpalaLearner
    from mpimarl.roles.group import GroupTrainer

    t: Any = trainer
    if isinstance(trainer, GroupTrainer):
        t.group_env_steps = env_steps
    elif isinstance(trainer, ImpalaLearner):
        t.steps_learned = env_steps


def _restore_kind(trainer: Trainer, saved: dict[str, Any]) -> None:
    expected = _kind_state(trainer)["kind"]
    if saved.get("kind", "trainer") != expected:
        raise CheckpointError(f"the checkpoint of rank {trainer.rank} was saved by a {saved.get('kind')} rank, "
                              f"this rank is a {expected} rank")
    t: Any = trainer
    if expected == "group":
        t.group_env_steps = int(saved["group_env_steps"])
        t.group_episodes = int(saved["group_episodes"])
        t._last_row_steps = t.group_env_steps
    elif expected == "impala_learner":
        from mpimarl.algos.impala import ReceivedSegment

        lr: Any = trainer.learner
        lr.version = int(saved["version"])
        lr.last_lags = [int(x) for x in saved["last_lags"]]
        lr.last_rho_mean = float(saved["last_rho_mean"])
        lr.last_env_steps = int(saved["last_env_steps"])
        lr.queue = [ReceivedSegment(np.asarray(q["data"], np.float32), int(q["behaviour_version"]),
                                    int(q["complete_rows"]), int(q["env_steps"])) for q in saved["queue"]]
        t.actor_steps[:] = saved["actor_steps"]
        t.uncounted[:] = saved["uncounted"]
        t.actor_episodes[:] = saved["actor_episodes"]
        t.steps_learned = int(saved["steps_learned"])
        t._return_sum, t._return_n, t._length_sum = float(saved["sums"][0]), int(saved["sums"][1]), \
            float(saved["sums"][2])
        t._last_row_steps = t.steps_learned
    elif expected == "actor":
        t.policy_version = int(saved["policy_version"])
        t._sent_with_version = int(saved["sent_with_version"])


def load_trainer_checkpoint(trainer: Trainer, run_dir: str | Path, generation: int) -> None:
    """Read this trainer's checkpoint of `generation` and restore it; CheckpointError naming the file."""
    path = checkpoint_path(checkpoint_folder(run_dir), generation, trainer.rank)
    restore_trainer(trainer, read_checkpoint(path, generation=generation, rank=trainer.rank))

