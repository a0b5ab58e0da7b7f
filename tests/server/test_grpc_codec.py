"""V2 gRPC messages ↔ InferRequest / outputs (server/_grpc_codec.py), on the wire tritonclient speaks.

Requests are built with tritonclient's own generated classes and crossed over as bytes, responses
are read back with ``tritonclient.grpc.InferResult``: what the server decodes and encodes is what
the real client sends and reads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from inferox.core import DType
from inferox.core.errors import ERROR_CODES, DTypeError, InvalidInputError

grpc = pytest.importorskip("grpc")  # the [grpc] extra (protobuf and grpcio)
tc_grpc = pytest.importorskip("tritonclient.grpc")
from tritonclient.grpc import service_pb2 as theirs  # noqa: E402
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor  # noqa: E402

from inferox.engine._proto import grpc_service_pb2 as pb  # noqa: E402
from inferox.engine.server import ERROR_STATUS, InferResponse, OutputTensor, error_status  # noqa: E402
from inferox.engine.server._grpc_codec import (  # noqa: E402
    GRPC_STATUS_FOR_HTTP,
    bearer_ok,
    decode_infer_request,
    encode_infer_response,
    grpc_status_name,
    message_from_dict,
)

NUMERIC = [d for d in DType if d.v2_name not in ("BYTES",)]


def _cross(msg: Any) -> Any:
    """tritonclient's message → ours, through the wire format."""
    return pb.ModelInferRequest.FromString(msg.SerializeToString())


def _sample(dtype: DType, shape: tuple[int, ...] = (2, 3)) -> np.ndarray:
    np_dtype = dtype.to_numpy()
    if np_dtype.kind == "b":
        return (np.arange(np.prod(shape)) % 2 == 0).reshape(shape)
    if np_dtype.kind in "iu":
        info = np.iinfo(np_dtype)
        vals = np.array([info.min, info.max, 0, 1, 7, info.max // 3], dtype=np_dtype)
        return vals[: int(np.prod(shape))].reshape(shape)
    return (np.arange(np.prod(shape)) / 7 - 0.25).astype(np_dtype).reshape(shape)


@pytest.mark.parametrize("dtype", NUMERIC, ids=lambda d: d.v2_name)
def test_raw_inputs_of_every_datatype(dtype: DType) -> None:
    arr = _sample(dtype)
    sent = theirs.ModelInferRequest(model_name="echo", id="r1", raw_input_contents=[arr.tobytes()])
    sent.inputs.add(name=f"IN_{dtype.v2_name}", datatype=dtype.v2_name, shape=list(arr.shape))
    req = decode_infer_request(_cross(sent))
    assert req.id == "r1" and req.outputs is None and req.parameters == {}
    (t,) = req.inputs
    assert (t.name, t.datatype, t.shape) == (f"IN_{dtype.v2_name}", dtype.v2_name, (2, 3))
    assert t.data.dtype == arr.dtype
    np.testing.assert_array_equal(t.data, arr)


_TYPED = {"BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "FP32", "FP64"}


@pytest.mark.parametrize("dtype", [d for d in NUMERIC if d.v2_name in _TYPED], ids=lambda d: d.v2_name)
def test_typed_contents_of_every_datatype_that_has_them(dtype: DType) -> None:
    arr = _sample(dtype)
    field = {"BOOL": "bool_contents", "INT64": "int64_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents"}.get(
        dtype.v2_name, "int_contents" if dtype.v2_name.startswith("INT") else "uint_contents"
    )
    sent = theirs.ModelInferRequest(model_name="echo")
    t = sent.inputs.add(name="x", datatype=dtype.v2_name, shape=[2, 3])
    getattr(t.contents, field).extend(arr.reshape(-1).tolist())
    (got,) = decode_infer_request(_cross(sent)).inputs
    assert got.data.dtype == arr.dtype
    np.testing.assert_array_equal(got.data, arr)


def test_bytes_inputs_raw_and_typed_and_parameters() -> None:
    texts = np.array([b"A man is eating food.", "Ünïcode".encode()], dtype=object)
    sent = theirs.ModelInferRequest(model_name="minilm", raw_input_contents=[serialize_byte_tensor(texts).item()])
    sent.inputs.add(name="text", datatype="BYTES", shape=[2]).parameters["max_length"].int64_param = 16
    sent.outputs.add(name="sentence_embedding")
    sent.parameters["timeout"].int64_param = 2_500_000
    sent.parameters["backend"].string_param = "jax"
    sent.parameters["binary_data_output"].bool_param = True
    sent.parameters["ratio"].double_param = 0.5
    sent.parameters["big"].uint64_param = 2**63
    req = decode_infer_request(_cross(sent))
    (t,) = req.inputs
    assert t.texts() == ["A man is eating food.", "Ünïcode"] and t.parameters == {"max_length": 16}
    assert req.parameters == {"timeout": 2_500_000, "backend": "jax", "binary_data_output": True, "ratio": 0.5, "big": 2**63}
    assert req.timeout_s == 2.5
    assert [(o.name, o.binary_data) for o in req.outputs or []] == [("sentence_embedding", True)]

    typed = theirs.ModelInferRequest(model_name="minilm")
    typed.inputs.add(name="text", datatype="BYTES", shape=[1, 2]).contents.bytes_contents.extend([b"a", b"b"])
    (t2,) = decode_infer_request(_cross(typed)).inputs
    assert t2.shape == (1, 2) and t2.texts() == ["a", "b"]


def _req(**inputs: Any) -> Any:
    msg = theirs.ModelInferRequest(model_name="m")
    for name, (datatype, shape) in inputs.items():
        msg.inputs.add(name=name, datatype=datatype, shape=shape)
    return msg


@pytest.mark.parametrize(
    ("build", "error", "name", "expected", "actual"),
    [
        (lambda: theirs.ModelInferRequest(model_name="m"), InvalidInputError, "inputs", "list of tensors", 0),
        (lambda: _with_raw(_req(a=("FP32", [1]), b=("FP32", [1])), [b"\0" * 4]), InvalidInputError, "raw_input_contents", 2, 1),
        (lambda: _with_raw(_req(a=("FP32", [2])), [b"\0" * 4]), InvalidInputError, "a", "8 bytes (FP32 [2])", 4),
        (lambda: _with_raw(_req(a=("FP77", [1])), [b"\0" * 4]), DTypeError, "a", "BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, BF16, FP32, FP64", "FP77"),
        (lambda: _with_raw(_req(a=("FP32", [-1])), [b""]), InvalidInputError, "a", "[int, ...]", [-1]),
        (lambda: _typed(_req(a=("FP16", [1])), "fp32_contents", [1.0]), InvalidInputError, "a", "raw_input_contents", "contents"),
        (lambda: _typed(_req(a=("FP32", [3])), "fp32_contents", [1.0]), InvalidInputError, "a", "3 elements for shape [3]", 1),
        (lambda: _typed(_req(a=("INT8", [1])), "int_contents", [300]), InvalidInputError, "a", "[-128, 127]", "[300, 300]"),
        (lambda: _with_raw(_typed(_req(a=("FP32", [1])), "fp32_contents", [1.0]), [b"\0" * 4]), InvalidInputError, "a", None, None),
        (lambda: _with_raw(_req(a=("BYTES", [2])), [b"\x05\0\0\0ab"]), InvalidInputError, "a", 5, 2),
    ],
)
def test_bad_requests_name_what_is_wrong(build: Any, error: type[Exception], name: str, expected: Any, actual: Any) -> None:
    with pytest.raises(error) as ei:
        decode_infer_request(_cross(build()))
    err: Any = ei.value
    assert type(err) is error
    assert (err.details.get("name"), err.details.get("expected"), err.details.get("actual")) == (name, expected, actual)


def _with_raw(msg: Any, raw: list[bytes]) -> Any:
    msg.raw_input_contents.extend(raw)
    return msg


def _typed(msg: Any, field: str, values: list[Any]) -> Any:
    getattr(msg.inputs[0].contents, field).extend(values)
    return msg


def test_duplicate_and_unnamed_inputs_and_unsupported_extensions() -> None:
    dup = _typed(_req(a=("FP32", [1])), "fp32_contents", [1.0])
    dup.inputs.append(dup.inputs[0])
    with pytest.raises(InvalidInputError, match="given twice"):
        decode_infer_request(_cross(dup))
    with pytest.raises(InvalidInputError) as ei:
        decode_infer_request(_cross(_typed(_req(**{"": ("FP32", [1])}), "fp32_contents", [1.0])))
    assert ei.value.details["name"] == "inputs[0].name"
    shm = _typed(_req(a=("FP32", [1])), "fp32_contents", [1.0])
    shm.inputs[0].parameters["shared_memory_region"].string_param = "r0"
    with pytest.raises(InvalidInputError, match="shared-memory"):
        decode_infer_request(_cross(shm))
    cls = _typed(_req(a=("FP32", [1])), "fp32_contents", [1.0])
    cls.outputs.add(name="y").parameters["classification"].int64_param = 3
    with pytest.raises(InvalidInputError, match="classification") as ei2:
        decode_infer_request(_cross(cls))
    assert ei2.value.details["name"] == "y"


def test_responses_read_back_with_tritonclient() -> None:
    outs = {
        "sentence_embedding": np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4),
        "ids": np.array([[1, 2]], dtype=np.int64),
        "half": np.array([0.5, -2.0], dtype=np.float16),
        "label": np.array([b"cat", "chïen".encode()], dtype=object),
    }
    answer = InferResponse(
        model_name="m", model_version="3", id="req-9", outputs=[OutputTensor(k, v) for k, v in outs.items()],
        parameters={"backend": "torch", "n": 2, "x": 0.5, "cached": False},
    )
    resp = encode_infer_response(answer)
    result = tc_grpc.InferResult(theirs.ModelInferResponse.FromString(resp.SerializeToString()))
    got = result.get_response()
    assert (got.model_name, got.model_version, got.id) == ("m", "3", "req-9")
    assert [o.name for o in got.outputs] == list(outs)
    assert [o.datatype for o in got.outputs] == ["FP32", "INT64", "FP16", "BYTES"]
    for name, arr in outs.items():
        np.testing.assert_array_equal(result.as_numpy(name), arr)
    assert got.parameters["backend"].string_param == "torch" and got.parameters["n"].int64_param == 2
    assert got.parameters["x"].double_param == 0.5 and got.parameters["cached"].HasField("bool_param")

    only = encode_infer_response(InferResponse(model_name="m", model_version="", id=None, outputs=[OutputTensor("label", outs["label"])], parameters={}))
    assert [o.name for o in only.outputs] == ["label"] and len(only.raw_output_contents) == 1 and only.id == ""
    assert deserialize_bytes_tensor(only.raw_output_contents[0]).tolist() == [b"cat", "chïen".encode()]


def test_every_error_code_has_one_http_status_and_one_grpc_status() -> None:
    """One table answers every code on every transport; the HTTP↔gRPC fallback is AIP-193's."""
    for code, cls in ERROR_CODES.items():
        status = error_status(code)
        assert code in ERROR_STATUS, code
        assert isinstance(grpc.StatusCode[status.grpc], grpc.StatusCode), code
        # the class's own status, but for type mismatches: the caller's wrong value (400, not 500)
        assert status.http == (400 if code in ("TYPE_MISMATCH", "STATE_TYPE_MISMATCH") else cls.http_status), code
    assert (ERROR_STATUS["QUEUE_FULL"].grpc, ERROR_STATUS["CLIENT_DISCONNECTED"].http, ERROR_STATUS["CLIENT_DISCONNECTED"].grpc) == ("RESOURCE_EXHAUSTED", 499, "CANCELLED")
    assert {s: grpc_status_name(s) for s in (400, 401, 404, 413, 429, 500, 503, 504, 418, 599)} == {
        400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 404: "NOT_FOUND", 413: "RESOURCE_EXHAUSTED", 429: "RESOURCE_EXHAUSTED",
        500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED", 418: "INVALID_ARGUMENT", 599: "INTERNAL",
    }
    assert all(grpc.StatusCode[n] for n in GRPC_STATUS_FOR_HTTP.values())


@pytest.mark.parametrize(
    ("metadata", "ok"),
    [
        ([("authorization", "Bearer s3cret")], True),
        ([("x-other", "1"), ("Authorization", "bearer s3cret ")], True),
        ([("authorization", b"Bearer s3cret")], True),
        ([("authorization", "Bearer wrong")], False),
        ([("authorization", "Basic s3cret")], False),
        ([("authorization", "s3cret")], False),
        ([], False),
        (None, False),
    ],
)
def test_bearer_metadata(metadata: Any, ok: bool) -> None:
    assert bearer_ok(metadata, "s3cret") is ok


def test_json_shaped_answers_become_messages() -> None:
    meta = message_from_dict(
        pb.ModelMetadataResponse,
        {
            "name": "minilm", "versions": ["1"], "platform": "inferox_torch",
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
            "outputs": [{"name": "sentence_embedding", "datatype": "FP32", "shape": [-1, 384]}],
            "parameters": {"backends": ["torch"]},  # an Inferox extra the message has no field for
        },
    )
    assert (meta.name, list(meta.versions), meta.platform) == ("minilm", ["1"], "inferox_torch")
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [("sentence_embedding", "FP32", [-1, 384])]
    stats = message_from_dict(
        pb.ModelStatisticsResponse,
        {"model_stats": [{"name": "m", "version": "1", "inference_count": 3, "execution_count": 1,
                          "inference_stats": {"success": {"count": 3, "ns": 1200}, "queue": {"count": 3, "ns": 300}},
                          "batch_stats": [{"batch_size": 3, "compute_infer": {"count": 1, "ns": 900}}], "inferox": {"x": 1}}]},
    )
    s = stats.model_stats[0]
    assert (s.inference_count, s.inference_stats.success.ns, s.batch_stats[0].batch_size, s.batch_stats[0].compute_infer.ns) == (3, 1200, 3, 900)
    index = message_from_dict(pb.RepositoryIndexResponse, {"models": [{"name": "a", "version": "2", "state": "READY", "reason": ""}]})
    assert [(m.name, m.version, m.state) for m in index.models] == [("a", "2", "READY")]
