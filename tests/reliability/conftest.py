"""Fixtures of the reliability tests: figures recording, hypothesis profiles, reused fixtures.

Reuse, not copies: the Hub server (olah) and its fault-injecting proxy come from
``tests/mlpkg/hubserver.py``; the tiny real engine models from ``tests/engine/engine_testkit.py``;
the real MLP / MiniLM packages from ``tests/server/packages.py``. The ``olah`` and ``hub`` fixtures
themselves live in ``tests/mlpkg/conftest.py``, which cannot be imported from here (every test
folder's conftest is named ``conftest``), so the few lines that start them are repeated below.

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
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
for extra in (HERE, ROOT / "tests" / "mlpkg", ROOT / "tests" / "engine", ROOT):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from mlpkg_hubserver import FaultProxy, OlahServer  # noqa: E402  (tests/mlpkg)
from reliability_kit import FIGURES, PROFILE, NodeFigures  # noqa: E402


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


# -- the Hub (same set-up as tests/mlpkg/conftest.py) ------------------------------------------------
@pytest.fixture(scope="session")
def olah(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OlahServer]:
    server = OlahServer(tmp_path_factory.mktemp("olah"))
    yield server
    server.stop()


@pytest.fixture
def hub_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Online mode (the root conftest sets HF_HUB_OFFLINE=1); point HF_ENDPOINT with ``monkeypatch``."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    return monkeypatch


@pytest.fixture
def proxy(olah: OlahServer) -> Iterator[FaultProxy]:
    p = FaultProxy(olah.port)
    yield p
    p.stop()


# -- packages ------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def mlp_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.server.packages import build_mlp_package

    return build_mlp_package(tmp_path_factory.mktemp("rel-mlp"))


@pytest.fixture(scope="session")
def minilm_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.server.packages import build_minilm_package

    return build_minilm_package(tmp_path_factory.mktemp("rel-minilm"))
