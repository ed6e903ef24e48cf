"""Fixtures of the environment tests."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

import pytest

from mpimarl.envs import catalog


@pytest.fixture
def uninstall(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """`uninstall("rlcard", "pettingzoo.classic.texas_holdem")` makes `import rlcard` fail as if it were not installed
    (None in sys.modules) and forgets the already imported modules under the given prefixes, so that
    importing them again meets the missing dependency; the catalog's caches are emptied now and after
    the test, so no other test sees the pretended installation."""

    def block(dependency: str, *dependents: str) -> None:
        for name in list(sys.modules):
            if name == dependency or name.startswith(dependency + ".") or name.startswith(dependents):
                monkeypatch.delitem(sys.modules, name)
        monkeypatch.setitem(sys.modules, dependency, None)
        _clear_caches()

    yield block
    monkeypatch.undo()
    _clear_caches()


def _clear_caches() -> None:
    catalog._pettingzoo_environments.cache_clear()
    catalog._importable.cache_clear()
