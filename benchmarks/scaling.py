"""Scaling one policy over ranks (learner groups) and rank 0's capacity.

    python -m benchmarks.scaling throughput [--seconds 150] [--configs C,...]   # 1 vs 2 ranks per policy
    python -m benchmarks.scaling capacity [--counts 8,32,64] [--seconds 15]
    python -m benchmarks.scaling actors [--seconds 150] [--configs cartpole,connect_four_league]

throughput: one policy trained by 1 rank (mpiexec -n 2) and by a learner group of 2 ranks
(mpiexec -n 3, `trainer.ranks_per_policy=2`), on connect four (target: a scheduled evaluation
against random reaching 0.95) and CartPole (target: a train row's mean episode return >= 475).
Rank 0 shares the machine's cores with the trainers (on a 2-core machine, a 2-rank group and the
server are three processes on two cores). Per-policy env steps/s are the policy's steps between its
first and last train row over the time between them.

actors: one policy trained by 1 trainer (mpiexec -n 2) against 1 IMPALA learner + 1 actor
(mpiexec -n 3, `trainer.actors_per_learner=1`), in the async schedule (the actor plays while the
learner learns) and the sync one (they take turns: no lag, deterministic). Per-policy env steps/s as
above (for actors: the steps behind the batches learned from), time to target, and the mean policy lag.

capacity: rank 0 (the real server, league and HDF5 recorder; evaluation off, as with
`evaluation.workers: trainers`) serving N oversubscribed *light trainers*
(`benchmarks/capacity_worker.py`) that publish and ask for line-ups as fast as they are answered,
without environment work. Reported: rank 0's service time per message kind, snapshots/s, weight
bytes/s, the light trainers' round-trip waits, and an extrapolation of how many real trainers rank 0
could serve with their median wait under 5% of their time per update (the arithmetic is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import REPO, mpiexec, save, train
from mpimarl.analysis import Run, load_run

CASES = {
    "connect_four_league": (["--steps", "400000", "schedule.steps_per_generation=20000",
                             "evaluation.pool_episodes=10", "evaluation.baseline_episodes=40"],
                            "win rate vs random", 0.95),
    "cartpole": (["--steps", "200000"], "train return", 475.0),
    "simple_spread_team": (["--steps", "300000"], "evaluated return per agent", -20.0),
}

THROUGHPUT_CASES = (
    # (config, ranks per policy, where evaluation episodes are played)
    ("connect_four_league", 1, "server"),
    ("connect_four_league", 2, "server"),
    ("connect_four_league", 1, "trainers"),
    ("connect_four_league", 2, "trainers"),
    ("simple_spread_team", 1, "server"),
    ("simple_spread_team", 2, "server"),
    ("cartpole", 1, "server"),
    ("cartpole", 2, "server"),
)


def load_average() -> float:
    """The machine's 1-minute load average (other jobs' share of the cores during a measurement)."""
    return round(os.getloadavg()[0], 1)


def _steps_per_s(run: Run) -> float:
    t = run.train.sort_values("time")
    if len(t) < 2:
        return float("nan")
    return float((t.env_steps.iloc[-1] - t.env_steps.iloc[0]) / (t.time.iloc[-1] - t.time.iloc[0]))


def _time_to_target(run: Run, config: str, threshold: float) -> float:
    if config == "cartpole":
        hit = run.train[run.train.episode_return_mean >= threshold]
        return float(hit.time.min()) if len(hit) else float("nan")
    if config.startswith("simple_spread"):
        ev = run.matches[run.matches.kind == "evaluation"]
        hit = ev[ev.return_mean >= threshold]
        return float(hit.time.min()) if len(hit) else float("nan")
    ev = run.matches[(run.matches.kind == "evaluation") & (run.matches.opponent_id == "random")
                     & run.matches.policy_id.str.startswith("player-")]
    rate = (ev.wins + 0.5 * ev.draws) / ev.episodes
    hit = ev[rate >= threshold]
    return float(hit.time.min()) if len(hit) else float("nan")


def throughput(seconds: float, only: list[str] | None = None) -> None:
    """1 vs 2 ranks per policy, each run capped at `seconds` of wall time (or its step budget)."""
    rows = []
    for config, ranks, evaluation in THROUGHPUT_CASES:
        if only and config not in only:
            continue
        args, metric, threshold = CASES[config]
        with tempfile.TemporaryDirectory() as tmp:
            load_before = load_average()
            wall = train(f"{config}.yaml", Path(tmp) / "run",
                         [*args, f"schedule.time_limit_s={seconds}", f"trainer.ranks_per_policy={ranks}",
                          f"evaluation.workers={evaluation}"],
                         ranks=1 + ranks, timeout=seconds + 600)
            run = load_run(Path(tmp) / "run" / "run.h5")
            rows.append({"config": config, "ranks_per_policy": ranks, "evaluation": evaluation,
                         "world_size": 1 + ranks, "policy_env_steps": int(run.pool.env_steps.max()),
                         "policy_steps_per_s": round(_steps_per_s(run)),
                         "target": f"{metric} >= {threshold:g}",
                         "time_to_target_s": round(_time_to_target(run, config, threshold), 1),
                         "wall_s": round(wall, 1), "load_before": load_before, "load_after": load_average()})
    table = pd.DataFrame(rows)
    base = table[table.ranks_per_policy == 1].set_index(["config", "evaluation"]).policy_steps_per_s
    table["speedup_vs_1_rank"] = [round(r.policy_steps_per_s / base[(r.config, r.evaluation)], 2)
                                  for r in table.itertuples()]
    save(table, "scaling_throughput",
         f"{os.cpu_count()} cores; rank 0 runs on the same cores as the trainers (ranks_per_policy=2: three "
         "processes on two cores). load_before/after: the 1-minute load average around each run (other jobs on "
         "the machine; the benchmark ran at nice -10 where so noted in the closing note). evaluation: who plays "
         "the evaluation episodes (server: rank 0, competing for the two cores with a 2-rank group; trainers: "
         f"the learners between updates). Runs capped at {seconds:g} s or their step budget; time to target is "
         "seconds since the run started (NaN: not reached in the run).")


ACTOR_LAYOUTS = {
    "1 trainer": (2, ["schedule.mode=async"]),
    "1 learner + 1 actor, async": (3, ["schedule.mode=async", "trainer.actors_per_learner=1"]),
    "1 learner + 1 actor, sync": (3, ["schedule.mode=sync", "trainer.actors_per_learner=1"]),
}


def actors(seconds: float, configs: list[str], name: str = "scaling_actors",
           extra_args: list[str] | None = None) -> None:
    """1 trainer vs 1 learner + 1 actor (async and sync), each run capped at `seconds` of wall time
    (`extra_args`: further overrides for every run, e.g. a shorter generation for a quick check)."""
    rows = []
    for config in configs:
        args, metric, threshold = CASES[config]
        for layout, (ranks, extra) in ACTOR_LAYOUTS.items():
            with tempfile.TemporaryDirectory() as tmp:
                wall = train(f"{config}.yaml", Path(tmp) / "run",
                             [*args, f"schedule.time_limit_s={seconds}", *extra, *(extra_args or [])],
                             ranks=ranks, timeout=seconds + 600)
                run = load_run(Path(tmp) / "run" / "run.h5")
                lag = run.train["policy_lag_mean"].mean() if "policy_lag_mean" in run.train else float("nan")
                rows.append({"config": config, "layout": layout, "world_size": ranks,
                             "policy_env_steps": int(run.pool.env_steps.max()),
                             "policy_steps_per_s": round(_steps_per_s(run)),
                             "policy_lag_mean": round(float(lag), 2),
                             "target": f"{metric} >= {threshold:g}",
                             "time_to_target_s": round(_time_to_target(run, config, threshold), 1),
                             "wall_s": round(wall, 1)})
    table = pd.DataFrame(rows)
    base = table[table.layout == "1 trainer"].set_index("config").policy_steps_per_s
    table["speedup"] = [round(r.policy_steps_per_s / base[r.config], 2) for r in table.itertuples()]
    save(table, name,
         f"Each run capped at {seconds:g} s of wall time (schedule.time_limit_s); rank 0 shares the "
         f"machine's {os.cpu_count()} cores with the trainer or the learner and its actor. "
         "speedup: per-policy env steps/s over the 1-trainer run of the same config.")


def capacity(counts: list[int], seconds: float, step_time_s: float | None, extra: list[str] | None = None,
             name: str = "scaling_capacity") -> None:
    """Rank 0 serving N light trainers, for each N in `counts`; `extra` config overrides (e.g. the pool
    section's pool.commit_window_s=0.05) and the results' `name`."""
    overrides = ["schedule.mode=async", "matchmaking.strategy=uniform", "evaluation.baseline_episodes=0",
                 "evaluation.pool_opponents=0", "evaluation.pool_episodes=0", "baselines=[]",
                 "matchmaking.baseline_fraction=0", *(extra or [])]
    rows = []
    for n in counts:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [mpiexec(), "-n", str(n + 1), sys.executable, "-m", "benchmarks.capacity_worker", tmp,
                   str(seconds), str(REPO / "configs" / "connect_four_league.yaml"), *overrides]
            out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=seconds + 900,
                                 env=dict(os.environ, OMP_NUM_THREADS="1"))
            if out.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
            server = json.loads((Path(tmp) / "rank_0.json").read_text())
            trainers = [json.loads((Path(tmp) / f"rank_{r}.json").read_text()) for r in range(1, n + 1)]
        t = server["timings"]
        waits = np.concatenate([tr["waits"] for tr in trainers])
        wall = server["wall_s"]
        rows.append({
            "light_trainers": n,
            "requests": len(t.get("REQUEST", [])),
            "request_service_ms_median": round(1e3 * float(np.median(t["REQUEST"])), 2),
            "request_service_ms_mean": round(1e3 * float(np.mean(t["REQUEST"])), 2),
            "publish_service_ms_median": round(1e3 * float(np.median(t["PUBLISH"])), 2),
            "train_row_service_ms_median": round(1e3 * float(np.median(t["TRAIN_STATS"])), 2),
            "snapshots_per_s": round(server["publishes"] / wall, 2),
            "weight_MB_per_s": round((server["bytes_sent"] + server["bytes_received"]) / wall / 1e6, 2),
            "trainer_wait_ms_median": round(1e3 * float(np.median(waits)), 1),
            "requests_per_s": round(len(t.get("REQUEST", [])) / wall, 1),
        })
    table = pd.DataFrame(rows)
    table["load_average"] = load_average()
    notes = _extrapolate(table, step_time_s)
    if extra:
        notes += "\nConfig overrides: " + " ".join(extra)
    save(table, name, notes)


def _extrapolate(table: pd.DataFrame, step_time_s: float | None) -> str:
    """How many real trainers rank 0 serves with their median wait under 5% of their update time."""
    # A real connect four trainer (configs/connect_four_league.yaml) contacts rank 0 once per update
    # (a train row, fire and forget) and once per generation (a publish and a line-up request, which
    # it waits for). Its time per update: ppo.rollout_steps learner transitions ~ 2 x 4096 env steps
    # at the single-rank rate measured by `throughput` (default below: 1,000 steps/s on this machine).
    step = step_time_s if step_time_s is not None else 8192 / 1000.0
    updates_per_generation = 50_000 / 8192
    gen_s = step * updates_per_generation
    row = table.iloc[-1]
    s_req = row.request_service_ms_mean / 1e3
    s_pub = row.publish_service_ms_median / 1e3
    s_row = row.train_row_service_ms_median / 1e3
    demand = (s_req + s_pub) / gen_s + s_row / step  # seconds of rank 0 per second of one trainer
    budget = 0.05 * step
    lines = [
        "Extrapolation (from the largest N measured): a real trainer needs rank 0 for "
        f"(request {s_req * 1e3:.1f} ms + publish {s_pub * 1e3:.1f} ms) per generation ({gen_s:.0f} s) + "
        f"a train row {s_row * 1e3:.1f} ms per update ({step:.1f} s) = {demand * 1e3:.2f} ms per second.",
        f"With M trainers rank 0 is busy rho = M x {demand:.5f}; a request waits about its service plus the "
        "queue ahead, W = s_req + s_busy x rho / (1 - rho) (M/D/1-like, s_busy the mean service of a message).",
    ]
    s_busy = (s_req + s_pub + updates_per_generation * s_row) / (2 + updates_per_generation)
    best = 0
    for m in range(1, 100_000):
        rho = m * demand
        if rho >= 1:
            break
        w = s_req + s_busy * rho / (1 - rho)
        if w < budget:
            best = m
        else:
            break
    lines.append(f"Budget: 5% of the update time = {budget * 1e3:.0f} ms; s_busy = {s_busy * 1e3:.2f} ms. "
                 f"Largest M with W < budget: {best} (rho = {best * demand:.2f}).")
    lines.append("Evaluation is off in this measurement (evaluation.workers: trainers takes the episodes off "
                 "rank 0); with evaluation.workers: server rank 0 also plays every evaluation episode.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["throughput", "capacity", "actors"])
    parser.add_argument("--seconds", type=float, default=None, help="per run (throughput 150, capacity 15)")
    parser.add_argument("--counts", default="8,32,64", help="capacity: numbers of light trainers")
    parser.add_argument("--configs", default=None, help="configs to run (actors: default cartpole,connect_four_league; "
                        "throughput: all of THROUGHPUT_CASES)")
    parser.add_argument("--name", default="scaling_actors", help="actors, capacity: results file name "
                        "(capacity: default scaling_capacity)")
    parser.add_argument("--set", action="append", default=[], help="actors, capacity: a config override for every run")
    parser.add_argument("--step-time-s", type=float, default=None,
                        help="capacity: a real trainer's seconds per update (default 8.2: 8192 steps at 1k/s)")
    args = parser.parse_args()
    args.configs_given = args.configs is not None
    args.configs = args.configs or "cartpole,connect_four_league"
    t0 = time.monotonic()
    if args.what == "throughput":
        throughput(args.seconds or 150.0, args.configs.split(",") if args.configs_given else None)
    elif args.what == "actors":
        actors(args.seconds or 150.0, args.configs.split(","), args.name, args.set)
    else:
        name = args.name if args.name != "scaling_actors" else "scaling_capacity"
        capacity([int(x) for x in args.counts.split(",")], args.seconds or 15.0, args.step_time_s, args.set, name)
    print(f"({time.monotonic() - t0:.0f} s)")


if __name__ == "__main__":
    main()
