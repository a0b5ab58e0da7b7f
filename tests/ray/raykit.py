"""Helpers for the Ray tests: real packages (inferox.mlpkg builder) in a model repository, and a
package corrupted the way only its hashes can tell."""

from __future__ import annotations

import shutil
from pathlib import Path


def add_model(repo: Path, name: str, package: Path, *, backends: tuple[str, ...] = ("torch",), extra: str = "") -> Path:
    """Copy ``package`` into ``repo/name`` with a ``serving.toml`` naming its backends."""
    dest = repo / name
    shutil.copytree(package, dest)
    listed = ", ".join(f'"{b}"' for b in backends)
    (dest / "serving.toml").write_text(f"backends = [{listed}]\n{extra}")
    return dest


def corrupt(package: Path) -> Path:
    """Flip bytes in the middle of a package's weights (size unchanged: only the hash can tell)."""
    weights = package / "model.safetensors"
    data = bytearray(weights.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 8] = bytes(b ^ 0xFF for b in data[mid : mid + 8])
    weights.write_bytes(bytes(data))
    return weights
