"""The shared test library stays cheap to register: every session loads it, the ``core`` session
without torch, jax, olah or huggingface_hub installed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import REPO_ROOT


def test_registering_the_support_plugin_imports_nothing_heavy() -> None:
    code = (
        "import sys, tests.support.fixtures, tests.support.net, tests.support.disks, tests.support.model_files;"
        "print(sorted(m for m in ('torch', 'jax', 'olah', 'huggingface_hub', 'safetensors', 'inferox.mlpkg', 'inferox.engine', 'httpx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_waits_and_time_limits_scale_with_the_load(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    from tests.support import timing

    monkeypatch.setenv(timing.SCALE_ENV, "3")
    assert timing.load_factor() == 3.0 and timing.scaled(10) == 30.0
    monkeypatch.setenv(timing.SCALE_ENV, "0.5")  # never shorter than written
    assert timing.load_factor() == 1.0
    monkeypatch.setenv(timing.SCALE_ENV, "100")  # a hang stays a hang
    assert timing.load_factor() == timing.MAX_FACTOR
    monkeypatch.delenv(timing.SCALE_ENV)
    monkeypatch.setattr(timing.os, "getloadavg", lambda: (6.0, 0.0, 0.0))
    assert timing.load_factor() == min(timing.MAX_FACTOR, 6.0 / timing.usable_cpus())

    def limit() -> float:
        marker = request.node.get_closest_marker("timeout")
        return float(marker.args[0]) if marker else float(request.config.getini("timeout"))

    before = limit()
    timing.stretch_time_limits(request.config, [request.node], factor=2.5)
    assert limit() == before * 2.5
    timing.stretch_time_limits(request.config, [request.node], factor=100)
    assert limit() == before * 2.5 * timing.TIME_LIMIT_STRETCH_MAX
    timing.stretch_time_limits(request.config, [request.node], factor=0.5)  # a quiet machine changes nothing
    assert limit() == before * 2.5 * timing.TIME_LIMIT_STRETCH_MAX


def test_httpx_default_timeout_stretches_and_is_restored() -> None:
    import httpx

    from tests.support import timing

    before = httpx.Client().timeout
    restore = timing.stretch_httpx_default_timeout(3.0)
    try:
        assert httpx.Client().timeout.read == before.read * 3 and httpx.Client().timeout.connect == before.connect * 3  # type: ignore[operator]
    finally:
        restore()
    assert httpx.Client().timeout == before
