"""League benchmarks: does the population keep getting stronger, and by which measure?

Every case trains on 3 ranks (server + 2 trainers) on this machine, then judges the result with
opponents that do not saturate: the one-move tactical player, older snapshots, other matchmakers'
final policies, and exact exploitability where the game allows it. Reference figures from
`shared/ANCHORS.md` are printed beside the results.

    python -m benchmarks.league connect_four [--minutes 30]        # the default config
    python -m benchmarks.league matchmakers [--minutes 6]          # latest/uniform/openai_five/pfsp/psro
    python -m benchmarks.league rps                                # latest vs uniform vs psro
    python -m benchmarks.league kuhn [--minutes 15]
    python -m benchmarks.league leduc [--minutes 30]
    python -m benchmarks.league simple_tag

Run folders go to --runs (default runs/bench/); tables to benchmarks/results/league_<case>.md.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.common import REPO, fresh_run_dir, save, train
from mpimarl.analysis import Run, load_run
from mpimarl.arena import Arena, Entrant, baseline_entrant, round_robin

MATCHMAKERS = ("latest", "uniform", "openai_five", "pfsp", "psro")
ANCHORS = {
    "connect_four": "ANCHORS: tactical vs random 0.95, tactical vs itself 0.45; the first league's policies "
                    "scored 0.38-0.41 against it",
    "rps": "ANCHORS: naive self-play stays at exploitability 1.0; fictitious play's average 0.004 after 1e4 steps",
    "kuhn": "ANCHORS: uniform 0.458333; NFSP (10M episodes) 0.0198; CFR 1000 iterations 0.00094",
    "leduc": "ANCHORS: uniform 2.373611; NFSP (10M episodes) 0.638; deep PSRO about 0.40 at 8M steps",
}


def _stored(run: Run, policy_id: str, version: int) -> Entrant:
    stored = run.policy(policy_id, version)
    return Entrant(stored.label, (stored.role,), {stored.role: stored.acting_policy()}, 0, stored)


def _first_time(ex: pd.DataFrame, level: float) -> float:
    """Seconds until exploitability first reached `level` after training began (generation 0 is the
    untrained, near-uniform initialisation, which is itself unexploitable in rock-paper-scissors)."""
    hit = ex[(ex.exploitability <= level) & (ex.generation > 0)]
    return float(hit.time.min()) if len(hit) else math.nan


# ---- connect four: the default config against the tactical player and its own past ----------------


def connect_four(args: argparse.Namespace) -> None:
    """Final main policies vs the tactical player, and the latest snapshot vs the halfway one."""
    if args.reuse:  # judge a run trained before (e.g. by hand with the same overrides)
        run, wall = load_run(args.reuse), math.nan
    else:
        folder = fresh_run_dir(args.runs, "connect_four")
        wall = train("connect_four_league.yaml", folder, ["--steps", "100000000", f"--seed={args.seed}",
                                                           f"schedule.time_limit_s={60 * args.minutes}"],
                     timeout=60 * args.minutes + 1800)
        run = load_run(folder / "run.h5")
    rows = []
    for pid, last in run.latest_versions().items():
        half = last // 2
        entrants = [_stored(run, pid, last), _stored(run, pid, half), baseline_entrant(run, "tactical", 11),
                    baseline_entrant(run, "random", 12)]
        arena = Arena(run, entrants, args.episodes, seed=args.seed + 1)
        try:
            table = arena.competitive().results
        finally:
            arena.close()
        me = f"{pid}@{last}"
        for rec in table[table.entrant == me].itertuples():
            rows.append({"policy": me, "opponent": rec.opponent, "episodes": rec.episodes, "score": round(rec.score, 3),
                         "low": round(rec.score_low, 3), "high": round(rec.score_high, 3)})
    steps = int(run.pool.groupby("policy_id").env_steps.max().min())
    notes = (f"{args.minutes} min wall limit ({wall:.0f} s with start-up and final evaluation), {steps} env steps per "
             f"trainer, seed {args.seed}; {args.episodes} fresh episodes per pairing, alternating the first move; "
             f"score = (wins + draws/2) / episodes with Wilson 95% bounds. {ANCHORS['connect_four']}. Targets: "
             ">= 0.80 vs tactical, latest >= 0.75 vs the halfway snapshot.")
    save(pd.DataFrame(rows), "league_connect_four", notes)


# ---- the five matchmakers, same seeds and budgets -------------------------------------------------


def matchmakers(args: argparse.Namespace) -> None:
    """Each strategy trains the default config for the same wall time; then a round robin of finals."""
    paths = []
    for name in args.only or MATCHMAKERS:
        folder = fresh_run_dir(args.runs, f"mm_{name}")
        train("connect_four_league.yaml", folder, ["--steps", "100000000", f"--seed={args.seed}",
                                                   f"matchmaking.strategy={name}", f"name=mm_{name}",
                                                   f"schedule.time_limit_s={60 * args.minutes}"],
              timeout=60 * args.minutes + 1800)
        paths.append(folder / "run.h5")
        print(f"{name}: trained", flush=True)
    result = round_robin(paths, vs="random,tactical", episodes=args.episodes, seed=args.seed + 1)
    print(result.text())
    frame = result.results.copy()
    frame["score"] = frame.score.round(3)
    frame[["score_low", "score_high"]] = frame[["score_low", "score_high"]].round(3)
    mean = result.mean_scores().round(3).to_dict()
    notes = (f"each strategy: the default connect_four_league config, {args.minutes} min wall limit, seed "
             f"{args.seed}; round robin of the final snapshots plus random and tactical, {args.episodes} episodes "
             f"per pairing. Mean score per entrant: {mean}")
    save(frame[["entrant", "opponent", "episodes", "wins", "draws", "losses", "score", "score_low", "score_high"]],
         "league_matchmakers", notes)


# ---- exact games: exploitability over time ---------------------------------------------------------


def _exploitability_case(args: argparse.Namespace, case: str, config: str, strategies: tuple[str, ...],
                         extra: list[str], levels: tuple[float, ...]) -> None:
    rows = []
    for name in strategies:
        folder = fresh_run_dir(args.runs, f"{case}_{name}_n{args.ranks}")
        over = [f"matchmaking.strategy={name}", f"--seed={args.seed}", *extra]
        if args.minutes:
            over += ["--steps", "100000000", f"schedule.time_limit_s={60 * args.minutes}"]
        wall = train(config, folder, over, ranks=args.ranks, timeout=60 * (args.minutes or 30) + 1800)
        run = load_run(folder / "run.h5")
        pop = run.exploitability[run.exploitability.policy_id == "population"]
        latest = run.exploitability[run.exploitability.policy_id != "population"]
        last_gen = latest[latest.generation == latest.generation.max()]
        row = {"strategy": name, "wall_s": round(wall), "generations": int(pop.generation.max()),
               "steps_per_trainer": int(run.pool.groupby("policy_id").env_steps.max().min()),
               "population_final": round(float(pop.exploitability.iloc[-1]), 4),
               "population_min_trained": round(float(pop[pop.generation > 0].exploitability.min()), 4),
               "latest_final_mean": round(float(last_gen.exploitability.mean()), 4)}
        for level in levels:
            row[f"population<={level}_at_s"] = round(_first_time(pop, level), 1)
        rows.append(row)
        print(row, flush=True)
    notes = (f"{config}, {args.ranks} ranks ({args.ranks - 1} trainer(s)), seed {args.seed}; exact exploitability "
             f"(NashConv / 2) of the population mixture (the matchmaker's meta-strategy over the pool, "
             f"realization-equivalent behaviour policy) and "
             f"of each trainer's latest snapshot, measured by rank 0 every generation. {ANCHORS[case]}")
    save(pd.DataFrame(rows), f"league_{case}" + ("" if args.ranks == 3 else f"_{args.ranks}ranks"), notes)


def rps(args: argparse.Namespace) -> None:
    """Rock-paper-scissors: naive self-play cycles; uniform and psro approach the uniform Nash."""
    _exploitability_case(args, "rps", "rps_league.yaml", ("latest", "uniform", "psro"), [], (0.5, 0.05))


def kuhn(args: argparse.Namespace) -> None:
    """Kuhn poker with psro (exact payoffs)."""
    _exploitability_case(args, "kuhn", "kuhn_psro.yaml", ("psro",), [], (0.1, 0.05, 0.02))


def leduc(args: argparse.Namespace) -> None:
    """Leduc poker with psro (exact payoffs)."""
    _exploitability_case(args, "leduc", "leduc_psro.yaml", ("psro",), [], (1.0, 0.5, 0.4))


# ---- simple_tag: both roles rated, both directions ---------------------------------------------------


def simple_tag(args: argparse.Namespace) -> None:
    """A trained prey against the random prey, and rating moves in both directions per role."""
    folder = fresh_run_dir(args.runs, "simple_tag")
    train("simple_tag_roles.yaml", folder, [f"--seed={args.seed}"])
    run = load_run(folder / "run.h5")
    rows = []
    for role in ("predator", "prey"):
        r = run.ratings[(run.ratings.role == role) & run.ratings.policy_id.str.contains("-")]
        moves = r.sort_values("time").groupby(["policy_id", "version"]).elo.diff().dropna()
        final = r[r.version == r.version.max()].iloc[-1]
        rows.append({"role": role, "final_version": int(final.version), "final_elo": round(float(final.elo), 1),
                     "final_mu": round(float(final.mu), 2), "final_sigma": round(float(final.sigma), 2),
                     "rating_updates_up": int((moves > 0).sum()), "rating_updates_down": int((moves < 0).sum())})
    entrants = [_stored(run, pid, v) for pid, v in run.latest_versions().items()]
    entrants += [baseline_entrant(run, "random", 21)]
    arena = Arena(run, entrants, args.episodes, seed=args.seed + 1)
    try:
        result = arena.competitive()
    finally:
        arena.close()
    print(result.text())
    notes = ("simple_tag_roles default budget, 3 ranks; Elo per role, anchored at that role's random baseline "
             "(1000); par outcome (each side's return placed in its own role's all-random distribution). "
             "Round robin (par scores): " + "; ".join(f"{r.entrant} vs {r.opponent}: {r.score:.2f} "
                                                        f"[{r.score_low:.2f}, {r.score_high:.2f}]"
                                                        for r in result.results.itertuples()))
    save(pd.DataFrame(rows), "league_simple_tag", notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", choices=["connect_four", "matchmakers", "rps", "kuhn", "leduc", "simple_tag"])
    parser.add_argument("--minutes", type=float, default=None, help="wall-time limit per training run")
    parser.add_argument("--episodes", type=int, default=400, help="evaluation episodes per pairing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ranks", type=int, default=3, help="rps/kuhn/leduc: MPI ranks (server + trainers)")
    parser.add_argument("--only", type=lambda s: s.split(","), default=None, help="matchmakers: a subset")
    parser.add_argument("--reuse", type=Path, default=None, help="connect_four: judge this run file, no training")
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "bench", help="where run folders go")
    args = parser.parse_args()
    torch.set_num_threads(1)
    np.seterr(all="ignore")
    defaults = {"connect_four": 30, "matchmakers": 6, "kuhn": 15, "leduc": 30}
    if args.minutes is None:
        args.minutes = defaults.get(args.case, 0)
    {"connect_four": connect_four, "matchmakers": matchmakers, "rps": rps, "kuhn": kuhn, "leduc": leduc,
     "simple_tag": simple_tag}[args.case](args)


if __name__ == "__main__":
    main()
