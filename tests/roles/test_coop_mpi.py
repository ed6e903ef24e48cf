"""Cooperative credit assignment under `mpiexec -n 3`: the MAPPO and COMA configs (each algorithm in both schedules),
cross-play and the communication check in the run file, and the bad-input errors at start-up."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mpimarl.analysis import communication_check, crossplay_matrix, load_run
from tests.conftest import CONFIGS, REPO, run_cli, run_mpi

pytestmark = pytest.mark.mpi

TINY = ["--steps", "1000", "schedule.steps_per_generation=500", "evaluation.baseline_episodes=4",
        "evaluation.pool_episodes=2", "evaluation.par_episodes=4", "ppo.num_envs=4", "ppo.rollout_steps=256",
        "evaluation.num_envs=4"]

CRITIC_INPUTS = {  # role -> (critic input: state (+ own obs + agent one-hot) (+ others' actions), outputs)
    "simple_spread_mappo": {"agent": (54 + 18 + 3, 1)},
    "simple_spread_coma": {"agent": (54 + 18 + 3 + 10, 5)},
    "speaker_listener_mappo": {"speaker": (14, 1), "listener": (14, 1)},
    "speaker_listener_coma": {"speaker": (14 + 5, 3), "listener": (14 + 3, 5)},
}


# Each config once; each algorithm and each environment in both schedules (all pairs of config x
# schedule, algorithm x schedule and algorithm x environment, in 4 runs instead of 8).
PAIRS = [("simple_spread_mappo", "sync"), ("simple_spread_coma", "async"), ("speaker_listener_mappo", "async"),
         ("speaker_listener_coma", "sync")]


@pytest.mark.slow
@pytest.mark.parametrize("name, mode", PAIRS)
def test_centralised_critic_configs_train_in_both_schedules(name: str, mode: str, tmp_path: Path) -> None:
    """Every MAPPO/COMA config trains to its budget; snapshots carry the critic's input in their
    layout and still act from observations (the run file's policies load and act)."""
    out = run_mpi(3, ["train", str(CONFIGS / f"{name}.yaml"), "--run-dir", str(tmp_path),
                      f"schedule.mode={mode}", *TINY])
    assert out.returncode == 0, out.stderr
    run = load_run(tmp_path / "run.h5")
    assert run.attrs["finished"] is True
    assert (run.pool.groupby("policy_id").env_steps.max() >= 1000).all()
    assert np.isfinite(run.train.value_loss).all() and np.isfinite(run.train.policy_loss).all()
    layouts = run.policies().groupby("role").layout.first()
    for role, (size, outputs) in CRITIC_INPUTS[name].items():
        assert layouts[role].endswith(f"/critic={size}x{outputs}"), layouts[role]
    for policy_id in run.pool.policy_id.unique():
        policy = run.policy(policy_id)
        obs_size = policy.shape.obs_size
        action = policy.acting_policy().act(np.zeros((1, obs_size), np.float32), None)
        assert action.shape == (1,)
    if name.startswith("speaker_listener"):
        # Cross-play pairs each new snapshot with older partner snapshots too, and the listener's
        # communication check compares the trained speaker with random messages on the same seeds.
        matrix = crossplay_matrix(run, "listener")
        assert matrix.shape[0] >= 1 and matrix.shape[1] >= 2
        assert set(matrix.columns) <= {f"speaker-0@{v}" for v in range(3)}
        comm = communication_check(run)
        assert set(comm.role) == {"listener"} and len(comm) == 2
        assert np.isfinite(comm.trained).all() and np.isfinite(comm["random"]).all()
        if mode == "sync":
            from mpimarl.report import write_figures

            names = {p.name for p in write_figures(run, tmp_path)}
            assert {"crossplay.png", "communication.png"} <= names


@pytest.mark.slow
def test_centralised_critic_without_a_state_exits_2(tmp_path: Path) -> None:
    """No state() and observations hidden off-turn: one message naming the agent, exit 2 on every rank."""
    config = tmp_path / "private.yaml"
    config.write_text(
        "name: private\nenv: {id: 'tests.fixtures.private_obs_env:make'}\n"
        "task: {kind: competitive, roles: [{name: player, agents: 'p.*', team: false}]}\n"
        "ppo: {critic: state}\n"
    )
    out = run_mpi(3, ["train", str(config), "--run-dir", str(tmp_path / "run")], timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("has no global state") == 1, out.stderr
    assert "'p0'" in out.stderr and "ppo.critic 'state'" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "run" / "run.h5").exists()


@pytest.mark.slow
def test_coma_with_continuous_actions_is_refused_by_check() -> None:
    """COMA needs Discrete actions: `mpimarl check` names the role and the Box space, exit 2."""
    out = run_cli(["check", str(CONFIGS / "simple_spread_coma.yaml"), "env.kwargs.continuous_actions=true"])
    assert out.returncode == 2
    assert "ppo.advantage 'coma' (role 'agent') needs Discrete actions" in out.stderr
    assert "Box" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_coma_without_a_centralised_critic_is_refused() -> None:
    """advantage coma with a local critic: the config error names both keys."""
    out = run_cli(["check", str(REPO / "configs" / "simple_spread_team.yaml"), "ppo.advantage=coma"])
    assert out.returncode == 2
    assert "ppo.advantage 'coma'" in out.stderr and "ppo.critic" in out.stderr
