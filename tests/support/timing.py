"""Waits that scale with how busy the machine is.

A test that waits for something to happen (a server to become ready, a download to answer) must not
fail because the machine is loaded: CI runs on two shared cores, where everything can take several
times as long as on a quiet laptop. A wait is written for a quiet machine and stretched by
:func:`scaled`; a wait that a test *expects to expire* (a stall, a read timeout the test provokes)
is never scaled — it is the fact under test.
"""

from __future__ import annotations

import os

#: Overrides the measured factor (``INFEROX_TEST_TIME_SCALE=4``), e.g. under a known concurrent load.
SCALE_ENV = "INFEROX_TEST_TIME_SCALE"
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
