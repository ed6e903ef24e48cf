"""Run under `mpiexec -n 2`: exercises the channel both ways and prints what each rank saw."""

from __future__ import annotations

import json

import numpy as np
from mpi4py import MPI

from mpimarl.comm.channel import Deadline, Tag, bcast_json, recv_json, recv_weights, send_json, send_weights
from mpimarl.errors import ProtocolError

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
report: dict[str, object] = {"rank": rank}
if rank == 1:
    send_json(comm, {"hello": [1, 2.5, "x"]}, 0, Tag.REQUEST)
    send_weights(comm, np.arange(1000, dtype=np.float32), 0)
    send_json(comm, {"oops": True}, 0, Tag.DONE)  # the server expects ASSIGN next: a protocol error
else:
    report["json"] = recv_json(comm, 1, Tag.REQUEST, Deadline(10, "json"))
    w = recv_weights(comm, 1, 1000, Deadline(10, "weights"))
    report["weights_ok"] = bool(np.array_equal(w, np.arange(1000, dtype=np.float32)))
    try:
        recv_json(comm, 1, Tag.ASSIGN, Deadline(10, "assign"))
    except ProtocolError as exc:
        report["protocol_error"] = str(exc)
    recv_json(comm, 1, Tag.DONE, Deadline(10, "the DONE left pending"))
    try:
        recv_json(comm, 1, Tag.ASSIGN, Deadline(0.2, "a message that never comes"))
    except TimeoutError as exc:
        report["timeout"] = str(exc)
plan = bcast_json(comm, {"generation": 3, "lineups": {"1": [["p-0", 2, "player"]]}} if rank == 0 else None, 0,
                  Deadline(10, "plan"))
report["plan"] = plan
print("REPORT " + json.dumps(report), flush=True)
