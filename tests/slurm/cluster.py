"""A real one-node SLURM cluster on localhost, for the tests of `slurm/*.sbatch`.

It runs Debian's `slurm-wlm` and `munge` daemons, each in the foreground and private to one
folder: its own munge key and socket, its own ports, state, spool and logs, so it touches no system
configuration and does not clash with another cluster on the same machine. Clients (sbatch,
squeue, scontrol, ...) find it through the SLURM_CONF variable of :meth:`LocalCluster.env`.

The node is declared with more CPUs than the machine has (``SlurmdParameters=config_overrides``)
so a 3-task job fits on 2 cores; ``ProctrackType=proctrack/linuxproc`` and ``TaskPlugin=task/none``
need no cgroups. The daemons run as root (as CI does); :func:`unavailable` says why a cluster
cannot be started here (not root, SLURM not installed).

Also a script: ``python tests/slurm/cluster.py DIR`` starts a cluster in DIR, prints the
``export SLURM_CONF=...`` line and keeps it up until Ctrl-C.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sacct", "srun")
NODE_NAME = "mpimarl-node"
NODE_CPUS = 8


def unavailable() -> str | None:
    """Why a local cluster cannot run here, or None when it can."""
    missing = [name for name in (*DAEMONS, *CLIENTS) if name != "sacct" and shutil.which(name) is None]
    if missing:
        return (f"SLURM is not installed ({', '.join(missing)} missing): "
                "apt-get install -y slurm-wlm munge (.ci/run does this)")
    if os.geteuid() != 0:
        return "the local SLURM cluster's slurmd must run as root (CI runs as root)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalCluster:
    """munged + slurmctld + slurmd for one node, all kept under `root`; stop() ends them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "slurm.conf"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def env(self) -> dict[str, str]:
        """The environment for clients (sbatch, squeue, ...) of this cluster."""
        env = dict(os.environ, SLURM_CONF=str(self.conf))
        for key in [k for k in env if k.startswith("SLURM_") and k != "SLURM_CONF"]:
            del env[key]  # running inside another job must not leak into this cluster's jobs
        return env

    # -- start ------------------------------------------------------------------------------------
    def start(self, timeout: float = 60) -> None:
        """Write the key and config, start the three daemons, wait until the node is idle."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        for sub in ("state", "spool", "munge"):
            (self.root / sub).mkdir(exist_ok=True)
            (self.root / sub).chmod(0o700)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        sock = self.root / "munge" / "munge.socket"
        self._spawn("munged", ["munged", "--foreground", "--force", f"--key-file={key}", f"--socket={sock}",
                               f"--pid-file={self.root / 'munge' / 'munged.pid'}",
                               f"--log-file={self.root / 'munged.log'}",
                               f"--seed-file={self.root / 'munge' / 'munged.seed'}"])
        self._wait(lambda: sock.exists(), timeout, "munged's socket")
        self.conf.write_text(self._config(sock))
        self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
        self._spawn("slurmd", ["slurmd", "-D", "-N", NODE_NAME, "-f", str(self.conf)])
        self._wait(self._node_ready, timeout, "the SLURM node to become idle")

    def _config(self, sock: Path) -> str:
        r = self.root
        return f"""\
# A one-node test cluster written by tests/slurm/cluster.py.
ClusterName=mpimarltest
# Job ids unique to this cluster: MPICH names its shared-memory segments after the PMI job and
# step, and a segment left in /dev/shm by an aborted job of an earlier cluster with the same job
# id would make a new job's ranks wait forever at MPI_Init.
FirstJobId={random.randint(100_000, 60_000_000)}
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={sock}
SlurmUser=root
SlurmdUser=root
StateSaveLocation={r / 'state'}
SlurmdSpoolDir={r / 'spool'}
SlurmctldPidFile={r / 'slurmctld.pid'}
SlurmdPidFile={r / 'slurmd.pid'}
SlurmctldLogFile={r / 'slurmctld.log'}
SlurmdLogFile={r / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=5
MinJobAge=600
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName={NODE_NAME} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.root / f"{name}.out", "wb")  # noqa: SIM115 - kept open for the daemon's life
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env(),
                                            start_new_session=True)

    def _node_ready(self) -> bool:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode}:\n{self.logs()}")
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, env=self.env())
        return out.returncode == 0 and out.stdout.strip() in {"idle", "mixed", "allocated"}

    @staticmethod
    def _wait(ready: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise TimeoutError(f"local SLURM cluster: waited {timeout:.0f} s for {what}")
            time.sleep(0.2)

    # -- stop -------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Cancel every job, then end the daemons (each by its own process id)."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            subprocess.run(["scancel", "--full", "--user=root"], capture_output=True, env=self.env(), timeout=30)
            time.sleep(1)
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=15)
        self.procs.clear()

    def logs(self) -> str:
        """The tail of each daemon's log (for a failing test's message)."""
        parts = []
        for name in ("munged.log", "slurmctld.log", "slurmd.log", "munged.out", "slurmctld.out", "slurmd.out"):
            path = self.root / name
            if path.exists():
                parts.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-20:]))
        return "\n".join(parts)


if __name__ == "__main__":
    import sys

    reason = unavailable()
    if reason:
        sys.exit(reason)
    cluster = LocalCluster(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/mpimarl-slurm").resolve())
    # SIGTERM (kill PID) stops the cluster as Ctrl-C does, instead of leaving the daemons behind.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    cluster.start()
    print(f"export SLURM_CONF={cluster.conf}", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
