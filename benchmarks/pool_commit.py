"""Rank 0's cost of recording one published snapshot, with and without grouped commits.

    python -m benchmarks.pool_commit [--snapshots 60] [--floats 177160]

In one process, no MPI: per snapshot, what rank 0's publish handler does with the run file
(save_weights, a pool row) plus the train rows of the trainers in between (`--rows` per snapshot),
timed per publish, with fsync on (MPIMARL_RUN_FILE_FSYNC unset) as in a real run. Setups:
commit_window_s 0 (every change committed at once, the default) and 0.05 / 0.2 (grouped). The
capacity benchmark (`benchmarks.scaling capacity`) measures the same handler inside the real server,
where MPI and the machine's load add to it.
Results: benchmarks/results/pool_commit.md (+csv).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import save
from benchmarks.scaling import load_average


def main() -> None:
    """Time the publish path for each commit window; write the table."""
    from mpimarl.record.recorder import RunRecorder

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--snapshots", type=int, default=60)
    parser.add_argument("--floats", type=int, default=177_160, help="connect four's network: 177,160 float32")
    parser.add_argument("--rows", type=int, default=6, help="train rows between two publishes")
    args = parser.parse_args()
    weights = np.random.default_rng(0).standard_normal(args.floats).astype(np.float32)
    rows = []
    for window in (0.0, 0.05, 0.2):
        with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:  # the disk the runs write to
            rec = RunRecorder(Path(tmp) / "run.h5", {"config": {}})
            rec.configure(commit_window_s=window)
            publish, row_cost = [], []
            t_all = time.perf_counter()
            for v in range(args.snapshots):
                t0 = time.perf_counter()
                rec.save_weights("player-0", v, "player", weights, parent=None, layout="flat")
                rec.append("pool", [{"time": 0.0, "generation": v, "policy_id": "player-0", "role": "player",
                                     "version": v, "parent_id": "", "parent_version": -1, "rank": 1, "env_steps": v}])
                rec.commit_due()
                publish.append(time.perf_counter() - t0)
                for r in range(args.rows):
                    t0 = time.perf_counter()
                    rec.append("train", [{"time": 0.0, "generation": v, "rank": 1, "policy_id": "player-0",
                                          "role": "player", "version": v, "env_steps": r, "episodes": r}])
                    rec.commit_due()
                    row_cost.append(time.perf_counter() - t0)
                time.sleep(0.01)  # rank 0 between messages
            rec.close()
            wall = time.perf_counter() - t_all
        row = {"commit_window_s": window, "snapshots": args.snapshots, "floats": args.floats,
               "publish_ms_median": round(1e3 * float(np.median(publish)), 2),
               "publish_ms_p90": round(1e3 * float(np.percentile(publish, 90)), 2),
               "train_row_ms_median": round(1e3 * float(np.median(row_cost)), 2),
               "commits": rec.commits, "wall_s": round(wall, 1), "load_average": load_average()}
        print(row, flush=True)
        rows.append(row)
    save(pd.DataFrame(rows), "pool_commit",
         "Grouped commits (window > 0) run in the writer thread. fsync on (a journal commit: write + fsync the "
         "journal, apply + fsync the file). Median and 90th "
         "percentile per publish (the message that closes a window only hands the group to the thread).")


if __name__ == "__main__":
    main()
