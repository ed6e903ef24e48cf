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
