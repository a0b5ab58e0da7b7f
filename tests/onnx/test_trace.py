"""The tracer (inferox.onnx._trace): array API code recorded into ONNX graphs with dynamic
dimensions, run by ONNX Runtime at several shapes against the same code on NumPy; what it folds and
cancels; the errors for what cannot be traced; a plugin's definition on onnx with no onnx code; the
graph cache key; the graph for an optional input without a fill; and the fused MiniLM graph against
the hand-written graph it replaces."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import array_api_compat.numpy as npx
import numpy as np
import onnxruntime as ort
import pytest
from safetensors.numpy import save_file

from inferox.core import AnyModel, ArchitectureSchema, Definition, DType, ModelMetadata, TensorSpec
from inferox.core.architectures import ENCODER_SCHEMAS
from inferox.core.definition import definition_factory
from inferox.core.errors import BackendError
from inferox.core.plugins import get_registry
from inferox.onnx import OnnxDefinitionModel, OnnxOps
from inferox.onnx._graph import node_counts
from inferox.onnx._trace import Dim, Tracer

from .test_definitions import family_case, token_batch

DATA = Path(__file__).parent / "data"


def trace(fn: Callable[[Any, dict[str, Any]], Mapping[str, Any]], inputs: Mapping[str, tuple[Any, tuple[int | None, ...]]]) -> Any:
    """``fn(xp, inputs)`` traced into a graph; returns the proto."""
    tracer = Tracer("test")
    symbolic = {name: tracer.input(name, np.dtype(dtype), shape) for name, (dtype, shape) in inputs.items()}
    for name, value in fn(tracer.xp, symbolic).items():
        tracer.output(name, value)
    return tracer.build()


def run(model: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


TABLE = np.arange(40, dtype=np.float32).reshape(20, 2) / 10


def everything(xp: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """The array API functions the definitions use (and some they may), on a (b, n, 6) float array
    and (b, n) ids, with shapes computed from the dynamic dimensions."""
    x, ids = inputs["x"], inputs["ids"]
    b, n = ids.shape
    heads = xp.permute_dims(xp.reshape(x, (b, n, 2, 3)), (0, 2, 1, 3))
    pos = xp.arange(n)
    table = xp.asarray(TABLE)
    keep = xp.astype(ids > 2, x.dtype)
    stats = [xp.sum(x, axis=-1, keepdims=True), xp.mean(x, axis=-1, keepdims=True), xp.min(x, axis=-1, keepdims=True),
             xp.max(x, axis=-1, keepdims=True), xp.prod(x[..., :2], axis=-1, keepdims=True)]
    return {
        "roundtrip": xp.reshape(xp.permute_dims(heads, (0, 2, 1, 3)), (b, n, 6)),
        "flat": xp.reshape(x, (b, n * 6)),
        "heads_first": heads[:, 1, ...],
        "relative": pos[None, :] - pos[:, None] + (n - 1),
        "rows": table[:n, :] + x[:, :, :2],
        "last": (n - 1) - xp.argmax(xp.flip(xp.astype(ids, x.dtype), axis=1), axis=1),
        "cumsum": xp.cumulative_sum(ids, axis=1) * xp.astype(ids != 3, ids.dtype),
        "masked_max": xp.max(xp.where(keep[:, :, None] > 0, x, xp.full_like(x, -5.0)), axis=1),
        "stats": xp.concat(stats, axis=-1),
        "integers": xp.stack([xp.floor_divide(ids, 3), xp.remainder(ids, 3), ids * 2 - 1], axis=-1),
        "halves": xp.divide(ids, 2),
        "powers": x ** 2 + xp.abs(x) ** 0.5,
        "ends": xp.stack([x[:, 0, :], x[:, -1, :]], axis=1),
        "every_other": x[:, ::2, 1:],
        "squeezed": xp.squeeze(xp.expand_dims(x, axis=1), axis=1) * 3.0,
        "gathered": xp.take(table, ids % 20, axis=0),
        "broadcast": xp.broadcast_to(x[:, :1, :], (b, n, 6)) + xp.ones((b, n, 1), dtype=x.dtype),
        "logic": xp.astype(xp.logical_and(ids > 1, xp.logical_not(ids >= 5)) | (ids == 0), xp.int32),
        "scores": x @ xp.matrix_transpose(x),
        "elementwise": xp.exp(-xp.abs(x)) + xp.tanh(x) + xp.sign(x) + xp.floor(x) + xp.ceil(x) + xp.round(x) - xp.negative(x)
        + xp.sqrt(xp.abs(x)) + xp.sin(x) * xp.cos(x) + xp.log(xp.abs(x) + 1.0) + xp.maximum(x, 0.5) + xp.minimum(x, -0.5),
        "weights": xp.astype(xp.arange(1, n + 1), x.dtype)[None, :] * keep / xp.maximum(xp.sum(keep, axis=1, keepdims=True), 1.0),
        "first": xp.astype(pos[None, :] == xp.argmax(keep, axis=1)[:, None], xp.float32),
        "zeros": xp.zeros_like(x[:, :, 0]) + xp.full((b, n), 7, dtype=xp.int64)[:, :1],
    }


@pytest.mark.parametrize(("batch", "seq"), [(1, 1), (3, 5), (2, 9)])
def test_traced_namespace_matches_numpy_at_every_shape(batch: int, seq: int) -> None:
    model = trace(everything, {"x": (np.float32, (None, None, 6)), "ids": (np.int64, (None, None))})
    rng = np.random.default_rng(batch * 10 + seq)
    feeds = {"x": rng.standard_normal((batch, seq, 6)).astype(np.float32), "ids": rng.integers(0, 8, size=(batch, seq)).astype(np.int64)}
    got = run(model, feeds)
    want = {k: np.asarray(v) for k, v in everything(npx, {"x": feeds["x"], "ids": feeds["ids"]}).items()}
    assert set(got) == set(want)
    for name, value in want.items():
        assert got[name].shape == value.shape, name
        np.testing.assert_allclose(got[name], value.astype(got[name].dtype), rtol=1e-5, atol=1e-5, err_msg=name)


CONST = np.arange(12, dtype=np.float32).reshape(3, 4) / 7 - 0.5


def more(xp: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """The rest of the namespace: operators, constants folded through every function, fills,
    reductions without an axis, shapes read back from the graph."""
    x, ids = inputs["x"], inputs["ids"]
    b, n = ids.shape
    c = xp.asarray(CONST)
    folded = xp.concat([xp.flip(c, axis=0), xp.expand_dims(xp.sum(c, axis=1), axis=1), xp.broadcast_to(c[:1, :1], (3, 1))], axis=1)
    folded = xp.where(c > 0, folded[:, :4], -c) @ xp.permute_dims(xp.reshape(c, (4, 3)), (1, 0)).T
    folded = folded + xp.squeeze(xp.take(c, xp.asarray([0]), axis=0), axis=0)[None, :3][:, :1] + xp.cumulative_sum(c, axis=1)[:, :3]
    folded = folded + xp.astype(xp.argmax(c, axis=1), xp.float32)[:, None] + xp.max(c) + xp.mean(c, axis=0)[:3] + xp.matmul(c, c.T)[:, 0:1]
    ones = xp.ones((b, n), dtype=xp.float32)
    fill = xp.full_like(ones, 2.0)
    size = xp.asarray([b, n, n + 1])
    return {
        "folded": folded + c[0, 0] + float(c[1, 1]) * int(xp.asarray(3)),
        "fills": xp.astype(fill, xp.int32) * xp.zeros_like(ids, dtype=xp.int32) + xp.astype(-fill, xp.int32) + xp.astype(xp.sqrt(fill * 2.0), xp.int32),
        "fill_out": fill,
        "sizes": size,
        "operators": (2.0 ** x) + (1.0 / (1.0 + abs(x))) + (-x) + (+x) + (x // 0.5) + (x % 0.75) + x.mT.mT - x.T.T,
        "comparisons": xp.astype(~(ids <= 3) | (ids >= 6) & (ids < 7), xp.int64) + xp.astype(ids == ids, xp.int64),
        "integer_ops": (ids // 2) * 10 + (7 - ids) % 3 + xp.square(ids) - xp.positive(ids) + xp.bitwise_invert(ids),
        "argmin": xp.argmin(x[:, :, 0], axis=None),
        "flat_max": xp.max(x, keepdims=True),
        "concat_flat": xp.concat([x[:, :, 0], x[:, :, 1]], axis=None),
        "reshaped": xp.reshape(x, (-1, 3)),
        "last_column": x[:, n - 1, :],
        "from_one": x[:, 1:, :],
        "row_arange": xp.arange(0.5, 3.5, dtype=xp.float32) + xp.astype(xp.arange(1, n + 1, 2)[:, None][:1, :], xp.float32),
        "float_range": xp.arange(xp.astype(xp.asarray(n), xp.float32)),
        "taken": xp.take(ids, xp.asarray([0, 0])),
        "vector_matmul": x[0, 0, :3] @ x[0, :, :3].mT + xp.matmul(x[:, :, :3], xp.asarray(CONST[:, 0]))[0],
        "empty_like": xp.sum(xp.empty((2, 2), dtype=xp.float32)) * 0 + xp.empty_like(ones) * 0,
        "cumsum_1d": xp.cumulative_sum(ids[0, :]),
    }


def test_the_rest_of_the_namespace_matches_numpy() -> None:
    model = trace(more, {"x": (np.float32, (None, None, 6)), "ids": (np.int64, (None, None))})
    for batch, seq in ((1, 2), (3, 5)):
        rng = np.random.default_rng(seq)
        feeds = {"x": rng.standard_normal((batch, seq, 6)).astype(np.float32), "ids": rng.integers(0, 8, size=(batch, seq)).astype(np.int64)}
        got = run(model, feeds)
        for name, value in more(npx, dict(feeds)).items():
            want = np.asarray(value)
            assert got[name].shape == want.shape, name
            if name == "empty_like":
                continue  # only its shape is defined
            np.testing.assert_allclose(got[name], want.astype(got[name].dtype), rtol=1e-5, atol=1e-5, err_msg=name)
    assert "Expand" in node_counts(model)  # the fill asked for as an output is materialised


def test_outputs_that_are_inputs_or_constants_and_names_kept_free() -> None:
    tracer = Tracer("t")
    x = tracer.input("x", np.float32, (None, 2))
    tracer.builder.reserve("w")
    y = x * tracer.xp.asarray(np.array([2.0, 3.0], np.float32))
    tracer.output("x_again", x)  # an input: an Identity
    tracer.output("w", tracer.constant(np.ones(2, np.float32), hint="w"))  # a constant whose hint is an output's name
    tracer.output("y", y)
    tracer.output("y_again", y)  # the same value twice: the second an Identity
    model = tracer.build()
    out = run(model, {"x": np.array([[1.0, 1.0]], np.float32)})
    np.testing.assert_array_equal(out["x_again"], [[1.0, 1.0]])
    np.testing.assert_array_equal(out["w"], [1.0, 1.0])
    np.testing.assert_array_equal(out["y_again"], [[2.0, 3.0]])
    assert [i.name for i in model.graph.input] == ["x"] and "w" not in {t.name for t in model.graph.initializer}
    assert repr(x) == "TracedArray(x, shape=(batch, 2), dtype=float32)" and "constant" in repr(tracer.xp.asarray(1.0))
    assert repr(tracer.xp) == "<inferox.onnx trace namespace>" and x.device == "cpu" and x.to_device("cpu") is x


def test_dimension_arithmetic_and_misuse() -> None:
    tracer = Tracer("t")
    ids = tracer.input("ids", np.int64, (None, None))
    b, n = ids.shape
    assert isinstance(2 + n, Dim) and isinstance(10 - n, Dim) and isinstance(n // 2, Dim) and isinstance(3 * n, Dim)
    with pytest.raises(TypeError):  # a float is no dimension
        n + 1.5
    with pytest.raises(BackendError, match="was tested in a Python condition"):
        bool(n)
    assert ids.size == b * n and ids.ndim == 2 and ids.T.shape == (n, b)
    xp = tracer.xp
    with pytest.raises(BackendError, match="do not broadcast"):
        xp.add(xp.ones((2, 3)), xp.ones((4, 3)) * ids[:, :1])
    with pytest.raises(BackendError, match="Python scalars only"):
        xp.add(1, 2)
    with pytest.raises(BackendError, match="include_initial"):
        xp.cumulative_sum(ids, axis=1, include_initial=True)
    with pytest.raises(BackendError, match="without an axis"):
        xp.cumulative_sum(ids)
    assert xp.isdtype(xp.int64, ("real floating", "signed integer")) and xp.isdtype(xp.float32, np.float32)
    assert xp.iinfo(ids).max == np.iinfo(np.int64).max and xp.finfo(xp.float32).bits == 32 and xp.result_type(ids, xp.float32) == np.float64
    c = tracer.constant(np.arange(3))
    assert len(c) == 3 and [int(v) for v in c] == [0, 1, 2] and [0, 1, 2][c[1]] == 1 and c.is_constant and not ids.is_constant


def test_layout_round_trips_cancel_and_constants_fold() -> None:
    """Nothing is computed for a reshape/transpose round trip, for arithmetic on constants, or for a
    fill used where it broadcasts; the same cast of the same value is one node."""

    def fn(xp: Any, inputs: dict[str, Any]) -> dict[str, Any]:
        x, mask = inputs["x"], inputs["mask"]
        b, n, _ = x.shape
        split = xp.permute_dims(xp.reshape(x, (b, n, 2, 4)), (0, 2, 1, 3))
        back = xp.reshape(xp.permute_dims(split, (0, 2, 1, 3)), (b, n, 8))
        weight = xp.asarray(np.ones((8, 8), np.float32))
        folded = xp.matrix_transpose(weight * 2.0)[0, :] + 1.0  # computed here, one initializer
        masked = xp.where(xp.astype(mask, xp.float32)[:, :, None] > 0, back, xp.full_like(back, -1.0))
        return {"y": masked * folded, "m1": xp.astype(mask, xp.int32), "m2": xp.astype(mask, xp.int32) + 0}

    model = trace(fn, {"x": (np.float32, (None, None, 8)), "mask": (np.int64, (None, None))})
    assert node_counts(model) == {"Cast": 2, "Greater": 1, "Mul": 1, "Unsqueeze": 1, "Where": 1, "Identity": 1}
    x = np.random.default_rng(0).standard_normal((2, 3, 8)).astype(np.float32)
    mask = np.array([[1, 1, 0], [1, 0, 0]], np.int64)
    out = run(model, {"x": x, "mask": mask})
    np.testing.assert_allclose(out["y"], np.where(mask[:, :, None] > 0, x, -1.0) * 3.0)
    np.testing.assert_array_equal(out["m1"], out["m2"])


def test_dims_are_symbols_equal_only_to_themselves() -> None:
    tracer = Tracer("t")
    ids = tracer.input("ids", np.int64, (None, None))
    mask = tracer.input("mask", np.int64, (None, None, 4))
    b, n = ids.shape
    assert mask.shape[:2] == (b, n) and mask.shape[2] == 4  # shared by position: batch, sequence
    assert n + 1 == n + 1 and n + 1 != n + 2 and n - n == 0 and n * 1 is n and n + 0 is n and 1 * n is n
    assert repr(b) == "batch" and isinstance(n - 1, Dim) and (n - 1) + 1 != n  # not simplified further
    assert hash(n + 1) == hash(n + 1)


@pytest.mark.parametrize(
    ("fn", "what"),
    [
        (lambda xp, x: list(range(x.shape[1])), "'sequence' was asked for in Python"),
        (lambda xp, x: x.shape[0] > 1, "'batch' was compared in Python"),
        (lambda xp, x: bool(xp.sum(x) > 0), "a Python branch on array values"),
        (lambda xp, x: float(x[0, 0]), "a Python branch on array values"),
        (lambda xp, x: x[x > 0], "boolean-mask indexing"),
        (lambda xp, x: x.__setitem__(0, 1.0), "item assignment"),
        (lambda xp, x: len(x), "len() of an array whose first dimension is dynamic"),
    ],
    ids=["range", "compare", "bool", "float", "mask", "setitem", "len"],
)
def test_what_cannot_be_traced_is_a_named_backend_error(fn: Callable[[Any, Any], Any], what: str) -> None:
    tracer = Tracer("t")
    x = tracer.input("x", np.float32, (None, None))
    with pytest.raises(BackendError) as ei:
        fn(tracer.xp, x)
    assert ei.value.code == "BACKEND_ERROR" and ei.value.backend == "onnx"
    assert "cannot be traced into ONNX" in str(ei.value) and what in str(ei.value)


# -- a plugin's definition on onnx: no onnx code ---------------------------------------------------------
def _scale_forward(xp: Any, ops: Any, params: Any, inputs: Mapping[str, Any], config: Any) -> dict[str, Any]:
    x = inputs["x"]
    h = ops.layer_norm(ops.gelu(ops.linear(x, params["w"], params["b"])), params["g"], params["beta"], 1e-5)
    return {"y": ops.l2_normalize(ops.softmax(h, axis=-1) * xp.astype(xp.arange(x.shape[1]), x.dtype)[None, :, None], axis=-1)}


def _python_length(xp: Any, ops: Any, params: Any, inputs: Mapping[str, Any], config: Any) -> dict[str, Any]:
    x = inputs["x"]
    return {"y": xp.stack([x[:, i, :] for i in range(x.shape[1])], axis=1)}  # a Python loop over a dynamic length


def _schema(forward: Any, name: str = "scaled") -> ArchitectureSchema:
    return ArchitectureSchema(
        name=name,
        parse=lambda config: config,
        weight_shapes=lambda config: {"w": (4, 3), "b": (4,), "g": (4,), "beta": (4,)},
        specs=lambda config, pre: ([TensorSpec("x", DType.F32, (None, None, 3))], [TensorSpec("y", DType.F32, (None, None, 4))]),
        golden=lambda config, pre, rng: {"x": rng.standard_normal((2, 5, 3)).astype(np.float32)},
        example_config={},
        definition=Definition(forward=forward),
    )


def _build(schema: ArchitectureSchema, weights: Any, **options: Any) -> Any:
    return definition_factory(schema)(backend=get_registry().get_backend("onnx"), config={}, weights=weights, metadata=ModelMetadata(schema.name), **options)


def _plugin_weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {"w": rng.standard_normal((4, 3)).astype(np.float32), "b": rng.standard_normal(4).astype(np.float32),
            "g": np.ones(4, np.float32), "beta": np.zeros(4, np.float32)}


def test_a_plugin_definition_runs_on_onnx_with_no_onnx_code() -> None:
    schema = _schema(_scale_forward)
    weights = _plugin_weights()
    model = _build(schema, weights, cache=False)
    assert isinstance(model, OnnxDefinitionModel)
    x = {"x": np.random.default_rng(4).standard_normal((3, 7, 3)).astype(np.float32)}
    reference = schema.load_reference()
    assert reference is not None
    np.testing.assert_allclose(AnyModel(model)(x)["y"], reference({}, weights, x)["y"], atol=1e-5)
    # The GELU takes the projection's bias (ONNX Runtime's BiasGelu); the layer norm is the opset-17
    # operator (there is no residual sum to fuse).
    assert model.nodes["traced"]["BiasGelu"] == 1 and model.nodes["traced"]["LayerNormalization"] == 1


def test_an_untraceable_definition_fails_to_load_naming_why() -> None:
    with pytest.raises(BackendError) as ei:
        _build(_schema(_python_length, name="loop"), _plugin_weights(), cache=False)
    assert ei.value.code == "BACKEND_ERROR" and ei.value.backend == "onnx" and ei.value.model == "loop"
    assert "the definition of architecture 'loop': cannot be traced into ONNX" in str(ei.value)
    assert "'sequence' was asked for in Python" in str(ei.value)


def test_ops_over_the_backend_namespace() -> None:
    backend = get_registry().get_backend("onnx")
    ops = backend.ops()
    assert isinstance(ops, OnnxOps) and ops.fuse and ops.name == "onnx"
    assert backend.array_namespace().float32 == np.float32 and backend.array_namespace().isdtype(np.float32, "real floating")


# -- the cache key, and graphs for other signatures ---------------------------------------------------------
def test_cache_key_names_the_definition_its_code_config_and_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFEROX_CACHE_DIR", str(tmp_path / "cache"))
    weights = _plugin_weights()
    first = _build(_schema(_scale_forward), weights)
    key = first.cache_key(first.graph_inputs)
    assert key["definition"]["forward"] == f"{__name__}:_scale_forward"
    assert key["inputs"] == ["x"] and key["weights"].startswith("arrays:") and key["optimize"] is True
    assert len(key["definition"]["sources"]) >= 2  # this module's source, core's ops, the tracer's
    again = _build(_schema(_scale_forward), weights)
    assert again.from_cache is True
    # Another definition (same name, config and weights) is another graph, not the cached one.
    def other(xp: Any, ops: Any, params: Any, inputs: Mapping[str, Any], config: Any) -> dict[str, Any]:
        return {"y": ops.linear(inputs["x"], params["w"], params["b"])}

    changed = _build(_schema(other), weights)
    assert changed.from_cache is False and changed.cache_key(changed.graph_inputs)["definition"]["forward"].endswith("other")
    assert len(list((tmp_path / "cache" / "onnx").iterdir())) == 2


def test_an_optional_input_without_a_fill_gets_its_own_graph_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """position_ids (optional, no fill): the main graph does not take it; a request that brings it
    runs a second graph, traced once from the weights read again from the package file."""
    monkeypatch.setenv("INFEROX_CACHE_DIR", str(tmp_path / "cache"))
    config, pre, weights = family_case("roberta", pre={"pooling": "mean"})
    path = tmp_path / "model.safetensors"
    save_file(weights, str(path))
    registry = get_registry()
    model = registry.architecture_factory("onnx", "roberta")(backend=registry.get_backend("onnx"), config=config, weights=path,
                                                              metadata=ModelMetadata("r", architecture="roberta"), preprocessing=pre)
    assert model.graph_inputs == {"input_ids", "attention_mask", "token_type_ids"}
    assert model.plan.params is None and model._params is None  # the session holds the weights, not the host
    inputs = token_batch("roberta", config)
    mask = inputs["attention_mask"]
    explicit = dict(inputs, position_ids=(np.cumsum(mask, axis=1) * mask + 1).astype(np.int64))
    implicit, given = AnyModel(model)(inputs), AnyModel(model)(explicit)
    real = mask.astype(bool)
    np.testing.assert_allclose(given["last_hidden_state"][real], implicit["last_hidden_state"][real], atol=1e-5)
    shifted = dict(inputs, position_ids=np.tile(np.arange(2, 11), (3, 1)))
    reference = ENCODER_SCHEMAS["roberta"].load_reference()
    assert reference is not None
    np.testing.assert_allclose(AnyModel(model)(shifted)["sentence_embedding"], reference(config, weights, shifted, preprocessing=pre)["sentence_embedding"], atol=1e-4)
    assert list(model._variants) == [model.graph_inputs | {"position_ids"}]  # built once, used twice
    assert len(list((tmp_path / "cache" / "onnx").iterdir())) == 2  # and cached beside the main graph
    model.close()
    assert model.closed and not model._variants


# -- MiniLM: the traced graph has the hand-written graph's operators -------------------------------------------
def test_minilm_traced_graph_has_the_hand_written_graphs_fused_operators() -> None:
    """all-MiniLM-L6-v2 (mean pooling, normalised): the traced, fused graph against the node-type
    counts of the hand-written graph it replaces, after ONNX Runtime's transformer optimiser
    (recorded in data/handwritten_bert_graphs.json by the builder of commit f2cafe6). The fused
    operators are the same in number, the dense products too; nothing is left unfused."""
    from .test_model import load_minilm

    recorded = json.loads((DATA / "handwritten_bert_graphs.json").read_text())["minilm_mean_normalize"]
    before = recorded["after"]
    model = load_minilm(cache=False)
    after = model.nodes["optimized"]
    for op in ("Attention", "SkipLayerNormalization", "BiasGelu", "EmbedLayerNormalization"):
        assert after[op] == before[op], op
    assert after.get("MatMul", 0) + after.get("Gemm", 0) == before["MatMul"]  # the pooler is one Gemm
    assert not {"Softmax", "Erf", "LayerNormalization", "Reshape", "Transpose"} & set(after)
    assert sum(after.values()) <= sum(before.values())
    assert model.fusions == recorded["fusions"]
