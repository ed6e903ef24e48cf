"""MaMuJoCo HalfCheetah 2x3 with the shipped MAPPO config: return curves over seeds, one table.

    python -m benchmarks.mamujoco --seed 1 --steps 500000      # train seed 1 (2 ranks), add it, rebuild the table
    python -m benchmarks.mamujoco --seed 1 --run R/run.h5 --load "12-24"   # add a run trained elsewhere
    python -m benchmarks.mamujoco                              # rebuild the table from the seeds saved so far

Each seed is saved as OUT_seed{S}.csv (every update that ended an episode: env steps, wall time, mean
episode return) and OUT_seed{S}.json (steps, wall time, load average, evaluation returns per
snapshot); a seed trained again replaces its files. OUT.md joins every saved seed: the return at
0.5M/1M/2M steps, the final and the best, per seed and as mean, sample standard deviation and range,
beside the published MAPPO/HAPPO figures (ANCHORS, at their own, larger budgets).

"Return at X" is the mean of the training updates' mean episode returns over the last 50k environment
steps up to X (about 25 updates of 2,048 steps, 8 episodes each: one update alone is noisy); "eval at
X" is the team return of the snapshot published at X in its evaluation (sampled actions, 4 episodes).
A run shorter than X has no value there. Seeds run one after another on the same machine compare in
return, not in wall time, when the load differs (the load is stated per seed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from pathlib import Path

import pandas as pd

from benchmarks.common import RESULTS, fresh_run_dir, train
from mpimarl.analysis import load_run

CONFIG = "mamujoco_halfcheetah_mappo.yaml"
OUT = RESULTS / "mamujoco_halfcheetah"
MARKS = (500_000, 1_000_000, 2_000_000)
WINDOW = 50_000
"""Environment steps of training updates averaged into "return at X"."""

ANCHORS = [
    ("MAPPO, Kuba et al. 2022 (HATRPO/HAPPO, ICLR), Fig. 'HalfCheetah 2x3'", "~1,600 / ~1,750 / ~3,200 (10M)",
     "10M environment steps; read off the plot in github.com/cyanrain7/TRPO-in-MARL plots/ma-mujoco_1.png "
     "(+-200; about 600 for every method at 0.5M)"),
    ("HAPPO, same figure", "~1,400 / ~2,700 / ~4,400 (10M)", "as above"),
    ("HATRPO, same figure", "~2,300 / ~3,500 / ~5,100 (10M)", "as above"),
    ("MAPPO, Zhong et al. 2024 (HARL, JMLR), MAMuJoCo on-policy figure", "~1,900 / ~3,200 / ~6,850 (10M)",
     "10M steps, agent_obsk 0, HalfCheetah-v2, tuned config tuned_configs/mamujoco/HalfCheetah-v2-2x3/mappo "
     "(20 envs, 3x128 ReLU, 15 epochs, clip 0.05); read off github.com/PKU-MARL/HARL "
     "assets/mamujoco_on_policy_learning_curve.jpg (+-300)"),
    ("HAPPO, HARL figure", "~2,600 / ~4,500 / ~7,000 (10M)", "as above"),
]
"""Published returns on HalfCheetah 2x3 at 1M / 2M / 10M steps. None of these papers prints a table
for this task: the numbers are read off their learning-curve figures, approximately. Budgets,
observation depth (agent_obsk), network sizes and MuJoCo versions differ from this run's."""


def _load() -> float:
    return os.getloadavg()[0]


class LoadSampler:
    """The 1-minute load average every 30 s while a run trains (min and max are what the table states)."""

    def __init__(self) -> None:
        self.samples = [_load()]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(30.0):
            self.samples.append(_load())

    def stop(self) -> str:
        self._stop.set()
        self._thread.join()
        self.samples.append(_load())
        return f"{min(self.samples):.1f}-{max(self.samples):.1f}"


def save_seed(run_path: Path, seed: int, load: str, out: Path) -> None:
    """OUT_seed{S}.csv and .json from a finished (or stopped) run file."""
    run = load_run(run_path)
    ended = run.train.dropna(subset=["episode_return_mean"])[["env_steps", "time", "episode_return_mean"]]
    ended.to_csv(f"{out}_seed{seed}.csv", index=False)
    evals = run.matches[(run.matches.kind == "evaluation") & (run.matches.opponent_id == "random")]
    snaps = run.pool[["version", "env_steps"]].merge(
        evals.groupby("version").return_mean.mean().rename("eval_return").reset_index(), on="version")
    meta = {
        "seed": seed, "run": str(run_path), "steps": int(run.config["schedule"]["total_steps"]),
        "env_steps": int(ended.env_steps.max()) if len(ended) else 0, "finished": run.attrs.get("finished") is True,
        "wall_s": round(float(run.train.time.max()), 1), "load": load,
        "evaluations": [[int(s), round(float(r), 1)] for s, r in zip(snaps.env_steps, snaps.eval_return)],
    }
    Path(f"{out}_seed{seed}.json").write_text(json.dumps(meta, indent=1) + "\n")


def _at(curve: pd.DataFrame, mark: int) -> float:
    window = curve[(curve.env_steps <= mark) & (curve.env_steps > mark - WINDOW)]
    return float(window.episode_return_mean.mean()) if curve.env_steps.max() >= mark - 1_000 else float("nan")


def _eval_at(meta: dict, mark: int) -> float:
    at = [r for s, r in meta["evaluations"] if mark - 5_000 <= s <= mark + 5_000]
    return at[-1] if at else float("nan")


def _fmt(x: float) -> str:
    return "-" if x != x else f"{x:,.0f}"


def _spread(values: list[float]) -> str:
    have = [v for v in values if v == v]
    if len(have) < 2:
        return "-" if not have else f"{have[0]:,.0f} (1 seed)"
    return (f"{statistics.mean(have):,.0f} +- {statistics.stdev(have):,.0f} "
            f"[{min(have):,.0f}, {max(have):,.0f}] ({len(have)} seeds)")


def build_table(out: Path) -> str:
    """OUT.md from every OUT_seed*.json/csv saved so far."""
    seeds = sorted(int(p.stem.rsplit("seed", 1)[1]) for p in out.parent.glob(f"{out.name}_seed*.json"))
    rows, columns = [], {f"return@{m // 1000}k": [] for m in MARKS}
    columns.update({f"eval@{m // 1000}k": [] for m in MARKS})
    columns.update({"final": [], "best": []})
    for seed in seeds:
        meta = json.loads(Path(f"{out}_seed{seed}.json").read_text())
        curve = pd.read_csv(f"{out}_seed{seed}.csv")
        values = {f"return@{m // 1000}k": _at(curve, m) for m in MARKS}
        values.update({f"eval@{m // 1000}k": _eval_at(meta, m) for m in MARKS})
        values.update(final=float(curve.episode_return_mean.iloc[-1]), best=float(curve.episode_return_mean.max()))
        for k, v in values.items():
            columns[k].append(v)
        rows.append(f"| {seed} | {meta['steps']:,} | " + " | ".join(_fmt(values[k]) for k in columns)
                    + f" | {meta['wall_s']:,.0f} | {meta['load']} |")
    header = "| seed | budget | " + " | ".join(columns) + " | wall s | load avg (1 min) |"
    lines = [
        "# MaMuJoCo HalfCheetah 2x3, MAPPO (configs/mamujoco_halfcheetah_mappo.yaml), 2 ranks", "",
        header, "|" + "---:|" * (len(columns) + 4),
        *rows,
        "| **mean +- sd [range]** | | " + " | ".join(_spread(v) for v in columns.values()) + " | | |",
        "",
        f"return@X: mean of the training updates' episode returns over the {WINDOW // 1000}k steps up to X; "
        "eval@X: the snapshot at X in its evaluation (4 episodes, sampled actions); final: the last update "
        "that ended episodes; best: the best update. lr is annealed to 0 over each run's budget, so a 500k "
        "run's 500k value is the end of its schedule. Random actions score about -266 to -302.",
        "",
        "ANCHORS (published, not re-run here; budgets differ: 10M steps against ours; values at 1M / 2M / 10M "
        "steps, read off figures, approximate):",
        *[f"- ANCHOR {name}: {value}; {note}" for name, value, note in ANCHORS],
    ]
    text = "\n".join(lines) + "\n"
    Path(f"{out}.md").write_text(text)
    return text


def main() -> None:
    """Train or add one seed (with --seed), then rebuild the joined table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, help="the seed to train (or to file --run under)")
    ap.add_argument("--steps", type=int, default=500_000, help="environment steps of a trained seed")
    ap.add_argument("--run", type=Path, help="add this run file instead of training")
    ap.add_argument("--load", default="", help="with --run: the load average measured beside it")
    ap.add_argument("--runs", type=Path, default=Path("runs/bench"), help="where trained seeds' run folders go")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.seed is not None:
        if args.run is not None:
            save_seed(args.run, args.seed, args.load, args.out)
        else:
            run_dir = fresh_run_dir(args.runs, f"mamujoco_seed{args.seed}")
            sampler = LoadSampler()
            started = time.strftime("%H:%M UTC", time.gmtime())
            train(CONFIG, run_dir, ["--steps", str(args.steps), "--seed", str(args.seed)], ranks=2, timeout=6 * 3600)
            save_seed(run_dir / "run.h5", args.seed, f"{sampler.stop()} (from {started})", args.out)
    print(build_table(args.out))


if __name__ == "__main__":
    main()
