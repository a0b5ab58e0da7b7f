"""Helpers shared by the mlpkg tests (a uniquely named module: ``conftest`` is ambiguous when
several test folders run in one session)."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from mlpkg_hubserver import FaultProxy, MirrorRepos, OlahServer

HERE = Path(__file__).parent


def mlp_tensors(sizes: list[int], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        out[f"layers.{i}.weight"] = (rng.standard_normal((b, a)) / np.sqrt(a)).astype(np.float32)
        out[f"layers.{i}.bias"] = rng.standard_normal(b).astype(np.float32) * 0.1
    return out


def write_mlp_folder(folder: Path, sizes: list[int] | None = None, *, activation: str = "relu", seed: int = 0, extra: dict[str, Any] | None = None) -> Path:
    """A model folder for the MLP schema: config.json + model.safetensors."""
    from safetensors.numpy import save_file

    sizes = sizes or [4, 8, 3]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "mlp", "layer_sizes": sizes, "activation": activation, **(extra or {})}))
    save_file(mlp_tensors(sizes, seed), str(folder / "model.safetensors"))
    return folder


def mlp_files(sizes: list[int] | None = None, *, activation: str = "relu", seed: int = 0) -> dict[str, bytes]:
    """The same folder's files as bytes (for committing into a Hub repository)."""
    from safetensors.numpy import save

    sizes = sizes or [4, 8, 3]
    return {
        "config.json": json.dumps({"model_type": "mlp", "layer_sizes": sizes, "activation": activation}).encode(),
        "model.safetensors": save(mlp_tensors(sizes, seed)),
    }


class Hub:
    """What a hub test needs: the repos, olah's endpoint and a fresh fault proxy's endpoint."""

    def __init__(self, olah: OlahServer, proxy: FaultProxy, tmp: Path) -> None:
        self.olah = olah
        self.repos: MirrorRepos = olah.repos
        self.proxy = proxy
        self.endpoint = proxy.endpoint
        self.download_dir = tmp / "hf-downloads"
        self._n = 0

    def new_repo(self, files: dict[str, Any] | None = None, *, prefix: str = "repo") -> tuple[str, str]:
        """A fresh repository ``org/<unique>`` with ``files`` committed on main; returns (repo_id, sha)."""
        import uuid

        repo_id = f"org/{prefix}-{uuid.uuid4().hex[:8]}"
        sha = self.repos.create(repo_id, files)
        return repo_id, sha


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst

