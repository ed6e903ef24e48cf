"""Rank 0's live progress: a bar on a terminal, plain periodic lines otherwise (SLURM logs)."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any, Protocol, TextIO

from tqdm import tqdm

from mpimarl.league.league import League


class TrainerProgress(Protocol):
    """What the display reads of one trainer as rank 0 tracks it."""

    policy_id: str
    published: int
    env_steps: int
    last_row: dict[str, Any]


class ProgressSource(Protocol):
    """What the display reads of rank 0 (:class:`mpimarl.roles.server.Server`): its trainers, by rank,
    and the league's latest scores against the baselines."""

    @property
    def trainers(self) -> Mapping[int, TrainerProgress]:
        """Rank -> the trainer's state."""
        ...

    @property
    def league(self) -> League:
        """The league (its `vs_baseline` scores)."""
        ...


def _fmt_steps(n: float) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"


class Progress:
    """Shows environment steps of all trainers against the run's total, with a line per policy."""

    def __init__(self, total_steps: int, interval_s: float, stream: TextIO | None = None,
                 bar: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total = total_steps
        self.interval = interval_s
        self.start = time.monotonic()
        self.last_print = self.start
        use_bar = self.stream.isatty() if bar is None else bar
        self.bar = tqdm(total=total_steps, unit="step", unit_scale=True, file=self.stream,
                        dynamic_ncols=True) if use_bar else None

    @staticmethod
    def _steps(server: ProgressSource) -> int:
        return sum(t.env_steps for t in server.trainers.values())

    def _policy_text(self, server: ProgressSource) -> str:
        cooperative = server.league.cfg.task.kind == "cooperative"
        parts = []
        for t in server.trainers.values():
            ret = t.last_row.get("episode_return_mean")
            ret_txt = "-" if ret is None or ret != ret else f"{ret:+.2f}"
            eval_txt = self._team_return_text(server.league, t.policy_id) if cooperative else "".join(
                f" vs_{name} {rate:.0%}" for (pid, name), rate in sorted(server.league.vs_baseline.items())
                if pid == t.policy_id)
            parts.append(f"{t.policy_id} v{max(t.published, 0)} ret {ret_txt}{eval_txt}")
        return " | ".join(parts)

    @staticmethod
    def _team_return_text(league: League, policy_id: str) -> str:
        """A cooperative policy's team return in its newest evaluation (a score against the random
        comparator would only count the episodes it beat random partners)."""
        scored = [(key.version, score) for key, score in league.scores.items() if key.policy_id == policy_id]
        return f" eval {max(scored)[1]:+.2f}" if scored else ""

    def update(self, server: ProgressSource) -> None:
        """Called when a trainer reports; refreshes the bar or prints a line when one is due."""
        if self.bar is not None:
            self.bar.n = min(self._steps(server), self.total)
            self.bar.set_postfix_str(self._policy_text(server), refresh=False)
            self.bar.refresh()
        else:
            self.maybe_print(server)

    def maybe_print(self, server: ProgressSource) -> None:
        """A plain progress line every `interval` seconds (no-op with a bar)."""
        now = time.monotonic()
        if self.bar is not None or now - self.last_print < self.interval:
            return
        self.last_print = now
        self._line(server, now)

    def _line(self, server: ProgressSource, now: float) -> None:
        steps = self._steps(server)
        pct = 100.0 * steps / max(self.total, 1)
        print(f"[{now - self.start:7.1f}s] steps {_fmt_steps(steps)}/{_fmt_steps(self.total)} ({pct:3.0f}%) "
              f"| {self._policy_text(server)}", file=self.stream, flush=True)

    def close(self, server: ProgressSource) -> None:
        """Final state."""
        if self.bar is not None:
            self.bar.n = min(self._steps(server), self.total)
            self.bar.close()
        else:
            self._line(server, time.monotonic())
