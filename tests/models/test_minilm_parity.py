"""The real all-MiniLM-L6-v2 on torch, jax and onnx against sentence-transformers (the reference).

Per sentence: cosine similarity >= 0.99999 and max absolute difference <= 1e-4, over sequence length
{8, 16, 64, 128, 256, 512} x batch {1, 4, 32} with token inputs of exactly that length, and on
mixed-length padded batches of real text. Models load once per session (see conftest)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from inferox.core import AnyModel, Model
from inferox.core.errors import InvalidInputError

from .conftest import BACKENDS, MINILM_PRE

SEQ_LENGTHS = (8, 16, 64, 128, 256, 512)
BATCH_SIZES = (1, 4, 32)
COS_MIN = 0.99999
ABS_MAX = 1e-4

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "Two men pushed carts through the woods, talking quietly about the long winter that was coming and the firewood they would need.",
    "hi",
    "Inferox runs the same package on PyTorch and on JAX, and both must give the same numbers to within a hundred-thousandth.",
    "",
]


def exact_length_batch(seq: int, batch: int, seed: int) -> dict[str, np.ndarray]:
    """[CLS] + ordinary word-piece ids + [SEP], exactly ``seq`` tokens per row, no padding."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1996, 30522, size=(batch, seq), dtype=np.int64)  # past the special and unused ids
    ids[:, 0], ids[:, -1] = 101, 102
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def st_embed(st: Any, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """sentence-transformers' own Transformer → Pooling → Normalize pipeline on token inputs."""
    with torch.inference_mode():
        feats = st.forward({k: torch.from_numpy(v) for k, v in inputs.items()})
    return feats["sentence_embedding"].numpy()  # type: ignore[no-any-return]


def compare(actual: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """(lowest per-row cosine, highest per-row max abs difference)."""
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    cos = (a * e).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(e, axis=1))
    return float(cos.min()), float(np.abs(a - e).max())


@pytest.fixture(scope="module")
def grid_reference(sentence_transformer: Any) -> dict[tuple[int, int], tuple[dict[str, np.ndarray], np.ndarray]]:
    cache: dict[tuple[int, int], tuple[dict[str, np.ndarray], np.ndarray]] = {}

    class Lazy(dict):  # type: ignore[type-arg]
        def __missing__(self, key: tuple[int, int]) -> tuple[dict[str, np.ndarray], np.ndarray]:
            seq, batch = key
            inputs = exact_length_batch(seq, batch, seed=seq * 1000 + batch)
            self[key] = (inputs, st_embed(sentence_transformer, inputs))
            return self[key]

    return Lazy(cache)


def _run_grid(model: Model, reference: Any, seqs: tuple[int, ...], batches: tuple[int, ...]) -> None:
    any_model = AnyModel(model)
    failures = []
    for seq in seqs:
        for batch in batches:
            inputs, expected = reference[(seq, batch)]
            out = any_model(inputs)
            emb = out["sentence_embedding"]
            assert emb.shape == (batch, 384) and out["last_hidden_state"].shape == (batch, seq, 384)
            cos, diff = compare(emb, expected)
            if cos < COS_MIN or diff > ABS_MAX:
                failures.append(f"seq={seq} batch={batch}: cos={cos:.7f} max|diff|={diff:.2e}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("backend", BACKENDS)
def test_minilm_small_grid_matches_sentence_transformers(backend: str, minilm_models: dict[str, Model], grid_reference: Any) -> None:
    _run_grid(minilm_models[backend], grid_reference, (8, 16, 64), (1, 4))


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_minilm_full_grid_matches_sentence_transformers(backend: str, minilm_models: dict[str, Model], grid_reference: Any) -> None:
    _run_grid(minilm_models[backend], grid_reference, SEQ_LENGTHS, BATCH_SIZES)


@pytest.mark.parametrize("backend", BACKENDS)
def test_minilm_mixed_length_text_batch(backend: str, minilm_models: dict[str, Model], sentence_transformer: Any) -> None:
    model = minilm_models[backend]
    assert model.text_encoder is not None and model.text_encoder.max_length == 256
    expected = sentence_transformer.encode(SENTENCES, batch_size=len(SENTENCES), convert_to_numpy=True)
    batch = model.text_encoder.encode(SENTENCES)
    assert batch["attention_mask"].sum(1).min() == 2 and batch["attention_mask"].min() == 0  # really padded
    tokenized = sentence_transformer.tokenize(SENTENCES)
    np.testing.assert_array_equal(batch["input_ids"], tokenized["input_ids"].numpy())
    np.testing.assert_array_equal(batch["attention_mask"], tokenized["attention_mask"].numpy())
    out = AnyModel(model)(batch)["sentence_embedding"]
    cos, diff = compare(out, expected)
    assert cos >= COS_MIN and diff <= ABS_MAX, (cos, diff)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    # each sentence alone (no padding) gives the same embedding as inside the padded batch
    single = model.encode_text(SENTENCES[4])["sentence_embedding"]  # type: ignore[attr-defined]
    cos, diff = compare(model.backend.to_numpy(single), out[4:5])
    assert cos >= COS_MIN and diff <= ABS_MAX


# Truncation is the text encoder's, the same for every backend: CI checks it on torch, `slow` on the others.
@pytest.mark.parametrize("backend", [b if b == "torch" else pytest.param(b, marks=pytest.mark.slow) for b in BACKENDS])
def test_minilm_truncation_at_256_and_overridden_512(backend: str, minilm_models: dict[str, Model], sentence_transformer: Any) -> None:
    model = minilm_models[backend]
    long_text = " ".join(["benchmarks measure what inferox serves on each backend"] * 80)  # ~640 tokens
    texts = [long_text, SENTENCES[0]]
    try:
        for length in (256, 512):
            sentence_transformer.max_seq_length = length
            expected = sentence_transformer.encode(texts, batch_size=2, convert_to_numpy=True)
            batch = model.text_encoder.encode(texts, max_length=None if length == 256 else length)
            assert batch["input_ids"].shape == (2, length)
            cos, diff = compare(AnyModel(model)(batch)["sentence_embedding"], expected)
            assert cos >= COS_MIN and diff <= ABS_MAX, (length, cos, diff)
    finally:
        sentence_transformer.max_seq_length = MINILM_PRE["max_seq_length"]
    with pytest.raises(InvalidInputError) as ei:
        model.text_encoder.encode(texts, max_length=513)
    assert ei.value.code == "INVALID_INPUT" and ei.value.name == "max_length"


def test_minilm_backends_agree_with_each_other(minilm_models: dict[str, Model]) -> None:
    batch = minilm_models["torch"].text_encoder.encode(SENTENCES)
    outs = [AnyModel(minilm_models[b])(batch) for b in BACKENDS]
    for other in outs[1:]:
        cos, diff = compare(outs[0]["sentence_embedding"], other["sentence_embedding"])
        assert cos >= COS_MIN and diff <= ABS_MAX
        np.testing.assert_allclose(outs[0]["pooler_output"], other["pooler_output"], atol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_minilm_bad_input(backend: str, minilm_models: dict[str, Model]) -> None:
    model = AnyModel(minilm_models[backend])
    ok = exact_length_batch(8, 2, seed=0)
    cases = {
        "too_long": (exact_length_batch(513, 1, seed=0), "input_ids"),
        "vocab": (dict(ok, input_ids=np.full((2, 8), 30522, np.int64)), "input_ids"),
        "negative": (dict(ok, input_ids=np.full((2, 8), -5, np.int64)), "input_ids"),
        "empty": ({k: v[:0] for k, v in ok.items()}, "input_ids"),
        "mask": (dict(ok, attention_mask=np.ones((2, 9), np.int64)), "attention_mask"),
    }
    for case, (inputs, name) in cases.items():
        with pytest.raises(InvalidInputError) as ei:
            model(inputs)
        assert ei.value.code == "INVALID_INPUT" and ei.value.name == name, case


def test_minilm_memory_requirements_agree(minilm_models: dict[str, Model], minilm_dir: Any) -> None:
    from safetensors import safe_open

    with safe_open(str(minilm_dir / "model.safetensors"), "np") as f:
        n = sum(f.get_slice(k).get_shape()[0] * int(np.prod(f.get_slice(k).get_shape()[1:])) for k in f.keys() if k != "embeddings.position_ids")
    sizes = {b: m.memory_requirements() for b, m in minilm_models.items()}
    assert sizes == {b: n * 4 for b in BACKENDS}
