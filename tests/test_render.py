"""`mpimarl play`: one rendered match of a stored policy, as a GIF or a text transcript."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mpimarl.analysis import load_run
from mpimarl.cli import main
from mpimarl.render import CAPTION_LINE_PX, MatchRecord, parse_policy_ref, play_match
from tests.test_analysis import REPO, write_policy_run

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def connect_four_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Untrained connect-four policies: player-0 at versions 0 and 1, player-1 at version 0."""
    return write_policy_run(tmp_path_factory.mktemp("render") / "run.h5")


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("mpimarl: error: ")
    return err


def test_play_writes_an_animated_gif(
    connect_four_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "match.gif"
    assert main(["play", str(connect_four_run), "player-0", "--vs", "tactical", "--seed", "4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "player-0@1 (player_0) vs tactical (player_1)" in printed
    assert "winner: " in printed or "draw" in printed
    assert f"wrote {out}" in printed
    assert "player-0@1: player_0 (red, moves first)" in printed and "tactical: player_1 (black)" in printed
    with Image.open(out) as gif:
        assert gif.format == "GIF" and gif.n_frames > 1
        frames = []
        for i in (0, gif.n_frames - 1):
            gif.seek(i)
            frames.append(np.asarray(gif.convert("RGB")))
    # Under the board, a white band with black text says who is who, and on the last frame the result.
    band = 3 * CAPTION_LINE_PX + 6  # three lines: the two seats, then the move or the result
    first, last = (f[-band:] for f in frames)
    white = first.min(axis=2) > 220  # near white: the GIF's palette is quantised
    assert white.mean() > 0.8 and not (frames[0][-band - 3:-band].min(axis=2) > 220).all()
    assert (first.max(axis=2) < 80).any()  # text
    legend = slice(0, 3 + 2 * CAPTION_LINE_PX)
    assert (first[legend] == last[legend]).all()  # the legend stays
    assert not (first[legend.stop:] == last[legend.stop:]).all()  # "start" became the result


def test_captions_name_every_seat_and_end_with_the_result(connect_four_run: Path) -> None:
    record = play_match(load_run(connect_four_run), "player-0@1", "tactical", seed=4, seat=1)
    captions = record.captions()
    assert len(captions) == len(record.frames) == record.length + 1
    legend = ["tactical: player_0 (red, moves first) [seat 1, role player]",
              "player-0@1: player_1 (black) [seat 2, role player]"]
    assert all(c[:2] == legend for c in captions)
    assert captions[0][2] == "start" and captions[1][2] == f"move 1 of {record.length}"
    assert captions[-1][2] == record.result() and record.result().startswith(("result: winner: ", "result: draw"))


def test_mpe_legend_names_the_colours_of_each_team(tmp_path: Path) -> None:
    run = write_policy_run(tmp_path / "tag.h5", REPO / "configs" / "simple_tag_roles.yaml",
                           versions={"predator-0": 1, "prey-0": 1})
    record = play_match(load_run(run), "prey-0", "predator-0", seed=0, frames=False)
    assert record.legend() == [
        "predator-0@0: adversary_0 (red), adversary_1 (red), adversary_2 (red) [seat 1, role predator]",
        "prey-0@0: agent_0 (green) [seat 2, role prey]"]
    assert record.result().startswith("result: ") and record.result().endswith("after 25 steps")


def test_match_record_and_transcript_against_another_policy(
    connect_four_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = load_run(connect_four_run)
    record = play_match(run, "player-0@0", "player-1", seed=2, seat=1, frames=False)
    assert [label for _, _, label in record.seats] == ["player-1@0", "player-0@0"]  # seat 1 moves second
    assert sorted(record.returns.values()) in ([-1.0, 1.0], [0.0, 0.0])
    assert record.length == len(record.transcript) - 1 and not record.frames
    assert record.transcript[1].startswith("step 1: player_0 (player-1@0) plays ")

    out = tmp_path / "match.txt"
    assert main(["play", str(connect_four_run), "player-0@0", "--vs", "player-1@0", "--out", str(out)]) == 0
    assert "text transcript" in capsys.readouterr().out
    text = out.read_text()
    assert "step 1: player_0 (player-0@0) plays" in text
    assert "  player-0@0: player_0 (red, moves first) [seat 1, role player]" in text
    assert text.splitlines()[-1] == record_of(connect_four_run, "player-0@0", "player-1@0").result()
    assert parse_policy_ref("player-3@12") == ("player-3", 12) and parse_policy_ref("player-3") == ("player-3", None)


def record_of(run: Path, policy: str, vs: str) -> MatchRecord:
    """The match `mpimarl play RUN POLICY --vs VS` plays (seed 0, seat 0), without frames."""
    return play_match(load_run(run), policy, vs, seed=0, frames=False)


def test_bad_inputs_exit_2_with_one_message(
    connect_four_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = str(connect_four_run)
    gif = str(tmp_path / "m.gif")
    cases = {
        ("play", str(tmp_path / "none.h5"), "player-0"): "does not exist",
        ("play", run, "player-9", "--out", gif): "stored policies: player-0, player-1",
        ("play", run, "player-0@7", "--out", gif): "stored versions: 0, 1",
        ("play", run, "player-0@x"): "is not an integer",
        ("play", run, "player-0", "--vs", "tacticle"): "did you mean 'tactical'",
        ("play", run, "player-0", "--vs", "player-5"): "no policy 'player-5'",
        ("play", run, "player-0", "--out", str(tmp_path / "m.png")): "must end in .gif",
        ("play", run, "player-0", "--seat", "2"): "has 2 seat(s)",
    }
    for argv, message in cases.items():
        assert main(list(argv)) == 2, argv
        assert message in _error_line(capsys), argv
    assert not (tmp_path / "m.gif").exists()


def test_env_without_frames_refuses_a_gif_and_writes_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kuhn = write_policy_run(tmp_path / "kuhn.h5", REPO / "configs" / "kuhn_psro.yaml", versions={"player-0": 1})
    assert main(["play", str(kuhn), "player-0", "--out", str(tmp_path / "k.gif")]) == 2
    assert "renders no frames" in _error_line(capsys) and not (tmp_path / "k.gif").exists()
    assert main(["play", str(kuhn), "player-0", "--out", str(tmp_path / "k.txt")]) == 0
    text = (tmp_path / "k.txt").read_text()
    assert "step 1: player_0 (player-0@0) plays" in text
    assert main(["play", str(kuhn), "player-0"]) == 0  # no --out: the transcript is printed
    assert "transcript (no --out given)" in capsys.readouterr().out
