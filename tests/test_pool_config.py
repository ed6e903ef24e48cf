"""The `pool` config section: bad retention, cadence and cache settings are one clear error, exit 2."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mpimarl.cli import main
from mpimarl.config import PoolConfig, config_to_dict, load_config
from mpimarl.errors import ConfigError
from mpimarl.record.recorder import RunRecorder
from mpimarl.roles.context import RunContext
from tests.conftest import run_mpi

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
C4 = CONFIGS / "connect_four_league.yaml"


def test_defaults_keep_every_weight_and_publish_every_generation() -> None:
    pool = PoolConfig()
    assert pool.keep_latest is None and not pool.retention and pool.publish_every == 1
    assert pool.commit_window_s == 0.0 and pool.compression == "none" and pool.cache_mb == 256.0
    assert not load_config(C4).pool.retention  # benchmarks/results/pool_retention_c4.md: not the default yet


@pytest.mark.parametrize(("overrides", "message"), [
    (["pool.keep_latest=0"], "pool.keep_latest 0 would leave the matchmaker nothing to draw"),
    (["pool.keep_every=5"], "pool.keep_every is part of the retention policy, which is off"),
    (["pool.archive=float16"], "pool.archive is part of the retention policy"),
    (["pool.keep_latest=2", "pool.keep=[player-0]"], "pool.keep: 'player-0' is not 'policy_id@version'"),
    (["pool.publish_every=4"], "need schedule.mode 'async'"),
    (["pool.cache_mb=0"], "pool.cache_mb"),
    (["pool.compression=zstd"], "pool.compression"),
])
def test_bad_pool_settings_name_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(C4, overrides)


def test_a_cache_smaller_than_one_snapshot_is_refused_at_start() -> None:
    config = load_config(C4, ["pool.cache_mb=0.1", "baselines=[]"])  # connect four's conv network: 1.34 MB of float32
    with pytest.raises(ConfigError, match=r"pool.cache_mb 0.1 is smaller than one snapshot of role 'player'"):
        RunContext.build(config, None)
    RunContext.build(load_config(C4, ["pool.cache_mb=2", "baselines=[]"]), None)


@pytest.mark.parametrize(("keep", "world_size", "message"), [
    ("player-2@3", 3, "pool.keep: 'player-2@3' names policy 'player-2', which this run does not create; with 3 "
                      "ranks its policies are player-0, player-1"),
    ("coach-0@3", None, "pool.keep: 'coach-0@3' names policy 'coach-0', which no run of this config creates; "
                        "policy ids are '<role>-<k>'"),
    ("player@3", None, "names policy 'player', which no run of this config creates"),
    ("player-0@21", 3, "pool.keep: 'player-0@21' names version 21, but each policy publishes versions 0..20"),
])
def test_anchors_the_run_never_publishes_are_refused_at_start(keep: str, world_size: int | None, message: str) -> None:
    config = load_config(C4, ["pool.keep_latest=8", f"pool.keep=[{keep}]", "baselines=[]"])  # 20 generations by default
    with pytest.raises(ConfigError, match=re.escape(message)):
        RunContext.build(config, world_size)
    ok = load_config(C4, ["pool.keep_latest=8", "pool.keep=[player-5@20]", "baselines=[]"])
    RunContext.build(ok, None)  # 7 ranks create player-5


def test_anchors_of_versions_the_publish_cadence_skips_are_refused() -> None:
    cadence = ["schedule.mode=async", "pool.publish_every=4", "pool.keep_latest=8", "baselines=[]"]
    with pytest.raises(ConfigError, match=r"'player-0@6' names version 6, which pool.publish_every 4 never publishes"):
        RunContext.build(load_config(C4, [*cadence, "pool.keep=[player-0@6]"]), 3)
    RunContext.build(load_config(C4, [*cadence, "pool.keep=[player-0@8, player-1@20]"]), 3)


@pytest.mark.mpi
def test_check_and_train_refuse_an_anchor_of_a_policy_the_run_does_not_create(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(C4), "pool.keep_latest=8", "pool.keep=[plyer-0@4]"]) == 2
    err = capsys.readouterr().err
    assert "pool.keep: 'plyer-0@4' names policy 'plyer-0'" in err and err.count("\n") == 1
    out = run_mpi(3, ["train", str(C4), "--run-dir", str(tmp_path / "run"), "pool.keep_latest=8",
                      "pool.keep=[player-2@4]"], timeout=240)
    assert out.returncode == 2, out.stderr
    assert "pool.keep: 'player-2@4' names policy 'player-2', which this run does not create" in out.stderr
    assert not (tmp_path / "run" / "run.h5").exists()  # refused before any training


@pytest.mark.slow
def test_play_and_run_policy_on_dropped_weights_exit_2_naming_the_snapshot(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = load_config(C4, ["pool.keep_latest=1", "pool.keep_every=null", "pool.keep_weight_above=null",
                              "baselines=[]"])
    ctx = RunContext.build(config, None)
    from mpimarl.algos.networks import ActorCritic, flat_weights

    weights = flat_weights(ActorCritic(ctx.shape("player")))
    path = tmp_path / "run.h5"
    with RunRecorder(path, {"config": config_to_dict(config)}) as rec:
        for version in range(2):
            rec.save_weights("player-0", version, "player", weights, parent=None, layout=ctx.shape("player").layout)
        rec.drop_weights("player-0", 0)
    assert main(["play", str(path), "player-0@0"]) == 2
    err = capsys.readouterr().err
    assert "player-0@0 were dropped by the retention policy (pool.keep_latest=1)" in err
    assert err.count("\n") == 1  # one line, no traceback
    assert main(["play", str(path), "player-0@1", "--out", str(tmp_path / "m.txt")]) == 0
