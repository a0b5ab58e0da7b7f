"""Smaller defects found by using the product (issue 14, item 17, the parts outside the CLI):
the ``hf://org/name@revision`` spelling, what the pickle refusal tells a command-line user, and the
mode of files ``convert`` writes.

Real huggingface_hub against a real olah server on loopback; real torch checkpoints.
"""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file

from inferox.core.errors import ConfigError, DownloadError, UnsafePackageError
from inferox.mlpkg import HubSource, build_package, convert_pickle_to_safetensors, load_package
from tests.support.hub import OlahServer
from tests.support.model_files import mlp_files


# -- hf://org/name@revision -------------------------------------------------------------------------------
@pytest.fixture
def two_revisions(olah: OlahServer, hub_env: pytest.MonkeyPatch) -> tuple[str, str, dict[str, bytes]]:
    repo_id = f"org/rev-{uuid.uuid4().hex[:8]}"
    olah.repos.create(repo_id, mlp_files([4, 8, 3], seed=1))
    v2 = mlp_files([4, 8, 3], seed=2)
    sha = olah.repos.commit(repo_id, v2, branch="v2")
    hub_env.setenv("HF_ENDPOINT", olah.endpoint)
    return repo_id, sha, v2


def test_an_at_revision_in_the_source_selects_that_revision(two_revisions: tuple[str, str, dict[str, bytes]], tmp_path: Path) -> None:
    repo_id, sha, v2 = two_revisions
    path = build_package(f"hf://{repo_id}@v2", output_dir=tmp_path / "out", golden=False)
    pkg = load_package(path, verify=True)
    assert pkg.revision == sha and pkg.source_repo_id == repo_id and pkg.name == repo_id.split("/")[1]
    assert pkg.metadata["source"]["requested_revision"] == "v2"
    assert (path / "model.safetensors").read_bytes() == v2["model.safetensors"]


def test_the_at_spelling_and_revision_argument_must_agree(two_revisions: tuple[str, str, dict[str, bytes]], tmp_path: Path) -> None:
    repo_id, sha, _ = two_revisions
    same = build_package(f"hf://{repo_id}@v2", revision="v2", output_dir=tmp_path / "a", golden=False)
    assert load_package(same).revision == sha
    with pytest.raises(ConfigError) as ei:
        build_package(f"hf://{repo_id}@v2", revision="main", output_dir=tmp_path / "b", golden=False)
    assert ei.value.code == "INVALID_CONFIG" and ei.value.field == "revision" and "v2" in str(ei.value) and "main" in str(ei.value)


@pytest.mark.parametrize("source", ["hf://org/name@", "hf://org/name@a@b"])
def test_an_unreadable_revision_says_how_to_write_one(source: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as ei:
        build_package(source, output_dir=tmp_path / "out")
    assert ei.value.field == "source" and "hf://org/name@<branch, tag or sha>" in str(ei.value)


def test_a_hub_source_object_with_an_at_in_its_id_says_where_the_revision_goes() -> None:
    with pytest.raises(DownloadError) as ei:
        HubSource("org/name@v2")
    assert ei.value.code == "DOWNLOAD_ERROR" and "revision='v2'" in str(ei.value) and "hf://org/name@v2" in str(ei.value)


# -- pickle ---------------------------------------------------------------------------------------------------
@pytest.fixture
def pickle_folder(tmp_path: Path) -> Path:
    import torch

    src = tmp_path / "picklesrc"
    src.mkdir()
    (src / "config.json").write_bytes(mlp_files([4, 8, 3])["config.json"])
    rng = np.random.default_rng(0)
    state = {"layers.0.weight": torch.from_numpy(rng.standard_normal((8, 4)).astype(np.float32)), "layers.0.bias": torch.zeros(8),
             "layers.1.weight": torch.from_numpy(rng.standard_normal((3, 8)).astype(np.float32)), "layers.1.bias": torch.zeros(3)}
    torch.save(state, src / "pytorch_model.bin")
    return src


def test_the_pickle_refusal_names_the_command_line_flag(pickle_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(UnsafePackageError) as ei:
        build_package(pickle_folder, output_dir=tmp_path / "out")
    msg = str(ei.value)
    assert ei.value.code == "UNSAFE_PACKAGE" and ei.value.path == "pytorch_model.bin"
    assert "--allow-pickle" in msg and "inferox convert pytorch_model.bin --allow-pickle" in msg and "allow_pickle=True" in msg


# -- convert's file mode ------------------------------------------------------------------------------------------
@pytest.fixture
def umask() -> Iterator[Any]:
    old = os.umask(0o022)
    os.umask(old)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_convert_writes_files_with_the_usual_mode(pickle_folder: Path, tmp_path: Path, umask: Any, mask: int) -> None:
    umask(mask)
    out = convert_pickle_to_safetensors(pickle_folder / "pytorch_model.bin", tmp_path / f"converted-{mask:o}.safetensors")
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask
    assert sorted(load_file(str(out))) == ["layers.0.bias", "layers.0.weight", "layers.1.bias", "layers.1.weight"]
