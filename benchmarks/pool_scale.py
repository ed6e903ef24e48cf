"""Rank 0's memory and the run file's size against the number of snapshots in the pool.

    python -m benchmarks.pool_scale [--counts 1000,10000,100000] [--size 1000] [--setups before,after]
    python -m benchmarks.pool_scale --growth [--max-s 600]    # ONE growing run per setup: 1k, 10k, 100k

Each (setup, count) runs in a fresh process that publishes `count` small synthetic snapshots (`size`
float32 values, two policies of one role) the way rank 0 does: the weights into the run file
(RunRecorder.save_weights), a pool row, the snapshot into the PolicyPool, then the retention
decision. It records the process's resident memory (RSS, from /proc/self/status) every 10% of the
way, the run file's size at the end and the wall time.

Setups:
- before: the pool as it was (every snapshot's weights on the heap: no store to read them back),
  every snapshot's weights kept in the file, every change committed at once.
- cache: the weights in a bounded cache (pool.cache_mb 16), everything kept in the file.
- after: the cache, plus the retention policy pool.keep_latest 8, keep_every 100, and commits grouped
  in 50 ms windows (pool.commit_window_s 0.05).
- after_f16: `after` with pool.archive float16 (dropped snapshots keep a half-precision copy).
- after_gzip: `after` with pool.compression gzip.

fsync is off (MPIMARL_RUN_FILE_FSYNC=0) so that the count of snapshots, not the disk, sets the pace;
the commit cost with fsync is what `benchmarks.scaling capacity` measures.
Results: benchmarks/results/pool_scale.md (+csv).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from benchmarks.common import REPO, save
from benchmarks.scaling import load_average

if TYPE_CHECKING:  # the workers import these themselves, after measuring their start-up memory
    import numpy as np

    from mpimarl.league.pool import PolicyPool, Retention, SnapshotKey
    from mpimarl.record.recorder import RunRecorder

SETUPS = {
    "before": {"cache_mb": None, "keep_latest": None, "window": 0.0, "archive": "none", "compression": "none"},
    "cache": {"cache_mb": 16.0, "keep_latest": None, "window": 0.0, "archive": "none", "compression": "none"},
    "after": {"cache_mb": 16.0, "keep_latest": 8, "window": 0.05, "archive": "none", "compression": "none"},
    "after_f16": {"cache_mb": 16.0, "keep_latest": 8, "window": 0.05, "archive": "float16", "compression": "none"},
    "after_gzip": {"cache_mb": 16.0, "keep_latest": 8, "window": 0.05, "archive": "none", "compression": "gzip"},
}


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _publish(rec: RunRecorder, pool: PolicyPool, retention: Retention | None, archive: str, pid: str, version: int,
             i: int, weights: np.ndarray, parent: SnapshotKey | None) -> None:
    """What rank 0 does for the i-th published snapshot: store it, add it to the pool, apply retention."""
    from mpimarl.league.pool import Snapshot, SnapshotKey

    rec.save_weights(pid, version, "player", weights, parent=None, layout="flat")
    rec.append("pool", [{"time": float(i), "generation": version, "policy_id": pid, "role": "player",
                         "version": version, "parent_id": "", "parent_version": -1, "rank": 1, "env_steps": i}])
    pool.add(Snapshot(SnapshotKey(pid, version), "player", parent, 1, i, float(i), weights))
    if retention is None:
        return
    rows = []
    for old, reason in retention.apply(pool, pid):
        rows.append({"time": float(i), "generation": version, "policy_id": old.policy_id, "role": "player",
                     "version": old.version, "weights": archive if reason == "dropped" else "float32",
                     "reason": reason})
        if reason == "dropped":
            rec.drop_weights(old.policy_id, old.version, archive, reason)
    if rows:
        rec.append("retention", rows)


def _open(setup: str, size: int, folder: str) -> tuple:
    """A setup's run file, pool and retention, and the seeded generator and base weights of its snapshots."""
    import numpy as np

    from mpimarl.league.pool import PolicyPool, Retention
    from mpimarl.record.recorder import RunRecorder

    s = SETUPS[setup]
    path = Path(folder) / "run.h5"
    rec = RunRecorder(path, {"config": {}})
    rec.configure(commit_window_s=s["window"], compression=s["compression"])
    cache = None if s["cache_mb"] is None else int(float(s["cache_mb"]) * 2**20)  # type: ignore[arg-type]
    load = None if cache is None else (lambda k: rec.read_weights(k.policy_id, k.version))
    pool = PolicyPool(load, cache_bytes=cache)
    retention = None if s["keep_latest"] is None else Retention(int(s["keep_latest"]), keep_every=100)  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    base = rng.standard_normal(size).astype(np.float32)
    return s, path, rec, pool, retention, rng, base


def _worker(setup: str, count: int, size: int, folder: str) -> dict[str, object]:
    """One (setup, count): publish `count` synthetic snapshots as rank 0 does; return the measurements."""
    import numpy as np


    s, path, rec, pool, retention, rng, base = _open(setup, size, folder)
    rss: list[float] = [_rss_mb()]
    t0 = time.perf_counter()
    reads = 0
    for i in range(count):
        pid, version = f"player-{i % 2}", i // 2
        weights = base + np.float32(i * 1e-3)  # a real network drifts a little each version
        _publish(rec, pool, retention, str(s["archive"]), pid, version, i, weights, parent=None)
        if i % 50 == 0 and i:  # a trainer or an evaluation asks for an old snapshot now and then
            drawable = pool.snapshots()
            pool.weights(drawable[int(rng.integers(len(drawable)))].key)
            reads += 1
        rec.commit_due()
        if (i + 1) % max(1, count // 10) == 0:
            rss.append(_rss_mb())
    rec.close()
    wall = time.perf_counter() - t0
    return {"setup": setup, "snapshots": count, "floats_per_snapshot": size,
            "rss_start_mb": round(rss[0], 1), "rss_end_mb": round(rss[-1], 1), "rss_max_mb": round(max(rss), 1),
            "rss_growth_mb": round(rss[-1] - rss[1], 1),
            "file_mb": round(path.stat().st_size / 2**20, 2),
            "weights_kept": sum(1 for s in pool.all_snapshots() if s.stored),
            "cache_snapshots": len(pool.cache), "cache_hits": pool.cache.hits, "cache_misses": pool.cache.misses,
            "wall_s": round(wall, 1), "us_per_snapshot": round(1e6 * wall / count, 1), "commits": rec.commits}


GROWTH_POINTS = (1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000)
"""Pool sizes at which `--growth` measures one growing run."""


def _grow(setup: str, count: int, size: int, folder: str, max_s: float) -> None:
    """`--growth`: ONE run of `setup` publishing up to `count` snapshots as `_worker` does, printing a
    JSON row (RSS, run file size, snapshots with weights, time so far) at every GROWTH_POINTS size it
    reaches within `max_s` seconds, and one for where it stopped."""
    import numpy as np

    from mpimarl.league.pool import SnapshotKey

    s, path, rec, pool, retention, rng, base = _open(setup, size, folder)
    start_rss = _rss_mb()
    t0 = time.perf_counter()

    def report(n: int, stopped: bool) -> None:
        rec.commit()
        print(json.dumps({"setup": setup, "snapshots": n, "floats_per_snapshot": size,
                          "rss_mb": round(_rss_mb(), 1), "rss_start_mb": round(start_rss, 1),
                          "file_mb": round(path.stat().st_size / 2**20, 2),
                          "weights_kept": sum(1 for p in pool.policy_ids() for k in pool.versions(p)
                                              if pool.get(k).stored),
                          "cache_snapshots": len(pool.cache), "wall_s": round(time.perf_counter() - t0, 1),
                          "stopped_by_time": stopped}), flush=True)

    points = set(GROWTH_POINTS)
    for i in range(count):
        pid, version = f"player-{i % 2}", i // 2
        weights = base + np.float32(i * 1e-3)
        parent = SnapshotKey(pid, version - 1) if version else None
        _publish(rec, pool, retention, str(s["archive"]), pid, version, i, weights, parent)
        if i % 50 == 0 and i:
            drawable = pool.snapshots()
            pool.weights(drawable[int(rng.integers(len(drawable)))].key)
        rec.commit_due()
        if i + 1 in points:
            report(i + 1, False)
        elif time.perf_counter() - t0 > max_s:
            report(i + 1, True)
            break
    rec.close()


def growth(args: argparse.Namespace) -> None:
    """Both setups of `--setups` as ONE growing run each (in parallel), measured at GROWTH_POINTS."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        procs = {}
        for setup in args.setups.split(","):
            folder = Path(tmp) / setup
            folder.mkdir()
            max_s = args.max_s_after if setup != "before" and args.max_s_after else args.max_s
            cmd = [sys.executable, "-m", "benchmarks.pool_scale", "--size", str(args.size), "--max-s",
                   str(max_s), "--grow-worker", setup, str(max(GROWTH_POINTS)), str(folder)]
            procs[setup] = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                            env=dict(os.environ, MPIMARL_RUN_FILE_FSYNC="0"))
        for setup, proc in procs.items():
            out, err = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"growth worker {setup} failed:\n{err[-3000:]}")
            for line in out.strip().splitlines():
                row = json.loads(line)
                row["load_average"] = load_average()
                rows.append(row)
                print(row, flush=True)
    limits = f"{args.max_s:g} s" + (f" ({args.max_s_after:g} s but 'before')" if args.max_s_after else "")
    notes = (f"One run per setup, measured as it grows (each stops after {limits}: stopped_by_time). RSS: "
             "resident memory of the process (Python, numpy, h5py and the pool). fsync off: commits cost CPU only. "
             "load_average: when the setup's run ended (both ran at once, beside other jobs).")
    save(pd.DataFrame(rows), args.name, notes)


def main() -> None:
    """Run every (setup, count) in its own process; write the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", default="1000,10000,100000")
    parser.add_argument("--size", type=int, default=1000, help="float32 values per synthetic snapshot")
    parser.add_argument("--setups", default=",".join(SETUPS))
    parser.add_argument("--name", default="pool_scale")
    parser.add_argument("--worker", nargs=3, metavar=("SETUP", "COUNT", "FOLDER"), help=argparse.SUPPRESS)
    parser.add_argument("--growth", action="store_true", help="one growing run per setup, measured at "
                        f"{', '.join(map(str, GROWTH_POINTS))} snapshots (results: --name, default pool_scale_growth)")
    parser.add_argument("--max-s", type=float, default=600.0, help="--growth: stop each run after this many seconds")
    parser.add_argument("--max-s-after", type=float, default=None, help="--growth: the time limit of every "
                        "setup but 'before' (everything kept), when it should differ from --max-s")
    parser.add_argument("--grow-worker", nargs=3, metavar=("SETUP", "COUNT", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.grow_worker:
        setup, count, folder = args.grow_worker
        _grow(setup, int(count), args.size, folder, args.max_s)
        return
    if args.growth:
        if args.name == "pool_scale":
            args.name = "pool_scale_growth"
        if args.setups == ",".join(SETUPS):
            args.setups = "before,after"
        growth(args)
        return
    if args.worker:
        setup, count, folder = args.worker
        print(json.dumps(_worker(setup, int(count), args.size, folder)))
        return
    rows = []
    for count in [int(c) for c in args.counts.split(",")]:
        for setup in args.setups.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [sys.executable, "-m", "benchmarks.pool_scale", "--size", str(args.size),
                       "--worker", setup, str(count), tmp]
                out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False,
                                     env=dict(os.environ, MPIMARL_RUN_FILE_FSYNC="0"))
                if out.returncode != 0:
                    raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
                row = json.loads(out.stdout.strip().splitlines()[-1])
                row["load_average"] = load_average()
                print(row, flush=True)
                rows.append(row)
    notes = ("RSS: resident memory of the process (Python, numpy, h5py and the pool); rss_growth_mb from 10% to "
             "100% of the snapshots. fsync off: commits cost CPU only here.")
    save(pd.DataFrame(rows), args.name, notes)


if __name__ == "__main__":
    main()
