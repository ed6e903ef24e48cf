"""The run-file schema: columns are as documented, and rows are checked before they are stored."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest

from mpimarl.record.schema import TABLES, columns, rows_to_array, table_dtype


def test_tables_have_the_documented_columns() -> None:
    assert list(TABLES) == ["train", "matches", "ratings", "pool", "payoff", "meta", "exploitability", "retention"]
    names = {table: [c.name for c in cols] for table, cols in TABLES.items()}
    assert names["train"][:10] == [
        "time", "generation", "rank", "policy_id", "role", "version", "env_steps", "episodes",
        "episode_return_mean", "episode_length_mean",
    ]  # fmt: skip
    assert names["train"][-9:] == ["steps_per_s", "wait_s", "learner_ranks", "actor_ranks", "policy_lag_mean",
                                   "policy_lag_max", "vtrace_rho_mean", "cut_off_ranks", "segments_dropped"]
    assert names["matches"] == [
        "time", "generation", "kind", "matchmaker", "rank", "policy_id", "version", "role", "opponent_id",
        "opponent_version", "opponent_role", "episodes", "wins", "draws", "losses", "return_mean",
        "opponent_return_mean", "length_mean",
    ]  # fmt: skip
    assert names["ratings"] == [
        "time",
        "generation",
        "policy_id",
        "version",
        "role",
        "elo",
        "mu",
        "sigma",
        "games",
        "score",
    ]
    assert names["pool"] == [
        "time", "generation", "policy_id", "role", "version", "parent_id", "parent_version", "rank",
        "env_steps",
    ]  # fmt: skip
    assert names["retention"] == ["time", "generation", "policy_id", "role", "version", "weights", "reason"]
    for table, cols in TABLES.items():
        assert len(set(names[table])) == len(cols), f"duplicate column in {table}"
        assert all(c.description for c in cols), f"undocumented column in {table}"
    dtype = table_dtype("train")
    assert h5py.check_string_dtype(dtype["policy_id"]).encoding == "utf-8"
    assert h5py.check_string_dtype(dtype["role"]).encoding == "utf-8"
    assert dtype["rank"] == np.dtype("<i4") and dtype["version"] == np.dtype("<i8")


def _pool_row(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "time": 1.5, "generation": 2, "policy_id": "pred_0", "role": "predator", "version": 3,
        "parent_id": "", "parent_version": -1, "rank": 1, "env_steps": 4096,
    }  # fmt: skip
    row.update(overrides)
    return row


def test_rows_become_a_structured_array_with_utf8_text() -> None:
    data = rows_to_array("pool", [_pool_row(), _pool_row(policy_id="joueur_é", version=4)])
    assert data.dtype == table_dtype("pool")
    assert data["version"].tolist() == [3, 4]
    assert data["policy_id"][1] == "joueur_é"
    assert data["parent_version"].tolist() == [-1, -1]


def test_missing_float_is_nan_but_missing_int_or_text_is_an_error() -> None:
    row = _pool_row()
    del row["time"]
    assert math.isnan(rows_to_array("pool", [row])["time"][0])
    assert math.isnan(rows_to_array("pool", [_pool_row(time=None)])["time"][0])
    row = _pool_row()
    del row["parent_version"]
    with pytest.raises(ValueError, match=r"'pool'.*'parent_version'.*missing"):
        rows_to_array("pool", [row])
    row = _pool_row()
    del row["role"]
    with pytest.raises(ValueError, match=r"'pool'.*'role'"):
        rows_to_array("pool", [row])


def test_unknown_column_or_table_is_named() -> None:
    with pytest.raises(ValueError, match=r"table 'pool' has no column 'elo'"):
        rows_to_array("pool", [_pool_row(elo=1000.0)])
    with pytest.raises(ValueError, match=r"unknown table 'payof'"):
        columns("payof")


def test_bad_values_are_rejected_not_coerced() -> None:
    with pytest.raises(ValueError, match=r"'version'.*expected an integer"):
        rows_to_array("pool", [_pool_row(version=3.7)])
    with pytest.raises(ValueError, match=r"'time'.*expected a number"):
        rows_to_array("pool", [_pool_row(time="soon")])
    with pytest.raises(ValueError, match=r"'policy_id'.*expected a string"):
        rows_to_array("pool", [_pool_row(policy_id=17)])
    long_lineup = "+".join(f"player-{i}@{i}" for i in range(40))  # wider than any fixed column was
    assert rows_to_array("pool", [_pool_row(parent_id=long_lineup)])["parent_id"][0] == long_lineup
    with pytest.raises(ValueError, match=r"'rank'.*does not fit"):
        rows_to_array("pool", [_pool_row(rank=2**40)])
    assert rows_to_array("pool", [_pool_row(version=np.int64(5))])["version"][0] == 5
