"""Waits that scale with how busy the machine is.

A test that waits for something to happen (a server to become ready, a download to answer) must not
fail because the machine is loaded: CI runs on two shared cores, where everything can take several
times as long as on a quiet laptop. A wait is written for a quiet machine and stretched by
:func:`scaled`; a wait that a test *expects to expire* (a stall, a read timeout the test provokes)
is never scaled — it is the fact under test.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

#: Overrides the measured factor (``INFEROX_TEST_TIME_SCALE=4``), e.g. under a known concurrent load.
SCALE_ENV = "INFEROX_TEST_TIME_SCALE"
#: The most a loaded machine stretches pytest-timeout's per-test limits: past it, a test that hangs
#: is reported as hanging, not waited on for the rest of CI's budget.
TIME_LIMIT_STRETCH_MAX = 4.0
#: However loaded the machine, a wait grows at most this much: past it, a hang is a hang.
MAX_FACTOR = 8.0


def usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def load_factor() -> float:
    """How much slower than a quiet machine this one is now: ``INFEROX_TEST_TIME_SCALE`` when set,
    else the 1-minute load average per usable CPU; at least 1, at most :data:`MAX_FACTOR`."""
    given = os.environ.get(SCALE_ENV)
    if given:
        return min(MAX_FACTOR, max(1.0, float(given)))
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover - no load average on this platform
        return 1.0
    return min(MAX_FACTOR, max(1.0, load / usable_cpus()))


def scaled(seconds: float) -> float:
    """``seconds`` (enough on a quiet machine) stretched by :func:`load_factor`."""
    return seconds * load_factor()


def stretch_time_limits(config: pytest.Config, items: list[pytest.Item], factor: float | None = None) -> None:
    """Each test's time limit (its ``timeout`` marker, else pyproject's ``timeout``) scaled by how
    loaded the machine is when the run starts (at most :data:`TIME_LIMIT_STRETCH_MAX`): limits
    written for a quiet machine fail good tests on CI's busy two cores. Called at collection
    (tests/conftest.py); a marker added to the item itself is the one pytest-timeout reads."""
    import pytest

    factor = min(TIME_LIMIT_STRETCH_MAX, load_factor() if factor is None else factor)
    if factor <= 1.0 or not config.pluginmanager.hasplugin("timeout"):
        return
    default = float(config.getini("timeout") or 0)
    for item in items:
        marker = item.get_closest_marker("timeout")
        limit = float((marker.args[0] if marker.args else marker.kwargs.get("timeout", default)) if marker else default)
        if limit > 0:
            item.add_marker(pytest.mark.timeout(limit * factor), append=False)  # first: the closest marker


def stretch_httpx_default_timeout(factor: float) -> Callable[[], None]:
    """httpx's default timeout (5 s, the same ``Timeout`` object every ``httpx.get`` / ``post`` /
    ``Client`` defaults to) times ``factor``; returns what restores it. Tests call httpx without a
    timeout where any answer is expected quickly — on a loaded machine "quickly" is longer."""
    from httpx import _config

    default = _config.DEFAULT_TIMEOUT_CONFIG
    before = {name: getattr(default, name) for name in ("connect", "read", "write", "pool")}
    for name, value in before.items():
        if value is not None:
            setattr(default, name, value * factor)

    def restore() -> None:
        for name, value in before.items():
            setattr(default, name, value)

    return restore
