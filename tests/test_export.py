"""`mpimarl export`: a stored policy as ONNX or TorchScript acts as `Run.policy` does, greedily."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import pytest
import torch

from mpimarl.analysis import StoredPolicy, load_run
from mpimarl.cli import main
from tests.test_analysis import CONNECT_FOUR, REPO, write_policy_run

ort = pytest.importorskip("onnxruntime", reason="the export extra is not installed (pip install -e '.[export]')")
pytest.importorskip("onnxscript", reason="the export extra is not installed (pip install -e '.[export]')")

torch.set_num_threads(1)
OBSERVATIONS = 300

CONNECT_FOUR_CONV = {**CONNECT_FOUR, "ppo": {"hidden": [32], "torso": "conv", "conv_channels": [8, 8]}}
PENDULUM = {"name": "pendulum_test", "env": {"id": "gymnasium:Pendulum-v1"},
            "task": {"kind": "cooperative", "roles": [{"name": "agent"}]}, "ppo": {"hidden": [16]}}


def _connect_four_observations(rng: np.random.Generator) -> Iterator[Any]:
    from pettingzoo.classic import connect_four_v3

    env = connect_four_v3.env()
    env.reset(seed=0)
    while True:
        for _agent in env.agent_iter():
            obs, _, term, trunc, _ = env.last()
            if term or trunc:
                env.step(None)
                continue
            yield obs
            env.step(int(rng.choice(np.flatnonzero(obs["action_mask"]))))
        env.reset(seed=int(rng.integers(1 << 30)))


def _simple_tag_observations(rng: np.random.Generator, prefix: str) -> Iterator[Any]:
    from mpe2 import simple_tag_v3

    env = simple_tag_v3.parallel_env(num_good=1, num_adversaries=3, num_obstacles=2, max_cycles=25,
                                     continuous_actions=False)
    while True:
        obs, _ = env.reset(seed=int(rng.integers(1 << 30)))
        while env.agents:
            yield from (o for a, o in obs.items() if a.startswith(prefix))
            obs, *_ = env.step({a: env.action_space(a).sample() for a in env.agents})


def _pendulum_observations(rng: np.random.Generator) -> Iterator[Any]:
    env = gymnasium.make("Pendulum-v1")
    while True:
        obs, _ = env.reset(seed=int(rng.integers(1 << 30)))
        for _ in range(50):
            yield obs
            obs, *_ = env.step(rng.uniform(-2, 2, size=(1,)).astype(np.float32))


def _observations(source: Iterator[Any]) -> list[Any]:
    return [next(source) for _ in range(OBSERVATIONS)]


def _onnx_actions(path: Path, policy: StoredPolicy, raw: list[Any]) -> tuple[list[Any], np.ndarray]:
    """The ONNX model's greedy actions for `raw`, in one batch, decoded as the sidecar says."""
    side = json.loads(path.with_name(path.name + ".json").read_text())
    encoded = [policy.encode(r) for r in raw]
    feed = {"obs": np.stack([f for f, _ in encoded])}
    if [i["name"] for i in side["inputs"]] == ["obs", "mask"]:
        feed["mask"] = np.stack([m for _, m in encoded])
    session = ort.InferenceSession(str(path))
    out = session.run([side["output"]["name"]], feed)[0]
    action = side["action"]
    if action["space"] == "Discrete":
        return [int(i) + action["start"] for i in out.argmax(axis=1)], out
    low, high = np.array(action["low"]), np.array(action["high"])
    return [np.clip(m, low, high).reshape(action["shape"]) for m in out], out


# One ONNX export takes 3-10 s on a busy 2-core machine: the quick tier keeps the board case.
CASES = [
    pytest.param("connect_four_mlp", CONNECT_FOUR, {"player-0": 2}, _connect_four_observations, id="connect_four"),
    pytest.param("connect_four_conv", CONNECT_FOUR_CONV, {"player-0": 1}, _connect_four_observations,
                 id="connect_four_conv", marks=pytest.mark.slow),
    pytest.param("simple_tag", REPO / "configs" / "simple_tag_roles.yaml", {"predator-0": 1, "prey-0": 1},
                 lambda rng: _simple_tag_observations(rng, "adversary"), id="mpe_simple_tag", marks=pytest.mark.slow),
    pytest.param("pendulum_box", PENDULUM, {"agent-0": 1}, _pendulum_observations, id="pendulum_box",
                 marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("name", "config", "versions", "source"), CASES)
def test_onnx_acts_as_the_stored_policy(tmp_path: Path, name: str, config: Any, versions: dict[str, int],
                                        source: Any) -> None:
    run_path = write_policy_run(tmp_path / "run.h5", config, versions)
    policy_id = next(iter(versions))
    out = tmp_path / f"{name}.onnx"
    assert main(["export", str(run_path), policy_id, "--out", str(out)]) == 0
    policy = load_run(run_path).policy(policy_id)
    raw = _observations(source(np.random.default_rng(0)))
    actions, _ = _onnx_actions(out, policy, raw)
    expected = [policy.act(r, greedy=True) for r in raw]
    if policy.shape.discrete:
        assert actions == expected
        assert len(set(expected)) > 1  # the observations are varied enough to tell policies apart
    else:
        np.testing.assert_allclose(np.stack(actions), np.stack(expected), rtol=1e-5, atol=1e-5)
    side = json.loads(out.with_name(out.name + ".json").read_text())
    assert side["layout"] == policy.shape.layout and side["version"] == versions[policy_id] - 1
    assert side["observation"]["size"] == policy.shape.obs_size


def test_torchscript_acts_as_the_stored_policy_and_masks_illegal_moves(tmp_path: Path) -> None:
    run_path = write_policy_run(tmp_path / "run.h5")
    out = tmp_path / "player.pt"
    assert main(["export", str(run_path), "player-0@0", "--out", str(out)]) == 0
    policy = load_run(run_path).policy("player-0", 0)
    raw = _observations(_connect_four_observations(np.random.default_rng(1)))
    encoded = [policy.encode(r) for r in raw]
    module = torch.jit.load(str(out))
    masks = np.stack([m for _, m in encoded])
    logits = module(torch.from_numpy(np.stack([f for f, _ in encoded])), torch.from_numpy(masks))
    assert logits.argmax(1).tolist() == [policy.act(r, greedy=True) for r in raw]
    assert (logits.detach().numpy()[~masks] <= -1e7).all()  # an illegal column is never the greedy one
    side = json.loads((tmp_path / "player.pt.json").read_text())
    assert side["model_format"] == "torchscript" and side["inputs"][1]["name"] == "mask"


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("mpimarl: error: ") and len(err.splitlines()) == 1, err
    return err


def test_a_layout_that_cannot_be_loaded_is_one_error_and_writes_nothing(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    run_path = write_policy_run(tmp_path / "run.h5", layout="mlp/obs=84/hidden=999/tanh/discrete=7")
    out = tmp_path / "p.onnx"
    assert main(["export", str(run_path), "player-0", "--out", str(out)]) == 2
    err = _one_error(capsys)
    assert "cannot be exported" in err and "hidden=999" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.h5"]


@pytest.mark.parametrize(("args", "needle"), [
    (["player-0", "--out", "p.zip"], "suffix"),
    (["player-9", "--out", "p.onnx"], "player-9"),
    (["player-0@7", "--out", "p.pt"], "stored versions"),
    (["player-0", "--out", "no/such/folder/p.onnx"], "does not exist"),
])
def test_bad_export_requests_are_one_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                           needle: str, monkeypatch: pytest.MonkeyPatch) -> None:
    run_path = write_policy_run(tmp_path / "run.h5")
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(run_path), *args]) == 2
    assert needle in _one_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.h5"]


# ---------------------------------------------------------------------------------------------
# ppo.obs_norm: the running statistics travel in the weights, so the exported model normalises too
# ---------------------------------------------------------------------------------------------

PENDULUM_NORM = {**PENDULUM, "name": "pendulum_obs_norm", "ppo": {"hidden": [16], "obs_norm": True}}
MAMUJOCO = REPO / "configs" / "mamujoco_halfcheetah_mappo.yaml"


def _mamujoco_observations(rng: np.random.Generator) -> Iterator[Any]:
    """agent_0's raw observations of MaMuJoCo HalfCheetah 2x3 (as the shipped config builds it) under random actions."""
    from gymnasium_robotics.envs.multiagent_mujoco import mamujoco_v1

    env = mamujoco_v1.parallel_env(scenario="HalfCheetah", agent_conf="2x3", agent_obsk=1)
    while True:
        obs, _ = env.reset(seed=int(rng.integers(1 << 30)))
        for _ in range(60):
            yield obs["agent_0"]
            obs, *_ = env.step({a: env.action_space(a).sample() for a in env.agents})


def _write_normalised_policy_run(path: Path, config: Any, raw: list[Any]) -> str:
    """A run file holding one snapshot (its id is returned) of the first role's policy, whose
    observation normaliser has folded in `raw` (encoded), shifted and scaled so that normalising
    changes what the policy does."""
    from mpimarl.algos.data_parallel import feature_moments
    from mpimarl.algos.networks import ActorCritic, flat_weights
    from mpimarl.config import config_to_dict, load_config, parse_config
    from mpimarl.record.recorder import RunRecorder
    from mpimarl.roles.context import RunContext

    parsed = parse_config(config) if isinstance(config, dict) else load_config(config, [])
    ctx = RunContext.build(parsed, None)
    role = next(iter(ctx.spec.roles))
    shape = ctx.shape(role)
    assert shape.obs_norm and shape.layout.endswith("/obsnorm")
    torch.manual_seed(0)  # the network's initial weights, whatever building the context drew before
    net = ActorCritic(shape)
    encoded = np.stack([np.asarray(r, np.float64).ravel() for r in raw])  # Box observations encode as raveled
    assert net.obs_norm is not None
    net.obs_norm.update_moments(*feature_moments(encoded * 3.0 + 1.5))
    attrs = {"config": config_to_dict(parsed), "name": parsed.name, "world_size": 2}
    with RunRecorder(path, attrs) as rec:
        rec.save_weights(f"{role}-0", 0, role, flat_weights(net), parent=None, layout=shape.layout)
    return f"{role}-0"


@pytest.mark.parametrize(("config", "source", "suffix"), [
    pytest.param(PENDULUM_NORM, _pendulum_observations, ".pt", id="pendulum_torchscript"),
    pytest.param(MAMUJOCO, _mamujoco_observations, ".onnx", id="mamujoco_onnx", marks=pytest.mark.slow),
])
def test_an_obs_norm_policy_exports_with_its_normalisation(tmp_path: Path, config: Any, source: Any,
                                                           suffix: str) -> None:
    """The exported model (ONNX or TorchScript) takes the raw encoded observation and acts as
    `Run.policy` does greedily, normaliser included; resetting the normaliser changes those actions,
    so the observations are ones on which the statistics matter."""
    if config is MAMUJOCO:
        pytest.importorskip("gymnasium_robotics", reason="the robotics extra is not installed")
    raw = _observations(source(np.random.default_rng(3)))
    run_path = tmp_path / "run.h5"
    policy_id = _write_normalised_policy_run(run_path, config, raw)
    out = tmp_path / f"policy{suffix}"
    assert main(["export", str(run_path), policy_id, "--out", str(out)]) == 0
    policy = load_run(run_path).policy(policy_id)
    expected = np.stack([policy.act(r, greedy=True) for r in raw])
    if suffix == ".onnx":
        actions = np.stack(_onnx_actions(out, policy, raw)[0])
    else:
        side = json.loads(out.with_name(out.name + ".json").read_text())
        module = torch.jit.load(str(out))
        means = module(torch.from_numpy(np.stack([policy.encode(r)[0] for r in raw]))).detach().numpy()
        low, high = np.array(side["action"]["low"]), np.array(side["action"]["high"])
        actions = np.clip(means, low, high).reshape(expected.shape)
    np.testing.assert_allclose(actions, expected, rtol=1e-5, atol=1e-5)
    norm = policy.net.obs_norm
    assert norm is not None and float(norm.count.item()) == OBSERVATIONS
    with torch.no_grad():
        norm.mean.zero_()
        norm.var.fill_(1.0)
    unnormalised = np.stack([policy.act(r, greedy=True) for r in raw])
    # A hundred times the tolerance of the comparison above: an export that dropped the normaliser
    # fails it. (A fresh network's actions are small, its last layer scaled by 0.01: Pendulum's
    # greedy torques move by about 0.01 here.)
    assert np.abs(unnormalised - expected).max() > 1e-3
