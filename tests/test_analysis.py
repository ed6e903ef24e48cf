"""load_run and summarize on real run files: round trip, committed rows only, and clear errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from mpimarl.analysis import DERIVED_COLUMNS, load_run, summarize
from mpimarl.errors import RunFileError
from mpimarl.record.recorder import RunRecorder
from mpimarl.record.schema import LATER_COLUMNS, SCHEMA_VERSION, TABLES, rows_to_array

REPO = Path(__file__).resolve().parents[1]
CONFIG = {"env": {"id": "simple_tag"}, "schedule": "sync", "roles": ["predator", "prey"]}


def _train(policy_id: str, role: str, version: int, env_steps: int, ret: float | None, **extra: object) -> dict:
    return {
        "time": float(version), "generation": version, "rank": 1 if role == "predator" else 2,
        "policy_id": policy_id, "role": role, "version": version, "env_steps": env_steps,
        "episodes": version * 4, "episode_return_mean": ret, "policy_loss": 0.1, "value_loss": 0.2,
        "entropy": 1.0, "approx_kl": 0.01, "clip_fraction": 0.1, "explained_variance": 0.5,
        "learning_rate": 3e-4, "steps_per_s": 1000.0, "wait_s": 0.02, **extra,
    }  # fmt: skip


def _match(policy_id: str, version: int, opponent: str, generation: int, wins: int, episodes: int = 10) -> dict:
    return {
        "time": float(generation), "generation": generation, "kind": "evaluation", "matchmaker": "pool", "rank": 0,
        "policy_id": policy_id, "version": version, "role": "predator", "opponent_id": opponent,
        "opponent_version": -1, "opponent_role": "prey", "episodes": episodes, "wins": wins,
        "draws": 0, "losses": episodes - wins, "return_mean": 1.0, "opponent_return_mean": -1.0,
        "length_mean": 25.0,
    }  # fmt: skip


def _rating(policy_id: str, version: int, role: str, elo: float, generation: int) -> dict:
    return {
        "time": float(generation), "generation": generation, "policy_id": policy_id,
        "version": version, "role": role, "elo": elo, "mu": 25.0, "sigma": 8.0, "games": 20 * generation,
    }  # fmt: skip


def _pool(policy_id: str, role: str, version: int, env_steps: int, parent: int = -1) -> dict:
    return {
        "time": float(version), "generation": version, "policy_id": policy_id, "role": role,
        "version": version, "parent_id": policy_id if parent >= 0 else "", "parent_version": parent,
        "rank": 1 if role == "predator" else 2, "env_steps": env_steps,
    }  # fmt: skip


@pytest.fixture
def run_path(tmp_path: Path) -> Path:
    """A small two-role run: predator 'pred' and prey 'prey' over two generations."""
    path = tmp_path / "run.h5"
    with RunRecorder(path, {"config": CONFIG, "world_size": 3}) as rec:
        rec.append(
            "train",
            [_train("pred", "predator", 1, 1000, 0.5), _train("prey", "prey", 1, 900, -0.5)],
        )
        rec.append(
            "train",
            [_train("pred", "predator", 2, 2000, None), _train("prey", "prey", 2, 1800, -0.2)],
        )
        rec.append("pool", [_pool("pred", "predator", 1, 1000), _pool("prey", "prey", 1, 900)])
        rec.append("pool", [_pool("pred", "predator", 2, 2000, parent=1)])
        rec.append(
            "matches",
            [
                _match("pred", 1, "random", 1, wins=4),
                _match("pred", 2, "random", 2, wins=7),
                _match("pred", 2, "random", 2, wins=9),
                _match("pred", 2, "prey", 2, wins=1),
                {**_match("pred", 2, "random", 2, wins=0), "kind": "training", "rank": 1},
            ],
        )
        rec.append(
            "ratings",
            [
                _rating("pred", 1, "predator", 1000.0, 1),
                _rating("prey", 1, "prey", 1000.0, 1),
                _rating("pred", 2, "predator", 1042.5, 2),
            ],
        )
        rec.save_weights("pred", 1, "predator", np.arange(6, dtype=np.float64), parent=None, layout="flat6")
        rec.save_weights("pred", 2, "predator", np.arange(6) * 2.0, parent=("pred", 1), layout="flat6")
        rec.save_weights("prey", 1, "prey", np.ones(3), parent=None, layout="flat3")
        rec.set_attr("finished", True)
    return path


def test_round_trip_of_every_table_and_the_weights(run_path: Path) -> None:
    run = load_run(run_path)
    assert run.path == run_path and run.config == CONFIG
    assert run.attrs["world_size"] == 3 and run.attrs["finished"] is True
    assert run.attrs["schema_version"] == SCHEMA_VERSION
    for table in TABLES:
        frame = getattr(run, table)
        assert list(frame.columns) == [c.name for c in TABLES[table]] + list(DERIVED_COLUMNS.get(table, ()))
        for col in TABLES[table]:
            if col.is_text:
                assert all(isinstance(v, str) for v in frame[col.name])
            else:
                assert frame[col.name].dtype == col.dtype, (table, col.name)
    assert run.train.policy_id.tolist() == ["pred", "prey", "pred", "prey"]
    assert run.train.env_steps.tolist() == [1000, 900, 2000, 1800]
    assert math.isnan(run.train.episode_return_mean[2])
    assert run.train.wait_s.tolist() == [0.02] * 4
    assert run.pool.parent_id.tolist() == ["", "", "pred"]
    assert run.pool.parent_version.tolist() == [-1, -1, 1]
    assert run.matches.kind.tolist() == ["evaluation"] * 4 + ["training"]
    assert run.matches.wins.tolist() == [4, 7, 9, 1, 0]
    assert run.ratings.elo.tolist() == [1000.0, 1000.0, 1042.5]
    assert run.ratings.score.isna().all()

    weights = run.weights("pred", 2)
    assert weights.dtype == np.float32
    np.testing.assert_array_equal(weights, np.arange(6) * 2.0)
    policies = run.policies()
    shown = ["policy_id", "version", "role", "parent_id", "parent_version", "layout", "size"]
    assert policies[shown].values.tolist() == [
        ["pred", 1, "predator", "", -1, "flat6", 6],
        ["pred", 2, "predator", "pred", 1, "flat6", 6],
        ["prey", 1, "prey", "", -1, "flat3", 3],
    ]


def test_empty_run_loads_empty_typed_tables(tmp_path: Path) -> None:
    path = tmp_path / "empty.h5"
    RunRecorder(path, {"config": {}}).close()
    run = load_run(path)
    assert run.config == {} and run.train.empty and run.policies().empty
    assert run.ratings.elo.dtype == np.float64 and run.pool.columns[0] == "time"
    assert summarize(run).empty


def test_rows_past_committed_are_ignored(run_path: Path) -> None:
    torn = rows_to_array("train", [_train("ghost", "predator", 9, 9, 9.0), _train("ghost", "prey", 9, 9, 9.0)])
    with h5py.File(run_path, "r+") as f:  # an append whose commit never happened
        ds = f["tables/train"]
        ds.resize((ds.shape[0] + 2,))
        ds[-2:] = torn
        assert ds.attrs["committed"] == 4
    run = load_run(run_path)
    assert len(run.train) == 4 and "ghost" not in set(run.train.policy_id)


def test_snapshot_left_incomplete_is_not_listed_or_served(run_path: Path) -> None:
    with h5py.File(run_path, "r+") as f:
        del f["policies/prey/000001"].attrs["complete"]
    run = load_run(run_path)
    assert run.policies().policy_id.tolist() == ["pred", "pred"]
    with pytest.raises(RunFileError, match=r"run\.h5.*'prey' version 1 are incomplete"):
        run.weights("prey", 1)
    with pytest.raises(RunFileError, match=r"run\.h5 stores no weights for policy 'pred' version 7.*\[1, 2\]"):
        run.weights("pred", 7)
    with pytest.raises(RunFileError, match=r"no weights for policy 'nobody'"):
        run.weights("nobody", 1)


def test_summary_per_policy(run_path: Path) -> None:
    summary = summarize(load_run(run_path))
    assert summary.index.tolist() == ["pred", "prey"]
    pred, prey = summary.loc["pred"], summary.loc["prey"]
    assert (pred.role, pred.version, pred.env_steps) == ("predator", 2, 2000)
    assert pred.episode_return_mean == 0.5  # the latest row had no finished episode
    assert pred.elo == 1042.5
    # latest evaluated version (2) vs random, training matches excluded: (7 + 9) / 20
    assert pred.win_rate_vs_random == pytest.approx(0.8) and pred.random_episodes == 20
    # env_steps comes from the latest published snapshot (900), not the later train row (1800)
    assert (prey.role, prey.version, prey.env_steps, prey.elo) == ("prey", 1, 900, 1000.0)
    assert prey.episode_return_mean == -0.2
    assert math.isnan(prey.win_rate_vs_random) and prey.random_episodes == 0


def test_summary_of_a_cooperative_run_reports_team_returns_not_wins(tmp_path: Path) -> None:
    """A team task has no winner: no Elo or win rate against random, but the newest evaluated
    version's team return (episode-weighted, latest generation) beside the random comparator's on
    the same episodes; communication checks are not evaluations against the comparator."""
    path = tmp_path / "run.h5"
    config = {"task": {"kind": "cooperative"}, "evaluation": {"elo_initial": 1000.0}}

    def evaluation(version: int, generation: int, ret: float, random_ret: float, episodes: int, **extra: object
                   ) -> dict:
        return {**_match("team", version, "random", generation, wins=episodes, episodes=episodes), "role": "agent",
                "opponent_role": "agent", "matchmaker": "comparator", "return_mean": ret,
                "opponent_return_mean": random_ret, **extra}

    with RunRecorder(path, {"config": config, "world_size": 2}) as rec:
        rec.append("train", [_train("team", "agent", 1, 1000, 80.0), _train("team", "agent", 2, 2000, 95.0)])
        rec.append("pool", [_pool("team", "agent", 1, 1000), _pool("team", "agent", 2, 2000, parent=1)])
        rec.append("matches", [
            evaluation(1, 1, 50.0, -10.0, 4),
            evaluation(2, 2, 100.0, -20.0, 4),
            evaluation(2, 2, 130.0, -40.0, 12),  # the same version and generation: weighted by episodes
            evaluation(2, 2, 999.0, 5.0, 4, matchmaker="communication", opponent_id="random_partners"),
        ])  # fmt: skip
        rec.append("ratings", [_rating("team", 2, "agent", 1180.0, 2)])
    summary = summarize(load_run(path))
    assert "elo" not in summary.columns and "win_rate_vs_random" not in summary.columns
    team = summary.loc["team"]
    assert (team.role, team.version, team.env_steps, team.episode_return_mean) == ("agent", 2, 2000, 95.0)
    assert team.eval_return_mean == pytest.approx((100.0 * 4 + 130.0 * 12) / 16)
    assert team.random_return_mean == pytest.approx((-20.0 * 4 - 40.0 * 12) / 16)
    assert team.eval_episodes == 16


def test_missing_path_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.h5"
    with pytest.raises(RunFileError, match=f"run file {path} does not exist"):
        load_run(path)


def test_text_file_named_h5_is_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "notes.h5"
    path.write_text("these are not the bytes you are looking for\n")
    with pytest.raises(RunFileError, match=f"run file {path} is not an HDF5 file"):
        load_run(path)


def test_hdf5_file_from_elsewhere_is_not_a_run_file(tmp_path: Path) -> None:
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(RunFileError, match=f"{path} is not an mpimarl run file.*schema_version"):
        load_run(path)


def test_newer_schema_asks_for_an_upgrade(run_path: Path) -> None:
    with h5py.File(run_path, "r+") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(RunFileError, match=f"{run_path} was written with schema version {SCHEMA_VERSION + 1}"):
        load_run(run_path)


def test_wrong_columns_or_truncated_table_is_named(run_path: Path) -> None:
    with h5py.File(run_path, "r+") as f:
        f["tables/ratings"].attrs["committed"] = 99
    with pytest.raises(RunFileError, match=r"run\.h5: table 'ratings' claims 99 committed rows but stores 3"):
        load_run(run_path)
    with h5py.File(run_path, "r+") as f:
        f["tables/ratings"].attrs["committed"] = 3
        del f["tables/pool"]
        f.create_dataset("tables/pool", data=np.zeros(2, dtype=[("time", "f8"), ("mood", "S8")]))
    with pytest.raises(
        RunFileError,
        match=r"table 'pool' does not match.*'policy_id'.*unexpected columns: \['mood'\]",
    ):
        load_run(run_path)


def test_file_from_before_later_columns_still_loads(run_path: Path) -> None:
    """A run file written before the actor columns existed loads; those columns read NaN."""
    before = load_run(run_path).train
    with h5py.File(run_path, "r+") as f:
        old = f["tables/train"]
        committed = int(old.attrs["committed"])
        keep = [n for n in old.dtype.names if n not in LATER_COLUMNS["train"]]
        narrow = np.dtype([(n, old.dtype.fields[n][0]) for n in keep])
        data = np.zeros(old.shape[0], dtype=narrow)
        for n in keep:
            data[n] = old[n]
        del f["tables/train"]
        ds = f.create_dataset("tables/train", data=data, maxshape=(None,))
        ds.attrs["committed"] = committed
    after = load_run(run_path).train
    assert list(after.columns) == list(before.columns)
    assert after[list(LATER_COLUMNS["train"])].isna().all().all()
    pd.testing.assert_frame_equal(after.drop(columns=list(LATER_COLUMNS["train"])),
                                  before.drop(columns=list(LATER_COLUMNS["train"])))


def test_file_cut_short_is_reported_not_crashed(run_path: Path, tmp_path: Path) -> None:
    data = run_path.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(RunFileError, match=str(cut)):
        load_run(cut)


def test_load_returns_plain_dataframes(run_path: Path) -> None:
    run = load_run(run_path)
    assert all(isinstance(getattr(run, t), pd.DataFrame) for t in TABLES)
    assert json.dumps(run.config)  # the config is plain JSON data


# -------------------------------------------------------------------- stored policies (Run.policy)


CONNECT_FOUR: dict = {
    "name": "connect_four_test", "seed": 0, "env": {"id": "pettingzoo.classic.connect_four_v3"},
    "task": {"kind": "competitive", "roles": [{"name": "player", "agents": "player_.*", "team": False}]},
    "ppo": {"hidden": [32], "torso": "mlp", "activation": "tanh"},
}  # fmt: skip
"""Connect four as its shipped config plays it (one role, a seat per player), with a small network."""


def write_policy_run(path: Path, config: dict | Path = CONNECT_FOUR, versions: dict[str, int] | None = None,
                     layout: str | None = None) -> Path:
    """A run file like `mpimarl train` writes, holding real untrained ActorCritic weights.

    `config`: a config dict, or a config file (run with a small network). `versions`: policy id ->
    how many versions to store (0..n-1); the role is the id's prefix. By default connect four's
    player-0 (versions 0, 1) and player-1 (version 0). `layout` overrides the stored layout string.
    """
    import torch

    from mpimarl.algos.networks import ActorCritic, flat_weights
    from mpimarl.config import config_to_dict, load_config, parse_config
    from mpimarl.roles.context import RunContext

    torch.manual_seed(0)
    parsed = parse_config(config) if isinstance(config, dict) else load_config(config, ["ppo.hidden=[32]"])
    ctx = RunContext.build(parsed, None)
    versions = {"player-0": 2, "player-1": 1} if versions is None else versions
    attrs = {"config": config_to_dict(parsed), "name": parsed.name, "world_size": 1 + len(versions)}
    with RunRecorder(path, attrs) as rec:
        for policy_id, count in versions.items():
            role = policy_id.rsplit("-", 1)[0]
            shape = ctx.shape(role)
            for version in range(count):
                rec.save_weights(policy_id, version, role, flat_weights(ActorCritic(shape)),
                                 parent=(policy_id, version - 1) if version else None, layout=layout or shape.layout)
    return path


@pytest.fixture(scope="module")
def policy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A connect-four run with untrained weights: player-0 at versions 0 and 1, player-1 at 0."""
    import torch

    torch.set_num_threads(1)
    return write_policy_run(tmp_path_factory.mktemp("policy") / "run.h5")


def _board_with_full_columns(open_columns: tuple[int, ...]) -> dict[str, np.ndarray]:
    """A raw connect_four_v3 observation whose columns are full except `open_columns` (empty)."""
    board = np.zeros((6, 7, 2), np.int8)
    for column in range(7):
        if column not in open_columns:
            for row in range(6):
                board[row, column, (row + column) % 2] = 1  # checkerboard: nobody has four
    mask = np.array([column in open_columns for column in range(7)], np.int8)
    return {"observation": board, "action_mask": mask}


def test_stored_policy_never_picks_a_full_column(policy_run: Path) -> None:
    from pettingzoo.classic import connect_four_v3

    run = load_run(policy_run)
    policy = run.policy("player-0")
    assert (policy.policy_id, policy.version, policy.role) == ("player-0", 1, "player")  # the latest by default
    assert str(policy.key) == "player-0@1"
    obs = _board_with_full_columns((2, 5))
    picks = {policy.act(obs) for _ in range(200)}
    assert picks == {2, 5}  # sampled: both open columns come up, never a full one
    assert policy.act(obs, greedy=True) in {2, 5}
    assert {policy.act(obs, mask=np.ones(7, bool)) for _ in range(200)} - {2, 5}  # the mask is what held it
    assert all(policy.act(obs, mask=np.eye(7, dtype=bool)[3]) == 3 for _ in range(20))  # an explicit mask wins

    env = connect_four_v3.env()  # a whole game on the raw environment: every move legal
    env.reset(seed=1)
    final: dict[str, float] = {}
    for agent in env.agent_iter():
        observation, reward, terminated, truncated, _ = env.last()
        if terminated or truncated:
            final[agent] = reward
            env.step(None)
            continue
        action = policy.act(observation)
        assert observation["action_mask"][action] == 1
        env.step(action)
    assert sorted(final.values()) in ([-1, 1], [0, 0])  # a win or a draw, no illegal-move penalty

    batched = policy.acting_policy(greedy=True)
    flat = np.stack([policy.encode(obs)[0]] * 3)
    masks = np.stack([policy.encode(obs)[1]] * 3)
    assert set(batched.act(flat, masks).tolist()) <= {2, 5}


def test_unknown_policy_or_version_names_the_stored_ones(policy_run: Path) -> None:
    run = load_run(policy_run)
    assert run.latest_versions() == {"player-0": 1, "player-1": 0}
    assert run.policy("player-0", 0).version == 0
    with pytest.raises(KeyError, match=r"no policy 'player-7'; stored policies: player-0, player-1"):
        run.policy("player-7")
    with pytest.raises(ValueError, match=r"no version 5 of policy 'player-0'; stored versions: 0, 1"):
        run.policy("player-0", 5)
    with pytest.raises(RunFileError):  # the CLI shows both as one message with exit code 2
        run.policy("player-7")


def test_layout_mismatch_names_both_layouts(tmp_path: Path) -> None:
    wrong = "mlp/obs=84/hidden=64/tanh/discrete=7"
    path = write_policy_run(tmp_path / "run.h5", versions={"player-0": 1}, layout=wrong)
    with pytest.raises(RunFileError, match=rf"layout '{wrong}'.*'mlp/obs=84/hidden=32/tanh/discrete=7'"):
        load_run(path).policy("player-0")
