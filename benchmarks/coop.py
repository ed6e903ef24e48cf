"""Cooperative credit assignment: independent PPO vs MAPPO vs COMA at equal budgets.

Each method trains the same task with the same seed and step budget on 3 ranks (server + 2 trainers;
speaker_listener: one speaker and one listener rank), then the run files are read back:

- final return per agent: the last evaluation of each policy's latest snapshot on fixed seeds (with
  its latest partners) and the mean training return over the last 10% of steps;
- speaker_listener's communication check: the listener with the trained speaker vs a random
  speaker on the same seeds (`mpimarl.analysis.communication_check`);
- throughput: trainer env steps/s (median of the train rows) and its ratio to independent PPO's;
- one learning-curve figure per task (results/coop_<task>.png).

    python -m benchmarks.coop speaker_listener [--steps 600000] [--only ippo,mappo,coma]
    python -m benchmarks.coop simple_spread [--steps 200000] [--parallel]
    python -m benchmarks.coop throughput [--updates 3 --rounds 3]   # in-process, CPU time, interleaved

Run folders go to --runs (default runs/bench/coop_*); tables to benchmarks/results/coop_<task>.md.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import REPO, RESULTS, fresh_run_dir, save, train
from mpimarl.analysis import Run, communication_check, load_run

METHODS = ("ippo", "mappo", "coma")
TASKS = {
    "speaker_listener": {
        "configs": {"ippo": "speaker_listener_team.yaml", "mappo": "speaker_listener_mappo.yaml",
                    "coma": "speaker_listener_coma.yaml"},
        # Independent PPO gets the same evaluation (cross-play, communication check) as the others.
        "extra": ["evaluation.pool_episodes=20", "evaluation.communication_roles=[listener]"],
        "steps": 600_000,
        "targets": "MAPPO or COMA >= -12 per agent (goal -10); listener >= 5 better with trained than random "
                   "messages; throughput >= 0.9x independent PPO",
        "anchors": "ANCHORS: random -41.5, world-state heuristic -7.8; independent PPO reached -16.7 at 600k steps",
    },
    "simple_spread": {
        "configs": {"ippo": "simple_spread_team.yaml", "mappo": "simple_spread_mappo.yaml",
                    "coma": "simple_spread_coma.yaml"},
        "extra": [],
        "steps": 200_000,
        "targets": ">= -14 per agent within the budget where independent PPO reaches -17 (1.6M steps per "
                   "trainer; goal -12); throughput >= 0.9x independent PPO",
        "anchors": "ANCHORS: random -26.5, world-state heuristic -7.8; independent PPO: -18.1 at 1.0M, -17.0 at 1.6M",
    },
}


def final_evaluation(run: Run) -> pd.DataFrame:
    """Per policy: the latest snapshot's evaluated return (its comparison with the random baseline,
    played with its latest partners on fixed seeds)."""
    m = run.matches
    ev = m[(m.kind == "evaluation") & (m.matchmaker == "comparator") & (m.opponent_id == "random")]
    rows = []
    for pid, group in ev.groupby("policy_id"):
        last = group[group.version == group.version.max()].iloc[-1]
        rows.append({"policy": pid, "version": int(last.version), "eval_return": float(last.return_mean),
                     "eval_episodes": int(last.episodes)})
    return pd.DataFrame(rows)


def late_training_return(run: Run, share: float = 0.1) -> dict[str, float]:
    """Mean training return per agent over the last `share` of each policy's steps."""
    out = {}
    for pid, group in run.train.groupby("policy_id"):
        cut = group.env_steps.max() * (1 - share)
        out[pid] = float(group[group.env_steps >= cut].episode_return_mean.mean())
    return out


def throughput(run: Run) -> float:
    """Mean over trainers of the median env steps/s of their train rows."""
    return float(run.train.groupby("policy_id").steps_per_s.median().mean())


def curve(run: Run, points: int = 40) -> pd.DataFrame:
    """Training return per agent against env steps per trainer (mean over trainers), binned."""
    t = run.train.dropna(subset=["episode_return_mean"])
    edges = np.linspace(0, t.env_steps.max(), points + 1)
    t = t.assign(bin=np.digitize(t.env_steps, edges[1:-1]))
    g = t.groupby("bin").agg(steps=("env_steps", "mean"), ret=("episode_return_mean", "mean"))
    return g


def train_together(jobs: dict[str, tuple[str, Path, list[str]]]) -> dict[str, float]:
    """Launch every (config, folder, args) job as its own `mpiexec -n 3` at once; wall time of each."""
    import os
    import subprocess
    import sys

    from benchmarks.common import mpiexec

    procs, starts, walls = {}, {}, {}
    for method, (config, folder, extra) in jobs.items():
        cmd = [mpiexec(), "-n", "3", sys.executable, "-m", "mpimarl", "train", str(REPO / "configs" / config),
               "--run-dir", str(folder), "server.progress_interval_s=60", *extra]
        log = open(folder / "train.log", "w")  # noqa: SIM115 - closed when the job ends
        procs[method] = (subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                          env=dict(os.environ, PYTHONUNBUFFERED="1")), log)
        starts[method] = time.monotonic()
    for method, (proc, log) in procs.items():
        code = proc.wait(timeout=3 * 3600)
        walls[method] = time.monotonic() - starts[method]
        log.close()
        if code != 0:
            raise RuntimeError(f"{method} failed ({code}); see {jobs[method][1] / 'train.log'}")
        print(f"{method}: trained in {walls[method]:.0f} s", flush=True)
    return walls


def run_task(args: argparse.Namespace) -> None:
    """Train every method on one task at the same budget; tabulate and plot."""
    task = TASKS[args.task]
    steps = args.steps or task["steps"]
    methods = args.only.split(",") if args.only else list(METHODS)
    runs: dict[str, Run] = {}
    walls: dict[str, float] = {}
    folders = {m: args.runs / f"coop_{args.task}_{m}" for m in methods}
    todo = [m for m in methods if not (args.reuse and (folders[m] / "run.h5").exists())]
    walls = {m: math.nan for m in methods}
    jobs = {m: (task["configs"][m], fresh_run_dir(args.runs, f"coop_{args.task}_{m}"),
                ["--steps", str(steps), f"--seed={args.seed}", f"name=coop_{args.task}_{m}", *task["extra"],
                 *([f"schedule.time_limit_s={args.time_limit_s}"] if args.time_limit_s else [])])
            for m in todo}
    if args.parallel:
        # All methods at once: the same machine load for each, so their speeds compare directly.
        walls.update(train_together(jobs))
    else:
        for method, (config, folder, extra) in jobs.items():
            walls[method] = train(config, folder, extra, timeout=3 * 3600)
            print(f"{method}: trained in {walls[method]:.0f} s", flush=True)
    for method in methods:
        runs[method] = load_run(folders[method] / "run.h5")
    base_speed = throughput(runs["ippo"]) if "ippo" in runs else math.nan
    rows = []
    for method, run in runs.items():
        late = late_training_return(run)
        speed = throughput(run)
        comm = communication_check(run)
        for rec in final_evaluation(run).itertuples():
            row = {"task": args.task, "method": method, "steps_per_trainer": steps,
                   "steps_reached": int(run.train.groupby("policy_id").env_steps.max().min()),
                   "wall_s": round(walls[method], 0),
                   "policy": rec.policy, "version": rec.version, "eval_return_per_agent": round(rec.eval_return, 2),
                   "late_train_return": round(late.get(rec.policy, math.nan), 2),
                   "steps_per_s": round(speed, 0), "throughput_vs_ippo": round(speed / base_speed, 3)}
            if not comm.empty:
                last = comm[comm.version == comm.version.max()].iloc[-1]
                best = comm.loc[comm.gap.idxmax()]
                row.update(listener_trained=round(float(last.trained), 2),
                           listener_random=round(float(last["random"]), 2),
                           comm_gap_final=round(float(last.gap), 2), comm_gap_best=round(float(best.gap), 2))
            rows.append(row)
    notes = (f"{steps} env steps per trainer, seed {args.seed}, mpiexec -n 3 (server + 2 trainers), run under "
             f"`nice -n {os.nice(0)}` on the shared 2-core machine (other sessions running: absolute speeds are noisy, "
             f"the methods ran {'at the same time' if args.parallel else 'one after another'}). "
             f"eval_return_per_agent: the latest snapshot's last scheduled evaluation "
             f"(evaluation.baseline_episodes fixed seeds, sampled actions, with its latest partners); "
             f"late_train_return: mean training return over the last 10% of steps; steps_per_s: median of the "
             f"train rows, mean over trainers. comm_*: listener's return with the trained speaker minus with a "
             f"random speaker (same seeds), final snapshot and best. Targets: {task['targets']}. {task['anchors']}.")
    save(pd.DataFrame(rows), f"coop_{args.task}", notes)
    _plot(args.task, runs, steps)


def _plot(task: str, runs: dict[str, Run], steps: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    for method, run in runs.items():
        c = curve(run)
        ax.plot(c.steps, c.ret, label=method)
    ax.set(title=f"{task}: training return (mean of 2 trainers)", xlabel="env steps per trainer",
           ylabel="episode return per agent")
    ax.legend()
    path = RESULTS / f"coop_{task}.png"
    fig.savefig(path, dpi=110)
    print(f"figure: {path}")


def in_process_throughput(args: argparse.Namespace) -> None:
    """Env steps/s of one trainer's loop (acting, stepping, learning; no MPI) per method, the methods
    interleaved in rounds so that a shared machine's load hits them alike."""
    import torch

    from mpimarl.algos.networks import RandomPolicy
    from mpimarl.algos.ppo import PPOLearner
    from mpimarl.config import load_config
    from mpimarl.roles.context import RunContext
    from mpimarl.rollout.runner import LEARNER, VectorMatches

    torch.set_num_threads(1)
    rows = []
    tasks = args.tasks.split(",") if args.tasks else list(TASKS)
    for task in tasks:
        spec = TASKS[task]
        loops = {}
        for method in METHODS:
            config = load_config(REPO / "configs" / spec["configs"][method])
            ctx = RunContext.build(config, None)
            role = config.role_names[-1]
            learner = PPOLearner(ctx.shape(role), config.ppo, torch.device("cpu"), 0, **ctx.learner_options(role))
            envs = [ctx.factory() for _ in range(config.ppo.num_envs)]
            vm = VectorMatches(envs, 0, ctx.critic_inputs(role, envs))
            seat, policies = {}, {}
            for r, rs in ctx.spec.roles.items():
                for a in rs.agents:
                    seat[a] = LEARNER if r == role else ("random", r)
                if r != role:
                    policies[("random", r)] = RandomPolicy(rs.action_space, np.random.default_rng(0))
            for i in range(len(envs)):
                vm.start(i, dict(seat))
            agents = len(ctx.spec.roles[role].agents)
            # Whole updates per round: rollout_steps transitions are rollout_steps / agents env steps.
            loops[method] = (vm, learner, seat, policies, args.updates * config.ppo.rollout_steps // agents)
        rates: dict[str, list[float]] = {m: [] for m in METHODS}
        walls: dict[str, list[float]] = {m: [] for m in METHODS}
        for _ in range(args.rounds):
            for method, (vm, learner, seat, policies, round_steps) in loops.items():
                start_steps, c0, t0 = vm.env_steps, time.process_time(), time.perf_counter()
                while vm.env_steps - start_steps < round_steps:
                    for ep in vm.tick(policies, learner):
                        vm.start(ep.env_index, dict(seat))
                    if learner.ready:
                        learner.update(0.0)
                # CPU seconds of this process: what the method costs, whatever else the machine runs.
                rates[method].append((vm.env_steps - start_steps) / (time.process_time() - c0))
                walls[method].append((vm.env_steps - start_steps) / (time.perf_counter() - t0))
        base = float(np.median(rates["ippo"]))
        for method in METHODS:
            med = float(np.median(rates[method]))
            rows.append({"task": task, "method": method, "rounds": args.rounds, "steps_per_round": loops[method][4],
                         "steps_per_cpu_s": round(med, 0), "ratio_vs_ippo": round(med / base, 3),
                         "per_round": " ".join(f"{r:.0f}" for r in rates[method]),
                         "wall_steps_per_s": round(float(np.median(walls[method])), 0)})
    notes = ("One trainer's loop in one process (the learning role of each config: simple_spread's team, "
             "speaker_listener's listener with a random speaker): act, step the config's env copies, read the "
             "state for centralised critics, update when the rollout is full; each round is "
             f"{args.updates} updates' worth of env steps. steps_per_cpu_s: env steps per CPU second of the process "
             "(time.process_time, so the shared machine's other load does not enter), median over rounds; "
             f"wall_steps_per_s for reference. Methods interleaved round by round under `nice -n {os.nice(0)}`. "
             "Target: >= 0.9x independent PPO.")
    save(pd.DataFrame(rows), "coop_throughput" + ("" if tasks == list(TASKS) else "_" + "_".join(tasks)), notes)


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=[*TASKS, "throughput"])
    parser.add_argument("--steps", type=int, default=None, help="env steps per trainer (default: per task)")
    parser.add_argument("--only", default=None, help="comma-separated methods (ippo,mappo,coma)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "bench")
    parser.add_argument("--reuse", action="store_true", help="read existing run files instead of training")
    parser.add_argument("--parallel", action="store_true", help="train the methods at the same time")
    parser.add_argument("--time-limit-s", type=float, default=None,
                        help="stop each run after the generation in which this many seconds passed "
                             "(schedule.time_limit_s; the table's steps_reached says how far it got)")
    parser.add_argument("--updates", type=int, default=3, help="throughput: PPO updates per method per round")
    parser.add_argument("--rounds", type=int, default=3, help="throughput: rounds")
    parser.add_argument("--tasks", default=None, help="throughput: comma-separated tasks (default: all; "
                        "a subset saves coop_throughput_<tasks>)")
    args = parser.parse_args()
    if args.task == "throughput":
        in_process_throughput(args)
    else:
        run_task(args)


if __name__ == "__main__":
    main()
