"""Fixtures for every test folder. The shared ones are a library, :mod:`tests.support`, registered
here as a plugin; each folder's own conftest.py keeps only what that folder alone uses."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.support.fixtures"]


def have(module: str) -> bool:
    """Whether a framework is importable here (tests skip by capability, not by backend name)."""
    return importlib.util.find_spec(module) is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Time limits written for a quiet machine, stretched by the load when the run starts."""
    from tests.support.timing import stretch_time_limits

    stretch_time_limits(config, items)


@pytest.fixture(autouse=True, scope="session")
def _http_waits_fit_a_busy_machine() -> Iterator[None]:
    """httpx's 5 s default timeout, which tests rely on wherever an answer comes at once, stretched
    by the load when the run starts (a loaded CI machine overran it)."""
    from tests.support.timing import load_factor, stretch_httpx_default_timeout

    factor = load_factor()
    restore = stretch_httpx_default_timeout(factor) if factor > 1.0 and have("httpx") else None
    yield
    if restore is not None:
        restore()


@pytest.fixture(autouse=True)
def _isolated_inferox_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep tests from reading or writing the user's real cache or blocking settings."""
    monkeypatch.setenv("INFEROX_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "inferox-cache"))
    monkeypatch.delenv("INFEROX_BLOCKED_PLUGINS", raising=False)
    monkeypatch.delenv("INFEROX_PACKAGE_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
