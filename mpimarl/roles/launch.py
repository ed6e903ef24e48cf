"""Starting a run on every rank, and ending the whole job when any rank fails.

Startup is checked collectively: every rank validates what it can (config, environment, world size;
rank 0 also the run folder), then all ranks compare notes. If any rank found a problem, the lowest
such rank prints one message and every rank exits with code 2, so a bad input never hangs `mpiexec`.
After startup, an exception on any rank ends the job with MPI_Abort (rank 0 first closes the run
file, so nothing recorded is lost).
"""

from __future__ import annotations

import signal
import sys
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from mpimarl import __version__
from mpimarl.config import RunConfig, config_to_dict, load_config
from mpimarl.errors import MpimarlError, PeerFailed
from mpimarl.roles import faults


class Interrupted(Exception):
    """SIGTERM or SIGINT arrived (e.g. a SLURM time limit or a user's Ctrl-C): exit code 143;
    or SIGUSR1 (slurm/*.sbatch forward it ahead of a time limit, then requeue the job): 138."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"received signal {signal.Signals(signum).name}")
        self.exit_code = EXIT_CODES.get(signum, 128 + signum)


EXIT_CODES = {signal.SIGTERM: 143, signal.SIGINT: 143, signal.SIGUSR1: 138}
"""Exit code of a rank stopped by each signal it handles: 128 + the signal number, except that
Ctrl-C reads like SIGTERM. SIGUSR1's own code (138) tells a batch script that the run stopped on
request (time limit ahead, preemption) and can be requeued and resumed."""


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
          seed: int | None, progress: str = "auto") -> int:
    """Entry point of `mpimarl train` on every rank; returns the process exit code."""
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
    if rank != 0:
        from mpimarl.roles.trainer import select_device

        try:
            select_device(local_rank, ctx.config.trainer.device)
        except MpimarlError as exc:
            error = exc
    _agree(comm, error)

    # Rank 0 creates the run folder and file; everyone learns whether that worked.
    recorder = None
    path = None
    if rank == 0:
        try:
            recorder, path = _create_recorder(ctx, comm, run_dir)
        except MpimarlError as exc:
            error = exc
    else:
        comm.gather(MPI.Get_processor_name(), root=0)
    _agree(comm, error)

    for signum in EXIT_CODES:
        signal.signal(signum, _raise_interrupted)
    plan_comm = comm.Dup()
    try:
        if rank == 0:
            assert recorder is not None and path is not None
            return _serve(ctx, comm, plan_comm, recorder, path, progress)
        from mpimarl.roles.trainer import Trainer

        Trainer(ctx, comm, plan_comm, local_rank).run()
        return 0
    except BaseException as exc:  # noqa: BLE001 - any failure must end the whole job
        for signum in EXIT_CODES:  # already ending: a repeated signal must not cut the clean-up short
            signal.signal(signum, signal.SIG_IGN)
        code = getattr(exc, "exit_code", 1)
        if isinstance(exc, (MpimarlError, Interrupted, PeerFailed)):
            print(f"mpimarl: rank {rank}: {exc}", file=sys.stderr, flush=True)
        else:
            print(f"mpimarl: rank {rank} failed; ending the job:", file=sys.stderr)
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
        "roles": {r: [ctx.policy_id(k) for k in range(1, comm.Get_size()) if ctx.trainer_role(k) == r]
                  for r in cfg.role_names},
        "env_api": ctx.spec.api,
        "mpi_library": MPI.Get_library_version().splitlines()[0].strip(),
        "finished": False,
    }
    recorder = RunRecorder(path, attrs)
    return recorder, path


def _serve(ctx: Any, comm: Any, plan_comm: Any, recorder: Any, path: Path, progress_mode: str) -> int:
    from mpimarl.roles.progress import Progress
    from mpimarl.roles.server import Server

    cfg = ctx.config
    print(f"mpimarl {__version__}: {cfg.name} on {comm.Get_size()} ranks "
          f"({ctx.num_trainers} trainers: {', '.join(ctx.policy_id(r) for r in range(1, comm.Get_size()))}); "
          f"{cfg.schedule.mode} schedule, matchmaking {cfg.matchmaking.strategy}; run file {path}", flush=True)
    bar = {"auto": None, "bar": True, "lines": False}[progress_mode]
    progress = Progress(cfg.schedule.total_steps * ctx.num_trainers, cfg.server.progress_interval_s, bar=bar)
    server = Server(ctx, comm, plan_comm, recorder, progress)
    started = time.monotonic()
    summary = server.run()
    faults.reached("end")
    recorder.set_attr("summary", summary)
    recorder.set_attr("wall_time_s", time.monotonic() - started)
    recorder.set_attr("finished", True)
    recorder.close()
    _print_summary(path)
    return 0


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
