"""A sweep: every config crossed with every seed, one run per SLURM job-array index.

`slurm/sweep.sbatch` asks this module which run its array index stands for, so the mapping is
code, not copy-paste::

    python -m mpimarl.sweep count 0-4 configs/a.yaml configs/b.yaml        # 10: use --array=0-9
    python -m mpimarl.sweep run 7 0-4 configs/a.yaml configs/b.yaml --root runs/sweep-123
    # prints three lines: the config, the run folder, the seed (configs/b.yaml, runs/sweep-123/b-seed2, 2)
    python -m mpimarl.sweep list 0-4 configs/a.yaml configs/b.yaml          # every index and its run

Index ``i`` is config ``i // len(seeds)`` with seed ``seeds[i % len(seeds)]`` (config-major), so
adding seeds to a sweep renumbers it but adding configs at the end does not.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mpimarl.errors import ConfigError


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its array index, config file, seed and run folder."""

    index: int
    config: str
    seed: int
    run_dir: str


def parse_seeds(spec: str) -> list[int]:
    """Seeds from '0-4' (inclusive range), '1,5,9', or a mix ('0-2,10'); each seed once, in order."""
    seeds: list[int] = []
    for part in spec.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if match is None or (match[2] is not None and int(match[2]) < int(match[1])):
            raise ConfigError(f"sweep seeds {spec!r}: {part!r} is not a seed (>= 0) or a range such as 0-4")
        seeds.extend(range(int(match[1]), int(match[2] or match[1]) + 1))
    return list(dict.fromkeys(seeds))


def sweep_runs(configs: Sequence[str], seeds: Sequence[int], root: str = "runs/sweep") -> list[SweepRun]:
    """Every (config, seed) pair in array-index order; run folders ``ROOT/<config stem>-seed<k>``."""
    if not configs:
        raise ConfigError("a sweep needs at least one config file")
    stems = [Path(c).stem for c in configs]
    if len(set(stems)) != len(stems):
        duplicated = sorted({s for s in stems if stems.count(s) > 1})
        raise ConfigError(f"sweep configs must have distinct file names (their run folders would clash): "
                          f"{', '.join(duplicated)}")
    runs = []
    for c, (config, stem) in enumerate(zip(configs, stems, strict=True)):
        for s, seed in enumerate(seeds):
            runs.append(SweepRun(c * len(seeds) + s, config, seed, f"{root}/{stem}-seed{seed}"))
    return runs


def run_for_index(index: int, configs: Sequence[str], seeds: Sequence[int], root: str = "runs/sweep") -> SweepRun:
    """The run of array index ``index``; ConfigError when the sweep has no such index."""
    runs = sweep_runs(configs, seeds, root)
    if not 0 <= index < len(runs):
        raise ConfigError(f"sweep index {index} is outside this sweep of {len(runs)} runs "
                          f"({len(configs)} configs x {len(seeds)} seeds): submit with --array=0-{len(runs) - 1}")
    return runs[index]


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m mpimarl.sweep count|list|run ...`; exit 2 with one message on bad input."""
    p = argparse.ArgumentParser(prog="python -m mpimarl.sweep", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in (("count", "print the number of runs"), ("list", "print every index and its run"),
                        ("run", "print the config, run folder and seed of one index, one per line")):
        s = sub.add_parser(name, help=help_)
        if name == "run":
            s.add_argument("index", type=int, help="the array index (SLURM_ARRAY_TASK_ID)")
        s.add_argument("seeds", help="seeds: 0-4, 1,5,9 or a mix")
        s.add_argument("configs", nargs="+", help="config files")
        s.add_argument("--root", default="runs/sweep", help="folder holding the sweep's run folders")
    args = p.parse_args(argv)
    try:
        seeds = parse_seeds(args.seeds)
        missing = [c for c in args.configs if not Path(c).is_file()]
        if missing:
            raise ConfigError(f"sweep config file(s) not found: {', '.join(missing)}")
        if args.command == "count":
            print(len(sweep_runs(args.configs, seeds, args.root)))
        elif args.command == "list":
            for run in sweep_runs(args.configs, seeds, args.root):
                print(f"{run.index}\t{run.config}\tseed {run.seed}\t{run.run_dir}")
        else:
            run = run_for_index(args.index, args.configs, seeds, args.root)
            print(run.config, run.run_dir, run.seed, sep="\n")
    except ConfigError as exc:
        print(f"mpimarl.sweep: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
