"""Environment variables read by core: the plugin block list and the cache folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferox.core import constants as C


def test_blocked_plugins_is_read_on_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    assert C.ENV_BLOCKED_PLUGINS == "INFEROX_BLOCKED_PLUGINS"
    assert C.blocked_plugins() == frozenset()
    monkeypatch.setenv(C.ENV_BLOCKED_PLUGINS, " Jax, ,torch ,")
    assert C.blocked_plugins() == {"jax", "torch"}
    monkeypatch.setenv(C.ENV_BLOCKED_PLUGINS, "")
    assert C.blocked_plugins() == frozenset()


def test_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(C.ENV_CACHE_DIR, str(tmp_path / "c"))
    assert C.cache_dir() == tmp_path / "c"
    monkeypatch.setenv(C.ENV_CACHE_DIR, "~/inferox-cache")
    assert C.cache_dir() == Path("~/inferox-cache").expanduser()
    monkeypatch.delenv(C.ENV_CACHE_DIR)
    assert C.cache_dir() == C.DEFAULT_CACHE_DIR == Path("~/.cache/inferox").expanduser()


def test_engine_variables_are_all_inferox_prefixed() -> None:
    assert C.ENTRY_POINT_GROUP == C.PROJECT_NAME == "inferox"
    assert all(v.startswith("INFEROX_") for v in C.ENV_ENGINE_VARS.values())
    assert len(set(C.ENV_ENGINE_VARS.values())) == len(C.ENV_ENGINE_VARS)
