"""Checkpoints: what a resumed run needs, written atomically at generation boundaries (no MPI here).

`store` writes and reads one rank's checkpoint file (JSON for structured state, HDF5 datasets for
arrays and tensors, no pickles) and finds the newest generation every rank saved whole.
"""

from mpimarl.checkpoint.store import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    checkpoint_path,
    complete_generations,
    generation_seed,
    newest_complete,
    prune,
    read_checkpoint,
    write_checkpoint,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "checkpoint_path",
    "complete_generations",
    "generation_seed",
    "newest_complete",
    "prune",
    "read_checkpoint",
    "write_checkpoint",
]
