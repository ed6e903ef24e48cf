"""Command line: `mpimarl train | check | envs | baselines | summary | report | evaluate | play | exploit |
sweep | study | tensorboard | export`.

Also `python -m mpimarl ...`.
"""

from __future__ import annotations

import argparse
import sys

from mpimarl import __version__
from mpimarl.errors import MpimarlError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mpimarl",
        description="Distributed multi-agent RL over MPI: rank 0 serves the policy pool, ranks 1..N-1 train.",
    )
    p.add_argument("--version", action="version", version=f"mpimarl {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="run a config under mpiexec (rank 0 server, ranks 1.. trainers)",
                       description="Train a population. Example: mpiexec -n 3 python -m mpimarl train "
                       "configs/connect_four_league.yaml --steps 200000 ppo.learning_rate=1e-3")
    t.add_argument("config", help="YAML config file")
    t.add_argument("overrides", nargs="*", metavar="key.path=value", help="override any config field")
    t.add_argument("--run-dir", help="folder for run.h5 (default: a new folder under runs/)")
    t.add_argument("--steps", type=int, help="environment steps per trainer (schedule.total_steps)")
    t.add_argument("--seed", type=int, help="root seed (seed)")
    t.add_argument("--resume", nargs="?", const=True, default=False, metavar="DIR",
                   help="continue the run in DIR (or in --run-dir) from its newest complete checkpoint; "
                   "the config must be the one it started with (budgets and resources may change)")
    t.add_argument("--stop-after-generation", type=int, metavar="K",
                   help="testing aid: end the job as a SIGTERM would (exit 143, failure recorded) once every "
                   "trainer is past generation K's checkpoint, to try --resume")
    t.add_argument("--progress", choices=["auto", "bar", "lines"], default="auto",
                   help="rank 0's progress display: a bar, or plain periodic lines (for logs); auto picks the "
                   "bar when stderr is a terminal, which mpiexec's piped output never is")

    c = sub.add_parser("check", help="validate a config and its environment without MPI")
    c.add_argument("config", help="YAML config file")
    c.add_argument("overrides", nargs="*", metavar="key.path=value")
    c.add_argument("--episodes", type=int, default=3, help="random episodes to run through the environment")

    sub.add_parser("envs", help="list the environments a config can name")
    sub.add_parser("baselines", help="list the registered scripted baselines a config can name, with their parameters")

    r = sub.add_parser("summary", help="print a run file's per-policy summary")
    r.add_argument("run", help="path to run.h5")

    f = sub.add_parser("report", help="draw a run file's figures (learning curves, Elo, match-ups) as PNGs")
    f.add_argument("run", help="path to run.h5")
    f.add_argument("--out", help="folder for the PNG files (default: the run file's folder)")
    f.add_argument("--follow", action="store_true", help="redraw a live run every --interval seconds until it ends")
    f.add_argument("--interval", type=float, default=30.0, help="seconds between redraws with --follow (default 30)")

    e = sub.add_parser("evaluate", help="round robin between the final snapshots of runs and baselines",
                       description="Every final snapshot of every given run and every named baseline play each "
                       "other on fresh evaluation seeds; prints score [Wilson 95%] per pairing. Example: "
                       "mpimarl evaluate runs/a/run.h5 runs/b/run.h5 --vs random,tactical --episodes 100")
    e.add_argument("runs", nargs="+", metavar="RUN.h5", help="run files (same environment and roles)")
    e.add_argument("--vs", default="random",
                   help="comma-separated baselines: random, a registered scripted policy (tactical, ...), a "
                   "baseline of the run's config or an import path package.module:name, each optionally with "
                   "parameters NAME:KEY=VALUE[:KEY=VALUE] (e.g. negamax:depth=4; `mpimarl baselines` lists "
                   "them) (default: random)")
    e.add_argument("--vs-only", action="store_true",
                   help="play only the final snapshots against the --vs baselines (no baseline vs baseline, "
                   "no snapshot vs snapshot)")
    e.add_argument("--episodes", type=int, default=20, help="episodes per pairing (default: 20)")
    e.add_argument("--seed", type=int, default=0, help="picks the evaluation seeds (default: 0)")
    e.add_argument("--csv", metavar="OUT.csv", help="write the long-form results (one row per pairing)")
    e.add_argument("--greedy", action="store_true", help="stored policies take their most likely action")

    g = sub.add_parser("play", help="play and render one match of a stored policy (GIF or text)",
                       description="Example: mpimarl play runs/x/run.h5 player-0@5 --vs tactical --out match.gif")
    g.add_argument("run", metavar="RUN.h5", help="run file")
    g.add_argument("policy", metavar="POLICY[@VERSION]", help="stored policy (default version: the latest)")
    g.add_argument("--vs", default=None,
                   help="the other side: a policy of the same run (POLICY[@VERSION]), random or a scripted "
                   "baseline name (default: random)")
    g.add_argument("--seed", type=int, default=0, help="episode seed (default: 0)")
    g.add_argument("--seat", type=int, default=0,
                   help="which seat of its role the policy takes (0: the first; connect four: 1 moves second)")
    g.add_argument("--out", help="match.gif (frames) or match.txt (transcript); default: print the transcript")
    g.add_argument("--greedy", action="store_true", help="stored policies take their most likely action")

    x = sub.add_parser("exploit", help="train exploiters (approximate best responses) against a run's policy "
                       "or population and evaluate them on held-out episodes",
                       description="Trains a fresh learner with the run's own config against the frozen TARGET "
                       "only, then plays a held-out evaluation (score [Wilson 95%], alternating seats). Results: "
                       "RUN.exploit/exploiters.csv and curve.csv beside the run file. Run it plainly (it starts "
                       "mpiexec with 1 + --ranks processes) or under mpiexec yourself. Example: mpimarl exploit "
                       "runs/x/run.h5 population --steps 200000")
    x.add_argument("run", metavar="RUN.h5", help="run file")
    x.add_argument("target", metavar="TARGET",
                   help="POLICY@VERSION (a snapshot), POLICY (its latest) or population (the run's final "
                   "meta-strategy mixture)")
    x.add_argument("overrides", nargs="*", metavar="key.path=value",
                   help="change the exploiters' config (the run's, as the job adapts it), e.g. trainer.device=cpu")
    x.add_argument("--steps", type=int, required=True, help="environment steps per exploiter")
    x.add_argument("--ranks", type=int, help="trainer ranks when it starts mpiexec itself (default: one "
                   "policy unit per exploiting role)")
    x.add_argument("--episodes", type=int, default=200, help="held-out evaluation episodes (default 200)")
    x.add_argument("--seed", type=int, default=0, help="root seed of the exploiters' training and evaluation")
    x.add_argument("--out", metavar="DIR", help="results folder (default: RUN.exploit/ beside the run file)")
    x.add_argument("--curve-points", type=int, default=10,
                   help="generations the training is cut into: points of the learning curve (default 10)")
    x.add_argument("--run-dir", help="folder of the job's own run file (default: a new DIR/NNN-TARGET)")
    x.add_argument("--progress", choices=["auto", "bar", "lines"], default="auto", help="as for train")

    w = sub.add_parser("sweep", help="run a sweep file's setups x grid x seeds here, one run at a time",
                       description="Each run is `mpiexec -n RANKS python -m mpimarl train ...`; runs whose run "
                       "file says they finished are skipped and unfinished ones resumed, so running it again "
                       "continues a sweep. On SLURM use slurm/sweep.sbatch --file SWEEP.yaml instead. Example: "
                       "mpimarl sweep configs/sweeps/study_small.yaml")
    w.add_argument("sweep", metavar="SWEEP.yaml", help="sweep file (see configs/sweeps/)")
    w.add_argument("--root", help="folder for the run folders (default: the file's root)")
    w.add_argument("--only", metavar="REGEX", help="only the setups whose label matches")
    w.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    w.add_argument("--keep-going", action="store_true", help="run the rest after a run fails")

    y = sub.add_parser("study", help="figures and tables for the three research questions from a folder of runs",
                       description="Reads every run.h5 below DIR, groups runs by setup (the config name a "
                       "sweep gives them) over seeds, and writes PNG figures, CSV and markdown tables and a "
                       "README into --out. Example: mpimarl study runs/study_small --out study/")
    y.add_argument("runs", metavar="DIR", help="folder searched for run.h5 files")
    y.add_argument("--out", help="output folder (default: DIR/study)")
    y.add_argument("--episodes", type=int, default=40,
                   help="robustness round robin: episodes per pairing (default 40; 0 skips the round robin)")
    y.add_argument("--target", action="append", default=[], metavar="GAME=VALUE",
                   help="convergence target for a game (e.g. connect_four=0.8 score vs tactical, kuhn_poker=0.1 "
                   "exploitability, simple_spread=-20 return per agent); repeatable")
    y.add_argument("--seed", type=int, default=0, help="picks the round robin's evaluation seeds (default 0)")
    y.add_argument("--judge", action="append", default=[], metavar="NAME",
                   help="a held-out judge of every competitive run's final policies, as `evaluate --vs` names "
                   "it (tactical, negamax:depth=2, ...); repeatable or comma-separated; results are cached "
                   "in each run's folder (judges.csv)")
    y.add_argument("--history", type=float, action="append", default=[], metavar="F",
                   help="also judge each final policy against its own snapshot at fraction F of its versions "
                   "(0.5: its halfway self); repeatable")
    y.add_argument("--judge-episodes", type=int, default=100,
                   help="episodes per final policy and judge (default 100)")
    y.add_argument("--compare", action="append", default=[], metavar="SETUP:REFERENCE",
                   help="also compare these two setups when they differ in more than one setting (the factor is "
                   "then all of them); repeatable")
    y.add_argument("--judge-setups", default="", metavar="REGEX",
                   help="judge only the setups whose label matches (default: every competitive setup)")
    y.add_argument("--exploit-steps", type=int, default=0, metavar="N",
                   help="also train an exploiter of every competitive run's final population for N environment "
                   "steps (`mpimarl exploit RUN population`) and judge the population by it (default 0: none)")
    _add_view_commands(sub)
    return p


def _add_view_commands(sub: argparse._SubParsersAction) -> None:
    """`tensorboard` and `export`: views of a run file outside this package."""
    b = sub.add_parser("tensorboard", help="write a run file's curves as TensorBoard event files",
                       description="Converts a finished or running run file into TensorBoard event files (the "
                       "same scalars logging.tensorboard writes live). Example: mpimarl tensorboard "
                       "runs/x/run.h5 && tensorboard --logdir runs/x/tensorboard")
    b.add_argument("run", metavar="RUN.h5", help="run file")
    b.add_argument("--out", help="folder for the event files (default: tensorboard/ beside the run file); "
                   "event files already there are replaced")

    x = sub.add_parser("export", help="export a stored policy as ONNX or TorchScript, with a JSON sidecar",
                       description="Writes the policy's actor: encoded observation (and action mask) in, action "
                       "logits (Discrete) or means (Box) out, plus OUT.json describing the observation "
                       "encoding, the action space and the layout. Example: mpimarl export runs/x/run.h5 "
                       "player-0@12 --out player.onnx")
    x.add_argument("run", metavar="RUN.h5", help="run file")
    x.add_argument("policy", metavar="POLICY[@VERSION]", help="stored policy (default version: the latest)")
    x.add_argument("--out", required=True, help="policy.onnx (ONNX) or policy.pt (TorchScript)")


def _check(config_path: str, overrides: list[str], episodes: int) -> int:
    from mpimarl.config import load_config
    from mpimarl.envs.checker import check_env
    from mpimarl.roles.context import RunContext

    config = load_config(config_path, overrides)
    ctx = RunContext.build(config, None)
    report = check_env(ctx.factory, ctx.spec, episodes=episodes, seed=config.seed)
    print(f"config {config_path}: ok ({config.name})")
    print(f"  environment {config.env.id} ({ctx.spec.api}), agents: {', '.join(ctx.spec.agents)}")
    for role, rs in ctx.spec.roles.items():
        print(f"  role {role}: agents {', '.join(rs.agents)}; obs {rs.obs_size}, actions {rs.action_space}, "
              f"{'team' if rs.team else 'one seat per agent'}{', masked' if rs.has_mask else ''}")
        if ctx.central(role):
            print(f"  role {role}: critic {config.critic_of(role)} ({ctx.state_spec.source} state of "
                  f"{ctx.state_spec.size}; input {ctx.shape(role).critic_input}), "
                  f"advantage {config.advantage_of(role)}")
    sched = config.schedule
    grows = (f", growing x{sched.generation_growth} per generation to at most {max(sched.generation_steps())}"
             if sched.generation_growth != 1.0 else "")
    print(f"  needs at least {config.min_world_size()} MPI ranks; {ctx.generations} generations of "
          f"{sched.steps_per_generation} steps per trainer{grows}")
    print(f"  {episodes} random episodes: {report}")
    return 0


def _baselines() -> int:
    from mpimarl.baselines import list_baselines, policy_parameters

    for name, doc in list_baselines():
        print(f"{name:20s} {doc}")
        for parameter in policy_parameters(name):
            print(f"{'':20s}   {parameter}")
    return 0


def _envs() -> int:
    from mpimarl.envs.catalog import list_environments

    for env_id, description in list_environments():
        print(f"{env_id:45s} {description}")
    return 0


def _summary(path: str) -> int:
    from mpimarl.analysis import load_run, summary_text

    print(summary_text(load_run(path)))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from mpimarl.arena import round_robin, write_csv

    result = round_robin(args.runs, args.vs, args.episodes, args.seed, args.greedy, args.vs_only)
    print(result.text())
    if args.csv:
        print(f"wrote {write_csv(result, args.csv)} ({len(result.results)} rows)")
    return 0


def _play(args: argparse.Namespace) -> int:
    from mpimarl.render import render_match

    print(render_match(args.run, args.policy, args.vs, args.seed, args.out, seat=args.seat, greedy=args.greedy))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run a command; user errors print one line and return 2."""
    parser = _parser()
    # Overrides may come after options (`train cfg.yaml --steps 10 ppo.lr=1`), which argparse's
    # positional handling does not allow; collect them from the leftovers.
    args, extra = parser.parse_known_args(argv)
    stray = [x for x in extra if x.startswith("-") or "=" not in x or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    if getattr(args, "resume", None) and isinstance(args.resume, str) and "=" in args.resume:
        # `--resume key=value`: the optional DIR swallowed an override (a folder name with '=' is
        # unlikely; one that exists is still taken as the folder)
        from pathlib import Path

        if not Path(args.resume).is_dir():
            args.overrides = [*args.overrides, args.resume]
            args.resume = True
    try:
        if args.command == "train":
            from mpimarl.roles.launch import train

            return train(args.config, args.overrides, args.run_dir, args.steps, args.seed, args.progress,
                         args.resume, args.stop_after_generation)
        if args.command == "check":
            return _check(args.config, args.overrides, args.episodes)
        if args.command == "envs":
            return _envs()
        if args.command == "baselines":
            return _baselines()
        if args.command == "summary":
            return _summary(args.run)
        if args.command == "report":
            from mpimarl.report import main as report

            return report([args.run, *(["--out", args.out] if args.out else []),
                           *(["--follow", "--interval", str(args.interval)] if args.follow else [])])
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "play":
            return _play(args)
        if args.command == "exploit":
            from mpimarl.exploit import main as exploit

            return exploit(args.run, args.target, args.steps, args.ranks, args.episodes, args.seed, args.out,
                           args.run_dir, args.curve_points, args.progress, args.overrides)
        if args.command == "sweep":
            from mpimarl.sweep import run_sweep

            return run_sweep(args.sweep, args.root, args.only, args.dry_run, args.keep_going)
        if args.command == "tensorboard":
            from mpimarl.record.tensorboard import convert

            folder, points = convert(args.run, args.out)
            print(f"wrote {points} points to {folder} (view: tensorboard --logdir {folder})")
            return 0
        if args.command == "export":
            from mpimarl.export import export_policy

            written = export_policy(args.run, args.policy, args.out)
            print("wrote " + " and ".join(str(p) for p in written))
            return 0
        if args.command == "study":
            from mpimarl.study import main as study

            return study(args.runs, args.out, args.episodes, args.target, args.seed, args.judge, args.history,
                         args.judge_episodes, args.exploit_steps, args.judge_setups,
                         args.compare)
    except MpimarlError as exc:
        print(f"mpimarl: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 2


def entry_point() -> None:
    """Console script `mpimarl`."""
    sys.exit(main())
