"""Trainer speed against the raw environment, measured in one run on this machine.

For connect_four_league and simple_spread_team: the raw step rate of the environment with random
actions (one process, one core), then a 3-rank run (server + 2 trainers) with the default config,
then the raw rate again. Reported per trainer: the learning loop's env steps/s (median of the train
table's steps_per_s, which includes acting, learning and waiting), the ratio to the mean raw rate,
and the time trainers waited on the server.

    python -m benchmarks.speed [--steps 300000]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
import yaml

from benchmarks.common import REPO, raw_steps_per_s, raw_steps_per_s_concurrent, save, train
from mpimarl.analysis import load_run

CASES = [("connect_four_league.yaml", "AEC, masks; ANCHORS raw 7.4k-9.9k"),
         ("simple_spread_team.yaml", "parallel, 3 agents; ANCHORS raw 1.9k-2.5k")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300_000, help="env steps per trainer")
    args = parser.parse_args()
    rows = []
    for config, anchor in CASES:
        cfg = yaml.safe_load((REPO / "configs" / config).read_text())
        env_id, kwargs = cfg["env"]["id"], cfg["env"].get("kwargs", {})
        raw_alone = raw_steps_per_s(env_id, kwargs)
        raw_before = raw_steps_per_s_concurrent(env_id, kwargs, 2)
        with tempfile.TemporaryDirectory() as tmp:
            wall = train(config, Path(tmp), ["--steps", str(args.steps)])
            run = load_run(Path(tmp) / "run.h5")
        raw_after = raw_steps_per_s_concurrent(env_id, kwargs, 2)
        raw = (raw_before + raw_after) / 2
        for rank, t in run.train.groupby("rank"):
            loop = float(t.steps_per_s.iloc[1:].median()) if len(t) > 1 else float(t.steps_per_s.median())
            pool = run.pool[run.pool["rank"] == rank]
            span = pool.time.max() - pool.time.min()
            end_to_end = (pool.env_steps.max() - pool.env_steps.min()) / span if span > 0 else float("nan")
            rows.append({
                "config": config.removesuffix(".yaml"), "rank": int(rank), "raw_alone_steps_per_s": round(raw_alone),
                "raw_steps_per_s": round(raw),
                "trainer_steps_per_s": round(loop), "ratio": round(loop / raw, 2),
                "end_to_end_steps_per_s": round(end_to_end), "end_to_end_ratio": round(end_to_end / raw, 2),
                "wait_s": round(float(t.wait_s.sum()), 2), "wait_fraction": round(float(t.wait_s.sum()) / span, 3),
                "run_wall_s": round(wall, 1), "anchor": anchor,
            })
    notes = ("ratio = trainer env steps/s (median over PPO updates: acting, learning and waiting) / raw env steps/s "
             "with random actions, measured before and after the run with two raw loops at once (the load the "
             "two trainers put on this 2-core machine); raw_alone is one raw loop on an idle machine. "
             "end_to_end uses the pool table (first to last snapshot, evaluation and synchronisation included).")
    save(pd.DataFrame(rows), "speed", notes)


if __name__ == "__main__":
    main()
