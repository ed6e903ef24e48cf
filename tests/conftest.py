"""Shared test helpers: launching real MPI jobs the way users do, with a timeout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


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
