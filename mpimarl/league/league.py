"""The league: everything rank 0 decides, as plain Python (no MPI, no torch, no environment).

`League` owns the policy pool, the matchmaker, the per-role ratings, the payoff table and the par
reference. The server (`mpimarl/roles/server.py`) only moves messages and plays the episodes the
league plans; it hands the results back here and records the rows the league returns.

Evaluation is planned when a snapshot is admitted (so that sync runs draw the same opponents however
evaluation interleaves with training) and rated when it is played, in queue order: a child's starting
rating is its parent's rating at that moment, which in queue order is always the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from mpimarl.config import RunConfig
from mpimarl.envs.spec import EnvSpec
from mpimarl.league.matchmaking import Matchmaker, load_matchmaker_state, make_matchmaker, matchmaker_state
from mpimarl.league.metasolvers import max_entropy_nash
from mpimarl.league.outcomes import ParReference, pairwise_score, rank_sides, score_class, tally
from mpimarl.league.payoff import PayoffTable
from mpimarl.league.pool import (
    RANDOM_KEY,
    RANDOM_POLICY_ID,
    PolicyPool,
    Retention,
    Snapshot,
    SnapshotKey,
    WeightLoader,
)
from mpimarl.league.ratings import Ratings
from mpimarl.rollout.seating import (
    Lineup,
    SeatedKey,
    baseline_seat,
    other_seat_roles,
    random_key,
    seats_of_role,
)

MatchKind = Literal["par", "anchor", "baseline", "pool", "comparator", "crossplay", "communication"]

RANDOM_PARTNERS_ID = "random_partners"
"""``opponent_id`` of a communication check row: the same snapshot with random partners (messages)."""

EXPLOITER_SOURCE = "exploiter"
"""The `matchmaker` of a main exploiter's training line-ups in the matches table."""

NASH_WINDOW = 64
"""Newest snapshots of a role that enter its Nash averaging (the LP grows with the square)."""

ANCHOR_SCORE_CLIP = 0.01
"""A scripted anchor's calibration score against random is clipped to [clip, 1 - clip], so that a
perfect record gives a finite rating (+798 Elo at 0.99)."""


@dataclass(frozen=True)
class PlannedMatch:
    """Episodes to play: `own` in its seat, `lineup` in the others, on `episodes` seeds from `seed_base`.

    For a cooperative comparison `comparator` (with its own `comparator_lineup` of partners) plays the
    same seat on the same seeds, and the better team return wins each episode.
    """

    kind: MatchKind
    own: SeatedKey
    lineup: Lineup
    episodes: int
    seed_base: int
    comparator: SeatedKey | None = None
    comparator_lineup: Lineup = ()

    def seeds(self) -> list[int]:
        """The episode seeds of this match."""
        return [self.seed_base + i for i in range(self.episodes)]

    def to_state(self) -> dict[str, Any]:
        """This match as JSON data (a checkpoint keeps the evaluations still to play)."""
        return {"kind": self.kind, "own": self.own.to_json(), "lineup": [i.to_json() for i in self.lineup],
                "episodes": self.episodes, "seed_base": self.seed_base,
                "comparator": None if self.comparator is None else self.comparator.to_json(),
                "comparator_lineup": [i.to_json() for i in self.comparator_lineup]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PlannedMatch:
        """The match `to_state` described."""
        comparator = state["comparator"]
        return cls(state["kind"], SeatedKey.from_json(state["own"]),
                   tuple(SeatedKey.from_json(i) for i in state["lineup"]), int(state["episodes"]),
                   int(state["seed_base"]), None if comparator is None else SeatedKey.from_json(comparator),
                   tuple(SeatedKey.from_json(i) for i in state["comparator_lineup"]))


@dataclass
class EvalPlan:
    """The evaluation matches of one new snapshot (or the start-up calibration when `key` is None)."""

    key: SnapshotKey | None
    role: str
    matches: list[PlannedMatch] = field(default_factory=list)

    def seated(self) -> list[SeatedKey]:
        """Every pool snapshot this plan will seat (its matches' own, line-ups and comparators)."""
        out = []
        for m in self.matches:
            for item in (m.own, *m.lineup, *((m.comparator,) if m.comparator else ()), *m.comparator_lineup):
                if not item.is_baseline:
                    out.append(item)
        return out

    def to_state(self) -> dict[str, Any]:
        """This plan as JSON data."""
        return {"key": None if self.key is None else [self.key.policy_id, self.key.version], "role": self.role,
                "matches": [m.to_state() for m in self.matches]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> EvalPlan:
        """The plan `to_state` described."""
        key = state["key"]
        return cls(None if key is None else SnapshotKey(str(key[0]), int(key[1])), str(state["role"]),
                   [PlannedMatch.from_state(m) for m in state["matches"]])


@dataclass
class SideResults:
    """What the server measured for one planned match, per episode in seed order.

    `seats[e]` the mean per-agent return of every seat, `occupants[e]` who sat there: the string
    "evaluated" for the planned `own`, else a SeatedKey. For a comparison, `comparator_own[e]` is the
    comparator's own return on the same episode.
    """

    own: list[float]
    other: list[float]
    length: list[int]
    seats: list[list[float]]
    occupants: list[list[object]]
    comparator_own: list[float] | None = None


def lineup_label(lineup: Lineup) -> tuple[str, int, str]:
    """(opponent_id, opponent_version, opponent_role) columns of a line-up.

    One seat: its policy id, version and role; several: 'id@v+id@v' and the roles joined with '+';
    none: '-'.
    """
    if not lineup:
        return "-", -1, "-"
    if len(lineup) == 1:
        item = lineup[0]
        return item.key.policy_id, (-1 if item.is_baseline else item.key.version), item.role
    return "+".join(_entry_id(i) for i in lineup), -1, "+".join(i.role for i in lineup)


def _entry_id(item: SeatedKey) -> str:
    """The payoff-table id of a seat's occupant: a baseline's name or 'policy@version'."""
    return item.key.policy_id if item.is_baseline else str(item.key)


def _draw_key(weights: dict[SnapshotKey, float], rng: np.random.Generator) -> SnapshotKey:
    """One key drawn with probability proportional to its weight."""
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=np.float64)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _column_id(lineup: Lineup) -> str:
    return "+".join(_entry_id(i) for i in lineup) if lineup else "-"


class League:
    """Rank 0's decisions for one run: pool, matchmaking, evaluation plans, ratings and payoff."""

    def __init__(self, config: RunConfig, spec: EnvSpec, seed: int, exact: bool = False,
                 exploiters: Sequence[str] = (), load: WeightLoader | None = None) -> None:
        self.cfg = config
        self.exploiters = frozenset(exploiters)  # policy ids of main exploiters (matchmaking.exploiters)
        # Fixed opponents of the exploiters, per role (an exploit job, mpimarl/exploit.py): every seat
        # of such a role is drawn from this distribution instead of the latest main policies.
        self.targets: dict[str, dict[SnapshotKey, float]] = {}
        self.exact = exact  # payoffs between snapshots are exact expected returns (OpenSpiel), not episodes
        self.spec = spec
        self.seed = seed
        self.competitive = config.task.kind == "competitive"
        outcome = config.task.outcome
        if outcome == "auto":
            outcome = "par" if self.competitive and len(config.task.roles) > 1 else "returns"
        self.outcome = outcome
        # Rank 0 passes `load` (the run file): the pool then keeps weights only in a bounded cache.
        pc = config.pool
        self._cache_bounds = (None if pc.cache_mb is None else int(pc.cache_mb * 2**20), pc.cache_snapshots)
        self._load = load
        self.pool = PolicyPool(load, *self._cache_bounds)
        self.retention = Retention.from_config(pc.keep_latest, pc.keep_every, pc.keep_weight_above,
                                               pc.anchor_keys())
        mm = config.matchmaking
        self.matchmaker: Matchmaker = make_matchmaker(
            mm.strategy, latest_fraction=mm.latest_fraction, quality_lr=mm.quality_lr,
            weighting=mm.pfsp_weighting, exponent=mm.pfsp_exponent, solver=mm.psro_solver, window=mm.psro_window,
            sampling=mm.psro_sampling,
            self_play=mm.pfsp_self_play, memory=mm.pfsp_memory,
        )
        self.eval_sampler = make_matchmaker("uniform")
        ev = config.evaluation
        self.ratings = Ratings(elo_k=ev.elo_k, elo_initial=ev.elo_initial)
        self.payoff = PayoffTable()
        self.par: ParReference | None = None
        self.rng = np.random.default_rng(seed)
        self.eval_rng = np.random.default_rng(seed + 2)
        self.role_names = list(spec.roles)
        for role in self.role_names:
            self.ratings.add_anchor(role, RANDOM_KEY)
        # name -> roles it plays; random plays every role.
        self.baselines: dict[str, list[str]] = {RANDOM_POLICY_ID: list(self.role_names)}
        for b in config.baselines:
            self.baselines[b.name] = list(b.roles or self.role_names)
        self.scores: dict[SnapshotKey, float] = {}
        self.vs_baseline: dict[tuple[str, str], float] = {}  # (policy_id, baseline) -> latest score
        self.partners_of: dict[SnapshotKey, Lineup] = {}  # cooperative: partners a snapshot was evaluated with
        self._plans_made = 0
        self.anchor_scores: dict[tuple[str, str], float] = {}

    # ---- checkpoint state ---------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Everything the league learned and drew so far, as JSON data (pool weights left out).

        What the config and environment give (roles, baselines, options) is rebuilt from them; this
        is the rest: pool metadata, matchmaker, ratings, payoff table, par reference, both random
        generators' exact states, scores, partners and the count of planned evaluations.
        """
        return {
            "pool": self.pool.to_state(),
            "matchmaker": matchmaker_state(self.matchmaker),
            "ratings": self.ratings.to_state(),
            "payoff": self.payoff.to_state(),
            "par": None if self.par is None else self.par.to_state(),
            "rng": self.rng.bit_generator.state,
            "eval_rng": self.eval_rng.bit_generator.state,
            "scores": [[k.policy_id, k.version, v] for k, v in self.scores.items()],
            "vs_baseline": [[p, b, v] for (p, b), v in self.vs_baseline.items()],
            "partners_of": [[k.policy_id, k.version, [i.to_json() for i in lu]] for k, lu in self.partners_of.items()],
            "plans_made": self._plans_made,
            "anchor_scores": [[r, n, v] for (r, n), v in self.anchor_scores.items()],
        }

    def load_state(self, state: dict[str, Any], weights: Callable[[SnapshotKey], np.ndarray]) -> None:
        """Restore what `to_state` described into this league (built from the same config and
        environment); `weights(key)` reads each pool snapshot's weights."""
        self.pool = PolicyPool.from_state(state["pool"], weights, *(self._cache_bounds if self._load else (None, None)))
        load_matchmaker_state(self.matchmaker, state["matchmaker"])
        self.ratings = Ratings.from_state(state["ratings"])
        self.payoff = PayoffTable.from_state(state["payoff"])
        self.par = None if state["par"] is None else ParReference.from_state(state["par"])
        self.rng.bit_generator.state = state["rng"]
        self.eval_rng.bit_generator.state = state["eval_rng"]
        self.scores = {SnapshotKey(str(p), int(v)): float(x) for p, v, x in state["scores"]}
        self.vs_baseline = {(str(p), str(b)): float(x) for p, b, x in state["vs_baseline"]}
        self.partners_of = {SnapshotKey(str(p), int(v)): tuple(SeatedKey.from_json(i) for i in lu)
                            for p, v, lu in state["partners_of"]}
        self._plans_made = int(state["plans_made"])
        self.anchor_scores = {(str(r), str(n)): float(x) for r, n, x in state["anchor_scores"]}

    # ---- seats --------------------------------------------------------------------------------

    def other_roles(self, role: str) -> list[str]:
        """Roles of the seats other than the first seat of `role`, in seat order."""
        return other_seat_roles(self.spec, seats_of_role(self.spec, role)[0])

    def _baseline_lineup(self, name: str, roles: Sequence[str]) -> Lineup:
        """Every seat filled by baseline `name` where it plays the seat's role, else by random."""
        plays = self.baselines[name]
        return tuple(baseline_seat(name if r in plays else RANDOM_POLICY_ID, r) for r in roles)

    def _seed_base(self) -> int:
        self._plans_made += 1
        return self.seed + 10_000 * self._plans_made

    # ---- start-up: par reference and scripted anchors -----------------------------------------

    def start_plan(self) -> EvalPlan | None:
        """All-random episodes (the par reference) and each scripted baseline against random.

        None when neither is needed (outcome 'returns' and no scripted baselines).
        """
        ev = self.cfg.evaluation
        plan = EvalPlan(None, self.role_names[0])
        first = self.role_names[0]
        if self.outcome == "par":
            plan.matches.append(PlannedMatch("par", random_key(first), self._baseline_lineup(
                RANDOM_POLICY_ID, self.other_roles(first)), ev.par_episodes, self._seed_base()))
        for name, roles in self.baselines.items():
            if name == RANDOM_POLICY_ID:
                continue
            for role in roles:
                others = self.other_roles(role)
                lineup = self._baseline_lineup(RANDOM_POLICY_ID, others)
                own = baseline_seat(name, role)
                if self.competitive:
                    plan.matches.append(PlannedMatch("anchor", own, lineup, ev.par_episodes, self._seed_base()))
                else:
                    plan.matches.append(PlannedMatch("anchor", own, lineup, ev.par_episodes, self._seed_base(),
                                                     comparator=random_key(role), comparator_lineup=lineup))
        return plan if plan.matches else None

    def _calibrate_anchor(self, match: PlannedMatch, scores: Sequence[float]) -> None:
        """Fix a scripted baseline's ratings from its score against random: Elo's logistic inverted."""
        s = float(np.clip(np.mean(scores), ANCHOR_SCORE_CLIP, 1 - ANCHOR_SCORE_CLIP))
        self.anchor_scores[(match.own.role, match.own.key.policy_id)] = float(np.mean(scores))
        self.ratings.add_anchor(match.own.role, match.own.key, win_probability=s)

    # ---- admission ----------------------------------------------------------------------------

    def admit(self, snap: Snapshot) -> EvalPlan | None:
        """Put a snapshot into the pool and the matchmaker; plan its evaluation (None for version 0)."""
        self.pool.add(snap)
        self.matchmaker.on_publish(snap)
        if snap.key.version == 0:
            self.ratings.add(snap.role, snap.key, None)
            return None
        return self._plan_evaluation(snap)

    def _plan_evaluation(self, snap: Snapshot) -> EvalPlan:
        ev = self.cfg.evaluation
        key, role = snap.key, snap.role
        own = SeatedKey(key, role)
        roles = self.other_roles(role)
        plan = EvalPlan(key, role)
        base = self._seed_base()
        if self.competitive:
            if ev.baseline_episodes:
                for name, plays in self.baselines.items():
                    if any(r in plays for r in roles) or not roles:
                        plan.matches.append(PlannedMatch("baseline", own, self._baseline_lineup(name, roles),
                                                         ev.baseline_episodes, base))
            if ev.pool_episodes and roles and not self.exact:
                for lineup in self._pool_opponents(snap, roles):
                    plan.matches.append(PlannedMatch("pool", own, lineup, ev.pool_episodes, base))
            return plan
        # Cooperative: play with the newest partners (what this snapshot trained with), then compare
        # the seat against baselines with the same partners and against older snapshots of the role,
        # each with the partners it was evaluated with itself.
        partners: Lineup = ()
        if roles:
            latest = [self.pool.latest(self._policy_of_role(r, i)).key for i, r in enumerate(roles)]
            partners = tuple(SeatedKey(k, r) for k, r in zip(latest, roles))
        self.partners_of[key] = partners
        n_base = ev.baseline_episodes
        for name, plays in self.baselines.items():
            if role in plays and n_base:
                plan.matches.append(PlannedMatch("comparator", own, partners, n_base, base,
                                                 comparator=baseline_seat(name, role), comparator_lineup=partners))
        others = [s.key for s in self.pool.snapshots(role) if s.key != key and s.key in self.partners_of]
        if others and ev.pool_opponents and ev.pool_episodes:
            picks = self.eval_rng.choice(len(others), size=min(ev.pool_opponents, len(others)), replace=False)
            for i in sorted(int(p) for p in picks):
                other = others[i]
                plan.matches.append(PlannedMatch("comparator", own, partners, ev.pool_episodes, base,
                                                 comparator=SeatedKey(other, role),
                                                 comparator_lineup=self.partners_of[other]))
        if not plan.matches and n_base:  # still measure the team return, for the ratings table's score
            plan.matches.append(PlannedMatch("comparator", own, partners, n_base, base))
        plan.matches += self._coop_checks(own, partners, roles, base)
        return plan

    def _coop_checks(self, own: SeatedKey, partners: Lineup, roles: list[str], base: int) -> list[PlannedMatch]:
        """Cross-play (older partner snapshots it never trained with, plus the latest) and the
        communication check (the latest partners vs random partners, same seeds)."""
        ev = self.cfg.evaluation
        out: list[PlannedMatch] = []
        if not roles:
            return out
        if ev.crossplay_partners and ev.pool_episodes:
            lineups = [partners]
            for _ in range(ev.crossplay_partners):
                lineup = tuple(SeatedKey(self._older_snapshot(p), p.role) for p in partners)
                if lineup not in lineups:
                    lineups.append(lineup)
            out += [PlannedMatch("crossplay", own, lu, ev.pool_episodes, base) for lu in lineups]
        if own.role in ev.communication_roles and ev.baseline_episodes:
            out.append(PlannedMatch("communication", own, partners, ev.baseline_episodes, base, comparator=own,
                                    comparator_lineup=self._baseline_lineup(RANDOM_POLICY_ID, roles)))
        return out

    def _older_snapshot(self, partner: SeatedKey) -> SnapshotKey:
        """A uniformly drawn snapshot of the partner's policy older than `partner` (itself if none)."""
        older = [s.key for s in self.pool.snapshots(partner.role)
                 if s.key.policy_id == partner.key.policy_id and s.key.version < partner.key.version]
        return older[int(self.eval_rng.integers(len(older)))] if older else partner.key

    def _policy_of_role(self, role: str, index: int) -> str:
        ids = self.pool.policy_ids(role)
        return ids[index % len(ids)]

    def _pool_opponents(self, snap: Snapshot, roles: list[str]) -> list[Lineup]:
        """Pool line-ups a new snapshot is evaluated against.

        psro needs its meta-game filled: every snapshot in the window (one line-up per opponent, all
        other seats that snapshot where it plays their role); otherwise `pool_opponents` line-ups drawn
        uniformly over the pool, never the snapshot against only itself.
        """
        ev = self.cfg.evaluation
        if self.cfg.matchmaking.strategy == "psro":
            window = self.cfg.matchmaking.psro_window
            out: list[Lineup] = []
            for opp_role in dict.fromkeys(roles):
                keys = [s.key for s in self.pool.snapshots(opp_role) if s.key != snap.key]
                if window:
                    keys = keys[-window:]
                for k in keys:
                    out.append(tuple(SeatedKey(k, r) if r == opp_role else self._latest_seat(r) for r in roles))
            return out
        drawn = self.eval_sampler.lineups(self.pool, snap.key, snap.role, roles, ev.pool_opponents, self.eval_rng)
        return [tuple(SeatedKey(k, r) for k, r in zip(lu, roles)) for lu in drawn
                if any(k != snap.key for k in lu)]

    # ---- exact payoffs (OpenSpiel) ------------------------------------------------------------

    def exact_pairings(self, key: SnapshotKey) -> list[tuple[SnapshotKey, list[list[SnapshotKey]]]]:
        """The exact payoff entries a new snapshot needs: per other snapshot, the seatings to compute.

        The other snapshots are every snapshot it meets (its own role's and the roles it faces; the
        newest `psro_window` of each where set). A seating lists the snapshot of every seat: `key` in
        one of its role's seats, the other snapshot in the seats of its role, the latest snapshot of
        the first policy of any third role. Every seat of `key`'s role is tried, so the mean over
        seatings does not favour a first mover.
        """
        role = self.pool.get(key).role
        seat_roles = [r for r, _ in self.spec.seats()]
        window = self.cfg.matchmaking.psro_window
        out: list[tuple[SnapshotKey, list[list[SnapshotKey]]]] = []
        for opp_role in dict.fromkeys(self.other_roles(role)):
            keys = [s.key for s in self.pool.snapshots(opp_role) if s.key != key]
            if window:
                keys = keys[-window:]
            for other in keys:
                seatings = []
                for seat, seat_role in enumerate(seat_roles):
                    if seat_role != role:
                        continue
                    seatings.append([key if i == seat else other if r == opp_role else self._latest_seat(r).key
                                     for i, r in enumerate(seat_roles)])
                out.append((other, seatings))
        return out

    def record_exact(self, key: SnapshotKey, other: SnapshotKey, seatings: list[list[SnapshotKey]],
                     returns: list[Sequence[float]], now: float, generation: int) -> list[dict[str, Any]]:
        """Enter exact expected returns of `key` against `other` (one returns vector per seating) into the
        payoff table, both ways; returns the payoff rows to record."""
        own, theirs = [], []
        for seating, ret in zip(seatings, returns):
            own += [float(ret[i]) for i, k in enumerate(seating) if k == key]
            theirs += [float(ret[i]) for i, k in enumerate(seating) if k == other]
        own_mean, their_mean = float(np.mean(own)), float(np.mean(theirs))
        role, other_role = self.pool.get(key).role, self.pool.get(other).role
        a = self.payoff.set_exact(str(key), str(other), own_mean, their_mean)
        b = self.payoff.set_exact(str(other), str(key), their_mean, own_mean)
        return [self._payoff_row(role, str(key), (SeatedKey(other, other_role),), a, now, generation, "exact"),
                self._payoff_row(other_role, str(other), (SeatedKey(key, role),), b, now, generation, "exact")]

    def _latest_seat(self, role: str) -> SeatedKey:
        return SeatedKey(self.pool.latest(self.pool.policy_ids(role)[0]).key, role)

    # ---- training line-ups --------------------------------------------------------------------

    def training_lineups(self, policy_id: str, role: str) -> list[tuple[Lineup, str]]:
        """The next generation's line-ups for a learner, each with the source that drew it.

        Fixed shares go to the random baseline (`matchmaking.baseline_fraction`) and to each
        scripted baseline (`train_fraction`): floor(n * share) line-ups for sure and one more with the
        leftover probability; the matchmaker draws the rest.
        """
        roles = self.other_roles(role)
        if not roles:
            return [((), "none")]
        mm = self.cfg.matchmaking
        n = mm.lineups
        if policy_id in self.exploiters:
            return [(lineup, EXPLOITER_SOURCE) for lineup in self._exploiter_lineups(roles, n)]
        fixed: list[tuple[Lineup, str]] = []
        shares = [(RANDOM_POLICY_ID, mm.baseline_fraction)] + [(b.name, b.train_fraction) for b in self.cfg.baselines]
        for name, share in shares:
            if share <= 0:
                continue
            expected = share * n
            count = int(expected) + int(self.rng.random() < expected - int(expected))
            fixed += [(self._baseline_lineup(name, roles), "baseline")] * count
        fixed = fixed[:n]
        learner = self.pool.latest(policy_id).key
        drawn = self.matchmaker.lineups(self.pool, learner, role, roles, n - len(fixed), self.rng,
                                        self.payoff) if n > len(fixed) else []
        return fixed + [(tuple(SeatedKey(k, r) for k, r in zip(lu, roles)), self.matchmaker.name) for lu in drawn]

    def add_targets(self, snapshots: Sequence[Snapshot], targets: dict[str, dict[SnapshotKey, float]],
                    load: WeightLoader | None = None) -> None:
        """Fixed snapshots for the exploiters to train against (an exploit job): `snapshots` enter the
        pool (never evaluated or rated); a seat of a role in `targets` is drawn from that role's
        distribution, a seat of another role gets the latest snapshot of one of its main policies.
        `load` reads their weights back once the pool's bounded cache evicted them (they are not in
        the job's own run file)."""
        for snap in snapshots:
            self.pool.add(snap, load)
            self.matchmaker.on_publish(snap)
        for role, weights in targets.items():
            missing = [str(k) for k in weights if k not in self.pool]
            if missing or not weights or min(weights.values()) <= 0:
                raise ValueError(f"targets of role {role!r} must be positive weights on pool snapshots; "
                                 f"not in the pool: {missing}")
        self.targets = {role: dict(weights) for role, weights in targets.items()}

    def _exploiter_lineups(self, roles: Sequence[str], n: int) -> list[Lineup]:
        """A main exploiter's line-ups: every seat the latest snapshot of one of its role's main
        policies, drawn uniformly (AlphaStar's main exploiters train only against the current mains),
        or, for a role with fixed `targets`, a draw from them."""
        mains = {r: [p for p in self.pool.policy_ids(r) if p not in self.exploiters] for r in set(roles)}
        for r, ids in mains.items():
            if not ids and r not in self.targets:
                raise ValueError(f"role {r!r} has no main policy in the pool for its exploiters to train against")

        def seat(r: str) -> SeatedKey:
            if r in self.targets:
                return SeatedKey(_draw_key(self.targets[r], self.rng), r)
            return SeatedKey(self.pool.latest(mains[r][int(self.rng.integers(len(mains[r])))]).key, r)

        return [tuple(seat(r) for r in roles) for _ in range(n)]

    def record_training(self, learner: SnapshotKey, lineup: Lineup, scores: Sequence[float]) -> None:
        """Training outcomes against a line-up feed the matchmaker (quality scores): each distinct
        pool snapshot once per game. An exploiter's games say nothing about the main policies' own
        progress, so they do not feed it."""
        if learner.policy_id in self.exploiters:
            return
        for key in dict.fromkeys(i.key for i in lineup if not i.is_baseline):
            for s in scores:
                self.matchmaker.record_result(learner, key, float(s))

    # ---- evaluation results -------------------------------------------------------------------

    def _side_key(self, occupant: object, match: PlannedMatch) -> tuple[str, SnapshotKey]:
        seated = match.own if isinstance(occupant, str) else occupant
        assert isinstance(seated, SeatedKey)
        return seated.role, seated.key

    def _side_values(self, seats: Sequence[float]) -> tuple[list[float], float]:
        """What seats are ranked by in this run's outcome rule, and the tie margin."""
        seat_roles = [r for r, _ in self.spec.seats()]
        if self.outcome == "par" and self.par is not None:
            return [self.par.standing(r, v) for r, v in zip(seat_roles, seats)], 0.0
        return list(seats), self.cfg.task.draw_margin

    def begin_evaluation(self, plan: EvalPlan) -> None:
        """Register the evaluated snapshot in the ratings (at its parent's rating as of now)."""
        if plan.key is not None and (plan.role, plan.key) not in self.ratings:
            parent = self.pool.get(plan.key).parent
            self.ratings.add(plan.role, plan.key, parent)

    def record_match(self, match: PlannedMatch, res: SideResults, now: float, generation: int
                     ) -> dict[str, list[dict[str, Any]]]:
        """Rate and tally one played match; returns the rows to record, per table."""
        if match.kind == "par":
            seat_roles = [r for r, _ in self.spec.seats()]
            by_role: dict[str, list[float]] = {}
            for seats in res.seats:
                for r, v in zip(seat_roles, seats):
                    by_role.setdefault(r, []).append(v)
            self.par = ParReference(by_role)
            return {"matches": [self._match_row(match, res, (0, 0, 0), now, generation)]}
        if match.comparator is not None or match.kind == "crossplay":
            return self._record_comparison(match, res, now, generation)
        scores: list[float] = []
        own_key = (match.own.role, match.own.key)
        for seats, occupants in zip(res.seats, res.occupants):
            values, margin = self._side_values(seats)
            ranks = rank_sides(values, margin)
            own_seat = next(i for i, o in enumerate(occupants) if isinstance(o, str))
            scores.append(pairwise_score(ranks, own_seat))
            if match.kind != "anchor":
                self.ratings.rate_game([[self._side_key(o, match)] for o in occupants], ranks)
        wdl = tally(score_class(s) for s in scores)
        if match.kind == "anchor":
            self._calibrate_anchor(match, scores)
            return {"matches": [self._match_row(match, res, wdl, now, generation)]}
        rows: dict[str, list[dict[str, Any]]] = {"matches": [self._match_row(match, res, wdl, now, generation)]}
        own_id = str(match.own.key)
        entry = self.payoff.add(own_id, _column_id(match.lineup), *wdl, float(np.sum(res.own)),
                                float(np.nansum(res.other)))
        rows["payoff"] = [self._payoff_row(match.own.role, own_id, match.lineup, entry, now, generation)]
        single = match.lineup[0] if len(match.lineup) == 1 else None
        if single is not None and not single.is_baseline and single.role == match.own.role:
            # A two-seat game of one role: the opponent's row gets the mirrored entry.
            mirrored = self.payoff.add(str(single.key), own_id, wdl[2], wdl[1], wdl[0], float(np.nansum(res.other)),
                                       float(np.sum(res.own)))
            rows["payoff"].append(self._payoff_row(single.role, str(single.key), (match.own,), mirrored, now,
                                                   generation))
        if match.kind == "baseline":
            name = next((i.key.policy_id for i in match.lineup if not i.is_random), RANDOM_POLICY_ID)
            self.vs_baseline[(match.own.key.policy_id, name)] = (wdl[0] + 0.5 * wdl[1]) / max(1, sum(wdl))
            if name == RANDOM_POLICY_ID:
                self.scores[match.own.key] = float(np.mean(res.own))
        for item in dict.fromkeys(i.key for i in match.lineup if not i.is_baseline):
            if item != match.own.key:
                for s in scores:
                    self.matchmaker.record_result(match.own.key, item, s)
        rows["ratings"] = self.rating_rows({own_key, *((i.role, i.key) for i in match.lineup)}, now)
        return rows

    def _record_cooperative_check(self, match: PlannedMatch, res: SideResults, now: float, generation: int
                                  ) -> dict[str, list[dict[str, Any]]]:
        """Cross-play and communication rows: measured and recorded, never rated.

        crossplay: one matches row with the partners as the opponent columns. communication:
        return_mean with the trained partners, opponent_return_mean with random partners on the same
        seeds, wins counting the episodes the trained partners did better.
        """
        if match.kind == "crossplay":
            return {"matches": [self._match_row(match, res, (0, 0, 0), now, generation)]}
        theirs = res.comparator_own or []
        scores = [pairwise_score(rank_sides([a, b], self.cfg.task.draw_margin), 0) for a, b in zip(res.own, theirs)]
        row = self._match_row(match, res, tally(score_class(s) for s in scores), now, generation)
        row.update(opponent_id=RANDOM_PARTNERS_ID, opponent_version=-1,
                   opponent_return_mean=float(np.mean(theirs)) if theirs else math.nan)
        return {"matches": [row]}

    def _record_comparison(self, match: PlannedMatch, res: SideResults, now: float, generation: int
                           ) -> dict[str, list[dict[str, Any]]]:
        """Cooperative paired comparison: own vs comparator in the same seat on the same seeds."""
        if match.kind in ("crossplay", "communication"):
            return self._record_cooperative_check(match, res, now, generation)
        self.scores[match.own.key] = float(np.mean(res.own))
        if match.comparator is None or res.comparator_own is None:
            return {"matches": [self._match_row(match, res, (0, 0, 0), now, generation)]}
        comp = match.comparator
        margin = self.cfg.task.draw_margin
        scores = [pairwise_score(rank_sides([a, b], margin), 0) for a, b in zip(res.own, res.comparator_own)]
        wdl = tally(score_class(s) for s in scores)
        if match.kind == "anchor":
            self._calibrate_anchor(match, scores)
            return {"matches": [self._match_row(match, res, wdl, now, generation, comp)]}
        for a, b in zip(res.own, res.comparator_own):
            self.ratings.rate_game([[(match.own.role, match.own.key)], [(comp.role, comp.key)]],
                                   rank_sides([a, b], margin))
        own_id = str(match.own.key)
        entry = self.payoff.add(own_id, _entry_id(comp), *wdl, float(np.sum(res.own)),
                                float(np.sum(res.comparator_own)))
        if comp.is_baseline:
            self.vs_baseline[(match.own.key.policy_id, comp.key.policy_id)] = (wdl[0] + 0.5 * wdl[1]) / max(1, sum(wdl))
        return {
            "matches": [self._match_row(match, res, wdl, now, generation, comp)],
            "payoff": [self._payoff_row(match.own.role, own_id, (comp,), entry, now, generation)],
            "ratings": self.rating_rows({(match.own.role, match.own.key), (comp.role, comp.key)}, now),
        }

    # ---- rows ---------------------------------------------------------------------------------

    def _match_row(self, match: PlannedMatch, res: SideResults, wdl: tuple[int, int, int], now: float,
                   generation: int, comparator: SeatedKey | None = None) -> dict[str, Any]:
        opp_id, opp_version, opp_role = lineup_label((comparator,) if comparator else match.lineup)
        other = res.comparator_own if comparator is not None and res.comparator_own is not None else res.other
        finite = [x for x in other if not math.isnan(x)]
        return {
            "time": now, "generation": generation, "kind": "evaluation", "matchmaker": match.kind, "rank": 0,
            "policy_id": match.own.key.policy_id, "version": match.own.key.version, "role": match.own.role,
            "opponent_id": opp_id, "opponent_version": opp_version, "opponent_role": opp_role,
            "episodes": len(res.own), "wins": wdl[0], "draws": wdl[1], "losses": wdl[2],
            "return_mean": float(np.mean(res.own)) if res.own else math.nan,
            "opponent_return_mean": float(np.mean(finite)) if finite else math.nan,
            "length_mean": float(np.mean(res.length)) if res.length else math.nan,
        }

    def _payoff_row(self, role: str, row_id: str, column: Lineup, entry: Any, now: float,
                    generation: int, source: str = "sampled") -> dict[str, Any]:
        low, high = entry.interval
        return {
            "time": now, "generation": generation, "role": role, "row_id": row_id,
            "column_id": _column_id(column), "column_role": "+".join(i.role for i in column) or "-",
            "source": source, "games": entry.games, "wins": entry.wins, "draws": entry.draws,
            "losses": entry.losses, "score": entry.score, "score_low": low, "score_high": high,
            "return_mean": entry.return_mean, "opponent_return_mean": entry.opponent_return_mean,
        }

    def rating_rows(self, keys: set[tuple[str, SnapshotKey]], now: float) -> list[dict[str, Any]]:
        """Ratings rows for the pool snapshots among `keys` (baselines are fixed: not repeated)."""
        rows = []
        for role, key in sorted(keys, key=lambda rk: (rk[0], rk[1])):
            if key not in self.pool or (role, key) not in self.ratings:
                continue
            r = self.ratings.rating(role, key)
            rows.append({"time": now, "generation": key.version, "policy_id": key.policy_id, "version": key.version,
                         "role": role, "elo": r.elo, "mu": r.mu, "sigma": r.sigma, "games": r.games,
                         "score": self.scores.get(key, math.nan)})
        return rows

    def meta_rows(self, now: float, generation: int) -> list[dict[str, Any]]:
        """Per role: the matchmaker's distribution over snapshots, the max-entropy Nash weights and the
        Nash-averaged ratings of the role's payoff table (a square table: own-role games only)."""
        rows: list[dict[str, Any]] = []
        for role in self.role_names:
            snaps = [s.key for s in self.pool.snapshots(role)]
            if not snaps:
                continue
            weights = self.matchmaker.meta_strategy(self.pool, role, self.payoff)
            nash_w: dict[SnapshotKey, float] = {}
            nash_r: dict[SnapshotKey, float] = {}
            if role in self.other_roles(role) and len(snaps) > 1:
                window = snaps[-NASH_WINDOW:]
                ids = [str(k) for k in window]
                # value: score - 1/2 for played games, the expected return for exact ones; Nash
                # averaging (Balduzzi et al. 2018) of the antisymmetric part, unmeasured pairs even.
                v = np.nan_to_num(self.payoff.matrix(ids, ids, "value", antisymmetric_fill=True), nan=0.0)
                a = (v - v.T) / 2.0
                p = max_entropy_nash(a)
                rating = a @ p
                nash_w = dict(zip(window, p.tolist()))
                nash_r = dict(zip(window, rating.tolist()))
            for k in snaps:
                w = float(weights.get(k, 0.0))
                if w == 0.0 and k not in nash_w:
                    continue
                rows.append({"time": now, "generation": generation, "role": role, "policy_id": k.policy_id,
                             "version": k.version, "matchmaker": self.matchmaker.name, "weight": w,
                             "nash_weight": nash_w.get(k, math.nan), "nash_rating": nash_r.get(k, math.nan)})
        return rows

    def summary(self, policy_ids: Sequence[str]) -> dict[str, Any]:
        """Per policy: role, latest version, Elo, mu/sigma, last score and scores against baselines."""
        out: dict[str, Any] = {}
        for pid in policy_ids:
            latest = self.pool.latest(pid)
            entry: dict[str, Any] = {"role": latest.role, "version": latest.key.version}
            if (latest.role, latest.key) in self.ratings:
                r = self.ratings.rating(latest.role, latest.key)
                entry.update(elo=round(r.elo, 1), mu=round(r.mu, 2), sigma=round(r.sigma, 2))
            entry["score"] = self.scores.get(latest.key)
            for name in self.baselines:
                if (pid, name) in self.vs_baseline:
                    entry[f"vs_{name}"] = round(self.vs_baseline[(pid, name)], 3)
            out[pid] = entry
        return out
