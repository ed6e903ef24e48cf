"""Following a live run: a reader process loads the run file while a writer process appends to it,
and `mpimarl report --follow` redraws the figures until the run finishes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from mpimarl.analysis import load_run
from mpimarl.record.live import live_writer, sequence_path
from tests.conftest import REPO

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    from mpimarl.record.recorder import RunRecorder

    path, stop = sys.argv[1], Path(sys.argv[2])  # writes until the file `stop` exists
    rec = RunRecorder(path, {"config": {"seed": 1}, "finished": False})
    print("ready", flush=True)
    start, r = time.monotonic(), 0
    while not stop.exists() and time.monotonic() - start < 300:
        for rank in (1, 2):
            rec.append("train", [{"time": r * 0.1, "generation": r // 10, "rank": rank, "policy_id": f"p{rank}",
                                  "role": "player", "version": r // 10, "env_steps": 100 * r, "episodes": r,
                                  "episode_return_mean": np.sin(r / 10) + rank}])
        if r % 10 == 0:
            rec.save_weights("p1", r // 10, "player", np.full(2000, r, np.float32), parent=None, layout="flat")
        r += 1
        time.sleep(0.01)
    rec.set_attr("finished", True)
    rec.close()
    print("rows", r, flush=True)
    """
)

READER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from mpimarl.analysis import load_run

    path, reads = sys.argv[1], int(sys.argv[2])
    last = 0
    for _ in range(reads):
        run = load_run(path)
        t = run.train
        for rank in (1, 2):
            mine = t[t["rank"] == rank]
            n = np.arange(len(mine))
            assert (mine["env_steps"].to_numpy() == 100 * n).all(), "a row is torn or missing"
        assert abs(len(t[t["rank"] == 1]) - len(t[t["rank"] == 2])) <= 1, "the tables disagree"
        assert len(t) >= last, "rows went back"
        last = len(t)
        for v in run.policies()["version"]:
            assert (run.weights("p1", int(v)) == 10 * v).all()
    print("read", last, flush=True)
    """
)


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


def _start_writer(tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    """A writer process appending train rows (two ranks) and snapshots until tmp_path/stop exists."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    path = tmp_path / "run.h5"
    writer = subprocess.Popen([sys.executable, str(script), str(path), str(tmp_path / "stop")],
                              stdout=subprocess.PIPE, text=True, env=_env())
    assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
    return writer, path


def test_a_reader_process_follows_a_live_writer(tmp_path: Path) -> None:
    """Each load during the writes sees whole rows only, tables that agree, and never fewer rows."""
    writer, path = _start_writer(tmp_path)
    try:
        assert live_writer(path) and sequence_path(path).exists()
        script = tmp_path / "reader.py"
        script.write_text(READER)
        reader = subprocess.run([sys.executable, str(script), str(path), "8"], capture_output=True, text=True,
                                env=_env(), timeout=120)
        still_writing = writer.poll() is None
    finally:
        (tmp_path / "stop").touch()
        out, _ = writer.communicate(timeout=60)
    assert reader.returncode == 0, reader.stderr
    assert still_writing, "the reads should overlap the writes"
    assert int(reader.stdout.split()[-1]) > 0
    assert writer.returncode == 0
    # Once the writer has closed the file, the write sequence is gone and the run reads as finished.
    assert not sequence_path(path).exists() and not live_writer(path)
    run = load_run(path)
    assert run.attrs["finished"] is True and len(run.train) == 2 * int(out.split()[-1])


def test_report_follow_redraws_until_the_run_finishes(tmp_path: Path) -> None:
    writer, path = _start_writer(tmp_path)
    cmd = [sys.executable, "-m", "mpimarl", "report", str(path), "--follow", "--interval", "1", "--out",
           str(tmp_path / "fig")]
    report = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert report.stdout is not None
        lines = []
        while len(lines) < 2:  # two redraws of the live run, then let it finish
            line = report.stdout.readline()
            assert line, report.stderr.read() if report.stderr else ""
            if "train rows" in line:
                lines.append(line.strip())
        (tmp_path / "stop").touch()
        writer.communicate(timeout=60)
        rest, err = report.communicate(timeout=120)
    finally:
        (tmp_path / "stop").touch()
        for proc in (writer, report):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert report.returncode == 0, err
    lines += [line for line in rest.splitlines() if "train rows" in line]
    assert all(line.endswith("run running") for line in lines[:2]), lines
    assert lines[-1].endswith("run finished"), lines
    rows = [int(line.split(" train rows")[0].split()[-1]) for line in lines]
    assert rows == sorted(rows) and rows[0] < rows[-1]
    assert (tmp_path / "fig" / "learning_curves.png").stat().st_size > 0


def test_report_follow_stops_when_the_writer_is_gone(tmp_path: Path) -> None:
    """A run whose writer was killed (a preempted job awaiting requeue) is drawn once, then follow ends."""
    writer, path = _start_writer(tmp_path)
    time.sleep(1)
    writer.kill()
    writer.communicate(timeout=60)
    report = subprocess.run([sys.executable, "-m", "mpimarl", "report", str(path), "--follow", "--interval", "1",
                             "--out", str(tmp_path / "fig")], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert report.returncode == 0, report.stderr
    assert report.stdout.strip().splitlines()[-1].endswith("run stopped")
