"""Errors that name a problem in the user's input. The CLI prints them without a traceback and
exits with code 2; anything else is a bug and exits with code 1."""

from __future__ import annotations


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
