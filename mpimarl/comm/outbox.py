"""Rank 0's weight sends in flight.

A blocking `Send` of a large buffer waits until the receiver posts its receive (MPI's rendezvous
protocol); with many trainers, a slow or descheduled one would stall rank 0 for everyone. The
outbox starts each send with `Isend` and lets rank 0 go on serving; the buffers are snapshot
weights the pool keeps alive, and MPI delivers sends to one rank in the order they were started.
"""

from __future__ import annotations

import time

import numpy as np
from mpi4py import MPI

from mpimarl.comm.channel import Deadline, Tag


class Outbox:
    """Nonblocking flat float32 weight sends from one rank, tracked until they complete."""

    def __init__(self, comm: MPI.Comm) -> None:
        self.comm = comm
        self._pending: list[tuple[MPI.Request, np.ndarray]] = []
        self.started = 0
        self.bytes_started = 0

    def send_weights(self, weights: np.ndarray, dest: int) -> None:
        """Start sending one contiguous 1-D float32 buffer (tag WEIGHTS) to `dest`."""
        if weights.dtype != np.float32 or weights.ndim != 1 or not weights.flags.c_contiguous:
            raise ValueError(f"weights must be a contiguous 1-D float32 array, got {weights.dtype} {weights.shape}")
        request = self.comm.Isend([weights, MPI.FLOAT], dest=dest, tag=int(Tag.WEIGHTS))
        self._pending.append((request, weights))  # the buffer must outlive the send
        self.started += 1
        self.bytes_started += weights.nbytes

    def poll(self) -> None:
        """Forget the sends that have completed."""
        if self._pending:
            self._pending = [(r, w) for r, w in self._pending if not r.Test()]

    def __len__(self) -> int:
        return len(self._pending)

    def drain(self, deadline: Deadline) -> None:
        """Wait (without spinning) until every send has completed."""
        pause = 5e-5
        while self._pending:
            self.poll()
            if self._pending:
                deadline.check(self.comm)
                time.sleep(pause)
                pause = min(2 * pause, 0.005)
