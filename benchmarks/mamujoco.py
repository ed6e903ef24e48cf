"""MaMuJoCo HalfCheetah 2x3 with the shipped MAPPO config: the return curve of one run as a table.

    mpiexec -n 2 python -m mpimarl train configs/mamujoco_halfcheetah_mappo.yaml --run-dir R --steps 500000
    python -m benchmarks.mamujoco R/run.h5 --load "LOADAVG" --out benchmarks/results/mamujoco_halfcheetah

Writes OUT.csv (every update that ended an episode: env steps, wall time, mean episode return) and
OUT.md (every ~50k steps, the final return, the best, and the stated load average).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mpimarl.analysis import load_run


def main() -> None:
    """Read a finished run file and write the curve table."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run")
    ap.add_argument("--out", default="benchmarks/results/mamujoco_halfcheetah")
    ap.add_argument("--load", default="", help="the load average measured beside the run")
    args = ap.parse_args()
    run = load_run(args.run)
    ended = run.train.dropna(subset=["episode_return_mean"])[["env_steps", "time", "episode_return_mean"]]
    out = Path(args.out)
    ended.to_csv(out.with_suffix(".csv"), index=False)
    points, mark = [], 0
    for row in ended.itertuples():
        if row.env_steps >= mark:
            points.append(row)
            mark = row.env_steps - row.env_steps % 50_000 + 50_000
    lines = [f"# MaMuJoCo HalfCheetah 2x3, MAPPO (configs/mamujoco_halfcheetah_mappo.yaml), {args.run}", "",
             f"Ranks: {run.attrs.get('world_size', '?') if hasattr(run, 'attrs') else '?'}; load average: {args.load}",
             "", "| env steps | wall s | mean episode return |", "|---:|---:|---:|"]
    lines += [f"| {p.env_steps} | {p.time:.0f} | {p.episode_return_mean:.1f} |" for p in points]
    last = ended.iloc[-1]
    lines += ["", f"Final: {last.episode_return_mean:.1f} at {int(last.env_steps)} steps, {last.time:.0f} s; "
              f"best update: {ended.episode_return_mean.max():.1f}. Random actions: about -266 to -302."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
