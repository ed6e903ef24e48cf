"""The sweep's array index -> run mapping (slurm/sweep.sbatch asks it which run it is)."""

from __future__ import annotations

import pytest

from mpimarl.errors import ConfigError
from mpimarl.sweep import main, parse_seeds, run_for_index, sweep_runs
from tests.conftest import CONFIGS


def test_every_config_and_seed_gets_one_index_and_its_own_folder() -> None:
    runs = sweep_runs(["configs/a.yaml", "other/b.yaml"], [0, 1, 7], root="runs/s")
    assert [(r.index, r.config, r.seed) for r in runs] == [
        (0, "configs/a.yaml", 0), (1, "configs/a.yaml", 1), (2, "configs/a.yaml", 7),
        (3, "other/b.yaml", 0), (4, "other/b.yaml", 1), (5, "other/b.yaml", 7)]
    assert len({r.run_dir for r in runs}) == 6 and runs[5].run_dir == "runs/s/b-seed7"
    assert run_for_index(4, ["configs/a.yaml", "other/b.yaml"], [0, 1, 7], "runs/s") == runs[4]


def test_seed_lists_and_ranges() -> None:
    assert parse_seeds("0-2,10") == [0, 1, 2, 10]
    assert parse_seeds("3, 1,3") == [3, 1]
    for bad in ("", "x", "3-1", "-1", "1-"):
        with pytest.raises(ConfigError, match="is not a seed"):
            parse_seeds(bad)


def test_bad_sweeps_are_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError, match="outside this sweep of 4 runs.*--array=0-3"):
        run_for_index(4, ["a.yaml", "b.yaml"], [0, 1])
    with pytest.raises(ConfigError, match="distinct file names"):
        sweep_runs(["x/a.yaml", "y/a.yaml"], [0])


def test_the_command_line_prints_what_the_batch_script_reads(capsys: pytest.CaptureFixture[str]) -> None:
    config = str(CONFIGS / "cartpole.yaml")
    assert main(["count", "0-4", config]) == 0
    assert capsys.readouterr().out.strip() == "5"
    assert main(["run", "3", "0-4", config, "--root", "runs/x"]) == 0
    assert capsys.readouterr().out.splitlines() == [config, "runs/x/cartpole-seed3", "3"]
    assert main(["run", "9", "0-4", config]) == 2
    assert "outside this sweep" in capsys.readouterr().err
    assert main(["count", "0", "missing.yaml"]) == 2
    assert "not found: missing.yaml" in capsys.readouterr().err
