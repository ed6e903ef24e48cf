"""Rank 0's capacity, measured with light trainers (launched by `benchmarks/scaling.py capacity`).

Under `mpiexec -n 1+N python -m benchmarks.capacity_worker OUT SECONDS CONFIG [overrides...]`:
rank 0 runs the real server (the real league, recorder and HDF5 file), instrumented to time every
message it handles; ranks 1..N are *light trainers*: no environment, no network, no torch. Each
publishes snapshots (the config's real weight size) and asks for line-ups as fast as the server
answers, sends a train row per request, and times each request's round trip. Every rank writes
its numbers to OUT/rank_<r>.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

from mpimarl.comm.channel import (
    SERVER_RANK,
    Deadline,
    Tag,
    bcast_json,
    recv_json,
    recv_weights,
    send_json,
    send_weights,
)

PUBLISH_EVERY = 10  # requests per published snapshot (a real trainer: one per generation)


def _server(out: Path, config_path: str, overrides: list[str], comm: MPI.Comm, plan_comm: MPI.Comm) -> None:
    from mpimarl.algos.networks import ActorCritic, num_weights
    from mpimarl.config import load_config
    from mpimarl.record.recorder import RunRecorder
    from mpimarl.roles.context import RunContext
    from mpimarl.roles.progress import Progress
    from mpimarl.roles.server import Server

    config = load_config(config_path, overrides)
    ctx = RunContext.build(config, comm.Get_size())
    role = config.role_names[0]
    shape = ctx.shape(role)
    bcast_json(comm, {"size": num_weights(ActorCritic(shape)), "layout": shape.layout,
                      "ids": {str(r): [ctx.policy_id(r), ctx.trainer_role(r)] for r in range(1, comm.Get_size())}},
               0, None)
    recorder = RunRecorder(out / "run.h5", {"config": {}, "world_size": comm.Get_size(), "finished": False})
    timings: dict[str, list[float]] = {}

    class TimedServer(Server):
        def handle(self, status: MPI.Status) -> None:
            tag = Tag(status.Get_tag()).name
            t0 = time.perf_counter()
            super().handle(status)
            timings.setdefault(tag, []).append(time.perf_counter() - t0)

    server = TimedServer(ctx, comm, plan_comm, recorder, Progress(1, 1e9, bar=False))
    t0 = time.perf_counter()
    server.run()
    wall = time.perf_counter() - t0
    recorder.close()
    (out / "run.h5").unlink()  # snapshots of light trainers are not worth keeping
    publishes = len(timings.get("PUBLISH", []))
    size = num_weights(ActorCritic(shape))
    received = publishes * size * 4
    (out / "rank_0.json").write_text(json.dumps({
        "wall_s": wall, "timings": timings, "bytes_sent": server.outbox.bytes_started, "bytes_received": received,
        "publishes": publishes, "weight_floats": size,
    }))


def _light_trainer(out: Path, seconds: float, comm: MPI.Comm) -> None:
    rank = comm.Get_rank()
    info = bcast_json(comm, None, 0, Deadline(600, "the layout"))
    size = int(info["size"])
    policy_id, role = info["ids"][str(rank)]
    rng = np.random.default_rng(rank)
    weights = rng.standard_normal(size).astype(np.float32)
    version = 0
    cache: list[tuple[str, int]] = []
    waits: list[float] = []
    publish_waits: list[float] = []

    def publish() -> None:
        header = {"policy_id": policy_id, "role": role, "version": version, "parent_version": version - 1,
                  "env_steps": version * 1000, "size": size, "layout": info["layout"], "generation": version}
        t0 = time.perf_counter()
        send_json(comm, header, SERVER_RANK, Tag.PUBLISH)
        send_weights(comm, weights, SERVER_RANK)
        publish_waits.append(time.perf_counter() - t0)

    publish()
    start = time.perf_counter()
    requests = 0
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        send_json(comm, {"generation": version, "cached": [list(k) for k in cache], "lineups": None},
                  SERVER_RANK, Tag.REQUEST)
        reply = recv_json(comm, SERVER_RANK, Tag.ASSIGN, Deadline(600, "line-ups"))
        for pid, v, _ in reply["sent"]:
            recv_weights(comm, SERVER_RANK, int(reply["sizes"][f"{pid}@{v}"]), Deadline(600, "weights"))
            cache.append((str(pid), int(v)))
        cache = cache[-16:]
        waits.append(time.perf_counter() - t0)
        requests += 1
        send_json(comm, {"generation": version, "rank": rank, "policy_id": policy_id, "role": role,
                         "version": version, "env_steps": requests * 100, "episodes": requests}, SERVER_RANK,
                  Tag.TRAIN_STATS)
        if requests % PUBLISH_EVERY == 0:
            version += 1
            publish()
    send_json(comm, {"env_steps": requests * 100}, SERVER_RANK, Tag.DONE)
    (out / f"rank_{rank}.json").write_text(json.dumps({"waits": waits, "publish_waits": publish_waits,
                                                       "requests": requests,
                                                       "elapsed_s": time.perf_counter() - start}))


def main() -> None:
    import faulthandler

    faulthandler.dump_traceback_later(float(sys.argv[2]) + 600, exit=True)  # a hang prints where, then ends
    out = Path(sys.argv[1])
    seconds = float(sys.argv[2])
    comm = MPI.COMM_WORLD
    plan_comm = comm.Dup()  # collective, as in a real run (the async schedule never uses it)
    if comm.Get_rank() == 0:
        _server(out, sys.argv[3], sys.argv[4:], comm, plan_comm)
    else:
        _light_trainer(out, seconds, comm)


if __name__ == "__main__":
    main()
