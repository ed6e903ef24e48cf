"""Draw the figures of one mpimarl run file as PNGs: learning curves, Elo, play against the random
baseline, the evaluation match-up matrix, trainer throughput, and for league runs the skill
ratings with their uncertainty, the payoff table, the meta-strategy over time and exploitability.
A cooperative run (a team task) is judged by team return: its figures show returns (against the
random comparator, in the payoff table and the match-ups) and leave out the Elo and skill ratings.

    python -m mpimarl report RUN.h5 [--out DIR]     (or: python analysis/plot_run.py RUN.h5)
    python -m mpimarl report RUN.h5 --follow [--interval 30]   (redraw a live run until it ends)

DIR defaults to the run file's folder. Each figure whose data the run does not hold (an empty table,
no evaluations yet) is skipped with a printed note, so a run can be plotted while it is still going.
A missing or unreadable run file prints ``mpimarl report: error: <message>`` and exits with code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
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
from mpimarl.record.live import live_writer  # noqa: E402

PROG = "mpimarl report"
NO_OPPONENT = "-"
"""``opponent_id`` of a match without another side (a one-team cooperative task)."""
DEFAULT_ELO = 1000.0
"""Elo of the random anchor when the run's config does not say (the config's own default)."""
DPI = 120
POPULATION = "population"
"""``policy_id`` of the exploitability rows of the meta-strategy mixture."""


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
    """Whether the run's task is cooperative (judged by team return, not by wins)."""
    return run.cooperative


COOPERATIVE_NO_RATINGS = ("a cooperative task: Elo and skill ratings rank wins over the random comparator, "
                          "which say nothing of a team's return (see vs_random.png and learning_curves.png)")
"""Why the rating figures are skipped for a cooperative run."""


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
    ids = {*run.train.policy_id, *run.pool.policy_id, *run.ratings.policy_id, *run.matches.policy_id,
           *run.meta.policy_id, *run.exploitability.policy_id}
    return sorted(ids - {RANDOM_BASELINE, POPULATION})


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
    """Elo of each policy's snapshots vs version, with the random baseline's fixed anchor (competitive
    runs only: a cooperative run's "wins" only say its return beat random partners')."""
    if is_cooperative(run):
        raise SkipFigure(COOPERATIVE_NO_RATINGS)
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
    evals = evals[(evals.opponent_id != NO_OPPONENT) & ~evals.opponent_id.map(is_random).astype(bool)
                  & (evals.matchmaker != "communication")]
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


def plot_rating_uncertainty(run: Run, colors: dict[str, Any]) -> Figure:
    """Plackett-Luce skill (mu, with a band of one sigma) of each policy's newest snapshot over time:
    one point per snapshot, at its last rating while it was the newest (competitive runs only)."""
    if is_cooperative(run):
        raise SkipFigure(COOPERATIVE_NO_RATINGS)
    ratings = run.ratings[(run.ratings.policy_id != RANDOM_BASELINE) & run.ratings.mu.notna()]
    if ratings.empty:
        raise SkipFigure("the ratings table has no mu/sigma ratings")
    ratings = ratings.sort_values("time", kind="stable")
    roles = sorted(ratings.role.unique())
    fig = Figure(figsize=(6 * len(roles), 5), layout="constrained")
    axes = fig.subplots(1, len(roles), squeeze=False)[0]
    for ax, role in zip(axes, roles):
        for pid, rows in ratings[ratings.role == role].groupby("policy_id", sort=True):
            # One point per snapshot: its rating when it stopped being the policy's newest (its last
            # row before the next version's first). Re-ratings of older snapshots are left out.
            rows = rows[rows.version == rows.version.cummax()].drop_duplicates("version", keep="last")
            color = colors.get(pid)
            ax.plot(rows.time, rows.mu, marker="o", markersize=3, label=pid, color=color)
            sigma = rows.sigma.fillna(0.0)
            ax.fill_between(rows.time, rows.mu - sigma, rows.mu + sigma, color=color, alpha=0.2, linewidth=0)
        ax.set(title=f"role {role}: skill of the latest snapshot (mu +/- sigma)", xlabel="time since start (s)",
               ylabel="mu (Plackett-Luce)")
        ax.legend(fontsize="small")
    return fig


MAX_PAYOFF_LABELS = 40
"""The payoff heatmap shows at most this many snapshots per axis (the most recently updated)."""


def label_order(label: str) -> tuple[int, str, int]:
    """Sort key of payoff ids: snapshots by policy then version, then baselines, then joined line-ups."""
    policy, at, version = label.rpartition("@")
    if at and "+" not in label and version.lstrip("-").isdigit():
        return 0, policy, int(version)
    return (1 if "+" not in label else 2), label, 0


def _newest_labels(entries: pd.DataFrame, column: str) -> list[str]:
    """Up to MAX_PAYOFF_LABELS ids of `column`, the most recently updated snapshots kept (all baselines)."""
    last = entries.groupby(column).time.max().sort_values(kind="stable")
    snapshots = [x for x in last.index if label_order(x)[0] == 0][-MAX_PAYOFF_LABELS:]
    others = [x for x in last.index if label_order(x)[0] != 0][-MAX_PAYOFF_LABELS:]
    return sorted([*snapshots, *others], key=label_order)


def plot_payoff(run: Run, colors: dict[str, Any]) -> Figure:
    """The payoff table: the latest cumulative entry of each (row, column), one panel per role; the
    score colours (the expected return where entries are exact, the row's mean team return in a
    cooperative run, where a score would only count the episodes it beat its comparator)."""
    payoff = run.payoff
    if payoff.empty:
        raise SkipFigure("the payoff table is empty")
    latest = payoff.sort_values("time", kind="stable").drop_duplicates(["role", "row_id", "column_id"], keep="last")
    roles = sorted(latest.role.unique())
    cooperative = is_cooperative(run)
    panels = []
    for role in roles:
        entries = latest[latest.role == role]
        rows, cols = _newest_labels(entries, "row_id"), _newest_labels(entries, "column_id")
        kind = "team" if cooperative else ("exact" if entries.score.isna().all() else "score")
        field = "score" if kind == "score" else "return_mean"
        matrix = entries.pivot_table(index="row_id", columns="column_id", values=field, aggfunc="last")
        panels.append((role, matrix.reindex(index=rows, columns=cols), kind))
    width = sum(min(4 + 0.4 * m.shape[1], 24) for _, m, _ in panels)
    height = min(3 + 0.3 * max(m.shape[0] for _, m, _ in panels), 24)
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (role, matrix, kind) in zip(axes, panels):
        data = np.ma.masked_invalid(matrix.to_numpy(dtype=float))
        cmap = "RdBu"
        if kind == "exact":
            bound = float(np.nanmax(np.abs(matrix.to_numpy(dtype=float)))) or 1.0
            limits, label = {"vmin": -bound, "vmax": bound}, "expected return of the row (exact)"
        elif kind == "team":
            limits, label, cmap = {}, "team return of the row (mean)", "viridis"
        else:
            limits, label = {"vmin": 0.0, "vmax": 1.0}, "score of the row: (wins + draws/2) / games"
        image = ax.imshow(data, cmap=matplotlib.colormaps[cmap].with_extremes(bad="0.9"), aspect="auto",
                          interpolation="nearest", **limits)
        ax.set_xticks(range(matrix.shape[1]), list(matrix.columns), rotation=60, ha="right", fontsize="x-small")
        ax.set_yticks(range(matrix.shape[0]), list(matrix.index), fontsize="x-small")
        if matrix.size <= 225:
            for (i, j), value in np.ndenumerate(matrix.to_numpy(dtype=float)):
                if not np.isnan(value):
                    ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize="xx-small")
        fig.colorbar(image, ax=ax, label=label)
        title = f"Payoff table (team return), role {role}" if kind == "team" else f"Payoff table, role {role}"
        ax.set(title=title, xlabel="column (the other seats)", ylabel="row")
    return fig


AGE_BUCKETS = ((0, 0, "latest"), (1, 1, "1 back"), (2, 4, "2-4 back"), (5, 9, "5-9 back"), (10, None, "10+ back"))
"""Snapshot ages (versions behind the policy's newest) the meta-strategy figure groups weights by."""


def _age_bucket(age: int) -> str:
    return next(label for low, high, label in AGE_BUCKETS if age >= low and (high is None or age <= high))


def plot_meta_strategy(run: Run, colors: dict[str, Any]) -> Figure:
    """The matchmaker's distribution over each role's snapshots per generation, stacked by policy
    and by snapshot age (how many versions behind its policy's newest), and the Nash weights of the
    payoff table by policy where they are recorded."""
    meta = run.meta[run.meta.weight.notna()]
    if meta.empty:
        raise SkipFigure("the meta table is empty")
    meta = meta.sort_values("time", kind="stable")
    # The last update of each generation is the distribution the generation ended with.
    last = meta.groupby(["role", "matchmaker", "generation"]).time.transform("max")
    meta = meta[meta.time == last].copy()
    newest = meta.groupby(["role", "matchmaker", "generation", "policy_id"]).version.transform("max")
    meta["age"] = (newest - meta.version).map(_age_bucket)
    panels = sorted(meta.groupby(["role", "matchmaker"]).groups)
    ages = [label for _, _, label in AGE_BUCKETS]
    age_colors = dict(zip(ages, matplotlib.colormaps["viridis"](np.linspace(0.05, 0.95, len(ages)))))
    views = [("weight", "policy_id", "matchmaker weight by policy"), ("weight", "age", "matchmaker weight by age")]
    if meta.nash_weight.notna().any():
        views.append(("nash_weight", "policy_id", "Nash weight by policy"))
    fig = Figure(figsize=(6 * len(panels), 3.6 * len(views)), layout="constrained")
    axes = fig.subplots(len(views), len(panels), squeeze=False)
    for j, (role, matchmaker) in enumerate(panels):
        rows = meta[(meta.role == role) & (meta.matchmaker == matchmaker)]
        for i, (value, group, label) in enumerate(views):
            ax = axes[i][j]
            table = rows.pivot_table(index="generation", columns=group, values=value, aggfunc="sum")
            table = table.fillna(0.0).sort_index()
            keys = [a for a in ages if a in table.columns] if group == "age" else sorted(table.columns)
            palette = age_colors if group == "age" else colors
            ax.stackplot(table.index, *[table[k] for k in keys], labels=keys,
                         colors=[palette.get(k, "0.6") for k in keys], alpha=0.85)
            ax.set(title=f"role {role} ({matchmaker}): {label}", xlabel="generation",
                   ylabel="share of the role's seats", ylim=(0, max(1.0, float(table.sum(axis=1).max()))))
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend(fontsize="small", loc="upper left")
    fig.suptitle("Meta-strategy over each role's snapshots")
    return fig


def plot_exploitability(run: Run, colors: dict[str, Any]) -> Figure:
    """Exact exploitability per generation of each policy's latest snapshot and of the population
    mixture (log scale)."""
    table = run.exploitability[run.exploitability.exploitability.notna()]
    if table.empty:
        raise SkipFigure("the exploitability table is empty (not an exactly solvable OpenSpiel game?)")
    positive = table.exploitability[table.exploitability > 0]
    floor = float(positive.min()) / 2 if len(positive) else 1e-6  # an exact 0 cannot sit on a log axis
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.subplots()
    for pid, rows in table.sort_values("generation", kind="stable").groupby("policy_id", sort=True):
        values = rows.exploitability.clip(lower=floor)
        if pid == POPULATION:
            ax.plot(rows.generation, values, color="black", linewidth=2.5, linestyle="--", label="population mixture")
        else:
            ax.plot(rows.generation, values, marker="o", markersize=3, color=colors.get(pid), label=f"{pid} (latest)")
    if (table.exploitability <= 0).any():
        ax.axhline(floor, linestyle=":", color="gray", label=f"exactly 0 (drawn at {floor:.2g})")
    ax.set_yscale("log")
    ax.set(title="Exploitability (NashConv / players)", xlabel="generation", ylabel="exploitability")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize="small")
    return fig


def plot_crossplay(run: Run, colors: dict[str, Any]) -> Figure:
    """Cooperative cross-play: one heatmap per role, team return of every snapshot with every partner
    snapshot it was paired with (co-trained versions and older partners it never trained with)."""
    from mpimarl.analysis import crossplay_matrix

    roles = list(dict.fromkeys(run.matches[run.matches.matchmaker == "crossplay"].role))
    if not roles:
        raise SkipFigure("no cross-play evaluation rows (cooperative tasks with several roles)")
    matrices = [crossplay_matrix(run, r) for r in roles]
    width = min(4 + 0.45 * max(m.shape[1] for m in matrices), 30) * len(roles)
    height = min(3 + 0.35 * max(m.shape[0] for m in matrices), 30)
    fig = Figure(figsize=(min(width, 40), height), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(roles)))
    for ax, role, matrix in zip(axes, roles, matrices):
        data = np.ma.masked_invalid(matrix.to_numpy(dtype=float))
        image = ax.imshow(data, cmap=matplotlib.colormaps["viridis"].with_extremes(bad="0.9"), aspect="auto",
                          interpolation="nearest")
        ax.set_xticks(range(matrix.shape[1]), list(matrix.columns), rotation=60, ha="right", fontsize="small")
        ax.set_yticks(range(matrix.shape[0]), list(matrix.index), fontsize="small")
        fig.colorbar(image, ax=ax, label="team return per agent")
        ax.set(title=f"Cross-play: {role} (rows) with partners (columns)", xlabel="partner@version",
               ylabel=f"{role}@version")
    return fig


def plot_communication(run: Run, colors: dict[str, Any]) -> Figure:
    """The communication check: return with the trained partners' messages vs random messages."""
    from mpimarl.analysis import communication_check

    table = communication_check(run)
    if table.empty:
        raise SkipFigure("no communication check rows (evaluation.communication_roles)")
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    for pid, group in table.groupby("policy_id"):
        group = group.sort_values("version")
        ax.plot(group.version, group.trained, marker="o", color=colors.get(pid), label=f"{pid}: trained partners")
        ax.plot(group.version, group.random, marker="x", linestyle="--", color=colors.get(pid),
                label=f"{pid}: random partners")
    ax.set(title="Communication check (same seeds)", xlabel="version", ylabel="return per agent (mean)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize="small")
    return fig


FIGURES: dict[str, Callable[[Run, dict[str, Any]], Figure]] = {
    "learning_curves.png": plot_learning_curves,
    "ratings.png": plot_ratings,
    "vs_random.png": plot_vs_random,
    "matchups.png": plot_matchups,
    "throughput.png": plot_throughput,
    "rating_uncertainty.png": plot_rating_uncertainty,
    "payoff.png": plot_payoff,
    "meta_strategy.png": plot_meta_strategy,
    "exploitability.png": plot_exploitability,
    "crossplay.png": plot_crossplay,
    "communication.png": plot_communication,
}
"""Output file name -> the function drawing it, in the order they are written."""


# -------------------------------------------------------------------- command line


def write_figures(run: Run, out_dir: Path, notes: bool = True) -> list[Path]:
    """Draw every figure the run has data for into ``out_dir``; print a note for each one skipped
    (unless ``notes`` is False). Each PNG is replaced whole (written aside, then renamed), so a
    viewer watching a followed run never reads half a file."""
    colors = policy_colors(all_policy_ids(run))
    written: list[Path] = []
    for name, draw in FIGURES.items():
        try:
            fig = draw(run, colors)
        except SkipFigure as reason:
            if notes:
                print(f"{PROG}: skipped {name}: {reason}")
            continue
        path = out_dir / name
        partial = path.with_name(f".{path.stem}.partial.png")
        fig.savefig(partial, dpi=DPI)
        os.replace(partial, path)
        written.append(path)
    return written


def run_state(run: Run) -> str:
    """'finished', 'failed: <why>', 'running' (its recorder is alive) or 'stopped' (its writer is gone
    without finishing: killed, or waiting for a requeue)."""
    if run.attrs.get("finished") is True:
        return "finished"
    if run.attrs.get("failure"):
        return f"failed: {run.attrs['failure']}"
    return "running" if live_writer(run.path) else "stopped"


def follow(path: Path, out_dir: Path, interval: float) -> int:
    """Redraw the figures of a run every `interval` seconds until it has finished, failed or stopped."""
    first = True
    while True:
        run = load_run(path)
        written = write_figures(run, out_dir, notes=first)
        state = run_state(run)
        print(f"{PROG}: {time.strftime('%H:%M:%S')} {len(run.train)} train rows, {len(run.pool)} snapshots; "
              f"drew {len(written)} figure(s) in {out_dir}; run {state}", flush=True)
        if state != "running":
            return 0
        first = False
        time.sleep(interval)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: the run file and the output folder."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Draw learning curves, ratings, evaluation, payoff, meta-strategy, exploitability and "
        "throughput figures of an mpimarl run.",
    )
    parser.add_argument("run", type=Path, metavar="RUN.h5", help="run file written by `mpimarl train`")
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        default=None,
        help="folder for the PNG files (default: the run file's folder)",
    )
    parser.add_argument("--follow", action="store_true",
                        help="keep redrawing while the run is going (every --interval seconds); stop when it ends")
    parser.add_argument("--interval", type=float, default=30.0, metavar="S",
                        help="seconds between redraws with --follow (default: 30)")
    args = parser.parse_args(argv)
    if args.interval <= 0:
        parser.error(f"--interval must be positive, got {args.interval}")
    return args


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
        if args.follow:
            return follow(args.run, out_dir, args.interval)
        written = write_figures(run, out_dir)
    except RunFileError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
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
