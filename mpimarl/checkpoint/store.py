"""One rank's checkpoint file: a state tree written atomically, read back safely.

A *state tree* is JSON-like data (dicts, lists, str, int, float, bool, None) whose leaves may also
be numpy arrays or torch tensors. `write_checkpoint` stores the tree as one JSON document (file
attribute ``state``) with every array moved into its own HDF5 dataset under ``/arrays`` and
replaced by a reference; dicts whose keys are not all strings (torch's optimiser state is keyed by
int) are kept as lists of pairs. Nothing is pickled, so reading a checkpoint runs no code from it.

Atomicity: the file is written under a temporary name in the same folder, flushed and fsynced,
then renamed over its final name (and the folder fsynced), so a final name only ever holds a whole
file. A writer killed midway leaves a ``*.tmp-*`` file that readers never look at. A file that is
truncated or damaged later (a full disk, a copy gone wrong) fails `read_checkpoint` with a
CheckpointError; `complete_generations` skips such a generation, so a resume takes the previous one.

Files are named ``g{generation:06d}-rank{rank:04d}.h5`` in the run's ``checkpoints/`` folder; a
generation is whole when every rank's file of it reads back.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from mpimarl.errors import MpimarlError

CHECKPOINT_FORMAT = "mpimarl-checkpoint"
"""The ``format`` attribute of every checkpoint file."""

CHECKPOINT_VERSION = 1
"""Bumped when the layout of the state tree changes incompatibly."""

_NAME = re.compile(r"^g(\d{6,})-rank(\d{4,})\.h5$")


class CheckpointError(MpimarlError):
    """A checkpoint file is missing, partial, damaged or not a checkpoint (the message names it)."""


# ---- naming ----------------------------------------------------------------------------------


def checkpoint_path(folder: str | Path, generation: int, rank: int) -> Path:
    """The file of `rank`'s checkpoint at the boundary after generation `generation` was published."""
    return Path(folder) / f"g{generation:06d}-rank{rank:04d}.h5"


def _listing(folder: Path) -> dict[int, set[int]]:
    """generation -> ranks with a file of that name (whole or not)."""
    out: dict[int, set[int]] = {}
    if not folder.is_dir():
        return out
    for entry in folder.iterdir():
        m = _NAME.match(entry.name)
        if m:
            out.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    return out


def complete_generations(folder: str | Path, world_size: int) -> list[int]:
    """Generations (ascending) for which every rank 0..world_size-1 has a checkpoint that reads back."""
    folder = Path(folder)
    whole = []
    for generation, ranks in sorted(_listing(folder).items()):
        if not set(range(world_size)) <= ranks:
            continue
        try:
            for rank in range(world_size):
                _read_header(checkpoint_path(folder, generation, rank), generation, rank)
        except CheckpointError:
            continue
        whole.append(generation)
    return whole


def prune(folder: str | Path, rank: int, keep: int) -> None:
    """Delete `rank`'s checkpoints older than its newest `keep` (and its leftover temporary files).

    Each rank prunes only its own files. In the sync schedule a trainer can save generation g+1
    while a slower one is still writing g (rank 0 closed round g once both had published g), so
    with keep >= 3 generation g-1 stays whole on every rank whatever moment a job is killed.
    """
    folder = Path(folder)
    own = sorted(g for g, ranks in _listing(folder).items() if rank in ranks)
    for generation in own[:-keep] if keep > 0 else own:
        checkpoint_path(folder, generation, rank).unlink(missing_ok=True)
    suffix = f"-rank{rank:04d}.h5.tmp-"
    for entry in folder.glob(f"*{suffix}*"):
        if not entry.name.endswith(f"-{os.getpid()}"):
            entry.unlink(missing_ok=True)


def generation_seed(rank_seed: int, generation: int, stream: int = 0) -> int:
    """A seed for a fresh random stream of one rank at one generation boundary.

    numpy's SeedSequence spawn tree: the child (generation, stream) of the rank's root seed, the
    same child that ``SeedSequence(rank_seed).spawn`` would hand out, so streams of different
    generations and ranks are independent and any rank can derive any of them without a message.
    """
    seq = np.random.SeedSequence(rank_seed, spawn_key=(generation, stream))
    return int(seq.generate_state(1, np.uint32)[0])


# ---- the state tree ----------------------------------------------------------------------------


def _encode(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(obj, torch.Tensor):
        name = f"a{len(arrays)}"
        arrays[name] = obj.detach().cpu().numpy()
        return {"__tensor__": name}
    if isinstance(obj, np.ndarray):
        name = f"a{len(arrays)}"
        arrays[name] = obj
        return {"__array__": name}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, arrays) for k, v in obj.items()}
        return {"__items__": [[_encode(k, arrays), _encode(v, arrays)] for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        return [_encode(v, arrays) for v in obj]
    if obj is None or isinstance(obj, str | bool | int | float):
        return obj
    raise TypeError(f"a checkpoint cannot store {type(obj).__name__} values (only JSON data and arrays)")


def _decode(obj: Any, arrays: h5py.Group) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return torch.from_numpy(np.asarray(arrays[obj["__tensor__"]][()]))
        if "__array__" in obj:
            return np.asarray(arrays[obj["__array__"]][()])
        if "__items__" in obj:
            return {_freeze(_decode(k, arrays)): _decode(v, arrays) for k, v in obj["__items__"]}
        return {k: _decode(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    return obj


def _freeze(key: Any) -> Any:
    return tuple(_freeze(k) for k in key) if isinstance(key, list) else key


# ---- writing and reading -----------------------------------------------------------------------


def write_checkpoint(path: str | Path, tree: Any, *, generation: int, rank: int) -> Path:
    """Write `tree` to `path` atomically (temporary file, fsync, rename, fsync of the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    document = json.dumps(_encode(tree, arrays), allow_nan=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w", locking="best-effort") as f:
            f.attrs["format"] = CHECKPOINT_FORMAT
            f.attrs["version"] = CHECKPOINT_VERSION
            f.attrs["generation"] = np.int64(generation)
            f.attrs["rank"] = np.int64(rank)
            group = f.create_group("arrays")
            for name, arr in arrays.items():
                # np.require, not np.ascontiguousarray: that one turns a 0-d array (Adam's step) into 1-d
                group.create_dataset(name, data=np.require(arr, requirements="C"))
            f.attrs["state"] = document
            f.attrs["complete"] = True  # last: a reader trusts nothing without it
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_header(path: Path, generation: int | None, rank: int | None) -> str:
    """Open `path`, check it is a whole checkpoint of (generation, rank); return its JSON document."""
    try:
        with h5py.File(path, "r", locking="best-effort") as f:
            attrs = dict(f.attrs)
            if attrs.get("format") != CHECKPOINT_FORMAT:
                raise CheckpointError(f"{path} is not an mpimarl checkpoint")
            if int(attrs.get("version", -1)) != CHECKPOINT_VERSION:
                raise CheckpointError(f"{path} has checkpoint version {attrs.get('version')}, this mpimarl "
                                      f"reads version {CHECKPOINT_VERSION}")
            if not attrs.get("complete", False):
                raise CheckpointError(f"{path} is partial (no 'complete' mark)")
            if generation is not None and int(attrs["generation"]) != generation:
                raise CheckpointError(f"{path} holds generation {attrs['generation']}, not {generation}")
            if rank is not None and int(attrs["rank"]) != rank:
                raise CheckpointError(f"{path} holds rank {attrs['rank']}, not {rank}")
            document = str(attrs["state"])
            json.loads(document)
            return document
    except CheckpointError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{path} cannot be read (truncated or damaged?): {exc}") from None


def read_checkpoint(path: str | Path, *, generation: int | None = None, rank: int | None = None) -> Any:
    """The state tree of a whole checkpoint file; CheckpointError naming the file otherwise.

    Arrays come back as numpy arrays, tensors as CPU torch tensors, non-string dict keys as the
    ints/tuples they were.
    """
    path = Path(path)
    document = _read_header(path, generation, rank)
    try:
        with h5py.File(path, "r", locking="best-effort") as f:
            return _decode(json.loads(document), f["arrays"])
    except (OSError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{path} cannot be read (truncated or damaged?): {exc}") from None


def newest_complete(folder: str | Path, world_size: int) -> int | None:
    """The newest generation every rank saved whole, or None."""
    whole = complete_generations(folder, world_size)
    return whole[-1] if whole else None

