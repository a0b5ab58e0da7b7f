"""The fixtures every test folder may use, registered by ``tests/conftest.py`` (``pytest_plugins``).

One fixture a thing, under the name most tests already used: ``mlp_package`` / ``minilm_package``
(built once a session), ``mlp_dir`` / ``minilm_dir`` (model folders), ``olah`` (a real Hub server),
``hub_env`` / ``proxy`` / ``hub`` / ``minilm_repo`` (online mode against it), ``tmpfs`` (small disks).
Imports of test-only dependencies (olah, huggingface_hub, safetensors, mlpkg) happen inside the
fixtures, so registering this plugin costs nothing in the nox ``core`` session.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from . import model_files
from .disks import TmpfsDisks

if TYPE_CHECKING:
    from .hub import FaultProxy, Hub, OlahServer


# -- model folders and packages -----------------------------------------------------------------------
@pytest.fixture
def mlp_dir(tmp_path: Path) -> Path:
    """A fresh MLP model folder (sizes 4 → 8 → 3, seed 0) the test may change."""
    return model_files.write_mlp_folder(tmp_path / "src-mlp")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 files (read-only: copy before changing)."""
    return model_files.minilm_dir()


@pytest.fixture(scope="session")
def mlp_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MLP as a real package (read-only: copy before changing); its source folder is
    ``mlp_package.parent.parent / "mlp-src"``, its weights ``model_files.mlp_tensors()``."""
    from .packages import build_mlp_package

    return build_mlp_package(tmp_path_factory.mktemp("mlp-pkg"))


@pytest.fixture(scope="session")
def minilm_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real all-MiniLM-L6-v2 as a package (read-only: copy before changing)."""
    from .packages import build_minilm_package

    return build_minilm_package(tmp_path_factory.mktemp("minilm-pkg"))


# -- the Hub --------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def olah(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OlahServer]:
    """olah on a free loopback port, offline, serving the git repositories the tests create."""
    if importlib.util.find_spec("olah") is None or shutil.which("git") is None:
        pytest.skip("the Hub tests need olah (pip install olah) and git")
    from .hub import OlahServer

    server = OlahServer(tmp_path_factory.mktemp("olah"))
    yield server
    server.stop()


@pytest.fixture
def hub_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Online mode (the root conftest sets HF_HUB_OFFLINE=1); point HF_ENDPOINT with the returned monkeypatch."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    return monkeypatch


@pytest.fixture
def proxy(olah: OlahServer) -> Iterator[FaultProxy]:
    """A fresh fault-injecting proxy in front of olah (no faults until the test sets some)."""
    from .hub import FaultProxy

    p = FaultProxy(olah.port)
    yield p
    p.stop()


@pytest.fixture
def hub(olah: OlahServer, proxy: FaultProxy, hub_env: pytest.MonkeyPatch, tmp_path: Path) -> Hub:
    """Online mode with HF_ENDPOINT on a fresh fault proxy in front of olah."""
    from .hub import Hub

    hub_env.setenv("HF_ENDPOINT", proxy.endpoint)
    return Hub(olah, proxy, tmp_path)


@pytest.fixture(scope="session")
def minilm_repo(olah: OlahServer, minilm_dir: Path) -> tuple[str, str]:
    """all-MiniLM-L6-v2's real files committed to a repository olah serves: (repo_id, sha)."""
    files: dict[str, Any] = {p.relative_to(minilm_dir).as_posix(): p for p in minilm_dir.rglob("*") if p.is_file()}
    sha = olah.repos.create("sentence-transformers/all-MiniLM-L6-v2", files)
    return "sentence-transformers/all-MiniLM-L6-v2", sha


# -- disks ----------------------------------------------------------------------------------------------
@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[TmpfsDisks]:
    """``tmpfs("384k")`` mounts a small disk for the test (skips, saying why, where it cannot)."""
    disks = TmpfsDisks(tmp_path)
    yield disks
    disks.unmount_all()
