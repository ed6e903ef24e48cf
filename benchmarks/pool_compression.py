"""Lossless compression and the float16 archive, measured on real snapshots before either becomes a default.

    python -m benchmarks.pool_compression RUN.h5 [--snapshots 40]

Reads up to `snapshots` stored weight snapshots of a run file (e.g. a connect four league run),
writes them into a fresh run file with each option (pool.compression none, gzip, lzf; the float16
archive of pool.archive) and reads them back. Per option: the file's size, the write time per
snapshot (save plus commit) and the read time per snapshot (what a cache miss costs rank 0), and for
float16 the largest absolute and relative error of a weight and how often the greedy action of the
network on random observations of the run's environment changes.
Results: benchmarks/results/pool_compression.md (+csv).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import save
from benchmarks.scaling import load_average


def _greedy_agreement(run: object, policy_id: str, version: int, weights16: np.ndarray, samples: int = 2000) -> float:
    """Share of random observations on which the float16 copy picks the same greedy action."""
    import torch

    from mpimarl.algos.networks import ActorCritic, load_flat_weights

    stored = run.policy(policy_id, version)  # type: ignore[attr-defined]
    net16 = ActorCritic(stored.shape)
    load_flat_weights(net16, weights16.astype(np.float32))
    rng = np.random.default_rng(0)
    obs = torch.from_numpy(rng.integers(0, 2, size=(samples, stored.shape.obs_size)).astype(np.float32))
    with torch.no_grad():
        a = stored.net.probabilities(obs, None).argmax(-1)
        b = net16.probabilities(obs, None).argmax(-1)
    return float((a == b).float().mean())


def main() -> None:
    """Measure every option on the run file's snapshots; write the table."""
    from mpimarl.analysis import load_run
    from mpimarl.record.recorder import RunRecorder

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run")
    parser.add_argument("--snapshots", type=int, default=40)
    args = parser.parse_args()
    os.environ["MPIMARL_RUN_FILE_FSYNC"] = "0"  # the codec's cost, not the disk's
    run = load_run(args.run)
    stored = run.policies()
    stored = stored[stored.stored == "float32"].head(args.snapshots)
    snaps = [(str(r.policy_id), int(r.version), run.weights(str(r.policy_id), int(r.version)))
             for r in stored.itertuples()]
    raw_mb = sum(w.nbytes for _, _, w in snaps) / 2**20
    rows = []
    for option in ("none", "gzip", "lzf", "float16"):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "run.h5"
            rec = RunRecorder(path, {"config": {}})
            rec.configure(compression=None if option in ("none", "float16") else option)
            t0 = time.perf_counter()
            for pid, version, w in snaps:
                rec.save_weights(pid, version, "player", w, parent=None, layout="flat")
                if option == "float16":
                    rec.drop_weights(pid, version, "float16")
            write_s = (time.perf_counter() - t0) / len(snaps)
            rec.close()
            size_mb = path.stat().st_size / 2**20
            back = load_run(path)
            t0 = time.perf_counter()
            copies = [back.weights(pid, version) for pid, version, _ in snaps]
            read_s = (time.perf_counter() - t0) / len(snaps)
        row = {"option": option, "snapshots": len(snaps), "floats_per_snapshot": int(snaps[0][2].size),
               "weights_mb": round(raw_mb, 2), "file_mb": round(size_mb, 2),
               "ratio": round(size_mb / raw_mb, 3), "write_ms_per_snapshot": round(1e3 * write_s, 1),
               "read_ms_per_snapshot": round(1e3 * read_s, 2), "max_abs_error": 0.0, "greedy_agreement": 1.0}
        if option == "float16":
            err = [np.abs(c - w).max() for c, (_, _, w) in zip(copies, snaps)]
            row["max_abs_error"] = float(f"{max(err):.2e}")
            pid, version, w = snaps[-1]
            row["greedy_agreement"] = round(_greedy_agreement(run, pid, version, w.astype(np.float16)), 4)
        else:
            assert all(np.array_equal(c, w) for c, (_, _, w) in zip(copies, snaps)), option  # lossless
        row["load_average"] = load_average()
        print(row, flush=True)
        rows.append(row)
    notes = (f"Snapshots of {args.run} ({run.config.get('name', '?')}); write = save_weights with its commit "
             "(fsync off), read = Run.weights (a cache miss of rank 0 reads the same way). float16: the archive "
             "kept for snapshots the retention policy drops (never drawn); greedy_agreement on random 0/1 "
             "observations of the last snapshot.")
    save(pd.DataFrame(rows), "pool_compression", notes)


if __name__ == "__main__":
    main()
