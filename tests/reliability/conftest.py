"""Fixtures of the reliability tests: figures recording and hypothesis profiles. The Hub server
(``olah``, ``proxy``, ``hub_env``), the real packages and the tmpfs disks are shared fixtures
(:mod:`tests.support.fixtures`); the tiny real engine models come from :mod:`tests.support.engine_models`.

Figures: a test that has numbers to report (requests served, faults injected, inputs tried, memory
growth) calls ``figures.record(...)``. When ``INFEROX_RELIABILITY_OUT`` names a JSON file (the nox
``reliability`` session sets it), the figures of the whole run are written there at the end, and
``tools/reliability_report.py`` turns them into ``docs/reliability.md``. Otherwise nothing is written.

Hypothesis: the profile ``reliability`` (short, the default run) or ``fuzz`` (long) is chosen by
``INFEROX_HYPOTHESIS_PROFILE``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .reliability_kit import FIGURES, PROFILE, NodeFigures


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[NodeFigures]:
    started = time.perf_counter()
    nf = NodeFigures(request.node.nodeid)
    yield nf
    nf.record(duration_s=round(time.perf_counter() - started, 3))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Record each reliability test's outcome (the report lists every test, figures or not)."""
    if not report.nodeid.startswith("tests/reliability/"):
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        FIGURES.record(report.nodeid, outcome=report.outcome)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    out = os.environ.get("INFEROX_RELIABILITY_OUT")
    if not out or not FIGURES.data:
        return
    path = Path(out)
    previous: dict[str, Any] = {}
    if path.exists():  # several pytest runs (default, fuzz) append to one file
        try:
            previous = json.loads(path.read_text())
        except ValueError:
            previous = {}
    runs = previous.get("runs", [])
    runs.append({"run": os.environ.get("INFEROX_RELIABILITY_RUN", PROFILE), "profile": PROFILE, "exitstatus": int(exitstatus), "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "tests": FIGURES.data})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"runs": runs}, indent=2, sort_keys=True) + "\n")
