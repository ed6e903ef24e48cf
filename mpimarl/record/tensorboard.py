"""TensorBoard event files as a view of a run file: written live by rank 0, or converted afterwards.

The run file stays the record; TensorBoard is a view of it. One code path turns table rows into
scalars (:class:`ScalarBuilder`), for both uses:

- live (``logging.tensorboard: true``): the recorder hands every batch of rows it has made durable
  to a :class:`TensorBoardView` (:meth:`mpimarl.record.recorder.RunRecorder.add_observer`);
- afterwards (``mpimarl tensorboard RUN.h5 [--out DIR]``): :func:`convert` loads the run file's
  committed rows (of a finished or of a running run) and feeds them through the same builder.

The scalars, with the step each is plotted at (wall time: the run's start plus the row's ``time``):

=====================================================  ============================  ===============
tag                                                    value                         step
=====================================================  ============================  ===============
``policy/<id>/return``, ``episode_length``,            the ``train`` row's column    ``env_steps``
``policy_loss``, ``value_loss``, ``entropy``,
``approx_kl``, ``clip_fraction``,
``explained_variance``, ``learning_rate``,
``steps_per_s``, ``wait_s``, ``policy_lag_mean``
``rating/<role>/<id>/elo``, ``mu``, ``sigma``          the ``ratings`` row           snapshot version
``vs_baseline/<role>/<id>/<baseline>/score``,          evaluation ``matches`` row    snapshot version
``.../return``                                         against a fixed baseline
                                                       ((wins + draws/2) / episodes)
``exploitability/<role>/<id>``                         ``exploitability`` row        ``generation``
``population/<role>/effective_support``                exp(entropy) of one meta-     ``generation``
                                                       strategy update's weights
                                                       (per matchmaker: ``.../<mm>``
                                                       when a role has several)
``population/<role>/pool_size``                        snapshots of the role         ``generation``
                                                       published so far
=====================================================  ============================  ===============

NaN values (a column not measured in that row) are left out. TensorBoard itself is optional
(``pip install -e '.[tensorboard]'``): :func:`require_tensorboard` says how to get it.
"""

from __future__ import annotations

import calendar
import math
import shutil
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mpimarl.errors import ConfigError, RunFileError
from mpimarl.record.schema import TABLES, columns

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

TRAIN_SCALARS: dict[str, str] = {
    "episode_return_mean": "return",
    "episode_length_mean": "episode_length",
    "policy_loss": "policy_loss",
    "value_loss": "value_loss",
    "entropy": "entropy",
    "approx_kl": "approx_kl",
    "clip_fraction": "clip_fraction",
    "explained_variance": "explained_variance",
    "learning_rate": "learning_rate",
    "steps_per_s": "steps_per_s",
    "wait_s": "wait_s",
    "policy_lag_mean": "policy_lag_mean",
}
"""``train`` column -> scalar name under ``policy/<id>/``."""

FOLDER = "tensorboard"
"""Default folder of the event files, beside ``run.h5`` (live) or given by ``--out``."""

FLUSH_EVERY_S = 2.0
"""The live view flushes its event file at most this often (and when the run file closes)."""

INSTALL_HINT = "install the extra: pip install -e '.[tensorboard]' (or pip install tensorboard)"


@dataclass(frozen=True)
class Scalar:
    """One point of one TensorBoard curve."""

    tag: str
    value: float
    step: int
    time: float
    """Seconds since the run started (the row's ``time``)."""


def require_tensorboard() -> None:
    """ConfigError unless the optional ``tensorboard`` package can be imported."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"logging.tensorboard is true but TensorBoard cannot be imported ({exc}); "
                          f"{INSTALL_HINT}, or set logging.tensorboard: false") from None


# ---------------------------------------------------------------------------------------------
# Rows -> scalars (the one code path of both the live view and the conversion)
# ---------------------------------------------------------------------------------------------


class ScalarBuilder:
    """Turns table rows, fed in the order they were recorded, into :class:`Scalar` points.

    Its only state is per table (the snapshots each role has published so far, for the pool size),
    so feeding one table's rows at a time gives the same points as feeding them as they were made.
    """

    def __init__(self) -> None:
        self._published: dict[str, set[tuple[str, int]]] = {}
        self._matchmakers: dict[str, set[str]] = {}

    def scalars(self, table: str, rows: pd.DataFrame) -> list[Scalar]:
        """The points made by `rows` of `table` (a DataFrame with the table's columns)."""
        if rows.empty:
            return []
        make = {
            "train": self._train, "ratings": self._ratings, "matches": self._matches, "pool": self._pool,
            "meta": self._meta, "exploitability": self._exploitability,
        }.get(table)
        return [] if make is None else list(make(rows))

    @staticmethod
    def _train(rows: pd.DataFrame) -> Iterator[Scalar]:
        for row in rows.itertuples(index=False):
            for column, name in TRAIN_SCALARS.items():
                yield from _point(f"policy/{row.policy_id}/{name}", getattr(row, column), row.env_steps, row.time)

    @staticmethod
    def _ratings(rows: pd.DataFrame) -> Iterator[Scalar]:
        for row in rows.itertuples(index=False):
            for column in ("elo", "mu", "sigma"):
                yield from _point(f"rating/{row.role}/{row.policy_id}/{column}", getattr(row, column), row.version,
                                  row.time)

    @staticmethod
    def _matches(rows: pd.DataFrame) -> Iterator[Scalar]:
        # Evaluation matches against a fixed baseline (version -1); training and pool matches are
        # in the run file (and the ratings), not plotted here.
        baseline = rows[(rows.kind == "evaluation") & (rows.opponent_version == -1) & (rows.episodes > 0)]
        for row in baseline.itertuples(index=False):
            tag = f"vs_baseline/{row.role}/{row.policy_id}/{row.opponent_id}"
            yield from _point(f"{tag}/score", (row.wins + row.draws / 2) / row.episodes, row.version, row.time)
            yield from _point(f"{tag}/return", row.return_mean, row.version, row.time)

    def _pool(self, rows: pd.DataFrame) -> Iterator[Scalar]:
        for row in rows.itertuples(index=False):
            published = self._published.setdefault(row.role, set())
            published.add((row.policy_id, int(row.version)))
            yield from _point(f"population/{row.role}/pool_size", len(published), row.generation, row.time)

    def _meta(self, rows: pd.DataFrame) -> Iterator[Scalar]:
        # One meta-strategy update is the rows of one (time, generation, role, matchmaker): the
        # server writes each update in one append, at one time.
        for role, of_role in rows.groupby("role", sort=False):
            self._matchmakers.setdefault(str(role), set()).update(of_role.matchmaker)
        for (t, generation, role, matchmaker), update in rows.groupby(
                ["time", "generation", "role", "matchmaker"], sort=False):
            tag = f"population/{role}/effective_support"
            if len(self._matchmakers[str(role)]) > 1:
                tag += f"/{matchmaker}"
            yield from _point(tag, effective_support(update.weight.to_numpy()), generation, t)

    @staticmethod
    def _exploitability(rows: pd.DataFrame) -> Iterator[Scalar]:
        for row in rows.itertuples(index=False):
            yield from _point(f"exploitability/{row.role}/{row.policy_id}", row.exploitability, row.generation,
                              row.time)


def effective_support(weights: np.ndarray) -> float:
    """exp(Shannon entropy) of a distribution: 1 for a point mass, n for n equal weights."""
    w = np.asarray(weights, dtype=float)
    w = w[np.isfinite(w) & (w > 0)]
    if w.size == 0:
        return math.nan
    p = w / w.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def _point(tag: str, value: Any, step: Any, t: Any) -> Iterator[Scalar]:
    v = float(value)
    if math.isfinite(v):
        yield Scalar(tag, v, int(step), float(t))


def table_frame(table: str, data: np.ndarray) -> pd.DataFrame:
    """Rows of `table` (a structured array as the recorder stores them) as a DataFrame, text decoded."""
    out = {}
    for col in columns(table):
        values = data[col.name]
        if col.is_text:
            out[col.name] = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values.tolist()]
        else:
            out[col.name] = values.astype(col.dtype.newbyteorder("="))
    return pd.DataFrame(out)


# ---------------------------------------------------------------------------------------------
# Writing event files
# ---------------------------------------------------------------------------------------------


class TensorBoardView:
    """Writes a run's scalars into TensorBoard event files in `folder` (created if missing).

    `start` is the run's start as a Unix time (the run file's ``created`` attribute); each point's
    wall time is `start` plus its row's ``time``. Event files already in `folder` are removed first
    (a conversion or a resumed run writes the whole view anew; other files stay).
    """

    def __init__(self, folder: str | Path, start: float) -> None:
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for old in self.folder.glob("events.out.tfevents.*"):
                old.unlink()
        except OSError as exc:
            raise RunFileError(f"cannot write TensorBoard events to {self.folder}: {exc.strerror or exc}") from None
        self.start = start
        self.builder = ScalarBuilder()
        self.points = 0
        self._writer: SummaryWriter | None = SummaryWriter(str(self.folder), flush_secs=3600)
        self._flushed = time.monotonic()
        self._failed = False

    def add(self, table: str, rows: pd.DataFrame) -> int:
        """Write the points of `rows` of `table`; returns how many."""
        if self._writer is None:
            return 0
        points = self.builder.scalars(table, rows)
        for p in points:
            self._writer.add_scalar(p.tag, p.value, p.step, walltime=self.start + p.time)
        self.points += len(points)
        return len(points)

    def observe(self, table: str, data: np.ndarray) -> None:
        """The recorder's observer: rows just made durable in the run file. A failure to write the
        view (a full disk) is reported once on stderr and ends the view, never the run."""
        if self._writer is None or self._failed:
            return
        try:
            self.add(table, table_frame(table, data))
            if time.monotonic() - self._flushed > FLUSH_EVERY_S:
                self._writer.flush()
                self._flushed = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - the view must never stop the run that it shows
            self._failed = True
            print(f"mpimarl: TensorBoard view {self.folder} stopped ({type(exc).__name__}: {exc}); the run file "
                  "is unaffected: convert it later with `mpimarl tensorboard`", file=sys.stderr, flush=True)

    def close(self) -> None:
        """Flush and close the event file (a failure is reported on stderr: the run file matters more)."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            writer.close()
        except Exception as exc:  # noqa: BLE001 - called while the run file closes; never stop that
            print(f"mpimarl: closing the TensorBoard view {self.folder} failed ({type(exc).__name__}: {exc})",
                  file=sys.stderr, flush=True)


def run_start(attrs: Mapping[str, Any]) -> float:
    """Unix time of a run's start, from its ``created`` attribute (0 when absent or unreadable)."""
    created = attrs.get("created")
    try:
        return float(calendar.timegm(time.strptime(str(created), "%Y-%m-%dT%H:%M:%SZ")))
    except (TypeError, ValueError, OverflowError):
        return 0.0


def feed_run(view: TensorBoardView, tables: Mapping[str, pd.DataFrame], order: Iterable[str] = TABLES) -> int:
    """Feed a loaded run's tables into `view`, table by table; returns the number of points."""
    return sum(view.add(name, tables[name]) for name in order if name in tables)


def convert(run_path: str | Path, out: str | Path | None = None) -> tuple[Path, int]:
    """Write the event files of run file `run_path` into `out` (default: ``tensorboard/`` beside it).

    Works on a finished run and on one still being written (its committed rows so far). Returns the
    folder and the number of points. A file that is not a run file raises RunFileError naming it,
    before anything is written; TensorBoard missing raises ConfigError.
    """
    from mpimarl.analysis import load_run

    require_tensorboard()
    run = load_run(run_path)
    folder = Path(out) if out is not None else Path(run_path).parent / FOLDER
    tables = {name: getattr(run, name) for name in TABLES}
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    view = TensorBoardView(tmp, run_start(run.attrs))
    try:
        points = feed_run(view, tables)
    finally:
        view.close()
    # Only now replace the old events: an interrupted conversion leaves the previous view whole.
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("events.out.tfevents.*"):
        old.unlink()
    for new in tmp.iterdir():
        new.replace(folder / new.name)
    tmp.rmdir()
    return folder, points


def attach_live_view(recorder: Any, folder: str | Path, resumed: bool) -> TensorBoardView:
    """Rank 0: make `recorder` feed a live view in `folder`. A resumed run first rewrites the view
    from the run file's rows (cut back to the checkpoint), so no point is shown twice."""
    view = TensorBoardView(folder, run_start({"created": recorder.get_attr("created")}))
    if resumed:
        feed_run(view, {name: table_frame(name, recorder.read_table(name)) for name in TABLES})
    recorder.add_observer(view.observe, view.close)
    return view
