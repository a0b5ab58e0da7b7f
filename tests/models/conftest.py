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
