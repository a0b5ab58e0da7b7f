"""Helpers shared by the reliability tests (a uniquely named module: every folder's conftest is
called ``conftest``, so helpers importable by test files live here)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings

# -- hypothesis profiles ------------------------------------------------------------------------------
_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large]}
settings.register_profile("reliability", max_examples=int(os.environ.get("INFEROX_FUZZ_EXAMPLES", "40")), **_COMMON)
settings.register_profile("fuzz", max_examples=int(os.environ.get("INFEROX_FUZZ_EXAMPLES", "2000")), **_COMMON)
PROFILE = os.environ.get("INFEROX_HYPOTHESIS_PROFILE", "reliability")


def fuzz_settings() -> Any:
    """The settings object of the chosen profile (applied per test, so other folders are untouched)."""
    return settings.get_profile(PROFILE)


# -- figures -------------------------------------------------------------------------------------------
class Figures:
    """Numbers reported by the tests, keyed by test node id."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def record(self, nodeid: str, **values: Any) -> None:
        with self._lock:
            self.data.setdefault(nodeid, {}).update(values)

    def add(self, nodeid: str, key: str, amount: int = 1) -> None:
        with self._lock:
            entry = self.data.setdefault(nodeid, {})
            entry[key] = int(entry.get(key, 0)) + amount


FIGURES = Figures()


class NodeFigures:
    """``figures`` bound to one test."""

    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid

    def record(self, **values: Any) -> None:
        FIGURES.record(self.nodeid, **values)

    def add(self, key: str, amount: int = 1) -> None:
        FIGURES.add(self.nodeid, key, amount)


# -- memory ---------------------------------------------------------------------------------------------
def rss_bytes() -> int:
    """This process's resident set size (``VmRSS``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")  # pragma: no cover
