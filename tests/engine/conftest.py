"""Fixtures of the engine tests; the tiny real models live in :mod:`tests.support.engine_models`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from inferox.engine import Engine, EngineConfig
from tests.support.engine_models import make_weights


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
