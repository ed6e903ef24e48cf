"""Learning benchmarks: each shipped config trained on 3 ranks, then its final snapshots evaluated.

Targets (issue #2), all on this 2-core machine with 3 ranks (server + 2 trainers):
- connect_four_league: the latest policy beats the uniform-random baseline in >= 95% of games
  within 10 minutes of wall time;
- simple_spread_team: mean per-agent episode return >= -18 (random -26.5, world-state heuristic -7.8);
- speaker_listener_team: >= -20 (random -41.5);
- cartpole: return >= 475 within 200k steps;
- simple_tag_roles: predators score clearly above what they score when both sides act at random
  (about +4.5 per predator per episode; measured here in the same run).

Final snapshots are evaluated offline with the package's own evaluation code on fresh seeds
(more episodes than the server's scheduled evaluations), sampling actions as in training; the
greedy (most likely action) result is reported beside it.

    python -m benchmarks.learning [--only connect_four_league,...] [--scale 1.0]
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.common import save, train
from mpimarl.algos.networks import FrozenPolicy, RandomPolicy
from mpimarl.analysis import Run, load_run
from mpimarl.config import parse_config
from mpimarl.league.outcomes import match_score, tally
from mpimarl.league.pool import SnapshotKey
from mpimarl.roles.context import RunContext
from mpimarl.rollout.evaluate import EpisodeResults, play_episodes
from mpimarl.rollout.runner import ActingPolicy, VectorMatches
from mpimarl.rollout.seating import SeatedKey, random_key


@dataclass
class Case:
    """One benchmark: a config, its step budget per trainer, and how to judge the final snapshots."""

    config: str
    steps: int
    metric: str
    target: str
    overrides: list[str] = field(default_factory=list)


CASES = [
    Case("connect_four_league", 2_500_000, "win rate vs random", ">= 0.95 within 600 s"),
    Case("cartpole", 200_000, "episode return", ">= 475 within 200k steps"),
    Case("simple_spread_team", 1_600_000, "per-agent return", ">= -18 (random -26.5)"),
    Case("speaker_listener_team", 600_000, "per-agent return", ">= -20 (random -41.5)"),
    Case("simple_tag_roles", 300_000, "predator return vs random prey", "> random-vs-random (~+4.5)"),
]


def _play(ctx: RunContext, own: ActingPolicy, role: str, lineup: tuple[SeatedKey, ...],
          policies: dict[Hashable, ActingPolicy], episodes: int) -> EpisodeResults:
    vm = VectorMatches([ctx.factory() for _ in range(16)], seed=0)
    gen = play_episodes(vm, ctx.spec, own, role, lineup, policies, [50_000_000 + i for i in range(episodes)])
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def _final(run: Run, ctx: RunContext, policy_id: str, greedy: bool) -> FrozenPolicy:
    version = int(run.pool[run.pool.policy_id == policy_id].version.max())
    role = run.pool[run.pool.policy_id == policy_id].role.iloc[0]
    return FrozenPolicy(ctx.shape(role), run.weights(policy_id, version), torch.device("cpu"), greedy=greedy)


def evaluate(case: Case, run: Run, episodes: int) -> list[dict[str, object]]:
    """Rows of final-snapshot results for one finished run."""
    ctx = RunContext.build(parse_config(run.config), None)
    rng = np.random.default_rng(0)
    randoms: dict[Hashable, ActingPolicy] = {("random", r): RandomPolicy(rs.action_space, rng)
                                             for r, rs in ctx.spec.roles.items()}
    ids = list(dict.fromkeys(run.pool.policy_id))
    rows = []
    for greedy in (False, True):
        mode = "greedy" if greedy else "sampled"
        if case.config == "connect_four_league":
            for pid in ids:
                res = _play(ctx, _final(run, ctx, pid, greedy), "player", (random_key("player"),), randoms, episodes)
                w, d, lo = tally(match_score(a, b) for a, b in zip(res.own, res.other))
                rows.append({"policy": pid, "mode": mode, "value": (w + 0.5 * d) / res.episodes})
        elif case.config in ("cartpole", "simple_spread_team"):
            for pid in ids:
                res = _play(ctx, _final(run, ctx, pid, greedy), "agent", (), randoms, episodes)
                rows.append({"policy": pid, "mode": mode, "value": float(np.mean(res.own))})
        elif case.config == "speaker_listener_team":
            speaker = _final(run, ctx, "speaker-0", greedy)
            listener_key = SnapshotKey("listener-0", 0)
            pol = {listener_key: _final(run, ctx, "listener-0", greedy)}
            res = _play(ctx, speaker, "speaker", (SeatedKey(listener_key, "listener"),), pol, episodes)
            rows.append({"policy": "speaker-0 + listener-0", "mode": mode,
                         "value": float(np.mean(np.add(res.own, res.other)) / 2)})
        elif case.config == "simple_tag_roles":
            predator = _final(run, ctx, "predator-0", greedy)
            res = _play(ctx, predator, "predator", (random_key("prey"),), randoms, episodes)
            rows.append({"policy": "predator-0 vs random prey", "mode": mode, "value": float(np.mean(res.own))})
            prey_key = SnapshotKey("prey-0", 0)
            res = _play(ctx, predator, "predator", (SeatedKey(prey_key, "prey"),),
                        {prey_key: _final(run, ctx, "prey-0", greedy)}, episodes)
            rows.append({"policy": "predator-0 vs prey-0", "mode": mode, "value": float(np.mean(res.own))})
    if case.config == "simple_tag_roles":
        res = _play(ctx, randoms[("random", "predator")], "predator", (random_key("prey"),), randoms, episodes)
        rows.append({"policy": "random predators vs random prey", "mode": "random", "value": float(np.mean(res.own))})
    return rows


def time_to_target(run: Run, threshold: float) -> float:
    """Seconds until a policy's scheduled evaluation against random first reached `threshold`."""
    ev = run.matches[(run.matches.kind == "evaluation") & (run.matches.opponent_id == "random")]
    rate = (ev.wins + 0.5 * ev.draws) / ev.episodes
    hit = ev[rate >= threshold]
    return float(hit.time.min()) if len(hit) else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated config names")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every step budget")
    parser.add_argument("--episodes", type=int, default=400, help="evaluation episodes per final snapshot")
    parser.add_argument("overrides", nargs="*", metavar="key.path=value", help="config overrides for every case")
    args = parser.parse_args()
    torch.set_num_threads(1)
    wanted = set(args.only.split(",")) if args.only else None
    rows = []
    for case in CASES:
        if wanted and case.config not in wanted:
            continue
        steps = int(case.steps * args.scale)
        with tempfile.TemporaryDirectory() as tmp:
            wall = train(f"{case.config}.yaml", Path(tmp), ["--steps", str(steps), *case.overrides, *args.overrides])
            run = load_run(Path(tmp) / "run.h5")
            results = evaluate(case, run, args.episodes)
            reached = time_to_target(run, 0.95) if case.config == "connect_four_league" else float("nan")
        for r in results:
            rows.append({"config": case.config, "steps_per_trainer": steps, "wall_s": round(wall, 1),
                         "metric": case.metric, "target": case.target, **r, "value": round(float(r["value"]), 3),
                         "scheduled_eval_reached_0.95_at_s": round(reached, 1)})
        print(f"{case.config}: done in {wall:.0f} s", flush=True)
    notes = ("value: final snapshot(s) evaluated on fresh seeds over --episodes episodes; 'sampled' acts as in "
             "training, 'greedy' takes the most likely action. wall_s includes start-up, evaluation and recording.")
    name = "learning" if not (wanted or args.overrides or args.scale != 1.0) else "learning_partial"
    save(pd.DataFrame(rows), name, notes)


if __name__ == "__main__":
    main()
