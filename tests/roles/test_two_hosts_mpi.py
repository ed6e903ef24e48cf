"""A real job over two hosts, without a cluster: two emulated hosts on this machine.

Each host is a network + UTS namespace of its own (its own hostname, its own network stack), the two
joined by a veth pair with addresses in 10.231.7.0/24 that exist only inside these namespaces, so no
traffic leaves them. `mpiexec -launcher manual` (MPICH's hydra) runs in the first namespace and
prints one proxy command per host; the test starts each proxy in its host's namespace, as a
cluster's launcher would over ssh. MPI then sees two nodes: `MPI_COMM_TYPE_SHARED` splits by
proxy, ranks talk over the veth pair, and the file system (the run folder, its checkpoints) is shared.

Needs root (creating namespaces) and `unshare`, `nsenter` and `ip`; skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from mpimarl.analysis import load_run
from tests.conftest import CONFIGS, REPO, assert_same_runs, mpiexec, run_mpi

pytestmark = [pytest.mark.mpi, pytest.mark.slow]

SUBNET = "10.231.7"
"""Private addresses that exist only inside the two namespaces the test creates."""


@dataclass(frozen=True)
class Host:
    """One emulated host: the pid holding its namespaces, its hostname and address."""

    pid: int
    name: str
    address: str

    def enter(self) -> list[str]:
        """The command prefix that runs a program on this host."""
        return ["nsenter", "-t", str(self.pid), "-n", "-u"]


def _sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30)


@contextmanager
def emulated_hosts() -> Iterator[tuple[Host, Host]]:
    """Two hosts (namespaces) joined by a veth pair; torn down (the holders killed) afterwards."""
    missing = [t for t in ("unshare", "nsenter", "ip") if shutil.which(t) is None]
    if os.geteuid() != 0 or missing:
        pytest.skip(f"emulating hosts needs root and unshare/nsenter/ip (euid {os.geteuid()}, missing {missing})")
    holders = [subprocess.Popen(["unshare", "--net", "--uts", "sleep", "1800"]) for _ in range(2)]
    try:
        own = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + 10
        while any(os.readlink(f"/proc/{h.pid}/ns/net") == own for h in holders):
            if any(h.poll() is not None for h in holders) or time.monotonic() > deadline:
                pytest.skip("unshare --net --uts did not create namespaces here (no permission?)")
            time.sleep(0.05)
        a, b = (Host(h.pid, f"mpimarl-node-{x}", f"{SUBNET}.{i + 1}") for i, (h, x) in enumerate(zip(holders, "ab")))
        _sh(*a.enter(), "ip", "link", "add", "mpimarl0", "type", "veth", "peer", "name", "mpimarl1",
            "netns", str(b.pid))
        for host, dev in ((a, "mpimarl0"), (b, "mpimarl1")):
            _sh(*host.enter(), "hostname", host.name)
            _sh(*host.enter(), "ip", "link", "set", "lo", "up")
            _sh(*host.enter(), "ip", "addr", "add", f"{host.address}/24", "dev", dev)
            _sh(*host.enter(), "ip", "link", "set", dev, "up")
        yield a, b
    finally:
        for h in holders:
            h.kill()
            h.wait()


def run_on_hosts(hosts: list[tuple[Host, int]], args: list[str],
                 timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`mpiexec -launcher manual -hosts A:n,B:m python -m mpimarl ARGS`, the server on the first
    host and one hydra proxy started on each host in its namespace."""
    total = sum(n for _, n in hosts)
    spec = ",".join(f"{h.address}:{n}" for h, n in hosts)
    cmd = [*hosts[0][0].enter(), mpiexec(), "-launcher", "manual", "-hosts", spec, "-n", str(total),
           sys.executable, "-m", "mpimarl", *args]
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    assert server.stdout is not None
    launches: list[str] = []
    head: list[str] = []
    for line in server.stdout:
        if line.startswith("HYDRA_LAUNCH_END"):
            break
        if line.startswith("HYDRA_LAUNCH:"):
            launches.append(line.split(":", 1)[1].strip())
        else:
            head.append(line)
    if len(launches) != len(hosts):
        server.kill()
        pytest.fail(f"hydra printed {launches} for {len(hosts)} hosts: {server.communicate()}")
    proxies = [subprocess.Popen([*host.enter(), *shlex.split(launch)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, cwd=REPO, env=env)
               for (host, _), launch in zip(hosts, launches)]
    try:
        out, err = server.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        server.kill()
        out, err = server.communicate()
        pytest.fail(f"two-host job did not finish within {timeout} s:\n{out[-3000:]}\n{err[-3000:]}")
    finally:
        for p in proxies:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    return subprocess.CompletedProcess(cmd, server.returncode, "".join(head) + out, err)


CONFIG = str(CONFIGS / "connect_four_league.yaml")
# 5 ranks: rank 0 and the first learner of player-0 on host a; the second learner of player-0 and
# both learners of player-1 on host b. player-0's learner group spans the two hosts.
ARGS = ["--seed", "4", "--steps", "1500", "schedule.steps_per_generation=500", "ppo.num_envs=4",
        "ppo.rollout_steps=256", "trainer.ranks_per_policy=2", "evaluation.baseline_episodes=4",
        "evaluation.pool_episodes=2", "evaluation.num_envs=4"]


def test_a_job_over_two_hosts_records_them_and_resumes_on_one(tmp_path: Path) -> None:
    """Rank 0 on one host, a learner group spanning both, checkpoints in the shared folder; stopped
    after generation 1, resumed with all ranks on one host, it ends exactly like the same run left
    alone on one host (sync on the CPU does not depend on where ranks run)."""
    folder = tmp_path / "two-hosts"
    with emulated_hosts() as (a, b):
        out = run_on_hosts([(a, 2), (b, 3)], ["train", CONFIG, "--run-dir", str(folder), *ARGS,
                                              "--stop-after-generation", "1"])
    assert out.returncode == 143, out.stderr[-3000:]
    run = load_run(folder / "run.h5")
    assert run.attrs["hosts"] == [a.name, a.name, b.name, b.name, b.name]
    ranks = run.ranks()
    assert list(ranks["host"]) == run.attrs["hosts"]
    assert list(ranks["local_rank"]) == [0, 1, 0, 1, 2]
    assert run.attrs["policy_ranks"] == {"player-0": [1, 2], "player-1": [3, 4]}
    # Every rank wrote its checkpoint of generation 1 into the one shared folder.
    saved = sorted(p.name for p in (folder / "checkpoints").glob("g000001-rank*.h5"))
    assert saved == [f"g000001-rank{r:04d}.h5" for r in range(5)]

    # A different host layout on resume: every rank on this machine's own host.
    resumed = run_mpi(5, ["train", CONFIG, "--run-dir", str(folder), *ARGS, "--resume"], timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    reference = tmp_path / "one-host"
    alone = run_mpi(5, ["train", CONFIG, "--run-dir", str(reference), *ARGS], timeout=600)
    assert alone.returncode == 0, alone.stderr[-3000:]
    after = load_run(folder / "run.h5")
    assert after.attrs["finished"] is True
    assert after.attrs["resumes"][-1]["hosts"] == load_run(reference / "run.h5").attrs["hosts"]
    assert_same_runs(load_run(reference / "run.h5"), after)
