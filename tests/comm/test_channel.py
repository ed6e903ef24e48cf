"""The MPI channel between two real ranks: JSON and weight buffers, tag checks, deadlines, broadcast."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, mpiexec

pytestmark = pytest.mark.mpi


def test_channel_between_two_ranks() -> None:
    """Messages arrive intact; a wrong tag names both tags and ranks; a silent peer times out."""
    out = subprocess.run([mpiexec(), "-n", "2", sys.executable, "-m", "tests.comm.channel_script"],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    reports = {r["rank"]: r for r in (json.loads(line[7:]) for line in out.stdout.splitlines()
                                       if line.startswith("REPORT "))}
    server = reports[0]
    assert server["json"] == {"hello": [1, 2.5, "x"]}
    assert server["weights_ok"] is True
    assert "expected ASSIGN from rank 1 but received DONE" in server["protocol_error"]
    assert "rank 0 waited" in server["timeout"]
    for r in (0, 1):
        assert reports[r]["plan"]["lineups"]["1"] == [["p-0", 2, "player"]]
