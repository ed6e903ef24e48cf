"""RunRecorder on real HDF5 files: attributes, committed rows, weights, errors, a killed writer."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

import mpimarl
from mpimarl.analysis import load_run
from mpimarl.errors import RunFileError
from mpimarl.record.recorder import RunRecorder
from mpimarl.record.schema import SCHEMA_VERSION

REPO_ROOT = Path(mpimarl.__file__).resolve().parent.parent


def _rating(policy_id: str, version: int, elo: float) -> dict[str, object]:
    return {
        "time": 0.5, "generation": 1, "policy_id": policy_id, "version": version, "role": "player",
        "elo": elo, "games": 10,
    }  # fmt: skip


def test_file_attributes_are_written_and_json_encoded(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    config = {"env": {"id": "connect_four"}, "trainers": [1, 2]}
    with RunRecorder(path, {"config": config, "world_size": 3, "hostnames": ["n1", "n2"], "seed": 7}) as rec:
        rec.set_attr("finished", True)
        rec.set_attr("summary", {"best": "p0"})
        assert rec.path == path
    with h5py.File(path, "r") as f:
        assert f.attrs["schema_version"] == SCHEMA_VERSION
        assert json.loads(f.attrs["config"]) == config
        assert f.attrs["world_size"] == 3 and f.attrs["created"]
        assert set(json.loads(f.attrs["json_attrs"])) == {"config", "hostnames", "summary"}
        assert f["tables/train"].attrs["committed"] == 0
    run = load_run(path)
    assert run.config == config
    assert run.attrs["hostnames"] == ["n1", "n2"] and run.attrs["summary"] == {"best": "p0"}
    assert run.attrs["finished"] is True and run.attrs["seed"] == 7
    assert run.attrs["mpimarl_version"] == mpimarl.__version__


def test_reserved_or_unstorable_attribute_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'schema_version' is reserved"):
        RunRecorder(tmp_path / "a.h5", {"schema_version": 9})
    assert not (tmp_path / "a.h5").exists()
    with RunRecorder(tmp_path / "b.h5", {}) as rec, pytest.raises(ValueError, match="'when'"):
        rec.set_attr("when", object())


def test_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    path.write_text("precious")
    with pytest.raises(RunFileError, match=f"{path}.*already exists"):
        RunRecorder(path, {})
    assert path.read_text() == "precious"


def test_unwritable_folder_is_named(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A folder without write permission. Root may write anywhere (CI runs as root), so as root the
    recorder runs in a forked child that has dropped to the unprivileged user `nobody` (a fork, not a
    new interpreter: this one may live where `nobody` cannot read)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    path = folder / "run.h5"
    try:
        if os.geteuid() != 0:
            with pytest.raises(RunFileError, match=f"cannot create run file {path}"):
                RunRecorder(path, {})
            return
        top = tmp_path_factory.getbasetemp().parent  # pytest-of-root: pytest's folders are 0700, let `nobody` in
        for parent in [tmp_path, *tmp_path.parents[:tmp_path.parents.index(top) + 1]]:
            parent.chmod(parent.stat().st_mode | 0o011)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report the error's text through the pipe, never return into pytest
            code = 4
            try:
                os.setgid(65534)
                os.setuid(65534)
                RunRecorder(path, {})
            except RunFileError as exc:
                os.write(write_end, str(exc).encode())
                code = 3
            finally:
                os._exit(code)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            message = pipe.read()
        assert os.waitpid(pid, 0)[1] >> 8 == 3, message
        assert f"cannot create run file {path}" in message
        assert not path.exists()
    finally:
        folder.chmod(0o700)


def test_folder_that_cannot_exist_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    path = blocker / "run.h5"
    with pytest.raises(RunFileError, match=f"cannot create run file {path}"):
        RunRecorder(path, {})


def test_append_commits_rows_and_a_bad_batch_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    with RunRecorder(path, {}) as rec:
        rec.append("ratings", [_rating("p0", 1, 1000.0), _rating("p1", 1, 1010.0)])
        rec.append("ratings", [])
        with pytest.raises(ValueError, match="'wins'"):
            rec.append("ratings", [_rating("p0", 2, 990.0), {**_rating("p1", 2, 1.0), "wins": 3}])
        rec.append("ratings", [_rating("p0", 2, 990.0)])
        assert rec.row_count("ratings") == 3
    rec.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        rec.append("ratings", [_rating("p0", 3, 1.0)])
    assert load_run(path).ratings[["policy_id", "version", "elo"]].values.tolist() == [
        ["p0", 1, 1000.0],
        ["p1", 1, 1010.0],
        ["p0", 2, 990.0],
    ]


def test_weights_are_float32_arrays_with_lineage(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    weights = np.linspace(-1, 1, 11)
    with RunRecorder(path, {}) as rec:
        rec.save_weights("prey_0", 2, "prey", weights, parent=("prey_0", 1), layout='[["w", [11]]]')
        with pytest.raises(ValueError, match="already stored"):
            rec.save_weights("prey_0", 2, "prey", weights, parent=None, layout="")
        with pytest.raises(ValueError, match="policy id"):
            rec.save_weights("a/b", 1, "prey", weights, parent=None, layout="")
    with h5py.File(path, "r") as f:
        ds = f["policies/prey_0/000002"]
        assert ds.dtype == np.float32 and ds.attrs["role"] == "prey"
        assert ds.attrs["parent_id"] == "prey_0" and ds.attrs["parent_version"] == 1
        np.testing.assert_array_equal(ds[...], weights.astype(np.float32))


CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from mpimarl.record.recorder import RunRecorder

    rec = RunRecorder(sys.argv[1], {"config": {"seed": 1}})
    row, batch = 0, 0
    while True:
        size = 1 + batch % 7  # batches of varying size straddle chunk boundaries
        rec.append("train", [
            {"time": r * 0.25, "generation": r, "rank": 1 + r % 3, "policy_id": f"policy_{r}",
             "role": "player", "version": r, "env_steps": 128 * r, "episodes": 2 * r,
             "episode_return_mean": r / 8, "policy_loss": -r / 16}
            for r in range(row, row + size)
        ])
        row += size
        if batch % 4 == 0:
            rec.save_weights("p", batch, "player", np.full(500 + batch, batch, np.float32),
                             parent=None, layout="flat")
        batch += 1
        if batch == 25:
            print(row, flush=True)
    """
)


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15])
def test_writer_killed_mid_run_leaves_only_whole_rows(tmp_path: Path, delay: float) -> None:
    script = tmp_path / "writer.py"
    script.write_text(CHILD)
    path = tmp_path / "run.h5"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, env=env)
    try:
        ready, _, _ = select.select([child.stdout], [], [], 30)
        assert ready, "the writer did not start within 30 s"
        rows_at_ready = int(child.stdout.readline())
        if delay:
            select.select([], [], [], delay)
        assert child.poll() is None, "the writer stopped on its own"
        live = load_run(path)  # a live file is read as the writer last left it whole, never half-updated
        assert len(live.train) >= rows_at_ready
        assert live.train.generation.tolist() == list(range(len(live.train)))
        np.testing.assert_array_equal(live.train.env_steps, 128 * np.arange(len(live.train)))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    run = load_run(path)
    train = run.train
    assert len(train) >= rows_at_ready
    r = np.arange(len(train))
    assert train.generation.tolist() == r.tolist()  # no gap, no duplicate
    assert train.policy_id.tolist() == [f"policy_{i}" for i in r]
    np.testing.assert_array_equal(train.env_steps, 128 * r)
    np.testing.assert_array_equal(train["rank"], 1 + r % 3)
    np.testing.assert_array_equal(train.episode_return_mean, r / 8)
    np.testing.assert_array_equal(train.policy_loss, -r / 16)
    assert train.value_loss.isna().all()
    snapshots = run.policies()
    assert len(snapshots) >= 7
    for version in snapshots.version:
        np.testing.assert_array_equal(run.weights("p", version), np.full(500 + version, version, np.float32))
