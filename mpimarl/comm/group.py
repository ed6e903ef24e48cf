"""The MPI side of a learner group: the ranks that train one policy together.

`split_groups` gives each data-parallel learner group its own communicator (`comm.Split`), so the
group's gradient sums and broadcasts never mix with the server's traffic. :class:`GroupComm`
implements :class:`mpimarl.algos.data_parallel.GradientGroup` (an in-place sum of one flat buffer)
and the leader's broadcasts to its group (line-ups as JSON, opponent weights as flat float32).
Waits poll with short sleeps and a deadline, as everywhere in mpimarl: a group member that died
or hangs ends the job instead of blocking it.
"""

from __future__ import annotations

import time
import zlib
from typing import Any

import numpy as np
from mpi4py import MPI

from mpimarl.comm.channel import Deadline, bcast_json, recv_json, send_json
from mpimarl.comm.channel import Tag as _Tag

GROUP_LEADER = 0  # the leader is rank 0 of its group communicator


SPIN_S = 2e-3
"""How long a group wait polls without sleeping. A collective completes only as fast as both sides
drive MPI's progress engine: a large buffer goes in several round trips (rendezvous), and sleeping
between polls adds a sleep to every one of them, which cost a 2-rank group most of its speed-up.
Partners normally arrive within this window (they run the same minibatch step); past it the wait
sleeps with a growing pause (capped at 1 ms), so a rank waiting on a slow partner leaves the core
to co-located ranks (MPICH's blocking calls would spin it for the whole wait)."""


def _wait(comm: MPI.Comm, request: MPI.Request, deadline: Deadline) -> None:
    """Poll a nonblocking collective: busy for `SPIN_S`, then with short sleeps, checking the
    deadline. (Yielding the core between busy polls hands it to any other runnable process for a
    whole time slice: on a shared machine that made the group slower than sleeping.)"""
    spin_until = time.perf_counter() + SPIN_S
    while not request.Test():
        if time.perf_counter() < spin_until:
            continue
        pause = 2e-5
        while not request.Test():
            deadline.check(comm)
            time.sleep(pause)
            pause = min(pause * 2, 1e-3)
        return


class GroupComm:
    """One learner group's communicator, seen from one of its ranks."""

    def __init__(self, comm: MPI.Comm, world_rank: int, timeout_s: float) -> None:
        self.comm = comm
        self.world_rank = world_rank
        self.timeout_s = timeout_s
        self.allreduce_calls = 0

    @property
    def size(self) -> int:
        """Ranks in the group."""
        return self.comm.Get_size()

    @property
    def rank(self) -> int:
        """This rank's index in the group (0: the leader)."""
        return self.comm.Get_rank()

    @property
    def is_leader(self) -> bool:
        """Whether this rank talks to the server for the group."""
        return self.rank == GROUP_LEADER

    def _deadline(self, what: str, seconds: float | None = None) -> Deadline:
        return Deadline(self.timeout_s if seconds is None else seconds,
                        f"{what} (learner group of world rank {self.world_rank})")

    def allreduce_sum(self, buf: np.ndarray) -> None:
        """Sum `buf` over the group in place: one Allreduce of one contiguous float32/float64 buffer."""
        if buf.ndim != 1 or not buf.flags.c_contiguous or buf.dtype not in (np.float32, np.float64):
            raise ValueError(f"group sums take one contiguous 1-D float32/float64 buffer, got {buf.dtype} {buf.shape}")
        mpi_type = MPI.FLOAT if buf.dtype == np.float32 else MPI.DOUBLE
        self.allreduce_calls += 1
        _wait(self.comm, self.comm.Iallreduce(MPI.IN_PLACE, [buf, mpi_type], op=MPI.SUM),
              self._deadline("a gradient sum"))

    def bcast_json(self, obj: Any, wait_s: float | None = None) -> Any:
        """The leader's JSON document, on every rank of the group (waiting at most `wait_s`, default
        server.timeout_s: a leader that died must not hang its group)."""
        return bcast_json(self.comm, obj, GROUP_LEADER, self._deadline("the leader's broadcast", wait_s))

    def bcast_weights(self, weights: np.ndarray | None, size: int) -> np.ndarray:
        """The leader's flat float32 buffer of `size` values, on every rank of the group."""
        buf = weights if self.is_leader and weights is not None else np.empty(size, np.float32)
        if buf.dtype != np.float32 or buf.size != size:
            raise ValueError(f"weight broadcast: expected {size} float32 values, got {buf.size} {buf.dtype}")
        request = self.comm.Ibcast([buf, MPI.FLOAT], root=GROUP_LEADER)
        _wait(self.comm, request, self._deadline("weights from the leader"))
        return buf

    def gather_json(self, obj: Any) -> list[Any] | None:
        """Every member's JSON document at the leader (in group order); None on the other ranks."""
        if not self.is_leader:
            send_json(self.comm, obj, GROUP_LEADER, _Tag.MATCH_RESULTS)
            return None
        out = [obj]
        for r in range(1, self.size):
            out.append(recv_json(self.comm, r, _Tag.MATCH_RESULTS, self._deadline(f"tallies of group rank {r}")))
        return out

    def check_identical(self, weights: np.ndarray, what: str) -> int:
        """Compare a checksum of `weights` across the group; raise naming the ranks if they differ.

        Returns the checksum (crc32 of the float32 bytes)."""
        crc = zlib.crc32(weights.tobytes())
        mine = np.array([crc], np.int64)
        lo = mine.copy()
        hi = mine.copy()
        _wait(self.comm, self.comm.Iallreduce(MPI.IN_PLACE, [lo, MPI.INT64_T], op=MPI.MIN), self._deadline(what))
        _wait(self.comm, self.comm.Iallreduce(MPI.IN_PLACE, [hi, MPI.INT64_T], op=MPI.MAX), self._deadline(what))
        if lo[0] != hi[0]:
            raise RuntimeError(
                f"world rank {self.world_rank}: the weights of its learner group differ after {what} "
                f"(checksum {crc:#010x} here; the group holds {int(lo[0]):#010x}..{int(hi[0]):#010x}); "
                "data-parallel learners must stay identical"
            )
        return crc


def split_groups(comm: MPI.Comm, ctx: Any) -> GroupComm | None:
    """Collective over `comm` (every rank calls it): a communicator per learner group of two or more
    ranks. Returns this rank's GroupComm, or None for rank 0, actors and single-rank learners."""
    rank = comm.Get_rank()
    color = MPI.UNDEFINED
    if rank != 0:
        unit = ctx.unit_of(rank)
        if len(unit.learners) > 1 and rank in unit.learners:
            color = ctx.units.index(unit)
    sub = comm.Split(color, rank)
    if sub == MPI.COMM_NULL:
        return None
    return GroupComm(sub, rank, ctx.config.server.timeout_s)


# ---------------------------------------------------------------------------------------------
# DD-PPO's straggler cut-off (trainer.straggler_cutoff): who has finished its rollout
# ---------------------------------------------------------------------------------------------

_NOTICE = 1  # the one tag on the cut-off's own communicator
_FULL, _CUT = 1, 0  # a notice's second value: the sender collected its whole share, or was cut off


class RolloutNotices:
    """Each rank of a learner group tells the others when it stops collecting a rollout, so ranks still
    collecting learn, between environment steps and without blocking, how many have finished.

    Every rank sends exactly one notice per update to every other rank (an int64 pair: the update's
    number, and whether it collected its whole share or was cut off) with nonblocking sends on a
    communicator of its own (a `Dup` of the group's, so notices never meet tallies or broadcasts).
    A collective cannot count arrivals before everyone has joined it, which is the point here; hence
    point to point. Before the update every rank takes the notices it has not yet seen (they are all
    on their way: a rank sends its notice before it joins the update), so no notice outlives its
    update. Collective to construct (every rank of the group at once).
    """

    def __init__(self, group: GroupComm) -> None:
        self.group = group
        self.comm = group.comm.Dup()
        self.update = 0  # updates finished: the number the next notices carry
        self.finished = 0  # other ranks that collected their whole share, this update
        self.cut = 0  # ranks cut off this update (this one included)
        self._heard = 0  # notices taken this update
        self._announced = False
        self._sends: list[tuple[MPI.Request, np.ndarray]] = []

    def poll(self) -> int:
        """Take the notices that have arrived (nothing blocks); the number of other ranks that have
        finished their whole rollout in this update."""
        status = MPI.Status()
        while self.comm.Iprobe(source=MPI.ANY_SOURCE, tag=_NOTICE, status=status):
            self._take(status.Get_source())
        self._sends = [(r, b) for r, b in self._sends if not r.Test()]
        return self.finished

    def _take(self, source: int) -> None:
        notice = np.zeros(2, np.int64)
        self.comm.Recv([notice, MPI.INT64_T], source=source, tag=_NOTICE)
        if int(notice[0]) != self.update:
            raise RuntimeError(f"world rank {self.group.world_rank}: group rank {source} announced the end of "
                               f"rollout {int(notice[0])} while this rank collects rollout {self.update}")
        self._heard += 1
        if notice[1] == _FULL:
            self.finished += 1
        else:
            self.cut += 1

    def announce(self, full: bool) -> None:
        """Tell every other rank that this rank stopped collecting (`full`: with its whole share)."""
        if self._announced:
            return
        self._announced = True
        if not full:
            self.cut += 1
        for r in range(self.group.size):
            if r != self.group.rank:
                notice = np.array([self.update, _FULL if full else _CUT], np.int64)
                self._sends.append((self.comm.Isend([notice, MPI.INT64_T], r, _NOTICE), notice))

    def finish(self) -> int:
        """Before the update: take every notice of this update still on its way; the number of ranks
        cut off (including this one). Resets the counts for the next update."""
        if not self._announced:
            raise RuntimeError(f"world rank {self.group.world_rank}: finish() before announce()")
        deadline = self.group._deadline("the other ranks' end of rollout")
        pause = 2e-5
        while self._heard < self.group.size - 1:
            self.poll()
            if self._heard < self.group.size - 1:
                deadline.check(self.comm)
                time.sleep(pause)
                pause = min(pause * 2, 1e-3)
        cut = self.cut
        self.update += 1
        self.finished = self.cut = self._heard = 0
        self._announced = False
        return cut
