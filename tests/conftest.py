"""Shared test helpers: launching real MPI jobs the way users do, with a timeout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import settings

# Property tests (hypothesis) draw fresh examples on every run while developing, so they keep finding
# new cases; in CI (CI set, as .ci/run does) they replay a fixed sequence, so a submission's CI does
# not fail on a case nobody has seen yet. Whatever a random run finds becomes a test fix or an
# explicit example.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def pytest_configure(config: pytest.Config) -> None:
    """Compile the package's bytecode once, before any test launches ranks: with PYTHONDONTWRITEBYTECODE
    set (as on these machines) every rank of the suite's few hundred MPI jobs would otherwise compile
    mpimarl's sources again at start-up. (__pycache__ is git-ignored; a read-only checkout just skips it.)"""
    import compileall

    compileall.compile_dir(REPO / "mpimarl", quiet=2)


def mpiexec() -> str:
    """The mpiexec next to this Python (the PyPI mpich wheel), else the one on PATH."""
    local = Path(sys.executable).parent / "mpiexec"
    if local.exists():
        return str(local)
    found = shutil.which("mpiexec")
    if found is None:
        pytest.fail("mpiexec not found: install the project with the 'mpich' extra")
    return found


def run_mpi(n: int, args: list[str], timeout: float = 240, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`mpiexec -n N python -m mpimarl ARGS` in a subprocess; a hang fails the test instead of CI."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    cmd = [mpiexec(), "-n", str(n), sys.executable, "-m", "mpimarl", *args]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd or REPO)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"MPI job did not finish within {timeout} s (hang): {' '.join(cmd)}\n{exc.stdout}\n{exc.stderr}")


def run_cli(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m mpimarl ARGS` without MPI."""
    return subprocess.run([sys.executable, "-m", "mpimarl", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


RECORDED_TABLES = ("train", "matches", "ratings", "pool", "payoff", "meta")
"""The tables a sync run records identically for a seed (exploitability is exact-game only)."""
WALL_CLOCK = ("time", "steps_per_s", "wait_s")
"""Columns that measure wall time and differ between any two runs."""


def _canonical_rows(df: pd.DataFrame) -> pd.DataFrame:
    """A table without its wall-clock columns, in a canonical row order (ranks' rows interleave by timing)."""
    df = df.drop(columns=[c for c in WALL_CLOCK if c in df.columns])
    return df.sort_values(list(df.columns)).reset_index(drop=True)


def assert_same_runs(a: object, b: object) -> None:
    """Two loaded runs (`mpimarl.analysis.Run`) recorded the same learning: every table equal but for
    wall-clock columns, and every snapshot's weights bit for bit (what a deterministic sync run or
    an exact resume promises)."""
    for table in RECORDED_TABLES:
        pd.testing.assert_frame_equal(_canonical_rows(getattr(a, table)), _canonical_rows(getattr(b, table)),
                                      obj=f"table {table}")
    for row in a.pool.itertuples():  # type: ignore[attr-defined]
        np.testing.assert_array_equal(a.weights(row.policy_id, row.version),  # type: ignore[attr-defined]
                                      b.weights(row.policy_id, row.version),  # type: ignore[attr-defined]
                                      err_msg=f"weights of {row.policy_id}@{row.version}")


def play_cartpole(learner: object, seed: int, steps: int | None = None) -> None:
    """Fill a learner's rollout (the runner's sink) from four real CartPole copies: `steps` env steps,
    or, with None, until the learner has enough complete transitions for an update."""
    from mpimarl.envs.loader import resolve_env
    from mpimarl.rollout.runner import LEARNER, VectorMatches

    factory = resolve_env("gymnasium:CartPole-v1", {})
    vm = VectorMatches([factory() for _ in range(4)], seed=seed)
    for i in range(4):
        vm.start(i, {"agent": LEARNER})
    while (vm.env_steps < steps) if steps is not None else not learner.ready:  # type: ignore[attr-defined]
        for ep in vm.tick({}, learner):  # type: ignore[arg-type]
            vm.start(ep.env_index, {"agent": LEARNER})
