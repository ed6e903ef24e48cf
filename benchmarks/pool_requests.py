"""Rank 0's work per matchmaking request against the number of snapshots ever published.

    python benchmarks/pool_requests.py [--counts 1000,10000,100000] [--label after]
    PYTHONPATH=/path/to/an/older/checkout python benchmarks/pool_requests.py --label before

Builds, in one process, what rank 0 holds after `count` snapshots of two policies of one role: the
pool with the retention policy pool.keep_latest 8, keep_every 100 (as benchmarks.pool_scale's
`after`), a payoff table with each new snapshot evaluated against 2 pool members (20 games each, as
evaluation.pool_opponents 2), and, for openai_five, a quality update per training game. Then it times
the CPU time a request costs: `pfsp` line-ups for the latest learner (its distribution over every drawable
snapshot: the learner's win rate against each), and `openai_five` line-ups and game results.
Run with PYTHONPATH pointing at another checkout to time that checkout's league code on the same
work (the script imports only mpimarl.league). Results: benchmarks/results/pool_requests.md (+csv).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd


def measure(count: int, repeats: int) -> list[dict[str, object]]:
    """Per-request milliseconds of pfsp and openai_five after `count` snapshots."""
    from mpimarl.league.matchmaking import OpenAIFiveMatchmaker, PFSPMatchmaker
    from mpimarl.league.payoff import PayoffTable
    from mpimarl.league.pool import PolicyPool, Retention, Snapshot, SnapshotKey

    rng = np.random.default_rng(0)
    pool, payoff = PolicyPool(), PayoffTable()
    retention = Retention(8, keep_every=100)
    five = OpenAIFiveMatchmaker(0.8, 0.01)
    pfsp = PFSPMatchmaker("hard", 2.0, 0.35, 256)
    weights = np.zeros(4, np.float32)
    for i in range(count):
        pid, version = f"player-{i % 2}", i // 2
        snap = Snapshot(SnapshotKey(pid, version), "player", None, 1, i, float(i), weights)
        pool.add(snap)
        five.on_publish(snap)
        drawable = pool.snapshots("player")
        for _ in range(2):  # evaluation: the new snapshot against 2 drawable pool members
            other = drawable[int(rng.integers(len(drawable)))].key
            wins = int(rng.integers(0, 21))
            payoff.add(str(snap.key), str(other), wins, 0, 20 - wins, float(2 * wins - 20), float(20 - 2 * wins))
        for _ in range(4):  # training games reported to openai_five
            five.record_result(snap.key, drawable[int(rng.integers(len(drawable)))].key, float(rng.random() < 0.6))
        retention.apply(pool, pid)
    learner = pool.latest("player-0").key
    draw = np.random.default_rng(1)
    rows = []
    for name, request in (
        ("pfsp lineups (8)", lambda: pfsp.lineups(pool, learner, "player", ["player"], 8, draw, payoff)),
        ("openai_five lineups (8)", lambda: five.lineups(pool, learner, "player", ["player"], 8, draw, payoff)),
        ("openai_five result (1 game)", lambda: five.record_result(
            learner, pool.snapshots("player")[int(draw.integers(pool.drawable_count("player")))].key, 1.0)),
    ):
        request()  # warm
        t0 = time.process_time()  # CPU time: the machine's other jobs do not count
        for _ in range(repeats):
            request()
        rows.append({"request": name, "snapshots": count, "drawable": pool.drawable_count("player"),
                     "cpu_ms_per_request": round(1e3 * (time.process_time() - t0) / repeats, 3)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", default="1000,10000,100000")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--label", default="after", help="the code measured (a column of the table)")
    parser.add_argument("--out", default=None, help="append the rows to this csv")
    args = parser.parse_args()
    import mpimarl

    rows = []
    for count in (int(c) for c in args.counts.split(",")):
        for row in measure(count, args.repeats):
            row = {"code": args.label, **row, "mpimarl": str(Path(mpimarl.__file__).parent.parent),
                   "load_average": "{:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())}
            print(row, flush=True)
            rows.append(row)
    out = Path(args.out or Path(__file__).parent / "results" / "pool_requests.csv")
    frame = pd.DataFrame(rows)
    frame.to_csv(out, mode="a", header=not out.exists(), index=False)
    sys.exit(0)


if __name__ == "__main__":
    main()
