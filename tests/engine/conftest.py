"""Fixtures of the engine tests; the tiny real models live in ``engine_testkit.py``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

# importlib mode: make the sibling helper module importable by the test files.
sys.path.insert(0, str(Path(__file__).parent))

from engine_testkit import make_weights

from inferox.engine import Engine, EngineConfig


@pytest.fixture
def weights() -> tuple[np.ndarray, np.ndarray]:
    return make_weights(0)


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = Engine(EngineConfig(max_batch_size=16, max_queue_delay_ms=5.0))
    yield eng
    eng.shutdown()


@pytest.fixture
def direct_engine() -> Iterator[Engine]:
    eng = Engine(EngineConfig(batching=False))
    yield eng
    eng.shutdown()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """An exception escaping any thread (a batcher worker, a client thread) fails the engine test."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning"))
