"""GPU trainers, checked and measured: one short run per layout, the determinism check, and learner
update throughput on the CPU against the GPU.

    python -m benchmarks.gpu                      # on a machine with CUDA (trainer.device=cuda)
    python -m benchmarks.gpu --device cpu --quick # anywhere: the same code paths on the CPU (CI)

Parts (``--parts``, comma-separated; all by default):

- ``layouts``: short real runs (`mpiexec`) of every layout a GPU learner takes part in: plain PPO,
  the conv torso, a data-parallel learner group, IMPALA actors with value normalisation, COMA,
  evaluation played by trainers, a resume on the device, and a device checkpoint resumed on the CPU.
  Each row says whether it finished, on which devices its ranks ran (the run file's ``ranks``), its
  wall time and its end-to-end environment steps/s.
- ``speed``: connect four end to end, the learner on the device, with and without IMPALA actors.
- ``determinism``: the same sync run twice with ``trainer.deterministic`` on and twice with it off;
  whether every snapshot's weights are equal bit for bit.
- ``update``: PPO updates per second on a filled rollout, CPU against the device, for the shipped
  network sizes and a larger one (samples/s = batch x epochs / update time).
- ``act``: one acting step of a batch of 64 connect-four boards: the CPU copy the learners act with,
  against the old path (upload, act on the GPU, three downloads); and the cost of refreshing the copy.

Results go to ``--out`` (default ``benchmarks/results``): ``gpu.md`` with every table, and one CSV per part.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
PARTS = ("layouts", "speed", "determinism", "update", "act")


def mpiexec() -> str:
    """The mpiexec beside this Python (the PyPI mpich wheel), else 'mpiexec' on PATH."""
    local = Path(sys.executable).parent / "mpiexec"
    return str(local) if local.exists() else "mpiexec"


# ---------------------------------------------------------------------------------------------
# Real runs
# ---------------------------------------------------------------------------------------------


@dataclass
class Layout:
    """One short run: a config, its world size and the overrides that make the layout."""

    name: str
    config: str
    ranks: int
    args: list[str]
    quick_args: list[str] = field(default_factory=list)


C4 = "connect_four_league.yaml"
C4_SHORT = ["--steps", "24000", "schedule.steps_per_generation=8000", "ppo.num_envs=16", "ppo.rollout_steps=2048",
            "evaluation.baseline_episodes=10", "evaluation.pool_episodes=4", "evaluation.num_envs=8"]
C4_QUICK = ["--steps", "1200", "schedule.steps_per_generation=600", "ppo.num_envs=4", "ppo.rollout_steps=256",
            "evaluation.baseline_episodes=4", "evaluation.pool_episodes=2", "evaluation.num_envs=4"]
CP_SHORT = ["--steps", "20000", "schedule.steps_per_generation=5000"]
CP_QUICK = ["--steps", "1200", "schedule.steps_per_generation=600", "ppo.rollout_steps=128"]

LAYOUTS = [
    Layout("plain", C4, 3, C4_SHORT, C4_QUICK),
    Layout("conv torso", C4, 3, [*C4_SHORT, "ppo.torso=conv"], [*C4_QUICK, "ppo.torso=conv"]),
    Layout("learner group (2 ranks per policy)", C4, 5, [*C4_SHORT, "trainer.ranks_per_policy=2"],
           [*C4_QUICK, "trainer.ranks_per_policy=2"]),
    Layout("actors + value normalisation", "cartpole.yaml", 4,
           [*CP_SHORT, "trainer.actors_per_learner=2", "ppo.value_norm=true", "schedule.mode=sync"],
           [*CP_QUICK, "trainer.actors_per_learner=2", "ppo.value_norm=true", "schedule.mode=sync"]),
    Layout("COMA (speaker-listener)", "speaker_listener_coma.yaml", 3,
           ["--steps", "12000", "schedule.steps_per_generation=4000"],
           ["--steps", "600", "schedule.steps_per_generation=300", "ppo.rollout_steps=128"]),
    Layout("evaluation on trainers", C4, 3, [*C4_SHORT, "evaluation.workers=trainers"],
           [*C4_QUICK, "evaluation.workers=trainers"]),
]


@dataclass
class RunResult:
    """What one run gave: exit code, wall time, the run folder, and its stderr's tail."""

    code: int
    wall_s: float
    folder: Path
    stderr: str


def train(config: str, folder: Path, ranks: int, args: list[str], timeout: float) -> RunResult:
    """`mpiexec -n ranks python -m mpimarl train CONFIG --run-dir FOLDER ARGS`."""
    cmd = [mpiexec(), "-n", str(ranks), sys.executable, "-m", "mpimarl", "train", str(REPO / "configs" / config),
           "--run-dir", str(folder), "server.progress_interval_s=600", *args]
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    t0 = time.monotonic()
    try:
        out = subprocess.run(cmd, cwd=REPO, timeout=timeout, env=env, capture_output=True, text=True)
        code, err = out.returncode, out.stderr
    except subprocess.TimeoutExpired as exc:
        code, err = 124, f"timed out after {timeout} s: {exc.stderr!r}"[-2000:]
    return RunResult(code, time.monotonic() - t0, folder, err[-1500:])


def _why(stderr: str) -> str:
    """The line of a failed run's stderr that says why (mpimarl's own message first)."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    ours = [ln for ln in lines if ln.startswith("mpimarl:")]
    return (ours or lines or ["no output"])[0][:300]


def _summary(name: str, res: RunResult, expect: int = 0) -> dict[str, Any]:
    """A row about a finished run: whether it did what was expected, devices (of its last start:
    a resume's own), speed."""
    from mpimarl.analysis import load_run

    row: dict[str, Any] = {"layout": name, "ok": res.code == expect, "exit": res.code, "wall_s": round(res.wall_s, 1)}
    if res.code != expect:
        print(f"--- {name}: exit {res.code}; stderr tail:\n{res.stderr}", flush=True)
    path = res.folder / "run.h5"
    if not path.exists():
        row["note"] = _why(res.stderr)
        return row
    run = load_run(path)
    ranks = run.ranks()
    resumes = run.attrs.get("resumes") or []
    if resumes and "ranks" in resumes[-1]:
        ranks = pd.DataFrame(resumes[-1]["ranks"]).assign(rank=range(len(resumes[-1]["ranks"])))
    row["devices"] = " ".join(f"{r}:{d}" for r, d in zip(ranks["rank"], ranks["device"], strict=True))
    gpu = ranks["gpu_name"].dropna()
    row["gpu"] = gpu.iloc[0] if len(gpu) else ""
    pool = run.pool
    rates = []
    for _, p in pool.groupby("policy_id"):
        span = p.time.max() - p.time.min()
        if span > 0:
            rates.append((p.env_steps.max() - p.env_steps.min()) / span)
    row["steps_per_s_per_policy"] = round(float(np.mean(rates))) if rates else float("nan")
    row["train_rows"] = len(run.train)
    if not row["ok"]:
        row["note"] = _why(res.stderr)
    return row


def run_layouts(device: str, quick: bool, tmp: Path, jobs: int, timeout: float) -> list[dict[str, Any]]:
    """Every layout once (in parallel, `jobs` at a time), then the resume checks."""
    dev = [f"trainer.device={device}"]

    def one(i_layout: tuple[int, Layout]) -> dict[str, Any]:
        i, lay = i_layout
        folder = tmp / f"layout{i}"
        args = lay.quick_args if quick else lay.args
        return _summary(lay.name, train(lay.config, folder, lay.ranks, [*args, *dev], timeout))

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        rows = list(pool.map(one, enumerate(LAYOUTS)))
    rows.extend(resume_checks(device, quick, tmp, timeout))
    return rows


def resume_checks(device: str, quick: bool, tmp: Path, timeout: float) -> list[dict[str, Any]]:
    """Interrupted after generation 1 on `device`, resumed on `device` (compared with an
    uninterrupted run of the same seed: equal weights means an exact resume), and the same
    checkpoint resumed on the CPU (it must finish; CPU arithmetic differs in the last bits)."""
    from mpimarl.analysis import load_run

    args = [*(C4_QUICK if quick else C4_SHORT), "--seed", "5", f"trainer.device={device}", "trainer.deterministic=true"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        ref_job = pool.submit(train, C4, tmp / "ref", 3, args, timeout)
        stop = train(C4, tmp / "resume", 3, [*args, "--stop-after-generation", "1"], timeout)
        rows = [_summary(f"interrupted after generation 1 ({device})", stop, expect=143)]
        if (tmp / "resume").exists():  # a copy of the interrupted run, to resume on the CPU
            shutil.copytree(tmp / "resume", tmp / "resume_cpu")
        cases = ((f"resumed on {device}", tmp / "resume", []),
                 ("checkpoint resumed on cpu", tmp / "resume_cpu", ["trainer.device=cpu"]))
        jobs = [pool.submit(train, C4, folder, 3, [*args, *extra, "--resume"], timeout) for _, folder, extra in cases]
        ref = ref_job.result()
        for (name, folder, _), job in zip(cases, jobs, strict=True):
            res = job.result()
            row = _summary(name, res)
            if res.code == 0 and ref.code == 0:
                row["same_weights_as_uninterrupted"] = _same_weights(load_run(ref.folder / "run.h5"),
                                                                     load_run(folder / "run.h5"))
            rows.append(row)
    return rows


def _same_weights(a: Any, b: Any) -> bool:
    """Whether two runs stored the same snapshots with bit-identical weights."""
    if sorted(zip(a.pool.policy_id, a.pool.version)) != sorted(zip(b.pool.policy_id, b.pool.version)):
        return False
    return all(np.array_equal(a.weights(p, v), b.weights(p, v)) for p, v in zip(a.pool.policy_id, a.pool.version))


def run_speed(device: str, quick: bool, tmp: Path, timeout: float) -> list[dict[str, Any]]:
    """Connect four end to end with the learner on `device`: 2 plain trainers (3 ranks), and
    2 learners with 2 actors each (7 ranks); one at a time, so the timings do not share cores."""
    steps = ["--steps", "1200", "schedule.steps_per_generation=600", "ppo.rollout_steps=512"] if quick else \
        ["--steps", "150000", "schedule.steps_per_generation=50000"]
    rows = []
    for name, ranks, extra in (("connect four, 2 trainers", 3, []),
                               ("connect four, 2 learners x 2 actors (async)", 7,
                                ["trainer.actors_per_learner=2", "schedule.mode=async"])):
        res = train(C4, tmp / f"speed{ranks}", ranks, [*steps, *extra, f"trainer.device={device}"], timeout)
        rows.append(_summary(name, res))
    return rows


def run_determinism(device: str, quick: bool, tmp: Path, jobs: int, timeout: float) -> list[dict[str, Any]]:
    """The same sync run (conv torso: cuDNN's backward pass) twice per setting of trainer.deterministic."""
    from mpimarl.analysis import load_run

    base = [*(C4_QUICK if quick else C4_SHORT), "ppo.torso=conv", "--seed", "7", f"trainer.device={device}"]
    # CPU runs repeat without the setting (the suite's sync determinism tests run with it off), so a
    # quick check on the CPU (the suite's smoke test of this part) runs the deterministic pair alone.
    flags = ("true",) if quick and device == "cpu" else ("true", "false")
    cases = [(flag, k) for flag in flags for k in range(2)]

    def one(case: tuple[str, int]) -> RunResult:
        flag, k = case
        return train(C4, tmp / f"det-{flag}-{k}", 3, [*base, f"trainer.deterministic={flag}"], timeout)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(one, cases))
    rows = []
    for flag in flags:
        a, b = (r for (f, _), r in zip(cases, results, strict=True) if f == flag)
        row = {"trainer.deterministic": flag, "device": device, "both_finished": a.code == 0 and b.code == 0,
               "wall_s": round((a.wall_s + b.wall_s) / 2, 1)}
        if row["both_finished"]:
            ra, rb = load_run(a.folder / "run.h5"), load_run(b.folder / "run.h5")
            row["snapshots"] = len(ra.pool)
            row["weights_bit_identical"] = _same_weights(ra, rb)
            ta, tb = ra.train.sort_values(["rank", "env_steps"]), rb.train.sort_values(["rank", "env_steps"])
            row["losses_identical"] = bool(np.array_equal(ta.policy_loss.to_numpy(), tb.policy_loss.to_numpy()))
        else:
            row["note"] = _why(a.stderr if a.code else b.stderr)
            print(f"--- determinism {flag}: exit {a.code}, {b.code}; stderr tail:\n{a.stderr}\n{b.stderr}", flush=True)
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# In-process measurements (no MPI)
# ---------------------------------------------------------------------------------------------

UPDATE_CASES: list[tuple[str, str, list[str]]] = [
    ("cartpole mlp 64x64 (shipped)", "cartpole.yaml", []),
    ("connect four mlp 256x256 (shipped)", C4, []),
    ("connect four conv 32,64 + 256x256", C4, ["ppo.torso=conv"]),
    ("simple_spread team mlp (shipped)", "simple_spread_team.yaml", []),
    ("larger: connect four mlp 512x512x512, batch 8192", C4, ["ppo.hidden=[512,512,512]", "ppo.rollout_steps=8192"]),
    ("larger: connect four conv 64,64 + 512x512", C4,
     ["ppo.torso=conv", "ppo.conv_channels=[64,64]", "ppo.hidden=[512,512]"]),
]


def _learner(config: str, overrides: list[str], device: str, quick: bool) -> Any:
    from mpimarl.algos.ppo import PPOLearner
    from mpimarl.config import load_config
    from mpimarl.roles.context import RunContext

    if quick:
        overrides = [o for o in overrides if not o.startswith("ppo.rollout_steps")] + ["ppo.rollout_steps=256",
                                                                                      "ppo.epochs=2"]
    ctx = RunContext.build(load_config(REPO / "configs" / config, overrides), None)
    role = next(iter(ctx.spec.roles))
    return PPOLearner(ctx.shape(role), ctx.config.ppo, torch.device(device), seed=0, **ctx.learner_options(role))


def _fill(learner: Any, rng: np.random.Generator) -> int:
    """A full rollout of random transitions (complete, short chains), as the runner would leave it."""
    ro, shape = learner.rollout, learner.shape
    n = learner.cfg.rollout_steps
    if n > ro.capacity:
        ro.grow(n)
    ro.obs[:n] = rng.random((n, shape.obs_size), dtype=np.float32)
    if ro.critic_in is not None:
        ro.critic_in[:n] = rng.random((n, shape.critic_input), dtype=np.float32)
    if ro.mask is not None:
        ro.mask[:n] = True
    ro.action[:n] = rng.integers(0, shape.action_dim, n) if shape.discrete else rng.normal(size=ro.action[:n].shape)
    ro.logp[:n] = -np.log(shape.action_dim) if shape.discrete else -1.0
    ro.value[:n] = rng.normal(size=n)
    ro.reward[:n] = rng.normal(size=n)
    ro.next_value[:n] = rng.normal(size=n)
    ro.chain_break[:n] = rng.random(n) < 0.1
    ro.next_index[:n] = np.where(np.arange(n) + 1 < n, np.arange(n) + 1, -1)
    ro.complete[:n] = True
    ro.size = ro.num_complete = n
    ro.pending = {}
    return n


def measure_updates(devices: list[str], quick: bool, seconds: float) -> list[dict[str, Any]]:
    """PPO update throughput per case and device (one warm-up update, then as many as fit in `seconds`)."""
    rows = []
    rng = np.random.default_rng(0)
    cases = UPDATE_CASES[:3] if quick else UPDATE_CASES
    for name, config, overrides in cases:
        row: dict[str, Any] = {"network": name}
        for device in devices:
            learner = _learner(config, overrides, device, quick)
            n = _fill(learner, rng)
            if device != "cpu":
                learner.update(0.0)  # warm-up (CUDA context, kernels, allocator)
            count, t0 = 0, time.perf_counter()
            while count < 1 or time.perf_counter() - t0 < seconds:
                _fill(learner, rng)
                learner.update(0.0)  # ends with a device-to-host copy: synchronised
                count += 1
            per = (time.perf_counter() - t0) / count
            row["batch"] = n
            row["epochs"] = learner.cfg.epochs
            row[f"{device}_update_ms"] = round(per * 1e3, 2)
            row[f"{device}_samples_per_s"] = round(n * learner.cfg.epochs / per)
        if len(devices) == 2:
            row["speed-up"] = round(row[f"{devices[0]}_update_ms"] / row[f"{devices[1]}_update_ms"], 2)
        rows.append(row)
    return rows


def measure_acting(device: str, seconds: float) -> list[dict[str, Any]]:
    """One acting step for 64 connect-four boards: the learner's CPU copy (what trainers do now)
    against acting with the device's network (upload, act, three downloads: the old path)."""
    learner = _learner(C4, [], device, quick=False)
    rng = np.random.default_rng(1)
    obs = rng.random((64, learner.shape.obs_size), dtype=np.float32)
    mask = np.ones((64, learner.shape.action_dim), bool)
    dev = torch.device(device)

    @torch.inference_mode()
    def on_device() -> None:
        a, lp, v = learner.net.act_with_value(torch.from_numpy(obs).to(dev), torch.from_numpy(mask).to(dev))
        a.cpu().numpy(), lp.cpu().numpy(), v.cpu().numpy()

    def timed(fn: Any) -> float:
        fn()
        count, t0 = 0, time.perf_counter()
        while count < 10 or time.perf_counter() - t0 < seconds:
            fn()
            count += 1
        return (time.perf_counter() - t0) / count * 1e6

    return [
        {"what": "act, CPU copy of the weights (trainers now)", "device": "cpu", "us_per_step": round(timed(
            lambda: learner.act(obs, mask)), 1)},
        {"what": "act on the learner's device (upload + 3 downloads)", "device": device, "us_per_step": round(timed(
            on_device), 1)},
        {"what": "refresh the CPU copy after an update (one flat copy)", "device": device, "us_per_step": round(timed(
            learner.weights_changed), 1)},
    ]


# ---------------------------------------------------------------------------------------------


def _table(rows: list[dict[str, Any]]) -> str:
    frame = pd.DataFrame(rows)
    try:
        return frame.to_markdown(index=False)
    except ImportError:
        return frame.to_string(index=False)


def main(argv: list[str] | None = None) -> int:
    """Run the parts asked for and write gpu.md and the CSVs; the exit code is 1 if a run failed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="trainer.device of the runs (default: cuda where torch sees a GPU)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--quick", action="store_true", help="tiny budgets (a smoke test, e.g. in CI)")
    parser.add_argument("--jobs", type=int, default=3, help="runs at once where timings do not matter")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per run")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="folder for gpu.md and CSVs")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as trainers run (trainer.torch_threads: 1), for the in-process timings
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; the parts are {list(PARTS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sections: list[str] = []
    failed = False
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    header = (f"# GPU trainers ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; device {args.device}; GPU {gpu}; "
              f"torch {torch.__version__}, CUDA {torch.version.cuda}; {os.cpu_count()} cores"
              f"{'; --quick' if args.quick else ''})")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for part in parts:
            t0 = time.monotonic()
            if part == "layouts":
                rows = run_layouts(args.device, args.quick, tmp, args.jobs, args.timeout)
                failed |= not all(r["ok"] for r in rows)
            elif part == "speed":
                rows = run_speed(args.device, args.quick, tmp, args.timeout)
                failed |= not all(r["ok"] for r in rows)
            elif part == "determinism":
                rows = run_determinism(args.device, args.quick, tmp, args.jobs, args.timeout)
                failed |= not all(r["both_finished"] for r in rows)
            elif part == "update":
                devices = ["cpu", args.device] if args.device != "cpu" else ["cpu"]
                rows = measure_updates(devices, args.quick, 0.3 if args.quick else 3.0)
            else:
                rows = measure_acting(args.device, 0.2 if args.quick else 2.0)
            pd.DataFrame(rows).to_csv(out / f"gpu_{part}.csv", index=False)
            sections.append(f"## {part} ({time.monotonic() - t0:.0f} s)\n\n{_table(rows)}\n")
            print(sections[-1], flush=True)
            (out / "gpu.md").write_text(header + "\n\n" + "\n".join(sections))  # after every part
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
