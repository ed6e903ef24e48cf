"""The negamax search player's strength and speed: depths 1-5 against random, tactical and depth d-1.

Every pairing plays `--games` games of PettingZoo's connect_four_v3 (the real environment, 16 copies
stepped together as mpimarl's evaluator does), the first move alternating, on one process; the score
is (wins + draws/2) / games with a Wilson 95% interval, and games per minute include the environment
and the opponent. The load average is recorded beside each timing (this machine is shared).

    python -m benchmarks.negamax [--games 200] [--depths 1 2 3 4 5]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Hashable

import gymnasium
import numpy as np
import pandas as pd

from benchmarks.common import save
from mpimarl.algos.networks import RandomPolicy
from mpimarl.baselines import load_scripted
from mpimarl.envs import resolve_env
from mpimarl.league.payoff import wilson_interval
from mpimarl.rollout.evaluate import play_fixed
from mpimarl.rollout.runner import ActingPolicy

SEVEN = gymnasium.spaces.Discrete(7)
COPIES = 16


def play(first: ActingPolicy, second: ActingPolicy, games: int, seed: int) -> tuple[int, int, int]:
    """(wins, draws, losses) of `first` against `second`, the first move alternating."""

    def seating(k: int) -> dict[str, Hashable]:
        return {"player_0": "a", "player_1": "b"} if k % 2 == 0 else {"player_0": "b", "player_1": "a"}

    factory = resolve_env("pettingzoo.classic.connect_four_v3", {})
    episodes = play_fixed(factory, seating, {"a": first, "b": second}, games, seed, copies=COPIES)
    own = np.array([ep.side_returns("a")[0] for ep in episodes])
    return int((own > 0).sum()), int((own == 0).sum()), int((own < 0).sum())


def opponent(name: str, seed: int) -> ActingPolicy:
    """'random', 'tactical' or 'negamax:D'."""
    if name == "random":
        return RandomPolicy(SEVEN, np.random.default_rng(seed))
    if name.startswith("negamax:"):
        return load_scripted("negamax", SEVEN, seed, {"depth": int(name.split(":")[1])})
    return load_scripted(name, SEVEN, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--games", type=int, default=200, help="games per pairing (default 200)")
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 2, 3, 4, 5], help="depths to measure")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    for depth in args.depths:
        opponents = ["random", "tactical"] + ([f"negamax:{depth - 1}"] if depth > 1 else [])
        for k, other in enumerate(opponents):
            seed = args.seed + 1_000 * depth + 100 * k
            me = load_scripted("negamax", SEVEN, seed + 1, {"depth": depth})
            load_before = os.getloadavg()[0]
            t0, cpu0 = time.perf_counter(), time.process_time()
            wins, draws, losses = play(me, opponent(other, seed + 2), args.games, seed=seed)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            score = (wins + draws / 2) / args.games
            low, high = wilson_interval(wins + draws / 2, args.games)
            rows.append({"player": f"negamax:{depth}", "opponent": other,
                         "games": args.games, "wins": wins, "draws": draws, "losses": losses,
                         "score": round(score, 3), "low": round(low, 3), "high": round(high, 3),
                         "wall_s": round(wall, 1), "games_per_min": round(60 * args.games / wall),
                         "cpu_s": round(cpu, 1), "games_per_cpu_min": round(60 * args.games / cpu),
                         "load_avg_1min": f"{load_before:.1f}-{os.getloadavg()[0]:.1f}"})
            print(rows[-1], flush=True)
    notes = (f"{args.games} games per pairing on connect_four_v3 (16 env copies stepped together, one process), "
             "the first move alternating; score = (wins + draws/2) / games with Wilson 95% bounds. games_per_min "
             "(wall clock) and games_per_cpu_min (this process's CPU time: what one idle core would do) include "
             "the environment and the opponent (depth d-1 searches too). load_avg_1min: the machine's 1-minute "
             f"load average before and after the pairing ({os.cpu_count()} cores, shared with other jobs). "
             "ANCHORS: the tactical player scores 0.95 against random.")
    save(pd.DataFrame(rows), "negamax", notes)


if __name__ == "__main__":
    main()
