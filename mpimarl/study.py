"""The three research questions, answered from a folder of run files (`mpimarl study DIR`).

1. **Convergence speed under distribution**: wall time and environment steps (per policy) until a
   run first reaches its game's target, against ranks per policy and population members.
2. **Robustness**: the final policies of every setup in one round robin with scripted baselines
   (competitive games), cross-play of partners that never trained together (cooperative games), and
   exact exploitability where the game has it.
3. **Matchmaking**: how the strategy shapes a population over time: ratings, diversity (effective
   support of the meta-strategy, spread of the payoff table) and exploitability.

Runs are grouped into *setups* by their config ``name`` (a sweep file names each setup's runs so,
see :mod:`mpimarl.sweep`) and aggregated over seeds: mean and a 95% Student-t interval. Everything
is read with :func:`mpimarl.analysis.load_run`; nothing else about a run is needed.

    mpimarl study runs/study_small --out benchmarks/results/study_small
"""

from __future__ import annotations

import itertools
import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mpimarl.analysis import RANDOM_BASELINE, Run, crossplay_matrix, load_run
from mpimarl.errors import ConfigError, MpimarlError, RunFileError
from mpimarl.exploit import RESULTS_SUFFIX
from mpimarl.judging import JudgePlan, judge_run
from mpimarl.stats import difference, mean_interval

TARGETS: dict[str, float] = {
    "connect_four": 0.8,     # score (wins + draws/2) against the one-move tactical player
    "kuhn_poker": 0.1,       # population exploitability
    "leduc_poker": 1.0,
    "matrix_rps": 0.05,
    "simple_spread": -20.0,  # evaluated return per agent
    "simple_speaker_listener": -20.0,
    "CartPole": 475.0,       # training episode return
}
"""Default convergence targets per game (`--target GAME=VALUE` changes them)."""

POPULATION = "population"


def game_of(env_id: str) -> str:
    """A short game name from an environment id: 'pettingzoo.classic.connect_four_v3' -> 'connect_four',
    'openspiel:kuhn_poker' -> 'kuhn_poker', 'gymnasium:CartPole-v1' -> 'CartPole'."""
    name = re.split(r"[.:]", env_id)[-1]
    return re.sub(r"(_v\d+|-v\d+)$", "", name)


def interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95% Student-t interval of finite `values` (NaNs dropped; one value: no width)."""
    return mean_interval(values)


def _bounds(column: str) -> tuple[float, float]:
    """The range a column's values can take, to clip its interval to (few seeds make wide ones)."""
    if column.startswith("score"):
        return 0.0, 1.0
    if "support" in column:
        return 1.0, math.inf
    if column.startswith(("exploitability", "time", "steps", "payoff spread")):
        return 0.0, math.inf
    return -math.inf, math.inf


def _cell(values: Sequence[float], digits: int = 3, column: str = "") -> str:
    """'mean [low, high]' over seeds, the interval clipped to what the column's values can be."""
    mean, low, high = interval(values)
    if not np.isfinite(mean):
        return "-"
    lo, hi = _bounds(column)
    low, high = max(low, lo), min(high, hi)
    if low == high:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


# ---- one run ----------------------------------------------------------------------------------


@dataclass
class StudyRun:
    """One run file and what the study reads from it."""

    path: Path
    run: Run
    setup: str
    seed: int
    game: str
    kind: str
    strategy: str
    ranks: int
    ranks_per_policy: int
    members: int
    """Population members: the number of trained policies."""
    steps: float
    """Environment steps per policy at the end (mean over policies)."""
    wall_s: float

    @property
    def policy_ids(self) -> list[str]:
        """The run's trained policies (not baselines)."""
        return [p for ids in self.run.attrs.get("roles", {}).values() for p in ids]


def describe(path: Path, run: Run) -> StudyRun:
    """What the study needs of one run file."""
    cfg = run.config
    rpp = cfg.get("trainer", {}).get("ranks_per_policy", 1)
    rpp = max(rpp.values()) if isinstance(rpp, dict) and rpp else int(rpp or 1)
    ids = [p for group in run.attrs.get("roles", {}).values() for p in group]
    steps = run.train.groupby("policy_id").env_steps.max().mean() if len(run.train) else 0.0
    return StudyRun(path, run, str(cfg.get("name") or path.parent.name), int(run.attrs.get("seed", 0)),
                    game_of(str(cfg["env"]["id"])), str(cfg.get("task", {}).get("kind", "competitive")),
                    str(cfg.get("matchmaking", {}).get("strategy", "")), int(run.attrs.get("world_size", 0)),
                    int(rpp), len(ids), float(steps), float(run.attrs.get("wall_time_s", math.nan)))


def _steps_by_generation(run: Run) -> pd.Series:
    """Environment steps per policy (mean over policies) at the end of each generation."""
    t = run.train
    if t.empty:
        return pd.Series(dtype=float)
    per = t.groupby(["generation", "policy_id"]).env_steps.max().unstack("policy_id").sort_index().cummax().ffill()
    return per.mean(axis=1)


@dataclass(frozen=True)
class Metric:
    """What a run's convergence is measured by."""

    name: str
    higher_is_better: bool


def progress(sr: StudyRun) -> tuple[Metric, pd.DataFrame]:
    """The run's progress measure per generation: columns generation, time, steps, value.

    Exact games: population exploitability (lower is better). Competitive games with a scripted
    baseline: the mean score of the run's policies against it in scheduled evaluation (the first
    baseline of the config); else against random. Cooperative games: the evaluated team return per
    agent (comparator rows). Otherwise: the training episode return.
    """
    run = sr.run
    steps = _steps_by_generation(run)
    ex = run.exploitability
    if len(ex) and (ex.policy_id == POPULATION).any():
        rows = ex[ex.policy_id == POPULATION].groupby("generation").agg(time=("time", "max"),
                                                                       value=("exploitability", "last"))
        metric = Metric("population exploitability", False)
    else:
        m = run.matches[run.matches.kind == "evaluation"]
        scripted = [b["name"] for b in run.config.get("baselines", [])]
        if sr.kind == "cooperative":
            ev = m[(m.matchmaker == "comparator") & (m.opponent_id == RANDOM_BASELINE)]
            metric = Metric("evaluated return per agent", True)
            ev = ev.assign(value=ev.return_mean)
        else:
            opponent = scripted[0] if scripted and (m.opponent_id == scripted[0]).any() else RANDOM_BASELINE
            ev = m[(m.matchmaker == "baseline") & (m.opponent_id == opponent)]
            metric = Metric(f"score vs {opponent}", True)
            ev = ev.assign(value=(ev.wins + ev.draws / 2) / ev.episodes.clip(lower=1))
        if len(ev):
            # each generation: the mean over policies of their newest evaluated snapshot's value
            last = ev.sort_values("time").groupby(["generation", "policy_id"]).agg(time=("time", "max"),
                                                                                   value=("value", "last"))
            rows = last.groupby("generation").agg(time=("time", "max"), value=("value", "mean"))
        else:
            tr = run.train
            rows = tr.groupby("generation").agg(time=("time", "max"), value=("episode_return_mean", "mean"))
            metric = Metric("training episode return", True)
    rows = rows.reset_index()
    rows["steps"] = rows.generation.map(steps).astype(float) if len(steps) else math.nan
    rows.loc[rows.generation <= 0, "steps"] = 0.0
    return metric, rows[["generation", "time", "steps", "value"]]


def reached(metric: Metric, rows: pd.DataFrame, target: float) -> tuple[float, float]:
    """(seconds, steps) when `rows` first meet `target` after generation 0, NaNs when never."""
    trained = rows[rows.generation > 0]
    hit = trained[trained.value >= target] if metric.higher_is_better else trained[trained.value <= target]
    if hit.empty:
        return math.nan, math.nan
    first = hit.iloc[0]
    return float(first.time), float(first.steps)


# ---- the study ----------------------------------------------------------------------------------


def find_runs(folder: Path) -> tuple[list[StudyRun], list[str]]:
    """Every readable run file below `folder`, and one line per file that could not be read."""
    runs, skipped = [], []
    for path in sorted(folder.rglob("run.h5")):
        if any(part.endswith(RESULTS_SUFFIX) for part in path.relative_to(folder).parts[:-1]):
            continue  # an exploiter job's own run file (RUN.exploit/<job>/run.h5), not a run of the study
        try:
            run = load_run(path)
            runs.append(describe(path, run))
        except (RunFileError, KeyError, ValueError) as exc:
            skipped.append(f"{path}: {exc}")
    return runs, skipped


def _setups(runs: list[StudyRun]) -> pd.DataFrame:
    return pd.DataFrame([{"setup": r.setup, "game": r.game, "strategy": r.strategy, "ranks": r.ranks,
                          "ranks_per_policy": r.ranks_per_policy, "members": r.members} for r in runs]
                        ).drop_duplicates("setup").set_index("setup")


def convergence(runs: list[StudyRun], targets: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame,
                                                                         dict[str, pd.DataFrame]]:
    """Question 1: per run and per setup, time and steps to the game's target; and the curves."""
    per_run, curves = [], {}
    for r in runs:
        metric, rows = progress(r)
        target = targets.get(r.game, math.nan)
        secs, steps = reached(metric, rows, target) if np.isfinite(target) else (math.nan, math.nan)
        final = float(rows.value.iloc[-1]) if len(rows) else math.nan
        per_run.append({"setup": r.setup, "seed": r.seed, "game": r.game, "metric": metric.name,
                        "target": target, "reached": bool(np.isfinite(secs)), "time_to_target_s": secs,
                        "steps_to_target": steps, "final": final, "steps": r.steps, "wall_s": r.wall_s,
                        "path": str(r.path)})
        curves[f"{r.setup}\t{r.seed}"] = rows.assign(setup=r.setup, seed=r.seed, game=r.game, metric=metric.name)
    frame = pd.DataFrame(per_run)
    info = _setups(runs)
    table = []
    for setup, g in frame.groupby("setup", sort=False):
        row = {"setup": setup, **info.loc[setup].to_dict(), "metric": g.metric.iloc[0], "target": g.target.iloc[0],
               "seeds": len(g), "reached": f"{int(g.reached.sum())}/{len(g)}",
               "time_to_target_s": _cell(g.time_to_target_s, 0, "time"),
               "steps_to_target": _cell(g.steps_to_target, 0, "steps"),
               "final": _cell(g.final, 3, "exploitability" if "exploitability" in g.metric.iloc[0]
                              else "score" if g.metric.iloc[0].startswith("score") else ""),
               "steps_per_policy": _cell(g.steps, 0, "steps")}
        table.append(row)
    return frame, pd.DataFrame(table), curves


Add = Callable[[str, str, float, Path], None]
"""add(setup, column, value, run file): one value of a run for a robustness column."""


def _own_robustness(r: StudyRun, add: Add) -> None:
    """What one run says by itself: final exploitability; cross-play and co-trained return (cooperative)."""
    ex = r.run.exploitability
    if len(ex):
        last = ex[ex.generation == ex.generation.max()]
        pop = last[last.policy_id == POPULATION].exploitability
        if len(pop):
            add(r.setup, "exploitability (population)", float(pop.iloc[-1]), r.path)
        add(r.setup, "exploitability (latest)", float(last[last.policy_id != POPULATION].exploitability.mean()),
            r.path)
    if r.kind != "cooperative":
        return
    cp = crossplay_matrix(r.run)
    if not cp.empty:
        values = cp.to_numpy(dtype=float)
        own = np.array([[str(c).split("@")[-1] == str(i).split("@")[-1] for c in cp.columns] for i in cp.index])
        if own.any():
            add(r.setup, "crossplay, partners of the same generation", float(np.nanmean(values[own])), r.path)
        if (~own).any():
            add(r.setup, "crossplay, partners of other generations", float(np.nanmean(values[~own])), r.path)
    _, rows = progress(r)
    if len(rows):
        add(r.setup, "return with co-trained partners (final)", float(rows.value.iloc[-1]), r.path)


def _round_robin(game: str, group: list[StudyRun], episodes: int, seed: int, add: Add) -> str:
    """One round robin of every run's final policies and the baselines; returns a note on it."""
    from mpimarl.arena import round_robin, run_names

    baselines = list(dict.fromkeys([RANDOM_BASELINE, *[b["name"] for b in group[0].run.config.get("baselines", [])]]))
    try:
        frame = round_robin([r.path for r in group], vs=",".join(baselines), episodes=episodes, seed=seed).results
    except MpimarlError as exc:
        return f"{game}: no round robin ({exc})"
    # entrant labels are '<run name>/<policy>@<version>' (just '<policy>@<version>' for one run)
    names = run_names([r.path for r in group], [r.run for r in group]) if len(group) > 1 else [""]
    owner, source = {}, {}
    for name, r in zip(names, group, strict=True):
        for label in frame.entrant.unique():
            if (label.split("/", 1)[0] == name) if name else label not in baselines:
                owner[label], source[label] = r.setup, r.path
    for label, setup in owner.items():
        mine = frame[frame.entrant == label]
        others = mine[[o in owner and owner[o] != setup for o in mine.opponent]]
        if len(others):
            add(setup, "score vs other setups", float(others.score.mean()), source[label])
        for name in baselines:
            vs = mine[mine.opponent == name]
            if len(vs):
                add(setup, f"score vs {name}", float(vs.score.mean()), source[label])
    return (f"{game}: round robin of {len(owner)} final policies and {len(baselines)} baseline(s) "
            f"({', '.join(baselines)}), {episodes} episodes per pairing, seed {seed}")


def _cross_runs(game: str, group: list[StudyRun], episodes: int, seed: int, add: Add) -> str:
    """Cooperative games: every run's final policies with the final partners of every other run
    (other seeds, other setups: partners it never trained with); returns a note on it."""
    from mpimarl.arena import round_robin, run_names

    if len(group) < 2:
        return f"{game}: one run, no partners from other runs"
    try:
        frame = round_robin([r.path for r in group], vs=[], episodes=episodes, seed=seed).results
    except MpimarlError as exc:
        return f"{game}: no cross-play between runs ({exc})"
    names = run_names([r.path for r in group], [r.run for r in group])
    by_name = dict(zip(names, group, strict=True))
    frame = frame.assign(row_run=frame.entrant.str.split("/", n=1).str[0],
                         partner_run=frame.opponent.str.split("/", n=1).str[0])
    frame = frame[frame.partner_run.isin(by_name) & (frame.row_run != frame.partner_run)]
    for name, mine in frame.groupby("row_run"):
        r = by_name[str(name)]
        add(r.setup, "return with partners from other runs", float(mine.return_mean.mean()), r.path)
        others = mine[[by_name[p].setup != r.setup for p in mine.partner_run]]
        if len(others):
            add(r.setup, "return with partners of other setups", float(others.return_mean.mean()), r.path)
    return (f"{game}: each of {len(group)} runs' final policies with the final partners of every other run "
            f"(never trained together), {episodes} episodes per pairing, seed {seed}")


def robustness(runs: list[StudyRun], episodes: int, seed: int) -> tuple[pd.DataFrame, list[str], pd.DataFrame]:
    """Question 2: per setup, the final policies' scores in one round robin per game (against the
    other setups' final policies and the scripted baselines), cross-play of partners that never
    trained together, and final exploitability. Returns the table, notes on the round robins and
    the per-run values (`OUTCOME_COLUMNS`)."""
    # setup -> column -> run file -> values (a run's policies are averaged first, then seeds)
    rows: dict[str, dict[str, dict[str, list[float]]]] = {}

    def add(setup: str, column: str, value: float, path: Path) -> None:
        rows.setdefault(setup, {}).setdefault(column, {}).setdefault(str(path), []).append(value)

    by_game: dict[str, list[StudyRun]] = {}
    for r in runs:
        by_game.setdefault(r.game, []).append(r)
        _own_robustness(r, add)
    notes = []
    if episodes > 0:
        notes = [(_cross_runs if group[0].kind == "cooperative" else _round_robin)(game, group, episodes, seed, add)
                 for game, group in by_game.items()]
    info = _setups(runs)
    table = []
    for setup, cols in rows.items():
        table.append({"setup": setup, "game": info.loc[setup, "game"], "strategy": info.loc[setup, "strategy"],
                      **{k: _cell([float(np.mean(v)) for v in per_run.values()], 3, k) for k, per_run in cols.items()}})
    by_path = {str(r.path): r for r in runs}
    outcomes = [_outcome(by_path[path], column, float(np.mean(values)))
                for cols in rows.values() for column, per_run in cols.items() for path, values in per_run.items()]
    return pd.DataFrame(table), notes, pd.DataFrame(outcomes, columns=list(OUTCOME_COLUMNS))


def _effective_support(meta: pd.DataFrame) -> pd.DataFrame:
    """exp(entropy) of the meta-strategy of each (generation, role): how many snapshots it really mixes."""
    if meta.empty:
        return pd.DataFrame(columns=["generation", "time", "support"])
    last = meta[meta.time == meta.groupby(["generation", "role"]).time.transform("max")]

    def support(w: pd.Series) -> float:
        p = w.to_numpy(dtype=float)
        p = p[p > 0] / p[p > 0].sum() if (p > 0).any() else p
        return float(np.exp(-(p * np.log(p)).sum())) if len(p) else math.nan

    out = last.groupby(["generation", "role"]).agg(time=("time", "max"), support=("weight", support))
    return out.groupby("generation").agg(time=("time", "max"), support=("support", "mean")).reset_index()


def _rating_curve(sr: StudyRun) -> pd.DataFrame:
    """Per generation, the mean rating (mu) of the run's policies' newest rated snapshots."""
    r = sr.run.ratings
    r = r[r.policy_id.isin(sr.policy_ids)].sort_values("time")
    if r.empty:
        return pd.DataFrame(columns=["generation", "mu", "elo"])
    newest = r[r.version == r.groupby("policy_id").version.cummax()]
    last = newest.groupby(["generation", "policy_id"]).agg(mu=("mu", "last"), elo=("elo", "last"))
    return last.groupby("generation").mean().reset_index()


def matchmaking(runs: list[StudyRun]) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], pd.DataFrame]:
    """Question 3: per setup, final rating, diversity and exploitability; the curves over time; and
    the per-run values (`OUTCOME_COLUMNS`)."""
    cols: dict[str, dict[str, list[float]]] = {}
    curves: dict[str, pd.DataFrame] = {}
    outcomes: list[dict[str, object]] = []
    for sr in runs:
        steps = _steps_by_generation(sr.run)
        rating = _rating_curve(sr)
        support = _effective_support(sr.run.meta)
        curve = rating.merge(support, on="generation", how="outer") if len(support) else rating
        ex = sr.run.exploitability
        if len(ex) and (ex.policy_id == POPULATION).any():
            pop = ex[ex.policy_id == POPULATION][["generation", "exploitability"]]
            curve = curve.merge(pop, on="generation", how="outer")
        curve = curve.sort_values("generation")
        curve["steps"] = curve.generation.map(steps).astype(float) if len(steps) else math.nan
        curves[f"{sr.setup}\t{sr.seed}"] = curve.assign(setup=sr.setup, seed=sr.seed, game=sr.game)
        c = cols.setdefault(sr.setup, {})
        if len(rating):
            c.setdefault("final rating mu", []).append(float(rating.mu.iloc[-1]))
            c.setdefault("final Elo", []).append(float(rating.elo.iloc[-1]))
        if len(support):
            c.setdefault("effective support (final)", []).append(float(support.support.iloc[-1]))
            c.setdefault("effective support (mean)", []).append(float(support.support.mean()))
        pay = sr.run.payoff_table()
        if len(pay):
            pool = pay[pay.row_id.str.split("@").str[0].isin(sr.policy_ids)
                       & pay.column_id.str.split("@").str[0].isin(sr.policy_ids)]
            if len(pool) > 1:
                c.setdefault("payoff spread (std of scores)", []).append(float(pool.score.std()))
        if "exploitability" in curve and curve.exploitability.notna().any():
            c.setdefault("exploitability (final)", []).append(float(curve.exploitability.dropna().iloc[-1]))
            c.setdefault("exploitability (min)", []).append(float(curve.exploitability.min()))
        if len(support):
            outcomes.append(_outcome(sr, "effective support (mean)", float(support.support.mean())))
        if len(rating):
            outcomes.append(_outcome(sr, "final rating mu", float(rating.mu.iloc[-1])))
    info = _setups(runs)
    table = [{"setup": s, "game": info.loc[s, "game"], "strategy": info.loc[s, "strategy"],
              "seeds": sum(r.setup == s for r in runs), **{k: _cell(v, 3, k) for k, v in c.items()}}
             for s, c in cols.items()]
    return pd.DataFrame(table), curves, pd.DataFrame(outcomes, columns=list(OUTCOME_COLUMNS))


# ---- per-run outcomes, held-out judges, and comparisons between setups --------------------------

OUTCOME_COLUMNS = ("setup", "seed", "game", "path", "metric", "value")
"""Long form of every per-run value a comparison can test: one row per (run, metric)."""

JUDGED = "held-out score vs "
"""Prefix of the judges' per-run metrics (apart from the round robin's "score vs ...")."""


def lower_is_better(metric: str) -> bool:
    """Exploitability and the steps or time to a target are better when lower; the rest when higher."""
    return "exploitability" in metric or metric.startswith(("steps to", "time to"))


def _outcome(sr: StudyRun, metric: str, value: float) -> dict[str, object]:
    return {"setup": sr.setup, "seed": sr.seed, "game": sr.game, "path": str(sr.path), "metric": metric,
            "value": value}


def judges(runs: list[StudyRun], plan: JudgePlan) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Held-out judges: every competitive run's final policies against the search/scripted players
    and own earlier snapshots of `plan` (cached beside each run file, see :mod:`mpimarl.judging`).
    Returns the per-setup table (mean over seeds of each run's mean over its policies, 95% interval),
    the per-run outcomes and notes (judges that could not play, runs without judges)."""
    outcomes: list[dict[str, object]] = []
    notes: list[str] = []
    for sr in runs:
        if sr.kind == "cooperative" or not re.search(plan.setups, sr.setup):
            continue
        try:
            rows, why = judge_run(sr.path, plan, sr.run)
        except MpimarlError as exc:
            notes.append(f"{sr.path}: not judged ({exc})")
            continue
        notes += why
        for judge, g in rows.groupby("judge", sort=False):
            outcomes.append(_outcome(sr, f"{JUDGED}{judge}", float(g.score.mean())))
    frame = pd.DataFrame(outcomes, columns=list(OUTCOME_COLUMNS))
    table = []
    for setup, g in frame.groupby("setup", sort=False):
        row: dict[str, object] = {"setup": setup, "game": g.game.iloc[0], "seeds": g.seed.nunique()}
        for name in plan.names:
            values = g[g.metric == f"{JUDGED}{name}"].value
            if len(values):
                row[f"score vs {name}"] = _cell(values.tolist(), 3, "score")
        table.append(row)
    return pd.DataFrame(table), frame, notes


_NOT_A_FACTOR = ("name", "seed", "server.", "checkpoint.", "schedule.time_limit_s", "trainer.device",
                 "trainer.torch_threads", "logging.")
"""Config keys that never make two setups different experiments (labels, logging, bookkeeping)."""


def _flatten(value: object, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, inner in value.items():
            out.update(_flatten(inner, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): repr(value)}


def _resolved(config: dict[str, Any]) -> dict[str, Any]:
    """A recorded config as today's schema resolves it (fields added since with their defaults), so
    runs recorded before a field existed compare equal to runs that record its default."""
    from mpimarl.config import config_to_dict, parse_config

    try:
        return config_to_dict(parse_config(config))
    except (MpimarlError, ValueError, TypeError):
        return config


def setup_factors(runs: list[StudyRun]) -> dict[str, dict[str, str]]:
    """Per setup, its flattened config (its first run's) plus its rank count: what setups may differ in."""
    out: dict[str, dict[str, str]] = {}
    for sr in runs:
        if sr.setup not in out:
            flat = {k: v for k, v in _flatten(_resolved(sr.run.config)).items() if not k.startswith(_NOT_A_FACTOR)}
            out[sr.setup] = {**flat, "ranks": repr(sr.ranks)}
    return out


def check_setups(runs: list[StudyRun]) -> tuple[list[StudyRun], list[str]]:
    """Runs fit to aggregate, and one note per problem: a setup label shared by runs of different
    games (the runs of every game but the setup's most common one are left out, named), runs of one
    setup whose configs differ beyond the seed (kept, the keys named), a setup with one seed (no
    interval)."""
    keep: list[StudyRun] = []
    notes: list[str] = []
    by_setup: dict[str, list[StudyRun]] = {}
    for sr in runs:
        by_setup.setdefault(sr.setup, []).append(sr)
    for setup, group in by_setup.items():
        games = pd.Series([r.game for r in group])
        main = str(games.value_counts().index[0])
        odd = [r for r in group if r.game != main]
        if odd:
            notes.append(f"setup {setup!r} holds runs of different games: left out "
                         f"{', '.join(f'{r.path} ({r.game})' for r in odd)}; kept its {main} runs")
        group = [r for r in group if r.game == main]
        keep += group
        flats = [setup_factors([r])[setup] for r in group]
        differ = sorted({k for f in flats[1:] for k in set(f) | set(flats[0]) if f.get(k) != flats[0].get(k)})
        if differ:
            notes.append(f"setup {setup!r}: its runs' configs differ in {', '.join(differ)} "
                         f"({', '.join(str(r.path) for r in group)})")
        if len({r.seed for r in group}) < 2:
            notes.append(f"setup {setup!r} has one seed ({', '.join(str(r.path) for r in group)}): no interval, "
                         "and no test against it")
    return keep, notes


def _reference_first(a: str, b: str, fa: dict[str, str], fb: dict[str, str], key: str) -> bool:
    """True when `a` is the reference side: naive self-play, or the smaller number, or first in order."""
    va, vb = fa.get(key, ""), fb.get(key, "")
    if "'latest'" in (va, vb):
        return va == "'latest'"
    try:
        return float(va) < float(vb)
    except ValueError:
        return True


def comparisons(runs: list[StudyRun], outcomes: pd.DataFrame, seed: int = 0,
                pairs: Sequence[tuple[str, str]] = ()) -> tuple[pd.DataFrame, list[str]]:
    """Every pair of setups of one game whose configs differ in exactly one setting (the factor), on
    every per-run metric both have: the means over seeds, the difference (setup minus reference:
    naive self-play, or the smaller value of the factor), its bootstrap 95% interval and a two-sided
    permutation p-value (:func:`mpimarl.stats.difference`). Pairs that differ in more than one
    setting are not compared (the notes name them and the settings) unless `pairs` names them as
    (setup, reference): their factor is then every setting they differ in, joined with ' + '."""
    factors = setup_factors(runs)
    rows, notes = [], []
    games: dict[str, list[str]] = {}
    for sr in runs:
        games.setdefault(sr.game, [])
        if sr.setup not in games[sr.game]:
            games[sr.game].append(sr.setup)
    for game, setups in games.items():
        for a, b in itertools.combinations(setups, 2):
            fa, fb = factors[a], factors[b]
            keys = sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))
            forced = (a, b) in pairs or (b, a) in pairs
            if len(keys) != 1 and not forced:
                shown = ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")
                notes.append(f"{game}: {a} and {b} differ in {len(keys)} settings ({shown}): not compared")
                continue
            key = " + ".join(keys)
            if forced:
                other, ref = (a, b) if (a, b) in pairs else (b, a)
                if len(keys) > 1:
                    notes.append(f"{game}: {other} and {ref} differ in {len(keys)} settings ({key}); compared as "
                                 "asked, with all of them as the factor")
            else:
                ref, other = (a, b) if _reference_first(a, b, fa, fb, key) else (b, a)
            mine = outcomes[outcomes.game == game]
            for metric in dict.fromkeys(mine.metric):
                x = mine[(mine.setup == other) & (mine.metric == metric)].value.tolist()
                y = mine[(mine.setup == ref) & (mine.metric == metric)].value.tolist()
                if not x or not y:
                    continue
                d = difference(x, y, seed=seed)
                if not np.isfinite(d.diff):
                    continue
                better = "lower" if lower_is_better(metric) else "higher"
                mine_f, ref_f = (fb, fa) if other == b else (fa, fb)
                rows.append({"game": game, "factor": key, "setup": other, "reference": ref,
                             "value": " + ".join(mine_f.get(k, "-") for k in keys),
                             "reference value": " + ".join(ref_f.get(k, "-") for k in keys),
                             "metric": metric, "better": better, "seeds": f"{d.n_a} vs {d.n_b}",
                             "setup mean": round(d.mean_a, 4), "reference mean": round(d.mean_b, 4),
                             "difference": round(d.diff, 4), "diff low": round(d.low, 4),
                             "diff high": round(d.high, 4), "p (permutation)": round(d.p_value, 4),
                             "resolved": d.resolved})
    return pd.DataFrame(rows), notes


# ---- figures ------------------------------------------------------------------------------------


def _mean_curve(frames: list[pd.DataFrame], x: str, y: str, points: int = 60) -> tuple[np.ndarray, ...]:
    """Mean and min-max band of `y` over seeds, interpolated on a common grid of `x`."""
    frames = [f.dropna(subset=[x, y]).sort_values(x) for f in frames]
    frames = [f for f in frames if len(f)]
    if not frames:
        return (np.array([]),) * 4
    hi = min(float(f[x].max()) for f in frames)
    lo = max(float(f[x].min()) for f in frames)
    if not hi > lo:
        f = frames[0]
        v = f[y].to_numpy(dtype=float)
        return f[x].to_numpy(dtype=float), v, v, v
    grid = np.linspace(lo, hi, points)
    ys = np.array([np.interp(grid, f[x].to_numpy(dtype=float), f[y].to_numpy(dtype=float)) for f in frames])
    return grid, ys.mean(axis=0), ys.min(axis=0), ys.max(axis=0)


def _plot_curves(curves: dict[str, pd.DataFrame], y: str, ylabel: str, title: str, out: Path,
                 target: float | None = None) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_setup: dict[str, list[pd.DataFrame]] = {}
    for frame in curves.values():
        if y in frame and frame[y].notna().any():
            by_setup.setdefault(str(frame.setup.iloc[0]), []).append(frame)
    if not by_setup:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for setup, frames in by_setup.items():
        for ax, x in zip(axes, ("steps", "time")):
            if x not in frames[0]:
                continue
            grid, mean, low, high = _mean_curve(frames, x, y)
            if len(grid) == 0:
                continue
            line, = ax.plot(grid, mean, label=f"{setup} ({len(frames)} seed{'s' if len(frames) > 1 else ''})")
            ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.15)
    for ax, xlabel in zip(axes, ("environment steps per policy", "wall time (s)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if target is not None and np.isfinite(target):
            ax.axhline(target, color="grey", linestyle="--", linewidth=1)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _plot_time_to_target(frame: pd.DataFrame, out: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if frame.empty:
        return None
    setups = list(dict.fromkeys(frame.setup))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(setups) + 2), 4.2))
    for i, setup in enumerate(setups):
        g = frame[frame.setup == setup]
        mean, low, high = interval(g.time_to_target_s)
        if np.isfinite(mean):
            ax.bar(i, mean, yerr=[[mean - low], [high - mean]], capsize=4, color="tab:blue", alpha=0.7)
        ax.text(i, 0, f"{int(g.reached.sum())}/{len(g)}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(setups)), setups, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("seconds to target (mean, 95% CI; label: seeds that reached it)")
    ax.set_title("Convergence: time to target per setup")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


# ---- the command --------------------------------------------------------------------------------


def parse_targets(items: Sequence[str]) -> dict[str, float]:
    """TARGETS updated by 'GAME=VALUE' items; ConfigError for a malformed one."""
    targets = dict(TARGETS)
    for item in items:
        game, _, value = item.partition("=")
        try:
            targets[game.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--target {item!r}: expected GAME=NUMBER, e.g. connect_four=0.8") from None
        if not game.strip():
            raise ConfigError(f"--target {item!r}: expected GAME=NUMBER, e.g. connect_four=0.8")
    return targets


def _markdown(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "(no rows)\n"
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for rec in frame.itertuples(index=False):
        lines.append("| " + " | ".join("-" if (isinstance(v, float) and not np.isfinite(v)) else str(v)
                                        for v in rec) + " |")
    return "\n".join(lines) + "\n"


def _convergence_outcomes(per_run: pd.DataFrame, runs: list[StudyRun]) -> pd.DataFrame:
    by_path = {str(r.path): r for r in runs}
    rows = []
    for rec in per_run.itertuples(index=False):
        sr = by_path[rec.path]
        if "exploitability" not in rec.metric:  # robustness has the final exploitability already
            rows.append(_outcome(sr, f"final {rec.metric}", float(rec.final)))
        if rec.reached:
            rows.append(_outcome(sr, "steps to target", float(rec.steps_to_target)))
    return pd.DataFrame(rows, columns=list(OUTCOME_COLUMNS))


def _plot_judges(frame: pd.DataFrame, names: list[str], out: Path) -> Path | None:
    """Score of each setup's final policies against each judge (mean over seeds, 95% interval)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if frame.empty:
        return None
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(names) + 3), 4.2))
    for setup, g in frame.groupby("setup", sort=False):
        means, lows, highs, xs = [], [], [], []
        for i, name in enumerate(names):
            mean, low, high = interval(g[g.metric == f"{JUDGED}{name}"].value.tolist())
            if np.isfinite(mean):
                xs.append(i)
                means.append(mean)
                lows.append(mean - max(low, 0.0))
                highs.append(min(high, 1.0) - mean)
        if xs:
            ax.errorbar(xs, means, yerr=[lows, highs], marker="o", capsize=3, label=f"{setup} ({g.seed.nunique()})")
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("score of final policies\n(mean over seeds, 95% CI)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("Held-out judges")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_study(folder: str | Path, out: str | Path | None = None, episodes: int = 40,
                targets: dict[str, float] | None = None, seed: int = 0, plan: JudgePlan | None = None,
                pairs: Sequence[tuple[str, str]] = ()) -> Path:
    """Read the runs below `folder` and write every figure and table of the study into `out`
    (default FOLDER/study), with a README saying what each shows. Returns the README's path.

    `plan` adds held-out judges (search players, own earlier snapshots) of every competitive run's
    final policies; every per-run value then enters the comparisons between setups that differ in
    one setting (`comparisons.md`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"study: no such folder: {folder}")
    out = Path(out) if out else folder / "study"
    targets = dict(TARGETS if targets is None else targets)
    runs, skipped = find_runs(folder)
    if not runs:
        raise ConfigError(f"study: no readable run.h5 below {folder}" + (f" ({len(skipped)} unreadable)"
                                                                        if skipped else ""))
    runs, problems = check_setups(runs)
    out.mkdir(parents=True, exist_ok=True)
    per_run, q1, q1_curves = convergence(runs, targets)
    q2, q2_notes, q2_outcomes = robustness(runs, episodes, seed)
    q3, q3_curves, q3_outcomes = matchmaking(runs)
    judged, judge_outcomes, judge_notes = (judges(runs, plan) if plan and plan.names
                                           else (pd.DataFrame(), pd.DataFrame(columns=list(OUTCOME_COLUMNS)), []))
    outcomes = pd.concat([f for f in (_convergence_outcomes(per_run, runs), q2_outcomes, q3_outcomes, judge_outcomes)
                          if len(f)], ignore_index=True)
    compared, compare_notes = comparisons(runs, outcomes, seed, pairs)
    per_run.to_csv(out / "runs.csv", index=False)
    outcomes.to_csv(out / "outcomes.csv", index=False)
    figures: list[tuple[Path, str]] = []
    for name, frame in (("q1_convergence", q1), ("q2_robustness", q2), ("q3_matchmaking", q3),
                        ("judges", judged), ("comparisons", compared)):
        frame.to_csv(out / f"{name}.csv", index=False)
        (out / f"{name}.md").write_text(_markdown(frame))
    for game in dict.fromkeys(r.game for r in runs):
        mine = {k: v for k, v in q1_curves.items() if v.game.iloc[0] == game} if q1_curves else {}
        metric = next(iter(mine.values())).metric.iloc[0] if mine else "value"
        f = _plot_curves(mine, "value", metric, f"{game}: {metric} (mean over seeds, band min-max)",
                         out / f"q1_{game}_curves.png", targets.get(game))
        if f:
            figures.append((f, f"Question 1, {game}: {metric} against environment steps per policy (left) and "
                               f"wall time (right), one line per setup; dashed: the target "
                               f"{targets.get(game, math.nan)}."))
        mine3 = {k: v for k, v in q3_curves.items() if v.game.iloc[0] == game}
        for y, label, what in (("mu", "rating mu (anchored at the random baseline)", "ratings"),
                               ("support", "effective support exp(H) of the meta-strategy", "diversity"),
                               ("exploitability", "population exploitability", "exploitability")):
            f = _plot_curves(mine3, y, label, f"{game}: {label}", out / f"q3_{game}_{what}.png")
            if f:
                figures.append((f, f"Question 3, {game}: {label} over steps and time, one line per setup "
                                   f"(matchmaking strategy)."))
        if plan and len(judge_outcomes):
            f = _plot_judges(judge_outcomes[judge_outcomes.game == game], plan.names, out / f"judges_{game}.png")
            if f:
                figures.append((f, f"Held-out judges, {game}: score of each setup's final policies against "
                                   "each judge (label: seeds)."))
    f = _plot_time_to_target(per_run, out / "q1_time_to_target.png")
    if f:
        figures.insert(0, (f, "Question 1: seconds until each setup first reached its game's target, mean "
                              "and 95% interval over the seeds that reached it; the label counts them."))
    readme = out / "README.md"
    lines = [f"# Study of {folder}", "",
             f"{len(runs)} runs in {len(q1)} setups, read with `load_run`; intervals are 95% Student-t over "
             "seeds. Made by `mpimarl study`.", ""]
    if skipped:
        lines += ["Unreadable run files (left out):", *[f"- {s}" for s in skipped], ""]
    if problems:
        lines += ["Problems found in the runs (the rest of the study is written):", *[f"- {p}" for p in problems], ""]
    lines += ["## 1. Convergence speed under distribution (`q1_convergence.csv`, per run: `runs.csv`)", "",
              "Time and environment steps per policy until a run first met its game's target, against ranks, "
              "ranks per policy and population members (`members`).", "", _markdown(q1),
              "## 2. Robustness (`q2_robustness.csv`)", "",
              "Final policies against the other setups' final policies and the scripted baselines (score = "
              "wins + draws/2 per episode), cross-play with partners of other generations (cooperative), and "
              "final exploitability (exact games).", "", *[f"- {n}" for n in q2_notes], "", _markdown(q2),
              "## 3. Matchmaking (`q3_matchmaking.csv`)", "",
              "Final ratings, diversity (effective support of the meta-strategy; spread of the payoff table "
              "between the run's own snapshots) and exploitability per setup.", "", _markdown(q3)]
    if plan and plan.names:
        lines += ["## Held-out judges (`judges.csv`)", "",
                  f"Every competitive run's final policies (setups matching {plan.setups!r}) against "
                  f"{', '.join(plan.names)} ({plan.episodes} "
                  f"episodes per pairing, first seat alternating, evaluation seed {plan.seed}; `own@f`: the "
                  "policy's own snapshot at fraction f of its versions; `exploiter:N`: a fresh learner trained N steps "
                  "against the run's final population, scored for the population, i.e. 1 - the exploiter's score). "
                  "Cached per run in `judges.csv`.", "",
                  *[f"- {n}" for n in judge_notes], "", _markdown(judged)]
    lines += ["## Comparisons (`comparisons.csv`, per-run values: `outcomes.csv`)", "",
              "Setups of one game that differ in exactly one setting, on every per-run value: difference of the "
              "means over seeds (setup minus reference), bootstrap 95% interval of it, two-sided permutation "
              "p-value (exact). `resolved`: the interval excludes 0. With n seeds a side the smallest possible "
              "p-value is 2 / C(2n, n) (3 seeds: 0.1; 5 seeds: 0.008); p-values are not corrected for the "
              "number of comparisons.", "", _markdown(compared)]
    if compare_notes:
        lines += ["Pairs not compared:", *[f"- {n}" for n in compare_notes], ""]
    lines += ["## Figures", ""]
    lines += [f"- `{p.name}`: {text}" for p, text in figures]
    readme.write_text("\n".join(lines) + "\n")
    return readme


def parse_judges(items: Sequence[str], history: Sequence[float], episodes: int, seed: int,
                 exploit_steps: int = 0, setups: str = "") -> JudgePlan | None:
    """The study's judges from `--judge NAME` (repeatable or comma-separated), `--history F` and
    `--exploit-steps N`; None when none is asked for."""
    from mpimarl.arena import parse_baselines

    names = parse_baselines([part for item in items for part in item.split(",")])
    if not names and not history and not exploit_steps:
        return None
    try:
        re.compile(setups)
    except re.error as exc:
        raise ConfigError(f"--judge-setups {setups!r} is not a regular expression: {exc}") from None
    return JudgePlan(tuple(names), tuple(history), episodes, seed, exploit_steps, setups)


def main(folder: str, out: str | None, episodes: int, targets: Sequence[str], seed: int,
         judge: Sequence[str] = (), history: Sequence[float] = (), judge_episodes: int = 100,
         exploit_steps: int = 0, judge_setups: str = "", compare: Sequence[str] = ()) -> int:
    """`mpimarl study DIR`: write the study; exit 2 with one message on bad input."""
    pairs = []
    for item in compare:
        setup, colon, reference = item.partition(":")
        if not colon or not setup or not reference:
            raise ConfigError(f"--compare {item!r}: expected SETUP:REFERENCE, e.g. kuhn-sampled:kuhn-psro")
        pairs.append((setup, reference))
    if episodes < 0:
        raise ConfigError(f"--episodes must be >= 0, got {episodes}")
    plan = parse_judges(judge, history, judge_episodes, seed, exploit_steps, judge_setups)
    readme = write_study(folder, out, episodes, parse_targets(targets), seed, plan, pairs)
    print(readme.read_text())
    print(f"wrote {readme.parent}", file=sys.stderr)
    return 0
