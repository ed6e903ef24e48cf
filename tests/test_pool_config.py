"""The `pool` config section: bad retention, cadence and cache settings are one clear error, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpimarl.cli import main
from mpimarl.config import config_to_dict, load_config
from mpimarl.errors import ConfigError
from mpimarl.record.recorder import RunRecorder
from mpimarl.roles.context import RunContext

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
C4 = CONFIGS / "connect_four_league.yaml"


def test_defaults_keep_every_weight_and_publish_every_generation() -> None:
    pool = load_config(C4).pool
    assert pool.keep_latest is None and not pool.retention and pool.publish_every == 1
    assert pool.commit_window_s == 0.0 and pool.compression == "none" and pool.cache_mb == 256.0


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


@pytest.mark.slow
def test_play_and_run_policy_on_dropped_weights_exit_2_naming_the_snapshot(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = load_config(C4, ["pool.keep_latest=1", "baselines=[]"])
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
