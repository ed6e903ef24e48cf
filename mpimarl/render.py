"""Play and render one match of a stored policy (`mpimarl play`).

    mpimarl play RUN.h5 player-0@3 --vs tactical --out match.gif

The match runs through the same adapter and runner as training and evaluation
(:class:`mpimarl.rollout.runner.VectorMatches` on one environment copy, the stored policy's batched
`acting_policy`), on an environment built from the run's recorded config with
``render_mode='rgb_array'`` added to its kwargs where the environment accepts it (PettingZoo classic
and MPE do). After every step the raw environment's ``render()`` gives a frame; the frames become an
animated GIF (Pillow). An environment without frames (no ``render_mode``, or an ``openspiel:`` game
whose adapter has ``render_text()``) gives a text transcript instead: ``--out match.txt``, or
printed when ``--out`` is left off; asking such an environment for a GIF is an error.

The opponent (``--vs``) is another policy of the same run (``policy`` or ``policy@version``),
``random`` (the default) or a scripted baseline (see :mod:`mpimarl.baselines`); it takes every seat
of a role it plays, and the run's latest policy of each other role (else random) takes the rest.
"""

from __future__ import annotations

import math
import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mpimarl.analysis import RANDOM_BASELINE, Run, load_run
from mpimarl.arena import Entrant, baseline_entrant, lineup_entrants
from mpimarl.errors import EnvironmentSpecError, MpimarlError

RENDER_MODE = "rgb_array"
OPENSPIEL_PREFIX = "openspiel:"
MAX_STEPS = 10_000
"""A match longer than this is cut off (an environment without an end)."""
MAX_SIDE_PX = 480
"""Frames are scaled down so that neither side is longer (small GIFs)."""
TURN_MS = 600
"""Frame duration of turn-based (AEC) games, where a frame is one move."""
TICK_MS = 80
"""Frame duration of simultaneous-move and single-agent environments."""
PALETTE_COLORS = 128
"""Colours of the GIF's one shared palette."""
LAST_FRAME_MS = 2_000
"""The final position is held a while before the GIF loops."""


SEAT_MARKS: dict[str, tuple[tuple[str, str], ...]] = {
    "connect_four": (("player_0", "red, moves first"), ("player_1", "black")),
    "tictactoe": (("player_1", "X, moves first"), ("player_2", "O")),
    "simple_tag": (("adversary_.*", "red"), ("agent_.*", "green")),
    "simple_adversary": (("adversary_.*", "red"), ("agent_.*", "blue")),
    "simple_spread": (("agent_.*", "blue"),),
    "simple_speaker_listener": (("speaker_.*", "not drawn: it only speaks"), ("listener_.*", "grey, moves")),
}
"""How the frames of known environments show each agent: env id fragment -> (agent regex, mark)."""

CAPTION_LINE_PX = 15
"""Height of one caption line under a GIF frame."""


class RenderError(MpimarlError):
    """The match cannot be rendered as asked (no frames for a GIF, an unknown output format)."""


@dataclass
class MatchRecord:
    """One played match: who sat where, what happened, and its frames or text."""

    env_id: str
    seed: int
    seats: list[tuple[str, tuple[str, ...], str]]
    """(role, agents, label of the policy) per seat, in seat order."""
    returns: dict[str, float]
    """Each agent's episode return."""
    seat_returns: list[float]
    """Mean per-agent return of each seat."""
    length: int
    cooperative: bool
    draw_margin: float = 0.0
    truncated: bool = False
    """True when the match was cut off after MAX_STEPS steps."""
    frames: list[np.ndarray] = field(default_factory=list, repr=False)
    transcript: list[str] = field(default_factory=list, repr=False)
    turn_based: bool = False

    def outcome(self) -> str:
        """'winner: LABEL', 'draw' (competitive) or the team return (cooperative)."""
        if self.cooperative:
            return f"team return {float(np.mean(self.seat_returns)):+.3f}"
        if len(self.seats) < 2:
            return f"return {self.seat_returns[0]:+.3f}"
        from mpimarl.league.outcomes import rank_sides

        ranks = rank_sides(self.seat_returns, self.draw_margin)
        best = [i for i, r in enumerate(ranks) if r == 0]
        if len(best) == len(self.seats):
            return "draw"
        names = " and ".join(f"{self.seats[i][2]} ({', '.join(self.seats[i][1])})" for i in best)
        return f"winner: {names}" if len(best) == 1 else f"shared win: {names}"

    def legend(self) -> list[str]:
        """One line per seat: the policy, its role, its agents and how the frames show them
        (colour or symbol, for the environments in SEAT_MARKS), e.g.
        ``player-0@3: player_0 (red, moves first)``."""
        import re

        marks = next((m for key, m in SEAT_MARKS.items() if key in self.env_id), ())
        lines = []
        for i, (role, agents, label) in enumerate(self.seats):
            shown = []
            for agent in agents:
                mark = next((m for pattern, m in marks if re.fullmatch(pattern, agent)), None)
                shown.append(f"{agent} ({mark})" if mark else agent)
            seat = f"seat {i + 1}" if len(self.seats) > 1 else "the only seat"
            lines.append(f"{label}: {', '.join(shown)} [{seat}, role {role}]")
        return lines

    def result(self) -> str:
        """``result: <outcome> after N steps`` (the last line of a transcript and of a GIF)."""
        cut = f" (cut off after {MAX_STEPS} steps)" if self.truncated else ""
        return f"result: {self.outcome()} after {self.length} steps{cut}"

    def summary(self) -> str:
        """What the CLI prints: the line-up, who is who, each agent's return and the result."""
        sides = " vs ".join(f"{label} ({', '.join(agents)})" for _, agents, label in self.seats)
        returns = ", ".join(f"{agent} {value:+g}" for agent, value in self.returns.items())
        cut = f" (cut off after {MAX_STEPS} steps)" if self.truncated else ""
        who = "".join(f"\n  {line}" for line in self.legend())
        return (f"match on {self.env_id}, seed {self.seed}: {sides}{who}\n"
                f"  {self.length} steps{cut}; returns: {returns}\n  {self.outcome()}")

    def captions(self) -> list[list[str]]:
        """The caption under each frame: who is who, then the step, or the result on the last frame."""
        legend = self.legend()
        n = len(self.frames)
        unit = "move" if self.turn_based else "step"
        return [[*legend, self.result() if i == n - 1 else (f"{unit} {i} of {n - 1}" if i else "start")]
                for i in range(n)]


class _Recording:
    """An acting policy that remembers the actions it returned (for the transcript)."""

    def __init__(self, inner: Any, log: list[tuple[Hashable, np.ndarray]], key: Hashable) -> None:
        self.inner, self.log, self.key = inner, log, key

    def act(self, obs: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        """The inner policy's actions, logged."""
        actions = self.inner.act(obs, mask)
        self.log.append((self.key, np.asarray(actions)))
        return actions


# -------------------------------------------------------------------- building the match


def parse_policy_ref(text: str) -> tuple[str, int | None]:
    """``'player-0@3'`` -> ('player-0', 3); ``'player-0'`` -> ('player-0', None: the latest)."""
    name, at, version = text.partition("@")
    if not name:
        raise RenderError(f"policy {text!r}: expected POLICY or POLICY@VERSION, e.g. player-0@3")
    if not at:
        return name, None
    try:
        number = int(version)
    except ValueError:
        raise RenderError(f"policy {text!r}: version {version!r} is not an integer") from None
    return name, number


def stored_entrant(run: Run, ref: str, greedy: bool) -> Entrant:
    """An entrant for the stored policy `ref` (POLICY or POLICY@VERSION) of `run`."""
    policy_id, version = parse_policy_ref(ref)
    stored = run.policy(policy_id, version)
    return Entrant(stored.label, (stored.role,), {stored.role: stored.acting_policy(greedy)}, 0, stored)


def opponent_entrant(run: Run, vs: str | None, seed: int, greedy: bool) -> Entrant:
    """`vs`: another stored policy of the run, 'random' (None) or a scripted baseline's name."""
    if vs is None or vs == RANDOM_BASELINE:
        return baseline_entrant(run, RANDOM_BASELINE, seed)
    name = parse_policy_ref(vs)[0]
    if "@" in vs or name in run.latest_versions() or "-" in name:
        # Trained policies are named '<role>-<k>'; baselines never contain '-'.
        return stored_entrant(run, vs, greedy)
    return baseline_entrant(run, vs, seed)


def _frame_factory(run: Run) -> tuple[Any, bool]:
    """The run's env factory with render_mode='rgb_array' where the env takes it; whether it does."""
    from mpimarl.envs.loader import resolve_env

    ctx = run.context()
    env_id = ctx.config.env.id
    if env_id.startswith(OPENSPIEL_PREFIX):
        return ctx.factory, False
    # pygame-based renderers open an audio device they never use; without one (a cluster node, a
    # container) SDL prints an error line on every run.
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    try:
        return resolve_env(env_id, {**ctx.config.env.kwargs, "render_mode": RENDER_MODE}), True
    except EnvironmentSpecError:
        return ctx.factory, False


def _frame(env: Any) -> np.ndarray | None:
    """The raw environment's current RGB frame, or None when it renders none."""
    raw = getattr(env, "raw_env", None)
    render = getattr(raw, "render", None)
    if render is None:
        return None
    try:
        image = render()
    except Exception:  # noqa: BLE001 - an env that cannot render gets a transcript instead
        return None
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] in (3, 4):
        return np.ascontiguousarray(image[:, :, :3], dtype=np.uint8)
    return None


def _describe(action: np.ndarray) -> str:
    if action.ndim == 0:
        return str(int(action)) if np.issubdtype(action.dtype, np.integer) else f"{float(action):.3g}"
    return "[" + ", ".join(f"{float(v):.2f}" for v in action.ravel()) + "]"


def play_match(run: Run, policy: str, vs: str | None = None, seed: int = 0, *, seat: int = 0,
               greedy: bool = False, frames: bool = True) -> MatchRecord:
    """Play one match of stored `policy` (POLICY[@VERSION]) against `vs` with episode seed `seed`.

    `seat` picks which of the seats of the policy's role it takes (0: the first; in connect four
    seat 1 moves second). With `frames`, every step's RGB frame is kept when the env renders them.
    """
    import torch

    from mpimarl.rollout.evaluate import OWN, seat_returns
    from mpimarl.rollout.runner import VectorMatches
    from mpimarl.rollout.seating import policy_key, seating, seats_of_role

    ctx = run.context()
    spec = ctx.spec
    torch.manual_seed(seed)
    own = stored_entrant(run, policy, greedy)
    role = own.roles[0]
    other = opponent_entrant(run, vs, seed + 1, greedy)
    own_seats = seats_of_role(spec, role)
    if not 0 <= seat < len(own_seats):
        raise RenderError(f"--seat {seat}: role {role!r} has {len(own_seats)} seat(s) (0..{len(own_seats) - 1})")
    random = baseline_entrant(run, RANDOM_BASELINE, seed + 2)
    seated = lineup_entrants(spec, role, other, lambda _o, r: _run_policy_of_role(run, r, policy, greedy) or random)
    lineup = tuple(who.seat(r) for r, who in seated)

    log: list[tuple[Hashable, np.ndarray]] = []
    table: dict[Hashable, Any] = {OWN: _Recording(own.policies[role], log, OWN)}
    labels: dict[Hashable, str] = {OWN: own.label}
    for item, (r, who) in zip(lineup, seated):
        key = policy_key(item)
        table[key] = _Recording(who.policies[r], log, key)
        labels[key] = who.label

    factory, can_render = _frame_factory(run) if frames else (ctx.factory, False)
    env = factory()
    try:
        matches = VectorMatches([env], seed)
        who_sits = seating(spec, own_seats[seat], OWN, lineup)
        matches.start(0, who_sits, seed=seed)
        record = MatchRecord(spec.env_id, seed, [], {}, [], 0, ctx.config.task.kind == "cooperative",
                             ctx.config.task.draw_margin, turn_based=spec.api == "aec")
        text = getattr(env, "render_text", None)
        _snapshot(record, env, can_render, text, "start")
        finished = []
        for step in range(1, MAX_STEPS + 1):
            acting = env.acting_agents()
            log.clear()
            finished = matches.tick(table)
            moves = []
            for key, actions in log:
                agents = [a for a in acting if who_sits[a] == key]
                moves += [f"{agent} ({labels[key]}) plays {_describe(a)}" for agent, a in zip(agents, actions)]
            _snapshot(record, env, can_render, text, f"step {step}: " + "; ".join(moves))
            if finished:
                break
        else:
            record.truncated = True
        if finished:
            ep = finished[0]
            record.returns, record.length = dict(ep.returns), ep.length
            record.seat_returns = seat_returns(spec, ep)
        else:
            slot = matches.slots[0]
            record.returns = dict(slot.returns) if slot is not None else {}
            record.length = MAX_STEPS
            record.seat_returns = [float(np.mean([record.returns.get(a, 0.0) for a in agents]))
                                   for _, agents in spec.seats()]
        record.seats = [(r, agents, labels[who_sits[agents[0]]]) for r, agents in spec.seats()]
        return record
    finally:
        env.close()


def _run_policy_of_role(run: Run, role: str, own: str, greedy: bool) -> Entrant | None:
    """The run's first policy of `role` (other than `own`, at its latest version), or None."""
    own_id = parse_policy_ref(own)[0]
    stored = run.policies()
    ids = sorted(set(stored.policy_id[(stored.role == role) & (stored.policy_id != own_id)]))
    return stored_entrant(run, ids[0], greedy) if ids else None


def _snapshot(record: MatchRecord, env: Any, can_render: bool, text: Any, line: str) -> None:
    """Keep the frame (or board text) after a step, and the step's transcript line."""
    record.transcript.append(line)
    if can_render:
        frame = _frame(env)
        if frame is not None:
            record.frames.append(frame)
    if callable(text):
        record.transcript.append(str(text()).rstrip())


# -------------------------------------------------------------------- output


def _captioned(image: Any, lines: Sequence[str]) -> Any:
    """`image` with a white band below it holding `lines` in black (wrapped to its width)."""
    import textwrap

    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    chars = max(20, image.width // 6)  # the default bitmap font is about 6 px a character
    wrapped = [part for line in lines for part in textwrap.wrap(line, chars) or [""]]
    band = CAPTION_LINE_PX * len(wrapped) + 6
    out = Image.new("RGB", (image.width, image.height + band), "white")
    out.paste(image.convert("RGB"), (0, 0))
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(wrapped):
        draw.text((4, image.height + 3 + i * CAPTION_LINE_PX), line, fill="black", font=font)
    return out


def write_gif(frames: Sequence[np.ndarray], path: Path, frame_ms: int,
              captions: Sequence[Sequence[str]] | None = None) -> int:
    """Write `frames` (H, W, 3 uint8) as a looping animated GIF; returns the number of frames.

    Frames are shrunk by an integer factor (a box filter) to at most MAX_SIDE_PX a side and share
    one palette taken from a few frames spread over the match: small files, written quickly.
    `captions` (one list of lines per frame) are written in a band under each frame; the band
    is as tall as the longest caption, so every frame has the same size.
    """
    from PIL import Image

    images = []
    for frame in frames:
        image = Image.fromarray(frame)
        factor = math.ceil(max(image.size) / MAX_SIDE_PX)
        images.append(image.reduce(factor) if factor > 1 else image)
    if captions is not None:
        height = max(len(c) for c in captions) if captions else 0
        images = [_captioned(im, [*c, *[""] * (height - len(c))]) for im, c in zip(images, captions)]
        tallest = max(im.height for im in images)
        images = [im if im.height == tallest else _pad(im, tallest) for im in images]
    picks = [images[i] for i in sorted({0, len(images) // 3, 2 * len(images) // 3, len(images) - 1})]
    strip = Image.new("RGB", (sum(im.width for im in picks), max(im.height for im in picks)))
    x = 0
    for im in picks:
        strip.paste(im, (x, 0))
        x += im.width
    palette = strip.quantize(colors=PALETTE_COLORS, method=Image.Quantize.MEDIANCUT)
    indexed = [im.quantize(palette=palette, dither=Image.Dither.NONE) for im in images]
    durations = [frame_ms] * (len(indexed) - 1) + [LAST_FRAME_MS]
    indexed[0].save(path, save_all=True, append_images=indexed[1:], duration=durations, loop=0)
    return len(indexed)


def _pad(image: Any, height: int) -> Any:
    from PIL import Image

    out = Image.new("RGB", (image.width, height), "white")
    out.paste(image, (0, 0))
    return out


def render_match(run_path: str | Path, policy: str, vs: str | None = None, seed: int = 0,
                 out: str | Path | None = None, *, seat: int = 0, greedy: bool = False) -> str:
    """`mpimarl play`: play one match, write a GIF (``.gif``) or a transcript (``.txt``, or
    printed without `out`), and return what to print. RenderError and the run file's errors are
    MpimarlErrors (exit code 2)."""
    target = Path(out) if out is not None else None
    if target is not None and target.suffix.lower() not in (".gif", ".txt"):
        raise RenderError(f"--out {target}: the output must end in .gif (frames) or .txt (a text transcript)")
    if seed < 0:
        raise RenderError(f"--seed must be >= 0, got {seed}")
    run = load_run(run_path)
    want_gif = target is not None and target.suffix.lower() == ".gif"
    if want_gif and not _frame_factory(run)[1]:
        raise RenderError(_no_frames(run, target))
    record = play_match(run, policy, vs, seed, seat=seat, greedy=greedy, frames=want_gif)
    lines = [record.summary()]
    if want_gif:
        assert target is not None
        if len(record.frames) < 2:
            raise RenderError(_no_frames(run, target))
        n = _write(target, lambda: write_gif(record.frames, target, TURN_MS if record.turn_based else TICK_MS,
                                             record.captions()))
        lines.append(f"wrote {target} ({n} frames)")
    elif target is not None:
        _write(target, lambda: target.write_text(record.summary() + "\n\n" + "\n".join(record.transcript) + "\n"
                                                 + record.result() + "\n"))
        lines.append(f"wrote a text transcript to {target}")
    else:
        lines.append("transcript (no --out given):")
        lines.extend(record.transcript)
        lines.append(record.result())
    return "\n".join(lines)


def _no_frames(run: Run, target: Path) -> str:
    env_id = run.context().config.env.id
    return (f"env {env_id!r} renders no frames (no render_mode={RENDER_MODE!r}), so no GIF can be made; use "
            f"--out {target.with_suffix('.txt')} for a text transcript, or leave --out off to print it")


def _write(target: Path, write: Any) -> Any:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return write()
    except OSError as exc:
        raise RenderError(f"cannot write {target}: {exc.strerror or exc}") from None

