"""Each distribution builds, offline, into an sdist and a wheel holding only what it is: its own
sources, README, LICENSE, py.typed and the packaging metadata every sdist and wheel carries.

Built once a session by the build backend installed here (hatchling: no download; the ``built``
fixture in conftest.py), or taken from ``INFEROX_DIST_DIR`` (``nox -s dist`` writes ``dist/``)."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.repo.dists import DISTRIBUTION_FOLDERS, Built
from tests.support import REPO_ROOT

DISTRIBUTIONS = {
    # folder: (the distribution's name in file names, its import package's folder under src/)
    "inferox-core": ("inferox_core", "inferox/core"),
    "inferox-torch": ("inferox_torch", "inferox/torch"),
    "inferox-jax": ("inferox_jax", "inferox/jax"),
    "inferox-onnx": ("inferox_onnx", "inferox/onnx"),
    "inferox-mlpkg": ("inferox_mlpkg", "inferox/mlpkg"),
    "inferox-engine": ("inferox_engine", "inferox/engine"),
    "tests/plugins/inferox-numpy": ("inferox_numpy", "inferox_numpy"),
}
#: What hatchling puts in every sdist besides the chosen files: the metadata, the build
#: configuration, and the repository's .gitignore (so a build from the sdist ignores the same files).
SDIST_ALWAYS = {"PKG-INFO", "pyproject.toml", ".gitignore"}
WHEEL_METADATA = {"METADATA", "WHEEL", "RECORD", "licenses/LICENSE"}


def sources(folder: Path, package: str) -> set[str]:
    """The distribution's source files as they are in the working tree (byte code excluded)."""
    root = folder / "src"
    return {p.relative_to(root).as_posix() for p in (root / package).rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def test_every_distribution_of_the_repository_is_checked() -> None:
    """A distribution added at the root (``inferox-<x>/``) is checked here too: the list above is
    compared with the folders, which ``nox -s dist`` and the install tests build from."""
    assert set(DISTRIBUTION_FOLDERS) == {f for f in DISTRIBUTIONS if f.startswith("inferox-")}
    assert len(DISTRIBUTION_FOLDERS) == 6


@pytest.mark.parametrize("folder", DISTRIBUTIONS)
def test_sdist_holds_only_the_distribution(built: dict[str, Built], folder: str) -> None:
    package = DISTRIBUTIONS[folder][1]
    sdist = built[folder].sdist
    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile()}
    expected = {f"src/{s}" for s in sources(REPO_ROOT / folder, package)} | {"README.md", "LICENSE"} | SDIST_ALWAYS
    assert members == expected, f"extra: {sorted(members - expected)}, missing: {sorted(expected - members)}"
    assert f"src/{package}/py.typed" in members


@pytest.mark.parametrize("folder", DISTRIBUTIONS)
def test_wheel_holds_only_the_distribution(built: dict[str, Built], folder: str) -> None:
    package = DISTRIBUTIONS[folder][1]
    wheel = built[folder].wheel
    with zipfile.ZipFile(wheel) as zf:
        files = set(zf.namelist())
        metadata = zf.read(next(f for f in files if f.endswith(".dist-info/METADATA"))).decode()
    dist_info = next(f.split("/")[0] for f in files if ".dist-info/" in f)
    code = {f for f in files if not f.startswith(dist_info + "/")}
    meta = {f.split("/", 1)[1] for f in files if f.startswith(dist_info + "/")}
    assert code == sources(REPO_ROOT / folder, package), f"extra: {sorted(code - sources(REPO_ROOT / folder, package))}"
    assert f"{package}/py.typed" in code
    assert not any(f in code for f in ("inferox/__init__.py",)), "the inferox namespace must stay a PEP 420 namespace"
    assert meta - {"entry_points.txt"} == WHEEL_METADATA, sorted(meta)
    # The license the pyproject declares, with its text; the README as the long description.
    assert "License-Expression: Apache-2.0" in metadata and "License-File: LICENSE" in metadata
    readme = (REPO_ROOT / folder / "README.md").read_text(encoding="utf-8")
    assert readme.strip().splitlines()[0] in metadata


@pytest.mark.parametrize("folder", DISTRIBUTIONS)
def test_license_is_the_apache_license(folder: str) -> None:
    text = (REPO_ROOT / folder / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert text == (REPO_ROOT / "LICENSE").read_text(encoding="utf-8")
    assert 'license = "Apache-2.0"' in (REPO_ROOT / folder / "pyproject.toml").read_text(encoding="utf-8")
