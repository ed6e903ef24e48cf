"""Draw the figures of one mpimarl run file as PNGs: learning curves, Elo, play against the random
baseline, the evaluation match-up matrix and trainer throughput.

    python -m mpimarl report RUN.h5 [--out DIR]     (or: python analysis/plot_run.py RUN.h5)

DIR defaults to the run file's folder. Each figure whose data the run does not hold (an empty table,
no evaluations yet) is skipped with a printed note, so a run can be plotted while it is still going.
A missing or unreadable run file prints ``mpimarl report: error: <message>`` and exits with code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: never open a display, also on login nodes without X

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import EngFormatter, MaxNLocator  # noqa: E402

from mpimarl.analysis import RANDOM_BASELINE, Run, load_run  # noqa: E402
from mpimarl.errors import RunFileError  # noqa: E402

PROG = "mpimarl report"
NO_OPPONENT = "-"
"""``opponent_id`` of a match without another side (a one-team cooperative task)."""
DEFAULT_ELO = 1000.0
"""Elo of the random anchor when the run's config does not say (the config's own default)."""
DPI = 120


class SkipFigure(Exception):
    """The run holds no data for a figure; the message says what is missing."""


# -------------------------------------------------------------------- run helpers


def config_value(config: dict[str, Any], dotted: str, default: Any) -> Any:
    """``config`` at the dotted path (``"task.kind"``), else ``default``.

    Accepts the nested dicts the server records and, for hand-made files, a flat dotted key.
    """
    if dotted in config:
        return config[dotted]
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def is_cooperative(run: Run) -> bool:
    """Whether the run's task is cooperative (rated by return, not by wins)."""
    return config_value(run.config, "task.kind", "competitive") == "cooperative"


def is_random(opponent_id: str) -> bool:
    """Whether every seat of an ``opponent_id`` (seats joined with '+') is the random baseline."""
    return all(seat == RANDOM_BASELINE for seat in opponent_id.split("+"))


def evaluations(run: Run) -> pd.DataFrame:
    """The evaluation rows of the matches table."""
    return run.matches[run.matches.kind == "evaluation"]


def score_rate(group: pd.DataFrame) -> float:
    """(wins + 0.5 draws) / episodes over the rows of ``group``; NaN without episodes."""
    episodes = group.episodes.sum()
    return float((group.wins.sum() + 0.5 * group.draws.sum()) / episodes) if episodes else np.nan


def weighted_mean(group: pd.DataFrame, column: str) -> float:
    """Episode-weighted mean of ``column`` over the rows of ``group`` (NaN rows left out)."""
    valid = group[group[column].notna() & (group.episodes > 0)]
    if valid.empty:
        return np.nan
    return float(np.average(valid[column], weights=valid.episodes))


def policy_colors(ids: Sequence[str]) -> dict[str, Any]:
    """One stable colour per policy id, shared by every panel of every figure."""
    cmap = matplotlib.colormaps["tab10" if len(ids) <= 10 else "tab20"]
    return {pid: cmap(i % cmap.N) for i, pid in enumerate(sorted(ids))}


def all_policy_ids(run: Run) -> list[str]:
    """Every policy id the run mentions (trained, published or rated)."""
    ids = {*run.train.policy_id, *run.pool.policy_id, *run.ratings.policy_id, *run.matches.policy_id}
    return sorted(ids - {RANDOM_BASELINE})


def snapshot_label(policy_id: str, version: int) -> str:
    """``policy@version``; fixed baselines and joined line-ups (version -1) keep their bare id."""
    return f"{policy_id}@{version}" if version >= 0 else policy_id


# -------------------------------------------------------------------- figures


def plot_learning_curves(run: Run, colors: dict[str, Any]) -> Figure:
    """Top row: episode return vs env steps, one panel per role. Bottom row: entropy and approx KL."""
    train = run.train
    if train.empty:
        raise SkipFigure("the train table is empty")
    roles = sorted(train.role.unique())
    ncols = max(len(roles), 2)
    fig = Figure(figsize=(4.5 * ncols, 7.5), layout="constrained")
    axes = fig.subplots(2, ncols, squeeze=False)
    for ax, role in zip(axes[0], roles, strict=False):
        for pid, rows in train[train.role == role].groupby("policy_id", sort=True):
            rows = rows.dropna(subset=["episode_return_mean"])
            ax.plot(rows.env_steps, rows.episode_return_mean, label=pid, color=colors[pid])
        ax.set(title=f"role {role}", xlabel="env steps", ylabel="episode return (mean per agent)")
        ax.xaxis.set_major_formatter(EngFormatter())
        ax.legend(fontsize="small")
    for ax, (column, label) in zip(axes[1], [("entropy", "policy entropy"), ("approx_kl", "approx KL")], strict=False):
        for pid, rows in train.groupby("policy_id", sort=True):
            rows = rows.dropna(subset=[column])
            ax.plot(rows.env_steps, rows[column], label=pid, color=colors[pid])
        ax.set(title=label, xlabel="env steps", ylabel=label)
        ax.xaxis.set_major_formatter(EngFormatter())
        ax.legend(fontsize="small")
    for ax in [*axes[0][len(roles) :], *axes[1][2:]]:
        ax.set_visible(False)
    fig.suptitle("Learning curves")
    return fig


def plot_ratings(run: Run, colors: dict[str, Any]) -> Figure:
    """Elo of each policy's snapshots vs version, with the random baseline's fixed anchor."""
    ratings = run.ratings[run.ratings.policy_id != RANDOM_BASELINE]
    if ratings.empty:
        raise SkipFigure("the ratings table is empty")
    # A snapshot is re-rated whenever a later snapshot plays it: its last row is its current Elo.
    latest = ratings.drop_duplicates(["policy_id", "version"], keep="last")
    anchor = float(config_value(run.config, "evaluation.elo_initial", DEFAULT_ELO))
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.subplots()
    for pid, rows in latest.sort_values("version").groupby("policy_id", sort=True):
        role = rows.role.iloc[-1]
        ax.plot(rows.version, rows.elo, marker="o", markersize=3, label=f"{pid} ({role})", color=colors[pid])
    ax.axhline(anchor, linestyle="--", color="gray", label=f"{RANDOM_BASELINE} (anchor, {anchor:g})")
    ax.set(title="Elo of each snapshot (latest rating)", xlabel="version", ylabel="Elo")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize="small")
    return fig


def plot_vs_random(run: Run, colors: dict[str, Any]) -> Figure:
    """Each snapshot against the random baseline: score rate (competitive) or team return
    (cooperative, with the random comparator's return on the same episodes dashed)."""
    evals = evaluations(run)
    evals = evals[evals.opponent_id.map(is_random).astype(bool)]
    if evals.empty:
        raise SkipFigure(f"no evaluation matches against the {RANDOM_BASELINE!r} baseline")
    cooperative = is_cooperative(run)
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.subplots()
    for pid, rows in evals.groupby("policy_id", sort=True):
        by_version = rows.groupby("version", sort=True)
        if cooperative:
            own = by_version.apply(weighted_mean, "return_mean")
            other = by_version.apply(weighted_mean, "opponent_return_mean")
            ax.plot(own.index, own.values, marker="o", markersize=3, label=pid, color=colors[pid])
            ax.plot(
                other.index,
                other.values,
                linestyle="--",
                color=colors[pid],
                alpha=0.6,
                label=f"{RANDOM_BASELINE} in {pid}'s seat",
            )
        else:
            rate = by_version.apply(score_rate)
            ax.plot(rate.index, rate.values, marker="o", markersize=3, label=pid, color=colors[pid])
    if cooperative:
        ax.set(title=f"Team return vs the {RANDOM_BASELINE} comparator", ylabel="episode return (mean)")
    else:
        ax.axhline(0.5, linestyle=":", color="gray")
        ax.set(
            title=f"Score rate vs the {RANDOM_BASELINE} baseline",
            ylabel="(wins + 0.5 draws) / episodes",
            ylim=(-0.02, 1.02),
        )
    ax.set_xlabel("version")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize="small")
    return fig


def plot_matchups(run: Run, colors: dict[str, Any]) -> Figure:
    """Heatmap of evaluation matches between pool members: rows policy@version, columns
    opponent@version; score rate (competitive) or this side's return (cooperative)."""
    evals = evaluations(run)
    evals = evals[(evals.opponent_id != NO_OPPONENT) & ~evals.opponent_id.map(is_random).astype(bool)]
    if evals.empty:
        raise SkipFigure("no evaluation matches between pool members")
    cooperative = is_cooperative(run)
    keys = ["policy_id", "version", "opponent_id", "opponent_version"]
    grouped = evals.groupby(keys, sort=True)
    values = grouped.apply(weighted_mean, "return_mean") if cooperative else grouped.apply(score_rate)
    matrix = values.unstack(["opponent_id", "opponent_version"]).sort_index().sort_index(axis=1)
    rows = [snapshot_label(p, int(v)) for p, v in matrix.index]
    cols = [snapshot_label(p, int(v)) for p, v in matrix.columns]
    data = np.ma.masked_invalid(matrix.to_numpy(dtype=float))
    width = min(4 + 0.45 * len(cols), 30)
    height = min(3 + 0.35 * len(rows), 30)
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.subplots()
    cmap = matplotlib.colormaps["viridis" if cooperative else "RdBu"].with_extremes(bad="0.9")  # never met
    limits = {} if cooperative else {"vmin": 0.0, "vmax": 1.0}
    image = ax.imshow(data, cmap=cmap, aspect="auto", interpolation="nearest", **limits)
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize="small")
    ax.set_yticks(range(len(rows)), rows, fontsize="small")
    if len(rows) * len(cols) <= 400:
        for (i, j), value in np.ndenumerate(matrix.to_numpy(dtype=float)):
            if not np.isnan(value):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize="x-small")
    label = "return (mean) of the row side" if cooperative else "score rate of the row side"
    fig.colorbar(image, ax=ax, label=label)
    ax.set(title="Evaluation match-ups", xlabel="opponent@version", ylabel="policy@version")
    return fig


def plot_throughput(run: Run, colors: dict[str, Any]) -> Figure:
    """Environment steps per second and cumulative seconds waited on the server, per trainer rank."""
    train = run.train
    if train.empty:
        raise SkipFigure("the train table is empty")
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    speed_ax, wait_ax = fig.subplots(1, 2)
    for rank, rows in train.sort_values("time", kind="stable").groupby("rank", sort=True):
        label = f"rank {rank} ({', '.join(rows.policy_id.unique())})"
        speed_ax.plot(rows.time, rows.steps_per_s, label=label)
        wait_ax.plot(rows.time, rows.wait_s.fillna(0.0).cumsum(), label=label)
    speed_ax.set(title="Trainer throughput", xlabel="time since start (s)", ylabel="env steps / s")
    wait_ax.set(title="Time waited on the server", xlabel="time since start (s)", ylabel="cumulative wait (s)")
    for ax in (speed_ax, wait_ax):
        ax.legend(fontsize="small")
    return fig


FIGURES: dict[str, Callable[[Run, dict[str, Any]], Figure]] = {
    "learning_curves.png": plot_learning_curves,
    "ratings.png": plot_ratings,
    "vs_random.png": plot_vs_random,
    "matchups.png": plot_matchups,
    "throughput.png": plot_throughput,
}
"""Output file name -> the function drawing it, in the order they are written."""


# -------------------------------------------------------------------- command line


def write_figures(run: Run, out_dir: Path) -> list[Path]:
    """Draw every figure the run has data for into ``out_dir``; print a note for each one skipped."""
    colors = policy_colors(all_policy_ids(run))
    written: list[Path] = []
    for name, draw in FIGURES.items():
        try:
            fig = draw(run, colors)
        except SkipFigure as reason:
            print(f"{PROG}: skipped {name}: {reason}")
            continue
        path = out_dir / name
        fig.savefig(path, dpi=DPI)
        written.append(path)
    return written


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: the run file and the output folder."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Draw learning curves, Elo, evaluation and throughput figures of an mpimarl run."
    )
    parser.add_argument("run", type=Path, metavar="RUN.h5", help="run file written by `mpimarl train`")
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        default=None,
        help="folder for the PNG files (default: the run file's folder)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Plot the run named on the command line; 0 on success, 2 for a bad run file or output folder."""
    args = parse_args(argv)
    try:
        run = load_run(args.run)
    except RunFileError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    out_dir = args.out if args.out is not None else args.run.parent
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        written = write_figures(run, out_dir)
    except OSError as exc:
        print(f"{PROG}: error: cannot write figures to {out_dir}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if written:
        print(f"{PROG}: wrote {len(written)} file(s):")
        for path in written:
            print(f"  {path}")
    else:
        print(f"{PROG}: the run holds no data to plot yet; no files written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
