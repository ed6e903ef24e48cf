"""A sweep: every config crossed with every seed, one run per SLURM job-array index.

`slurm/sweep.sbatch` asks this module which run its array index stands for, so the mapping is
code, not copy-paste::

    python -m mpimarl.sweep count 0-4 configs/a.yaml configs/b.yaml        # 10: use --array=0-9
    python -m mpimarl.sweep run 7 0-4 configs/a.yaml configs/b.yaml --root runs/sweep-123
    # prints three lines: the config, the run folder, the seed (configs/b.yaml, runs/sweep-123/b-seed2, 2)
    python -m mpimarl.sweep list 0-4 configs/a.yaml configs/b.yaml          # every index and its run

Index ``i`` is config ``i // len(seeds)`` with seed ``seeds[i % len(seeds)]`` (config-major), so
adding seeds to a sweep renumbers it but adding configs at the end does not.

A study sweep is a YAML file (``configs/sweeps/*.yaml``) of setups, each a config with overrides and
a grid of values to cross, run with every seed::

    name: study_small
    root: runs/study_small      # run folders ROOT/<setup>-seed<k>
    seeds: 0-1
    ranks: 3                    # MPI ranks per run (a setup or a grid may change it: key `ranks`)
    args: [--steps, "100000000", schedule.time_limit_s=120]   # given to every `mpimarl train`
    setups:
      - name: kuhn
        config: configs/kuhn_psro.yaml
        overrides: [evaluation.exploitability=true]
        grid: {matchmaking.strategy: [latest, uniform, psro]}

    python -m mpimarl sweep configs/sweeps/study_small.yaml        # run them all here, one at a time
    python -m mpimarl.sweep count --file configs/sweeps/study_small.yaml     # for sbatch --array
    python -m mpimarl.sweep run 3 --file configs/sweeps/study_small.yaml     # what index 3 runs

Each setup's runs carry the setup label as the config's ``name``, which is how ``mpimarl study``
groups them over seeds. Setups run in file order, grid points in the grid's order (the last key
varies fastest), seeds innermost (a setup may name its own ``seeds``); ``order: seed`` runs every
setup's first seed before any setup's second one on a workstation (indices stay as above). A run
whose run file says it finished is skipped, so running a sweep again resumes it.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mpimarl.errors import ConfigError


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its array index, config file, seed and run folder."""

    index: int
    config: str
    seed: int
    run_dir: str
    setup: str = ""
    """The setup label (sweep files only): the run's config ``name``, shared by its seeds."""
    ranks: int = 0
    """MPI ranks to launch (sweep files only; 0: the allocation's)."""
    args: tuple[str, ...] = field(default=())
    """`mpimarl train` options and key=value overrides (sweep files only)."""

    def train_args(self) -> list[str]:
        """Everything after `mpimarl train`: config, run folder, seed, then this run's options."""
        return [self.config, "--run-dir", self.run_dir, "--seed", str(self.seed), *self.args]


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


# ---- sweep files ------------------------------------------------------------------------------

_SWEEP_KEYS = {"name", "root", "seeds", "ranks", "args", "setups", "order"}
_SETUP_KEYS = {"name", "config", "ranks", "overrides", "grid", "seeds"}
_ORDERS = ("setup", "seed")


def _label_value(value: Any) -> str:
    """A grid value as it appears in a setup label (file-name safe)."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return re.sub(r"[^A-Za-z0-9_.]+", "_", text)


def _strings(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise ConfigError(f"{what} must be a list of strings, got {value!r}")
    return [str(v) for v in value]


def _ranks(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ConfigError(f"{what} must be an MPI rank count of at least 2 (server + one trainer), got {value!r}")
    return value


def load_sweep(path: str | Path, root: str | None = None) -> list[SweepRun]:
    """Every run of the sweep file at `path`, in index order (see the module docstring).

    Config paths are taken relative to the current folder when they exist there, else relative to the
    sweep file's folder. `root` overrides the file's ``root``. ConfigError names any bad key or value.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"sweep file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"sweep file {path} must be a mapping with keys {sorted(_SWEEP_KEYS)}")
    unknown = sorted(set(data) - _SWEEP_KEYS)
    if unknown:
        raise ConfigError(f"sweep file {path}: unknown key(s) {unknown}; allowed: {sorted(_SWEEP_KEYS)}")
    seeds = parse_seeds(str(data.get("seeds", "0")))
    default_ranks = _ranks(data.get("ranks", 3), f"sweep file {path}: ranks")
    common = _strings(data.get("args"), f"sweep file {path}: args")
    root = root or str(data.get("root") or f"runs/{data.get('name') or path.stem}")
    setups = data.get("setups")
    if not isinstance(setups, list) or not setups:
        raise ConfigError(f"sweep file {path}: setups must be a non-empty list of setups")
    runs: list[SweepRun] = []
    labels: set[str] = set()
    for i, setup in enumerate(setups):
        where = f"sweep file {path}: setups[{i}]"
        if not isinstance(setup, dict):
            raise ConfigError(f"{where} must be a mapping with keys {sorted(_SETUP_KEYS)}")
        unknown = sorted(set(setup) - _SETUP_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(_SETUP_KEYS)}")
        if "config" not in setup:
            raise ConfigError(f"{where}: needs a config file (key 'config')")
        config = Path(str(setup["config"]))
        if not config.is_file() and (path.parent / config).is_file():
            config = Path(os.path.normpath(path.parent / config))
        if not config.is_file():
            raise ConfigError(f"{where}: config file not found: {setup['config']}")
        name = str(setup.get("name") or config.stem)
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ConfigError(f"{where}: name {name!r} must be letters, digits, '_', '.' or '-'")
        ranks = _ranks(setup.get("ranks", default_ranks), f"{where}: ranks")
        setup_seeds = parse_seeds(str(setup["seeds"])) if "seeds" in setup else seeds
        overrides = _strings(setup.get("overrides"), f"{where}: overrides")
        grid = setup.get("grid") or {}
        if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
            raise ConfigError(f"{where}: grid must map config keys (or 'ranks') to non-empty lists of values")
        keys = list(grid)
        for values in itertools.product(*(grid[k] for k in keys)):
            point = dict(zip(keys, values, strict=True))
            label = "-".join([name, *(_label_value(v) for v in values)])
            if label in labels:
                raise ConfigError(f"{where}: setup label {label!r} occurs twice; give the setups distinct names")
            labels.add(label)
            point_ranks = _ranks(point.pop("ranks"), f"{where}: grid ranks") if "ranks" in point else ranks
            sets = [f"{k}={_yaml_scalar(v)}" for k, v in point.items()]
            args = (*common, *overrides, *sets, f"name={label}")
            for seed in setup_seeds:
                runs.append(SweepRun(len(runs), str(config), seed, f"{root}/{label}-seed{seed}", label,
                                     point_ranks, args))
    return runs


def execution_order(path: str | Path, runs: list[SweepRun]) -> list[SweepRun]:
    """The order a workstation runs a sweep in: the file's ``order: setup`` (index order, the default)
    or ``order: seed`` (every setup's first seed, then every setup's second, ...: a sweep cut short still
    has every setup with as many seeds as possible). Array indices never change."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    order = data.get("order", "setup")
    if order not in _ORDERS:
        raise ConfigError(f"sweep file {path}: order {order!r} is not one of {', '.join(_ORDERS)}")
    if order == "setup":
        return runs
    rank_of_seed: dict[str, int] = {}
    position: list[int] = []
    for run in runs:
        position.append(rank_of_seed.get(run.setup, 0))
        rank_of_seed[run.setup] = position[-1] + 1
    return [run for _, run in sorted(zip(position, runs, strict=True), key=lambda pair: (pair[0], pair[1].index))]


def _yaml_scalar(value: Any) -> str:
    """A grid value as the text of a key=value override (YAML-parsed again by the config loader)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    return str(value)


def finished(run_dir: str | Path) -> bool:
    """True when RUN_DIR/run.h5 exists and says its run ended normally (a requeue or a crash leaves
    it unfinished, and the sweep resumes it)."""
    path = Path(run_dir) / "run.h5"
    if not path.is_file():
        return False
    from mpimarl.analysis import load_run
    from mpimarl.errors import RunFileError

    try:
        return bool(load_run(path).attrs.get("finished", False))
    except RunFileError:
        return False


def mpiexec_command() -> str:
    """MPIMARL_MPIEXEC, else the mpiexec beside this Python (the `mpich` extra), else the one on PATH."""
    local = Path(sys.executable).parent / "mpiexec"
    return os.environ.get("MPIMARL_MPIEXEC") or (str(local) if local.exists() else "mpiexec")


def run_sweep(path: str | Path, root: str | None = None, only: str | None = None, dry_run: bool = False,
              keep_going: bool = False) -> int:
    """Run a sweep file here, one run at a time under mpiexec; finished runs are skipped and
    unfinished ones resumed from their newest checkpoint. Returns 0, or the first failing run's
    exit code (every run is tried with `keep_going`)."""
    runs = [r for r in execution_order(path, load_sweep(path, root)) if only is None or re.search(only, r.setup)]
    if not runs:
        raise ConfigError(f"sweep {path}: no setup matches --only {only!r}")
    failed = 0
    for run in runs:
        head = f"sweep [{run.index + 1}/{len(runs)}] {run.setup} seed {run.seed}"
        if finished(run.run_dir):
            print(f"{head}: finished before, skipped ({run.run_dir})", flush=True)
            continue
        cmd = [mpiexec_command(), "-n", str(run.ranks), sys.executable, "-m", "mpimarl", "train", *run.train_args()]
        if (Path(run.run_dir) / "run.h5").exists():
            cmd.append("--resume")
        print(f"{head}: {' '.join(cmd)}", flush=True)
        if dry_run:
            continue
        code = subprocess.run(cmd, check=False).returncode
        if code != 0:
            print(f"sweep: {run.setup} seed {run.seed} failed with exit code {code} ({run.run_dir})",
                  file=sys.stderr, flush=True)
            failed = failed or code
            if not keep_going:
                return code
    return failed


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m mpimarl.sweep count|list|run ...`; exit 2 with one message on bad input."""
    p = argparse.ArgumentParser(prog="python -m mpimarl.sweep", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in (("count", "print the number of runs"), ("list", "print every index and its run"),
                        ("run", "print the config, run folder and seed of one index, one per line (with --file: "
                         "then the rank count and each train option, one per line)")):
        s = sub.add_parser(name, help=help_)
        if name == "run":
            s.add_argument("index", type=int, help="the array index (SLURM_ARRAY_TASK_ID)")
        s.add_argument("seeds", nargs="?", help="seeds: 0-4, 1,5,9 or a mix (not with --file)")
        s.add_argument("configs", nargs="*", help="config files (not with --file)")
        s.add_argument("--file", help="a sweep file of setups, grids and seeds instead of SEEDS CONFIGS")
        s.add_argument("--root", default=None, help="folder holding the sweep's run folders")
    args = p.parse_args(argv)
    try:
        if args.file:
            if args.seeds or args.configs:
                raise ConfigError("give either --file SWEEP.yaml or SEEDS CONFIG..., not both")
            runs = load_sweep(args.file, args.root)
        else:
            if not args.seeds or not args.configs:
                raise ConfigError("give SEEDS and at least one CONFIG file, or --file SWEEP.yaml")
            seeds = parse_seeds(args.seeds)
            missing = [c for c in args.configs if not Path(c).is_file()]
            if missing:
                raise ConfigError(f"sweep config file(s) not found: {', '.join(missing)}")
            runs = sweep_runs(args.configs, seeds, args.root or "runs/sweep")
        if args.command == "count":
            print(len(runs))
        elif args.command == "list":
            for run in runs:
                extra = f"\t{run.ranks} ranks\t{' '.join(run.args)}" if args.file else ""
                print(f"{run.index}\t{run.config}\tseed {run.seed}\t{run.run_dir}{extra}")
        else:
            if not 0 <= args.index < len(runs):
                raise ConfigError(f"sweep index {args.index} is outside this sweep of {len(runs)} runs: "
                                  f"submit with --array=0-{len(runs) - 1}")
            run = runs[args.index]
            print(run.config, run.run_dir, run.seed, sep="\n")
            if args.file:
                print(run.ranks, *run.args, sep="\n")
    except ConfigError as exc:
        print(f"mpimarl.sweep: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
