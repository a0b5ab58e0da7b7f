"""Fixtures for the architecture tests: backends from the real plugin registry, the real MiniLM files,
tiny random BERT / MLP weights, and module-scoped loaded models so the heavy ones load once."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inferox.core import AnyModel, Model, ModelMetadata
from inferox.core.plugins import get_registry
from tests.support import model_files

BACKENDS = ("torch", "jax", "onnx")


def build(backend: str, arch: str, *, config: Mapping[str, Any], weights: Any, name: str = "m", **options: Any) -> Model:
    """Build a model through the registry, as mlpkg and the engine do."""
    registry = get_registry()
    factory = registry.architecture_factory(backend, arch)
    return factory(  # type: ignore[no-any-return]
        backend=registry.get_backend(backend),
        config=dict(config),
        weights=weights,
        metadata=ModelMetadata(name, architecture=arch),
        device=None,
        dtype=options.pop("dtype", None),
        **options,
    )


@pytest.fixture(scope="session")
def minilm_config(minilm_dir: Path) -> dict[str, Any]:
    return json.loads((minilm_dir / "config.json").read_text())  # type: ignore[no-any-return]


MINILM_PRE = {"pooling": "mean", "normalize": True, "max_seq_length": 256}


def load_minilm(backend: str, **options: Any) -> Model:
    d = model_files.minilm_dir()
    return build(
        backend,
        "bert",
        config=json.loads((d / "config.json").read_text()),
        weights=d / "model.safetensors",
        name="minilm",
        preprocessing=dict(MINILM_PRE),
        tokenizer_path=d / "tokenizer.json",
        **options,
    )


@pytest.fixture(scope="session")
def minilm_models() -> dict[str, Model]:
    """MiniLM loaded once per backend for the whole session (the parity grid and the error tests share it)."""
    return {b: load_minilm(b) for b in BACKENDS}


@pytest.fixture(scope="session")
def sentence_transformer(minilm_dir: Path) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir), device="cpu", local_files_only=True)


TINY_BERT = {
    "model_type": "bert",
    "vocab_size": 97,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "max_position_embeddings": 40,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "hidden_act": "gelu",
    "pad_token_id": 0,
}


def tiny_bert_weights(seed: int = 0, *, prefix: str = "") -> dict[str, np.ndarray]:
    """Random Hugging Face-named weights for :data:`TINY_BERT`, made by a real ``transformers.BertModel``."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    ref = BertModel(BertConfig(**TINY_BERT), add_pooling_layer=True).eval()
    return {prefix + k: v.detach().numpy().copy() for k, v in ref.state_dict().items()}


def as_numpy(model: Model, outputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {k: model.backend.to_numpy(v) for k, v in outputs.items()}


def run_any(model: Model, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return AnyModel(model).forward_any(dict(inputs))  # type: ignore[no-any-return]


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


RunFn = Callable[[Model, Mapping[str, Any]], dict[str, np.ndarray]]


# -- encoder families and task heads, packed by inferox from transformers checkpoints -------------------------
#: Where a (family, head, backend) parity case runs: core's NumPy reference (the definition itself, in
#: float64) and every backend (inferox-onnx traces the definitions into ONNX graphs).
PARITY_BACKENDS = ("reference", "torch", "jax", "onnx")
#: jax compiles one executable per bucket: one bucket for every parity batch keeps it to one compile a model.
JAX_OPTIONS = {"seq_buckets": [16], "batch_buckets": [4]}


class FamilyPackages(dict):  # type: ignore[type-arg]
    """``packages[(family, head)]`` → ``(package path, transformers model)``, each built once on first use."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def __missing__(self, key: tuple[str, str | None]) -> tuple[Path, Any]:
        from inferox.mlpkg import build_package
        from tests.support.families import save_checkpoint

        family, head = key
        src = self.root / "src" / f"{family}-{head or 'encoder'}"
        hf = save_checkpoint(family, src, head=head, seed=len(self))
        self[key] = (build_package(src, output_dir=self.root / "packages"), hf)
        return self[key]  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def family_packages(tmp_path_factory: pytest.TempPathFactory) -> FamilyPackages:
    pytest.importorskip("transformers", reason="the families' checkpoints are made with transformers")
    return FamilyPackages(tmp_path_factory.mktemp("families"))


def run_package(package: Path, backend: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The package's outputs for ``inputs`` on ``backend`` (``"reference"``: core's NumPy reference)."""
    from inferox.mlpkg import load_model, load_package

    pkg = load_package(package)
    if backend == "reference":
        schema = get_registry().schema(pkg.architecture)
        reference = schema.load_reference()
        assert reference is not None
        from safetensors.numpy import load_file

        return reference(pkg.config, load_file(str(pkg.weights_path)), dict(inputs), preprocessing=dict(pkg.preprocessing))
    if backend not in get_registry().available_backends():
        pytest.skip(f"backend {backend!r} is not installed here")
    key = (str(package), backend)
    if key not in _LOADED:
        _LOADED[key] = load_model(pkg, backend=backend, **(JAX_OPTIONS if backend == "jax" else {}))
    return _LOADED[key](dict(inputs))  # type: ignore[no-any-return]


#: Models loaded by :func:`run_package`, once per (package, backend) for the session (jax compiles once).
_LOADED: dict[tuple[str, str], Any] = {}
