"""inferox.core.weights: safetensors reading with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inferox.core.errors import PackageFormatError, PackageNotFoundError
from inferox.core.weights import load_safetensors

safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="safetensors is a backend dependency, absent in the core-only session")


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    tensors = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1, 2], dtype=np.int64)}
    safetensors_numpy.save_file(tensors, str(path))
    loaded = load_safetensors(path)
    assert sorted(loaded) == ["a", "b"]
    np.testing.assert_array_equal(loaded["a"], tensors["a"])
    assert loaded["b"].dtype == np.int64


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(PackageNotFoundError) as ei:
        load_safetensors(tmp_path / "absent.safetensors")
    assert ei.value.code == "PACKAGE_NOT_FOUND" and ei.value.path == str(tmp_path / "absent.safetensors")


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_malformed_file_names_it(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "w.safetensors"
    safetensors_numpy.save_file({"a": np.zeros((4, 4), dtype=np.float32)}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\xff" * 64)
    with pytest.raises(PackageFormatError) as ei:
        load_safetensors(path)
    assert ei.value.code == "PACKAGE_FORMAT_ERROR" and ei.value.path == str(path) and ei.value.field == "weights"
