"""The device policy (mpimarl/devices.py): which rank computes where, as pure code, plus the
CPU-side guarantees of the GPU paths (evaluation jobs leave CUDA's generators alone, learners act
with a CPU copy of their weights). Tests marked `cuda` run only where torch sees a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mpimarl.algos.networks import ActorCritic, FrozenPolicy, flat_weights
from mpimarl.algos.ppo import PPOLearner
from mpimarl.config import load_config
from mpimarl.devices import NodeRank, check_groups_uniform, deal_devices, describe_rank, set_determinism
from mpimarl.errors import ConfigError
from mpimarl.league.pool import SnapshotKey
from mpimarl.roles.context import RunContext
from mpimarl.roles.evaluation import play_job
from mpimarl.rollout.runner import VectorMatches
from mpimarl.rollout.seating import SeatedKey, random_key
from tests.conftest import CONFIGS, play_cartpole

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device here")

SERVER, LEARNER, ACTOR = NodeRank(False, 2), NodeRank(True, 2), NodeRank(False, 2)


# -- dealing GPUs among a node's learner ranks ------------------------------------------------------


def test_actors_and_rank_0_take_no_gpu_and_learners_spread_over_both() -> None:
    """The issue's layout: 2 GPUs, 2 policies each with one learner and one actor, rank 0 on the
    node. The old rule (local rank % GPUs) put both learners on cuda:1."""
    dealt = deal_devices([SERVER, LEARNER, ACTOR, LEARNER, ACTOR], "auto")
    assert dealt.devices == ("cpu", "cuda:0", "cpu", "cuda:1", "cpu")
    assert dealt.warning is None


def test_learner_group_on_one_node_gets_one_gpu_each() -> None:
    dealt = deal_devices([SERVER] + [NodeRank(True, 4)] * 4, "cuda")
    assert dealt.devices == ("cpu", "cuda:0", "cuda:1", "cuda:2", "cuda:3")


def test_node_without_rank_0_starts_dealing_at_its_first_learner() -> None:
    """The second node of a job: node-local rank 0 is a learner and takes GPU 0."""
    assert deal_devices([LEARNER, ACTOR, LEARNER], "auto").devices == ("cuda:0", "cpu", "cuda:1")


@pytest.mark.parametrize("policy", ["warn", "share"])
def test_more_learners_than_gpus_share_round_robin(policy: str) -> None:
    dealt = deal_devices([SERVER] + [LEARNER] * 3, "auto", policy)
    assert dealt.devices == ("cpu", "cuda:0", "cuda:1", "cuda:0")
    if policy == "warn":
        assert dealt.warning is not None and "3 learner ranks share 2 GPUs" in dealt.warning
        assert "trainer.gpu_oversubscription" in dealt.warning
    else:
        assert dealt.warning is None


def test_more_learners_than_gpus_is_an_error_when_strict() -> None:
    with pytest.raises(ConfigError, match=r"trainer.gpu_oversubscription is 'strict' but 3 learner ranks share 2"):
        deal_devices([SERVER] + [LEARNER] * 3, "auto", "strict")
    assert deal_devices([SERVER] + [LEARNER] * 2, "auto", "strict").devices == ("cpu", "cuda:0", "cuda:1")


def test_ranks_bound_to_their_own_gpu_each_take_it() -> None:
    """A scheduler that sets CUDA_VISIBLE_DEVICES per task: every learner sees one GPU, its own."""
    ranks = [NodeRank(False, 1, "0"), NodeRank(True, 1, "1"), NodeRank(True, 1, "2")]
    dealt = deal_devices(ranks, "auto", "strict")
    assert dealt.devices == ("cpu", "cuda:0", "cuda:0") and dealt.warning is None


def test_cpu_preference_and_nodes_without_gpus() -> None:
    assert deal_devices([SERVER, LEARNER], "cpu").devices == ("cpu", "cpu")
    assert deal_devices([NodeRank(False, 0), NodeRank(True, 0)], "auto").devices == ("cpu", "cpu")
    with pytest.raises(ConfigError, match=r"trainer.device is 'cuda' but CUDA is not available on this node"):
        deal_devices([NodeRank(False, 0), NodeRank(True, 0)], "cuda")
    # Without a learner, asking for CUDA on a node without it is no error (rank 0 alone there).
    assert deal_devices([NodeRank(False, 0)], "cuda").devices == ("cpu",)


def test_unknown_settings_name_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"trainer.device must be one of \['auto', 'cpu', 'cuda'\], got 'gpu'"):
        deal_devices([LEARNER], "gpu")
    with pytest.raises(ConfigError, match=r"trainer.gpu_oversubscription must be one of"):
        deal_devices([LEARNER], "auto", "sometimes")


def test_config_rejects_a_device_torch_does_not_know() -> None:
    with pytest.raises(ConfigError, match=r"trainer.device"):
        load_config(CONFIGS / "cartpole.yaml", ["trainer.device=tpu"])
    with pytest.raises(ConfigError, match=r"trainer.gpu_oversubscription"):
        load_config(CONFIGS / "cartpole.yaml", ["trainer.gpu_oversubscription=maybe"])


def test_learner_group_mixing_cpu_and_cuda_is_refused() -> None:
    devices = ["cpu", "cuda:0", "cuda:1", "cuda:0", "cpu"]
    check_groups_uniform([[1, 2]], devices)  # two GPUs: fine
    with pytest.raises(ConfigError, match=r"trainer.device: the learner group of ranks \[3, 4\] mixes CPU and CUDA"):
        check_groups_uniform([[1, 2], [3, 4]], devices)


# -- what the run file records per rank -------------------------------------------------------------


def test_describe_rank_names_host_device_and_versions() -> None:
    info = describe_rank("cpu", "MPICH Version: 4.3", host="node-a", local_rank=2)
    assert info["host"] == "node-a" and info["local_rank"] == 2
    assert info["device"] == "cpu" and info["gpu_name"] is None
    assert info["torch"] == torch.__version__ and info["mpi_library"] == "MPICH Version: 4.3"
    assert info["torch_threads"] == torch.get_num_threads()
    assert set(info) >= {"cuda", "cudnn", "deterministic"}


def test_determinism_flags_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    set_determinism(False)
    assert not torch.are_deterministic_algorithms_enabled()
    try:
        set_determinism(True)
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        import os

        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False


# -- evaluation jobs leave CUDA's generators alone (finding 1) ---------------------------------------


def _rps() -> RunContext:
    return RunContext.build(load_config(CONFIGS / "rps_league.yaml", []), None)


def _play_one_job(ctx: RunContext) -> dict[str, object]:
    role = next(iter(ctx.spec.roles))
    shape = ctx.shape(role)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(0)
        weights = flat_weights(ActorCritic(shape))
    snap = FrozenPolicy(shape, weights, torch.device("cpu"))
    own = SeatedKey(SnapshotKey("player-0", 1), role)
    matches = VectorMatches([ctx.factory() for _ in range(2)], seed=3)
    gen = play_job(ctx, matches, lambda key: snap, own, (random_key(role),), [11, 12, 13], 99)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def test_evaluation_job_does_not_reseed_cuda_generators(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.manual_seed reseeds every CUDA generator too, and fork_rng(devices=[]) does not restore
    them: a job played between a GPU trainer's updates would have shifted its random stream."""
    calls: list[int] = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: calls.append(seed))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: calls.append(seed))
    ctx = _rps()  # building a context may draw from the generator; the job itself must not
    before = torch.get_rng_state()
    first = _play_one_job(ctx)
    assert calls == [], "an evaluation job reseeded the CUDA generators"
    assert torch.equal(torch.get_rng_state(), before), "an evaluation job changed the CPU generator's state"
    assert _play_one_job(_rps()) == first  # the job's own seed still fixes its results


@pytest.mark.cuda
@needs_cuda
def test_evaluation_job_leaves_the_cuda_stream_where_it_was() -> None:
    torch.cuda.manual_seed_all(5)
    expected = torch.rand(4, device="cuda")
    torch.cuda.manual_seed_all(5)
    _play_one_job(_rps())
    assert torch.equal(torch.rand(4, device="cuda"), expected)


# -- acting on the CPU (finding 4) --------------------------------------------------------------------


def _learner(device: str) -> PPOLearner:
    ctx = RunContext.build(load_config(CONFIGS / "cartpole.yaml", []), None)
    return PPOLearner(ctx.shape(next(iter(ctx.spec.roles))), ctx.config.ppo, torch.device(device), seed=4)


def test_cpu_learner_acts_with_its_own_network() -> None:
    learner = _learner("cpu")
    assert learner.acting_net is learner.net  # no copy, no refresh cost on the CPU


@pytest.mark.cuda
@needs_cuda
def test_gpu_learner_acts_on_cpu_with_weights_refreshed_after_update() -> None:
    """A GPU learner acts with a CPU copy; the copy follows every update; the actions equal a CPU
    learner's with the same weights and CPU random stream."""
    gpu, cpu = _learner("cuda"), _learner("cpu")
    assert next(gpu.acting_net.parameters()).device.type == "cpu"
    np.testing.assert_array_equal(flat_weights(gpu.acting_net), flat_weights(gpu.net))
    obs = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    torch.manual_seed(1)
    a_gpu = gpu.act(obs, None)
    torch.manual_seed(1)
    a_cpu = cpu.act(obs, None)
    np.testing.assert_array_equal(a_gpu[0], a_cpu[0])
    np.testing.assert_allclose(a_gpu[2], a_cpu[2], rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        for p in gpu.net.parameters():
            p.add_(0.5)
    gpu.weights_changed()
    np.testing.assert_array_equal(flat_weights(gpu.acting_net), flat_weights(gpu.net))
    before = flat_weights(gpu.net)
    play_cartpole(gpu, seed=3)
    gpu.update(0.0)  # an update moves the weights on the GPU and refreshes the CPU copy by itself
    assert not np.array_equal(flat_weights(gpu.net), before)
    np.testing.assert_array_equal(flat_weights(gpu.acting_net), flat_weights(gpu.net))


def test_a_cpu_learner_fed_by_real_cartpole_updates() -> None:
    """The CPU run of what the GPU test above does after its refresh check (so that its steps run where no
    GPU is): real CartPole play makes an update due, and the update moves the weights."""
    cpu = _learner("cpu")
    before = flat_weights(cpu.net)
    play_cartpole(cpu, seed=3)
    cpu.update(0.0)
    assert not np.array_equal(flat_weights(cpu.net), before)
