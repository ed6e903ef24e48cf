"""Shared pieces of the benchmarks: raw environment speed, launching runs, saving tables."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def mpiexec() -> str:
    """The mpiexec beside this Python (the PyPI mpich wheel), else 'mpiexec' on PATH."""
    local = Path(sys.executable).parent / "mpiexec"
    return str(local) if local.exists() else "mpiexec"


def fresh_run_dir(runs: Path, name: str) -> Path:
    """RUNS/NAME, emptied of an earlier run (its run file, journal and checkpoints) and created."""
    out = runs / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    return out


def train(config: str, run_dir: Path, args: list[str], ranks: int = 3, timeout: float = 3600) -> float:
    """Run `mpiexec -n ranks python -m mpimarl train` and return its wall time in seconds."""
    cmd = [mpiexec(), "-n", str(ranks), sys.executable, "-m", "mpimarl", "train", str(REPO / "configs" / config),
           "--run-dir", str(run_dir), "server.progress_interval_s=60", *args]
    t0 = time.monotonic()
    out = subprocess.run(cmd, cwd=REPO, timeout=timeout, env=dict(os.environ, PYTHONUNBUFFERED="1"),
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return time.monotonic() - t0


def raw_steps_per_s(env_id: str, kwargs: dict, seconds: float = 5.0) -> float:
    """Steps per second of the environment with uniformly random legal actions, one core.

    One step is one env.step() call, in the loop PettingZoo's documentation shows (AEC:
    agent_iter/last/step with action_space(agent).sample(mask); parallel: step with a dict of
    sampled actions; Gymnasium: step with action_space.sample()).
    """
    import importlib

    import gymnasium

    if env_id.startswith("gymnasium:"):
        env = gymnasium.make(env_id.split(":", 1)[1], **kwargs)
        env.reset(seed=0)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            _, _, term, trunc, _ = env.step(env.action_space.sample())
            n += 1
            if term or trunc:
                env.reset()
        return n / (time.perf_counter() - t0)
    module = importlib.import_module(env_id)
    if hasattr(module, "parallel_env"):
        penv = module.parallel_env(**kwargs)
        penv.reset(seed=0)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            if not penv.agents:
                penv.reset()
            penv.step({a: penv.action_space(a).sample() for a in penv.agents})
            n += 1
        return n / (time.perf_counter() - t0)
    aec = module.env(**kwargs)
    aec.reset(seed=0)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for agent in aec.agent_iter():
            obs, _, term, trunc, _ = aec.last()
            if term or trunc:
                action = None
            else:
                mask = obs["action_mask"] if isinstance(obs, dict) and "action_mask" in obs else None
                action = aec.action_space(agent).sample(mask)
            aec.step(action)
            n += 1
        aec.reset()
    return n / (time.perf_counter() - t0)


def raw_steps_per_s_concurrent(env_id: str, kwargs: dict, processes: int, seconds: float = 5.0) -> float:
    """Mean per-process raw rate with `processes` copies of the raw loop running at once.

    This is the raw rate under the same load as the trainers see: a 3-rank job puts two trainers
    (and a mostly idle server) on this machine's two cores.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes) as pool:
        rates = pool.starmap(raw_steps_per_s, [(env_id, kwargs, seconds)] * processes)
    return sum(rates) / len(rates)


def save(table: pd.DataFrame, name: str, notes: str) -> None:
    """Print the table and save it as CSV and Markdown under benchmarks/results/."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    table.to_csv(RESULTS / f"{name}.csv", index=False)
    md = table.to_markdown(index=False) if _has_tabulate() else table.to_string(index=False)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    (RESULTS / f"{name}.md").write_text(f"# {name} ({stamp}, {os.cpu_count()} cores)\n\n{md}\n\n{notes}\n")
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.to_string(index=False))
    print(notes)


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
