"""What do learning firms charge? Repeated Bertrand pricing (examples/bertrand) under `latest` and `pfsp`.

    python benchmarks/bertrand.py [--steps 48000] [--seeds 0 1 2] [--episodes 20]

Trains two firms (3 MPI ranks: the server and one trainer per firm) for each matchmaking strategy
and seed, then plays each run's two final policies against each other on fresh seeds and reports
the prices they charge against the one-shot Nash price p_N and the monopoly price p_M, and Calvano
et al.'s collusion index Delta = (profit - pi_N) / (pi_M - pi_N) (0: competitive, 1: a cartel).
Writes benchmarks/results/bertrand.{csv,md}; runs go to runs/bertrand/ (not versioned).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, fresh_run_dir, mpiexec, save  # noqa: E402
from examples.bertrand.pricing import BertrandEnv  # noqa: E402
from mpimarl.analysis import load_run  # noqa: E402

CONFIG = REPO / "examples" / "bertrand" / "bertrand.yaml"
TAIL = 50
"""Prices and profits are averaged over the last TAIL periods of each 100-period episode (after the
random first prices have washed out)."""


def train(run_dir: Path, strategy: str, seed: int, steps: int) -> float:
    """One training run; returns its wall time in seconds."""
    cmd = [mpiexec(), "-n", "3", sys.executable, "-m", "mpimarl", "train", str(CONFIG), "--run-dir", str(run_dir),
           "--seed", str(seed), "--steps", str(steps), f"schedule.steps_per_generation={steps // 3}",
           f"matchmaking.strategy={strategy}", "server.progress_interval_s=60"]
    t0 = time.monotonic()
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=3600,
                         env=dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1"))
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return time.monotonic() - t0


def play(run_path: Path, episodes: int, greedy: bool) -> dict[str, float]:
    """The two final policies of a run priced against each other: mean prices and profits.

    The episodes run side by side (one environment per episode, each firm's network called once per
    period on all of them), so an evaluation costs 2 x 100 forward passes."""
    run = load_run(run_path)
    latest = run.latest_versions()
    firms = [run.policy(pid, latest[pid]).acting_policy(greedy) for pid in ("firm-0", "firm-1")]
    torch.manual_seed(0)
    envs = [BertrandEnv() for _ in range(episodes)]
    obs = [env.reset(seed=10_000 + i)[0] for i, env in enumerate(envs)]
    agents = envs[0].possible_agents
    prices, profits = [], []
    for t in range(envs[0].horizon):
        actions = [firm.act(np.stack([o[a] for o in obs]), None) for firm, a in zip(firms, agents)]
        steps = [env.step({a: int(actions[k][i]) for k, a in enumerate(agents)}) for i, env in enumerate(envs)]
        obs = [s[0] for s in steps]
        if t >= envs[0].horizon - TAIL:
            prices += [[s[4][a]["price"] for a in agents] for s in steps]
            profits += [[s[4][a]["profit"] for a in agents] for s in steps]
    p, pi = np.array(prices), np.array(profits)
    market = envs[0].market
    return {"price_firm0": p[:, 0].mean(), "price_firm1": p[:, 1].mean(), "price": p.mean(),
            "profit": pi.mean(), "delta": market.collusion_index(pi.mean()),
            "at_or_above_pM": float((p >= market.monopoly_price - 1e-9).mean()),
            "at_or_below_pN": float((p <= market.nash_price + 1e-9).mean()),
            "versions": f"{latest['firm-0']}/{latest['firm-1']}"}


def _finished(path: Path) -> bool:
    """A run file that says it finished (its runs are reused: the script can be run again)."""
    try:
        return bool(load_run(path).attrs.get("finished"))
    except Exception:  # noqa: BLE001 - missing or broken: train it
        return False


def main() -> None:
    """Train, evaluate, tabulate."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=48_000, help="environment steps per firm")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--strategies", nargs="+", default=["latest", "pfsp"])
    parser.add_argument("--episodes", type=int, default=20, help="evaluation episodes per run")
    parser.add_argument("--runs", default=str(REPO / "runs" / "bertrand"))
    parser.add_argument("--retrain", action="store_true", help="train again where a finished run exists")
    args = parser.parse_args()
    # One thread: tiny networks, and OpenMP's spinning threads crawl on a loaded machine.
    torch.set_num_threads(1)

    env = BertrandEnv()
    rows: list[dict] = []
    for seed in args.seeds:  # seed-major: stopping early leaves every strategy with the same seeds
        for strategy in args.strategies:
            name = f"{strategy}-seed{seed}"
            run_dir = Path(args.runs) / name
            if args.retrain or not _finished(run_dir / "run.h5"):
                train(fresh_run_dir(Path(args.runs), name), strategy, seed, args.steps)
            wall = float(load_run(run_dir / "run.h5").attrs.get("wall_time_s", float("nan")))
            for greedy in (False, True):
                rows.append({"strategy": strategy, "seed": seed, "actions": "greedy" if greedy else "sampled",
                             **play(run_dir / "run.h5", args.episodes, greedy), "train_wall_s": wall})
            print(rows[-2], rows[-1], flush=True)
        _tabulate(env, rows, args)  # after every seed: a stopped benchmark still leaves its table


def _tabulate(env: BertrandEnv, rows: list[dict], args: argparse.Namespace) -> None:
    """Write benchmarks/results/bertrand.{csv,md} from the rows so far."""
    table = pd.DataFrame(rows)
    summary = (table.groupby(["strategy", "actions"])
               .agg(price=("price", "mean"), price_sd=("price", "std"), delta=("delta", "mean"),
                    delta_sd=("delta", "std"), at_or_above_pM=("at_or_above_pM", "mean"),
                    at_or_below_pN=("at_or_below_pN", "mean"), runs=("seed", "count"))
               .reset_index().round(3))
    random_prices = env.grid.mean()
    rng = np.random.default_rng(0)
    random_profit = env.market.profits(env.grid[rng.integers(0, len(env.grid), (20_000, 2))]).mean()
    notes = (f"Two firms, logit demand, Calvano et al. (2020) parameters: p_N = {env.market.nash_price:.3f}, "
             f"p_M = {env.market.monopoly_price:.3f}, grid of {len(env.grid)} prices from {env.grid[0]:.3f} to "
             f"{env.grid[-1]:.3f}. {args.steps} environment steps per firm ({args.steps // env.horizon} episodes), "
             f"3 generations; each run's final firm-0 vs firm-1, {args.episodes} episodes on fresh seeds, "
             f"prices and profits over the last {TAIL} of 100 periods. Uniformly random pricing: mean price "
             f"{random_prices:.3f}, Delta {env.market.collusion_index(random_profit):.3f}.\n\n"
             "Summary over seeds (mean, sd):\n\n" + summary.to_string(index=False))
    save(table.round(4), "bertrand", notes)


if __name__ == "__main__":
    main()
