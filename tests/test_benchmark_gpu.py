"""benchmarks/gpu.py stays runnable where there is no GPU: its in-process parts with tiny budgets on
the CPU, and (slow) its determinism check, whose CPU runs must repeat bit for bit either way."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from benchmarks import gpu


def test_update_and_acting_parts_run_on_the_cpu(tmp_path: Path) -> None:
    assert gpu.main(["--device", "cpu", "--quick", "--parts", "update,act", "--out", str(tmp_path)]) == 0
    update = pd.read_csv(tmp_path / "gpu_update.csv")
    assert len(update) == 3 and (update["cpu_samples_per_s"] > 0).all()
    act = pd.read_csv(tmp_path / "gpu_act.csv")
    assert (act["us_per_step"] > 0).all() and act["what"].str.contains("CPU copy").any()
    text = (tmp_path / "gpu.md").read_text()
    assert "## update" in text and "## act" in text


def test_unknown_part_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        gpu.main(["--parts", "layouts,warp", "--out", str(tmp_path)])
    assert exc.value.code == 2


@pytest.mark.slow
@pytest.mark.mpi
def test_determinism_check_on_the_cpu(tmp_path: Path) -> None:
    """Two sync runs with trainer.deterministic on repeat exactly on the CPU (--quick on the CPU runs that
    setting alone: CPU runs repeat without it, which tests/roles/test_train_mpi.py checks)."""
    assert gpu.main(["--device", "cpu", "--quick", "--parts", "determinism", "--jobs", "2", "--timeout", "600",
                     "--out", str(tmp_path)]) == 0
    rows = pd.read_csv(tmp_path / "gpu_determinism.csv")
    assert list(rows["trainer.deterministic"].astype(str).str.lower()) == ["true"]
    assert rows["both_finished"].all() and rows["weights_bit_identical"].all() and rows["losses_identical"].all()
