"""What async checkpoints cost in throughput, like for like.

The same async run (config, seed, step budget, world size) with `checkpoint.every: 1` (a consistent
cut after every generation: each trainer saves at its next request and rank 0 holds the answers
until all have saved) and with `checkpoint.every: 0` (no checkpoints), alternated so that load
drift on a shared machine hits both alike. Reported per run: wall time, per-policy env steps/s
(pool rows: steps over the time between the first and last snapshot), the checkpoints written, and
the trainers' summed wait on the server.

    python -m benchmarks.checkpoint_cost [--config connect_four_league] [--steps 100000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import save, train
from mpimarl.analysis import load_run


def _row(folder: Path, every: int, wall: float, repeat: int) -> dict[str, object]:
    run = load_run(folder / "run.h5")
    rates = []
    for _, p in run.pool.groupby("policy_id"):
        span = p.time.max() - p.time.min()
        if span > 0:
            rates.append((p.env_steps.max() - p.env_steps.min()) / span)
    files = list((folder / "checkpoints").glob("g*-rank*.h5")) if (folder / "checkpoints").exists() else []
    return {"checkpoint.every": every, "repeat": repeat, "wall_s": round(wall, 1),
            "policy_steps_per_s": round(float(np.mean(rates))) if rates else float("nan"),
            "trainer_wait_s": round(float(run.train.wait_s.sum()), 1),
            "checkpoint_files_kept": len(files), "load_1min": round(os.getloadavg()[0], 1)}


def main() -> None:
    """Alternate the two settings `--repeats` times and save the table (checkpoint_cost.md/.csv)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="connect_four_league")
    parser.add_argument("--steps", type=int, default=100_000, help="env steps per trainer")
    parser.add_argument("--generation", type=int, default=10_000, help="schedule.steps_per_generation")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    rows = []
    common = ["--steps", str(args.steps), f"schedule.steps_per_generation={args.generation}", "schedule.mode=async",
              "--seed", "1"]
    for repeat in range(args.repeats):
        for every in (1, 0) if repeat % 2 == 0 else (0, 1):
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp) / "run"
                wall = train(f"{args.config}.yaml", folder, [*common, f"checkpoint.every={every}"])
                rows.append(_row(folder, every, wall, repeat))
                print(rows[-1], flush=True)
    table = pd.DataFrame(rows).sort_values(["checkpoint.every", "repeat"])
    means = table.groupby("checkpoint.every")[["wall_s", "policy_steps_per_s"]].mean()
    on, off = means.loc[1], means.loc[0]
    save(table, "checkpoint_cost",
         f"{args.config}, async, 3 ranks, {args.steps} steps per trainer, a generation every {args.generation} "
         f"steps. Mean over repeats: checkpoint.every 1: {on.wall_s:.1f} s wall, {on.policy_steps_per_s:.0f} "
         f"steps/s per policy; every 0: {off.wall_s:.1f} s, {off.policy_steps_per_s:.0f} steps/s; throughput "
         f"with checkpoints / without = {on.policy_steps_per_s / off.policy_steps_per_s:.2f}, wall time ratio "
         f"{on.wall_s / off.wall_s:.2f}. load_1min: the machine's load when each run ended (a shared machine).")


if __name__ == "__main__":
    main()
