"""Held-out judges of a run's final policies, for studies (`mpimarl study DIR --judge ...`).

A policy's strength is judged by opponents it never trained against (DESIGN.md, "Judging
strength"): scripted and search players (``tactical``, ``negamax:depth=4``, any baseline name
`mpimarl evaluate --vs` takes) and its own earlier snapshots (does the latest beat its past, or does
the population cycle?). Each final snapshot of a run meets each judge on fresh evaluation seeds,
the first seat alternating, and its score is ``(wins + draws / 2) / episodes`` with a Wilson 95%
interval, exactly as in `mpimarl evaluate`.

Judging is the slow part of a study, so results are kept beside the run file in ``judges.csv``
(one row per final snapshot and judge) and reused whenever the same judge, episode count and seed
are asked for again: a study interrupted half-way resumes, and adding a judge plays only that judge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mpimarl.analysis import Run, load_run
from mpimarl.arena import Entrant
from mpimarl.errors import ConfigError

JUDGES_FILE = "judges.csv"
"""The cache of judge results, in the run's folder."""

JUDGE_COLUMNS = ("policy_id", "version", "role", "judge", "episodes", "seed", "wins", "draws", "losses",
                 "score", "score_low", "score_high")
"""One row per (final snapshot, judge) in ``judges.csv`` and in what `judge_run` returns."""

HISTORY_PREFIX = "own@"
"""Judges named ``own@0.5`` are the policy's own snapshot at that fraction of its published versions."""

EXPLOITER_PREFIX = "exploiter:"
"""The judge ``exploiter:N`` is a fresh learner trained N steps against the run's final population
(`mpimarl exploit RUN population --steps N`); its row's score is the population's, 1 - the exploiter's."""


@dataclass(frozen=True)
class JudgePlan:
    """Which judges to play and how many episodes each pairing gets."""

    baselines: tuple[str, ...] = ()
    """Scripted or search players, as `mpimarl evaluate --vs` names them (``negamax:depth=2``)."""
    history: tuple[float, ...] = ()
    """Fractions of a policy's versions whose snapshots the final one meets (0.5: its halfway self)."""
    episodes: int = 100
    """Episodes per pairing (first seat alternating)."""
    seed: int = 0
    """Evaluation seed: judges play on `mpimarl.arena.evaluation_seeds(seed, episodes)`."""
    exploit_steps: int = 0
    """Environment steps of a trained exploiter of the final population (0: none)."""
    setups: str = ""
    """A study judges only the setups whose label matches this regular expression ('': every one)."""

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ConfigError(f"judges: episodes must be at least 1, got {self.episodes}")
        if self.exploit_steps < 0:
            raise ConfigError(f"judges: exploiter steps must be >= 0, got {self.exploit_steps}")
        bad = [f for f in self.history if not 0.0 <= f < 1.0]
        if bad:
            raise ConfigError(f"judges: history fractions must lie in [0, 1), got {bad}")

    @property
    def names(self) -> list[str]:
        """Every judge's label, in the order they are played."""
        exploiter = [f"{EXPLOITER_PREFIX}{self.exploit_steps}"] if self.exploit_steps else []
        return [*self.baselines, *(f"{HISTORY_PREFIX}{f:g}" for f in self.history), *exploiter]


def _history_version(versions: Sequence[int], fraction: float, usable: Sequence[int] | None = None) -> int:
    """The version at `fraction` of a policy's published versions (the earliest for 0); with `usable`
    (the versions whose weights are still stored: the retention policy, pool.keep*, drops others),
    the usable version nearest to it, the earlier one on a tie."""
    ordered = sorted(versions)
    aim = ordered[min(len(ordered) - 1, int(math.floor(fraction * (len(ordered) - 1) + 0.5)))]
    if usable is None:
        return aim
    return min(usable, key=lambda v: (abs(v - aim), v))


def _cached(path: Path) -> pd.DataFrame:
    cache = path.parent / JUDGES_FILE
    if not cache.is_file():
        return pd.DataFrame(columns=list(JUDGE_COLUMNS))
    frame = pd.read_csv(cache)
    missing = set(JUDGE_COLUMNS) - set(frame.columns)
    if missing:  # a file of another layout: judge again rather than trust it
        return pd.DataFrame(columns=list(JUDGE_COLUMNS))
    return frame[list(JUDGE_COLUMNS)]


def judge_run(path: str | Path, plan: JudgePlan, run: Run | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Every final snapshot of the run at `path` against every judge of `plan`.

    Returns the rows (`JUDGE_COLUMNS`) and notes on judges that could not play (a search player that
    does not fit the game, a policy with too few snapshots for its history). Results already in the
    run folder's ``judges.csv`` for the same judge, episodes and seed are reused, new ones added to it.
    Cooperative runs have no opponents to be judged by: they return no rows and a note.
    """
    from mpimarl.arena import baseline_entrant, stored_entrants

    path = Path(path)
    run = run or load_run(path)
    cached = _cached(path)
    latest = run.latest_versions()
    have = cached[(cached.episodes == plan.episodes) & (cached.seed == plan.seed)
                  & cached.apply(lambda r: latest.get(str(r.policy_id)) == int(r.version), axis=1)]
    todo = [j for j in plan.names if not (have.judge == j).any()]
    notes: list[str] = []
    if not todo:
        return have[have.judge.isin(plan.names)].reset_index(drop=True), notes
    if run.config.get("task", {}).get("kind") == "cooperative":
        return have.iloc[0:0], [f"{path}: a cooperative run has no opponents to judge it (judged by cross-play)"]
    exploited = [_exploiter_row(path, plan)] if f"{EXPLOITER_PREFIX}{plan.exploit_steps}" in todo else []
    finals = stored_entrants([path], [run], greedy=False)
    entrants, judges = list(finals), []
    for i, name in enumerate(j for j in todo if not j.startswith((HISTORY_PREFIX, EXPLOITER_PREFIX))):
        try:
            judge = baseline_entrant(run, name, plan.seed + 1_000 * (i + 1))
        except ConfigError as exc:
            notes.append(f"{path}: judge {name!r} cannot play this game ({exc})")
            continue
        entrants.append(judge)
        judges.append((name, judge))
    history: list[tuple[str, Entrant, Entrant]] = []  # (judge label, final entrant, earlier entrant)
    stored = run.policies()
    for final in finals:
        assert final.stored is not None
        rows = stored[stored.policy_id == final.stored.policy_id]
        versions = rows.version.astype(int).tolist()
        usable = rows.version[rows.stored != "none"].astype(int).tolist()
        for label in (j for j in todo if j.startswith(HISTORY_PREFIX)):
            version = _history_version(versions, float(label[len(HISTORY_PREFIX):]), usable)
            if version == final.stored.version:
                notes.append(f"{path}: {final.label} has too few snapshots to meet its {label} self")
                continue
            snapshot = run.policy(final.stored.policy_id, version)
            earlier = Entrant(snapshot.label, (snapshot.role,), {snapshot.role: snapshot.acting_policy(False)},
                              final.run, snapshot)
            entrants.append(earlier)
            history.append((label, final, earlier))
    rows = _play(run, entrants, finals, judges, history, plan) if len(entrants) > len(finals) else []
    new = pd.DataFrame(rows + exploited, columns=list(JUDGE_COLUMNS))
    if len(new):
        keep = cached[~(cached.judge.isin(new.judge) & (cached.episodes == plan.episodes)
                        & (cached.seed == plan.seed))]
        out = pd.concat([keep, new], ignore_index=True) if len(keep) else new
        tmp = path.parent / (JUDGES_FILE + ".tmp")
        out.to_csv(tmp, index=False)
        tmp.replace(path.parent / JUDGES_FILE)  # whole or not at all
    result = pd.concat([have, new], ignore_index=True) if len(have) else new
    return result[result.judge.isin(plan.names)].reset_index(drop=True), notes


def _play(run: Run, entrants: list[Entrant], finals: list[Entrant], judges: list[tuple[str, Entrant]],
          history: list[tuple[str, Entrant, Entrant]], plan: JudgePlan) -> list[dict[str, object]]:
    """Every final snapshot against each scripted judge (in a seat of a role it can face) and against
    its own earlier snapshots: one judge row per pairing."""
    from mpimarl.arena import Arena, Participant

    rows: list[dict[str, object]] = []
    arena = Arena(run, entrants, plan.episodes, plan.seed)
    try:
        for final in finals:
            assert final.stored is not None
            role = final.roles[0]
            me = Participant(final, role, final.label)
            pairs, labels = [], []
            for name, judge in judges:
                other = next((r for r in arena.other_roles(role) if r in judge.roles), None)
                if other is not None:
                    pairs.append((me, Participant(judge, other, name)))
                    labels.append(name)
            for label, owner, earlier in history:
                if owner is final:
                    pairs.append((me, Participant(earlier, earlier.roles[0], earlier.label)))
                    labels.append(label)
            for label, rec in zip(labels, arena.play_pairs(pairs, mirror=False), strict=True):
                rows.append({"policy_id": final.stored.policy_id, "version": final.stored.version, "role": role,
                             "judge": label, "seed": plan.seed,
                             **{k: rec[k] for k in ("episodes", "wins", "draws", "losses", "score", "score_low",
                                                    "score_high")}})
    finally:
        arena.close()
    return rows


def _exploiter_row(path: Path, plan: JudgePlan) -> dict[str, object]:
    """Train (or reuse, from the run's ``RUN.exploit/`` results) an exploiter of the final population
    and return its judge row, scored for the population: 1 - the exploiter's held-out score."""
    from mpimarl.exploit import POPULATION, exploit, load_exploiters

    table = load_exploiters(path)
    if len(table):
        table = table[(table.target == POPULATION) & (table.steps == plan.exploit_steps)
                      & (table.episodes == plan.episodes) & (table.seed == plan.seed)]
    if not len(table):
        table = exploit(path, POPULATION, plan.exploit_steps, episodes=plan.episodes, seed=plan.seed).table
    row = table.iloc[-1]
    return {"policy_id": POPULATION, "version": -1, "role": row.exploiter_role,
            "judge": f"{EXPLOITER_PREFIX}{plan.exploit_steps}", "episodes": int(row.episodes), "seed": plan.seed,
            "wins": int(row.losses), "draws": int(row.draws), "losses": int(row.wins), "score": 1.0 - float(row.score),
            "score_low": 1.0 - float(row.score_high), "score_high": 1.0 - float(row.score_low)}
