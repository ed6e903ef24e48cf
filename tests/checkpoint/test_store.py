"""Checkpoint files without MPI: the state tree round trip, atomic writes, and the loader taking the
newest generation that every rank saved whole (partial, truncated and damaged files are skipped)."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from mpimarl.checkpoint import (
    CheckpointError,
    checkpoint_path,
    complete_generations,
    generation_seed,
    newest_complete,
    prune,
    read_checkpoint,
    write_checkpoint,
)


def test_state_tree_round_trip_keeps_arrays_tensors_int_keys_and_nan(tmp_path: Path) -> None:
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.ones(4, 3)).sum().backward()
    opt.step()
    tree = {
        "net": net.state_dict(),
        "optimizer": opt.state_dict(),  # keyed by int, with tensor 'step' and tuple betas
        "rng": np.random.default_rng(3).bit_generator.state,  # 128-bit ints
        "torch_rng": torch.get_rng_state(),
        "obs": np.arange(12, dtype=np.float32).reshape(4, 3),
        "mask": np.array([[True, False]]),
        "pairs": {(0, "player_0"): 5},
        "nan": math.nan,
        "nested": [1, "a", None, {"x": [2.5]}],
    }
    path = write_checkpoint(tmp_path / "c.h5", tree, generation=4, rank=2)
    back = read_checkpoint(path, generation=4, rank=2)
    for k, v in tree["net"].items():
        assert torch.equal(back["net"][k], v)
    opt2 = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=1e-3)
    opt2.load_state_dict(back["optimizer"])  # loads: the int keys came back as ints
    for a, b in zip(opt.state.values(), opt2.state.values()):
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert a[name].shape == b[name].shape and torch.equal(a[name], b[name])
    assert back["rng"] == tree["rng"]
    assert torch.equal(back["torch_rng"], tree["torch_rng"])
    assert back["obs"].dtype == np.float32 and np.array_equal(back["obs"], tree["obs"])
    assert back["mask"].dtype == bool and back["pairs"] == {(0, "player_0"): 5}
    assert math.isnan(back["nan"]) and back["nested"] == [1, "a", None, {"x": [2.5]}]
    with h5py.File(path) as f:  # arrays are datasets, the rest JSON: nothing pickled
        assert set(f.attrs) >= {"format", "state", "complete"} and len(f["arrays"]) >= 6


def test_a_value_that_is_not_data_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="cannot store object"):
        write_checkpoint(tmp_path / "c.h5", {"x": object()}, generation=0, rank=0)
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def _write_all(folder: Path, generation: int, world: int = 3) -> None:
    for rank in range(world):
        write_checkpoint(checkpoint_path(folder, generation, rank), {"g": generation, "r": rank},
                         generation=generation, rank=rank)


def test_newest_whole_generation_skips_truncated_partial_and_missing_files(tmp_path: Path) -> None:
    _write_all(tmp_path, 2)
    _write_all(tmp_path, 3)
    assert complete_generations(tmp_path, 3) == [2, 3]
    # Rank 1's newest file is cut short (a full disk): generation 3 is no longer whole.
    newest = checkpoint_path(tmp_path, 3, 1)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or damaged"):
        read_checkpoint(newest)
    assert newest_complete(tmp_path, 3) == 2
    # A writer killed mid-write leaves only a temporary file; a missing rank file also disqualifies.
    write_checkpoint(checkpoint_path(tmp_path, 4, 0), {"g": 4}, generation=4, rank=0)
    (tmp_path / "g000004-rank0001.h5.tmp-999").write_bytes(b"\x89HDF partial")
    assert newest_complete(tmp_path, 3) == 2
    assert read_checkpoint(checkpoint_path(tmp_path, 2, 1)) == {"g": 2, "r": 1}


def test_a_file_without_its_complete_mark_or_of_another_kind_is_not_a_checkpoint(tmp_path: Path) -> None:
    _write_all(tmp_path, 1)
    _write_all(tmp_path, 2)
    with h5py.File(checkpoint_path(tmp_path, 2, 2), "r+") as f:
        del f.attrs["complete"]
    assert newest_complete(tmp_path, 3) == 1
    foreign = checkpoint_path(tmp_path, 1, 0)
    foreign.unlink()
    with h5py.File(foreign, "w") as f:
        f.attrs["format"] = "something-else"
    assert newest_complete(tmp_path, 3) is None
    with pytest.raises(CheckpointError, match="not an mpimarl checkpoint"):
        read_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="holds generation 2, not 3"):
        read_checkpoint(checkpoint_path(tmp_path, 2, 0), generation=3)


def test_prune_keeps_each_ranks_newest_files_only(tmp_path: Path) -> None:
    for g in range(4):
        _write_all(tmp_path, g, world=2)
    (tmp_path / "g000005-rank0001.h5.tmp-1").write_bytes(b"x")  # a dead writer's leftover
    prune(tmp_path, 1, keep=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert [n for n in names if "rank0001" in n] == ["g000002-rank0001.h5", "g000003-rank0001.h5"]
    assert len([n for n in names if "rank0000" in n]) == 4  # other ranks' files are theirs to prune


def test_generation_seeds_are_spawned_streams_distinct_per_rank_generation_and_stream() -> None:
    seeds = {generation_seed(r, g, s) for r in (10, 11) for g in range(5) for s in (0, 1)}
    assert len(seeds) == 20
    # The same stream SeedSequence(rank_seed).spawn would hand out: child g, then its child s.
    child = np.random.SeedSequence(10).spawn(3)[2].spawn(2)[1]
    assert generation_seed(10, 2, 1) == int(child.generate_state(1, np.uint32)[0])
