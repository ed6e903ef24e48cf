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
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

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


class JobHooks(Protocol):
    """What a job other than plain training (an exploit job, mpimarl/exploit.py) adds to `run_job`."""

    def run_dir(self) -> str:
        """Rank 0: the folder of the job's run file (asked when `run_job` is given none)."""
        ...

    def attrs(self) -> dict[str, Any]:
        """Extra file attributes of the job's run file."""
        ...

    def prepare(self, server: Any) -> None:
        """Rank 0, before serving: e.g. put fixed snapshots into the server's league."""
        ...

    def finish(self, path: Path) -> None:
        """Rank 0, after the run file is closed (every trainer is done): e.g. a held-out evaluation."""
        ...


def train(config_path: str, overrides: list[str], run_dir: str | None, steps: int | None,
          seed: int | None, progress: str = "auto", resume: bool | str = False,
          stop_after_generation: int | None = None) -> int:
    """Entry point of `mpimarl train` on every rank; returns the process exit code.

    `resume`: True (continue the run in `run_dir`) or the run's folder; see `_resume_folder` for
    when a run is resumed without being asked. `stop_after_generation`: a testing aid that ends the
    job as a SIGTERM would, once every trainer has passed generation K's checkpoint.
    """
    from mpimarl.roles.context import RunContext

    def build(world_size: int) -> RunContext:
        return RunContext.build(load_config(config_path, overrides, steps=steps, seed=seed), world_size)

    return run_job(build, run_dir, progress, resume, stop_after_generation)


def run_job(build: Callable[[int], Any], run_dir: str | None, progress: str = "auto",
            resume: bool | str = False, stop_after_generation: int | None = None,
            hooks: JobHooks | None = None) -> int:
    """Run a job on every rank (rank 0 serves, the others train); returns the process exit code.

    `build(world_size)` makes the job's RunContext on every rank (an MpimarlError from it is a
    start-up error: one message, exit 2 everywhere); `hooks` add to what rank 0 does.
    """
    from mpi4py import MPI

    from mpimarl.roles.context import RunContext

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    ctx: RunContext | None = None
    error: BaseException | None = None
    folder: str | None = None
    # Everything that can be checked without torch comes first (mpimarl/algos/shapes.py): a bad
    # config, environment, world size or resume request ends the job before any rank imports it.
    try:
        ctx = build(comm.Get_size())
        _check_extras(ctx.config)
        faults.arm(rank, comm.Get_size())  # test-only MPIMARL_FAULT
        if rank == 0:
            folder = _resume_folder(resume, run_dir)
            if folder is None and run_dir is not None:
                from mpimarl.record.recorder import refuse_existing

                refuse_existing(Path(run_dir) / "run.h5")
    except MpimarlError as exc:
        error = exc
    _agree(comm, error)
    assert ctx is not None

    # Devices (collective, so every rank takes part): each node deals its GPUs among its learner
    # ranks (mpimarl/devices.py); a bad device setting is reported before any file is created.
    device, local_rank, error = _deal_devices(comm, ctx)
    _agree(comm, error)
    import torch

    from mpimarl.devices import apply_device, describe_rank

    apply_device(device)  # the current CUDA device, before anything touches CUDA
    if rank != 0:
        torch.set_num_threads(ctx.config.trainer.torch_threads)  # as the trainer does, so it is recorded
    mpi_library = MPI.Get_library_version().splitlines()[0].strip()
    me = describe_rank(device, mpi_library, MPI.Get_processor_name(), local_rank)

    # Rank 0 creates the run folder and file (or, resuming, reopens them); everyone learns whether
    # that worked, then the folder and the checkpoint generation resumed from.
    from mpimarl.comm.channel import bcast_json

    recorder = None
    path = None
    start: dict[str, Any] = {"run_dir": None, "generation": None}
    server_state: dict[str, Any] | None = None
    if rank == 0:
        try:
            if folder is not None:
                recorder, path, generation, server_state = _reopen_recorder(ctx, comm, folder, me)
                start = {"run_dir": str(path.parent.resolve()), "generation": generation}
            else:
                if run_dir is None and hooks is not None:
                    run_dir = hooks.run_dir()
                recorder, path = _create_recorder(ctx, comm, run_dir, me, hooks.attrs() if hooks else None)
                start = {"run_dir": str(path.parent.resolve()), "generation": None}
            _attach_views(ctx.config, recorder, path, resumed=folder is not None)
        except MpimarlError as exc:
            error = exc
    else:
        comm.gather(me, root=0)
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
            trainer = _build_trainer(ctx, comm, plan_comm, device, group, start, actor_link)
        except Exception as exc:  # noqa: BLE001 - reported collectively, exit 2 on every rank
            error = exc
    _agree(comm, error)

    for signum in EXIT_CODES:
        signal.signal(signum, _raise_interrupted)
    try:
        if rank == 0:
            assert recorder is not None and path is not None
            return _serve(ctx, comm, plan_comm, recorder, path, progress, server_state, stop_after_generation,
                          hooks)
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


def _deal_devices(comm: Any, ctx: Any) -> tuple[str, int, BaseException | None]:
    """This rank's device string, dealt per node (mpimarl/devices.py), its node-local rank, and the
    start-up error, if any: a device setting the node cannot meet, or a learner group whose ranks
    mix CPU and CUDA. Also switches on trainer.deterministic before any CUDA work. Collective."""
    import torch
    from mpi4py import MPI

    from mpimarl.devices import NodeRank, check_groups_uniform, deal_devices, set_determinism

    trainer = ctx.config.trainer
    rank = comm.Get_rank()
    set_determinism(trainer.deterministic)
    learns = rank != 0 and not ctx.is_actor(rank)  # rank 0 and IMPALA actors always run on the CPU
    gpus = torch.cuda.device_count() if trainer.device != "cpu" else 0
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    node = local.allgather([learns, gpus, os.environ.get("CUDA_VISIBLE_DEVICES")])
    local_rank = local.Get_rank()
    local.Free()
    device, error = "cpu", None
    try:
        dealt = deal_devices([NodeRank(bool(a), int(b), c) for a, b, c in node], trainer.device,
                             trainer.gpu_oversubscription)
        device = dealt.devices[local_rank]
        if dealt.warning is not None and local_rank == 0:
            print(f"mpimarl: warning: on {MPI.Get_processor_name()}: {dealt.warning}", file=sys.stderr, flush=True)
    except MpimarlError as exc:
        error = exc
    devices = comm.allgather(device)
    if error is None:
        try:
            check_groups_uniform([u.learners for u in ctx.units if len(u.learners) > 1], devices)
        except MpimarlError as exc:
            error = exc
    return device, local_rank, error


def _check_extras(config: RunConfig) -> None:
    """ConfigError when the config asks for an optional extra that is not installed (before any file)."""
    if config.logging.tensorboard:
        from mpimarl.record.tensorboard import require_tensorboard

        require_tensorboard()


def _attach_views(config: RunConfig, recorder: Any, path: Path, resumed: bool) -> None:
    """Rank 0: the live views of the run file the config asks for (logging.tensorboard)."""
    if config.logging.tensorboard:
        from mpimarl.record.tensorboard import attach_live_view

        attach_live_view(recorder, path.parent / config.logging.tensorboard_dir, resumed)


def _create_recorder(ctx: Any, comm: Any, run_dir: str | None, me: dict[str, Any],
                     extra: dict[str, Any] | None = None) -> tuple[Any, Path]:
    from mpi4py import MPI

    from mpimarl.record.recorder import RunRecorder

    ranks = comm.gather(me, root=0)
    hosts = [r["host"] for r in ranks]
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
        "ranks": ranks,
        "finished": False,
        **(extra or {}),
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


def _reopen_recorder(ctx: Any, comm: Any, folder: str, me: dict[str, Any]) -> tuple[Any, Path, int, dict[str, Any]]:
    from mpimarl.roles.resume import open_for_resume

    ranks = comm.gather(me, root=0)
    recorder, path, generation, state = open_for_resume(ctx.config, comm.Get_size(), folder)
    history = recorder.get_attr("resumes")
    history[-1]["hosts"] = [r["host"] for r in ranks]
    history[-1]["ranks"] = ranks
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


def _build_trainer(ctx: Any, comm: Any, plan_comm: Any, device: str, group: Any, start: dict[str, Any],
                   actor_link: Any = None) -> Any:
    from mpimarl.roles.resume import (
        Checkpoints,
        checkpoints_enabled,
        load_trainer_checkpoint,
        trainer_boundary,
        weights_checksum,
    )

    if actor_link is not None:  # a learner fed by actors, or an actor (mpimarl/roles/actor.py)
        from mpimarl.roles.actor import make_unit_rank

        trainer = make_unit_rank(ctx, comm, plan_comm, device, actor_link)
    else:
        from mpimarl.roles.group import make_trainer

        trainer = make_trainer(ctx, comm, plan_comm, device, group)
    if checkpoints_enabled(ctx.config):
        trainer.checkpoints = Checkpoints(start["run_dir"], ctx.config, trainer.rank,
                                          boundary=lambda final: trainer_boundary(trainer, final),
                                          checksum=lambda: weights_checksum(trainer.learner.net))
    if start["generation"] is not None:
        load_trainer_checkpoint(trainer, start["run_dir"], int(start["generation"]))
    return trainer


def _serve(ctx: Any, comm: Any, plan_comm: Any, recorder: Any, path: Path, progress_mode: str,
           server_state: dict[str, Any] | None = None, stop_after_generation: int | None = None,
           hooks: JobHooks | None = None) -> int:
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
    if hooks is not None:
        hooks.prepare(server)
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
    if hooks is not None:
        hooks.finish(path)
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
