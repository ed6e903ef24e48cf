"""Errors that name a problem in the user's input. The CLI prints them without a traceback and
exits with code 2; anything else is a bug and exits with code 1. Also the exceptions that end a
job on every rank: a peer's failure and a stop signal (`Interrupted`)."""

from __future__ import annotations

import signal


class MpimarlError(Exception):
    """Base class for every error caused by user input (config, environment, world size, file)."""

    exit_code = 2


class ConfigError(MpimarlError):
    """A config file, override or value is invalid."""


class EnvironmentSpecError(MpimarlError):
    """The environment named in the config cannot be built or does not fit the config's roles."""


class WorldSizeError(MpimarlError):
    """The MPI world size cannot run this config (e.g. one rank, or fewer trainers than roles)."""


class RunFileError(MpimarlError):
    """A run file is missing, unreadable, truncated or was written by an incompatible schema."""


class WeightsDropped(RunFileError, KeyError):
    """A snapshot's weights were dropped by the retention policy (``pool.keep*``): only its metadata
    and ratings remain. The message names the snapshot and the setting."""

    def __str__(self) -> str:
        # KeyError would print the message with quotes around it.
        return str(self.args[0]) if self.args else ""


class ProtocolError(RuntimeError):
    """A rank received a message it did not expect; this is a bug, not a user error."""


class PeerFailed(RuntimeError):
    """Another rank reported a failure; rank 0 ends the job (with that rank's exit code) after
    closing the run file."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Interrupted(BaseException):  # like KeyboardInterrupt: no `except Exception` may swallow a stop
    """SIGTERM or SIGINT arrived (e.g. a SLURM time limit or a user's Ctrl-C): exit code 143;
    or SIGUSR1 (slurm/*.sbatch forward it ahead of a time limit, then requeue the job): 138."""

    def __init__(self, signum: int, message: str | None = None) -> None:
        super().__init__(message or f"received signal {signal.Signals(signum).name}")
        self.exit_code = EXIT_CODES.get(signum, 128 + signum)


EXIT_CODES = {signal.SIGTERM: 143, signal.SIGINT: 143, signal.SIGUSR1: 138}
"""Exit code of a rank stopped by each signal it handles: 128 + the signal number, except that
Ctrl-C reads like SIGTERM. SIGUSR1's own code (138) tells a batch script that the run stopped on
request (time limit ahead, preemption) and can be requeued and resumed."""
