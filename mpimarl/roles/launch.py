"""Starting a run on every rank, and ending the whole job when any rank fails.

Startup is checked collectively: every rank validates what it can (config, environment, world size;
rank 0 also the run folder), then all ranks compare notes. If any rank found a problem, the lowest
such rank prints one message and every rank exits with code 2, so a bad input never hangs `mpiexec`.
After startup, an exception on any rank ends the job with MPI_Abort (rank 0 first closes the run
file, so nothing recorded is lost).
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from mpimarl import __version__
from mpimarl.config import RunConfig, config_to_dict, load_config
from mpimarl.errors import EXIT_CODES, ConfigError, Interrupted, MpimarlError, PeerFailed
from mpimarl.roles import faults


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


def _tell_server(comm: Any, rank: int, exc: BaseException) -> None:
    """Let rank 0 record the failure and close the run file before the job is aborted.

    The message is tiny (sent eagerly); then wait briefly for the server's own abort, which also
    ends this rank. If the server does not react, this rank aborts the job itself.
    """
    from mpimarl.comm.channel import SERVER_RANK, Tag, send_json

    try:
        report = {"rank": rank, "error": f"{type(exc).__name__}: {exc}", "code": getattr(exc, "exit_code", 1)}
        send_json(comm, report, SERVER_RANK, Tag.FAILED)
        time.sleep(2.0)
    except Exception:  # noqa: BLE001 - already failing; the abort below ends the job regardless
        pass


def default_run_dir(config: RunConfig) -> Path:
    """runs/<name>-<UTC time> (a new folder per run)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return Path("runs") / f"{config.name}-{stamp}"


def _agree(comm: Any, error: BaseException | None) -> None:
    """Collective check: if any rank has an error, the lowest such rank prints it and all exit 2."""
    failed = comm.allgather(error is not None)
    if any(failed):
        if comm.Get_rank() == failed.index(True) and error is not None:
            print(f"mpimarl: error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)


def train(config_path: str, overrides: list[str], run_dir: str | None, steps: int | None,
          seed: int | None, progress: str = "auto", resume: bool | str = False,
          stop_after_generation: int | None = None) -> int:
    """Entry point of `mpimarl train` on every rank; returns the process exit code.

    `resume`: True (continue the run in `run_dir`) or the run's folder; see `_resume_folder` for
    when a run is resumed without being asked. `stop_after_generation`: a testing aid that ends the
    job as a SIGTERM would, once every trainer has passed generation K's checkpoint.
    """
    from mpi4py import MPI

    from mpimarl.roles.context import RunContext

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    ctx: RunContext | None = None
    error: BaseException | None = None
    try:
        config = load_config(config_path, overrides, steps=steps, seed=seed)
        ctx = RunContext.build(config, comm.Get_size())
        faults.arm(rank, comm.Get_size())  # test-only MPIMARL_FAULT
    except MpimarlError as exc:
        error = exc
    _agree(comm, error)
    assert ctx is not None

    # Node-local rank (collective, so every rank takes part): trainers pick their GPU from it, and
    # a trainer asked for CUDA on a node without it says so before any file is created.
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    local_rank = local.Get_rank()
    local.Free()
    if rank != 0 and not ctx.is_actor(rank):  # IMPALA actors always run on the CPU
        from mpimarl.roles.trainer import select_device

        try:
            select_device(local_rank, ctx.config.trainer.device)
        except MpimarlError as exc:
            error = exc
    _agree(comm, error)

    # Rank 0 creates the run folder and file (or, resuming, reopens them); everyone learns whether
    # that worked, then the folder and the checkpoint generation resumed from.
    from mpimarl.comm.channel import bcast_json

    recorder = None
    path = None
    start: dict[str, Any] = {"run_dir": None, "generation": None}
    server_state: dict[str, Any] | None = None
    if rank == 0:
        try:
            folder = _resume_folder(resume, run_dir)
        except MpimarlError as exc:
            error, folder = exc, None
            comm.gather(MPI.Get_processor_name(), root=0)  # the trainers wait in the hosts gather
    if rank == 0 and error is None:
        try:
            if folder is not None:
                recorder, path, generation, server_state = _reopen_recorder(ctx, comm, folder)
                start = {"run_dir": str(path.parent.resolve()), "generation": generation}
            else:
                recorder, path = _create_recorder(ctx, comm, run_dir)
                start = {"run_dir": str(path.parent.resolve()), "generation": None}
        except MpimarlError as exc:
            error = exc
    elif rank != 0:
        comm.gather(MPI.Get_processor_name(), root=0)
    _agree(comm, error)
    start = bcast_json(comm, start if rank == 0 else None, 0, None)
    plan_comm = comm.Dup()
    from mpimarl.comm.group import split_groups

    group = split_groups(comm, ctx)  # collective: a communicator per data-parallel learner group
    actor_link, plan_comm = _split_for_actors(comm, ctx, plan_comm)

    # Trainers are built (and restored from their checkpoint) before any work, so a missing or
    # damaged checkpoint file is a start-up error too.
    trainer = None
    if rank != 0:
        try:
            trainer = _build_trainer(ctx, comm, plan_comm, local_rank, group, start, actor_link)
        except Exception as exc:  # noqa: BLE001 - reported collectively, exit 2 on every rank
            error = exc
    _agree(comm, error)

    for signum in EXIT_CODES:
        signal.signal(signum, _raise_interrupted)
    try:
        if rank == 0:
            assert recorder is not None and path is not None
            return _serve(ctx, comm, plan_comm, recorder, path, progress, server_state, stop_after_generation)
        assert trainer is not None
        trainer.run()
        return 0
    except BaseException as exc:  # noqa: BLE001 - any failure must end the whole job
        for signum in EXIT_CODES:  # already ending: a repeated signal must not cut the clean-up short
            signal.signal(signum, signal.SIG_IGN)
        code = getattr(exc, "exit_code", 1)
        if isinstance(exc, (MpimarlError, Interrupted, PeerFailed)):
            print(f"mpimarl: rank {rank}: {exc}", file=sys.stderr, flush=True)
        else:
            # The one-line cause first: an abort elsewhere can cut the traceback short.
            print(f"mpimarl: rank {rank} failed ({type(exc).__name__}: {exc}); ending the job:",
                  file=sys.stderr, flush=True)
            traceback.print_exc()
            sys.stderr.flush()
        if recorder is not None:
            _close_after_failure(recorder, exc)
        elif rank != 0 and not isinstance(exc, PeerFailed):
            _tell_server(comm, rank, exc)
        comm.Abort(code)
        return code


def _create_recorder(ctx: Any, comm: Any, run_dir: str | None) -> tuple[Any, Path]:
    from mpi4py import MPI

    from mpimarl.record.recorder import RunRecorder

    hosts = comm.gather(MPI.Get_processor_name(), root=0)
    folder = Path(run_dir) if run_dir else default_run_dir(ctx.config)
    path = folder / "run.h5"
    cfg = ctx.config
    attrs = {
        "config": config_to_dict(cfg),
        "name": cfg.name,
        "world_size": comm.Get_size(),
        "hosts": hosts,
        "seed": cfg.seed,
        "rank_seeds": [ctx.rank_seed(r) for r in range(comm.Get_size())],
        "roles": {r: [u.policy_id for u in ctx.units if u.role == r] for r in cfg.role_names},
        "policy_ranks": {u.policy_id: list(u.ranks) for u in ctx.units},
        "exploiters": ctx.exploiter_ids(),
        "env_api": ctx.spec.api,
        "mpi_library": MPI.Get_library_version().splitlines()[0].strip(),
        "finished": False,
    }
    recorder = RunRecorder(path, attrs)
    return recorder, path


def _resume_folder(resume: bool | str, run_dir: str | None) -> str | None:
    """The run folder to resume, or None to start a new run.

    The rule: a run is resumed when `--resume` is given (with `--run-dir DIR` or as `--resume DIR`),
    or when the job is a SLURM requeue (SLURM_RESTART_COUNT > 0) and `--run-dir DIR` already holds
    a run file. Otherwise an existing run file stays an error, so a finished run is never continued
    by accident.
    """
    if isinstance(resume, str) and resume:
        if run_dir is not None and Path(run_dir).resolve() != Path(resume).resolve():
            raise ConfigError(f"--resume {resume} and --run-dir {run_dir} name different folders")
        return resume
    if resume:
        if run_dir is None:
            raise ConfigError("--resume needs the run's folder: --run-dir DIR --resume, or --resume DIR")
        return run_dir
    restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
    if run_dir is not None and restarts.isdigit() and int(restarts) > 0 and (Path(run_dir) / "run.h5").exists():
        print(f"mpimarl: SLURM requeue (SLURM_RESTART_COUNT={restarts}): resuming {run_dir}", flush=True)
        return run_dir
    return None


def _reopen_recorder(ctx: Any, comm: Any, folder: str) -> tuple[Any, Path, int, dict[str, Any]]:
    from mpi4py import MPI

    from mpimarl.roles.resume import open_for_resume

    hosts = comm.gather(MPI.Get_processor_name(), root=0)
    recorder, path, generation, state = open_for_resume(ctx.config, comm.Get_size(), folder)
    history = recorder.get_attr("resumes")
    history[-1]["hosts"] = hosts
    recorder.set_attr("resumes", history)
    return recorder, path, generation, state


def _split_for_actors(comm: Any, ctx: Any, plan_comm: Any) -> tuple[Any, Any]:
    """Collective: IMPALA actors (trainer.actors_per_learner) get a communicator per learner and its
    actors, and take no part in rank 0's plan broadcasts (their learner forwards what they need).
    Returns (this rank's ActorLink or None, the plan communicator, COMM_NULL on actors)."""
    from mpi4py import MPI

    from mpimarl.comm.segments import split_actor_units

    link = split_actor_units(comm, ctx)
    if any(u.actors for u in ctx.units):
        rank = comm.Get_rank()
        plan_comm.Free()
        plan_comm = comm.Split(MPI.UNDEFINED if ctx.is_actor(rank) else 0, rank)
    return link, plan_comm


def _build_trainer(ctx: Any, comm: Any, plan_comm: Any, local_rank: int, group: Any, start: dict[str, Any],
                   actor_link: Any = None) -> Any:
    from mpimarl.roles.resume import Checkpoints, checkpoints_enabled, load_trainer_checkpoint, trainer_boundary

    if actor_link is not None:  # a learner fed by actors, or an actor (mpimarl/roles/actor.py)
        from mpimarl.roles.actor import make_unit_rank

        trainer = make_unit_rank(ctx, comm, plan_comm, local_rank, actor_link)
    else:
        from mpimarl.roles.group import make_trainer

        trainer = make_trainer(ctx, comm, plan_comm, local_rank, group)
    if checkpoints_enabled(ctx.config):
        trainer.checkpoints = Checkpoints(start["run_dir"], ctx.config, trainer.rank,
                                          boundary=lambda final: trainer_boundary(trainer, final))
    if start["generation"] is not None:
        load_trainer_checkpoint(trainer, start["run_dir"], int(start["generation"]))
    return trainer


def _serve(ctx: Any, comm: Any, plan_comm: Any, recorder: Any, path: Path, progress_mode: str,
           server_state: dict[str, Any] | None = None, stop_after_generation: int | None = None) -> int:
    from mpimarl.roles.progress import Progress
    from mpimarl.roles.resume import AsyncCut, Checkpoints, checkpoints_enabled, restore_server, server_boundary
    from mpimarl.roles.server import Server

    cfg = ctx.config
    print(f"mpimarl {__version__}: {cfg.name} on {comm.Get_size()} ranks "
          f"({ctx.num_trainers} trainers: {', '.join(_unit_text(u) for u in ctx.units)}); "
          f"{cfg.schedule.mode} schedule, matchmaking {cfg.matchmaking.strategy}; run file {path}", flush=True)
    bar = {"auto": None, "bar": True, "lines": False}[progress_mode]
    progress = Progress(cfg.schedule.total_steps * ctx.num_policies, cfg.server.progress_interval_s, bar=bar)
    server = Server(ctx, comm, plan_comm, recorder, progress)
    server.stop_after_generation = stop_after_generation
    if checkpoints_enabled(cfg):
        server.checkpoints = Checkpoints(path.parent, cfg, 0, boundary=lambda final: server_boundary(server, final))
        if cfg.schedule.mode == "async":
            server.async_cut = AsyncCut(server.checkpoints, cfg.checkpoint.every, len(server.trainers))
    if server_state is not None:
        restore_server(server, server_state)
        if cfg.schedule.mode == "sync":
            print(f"mpimarl: resumed from the checkpoint of generation {server.generation}", flush=True)
            server.next_plan(time_up=False)
        else:
            print(f"mpimarl: resumed from async checkpoint {server.async_cut.next_cut - 1}", flush=True)
    started = time.monotonic()
    summary = server.run()
    faults.reached("end")
    recorder.set_attr("summary", summary)
    recorder.set_attr("wall_time_s", time.monotonic() - started)
    recorder.set_attr("finished", True)
    recorder.close()
    _print_summary(path)
    return 0


def _unit_text(unit: Any) -> str:
    """'player-0' for one rank, 'player-0 (ranks 1-2)' for a learner group, 'player-0 (learner 1,
    actors 2-3)' for a learner with IMPALA actors."""
    if unit.actors:
        return f"{unit.policy_id} (learner {unit.leader}, actors {unit.actors[0]}-{unit.actors[-1]})"
    ranks = unit.ranks
    return unit.policy_id if len(ranks) == 1 else f"{unit.policy_id} (ranks {ranks[0]}-{ranks[-1]})"


def _close_after_failure(recorder: Any, exc: BaseException) -> None:
    try:
        recorder.set_attr("failure", f"{type(exc).__name__}: {exc}")
        recorder.close()
    except Exception:  # noqa: BLE001 - the job is ending; the file's rows are already flushed
        pass


def _print_summary(path: Path) -> None:
    """Read the run back with pandas (as a user would) and print one line per policy."""
    from mpimarl.analysis import load_run, summary_text

    print("\n" + summary_text(load_run(path)), flush=True)
