"""The MPI side of a learner and its IMPALA actors: segments in, weights out.

`split_actor_units` gives every policy that has actors one communicator holding its learner (rank 0
there) and its actors (ranks 1..k, in world-rank order). On it:

- **segments** (actor -> learner, point to point, nonblocking sends): a float64 header of
  :data:`HEADER_SIZE` values (:class:`Header` names them), then, when it has rows, the segment
  itself as one (rows, width) float32 buffer (:mod:`mpimarl.rollout.segment` fixes the width);
- **weights** (learner -> actors, one `Ibcast` per update): an int64 pair (policy version, command:
  :class:`Command`), then the flat float32 weights.

Control documents (the generation's line-ups, opponent weights, tallies at the generation's end) go on
a duplicate communicator (:class:`mpimarl.comm.group.GroupComm`), so they never interleave with the
weight broadcasts an actor keeps posted. No pickles: every buffer has a fixed, agreed layout and is
checked on arrival. Every wait polls with a deadline, so a dead peer ends the job instead of hanging it.
"""

from __future__ import annotations

import time
from enum import IntEnum
from typing import Any

import numpy as np
from mpi4py import MPI

from mpimarl.comm.channel import Deadline
from mpimarl.comm.group import GroupComm
from mpimarl.errors import ProtocolError

LEARNER = 0  # the learner is rank 0 of its unit's communicator


class SegmentTag(IntEnum):
    """Point-to-point tags on a unit's communicator."""

    HEADER = 1  # actor -> learner: float64 header (Header)
    SEGMENT = 2  # actor -> learner: the (rows, width) float32 segment announced by the header


class Header(IntEnum):
    """Positions in a segment header (float64; integers are exact)."""

    ROWS = 0  # rows in the segment that follows (0: no segment follows)
    WIDTH = 1  # floats per row
    VERSION = 2  # the policy version (learner updates) the segment was played with
    ENV_STEPS = 3  # the actor's environment steps so far (cumulative)
    EPISODES = 4  # the actor's finished episodes so far (cumulative)
    RETURN_SUM = 5  # sum of the learner's mean returns over episodes finished since the last header
    RETURN_N = 6  # episodes finished since the last header
    LENGTH_SUM = 7  # sum of their lengths
    FINAL = 8  # 1: the actor's last message of this generation (it saw Command.END_GENERATION)


HEADER_SIZE = len(Header)


class Command(IntEnum):
    """What a weight broadcast tells the actors to do next."""

    CONTINUE = 0  # play on with these weights
    END_GENERATION = 1  # stop playing, send the final header and the generation's tallies


def split_actor_units(comm: MPI.Comm, ctx: Any) -> ActorLink | None:
    """Collective over `comm`: a communicator per policy that has actors (its learner and actors).
    Returns this rank's link, or None for rank 0 and ranks of policies without actors."""
    rank = comm.Get_rank()
    color = MPI.UNDEFINED
    if rank != 0:
        unit = ctx.unit_of(rank)
        if unit.actors:
            color = ctx.units.index(unit)
    sub = comm.Split(color, rank)
    if sub == MPI.COMM_NULL:
        return None
    return ActorLink(sub, rank, ctx.config.server.timeout_s)


def _wait(comm: MPI.Comm, requests: list[MPI.Request], deadline: Deadline) -> None:
    pause = 2e-5
    while not MPI.Request.Testall(requests):
        deadline.check(comm)
        time.sleep(pause)
        pause = min(pause * 2, 1e-3)


class ActorLink:
    """One learner-and-actors communicator, seen from one of its ranks."""

    def __init__(self, comm: MPI.Comm, world_rank: int, timeout_s: float) -> None:
        self.comm = comm
        self.world_rank = world_rank
        self.timeout_s = timeout_s
        self.control = GroupComm(comm.Dup(), world_rank, timeout_s)
        self._sends: list[tuple[MPI.Request, np.ndarray]] = []  # actor: segments in flight
        self._bcasts: list[tuple[MPI.Request, np.ndarray]] = []  # learner: weight broadcasts in flight
        self._posted: tuple[list[MPI.Request], np.ndarray, np.ndarray] | None = None  # actor: next weights

    @property
    def is_learner(self) -> bool:
        """Whether this rank is the unit's learner."""
        return self.comm.Get_rank() == LEARNER

    @property
    def num_actors(self) -> int:
        """Actor ranks of the unit."""
        return self.comm.Get_size() - 1

    def deadline(self, what: str, seconds: float | None = None) -> Deadline:
        """A wait budget (server.timeout_s unless given) naming what this rank waits for."""
        return Deadline(self.timeout_s if seconds is None else seconds, f"{what} (world rank {self.world_rank})")

    # -- actor side ------------------------------------------------------------------------------
    def send_segment(self, header: np.ndarray, segment: np.ndarray | None) -> None:
        """Start sending a header and (when it announces rows) its segment to the learner."""
        if header.dtype != np.float64 or header.shape != (HEADER_SIZE,):
            raise ValueError(f"segment header must be {HEADER_SIZE} float64 values, got {header.dtype} {header.shape}")
        rows = int(header[Header.ROWS])
        self._sends.append((self.comm.Isend([header, MPI.DOUBLE], LEARNER, int(SegmentTag.HEADER)), header))
        if rows:
            if segment is None or segment.dtype != np.float32 or segment.shape != (rows, int(header[Header.WIDTH])):
                raise ValueError(f"segment does not match its header ({rows} rows of {int(header[Header.WIDTH])})")
            segment = np.ascontiguousarray(segment)
            self._sends.append((self.comm.Isend([segment, MPI.FLOAT], LEARNER, int(SegmentTag.SEGMENT)), segment))

    def drain_sends(self) -> None:
        """Wait until the learner has received everything this actor sent."""
        _wait(self.comm, [r for r, _ in self._sends], self.deadline("the learner to take our segments"))
        self._sends.clear()

    def post_weights(self, size: int) -> None:
        """Post the receive of the next weight broadcast (a version/command pair, then `size` floats)."""
        head = np.zeros(2, np.int64)
        weights = np.empty(size, np.float32)
        requests = [self.comm.Ibcast([head, MPI.INT64_T], root=LEARNER),
                    self.comm.Ibcast([weights, MPI.FLOAT], root=LEARNER)]
        self._posted = (requests, head, weights)

    def weights_arrived(self) -> tuple[int, Command, np.ndarray] | None:
        """(version, command, weights) once the posted broadcast completed, else None (nothing blocks)."""
        if self._posted is None:
            raise ProtocolError(f"world rank {self.world_rank}: no weight broadcast posted")
        requests, head, weights = self._posted
        if not MPI.Request.Testall(requests):
            return None
        self._posted = None
        return int(head[0]), Command(int(head[1])), weights

    def wait_weights(self, deadline: Deadline) -> tuple[int, Command, np.ndarray]:
        """Block (polling, with `deadline`) until the posted weight broadcast completes."""
        pause = 2e-5
        while True:
            got = self.weights_arrived()
            if got is not None:
                return got
            deadline.check(self.comm)
            time.sleep(pause)
            pause = min(pause * 2, 1e-3)

    # -- learner side ----------------------------------------------------------------------------
    def broadcast_weights(self, version: int, command: Command, weights: np.ndarray) -> None:
        """Start broadcasting the learner's weights (version, command first) to its actors."""
        if weights.dtype != np.float32 or weights.ndim != 1 or not weights.flags.c_contiguous:
            raise ValueError(f"weights must be a contiguous 1-D float32 array, got {weights.dtype} {weights.shape}")
        head = np.array([version, int(command)], np.int64)
        self._bcasts.append((self.comm.Ibcast([head, MPI.INT64_T], root=LEARNER), head))
        self._bcasts.append((self.comm.Ibcast([weights, MPI.FLOAT], root=LEARNER), weights))

    def progress_broadcasts(self) -> None:
        """Let the weight broadcasts in flight progress; forget completed ones."""
        self._bcasts = [(r, b) for r, b in self._bcasts if not r.Test()]

    def drain_broadcasts(self) -> None:
        """Wait until every actor has taken every weight broadcast."""
        _wait(self.comm, [r for r, _ in self._bcasts], self.deadline("the actors to take the weights"))
        self._bcasts.clear()

    def receive(self, source: int, width: int, deadline: Deadline) -> tuple[int, np.ndarray, np.ndarray | None]:
        """The next header (and its segment) from actor `source` (MPI.ANY_SOURCE: from whichever
        actor sent first); returns (the actor's index 1..k, header, segment or None)."""
        status = MPI.Status()
        pause = 2e-5
        while not self.comm.Iprobe(source=source, tag=MPI.ANY_TAG, status=status):
            self.progress_broadcasts()
            deadline.check(self.comm)
            time.sleep(pause)
            pause = min(pause * 2, 1e-3)
        return self._take(status, width)

    def _take(self, status: MPI.Status, width: int) -> tuple[int, np.ndarray, np.ndarray | None]:
        source = status.Get_source()
        if status.Get_tag() != SegmentTag.HEADER or status.Get_count(MPI.DOUBLE) != HEADER_SIZE:
            raise ProtocolError(
                f"learner (world rank {self.world_rank}) expected a segment HEADER of {HEADER_SIZE} float64 "
                f"from its actor {source}, but received tag {status.Get_tag()} with {status.Get_count(MPI.BYTE)} bytes")
        header = np.empty(HEADER_SIZE, np.float64)
        self.comm.Recv([header, MPI.DOUBLE], source=source, tag=int(SegmentTag.HEADER))
        rows = int(header[Header.ROWS])
        if rows == 0:
            return source, header, None
        if int(header[Header.WIDTH]) != width:
            raise ProtocolError(f"learner (world rank {self.world_rank}): actor {source} announced rows of "
                                f"{int(header[Header.WIDTH])} floats, this policy's rows have {width}")
        segment = np.empty((rows, width), np.float32)
        deadline = self.deadline(f"the segment of actor {source}")
        seg_status = MPI.Status()
        pause = 2e-5
        while not self.comm.Iprobe(source=source, tag=int(SegmentTag.SEGMENT), status=seg_status):
            deadline.check(self.comm)
            time.sleep(pause)
            pause = min(pause * 2, 1e-3)
        if seg_status.Get_count(MPI.FLOAT) != rows * width:
            raise ProtocolError(f"learner (world rank {self.world_rank}): actor {source} sent "
                                f"{seg_status.Get_count(MPI.FLOAT)} floats, its header announced {rows * width}")
        self.comm.Recv([segment, MPI.FLOAT], source=source, tag=int(SegmentTag.SEGMENT))
        return source, header, segment
