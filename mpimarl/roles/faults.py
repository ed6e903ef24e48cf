"""Test-only fault injection: ``MPIMARL_FAULT=RANK:PHASE:KIND`` makes one rank fail at one point.

The failure tests (tests/roles/test_failures_mpi.py) use it to fail a real rank at a chosen moment
of a real run; users never set it. It is read here only, once per process, by :func:`arm` at
start-up (a malformed value is a start-up error, exit code 2). The server and the trainers call
:func:`reached` at each phase; it does nothing unless this rank's fault is armed for that phase.

- RANK: a rank number, or ``last`` for the highest rank.
- PHASE: ``startup`` (the run has begun: rank 0 has created the run file, trainers have not yet
  published), ``training`` (a trainer's first PPO update; rank 0's first train row), ``evaluation``
  (rank 0's first evaluation match; a trainer waiting for its second generation's line-ups, while
  rank 0 evaluates and plans), ``end`` (a trainer has reported DONE; rank 0 has served everything
  and is about to close the run file).
- KIND: ``raise`` (an exception), ``exit`` (the process ends at once with code 3 and no MPI
  clean-up, as a crash would), ``hang`` (the rank stays alive but silent: only the server's
  watchdog, ``server.timeout_s``, can notice), ``slow`` (no failure: the rank sleeps 3 s, or
  ``RANK:PHASE:slow:SECONDS``, each time it reaches the phase, e.g. after every PPO update: alive
  and talking, but slow, so that the other trainers wait at the sync barrier for it).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass

from mpimarl.errors import ConfigError

ENV_VAR = "MPIMARL_FAULT"
PHASES = ("startup", "training", "evaluation", "end")
KINDS = ("raise", "exit", "hang", "slow")
SLOW_S = 3.0
"""How long a ``slow`` rank sleeps each time it reaches its phase, unless the spec says
(``RANK:PHASE:slow:SECONDS``)."""


class InjectedFault(RuntimeError):
    """The exception a ``raise`` fault throws."""


@dataclass(frozen=True)
class Fault:
    """One planned failure: which rank, at which phase, of which kind."""

    rank: int
    phase: str
    kind: str
    seconds: float = SLOW_S


def parse_fault(spec: str, world_size: int) -> Fault:
    """``RANK:PHASE:KIND`` -> Fault; ConfigError naming the variable and the allowed values."""
    parts = spec.split(":")
    seconds = SLOW_S
    if len(parts) == 4 and parts[2] == "slow":
        try:
            seconds = float(parts.pop())
        except ValueError:
            raise ConfigError(f"{ENV_VAR}={spec!r}: the slow seconds must be a number") from None
    if len(parts) != 3:
        raise ConfigError(f"{ENV_VAR}={spec!r} must be RANK:PHASE:KIND, e.g. 1:training:raise")
    rank_text, phase, kind = parts
    if rank_text == "last":
        rank = world_size - 1
    elif rank_text.isdigit() and int(rank_text) < world_size:
        rank = int(rank_text)
    else:
        raise ConfigError(f"{ENV_VAR}: rank {rank_text!r} is not 'last' or a rank below {world_size}")
    if phase not in PHASES:
        raise ConfigError(f"{ENV_VAR}: phase {phase!r} is not one of {', '.join(PHASES)}")
    if kind not in KINDS:
        raise ConfigError(f"{ENV_VAR}: kind {kind!r} is not one of {', '.join(KINDS)}")
    return Fault(rank, phase, kind, seconds)


_armed: Fault | None = None  # this process's fault, set once by arm(); test-only


def arm(rank: int, world_size: int, environ: Mapping[str, str] = os.environ) -> None:
    """Read ``MPIMARL_FAULT`` and keep the fault if it is this rank's (call once at start-up)."""
    global _armed
    spec = environ.get(ENV_VAR, "")
    fault = parse_fault(spec, world_size) if spec else None
    _armed = fault if fault is not None and fault.rank == rank else None


def reached(phase: str) -> None:
    """This rank reached `phase`: fail now if its armed fault says so (once)."""
    global _armed
    fault = _armed
    if fault is None or fault.phase != phase:
        return
    if fault.kind == "slow":
        time.sleep(fault.seconds)
        return
    _armed = None
    # The wall-clock time lets a test measure how long the job takes to end after the fault.
    print(f"mpimarl: rank {fault.rank}: injecting fault '{fault.kind}' in phase {phase} at {time.time():.3f}",
          file=sys.stderr, flush=True)
    if fault.kind == "raise":
        raise InjectedFault(f"injected fault at rank {fault.rank} in phase {phase}")
    if fault.kind == "exit":
        os._exit(3)
    while True:  # hang: alive, silent; a signal still ends it
        time.sleep(1.0)
