"""Round robin between the final snapshots of finished runs and fixed baselines (`mpimarl evaluate`).

Entrants are the FINAL stored snapshot of every policy in every given run (labelled ``policy@v``,
or ``runname/policy@v`` when several runs are compared; all runs must share the environment and
the task's roles) and the named baselines: ``random`` and any scripted policy (a registered name
such as ``tactical``, a baseline name from the run's config, or an import path; see
:mod:`mpimarl.baselines`).

Competitive tasks: every pair of entrants that can face each other (the other's role has a seat
opposite) plays ``episodes`` episodes on the same evaluation seeds, the first seat alternating
between the seats of the row's role (play_episodes does the alternation). An episode is scored as
the server scores it (:mod:`mpimarl.league.outcomes`: sides ranked by return, or by par standing for
asymmetric roles under ``task.outcome`` par), and a pairing's score is ``(wins + draws / 2) /
episodes`` with a Wilson 95% interval. In a two-seat game each pair is played once and the other
side's row is its mirror image. In games with more seats the column entrant fills every other seat
of its role (copies of one opponent), and seats of roles it does not play get its own run's final
policy of that role (random for a baseline or where the run has none).

Cooperative tasks: a row is a stored policy, a column its partners: a baseline in every other
seat, or another entrant (which brings its own run's policies for seats of other roles); a task
with one seat only has the column ``-``. The row's team return is compared, episode by episode on
the same seeds and partners, with the uniform-random comparator in the row's seat (the paired
comparison the server rates cooperative policies by): a win is a higher team return by more than
``task.draw_margin``. ``return_mean`` is the row's mean per-agent return, ``opponent_return_mean``
the comparator's.

Evaluation seeds are ``EVAL_SEED_BASE + seed * SEED_STRIDE + k``: far above the episode seeds a
run with root seed 0 trains and evaluates on, and far below those of any other root seed
(``mpimarl.roles.context.RunContext.rank_seed``), so the arena plays fresh episodes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Generator, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from mpimarl.analysis import RANDOM_BASELINE, Run, StoredPolicy, load_run
from mpimarl.errors import ConfigError, MpimarlError

EVAL_SEED_BASE = 1_500_000_000
"""First evaluation seed of ``--seed 0``."""
SEED_STRIDE = 100_003
"""Seeds reserved per ``--seed`` value (at most this many episodes per pairing)."""
MAX_ENVS = 8
"""Environment copies stepped together."""
NO_PARTNER = "-"
"""Column label of a cooperative task with a single seat (nobody else plays)."""

CSV_COLUMNS = (
    "entrant",
    "opponent",
    "episodes",
    "wins",
    "draws",
    "losses",
    "score",
    "score_low",
    "score_high",
    "return_mean",
    "opponent_return_mean",
)
"""Columns of :attr:`ArenaResult.results` and of the CSV `mpimarl evaluate --csv` writes."""

T = TypeVar("T")


class ArenaError(MpimarlError):
    """The runs cannot be compared, or the arena's options are invalid."""


def run_to_end(gen: Generator[None, None, T]) -> T:
    """Drive a tick generator (such as :func:`mpimarl.rollout.evaluate.play_episodes`) to its value."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def wilson_interval(successes: float, n: int) -> tuple[float, float]:
    """Wilson 95% interval of a proportion (the payoff table's, :mod:`mpimarl.league.payoff`)."""
    from mpimarl.league.payoff import wilson_interval as interval

    return interval(successes, n)


def evaluation_seeds(seed: int, episodes: int) -> list[int]:
    """The episode seeds every pairing of an arena with root `seed` plays."""
    if episodes > SEED_STRIDE:
        raise ArenaError(f"--episodes {episodes} is more than the {SEED_STRIDE} an arena can seed")
    return [EVAL_SEED_BASE + seed * SEED_STRIDE + k for k in range(episodes)]


# -------------------------------------------------------------------- entrants


@dataclass
class Entrant:
    """A stored policy (one role) or a baseline (any role) taking part in the arena."""

    label: str
    """Its name in tables: ``policy@v``, ``run/policy@v`` or the baseline's name."""
    roles: tuple[str, ...]
    """Roles it can play: its own for a stored policy, every role for a baseline."""
    policies: dict[str, Any]
    """Role -> batched acting policy (`mpimarl.rollout.runner.ActingPolicy`)."""
    run: int | None = None
    """Index of its run for a stored policy; None for a baseline."""
    stored: StoredPolicy | None = None

    @property
    def is_baseline(self) -> bool:
        """True for random and scripted baselines."""
        return self.stored is None

    def seat(self, role: str) -> Any:
        """Its line-up entry (a `SeatedKey`) in a seat of `role`."""
        from mpimarl.league.pool import SnapshotKey
        from mpimarl.rollout.seating import SeatedKey

        version = 0 if self.stored is None else self.stored.version
        key_id = self.label if self.stored is None else self.label.rsplit("@", 1)[0]
        return SeatedKey(SnapshotKey(key_id, version), role)


@dataclass
class Participant:
    """A row or column of the arena: an entrant in one role."""

    entrant: Entrant
    role: str
    label: str


def run_names(paths: Sequence[Path], runs: Sequence[Run]) -> list[str]:
    """A distinct short name per run: the config's name, else its folder's, else the file's stem."""
    candidates = [
        [str(run.config.get("name") or ""), path.parent.name, path.stem, str(path)]
        for path, run in zip(paths, runs)
    ]
    for depth in range(4):
        names = [c[depth] or c[-1] for c in candidates]
        if len(set(names)) == len(names):
            return names
    return [f"{c[-1]}#{i}" for i, c in enumerate(candidates)]


def check_comparable(paths: Sequence[Path], runs: Sequence[Run]) -> None:
    """All runs must play the same environment (id and kwargs) with the same task and roles."""

    def signature(run: Run) -> tuple[Any, ...]:
        cfg = run.context().config
        roles = tuple((r.name, r.agents, r.team) for r in cfg.task.roles)
        return cfg.env.id, repr(sorted(cfg.env.kwargs.items())), cfg.task.kind, roles

    first = signature(runs[0])
    for path, run in zip(paths[1:], runs[1:]):
        other = signature(run)
        if other != first:
            what = ["env ids", "env kwargs", "task kinds", "roles (name, agents, team)"]
            diff = next(i for i in range(len(first)) if first[i] != other[i])
            raise ArenaError(
                f"run files {paths[0]} and {path} cannot share an arena: their {what[diff]} differ "
                f"({first[diff]!r} vs {other[diff]!r})"
            )


def stored_entrants(paths: Sequence[Path], runs: Sequence[Run], greedy: bool) -> list[Entrant]:
    """The final stored snapshot of every policy of every run."""
    names = run_names(paths, runs) if len(runs) > 1 else [""]
    out: list[Entrant] = []
    for index, (path, run, name) in enumerate(zip(paths, runs, names)):
        latest = run.latest_versions()
        if not latest:
            raise ArenaError(f"run file {path} stores no policy snapshots to evaluate")
        for policy_id, version in latest.items():
            stored = run.policy(policy_id, version)
            label = f"{name}/{stored.label}" if name else stored.label
            out.append(Entrant(label, (stored.role,), {stored.role: stored.acting_policy(greedy)}, index, stored))
    return out


def baseline_entrant(run: Run, spec: str, seed: int) -> Entrant:
    """Baseline `spec` in every role it can play: random, a baseline of the run's config (in the
    roles it lists), or a scripted policy (registered name or import path) in every role whose
    spaces it accepts. `spec` may add parameters, ``negamax:depth=4`` (see
    `mpimarl.baselines.parse_policy_spec`); for a baseline of the config they override its kwargs.
    ConfigError when the parameters are bad or it fits no role of the run's environment."""
    from mpimarl.algos.shapes import RandomPolicy
    from mpimarl.baselines import format_policy_spec, load_scripted, parse_policy_spec

    ctx = run.context()
    configured = {b.name: b for b in ctx.config.baselines}
    name, kwargs = parse_policy_spec(spec) if spec != RANDOM_BASELINE else (spec, {})
    if name == RANDOM_BASELINE and kwargs:
        raise ConfigError(f"--vs {spec}: the random baseline takes no parameters")
    policy = configured[name].policy if name in configured else name
    if name in configured:
        kwargs = {**configured[name].kwargs, **kwargs}
    policies: dict[str, Any] = {}
    refusals: dict[str, str] = {}
    for i, (role, rs) in enumerate(ctx.spec.roles.items()):
        role_seed = seed + 7_919 * (i + 1)
        if name == RANDOM_BASELINE:
            policies[role] = RandomPolicy(rs.action_space, np.random.default_rng(role_seed))
            continue
        if name in configured and configured[name].roles and role not in configured[name].roles:
            continue
        try:
            policies[role] = load_scripted(policy, rs.action_space, role_seed, kwargs)
        except ConfigError as exc:
            refusals[role] = str(exc)
    if not policies:
        if len(set(refusals.values())) == 1:  # the name itself is bad, not one role's spaces
            raise ConfigError(f"--vs {spec}: {next(iter(refusals.values()))}")
        reasons = "; ".join(f"role {role!r}: {why}" for role, why in refusals.items())
        raise ConfigError(f"--vs {spec}: it plays no role of env {ctx.spec.env_id!r} ({reasons})")
    label = name if name in configured and spec == name else format_policy_spec(name, kwargs)
    return Entrant(label, tuple(policies), policies)


def lineup_entrants(spec: Any, own_role: str, opponent: Entrant, fill: Callable[[Entrant, str], Entrant]
                    ) -> list[tuple[str, Entrant]]:
    """(role, entrant) of every seat opposite the first seat of `own_role`, in seat order: `opponent`
    in every seat of a role it plays, ``fill(opponent, role)`` in the others."""
    from mpimarl.rollout.seating import other_seat_roles, seats_of_role

    return [(role, opponent if role in opponent.roles else fill(opponent, role))
            for role in other_seat_roles(spec, seats_of_role(spec, own_role)[0])]


def fill_lineup(spec: Any, own_role: str, opponent: Entrant, fill: Callable[[Entrant, str], Entrant]
                ) -> tuple[Any, ...]:
    """The line-up (`SeatedKey`s) of `lineup_entrants`."""
    return tuple(who.seat(role) for role, who in lineup_entrants(spec, own_role, opponent, fill))


# -------------------------------------------------------------------- playing


@dataclass
class ArenaResult:
    """The pairings of one arena: long-form results and what they mean."""

    results: pd.DataFrame
    """One row per (entrant, opponent): the columns of `CSV_COLUMNS`."""
    rows: list[str]
    """Row labels (entrants), in table order."""
    columns: list[str]
    """Column labels (opponents or partners), in table order."""
    cooperative: bool
    episodes: int
    seed: int
    notes: list[str] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """Rows = entrants, columns = opponents; cells 'score [lo, hi]' (cooperative: the team
        return, then the score against the random comparator), plus each entrant's mean score."""
        cells: dict[str, dict[str, str]] = {r: {} for r in self.rows}
        for rec in self.results.itertuples():
            interval = f"{rec.score:.2f} [{rec.score_low:.2f}, {rec.score_high:.2f}]"
            cells[rec.entrant][rec.opponent] = f"{rec.return_mean:+.2f} / {interval}" if self.cooperative else interval
        frame = pd.DataFrame.from_dict(cells, orient="index").reindex(index=self.rows, columns=self.columns)
        frame = frame.fillna("")
        frame["mean score"] = [f"{m:.3f}" for m in self.mean_scores().reindex(self.rows)]
        frame.index.name = "entrant"
        return frame

    def mean_scores(self) -> pd.Series:
        """Each entrant's mean score over its opponents (or partners)."""
        return self.results.groupby("entrant", sort=False).score.mean()

    def text(self) -> str:
        """The table as the CLI prints it, with a header saying how it was scored."""
        how = (
            "cells: team return / score vs the random comparator in the same seat [Wilson 95%]"
            if self.cooperative
            else "cells: score of the row vs the column, (wins + draws/2) / episodes [Wilson 95%]"
        )
        header = [
            f"Round robin: {len(self.rows)} entrants, {self.episodes} episodes per pairing"
            f"{'' if self.cooperative else ', the row taking each seat of its role in turn'}; evaluation seeds from "
            f"{evaluation_seeds(self.seed, 1)[0]} (--seed {self.seed})",
            how,
            *self.notes,
        ]
        with pd.option_context("display.width", 250, "display.max_columns", 60, "display.max_colwidth", 40):
            return "\n".join(header) + "\n" + self.table().to_string()


class Arena:
    """Plays the pairings of one round robin on shared environment copies."""

    def __init__(self, run: Run, entrants: Sequence[Entrant], episodes: int, seed: int) -> None:
        """`run` provides the environment (every run of an arena shares it); `entrants` play."""
        from mpimarl.rollout.runner import VectorMatches

        if episodes < 1:
            raise ArenaError(f"--episodes must be at least 1, got {episodes}")
        ctx = run.context()
        self.ctx = ctx
        self.spec = ctx.spec
        self.entrants = list(entrants)
        self.episodes = episodes
        self.seed = seed
        self.seeds = evaluation_seeds(seed, episodes)
        self.cooperative = ctx.config.task.kind == "cooperative"
        self.margin = ctx.config.task.draw_margin
        envs = [ctx.factory() for _ in range(min(MAX_ENVS, episodes))]
        self.matches = VectorMatches(envs, seed)
        self.random = baseline_entrant(run, RANDOM_BASELINE, seed + 1)
        self.table: dict[Hashable, Any] = {}
        for entrant in [*self.entrants, self.random]:
            for role in entrant.roles:
                self.table[self._key(entrant, role)] = entrant.policies[role]
        self.par = self._par_reference() if self._outcome() == "par" and not self.cooperative else None

    def close(self) -> None:
        """Close the environment copies."""
        for env in self.matches.envs:
            env.close()

    # ---- seats and line-ups ------------------------------------------------------------------

    @staticmethod
    def _key(entrant: Entrant, role: str) -> Hashable:
        from mpimarl.rollout.seating import policy_key

        return policy_key(entrant.seat(role))

    def other_roles(self, role: str) -> list[str]:
        """Roles of the seats opposite the first seat of `role`, in seat order."""
        from mpimarl.rollout.seating import other_seat_roles, seats_of_role

        return other_seat_roles(self.spec, seats_of_role(self.spec, role)[0])

    def _fill(self, opponent: Entrant, role: str) -> Entrant:
        """Who takes a seat of `role` that `opponent` cannot play: its run's policy, else random."""
        if opponent.run is not None:
            for e in self.entrants:
                if e.run == opponent.run and role in e.roles:
                    return e
        return self.random

    def lineup(self, own_role: str, opponent: Entrant | None) -> tuple[Any, ...]:
        """Every other seat: `opponent` where it plays the seat's role, else `_fill` (None: random)."""
        return fill_lineup(self.spec, own_role, opponent or self.random, lambda o, role: self._fill(o, role))

    # ---- outcome rule ----------------------------------------------------------------------

    def _outcome(self) -> str:
        task = self.ctx.config.task
        if task.outcome == "auto":
            return "par" if len(task.roles) > 1 else "returns"
        return task.outcome

    def _par_reference(self) -> Any:
        """All-random play's per-role returns: what 'par' places each side's return against."""
        from mpimarl.league.outcomes import ParReference

        first = next(iter(self.spec.roles))
        n = int(self.ctx.config.evaluation.par_episodes)
        seeds = [s + SEED_STRIDE // 2 for s in evaluation_seeds(self.seed, n)]
        res = self.play(self.random.policies[first], first, self.lineup(first, None), seeds)
        by_role: dict[str, list[float]] = {}
        for seats in res.seats:
            for (role, _), value in zip(self.spec.seats(), seats):
                by_role.setdefault(role, []).append(value)
        return ParReference(by_role)

    def episode_score(self, seats: Sequence[float], occupants: Sequence[object]) -> float:
        from mpimarl.league.outcomes import pairwise_score, rank_sides
        from mpimarl.rollout.evaluate import OWN

        if self.par is not None:
            values = [self.par.standing(role, v) for (role, _), v in zip(self.spec.seats(), seats)]
            ranks = rank_sides(values, 0.0)
        else:
            ranks = rank_sides(list(seats), self.margin)
        own_seat = next(i for i, o in enumerate(occupants) if o == OWN)
        return pairwise_score(ranks, own_seat)

    # ---- playing ---------------------------------------------------------------------------

    def play(self, own: Any, role: str, lineup: Sequence[Any], seeds: Sequence[int] | None = None) -> Any:
        from mpimarl.rollout.evaluate import play_episodes

        gen = play_episodes(self.matches, self.spec, own, role, lineup, self.table, seeds or self.seeds)
        return run_to_end(gen)

    def participants(self) -> list[Participant]:
        """Rows of a competitive arena: stored policies in their role, baselines in every role."""
        multi = len(self.spec.roles) > 1
        out = []
        for e in self.entrants:
            for role in e.roles:
                label = f"{e.label} ({role})" if multi and e.is_baseline else e.label
                out.append(Participant(e, role, label))
        return out

    def competitive(self, vs_only: bool = False) -> ArenaResult:
        """Every pair that can face each other; two-seat games play each pair once and mirror it.

        `vs_only`: only the stored policies against the baselines (rows are stored policies, columns
        baselines; no baseline plays a baseline and no stored policy another)."""
        people = self.participants()
        two_seats = len(self.spec.seats()) == 2
        pairs = []
        for a, b in itertools.permutations(people, 2):
            if b.role not in self.other_roles(a.role) or (a.entrant is b.entrant and a.role == b.role):
                continue
            if vs_only and (a.entrant.is_baseline or not b.entrant.is_baseline):
                continue
            if not vs_only and two_seats and people.index(b) < people.index(a) and a.role in self.other_roles(b.role):
                continue  # played as (b, a) and mirrored
            pairs.append((a, b))
        return self._result(people, self.play_pairs(pairs, mirror=not vs_only))

    def play_pairs(self, pairs: Sequence[tuple[Participant, Participant]], mirror: bool = True
                   ) -> list[dict[str, Any]]:
        """Play each (row, column) pairing of a competitive arena: one CSV record per pairing, plus
        (`mirror`) its mirror image, column against row, in a two-seat game where each can take the
        other's seat."""
        from mpimarl.league.outcomes import score_class, tally

        two_seats = len(self.spec.seats()) == 2
        records: list[dict[str, Any]] = []
        for a, b in pairs:
            res = self.play(a.entrant.policies[a.role], a.role, self.lineup(a.role, b.entrant))
            scores = [self.episode_score(s, o) for s, o in zip(res.seats, res.occupants)]
            wins, draws, losses = tally(score_class(s) for s in scores)
            own, other = float(np.mean(res.own)), _nanmean(res.other)
            records.append(_record(a.label, b.label, wins, draws, losses, own, other))
            if mirror and two_seats and a.role in self.other_roles(b.role):
                records.append(_record(b.label, a.label, losses, draws, wins, other, own))
        return records

    def _result(self, people: list[Participant], records: list[dict[str, Any]]) -> ArenaResult:
        labels = [p.label for p in people]
        order = {label: i for i, label in enumerate(labels)}
        frame = pd.DataFrame(records, columns=list(CSV_COLUMNS))
        frame = frame.sort_values(["entrant", "opponent"], key=lambda c: c.map(order), ignore_index=True)
        used = set(frame.opponent)
        return ArenaResult(frame, [p for p in labels if p in set(frame.entrant)], [p for p in labels if p in used],
                           False, self.episodes, self.seed, self._notes())

    def cooperative_arena(self, baselines: Sequence[Entrant]) -> ArenaResult:
        """Each stored policy with each partner, scored against the random comparator."""
        from mpimarl.league.outcomes import pairwise_score, rank_sides, score_class, tally

        comparator: dict[tuple[Any, ...], list[float]] = {}
        records: list[dict[str, Any]] = []
        columns: list[str] = []
        for e in (x for x in self.entrants if not x.is_baseline):
            role = e.roles[0]
            others = self.other_roles(role)
            partners: list[tuple[str, Entrant | None]] = [(NO_PARTNER, None)] if not others else []
            if others:
                partners += [(b.label, b) for b in baselines if set(b.roles) & set(others)]
                partners += [(p.label, p) for p in self.entrants
                             if not p.is_baseline and p is not e and set(p.roles) & set(others)]
            for label, partner in partners:
                lineup = self.lineup(role, partner)
                res = self.play(e.policies[role], role, lineup)
                key = (role, lineup)
                if key not in comparator:
                    comparator[key] = list(self.play(self.random.policies[role], role, lineup).own)
                comp = comparator[key]
                scores = [pairwise_score(rank_sides([a, b], self.margin), 0) for a, b in zip(res.own, comp)]
                wins, draws, losses = tally(score_class(s) for s in scores)
                records.append(_record(e.label, label, wins, draws, losses, float(np.mean(res.own)),
                                       float(np.mean(comp))))
                if label not in columns:
                    columns.append(label)
        frame = pd.DataFrame(records, columns=list(CSV_COLUMNS))
        rows = list(dict.fromkeys(frame.entrant))
        return ArenaResult(frame, rows, columns, True, self.episodes, self.seed, self._notes())

    def _notes(self) -> list[str]:
        if self.par is not None:
            return ["outcome rule 'par': each side's return is placed in its role's all-random returns"]
        return []


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def _record(entrant: str, opponent: str, wins: int, draws: int, losses: int, own: float,
            other: float) -> dict[str, Any]:
    episodes = wins + draws + losses
    low, high = wilson_interval(wins + 0.5 * draws, episodes)
    return {
        "entrant": entrant, "opponent": opponent, "episodes": episodes, "wins": wins, "draws": draws,
        "losses": losses, "score": (wins + 0.5 * draws) / episodes if episodes else math.nan,
        "score_low": low, "score_high": high, "return_mean": own, "opponent_return_mean": other,
    }  # fmt: skip


# -------------------------------------------------------------------- entry point


def parse_baselines(vs: str | Sequence[str]) -> list[str]:
    """``'random,tactical'`` -> ['random', 'tactical'] (duplicates and blanks dropped)."""
    items = vs.split(",") if isinstance(vs, str) else list(vs)
    return list(dict.fromkeys(x.strip() for x in items if x.strip()))


def round_robin(paths: Sequence[str | Path], vs: str | Sequence[str] = RANDOM_BASELINE, episodes: int = 20,
                seed: int = 0, greedy: bool = False, vs_only: bool = False) -> ArenaResult:
    """Load the runs, check they share an environment, and play the round robin (`vs_only`: only the
    final snapshots against the baselines `vs`, as `Arena.competitive`).

    Raises MpimarlError subclasses (exit code 2 in the CLI) for a missing or unreadable run file,
    runs that cannot be compared, an unknown or unfit baseline, and bad options.
    """
    import torch

    if not paths:
        raise ArenaError("name at least one run file")
    if seed < 0:
        raise ArenaError(f"--seed must be >= 0, got {seed}")
    if episodes < 1:
        raise ArenaError(f"--episodes must be at least 1, got {episodes}")
    files = [Path(p) for p in paths]
    runs = [load_run(p) for p in files]
    check_comparable(files, runs)
    torch.manual_seed(seed)  # sampled actions of the stored policies
    names = parse_baselines(vs)
    baselines = [baseline_entrant(runs[0], name, seed + 1_000 * (i + 1)) for i, name in enumerate(names)]
    stored = stored_entrants(files, runs, greedy)
    arena = Arena(runs[0], [*stored, *baselines], episodes, seed)
    try:
        return arena.cooperative_arena(baselines) if arena.cooperative else arena.competitive(vs_only)
    finally:
        arena.close()


def judge(run: str | Path | Run, vs: str | Sequence[str] = "negamax:depth=4", episodes: int = 200, seed: int = 0,
          policies: Sequence[str] | None = None, greedy: bool = False) -> pd.DataFrame:
    """Score stored snapshots of one run against fixed opponents, e.g. search players of several depths.

    `run`: a run file or a loaded `Run`. `vs`: baselines as ``mpimarl evaluate --vs`` takes them
    (``'tactical,negamax:depth=2,negamax:depth=4'`` or a list). `policies`: snapshots as
    ``'player-0'`` (its latest version) or ``'player-0@240'``; None: every policy's final snapshot.
    Each pairing plays `episodes` fresh episodes on the arena's evaluation seeds, the first move
    alternating (competitive tasks), and is scored ``(wins + draws/2) / episodes`` with a Wilson 95%
    interval. Returns one row per (snapshot, opponent) with the columns of `CSV_COLUMNS`.

    Example::

        from mpimarl.arena import judge
        judge("runs/x/run.h5", "tactical,negamax:depth=1,negamax:depth=4", episodes=400)
    """
    import torch

    if seed < 0:
        raise ArenaError(f"seed must be >= 0, got {seed}")
    if episodes < 1:
        raise ArenaError(f"episodes must be at least 1, got {episodes}")
    loaded = run if isinstance(run, Run) else load_run(Path(run))
    torch.manual_seed(seed)
    names = parse_baselines(vs)
    if not names:
        raise ArenaError("name at least one opponent to judge against")
    if policies is None:
        stored = stored_entrants([loaded.path], [loaded], greedy)
    else:
        stored = []
        for ref in policies:
            policy_id, _, version = ref.partition("@")
            try:
                number = int(version) if version else None
            except ValueError:
                raise ArenaError(f"policy {ref!r}: version {version!r} is not an integer") from None
            snapshot = loaded.policy(policy_id, number)
            stored.append(Entrant(snapshot.label, (snapshot.role,), {snapshot.role: snapshot.acting_policy(greedy)},
                                  0, snapshot))
    baselines = [baseline_entrant(loaded, name, seed + 1_000 * (i + 1)) for i, name in enumerate(names)]
    arena = Arena(loaded, [*stored, *baselines], episodes, seed)
    try:
        result = arena.cooperative_arena(baselines) if arena.cooperative else arena.competitive(vs_only=True)
    finally:
        arena.close()
    return result.results


def write_csv(result: ArenaResult, path: str | Path) -> Path:
    """Write the long-form results; ArenaError naming the path when it cannot be written."""
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        result.results.to_csv(out, index=False)
    except OSError as exc:
        raise ArenaError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out
