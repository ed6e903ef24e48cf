"""League benchmarks: does the population keep getting stronger, and by which measure?

Every case trains on 3 ranks (server + 2 trainers) on this machine, then judges the result with
opponents that do not saturate: the one-move tactical player, older snapshots, other matchmakers'
final policies, and exact exploitability where the game allows it. Reference figures from
`shared/ANCHORS.md` are printed beside the results.

    python -m benchmarks.league connect_four [--minutes 30]        # the default config
    python -m benchmarks.league c4_ablation [--steps 2000000]     # which connect-four change bought what
    python -m benchmarks.league c4_evidence [--budget 2M|30min]    # league vs self-play over the connect_four tables
    python -m benchmarks.league c4_greedy [--budget 2M|30min]      # the evidence runs' policies playing greedily
    python -m benchmarks.league c4_retention                       # default retention vs everything kept
    python -m benchmarks.league matchmakers [--minutes 6]          # latest/uniform/openai_five/pfsp/psro
    python -m benchmarks.league rps                                # latest vs uniform vs psro
    python -m benchmarks.league kuhn [--minutes 15 | --steps N] [--set k=v ...] [--label L]
    python -m benchmarks.league leduc [--minutes 30 | --steps N] [--set k=v ...] [--label L]
    python -m benchmarks.league simple_tag

Run folders go to --runs (default runs/bench/); tables to benchmarks/results/league_<case>.md.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.common import REPO, RESULTS, fresh_run_dir, save, train
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


# ---- connect four: the default config against held-out judges --------------------------------------

C4_JUDGES = ("random", "tactical", "negamax:depth=1", "negamax:depth=2", "negamax:depth=3", "negamax:depth=4")
"""The judges of a connect-four run: none of them is in the default config's training mix."""


def _load() -> str:
    return "{:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())


def connect_four(args: argparse.Namespace) -> None:
    """Final main policies against the tactical player, the negamax ladder (depths 1-4), their halfway
    selves and, with --exploit-steps, an exploiter trained against the final population."""
    from mpimarl.judging import JudgePlan, judge_run

    label = args.label or f"seed{args.seed}"
    load_before = _load()
    if args.reuse:  # judge a run trained before (e.g. by hand with the same overrides)
        path, wall = args.reuse, math.nan  # read from the run file below
    else:
        folder = fresh_run_dir(args.runs, f"connect_four_{label}")
        budget = (["--steps", str(args.steps)] if args.steps
                  else ["--steps", "100000000", f"schedule.time_limit_s={60 * args.minutes}"])
        wall = train(args.config, folder, [*budget, f"--seed={args.seed}", *args.set],
                     timeout=60 * (args.minutes or 60) + 3600)
        path = folder / "run.h5"
    load_after = _load()
    run = load_run(path)
    if args.reuse:
        wall = float(run.attrs.get("wall_time_s", math.nan))
    plan = JudgePlan(baselines=C4_JUDGES, history=(0.5,), episodes=args.episodes, seed=args.seed + 1,
                     exploit_steps=args.exploit_steps)
    t0 = time.monotonic()
    judged, notes = judge_run(path, plan, run)
    judge_wall = time.monotonic() - t0
    table = judged[["policy_id", "version", "judge", "episodes", "wins", "draws", "losses", "score", "score_low",
                    "score_high"]].copy()
    for col in ("score", "score_low", "score_high"):
        table[col] = table[col].astype(float).round(3)
    steps = int(run.pool.groupby("policy_id").env_steps.max().min())
    size_mb = Path(path).stat().st_size / 2**20
    stored = run.policies()
    kept = int((stored["stored"] != "none").sum()) if "stored" in stored.columns else len(stored)
    budget_text = f"{args.steps} env steps per trainer" if args.steps else f"{args.minutes} min wall limit"
    text = (f"config {args.config} {' '.join(args.set)} (seed {args.seed}): {budget_text}, {wall:.0f} s of training "
            f"with start-up and final evaluation, {steps} env steps per trainer, {len(stored)} snapshots "
            f"({kept} with weights), run file {size_mb:.0f} MB; load average (1/5/15 min) {load_before} before "
            f"{'judging (the run was trained earlier)' if args.reuse else 'training'}, {load_after} after; judging "
            f"{judge_wall:.0f} s. {args.episodes} fresh games per pairing, the "
            "first move alternating; score = (wins + draws/2) / games for the policy, Wilson 95% bounds. Judges: "
            "random, the one-move tactical player, negamax search at depths 1-4 (margin 2: a random pick among "
            "moves within 2 points of the best), the policy's snapshot at half its versions (`own@0.5`)"
            + (f", and `exploiter:{args.exploit_steps}`: a fresh learner with the run's config trained "
               f"{args.exploit_steps} steps against the final population, scored for the population "
               "(1 - the exploiter's held-out score)" if args.exploit_steps else "")
            + f". {ANCHORS['connect_four']}." + (" " + " ".join(notes) if notes else ""))
    save(table, f"league_connect_four_{label}", text)
    _save_exploiter_curve(path, label)


def _save_exploiter_curve(path: Path, label: str) -> None:
    """Keep the population exploiter's learning curve beside the judges' table (the run folder is not kept)."""
    from mpimarl.exploit import load_curve

    curve = load_curve(path)
    if len(curve):
        curve.to_csv(RESULTS / f"league_connect_four_{label}_exploiter.csv", index=False)


C4_SETUPS = {
    "league": ("the default config: pfsp over the pool, 35% of line-ups against the latest, the tactical player in "
               "3 of 8 training line-ups", ("default_seed1", "default_seed2", "default_seed3")),
    "league, no scripted": ("the default config with no scripted opponent in training (tactical train_fraction 0)",
                            ("league_noscripted_seed1", "league_noscripted_seed2",
                             "league_noscripted_seed3")),
    "self-play": ("naive self-play: matchmaking.strategy latest, no scripted opponent in training",
                  ("selfplay_seed1", "selfplay_seed2", "selfplay_seed3")),
    "league, 12 epochs": ("the default config with 12 PPO epochs over each rollout instead of 4 (ppo.epochs=12)",
                          ("e12_seed1", "e12_seed2", "e12_seed3")),
}
"""The connect-four setups compared by `c4_evidence` at 2M steps: (what, labels of `connect_four --label` tables)."""

C4_FACTORS = (("league", "league, no scripted", "the tactical player in training"),
              ("league, no scripted", "self-play", "pfsp over the pool instead of the latest self"),
              ("league, 12 epochs", "league", "12 PPO epochs instead of 4"))
"""Pairs of setups that differ in one factor: (with it, without it, the factor)."""

C4_SETUPS_30MIN = {
    "league": ("the default config trained 30 minutes on the idle machine (5.76M and 5.91M env steps per trainer)",
               ("default30_seed1", "default30_seed2")),
    "league, no scripted": ("the default config with no scripted opponent in training, trained to each seed's "
                            "league step count (--steps 5755520 and 5905664; seed 3, which has no league run, "
                            "to their mean, 5830592)",
                            ("noscripted30_seed1", "noscripted30_seed2", "noscripted30_seed3")),
    "self-play": ("naive self-play (matchmaking.strategy latest, no scripted opponent in training) trained to each "
                  "seed's league step count (--steps 5755520 and 5905664; seed 3 to 5830592)",
                  ("selfplay30_seed1", "selfplay30_seed2", "selfplay30_seed3")),
}
"""The connect-four setups compared by `c4_evidence --budget 30min`: the default's 30-minute budget, in steps."""

C4_EVIDENCE = {
    "2M": (C4_SETUPS, C4_FACTORS, "league_connect_four_evidence",
           "Connect four, 3 ranks (two trainers), 2M env steps per trainer each run, seeds 1-3",
           "No judge is a training opponent, except the tactical player for the `league` and `league, 12 epochs` "
           "setups."),
    "30min": (C4_SETUPS_30MIN, (("league", "league, no scripted", "the tactical player in training"),
                                ("league, no scripted", "self-play", "pfsp over the pool instead of the latest self"),
                                ("league", "self-play", "the default (pfsp pool and tactical player in training) "
                                 "instead of the latest self")),
              "league_connect_four_evidence_30min",
              "Connect four, 3 ranks (two trainers), the default config's 30-minute budget in env steps per "
              "trainer (league: seeds 1 and 2; the other setups seeds 1-3, each at its league seed's step count)",
              "No judge is a training opponent, except the tactical player for the `league` setup."),
}
"""`c4_evidence --budget B`: (setups, one-factor pairs, table name, budget sentence, training-opponent sentence)."""


def _steps_to(curve: pd.DataFrame, level: float) -> float:
    """Environment steps the exploiter needed until its training score first reached `level`."""
    hit = curve[curve.score >= level]
    return float(hit.env_steps.min()) if len(hit) else math.nan


def _steps_to_interpolated(curve: pd.DataFrame, level: float) -> float:
    """Environment steps at which the exploiter's training score first crossed `level`, linear between
    the two curve points around the crossing (finer than the curve's resolution where the score rises
    steeply); the first point's steps if it already reached `level`, NaN if it never did."""
    steps, score = curve.env_steps.to_numpy(float), curve.score.to_numpy(float)
    above = np.flatnonzero(score >= level)
    if not len(above):
        return math.nan
    i = int(above[0])
    if i == 0:
        return float(steps[0])
    return float(steps[i - 1] + (level - score[i - 1]) / (score[i] - score[i - 1]) * (steps[i] - steps[i - 1]))


def c4_evidence(args: argparse.Namespace) -> None:
    """One table over the `connect_four` runs of one budget's setups (C4_EVIDENCE): each judge's score
    per setup (the mean of each run's two final policies, then over runs), and each one-factor difference
    with a bootstrap interval and an exact permutation p-value over runs (mpimarl.stats.difference)."""
    from mpimarl.stats import difference

    setups_of_budget, factors, table_name, budget_text, trained_text = C4_EVIDENCE[args.budget]
    per_run: dict[str, dict[str, list[float]]] = {}
    for setup, (_, labels) in setups_of_budget.items():
        values: dict[str, list[float]] = {}
        for label in labels:
            table = RESULTS / f"league_connect_four_{label}.csv"
            if not table.exists():
                print(f"missing {table.name}: run `connect_four --label {label}` first", flush=True)
                continue
            judged = pd.read_csv(table)
            for judge, part in judged.groupby("judge", sort=False):
                values.setdefault(judge, []).append(float(part.score.mean()))
            curve_file = RESULTS / f"league_connect_four_{label}_exploiter.csv"
            found = args.runs / f"connect_four_{label}" / "run.exploit" / "curve.csv"
            if not curve_file.exists() and found.exists():
                pd.read_csv(found).to_csv(curve_file, index=False)
            if curve_file.exists():
                curve = pd.read_csv(curve_file)
                values.setdefault("exploiter steps to 0.5", []).append(_steps_to_interpolated(curve, 0.5) / 1e6)
                values.setdefault("exploiter steps to 0.9", []).append(_steps_to(curve, 0.9) / 1e6)
        per_run[setup] = values
    judges = list(dict.fromkeys(j for values in per_run.values() for j in values))
    rows = [{"judge": "runs", **{setup: str(max((len(v) for v in values.values()), default=0))
                                 for setup, values in per_run.items()},
             **{f"{a} - {b}": factor for a, b, factor in factors}}]
    for judge in judges:
        row = {"judge": judge}
        for setup, values in per_run.items():
            got = values.get(judge, [])
            row[setup] = (f"{np.mean(got):.3f} (" + ", ".join(f"{v:.2f}" for v in got) + ")") if got else ""
        for with_it, without, _ in factors:
            d = difference(per_run[with_it].get(judge, []), per_run[without].get(judge, []))
            if math.isnan(d.diff):
                text = ""
            elif min(d.n_a, d.n_b) < 2:  # one run a side: the bootstrap interval and p say nothing
                text = f"{d.diff:+.3f} (a single run on one side: no interval)"
            else:
                text = f"{d.diff:+.3f} [{d.low:+.2f}, {d.high:+.2f}] p={d.p_value:.2f}"
            row[f"{with_it} - {without}"] = text
        rows.append(row)
    setups = " ".join(f"**{name}**: {what} ({', '.join(labels)})." for name, (what, labels) in setups_of_budget.items())
    notes = (f"{budget_text}; the runs' own "
             "tables (league_connect_four_<label>.md) give wall time, load and every pairing's Wilson interval. "
             f"{setups} Setup columns: the mean over runs of each run's score (both final policies' 400 games per "
             "judge averaged; the exploiter row is the population's score, 1 - the exploiter's), with the per-run "
             "values. "
             "`exploiter steps to 0.9`: millions of env steps the 2M-step exploiter of the final population trained "
             "before its training score against the population first reached 0.9, at a resolution of 200k steps "
             "(higher: harder to exploit; only runs whose exploiter curve was kept); `exploiter steps to 0.5`: the "
             "same for a training score of 0.5, linear between the two curve points around the crossing "
             "(0.2: already past it at the first point, 200k steps). "
             "Difference columns: the mean over "
             "runs with the factor minus without, bootstrap 95% interval, exact two-sided permutation p over runs "
             f"(the smallest possible p: 0.1 with three runs a side or two against three, 0.33 with two a side). "
             f"{trained_text}")
    save(pd.DataFrame(rows), table_name, notes)
    _evidence_figure(per_run, judges, RESULTS / f"{table_name}.png", f"Connect four, budget {args.budget}")


def _evidence_figure(per_run: dict[str, dict[str, list[float]]], judges: list[str], path: Path, title: str) -> None:
    """The evidence table's scores as one panel: per judge, each setup's runs as dots and their mean as
    a bar (the exploiter-steps rows, in millions of steps rather than scores, are left out)."""
    from matplotlib.figure import Figure

    scored = [j for j in judges if not j.startswith("exploiter steps")]
    setups = list(per_run)
    width = 0.8 / max(len(setups), 1)
    fig = Figure(figsize=(max(6.0, 1.2 * len(scored)), 4.2), layout="constrained")
    ax = fig.subplots()
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    for k, setup in enumerate(setups):
        offset = (k - (len(setups) - 1) / 2) * width
        colour = colours[k % len(colours)]
        for x, judge in enumerate(scored):
            got = per_run[setup].get(judge, [])
            if not got:
                continue
            ax.bar(x + offset, float(np.mean(got)), width * 0.9, color=colour, alpha=0.35,
                   label=f"{setup} ({len(got)} runs)" if x == 0 else None)
            ax.scatter([x + offset] * len(got), got, s=14, color=colour, zorder=3)
    names = [j.replace("negamax:depth=", "negamax d").replace("exploiter:", "exploiter ") for j in scored]
    ax.set_xticks(range(len(scored)), names, rotation=20)
    ax.set_ylim(0, 1)
    ax.set_ylabel("score of the final policies")
    ax.set_title(f"{title}: bars the mean over runs, dots one run each", fontsize=9)
    fig.legend(fontsize=8, loc="outside lower center", ncols=len(setups))
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}", flush=True)


def c4_greedy(args: argparse.Namespace) -> None:
    """Is the final policies' weakness against search their sampling? The runs of one budget's setups
    (C4_EVIDENCE) whose run files are under --runs: every final policy, playing its most likely action,
    against the judges of its table (C4_JUDGES), beside the score it got there sampling its actions."""
    from mpimarl.arena import round_robin
    from mpimarl.stats import difference

    setups_of_budget = C4_EVIDENCE[args.budget][0]
    rows, skipped = [], []
    for setup, (_, labels) in setups_of_budget.items():
        for label in labels:
            path = args.runs / f"connect_four_{label}" / "run.h5"
            table = RESULTS / f"league_connect_four_{label}.csv"
            if not path.exists() or not table.exists():
                skipped.append(label)
                continue
            sampled = pd.read_csv(table)
            greedy = round_robin([path], vs=C4_JUDGES, episodes=args.episodes, seed=args.seed, greedy=True,
                                 vs_only=True).results
            for rec in greedy.itertuples():
                policy_id = rec.entrant.split("@")[0]
                before = sampled[(sampled.policy_id == policy_id) & (sampled.judge == rec.opponent)].score
                rows.append({"setup": setup, "run": label, "policy": rec.entrant, "judge": rec.opponent,
                             "sampled": float(before.iloc[0]) if len(before) else math.nan,
                             "greedy": round(float(rec.score), 3),
                             "greedy 95%": f"[{rec.score_low:.3f}, {rec.score_high:.3f}]"})
    long = pd.DataFrame(rows)
    summary = []
    for (setup, judge), part in long.groupby(["setup", "judge"], sort=False):
        by_run = part.groupby("run", sort=False)[["sampled", "greedy"]].mean()
        d = difference(list(by_run.greedy), list(by_run.sampled))
        summary.append({"setup": setup, "judge": judge, "runs": len(by_run),
                        "sampled": round(float(by_run.sampled.mean()), 3),
                        "greedy": round(float(by_run.greedy.mean()), 3),
                        "greedy - sampled": f"{d.diff:+.3f} [{d.low:+.2f}, {d.high:+.2f}]"})
    notes = (f"Connect four, the `{args.budget}` evidence runs found under {args.runs}"
             + (f" (not found here: {', '.join(skipped)})" if skipped else "") + ". `sampled`: the score in the "
             "run's own table (league_connect_four_<label>.md: 400 games, actions sampled from the policy); "
             f"`greedy`: {args.episodes} fresh games with the most likely action (`mpimarl evaluate --greedy`, "
             f"evaluation seed {args.seed}), first move alternating. Per setup: the mean over runs of the mean of "
             "the two final policies; the difference's interval is an unpaired bootstrap over runs (the same "
             "runs on both sides, so a conservative range). A greedy policy is deterministic: against a judge that "
             "randomises only among near-equal moves its games repeat a few lines, so one policy's score "
             f"swings between near 0 and near 1. Per policy: league_connect_four_greedy_{args.budget}_policies.md.")
    save(long, f"league_connect_four_greedy_{args.budget}_policies", notes)
    save(pd.DataFrame(summary), f"league_connect_four_greedy_{args.budget}", notes)


C4_RETENTION = (("kept", ("default_seed1", "default_seed2")), ("retention", ("retention_seed1", "retention_seed2")))
"""`c4_retention`: the everything-kept runs and the default-retention runs of the same seeds."""


def _run_note(label: str) -> dict[str, float]:
    """Run file size and snapshot counts from a `connect_four` table's notes."""
    text = (RESULTS / f"league_connect_four_{label}.md").read_text()
    found = re.search(r"(\d+) snapshots \((\d+) with weights\), run file (\d+) MB", text)
    wall = re.search(r"(\d+) s of training", text)
    if found is None:
        return {}
    return {"snapshots": int(found[1]), "with weights": int(found[2]), "run file MB": int(found[3]),
            "training s": int(wall[1]) if wall else math.nan}


def c4_retention(args: argparse.Namespace) -> None:
    """The default retention (pool.keep_latest 8, keep_every 5) against everything kept, over the
    `connect_four` tables of C4_RETENTION: run file size, snapshots with weights, and every judge's
    score per final policy (Wilson intervals) and per setup (mean over runs, difference with a
    bootstrap interval and a permutation p over runs)."""
    from mpimarl.stats import difference

    pairings, per_run, files = [], {}, []
    for setup, labels in C4_RETENTION:
        for label in labels:
            judged = pd.read_csv(RESULTS / f"league_connect_four_{label}.csv")
            seed = int(label.rsplit("seed", 1)[1])
            files.append({"setup": setup, "seed": seed, **_run_note(label)})
            for r in judged.itertuples():
                pairings.append({"judge": r.judge, "seed": seed, "policy": r.policy_id, "setup": setup,
                                 "score": f"{r.score:.3f} [{r.score_low:.3f}, {r.score_high:.3f}]"})
            for judge, part in judged.groupby("judge", sort=False):
                per_run.setdefault(judge, {}).setdefault(setup, []).append(float(part.score.mean()))
    rows = []
    for judge, by_setup in per_run.items():
        d = difference(by_setup.get("retention", []), by_setup.get("kept", []))
        rows.append({"judge": judge, **{setup: f"{np.mean(v):.3f} (" + ", ".join(f"{x:.2f}" for x in v) + ")"
                                        for setup, v in by_setup.items()},
                     "retention - kept": f"{d.diff:+.3f} [{d.low:+.2f}, {d.high:+.2f}] p={d.p_value:.2f}"})
    wide = pd.DataFrame(pairings).pivot_table(index=["judge", "seed", "policy"], columns="setup", values="score",
                                              aggfunc="first").reset_index()
    notes = ("Connect four, the default config (pfsp, tactical player in training) at 2M env steps per trainer, 3 "
             "ranks, seeds 1 and 2: `kept` is every snapshot's weights kept (the config before retention; "
             "league_connect_four_default_seed1/2), `retention` the default retention pool.keep_latest 8, "
             "keep_every 5 (league_connect_four_retention_seed1/2). Judges as in league_connect_four_*: 400 fresh "
             "games per pairing, score = (wins + draws/2) / games, Wilson 95% interval; own@0.5 is the policy's own "
             "snapshot at half its versions. Summary: the mean over runs of each run's two final policies, with the "
             "per-run values; the difference with a bootstrap 95% interval and the exact permutation p over runs "
             "(two runs a side: the smallest possible p is 0.33).")
    save(pd.DataFrame(rows), "pool_retention_c4", notes)
    text = (RESULTS / "pool_retention_c4.md").read_text()
    text += ("\n## Run files\n\n" + pd.DataFrame(files).to_string(index=False)
             + "\n\n## Every pairing\n\n" + wide.to_string(index=False) + "\n")
    (RESULTS / "pool_retention_c4.md").write_text(text)


MLP = ["ppo.torso=mlp", "ppo.hidden=[256, 256]"]
ABLATION = {
    "mlp": ("the previous default: a [256, 256] MLP torso; tactical player in 3 of 8 training line-ups", MLP),
    "mlp+negamax2": ("the MLP, with negamax depth 2 instead of the tactical player in 3 of 8 training line-ups",
                     [*MLP, "baselines=[{name: tactical, policy: tactical}, {name: teacher, policy: negamax, "
                            "kwargs: {depth: 2}, train_fraction: 0.375}]"]),
    "mlp+mix": ("the MLP, with 1 of 8 training line-ups each for tactical, negamax depth 1 with 50% random moves "
                "and negamax depth 2 with 25% random moves",
                [*MLP, "baselines=[{name: tactical, policy: tactical, train_fraction: 0.125}, {name: nm1e50, "
                       "policy: negamax, kwargs: {depth: 1, epsilon: 0.5}, train_fraction: 0.125}, {name: nm2e25, "
                       "policy: negamax, kwargs: {depth: 2, epsilon: 0.25}, train_fraction: 0.125}]"]),
    "conv": ("today's default: 3x3 convolutions (16, 32 channels) and one hidden layer of 128; tactical player "
             "in 3 of 8 training line-ups", []),
}
"""Connect-four variants, as overrides of today's default config."""


def c4_ablation(args: argparse.Namespace) -> None:
    """Each variant of ABLATION trained for --steps (default 2M) per trainer on one seed, then both final
    policies judged by the tactical player and the negamax ladder (their games pooled)."""
    from mpimarl.judging import JudgePlan, judge_run
    from mpimarl.league.payoff import wilson_interval

    steps = args.steps or 2_000_000
    rows = []
    for name, (what, overrides) in ABLATION.items():
        if args.only and name not in args.only:
            continue
        load_before, wall = _load(), math.nan
        if args.reuse:  # judge runs trained before: REUSE/c4_ablation_<variant>/
            folder = args.reuse / f"c4_ablation_{name}"
        else:
            folder = fresh_run_dir(args.runs, f"c4_ablation_{name}")
            wall = train("connect_four_league.yaml", folder, ["--steps", str(steps), f"--seed={args.seed}",
                                                              *overrides], timeout=7200)
        run = load_run(folder / "run.h5")
        speed = run.train.groupby("rank").steps_per_s.median().mean()
        plan = JudgePlan(baselines=C4_JUDGES[1:], episodes=args.episodes, seed=args.seed + 1)
        judged, _ = judge_run(folder / "run.h5", plan, run)
        row = {"variant": name, "change": what,
               "steps_per_trainer": int(run.pool.groupby("policy_id").env_steps.max().min()),
               "trainer_steps_per_s": round(float(speed)), "wall_s": None if math.isnan(wall) else round(wall),
               "load_before": load_before, "load_after": _load()}
        for judge, part in judged.groupby("judge", sort=False):
            games = int(part.episodes.sum())
            points = float(part.wins.sum()) + 0.5 * float(part.draws.sum())
            low, high = wilson_interval(points, games)
            row[judge] = f"{points / games:.2f} [{low:.2f}, {high:.2f}]"
        rows.append(row)
        print(row, flush=True)
    notes = (f"seed {args.seed}, {steps} env steps per trainer, 3 ranks; both final policies x {args.episodes} games "
             "per judge, pooled (the first move alternating), score [Wilson 95%]. trainer_steps_per_s: the median of "
             "each trainer's steps/s, averaged, on a shared machine (load average 1/5/15 min before and after). "
             "One seed: read differences that the intervals do not separate as noise. None of the judges is a "
             "training opponent of any variant, except negamax depth 2 for mlp+negamax2 (mlp+mix trains against "
             "depth-1 and depth-2 players that make random moves; the judges make none)."
             + (f" {args.note}" if args.note else ""))
    save(pd.DataFrame(rows), "league_connect_four_ablation", notes)


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


def _population_curve(run: Run) -> pd.DataFrame:
    """The population's exploitability per generation with the env steps each trainer had taken by
    then (the fewest over trainers), so runs on a loaded machine compare at equal steps, not minutes."""
    pop = run.exploitability[run.exploitability.policy_id == "population"][["generation", "time", "exploitability"]]
    steps = run.pool.groupby("version").env_steps.min().rename("steps_per_trainer")
    return pop.join(steps, on="generation").reset_index(drop=True)


def _at_steps(curve: pd.DataFrame, steps: int) -> float:
    """The population's exploitability at the last generation within `steps` env steps per trainer; NaN
    for a mark past the run's last generation (the run never got there)."""
    within = curve[curve.steps_per_trainer <= steps]
    if not len(within) or curve.steps_per_trainer.max() < steps:
        return math.nan
    return float(within.exploitability.iloc[-1])


def _exploitability_case(args: argparse.Namespace, case: str, config: str, strategies: tuple[str, ...],
                         extra: list[str], levels: tuple[float, ...], marks: tuple[int, ...] = ()) -> None:
    """Train each strategy (--minutes, or --steps per trainer), then tabulate the exact exploitability of
    the population over time and at the env-step marks `marks` (step-matched comparisons across runs on a
    loaded machine); each run's curve is kept beside the table (league_<case>[_label]_curve_<strategy>.csv)."""
    rows = []
    suffix = ("" if args.ranks == 3 else f"_{args.ranks}ranks") + (f"_{args.label}" if args.label else "")
    for name in strategies:
        folder = fresh_run_dir(args.runs, f"{case}_{name}_n{args.ranks}{suffix}")
        over = [f"matchmaking.strategy={name}", f"--seed={args.seed}", *extra, *args.set]
        if args.steps:
            over += ["--steps", str(args.steps)]
        elif args.minutes:
            over += ["--steps", "100000000", f"schedule.time_limit_s={60 * args.minutes}"]
        load_before = _load()
        wall = train(config, folder, over, ranks=args.ranks, timeout=60 * (args.minutes or 30) + 3600)
        run = load_run(folder / "run.h5")
        pop = run.exploitability[run.exploitability.policy_id == "population"]
        latest = run.exploitability[run.exploitability.policy_id != "population"]
        last_gen = latest[latest.generation == latest.generation.max()]
        curve = _population_curve(run)
        curve.to_csv(RESULTS / f"league_{case}{suffix}_curve_{name}.csv", index=False)
        row = {"strategy": name, "wall_s": round(wall), "generations": int(pop.generation.max()),
               "steps_per_trainer": int(run.pool.groupby("policy_id").env_steps.max().min()),
               "population_final": round(float(pop.exploitability.iloc[-1]), 4),
               "population_min_trained": round(float(pop[pop.generation > 0].exploitability.min()), 4),
               "latest_final_mean": round(float(last_gen.exploitability.mean()), 4)}
        for level in levels:
            row[f"population<={level}_at_s"] = round(_first_time(pop, level), 1)
        for mark in marks:
            row[f"population_at_{mark / 1e6:g}M_steps"] = round(_at_steps(curve, mark), 4)
        row["load_before"], row["load_after"] = load_before, _load()
        rows.append(row)
        print(row, flush=True)
    settings = " ".join(args.set)
    notes = (f"{config}{' with ' + settings if settings else ''}, {args.ranks} ranks ({args.ranks - 1} trainer(s)), "
             f"seed {args.seed}, " + (f"{args.steps} env steps per trainer" if args.steps
                                      else f"{args.minutes} min wall limit") +
             "; exact exploitability "
             f"(NashConv / 2) of the population mixture (the matchmaker's meta-strategy over the pool, "
             f"realization-equivalent behaviour policy) and "
             f"of each trainer's latest snapshot, measured by rank 0 every generation. population_at_<N>M_steps: "
             "the population's exploitability at the last generation within N million env steps per trainer. "
             f"Load average (1/5/15 min) before and after training. {ANCHORS[case]}")
    save(pd.DataFrame(rows), f"league_{case}{suffix}", notes)


def rps(args: argparse.Namespace) -> None:
    """Rock-paper-scissors: naive self-play cycles; uniform and psro approach the uniform Nash."""
    _exploitability_case(args, "rps", "rps_league.yaml", ("latest", "uniform", "psro"), [], (0.5, 0.05))


def kuhn(args: argparse.Namespace) -> None:
    """Kuhn poker with psro (exact payoffs)."""
    _exploitability_case(args, "kuhn", "kuhn_psro.yaml", ("psro",), [], (0.1, 0.05, 0.02), (1_000_000, 3_000_000))


def leduc(args: argparse.Namespace) -> None:
    """Leduc poker with psro (exact payoffs)."""
    _exploitability_case(args, "leduc", "leduc_psro.yaml", ("psro",), [], (1.0, 0.5, 0.4, 0.3),
                         (4_000_000, 8_000_000, 12_000_000))


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


def parser() -> argparse.ArgumentParser:
    """The command line of `python -m benchmarks.league`."""
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("case", choices=["connect_four", "c4_ablation", "c4_evidence", "c4_greedy", "c4_retention",
                                      "matchmakers", "rps", "kuhn", "leduc", "simple_tag"])
    cli.add_argument("--minutes", type=float, default=None, help="wall-time limit per training run")
    cli.add_argument("--episodes", type=int, default=400, help="evaluation episodes per pairing")
    cli.add_argument("--seed", type=int, default=0)
    cli.add_argument("--ranks", type=int, default=3, help="rps/kuhn/leduc: MPI ranks (server + trainers)")
    cli.add_argument("--note", default="", help="c4_ablation: a sentence added to the table's notes")
    cli.add_argument("--only", type=lambda s: s.split(","), default=None, help="matchmakers: a subset")
    cli.add_argument("--reuse", type=Path, default=None, help="connect_four: judge this run file, no training; "
                     "c4_ablation: judge the runs in REUSE/c4_ablation_<variant>/")
    cli.add_argument("--config", default="connect_four_league.yaml", help="connect_four: the config under configs/")
    cli.add_argument("--steps", type=int, default=None, help="connect_four: a budget in env steps per trainer "
                     "instead of --minutes")
    cli.add_argument("--set", nargs="+", action="extend", default=[], metavar="key.path=value",
                     help="connect_four/kuhn/leduc: config overrides (repeat --set or list several after one)")
    cli.add_argument("--label", default=None, help="connect_four: table name suffix (default seedK)")
    cli.add_argument("--exploit-steps", type=int, default=0, help="connect_four: train an exploiter of the "
                     "final population for this many steps (0: none)")
    cli.add_argument("--budget", choices=sorted(C4_EVIDENCE), default="2M", help="c4_evidence/c4_greedy: which setups' "
                     "budget (2M env steps per trainer, or the default's 30 minutes in steps)")
    cli.add_argument("--runs", type=Path, default=REPO / "runs" / "bench", help="where run folders go")
    return cli


def main() -> None:
    args = parser().parse_args()
    torch.set_num_threads(1)
    np.seterr(all="ignore")
    defaults = {"connect_four": 30, "matchmakers": 6, "kuhn": 15, "leduc": 30}
    if args.minutes is None:
        args.minutes = defaults.get(args.case, 0)
    {"connect_four": connect_four, "c4_ablation": c4_ablation, "c4_evidence": c4_evidence, "c4_greedy": c4_greedy,
     "c4_retention": c4_retention, "matchmakers": matchmakers,
     "rps": rps, "kuhn": kuhn,
     "leduc": leduc, "simple_tag": simple_tag}[args.case](args)


if __name__ == "__main__":
    main()
