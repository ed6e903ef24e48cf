"""A real one-node SLURM cluster for the tests of slurm/*.sbatch, started once per test session."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.slurm.cluster import LocalCluster, unavailable


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[LocalCluster]:
    """munged + slurmctld + slurmd on localhost; skipped (with the reason) where SLURM cannot run."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    # A short folder under /tmp: munge's socket path must stay within the Unix limit (108 bytes).
    root = Path(tempfile.mkdtemp(prefix="mpimarl-slurm-", dir="/tmp"))
    cluster = LocalCluster(root)
    try:
        cluster.start()
    except Exception:
        logs = cluster.logs()
        cluster.stop()
        pytest.fail(f"the local SLURM cluster did not start:\n{logs}")
    yield cluster
    cluster.stop()
    shutil.rmtree(root, ignore_errors=True)


def scontrol_job(cluster: LocalCluster, job: str) -> dict[str, str]:
    """`scontrol show job -o JOB` as a dict (JobState, Restarts, ExitCode, ...)."""
    out = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True,
                         env=cluster.env(), timeout=30)
    fields: dict[str, str] = {}
    for word in out.stdout.split():
        key, _, value = word.partition("=")
        fields.setdefault(key, value)
    return fields


def wait_for(cluster: LocalCluster, job: str, done: object, timeout: float, what: str) -> dict[str, str]:
    """Poll the job until `done(info)` holds; fail (with the job's state) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    info: dict[str, str] = {}
    while time.monotonic() < deadline:
        info = scontrol_job(cluster, job)
        if done(info):  # type: ignore[operator]
            return info
        time.sleep(0.5)
    pytest.fail(f"job {job}: {what} did not happen within {timeout:.0f} s; job: {info}\n{cluster.logs()}")
