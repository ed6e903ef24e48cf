"""The layout of a run file: its tables, their columns, and the conversion of rows into arrays.

A run file is one HDF5 file written only by rank 0 (:class:`mpimarl.record.recorder.RunRecorder`)
and read by :func:`mpimarl.analysis.load_run`:

- file attributes: the resolved ``config`` (JSON), ``schema_version``, ``created``,
  ``mpimarl_version`` and whatever else the server records (world size, hostnames, seeds,
  ``finished``, ...). Values that were dicts, lists or None are stored as JSON strings; the JSON
  list ``json_attrs`` names them.
- ``/tables/<name>``: one resizable, chunked compound dataset per table, one row per event,
  append-only.
  Its integer attribute ``committed`` is the number of whole rows; it is written after the rows are
  flushed, so rows past it are debris of an interrupted append and readers ignore them.
- ``/policies/<policy_id>/<version:06d>``: a policy snapshot's flat float32 weights, with attributes
  ``role``, ``parent_id``, ``parent_version``, ``layout`` and ``complete`` (written last). A snapshot
  whose weights the retention policy dropped keeps its attributes, an empty (or, archived, float16)
  array and ``stored`` = 'none' (or 'float16'); the ``retention`` table records each decision.

The columns are defined once, here, as data (:data:`TABLES`); the recorder, the loader and the
documentation (``docs/gen_reference.py``) all read them from this module.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

SCHEMA_VERSION = 2
"""Version of the run-file layout. Bump it when a table, column or attribute changes meaning.
Version 2: text columns are variable-length UTF-8 (no width limit: long line-ups fit); the tables
``payoff``, ``meta`` and ``exploitability``; ``ratings`` has per-role Elo and Plackett-Luce mu/sigma;
``matches`` names the matchmaker that drew each line-up."""

LATER_COLUMNS: dict[str, tuple[str, ...]] = {
    "train": ("actor_ranks", "policy_lag_mean", "policy_lag_max", "vtrace_rho_mean", "cut_off_ranks",
              "segments_dropped"),
}
"""Float columns added to a table after its schema version first shipped: a file written before
them still loads, and they read NaN ("not recorded") there."""

RANK_FIELDS: dict[str, str] = {
    "host": "the rank's host (MPI processor name)",
    "local_rank": "its rank among the ranks of its node (MPI_COMM_TYPE_SHARED)",
    "device": "where it computed: 'cpu' or 'cuda:N' (only ranks that learn hold a GPU)",
    "gpu_name": "the GPU's name, or None on the CPU",
    "torch": "torch version",
    "cuda": "the CUDA version torch was built with, or None",
    "cudnn": "the cuDNN version, or None",
    "mpi_library": "the MPI library's version line",
    "torch_threads": "torch's intra-op threads",
    "deterministic": "whether deterministic kernels were on (trainer.deterministic)",
}
"""Keys of each entry of the ``ranks`` file attribute (one per rank, rank order; a resume records its
own under ``resumes``). Files written before it have only ``hosts``; :meth:`mpimarl.analysis.Run.ranks`
reads them with the other fields missing."""

FORMAT_NAME = "mpimarl-run"
"""Value of the ``format`` file attribute that marks an HDF5 file as an mpimarl run file."""

MAX_POLICY_ID_BYTES = 64
"""Longest policy id the recorder accepts (HDF5 group names stay readable); table text has no limit."""

TABLES_GROUP = "tables"
"""HDF5 group holding one dataset per table."""

POLICIES_GROUP = "policies"
"""HDF5 group holding one subgroup of weight snapshots per policy id."""

COMMITTED_ATTR = "committed"
"""Dataset attribute counting the whole rows of a table."""

JSON_ATTRS_ATTR = "json_attrs"
"""File attribute listing (as JSON) the attribute names whose values are JSON-encoded."""

RESERVED_ATTRS = frozenset({"schema_version", "created", "format", JSON_ATTRS_ATTR})
"""File attributes that only the recorder writes."""

CHUNK_ROWS = 128
"""Rows per HDF5 chunk. Chunks are uncompressed, so a re-flushed partial chunk is rewritten in
place and the committed rows in it keep their bytes."""


@dataclass(frozen=True)
class Column:
    """One column of a table: its name, numpy storage dtype and a one-line description."""

    name: str
    dtype: np.dtype
    description: str

    @property
    def is_text(self) -> bool:
        """Whether the column holds variable-length UTF-8 text (decoded to ``str`` on load)."""
        return h5py.check_string_dtype(self.dtype) is not None

    @property
    def is_float(self) -> bool:
        """Whether the column holds floats (a missing value is stored as NaN)."""
        return self.dtype.kind == "f"


_F8 = np.dtype("<f8")
_I8 = np.dtype("<i8")
_I4 = np.dtype("<i4")
_ID = h5py.string_dtype("utf-8")
_LABEL = _ID


def _time() -> Column:
    return Column("time", _F8, "seconds since the run started")


def _generation() -> Column:
    return Column("generation", _I8, "server generation (sync schedule round) when the row was made")


TABLES: dict[str, tuple[Column, ...]] = {
    "train": (
        _time(),
        _generation(),
        Column("rank", _I4, "MPI rank of the trainer"),
        Column("policy_id", _ID, "id of the policy being trained"),
        Column("role", _LABEL, "role the policy plays"),
        Column("version", _I8, "version of the policy after this update"),
        Column("env_steps", _I8, "environment steps taken by this trainer so far (cumulative)"),
        Column("episodes", _I8, "episodes finished by this trainer so far (cumulative)"),
        Column(
            "episode_return_mean",
            _F8,
            "mean return of the learner's agents over episodes finished in this update (NaN if none)",
        ),
        Column(
            "episode_length_mean",
            _F8,
            "mean length of episodes finished in this update (NaN if none)",
        ),
        Column("policy_loss", _F8, "policy (actor) loss of the update"),
        Column("value_loss", _F8, "value (critic) loss of the update"),
        Column("entropy", _F8, "mean policy entropy"),
        Column("approx_kl", _F8, "approximate KL divergence between the old and new policy"),
        Column("clip_fraction", _F8, "fraction of samples whose probability ratio was clipped"),
        Column("explained_variance", _F8, "explained variance of the value function on the returns"),
        Column("learning_rate", _F8, "learning rate used by the update"),
        Column("steps_per_s", _F8, "environment steps per second of this trainer"),
        Column("wait_s", _F8, "seconds the trainer waited on the server since its previous row"),
        Column("learner_ranks", _F8, "ranks training the policy together (data-parallel group size; NaN: one)"),
        Column("actor_ranks", _F8, "IMPALA actor ranks feeding the learner (NaN: none, the trainer plays itself)"),
        Column("policy_lag_mean", _F8, "mean over the batch's segments of learner version minus behaviour version"),
        Column("policy_lag_max", _F8, "largest policy lag (updates) of a segment in the batch"),
        Column("vtrace_rho_mean", _F8, "mean truncated importance weight min(rho_bar, pi/mu) of the batch"),
        Column("cut_off_ranks", _F8, "learner group ranks whose rollout the straggler cut-off ended early in "
               "this update (NaN: no cut-off configured)"),
        Column("segments_dropped", _F8, "async actors: segments discarded since the previous row because their "
               "policy lag exceeded trainer.max_policy_lag (NaN: no actors)"),
    ),
    "matches": (
        _time(),
        _generation(),
        Column("kind", _LABEL, "'evaluation' (scheduled by the server) or 'training'"),
        Column(
            "matchmaker",
            _LABEL,
            "training: the strategy that drew the line-up ('exploiter' for main exploiters, 'baseline' for "
            "a fixed opponent); evaluation: why it was played ('baseline', 'pool', 'comparator', 'par', "
            "'anchor', 'crossplay', 'communication')",
        ),
        Column("rank", _I4, "MPI rank that played the match (0 for server evaluations)"),
        Column("policy_id", _ID, "id of the policy on this side"),
        Column("version", _I8, "version of the policy on this side"),
        Column("role", _LABEL, "role of the policy on this side"),
        Column("opponent_id", _ID, "the other seats' policies: 'id' for one seat, 'id@v+id@v' for several; "
               "'random' is the uniform-random baseline, '-' when there is no other side"),
        Column("opponent_version", _I8, "version of the other side's policy (-1 for fixed baselines)"),
        Column("opponent_role", _LABEL, "role of the other side (several seats joined with '+')"),
        Column("episodes", _I8, "episodes played"),
        Column("wins", _I8, "episodes won by this side"),
        Column("draws", _I8, "episodes drawn"),
        Column("losses", _I8, "episodes lost by this side"),
        Column("return_mean", _F8, "mean episode return of this side"),
        Column("opponent_return_mean", _F8, "mean episode return of the other side"),
        Column("length_mean", _F8, "mean episode length"),
    ),
    "ratings": (
        _time(),
        _generation(),
        Column("policy_id", _ID, "id of the rated policy"),
        Column("version", _I8, "version of the rated policy"),
        Column("role", _LABEL, "role of the rated policy"),
        Column("elo", _F8, "Elo rating after this update (per role, anchored at that role's random baseline)"),
        Column("mu", _F8, "Plackett-Luce (openskill) skill estimate"),
        Column("sigma", _F8, "uncertainty of mu (one standard deviation)"),
        Column("games", _I8, "rated games played by this policy version so far"),
        Column("score", _F8, "mean evaluation return (NaN when unknown)"),
    ),
    "pool": (
        _time(),
        _generation(),
        Column("policy_id", _ID, "id of the published policy"),
        Column("role", _LABEL, "role of the published policy"),
        Column("version", _I8, "version of the published snapshot"),
        Column("parent_id", _ID, "policy the snapshot was derived from ('' if none)"),
        Column("parent_version", _I8, "version of the parent (-1 if none)"),
        Column("rank", _I4, "MPI rank that published it"),
        Column("env_steps", _I8, "environment steps the policy had been trained on when published"),
    ),
    "payoff": (
        _time(),
        _generation(),
        Column("role", _LABEL, "role of the row policy"),
        Column("row_id", _ID, "the row snapshot ('policy@version') or baseline ('random', a scripted name)"),
        Column("column_id", _ID, "the other seats: one snapshot or baseline, or several joined with '+'"),
        Column("column_role", _LABEL, "role(s) of the column side, joined with '+'"),
        Column("source", _LABEL, "'sampled' (evaluation episodes) or 'exact' (expected values, OpenSpiel)"),
        Column("games", _I8, "games played so far (cumulative; 0 for exact entries)"),
        Column("wins", _I8, "games won by the row (cumulative)"),
        Column("draws", _I8, "games drawn (cumulative)"),
        Column("losses", _I8, "games lost by the row (cumulative)"),
        Column("score", _F8, "(wins + draws/2) / games; NaN for exact entries"),
        Column("score_low", _F8, "Wilson 95% interval of score, lower end"),
        Column("score_high", _F8, "Wilson 95% interval of score, upper end"),
        Column("return_mean", _F8, "mean return of the row side (the expected return for exact entries)"),
        Column("opponent_return_mean", _F8, "mean return of the column side"),
    ),
    "meta": (
        _time(),
        _generation(),
        Column("role", _LABEL, "role of the snapshot"),
        Column("policy_id", _ID, "policy id of the snapshot"),
        Column("version", _I8, "version of the snapshot"),
        Column("matchmaker", _LABEL, "the matchmaking strategy whose distribution 'weight' is"),
        Column("weight", _F8, "probability the matchmaker draws this snapshot for a seat of its role"),
        Column("nash_weight", _F8, "weight in the maximum-entropy Nash of the role's payoff table"),
        Column("nash_rating", _F8, "Nash-averaged rating (Balduzzi et al. 2018): copies cannot inflate it"),
    ),
    "exploitability": (
        _time(),
        _generation(),
        Column("policy_id", _ID, "a policy id (its latest snapshot) or 'population' (the meta-strategy mixture)"),
        Column("version", _I8, "version of the snapshot (-1 for the population)"),
        Column("role", _LABEL, "role of the policy"),
        Column("exploitability", _F8, "NashConv / number of players (OpenSpiel's convention), exact"),
        Column("nash_conv", _F8, "sum over players of the best response's gain"),
    ),
    "retention": (
        _time(),
        _generation(),
        Column("policy_id", _ID, "policy id of the snapshot decided"),
        Column("role", _LABEL, "role of the snapshot"),
        Column("version", _I8, "version of the snapshot"),
        Column("weights", _LABEL, "what the run file keeps of its weights from now on: 'float32' (all, "
               "drawable), 'float16' (an analysis copy, never drawn) or 'none' (metadata and ratings only)"),
        Column("reason", _LABEL, "why: 'every', 'anchor' or 'weight' (kept forever, pool.keep_every, pool.keep, "
               "pool.keep_weight_above) or 'dropped' (left the latest pool.keep_latest)"),
    ),
}
"""Every table of a run file, in column order. Each row is one event; tables are append-only."""

OPTIONAL_TABLES = frozenset({"retention"})
"""Tables added after schema version 2 first shipped: a file written before them loads with the table empty."""


def columns(table: str) -> tuple[Column, ...]:
    """The columns of ``table``; raises ValueError naming it and the known tables if unknown."""
    try:
        return TABLES[table]
    except KeyError:
        known = ", ".join(TABLES)
        raise ValueError(f"unknown table {table!r}; the tables are: {known}") from None


def table_dtype(table: str) -> np.dtype:
    """The numpy structured dtype that stores one row of ``table``."""
    return np.dtype([(c.name, c.dtype) for c in columns(table)])


def rows_to_array(table: str, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Convert row dicts into a structured array of :func:`table_dtype`.

    A missing (or None) float field becomes NaN. A missing int or text field, an unknown column, an
    int field given a non-integer, or a text longer than its column's width raises ValueError naming
    the table, the row index and the column.
    """
    cols = columns(table)
    known = {c.name for c in cols}
    out = np.zeros(len(rows), dtype=table_dtype(table))
    for i, row in enumerate(rows):
        unknown = [key for key in row if key not in known]
        if unknown:
            raise ValueError(
                f"table {table!r} has no column {unknown[0]!r} (row {i}); "
                f"its columns are: {', '.join(c.name for c in cols)}"
            )
        for col in cols:
            out[col.name][i] = _cell(table, i, col, row.get(col.name))
    return out


def _cell(table: str, index: int, col: Column, value: Any) -> Any:
    """Check and convert one value for ``col``; see :func:`rows_to_array` for the rules."""
    where = f"table {table!r}, row {index}, column {col.name!r}"
    if col.is_float:
        if value is None:
            return math.nan
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected a number, got {value!r}") from None
    if value is None:
        raise ValueError(f"{where}: missing value (only float columns may be left out)")
    if col.is_text:
        text = value.decode("utf-8") if isinstance(value, bytes) else value
        if not isinstance(text, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return text
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{where}: expected an integer, got {value!r}") from None
    info = np.iinfo(col.dtype)
    if not info.min <= number <= info.max:
        raise ValueError(f"{where}: {number} does not fit in {col.dtype.name}")
    return number


def table_descriptions(table: str) -> dict[str, str]:
    """Column name -> one-line description for ``table`` (stored with its dataset, and for docs)."""
    return {c.name: c.description for c in columns(table)}
