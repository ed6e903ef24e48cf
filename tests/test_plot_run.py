"""analysis/plot_run.py on real run files: every figure is written, empty tables are skipped (also
the league figures of a run without payoff/meta/exploitability rows), and a bad run file exits with
code 2 and a message naming it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from mpimarl.record.recorder import RunRecorder

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "analysis" / "plot_run.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIGURES = ("learning_curves.png", "ratings.png", "vs_random.png", "matchups.png", "throughput.png")
LEAGUE_FIGURES = ("rating_uncertainty.png", "payoff.png", "meta_strategy.png", "exploitability.png")
ALL_FIGURES = FIGURES + LEAGUE_FIGURES
COOP_FIGURES = ("crossplay.png", "communication.png")  # cooperative runs with several roles
POLICIES = {"player-0": 1, "player-1": 2}  # policy id -> trainer rank
VERSIONS = (1, 2, 3)


def _train(policy_id: str, version: int, step: int) -> dict:
    rank = POLICIES[policy_id]
    return {
        "time": 10.0 * version + step, "generation": version, "rank": rank, "policy_id": policy_id,
        "role": "player", "version": version, "env_steps": 1000 * version + 100 * step,
        "episodes": 10 * version + step, "episode_return_mean": 0.1 * version - 0.05 * rank,
        "episode_length_mean": 20.0, "policy_loss": 0.1, "value_loss": 0.2, "entropy": 1.5 - 0.1 * version,
        "approx_kl": 0.01, "clip_fraction": 0.1, "explained_variance": 0.5, "learning_rate": 3e-4,
        "steps_per_s": 900.0 + 10 * rank, "wait_s": 0.2,
    }  # fmt: skip


def _match(policy_id: str, version: int, opponent: str, opponent_version: int, wins: int, draws: int) -> dict:
    return {
        "time": 10.0 * version + 5, "generation": version, "kind": "evaluation", "matchmaker": "pool", "rank": 0,
        "policy_id": policy_id, "version": version, "role": "player", "opponent_id": opponent,
        "opponent_version": opponent_version, "opponent_role": "player", "episodes": 10, "wins": wins,
        "draws": draws, "losses": 10 - wins - draws, "return_mean": 0.2 * version,
        "opponent_return_mean": -0.1, "length_mean": 21.0,
    }  # fmt: skip


def _rating(policy_id: str, version: int, elo: float, skill: bool = True) -> dict:
    mu, sigma = (25.0 + version, 8.0 / version) if skill else (None, None)
    return {
        "time": 10.0 * version + 6, "generation": version, "policy_id": policy_id, "version": version,
        "role": "player", "elo": elo, "mu": mu, "sigma": sigma, "games": 10 * version, "score": 0.2 * version,
    }  # fmt: skip


def _payoff(row: str, column: str, version: int, wins: int, games: int = 10, exact: bool = False) -> dict:
    return {
        "time": 10.0 * version + 7, "generation": version, "role": "player", "row_id": row, "column_id": column,
        "column_role": "player", "source": "exact" if exact else "sampled", "games": 0 if exact else games,
        "wins": wins, "draws": 0, "losses": games - wins, "score": None if exact else wins / games,
        "score_low": None, "score_high": None, "return_mean": 0.1 * wins, "opponent_return_mean": -0.1 * wins,
    }  # fmt: skip


def _meta(policy_id: str, version: int, generation: int, weight: float) -> dict:
    return {
        "time": 10.0 * generation + 8, "generation": generation, "role": "player", "policy_id": policy_id,
        "version": version, "matchmaker": "psro", "weight": weight, "nash_weight": weight, "nash_rating": 0.0,
    }  # fmt: skip


def _exploitability(policy_id: str, generation: int, value: float) -> dict:
    return {
        "time": 10.0 * generation + 9, "generation": generation, "policy_id": policy_id,
        "version": -1 if policy_id == "population" else generation, "role": "player",
        "exploitability": value, "nash_conv": 2 * value,
    }  # fmt: skip


def _league_rows(rec: RunRecorder, version: int) -> None:
    """Payoff (a cumulative entry rewritten each version), meta weights and exploitability rows."""
    rec.append("payoff", [
        _payoff(f"player-0@{version}", f"player-1@{version}", version, wins=3 + version),
        _payoff(f"player-1@{version}", f"player-0@{version}", version, wins=7 - version),
        _payoff(f"player-0@{version}", "random", version, wins=5 + version),
        _payoff("player-0@1", "player-1@1", version, wins=version, games=10 * version),  # re-played: latest counts
    ])  # fmt: skip
    snapshots = [(pid, v) for pid in POLICIES for v in VERSIONS if v <= version]
    rec.append("meta", [_meta(pid, v, version, 1 / len(snapshots)) for pid, v in snapshots])
    rec.append("exploitability", [
        _exploitability("player-0", version, 0.5 / version), _exploitability("player-1", version, 0.4 / version),
        _exploitability("population", version, 0.0 if version == VERSIONS[-1] else 0.1 / version),  # exact 0: log
    ])  # fmt: skip


def _pool(policy_id: str, version: int) -> dict:
    return {
        "time": 10.0 * version, "generation": version, "policy_id": policy_id, "role": "player",
        "version": version, "parent_id": policy_id if version > 1 else "", "parent_version": version - 1 or -1,
        "rank": POLICIES[policy_id], "env_steps": 1000 * version,
    }  # fmt: skip


def _write_run(path: Path, kind: str, rows: bool = True, league: bool = True) -> Path:
    """A run of two policies over three versions: training, evaluations vs random and vs each other;
    with `league`, also skill ratings (mu, sigma), payoff, meta-strategy and exploitability rows."""
    config = {"task": {"kind": kind}, "evaluation": {"elo_initial": 1200.0}}
    with RunRecorder(path, {"config": config, "world_size": 3}) as rec:
        if not rows:
            return path
        for version in VERSIONS:
            rec.append("train", [_train(pid, version, step) for pid in POLICIES for step in range(3)])
            rec.append("pool", [_pool(pid, version) for pid in POLICIES])
            matches = [_match(pid, version, "random", -1, wins=5 + version, draws=1) for pid in POLICIES]
            matches.append(_match("player-0", version, "player-1", version, wins=4, draws=2))
            if version > 1:
                matches.append(_match("player-1", version, "player-0", version - 1, wins=6, draws=0))
            matches.append({**_match("player-0", version, "player-1", version, 0, 0), "kind": "training", "rank": 1})
            rec.append("matches", matches)
            # Re-rating an older snapshot: the plot must use its latest row.
            ratings = [_rating(pid, version, 1200.0 + 30 * version, league) for pid in POLICIES]
            if version > 1:
                ratings.append(_rating("player-0", version - 1, 1100.0, league))
            rec.append("ratings", ratings)
            if league:
                _league_rows(rec, version)
    return path


def _plot(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60, cwd=REPO)


def _assert_png(path: Path) -> None:
    assert path.is_file(), f"{path.name} was not written"
    data = path.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG_SIGNATURE), f"{path.name} is not a PNG image"


@pytest.fixture(scope="module")
def plot_run() -> ModuleType:
    """The script imported as a module, to drive its ``main`` in-process (faster than a subprocess)."""
    spec = importlib.util.spec_from_file_location("plot_run", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_writes_every_figure_of_a_competitive_run(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run" / "run.h5", "competitive")
    out = tmp_path / "figures"
    result = _plot(str(run), "--out", str(out))
    assert result.returncode == 0, result.stderr
    for name in ALL_FIGURES:
        _assert_png(out / name)
        assert str(out / name) in result.stdout  # the written files are listed
    # Only the cooperative figures (cross-play, communication check) have nothing to draw here.
    skipped = sorted(line.split("skipped ")[1].split(":")[0] for line in result.stdout.splitlines()
                     if "skipped" in line)
    assert skipped == ["communication.png", "crossplay.png"]


@pytest.mark.slow
def test_missing_run_file_exits_2_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-run.h5"
    result = _plot(str(missing))
    assert result.returncode == 2
    assert result.stderr.startswith("mpimarl report: error:")
    assert str(missing) in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_cooperative_run_defaults_to_the_run_folder(
    plot_run: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _write_run(tmp_path / "run.h5", "cooperative", league=False)  # an old-style run: no league tables
    assert plot_run.main([str(run)]) == 0
    for name in FIGURES:
        if name != "ratings.png":
            _assert_png(tmp_path / name)
    printed = capsys.readouterr().out
    for name in LEAGUE_FIGURES:
        assert f"skipped {name}" in printed and not (tmp_path / name).exists()
    # A team task has no winner: no Elo figure, whatever the ratings table holds.
    assert "skipped ratings.png: a cooperative task" in printed and not (tmp_path / "ratings.png").exists()


def test_a_cooperative_run_shows_team_returns_and_no_ratings(
    plot_run: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With league tables: the payoff heatmap colours the row's mean team return (not a score of wins),
    the Elo and skill figures are skipped with the reason."""
    from mpimarl import report
    from mpimarl.analysis import load_run

    run = _write_run(tmp_path / "run.h5", "cooperative")
    assert plot_run.main([str(run)]) == 0
    printed = capsys.readouterr().out
    for name in ("ratings.png", "rating_uncertainty.png"):
        assert f"skipped {name}: a cooperative task" in printed and not (tmp_path / name).exists()
    _assert_png(tmp_path / "payoff.png")
    loaded = load_run(run)
    ax = report.plot_payoff(loaded, report.policy_colors(report.all_policy_ids(loaded))).axes[0]
    assert ax.get_title() == "Payoff table (team return), role player"
    # player-0@1 vs player-1@1, re-played: its newest entry has 3 wins of 30 games, return_mean 0.1 * 3.
    values = {t.get_text() for t in ax.texts}
    assert "0.30" in values and "0.10" not in values  # the team return, not the score 3 / 30
    assert ax.images[0].get_cmap().name.startswith("viridis")


def test_empty_run_skips_figures_without_crashing(
    plot_run: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _write_run(tmp_path / "run.h5", "competitive", rows=False)
    assert plot_run.main([str(run), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    for name in ALL_FIGURES:
        assert f"skipped {name}" in printed
        assert not (tmp_path / "out" / name).exists()


def test_not_a_run_file_exits_2(plot_run: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "notes.h5"
    bogus.write_text("not hdf5")
    assert plot_run.main([str(bogus)]) == 2
    assert str(bogus) in capsys.readouterr().err


def test_run_without_league_tables_skips_only_the_league_figures(tmp_path: Path) -> None:
    from mpimarl.analysis import load_run
    from mpimarl.report import FIGURES as DRAWN
    from mpimarl.report import SkipFigure

    run = load_run(_write_run(tmp_path / "run.h5", "competitive", league=False))  # no payoff/meta/..., no mu
    reasons = {}
    for name in LEAGUE_FIGURES:
        with pytest.raises(SkipFigure) as skipped:
            DRAWN[name](run, {})
        reasons[name] = str(skipped.value)
    assert "no mu/sigma" in reasons["rating_uncertainty.png"] and "payoff table is empty" in reasons["payoff.png"]
    for name in COOP_FIGURES:
        with pytest.raises(SkipFigure):
            DRAWN[name](run, {})
    assert {n for n in DRAWN if n not in LEAGUE_FIGURES + COOP_FIGURES} == set(FIGURES)  # the classic figures stay


def test_payoff_heatmap_keeps_the_latest_entry_and_the_newest_snapshots(tmp_path: Path) -> None:
    from mpimarl.analysis import load_run
    from mpimarl.report import MAX_PAYOFF_LABELS, _newest_labels, label_order, plot_payoff

    path = tmp_path / "run.h5"
    with RunRecorder(path, {"config": {"task": {"kind": "competitive"}}}) as rec:
        versions = range(MAX_PAYOFF_LABELS + 5)
        rec.append("payoff", [_payoff(f"player-0@{v}", "random", v, wins=v % 10) for v in versions])
        rec.append("payoff", [_payoff("player-0@3", "random", 90, wins=9)])  # a later entry for @3
        rec.append("payoff", [_payoff("player-0@1", "player-0@2", 1, wins=0, exact=True)])
    run = load_run(path)
    rows = _newest_labels(run.payoff, "row_id")
    assert len(rows) == MAX_PAYOFF_LABELS and rows == sorted(rows, key=label_order)
    assert "player-0@3" in rows and "player-0@0" not in rows  # @3 was updated last; @0 is old
    assert label_order("player-0@10") > label_order("player-0@9")  # versions sort as numbers
    fig = plot_payoff(run, {})
    assert fig.axes[0].get_title() == "Payoff table, role player"
