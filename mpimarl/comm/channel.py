"""The thin MPI layer: tagged messages between the server and trainers.

Control messages are small JSON documents sent as byte buffers; weights are one contiguous float32
buffer per transfer. Nothing is pickled. Every function takes its communicator explicitly, and
every wait polls with a sleep (MPICH's blocking calls spin a core, which starves co-located ranks on
a small machine) and gives up after a deadline instead of hanging.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from enum import IntEnum
from typing import Any

import numpy as np
from mpi4py import MPI

from mpimarl.errors import ProtocolError

SERVER_RANK = 0


class Tag(IntEnum):
    """Message tags; each names what the message carries."""

    PUBLISH = 1  # trainer -> server: snapshot header (JSON), followed by WEIGHTS
    WEIGHTS = 2  # either way: one flat float32 weight buffer
    REQUEST = 3  # trainer -> server: ask for line-ups and missing weights (JSON: cached keys)
    ASSIGN = 4  # server -> trainer: line-ups and the keys whose WEIGHTS follow (JSON)
    TRAIN_STATS = 5  # trainer -> server: one row of the train table (JSON)
    MATCH_RESULTS = 6  # trainer -> server: training match tallies (JSON)
    DONE = 7  # trainer -> server: the trainer finished its budget
    FAILED = 8  # any -> server: a rank hit an error and is about to abort the job (JSON message)
    EVAL_JOB = 20  # server -> trainer: evaluation episodes to play (JSON), followed by WEIGHTS it lacks
    EVAL_RESULT = 21  # trainer -> server: the per-episode results of one evaluation job (JSON)
    HEARTBEAT = 9  # server -> a trainer waiting at the sync barrier: "still alive, still waiting" (empty JSON)


def tag_name(tag: int) -> str:
    """The Tag's name, or the raw number for a tag mpimarl does not define."""
    return Tag(tag).name if tag in Tag._value2member_map_ else str(tag)


class Deadline:
    """A wall-clock budget for one wait, with a message for when it runs out."""

    def __init__(self, seconds: float, what: str) -> None:
        self.end = time.monotonic() + seconds
        self.seconds = seconds
        self.what = what

    def check(self, comm: MPI.Comm) -> None:
        """Raise TimeoutError naming the rank and what it waited for, once the budget is spent."""
        if time.monotonic() > self.end:
            raise TimeoutError(
                f"rank {comm.Get_rank()} waited {self.seconds:.0f} s for {self.what}; "
                "a peer is stuck or dead (server.timeout_s sets this limit)"
            )


class ServerWatch(Deadline):
    """A deadline that the server's heartbeats push back, for waits whose length depends on other
    trainers (the sync barrier: the plan comes when the slowest trainer has published). The server
    watches those trainers itself (``server.timeout_s``) and sends HEARTBEAT meanwhile, so this wait
    only runs out when the server has fallen silent."""

    def __init__(self, comm: MPI.Comm, seconds: float, what: str) -> None:
        super().__init__(seconds, what)
        self.comm = comm  # where heartbeats arrive (the wait itself may be on another communicator)

    def check(self, comm: MPI.Comm) -> None:
        """Take pending heartbeats (each restarts the clock), then check the deadline."""
        if drain_heartbeats(self.comm, SERVER_RANK):
            self.end = time.monotonic() + self.seconds
        super().check(comm)


def drain_heartbeats(comm: MPI.Comm, source: int) -> int:
    """Receive and drop every pending HEARTBEAT from `source`; return how many there were."""
    count = 0
    while comm.Iprobe(source=source, tag=int(Tag.HEARTBEAT)):
        comm.Recv([np.empty(64, np.uint8), MPI.BYTE], source=source, tag=int(Tag.HEARTBEAT))
        count += 1
    return count


def _sleep_backoff(pause: float) -> float:
    time.sleep(pause)
    return min(pause * 2, 0.005)


def wait_message(comm: MPI.Comm, source: int, deadline: Deadline) -> MPI.Status:
    """Poll until a message from `source` (or any) is pending; return its status."""
    status = MPI.Status()
    pause = 5e-5
    while True:
        while not comm.Iprobe(source=source, tag=MPI.ANY_TAG, status=status):
            deadline.check(comm)
            pause = _sleep_backoff(pause)
        if status.Get_tag() != Tag.HEARTBEAT:
            return status
        # A heartbeat sent just before the plan it was waiting for: it has served its purpose.
        drain_heartbeats(comm, status.Get_source())


def send_json(comm: MPI.Comm, obj: Any, dest: int, tag: Tag) -> None:
    """Send a small JSON document as a byte buffer."""
    data = np.frombuffer(json.dumps(obj, separators=(",", ":")).encode(), np.uint8)
    comm.Send([data, MPI.BYTE], dest=dest, tag=int(tag))


def recv_json_now(comm: MPI.Comm, status: MPI.Status) -> Any:
    """Receive the JSON message that `status` (from a probe) describes."""
    n = status.Get_count(MPI.BYTE)
    buf = np.empty(n, np.uint8)
    comm.Recv([buf, MPI.BYTE], source=status.Get_source(), tag=status.Get_tag())
    return json.loads(buf.tobytes().decode())


def recv_json(comm: MPI.Comm, source: int, expected: Tag, deadline: Deadline) -> Any:
    """Receive the next message from `source`, which must carry tag `expected`."""
    status = wait_message(comm, source, deadline)
    check_tag(comm, status, expected)
    return recv_json_now(comm, status)


def check_tag(comm: MPI.Comm, status: MPI.Status, expected: Tag) -> None:
    """Raise ProtocolError naming the ranks and both tags when a message is not the one expected."""
    tag = status.Get_tag()
    if tag != expected:
        raise ProtocolError(
            f"rank {comm.Get_rank()} expected {expected.name} from rank {status.Get_source()} "
            f"but received {tag_name(tag)}"
        )


def send_weights(comm: MPI.Comm, weights: np.ndarray, dest: int) -> None:
    """Send one flat float32 buffer."""
    if weights.dtype != np.float32 or weights.ndim != 1 or not weights.flags.c_contiguous:
        raise ValueError(f"weights must be a contiguous 1-D float32 array, got {weights.dtype} {weights.shape}")
    comm.Send([weights, MPI.FLOAT], dest=dest, tag=int(Tag.WEIGHTS))


def recv_weights(comm: MPI.Comm, source: int, size: int, deadline: Deadline) -> np.ndarray:
    """Receive one flat float32 buffer of exactly `size` values from `source`."""
    status = wait_message(comm, source, deadline)
    check_tag(comm, status, Tag.WEIGHTS)
    count = status.Get_count(MPI.FLOAT)
    if count != size:
        raise ProtocolError(
            f"rank {comm.Get_rank()} expected a weight buffer of {size} floats from rank {source}, got {count}"
        )
    buf = np.empty(size, np.float32)
    comm.Recv([buf, MPI.FLOAT], source=source, tag=int(Tag.WEIGHTS))
    return buf


def _wait_request(comm: MPI.Comm, request: MPI.Request, deadline: Deadline | None,
                  idle: Callable[[], object] | None = None) -> None:
    pause = 5e-5
    while not request.Test():
        if deadline is not None:
            deadline.check(comm)
        if idle is not None:
            idle()
        pause = _sleep_backoff(pause)


def bcast_json(comm: MPI.Comm, obj: Any, root: int, deadline: Deadline | None,
               idle: Callable[[], object] | None = None) -> Any:
    """Broadcast a JSON document from `root` (length first, then bytes) without spinning a core.

    `idle` is called while waiting (a trainer plays evaluation jobs while it waits for the plan)."""
    rank = comm.Get_rank()
    if rank == root:
        payload = np.frombuffer(json.dumps(obj, separators=(",", ":")).encode(), np.uint8).copy()
        size = np.array([payload.size], np.int64)
    else:
        size = np.zeros(1, np.int64)
    _wait_request(comm, comm.Ibcast([size, MPI.INT64_T], root=root), deadline, idle)
    if rank != root:
        payload = np.empty(int(size[0]), np.uint8)
    _wait_request(comm, comm.Ibcast([payload, MPI.BYTE], root=root), deadline)
    return obj if rank == root else json.loads(payload.tobytes().decode())


def bcast_weights(comm: MPI.Comm, weights: np.ndarray | None, size: int, root: int,
                  deadline: Deadline | None) -> np.ndarray:
    """Broadcast one flat float32 buffer of `size` values from `root` without spinning a core."""
    buf = weights if comm.Get_rank() == root and weights is not None else np.empty(size, np.float32)
    if buf.dtype != np.float32 or buf.ndim != 1 or buf.size != size or not buf.flags.c_contiguous:
        raise ValueError(f"weight broadcast: expected {size} contiguous float32 values, got {buf.dtype} {buf.shape}")
    _wait_request(comm, comm.Ibcast([buf, MPI.FLOAT], root=root), deadline)
    return buf
