"""The V2 codec on its own: JSON and binary tensors, every datatype, and every validation error."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.http import InferResult

from inferox.core import DType
from inferox.core.errors import DTypeError, InvalidInputError, ModelNotFoundError, QueueFullError
from inferox.engine.server._protocol import (
    HEADER_LENGTH,
    RequestedOutput,
    decode_bytes_tensor,
    encode_bytes_tensor,
    encode_infer_response,
    error_response_parts,
    parse_infer_request,
    v2_datatype,
)

ALL = [d for d in DType]


def _body(inputs: list[dict], **extra: object) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


def _tensor(name: str = "x", datatype: str = "FP32", shape: list[int] | None = None, data: object = None, **kw: object) -> dict:
    t: dict = {"name": name, "datatype": datatype, "shape": shape if shape is not None else [2]}
    if data is not None:
        t["data"] = data
    t.update(kw)
    return t


@pytest.mark.parametrize("dtype", ALL, ids=[d.v2_name for d in ALL])
def test_binary_round_trip_every_dtype_through_tritonclient_encoding(dtype: DType) -> None:
    """Bodies built by the real tritonclient decode to the same arrays; responses decode back in tritonclient."""
    arr = (np.arange(12).reshape(3, 4) % 3).astype(dtype.to_numpy())
    inp = httpclient.InferInput("x", [3, 4], dtype.v2_name)
    inp.set_data_from_numpy(arr, binary_data=True)
    body, json_size = httpclient.InferenceServerClient.generate_request_body([inp], request_id="r1")
    req = parse_infer_request(body, json_size)
    assert req.id == "r1" and req.binary_data_output
    decoded = req.inputs[0].data
    assert decoded.dtype == arr.dtype and decoded.shape == (3, 4)
    np.testing.assert_array_equal(decoded.view(np.uint8), arr.view(np.uint8))
    payload, headers = encode_infer_response(model_name="m", model_version="1", request_id="r1", outputs={"y": decoded}, requested=None, binary_default=True)
    result = InferResult.from_response_body(payload, header_length=int(headers[HEADER_LENGTH.lower()]))
    np.testing.assert_array_equal(result.as_numpy("y").view(np.uint8), arr.view(np.uint8))


def test_json_values_every_numeric_dtype() -> None:
    for d in ALL:
        if d is DType.BF16:
            continue
        data = [True, False] if d.is_bool else [1, 2] if d.is_int else [0.5, -1.25]
        req = parse_infer_request(_body([_tensor(datatype=d.v2_name, data=data)]))
        assert req.inputs[0].data.dtype == d.to_numpy() and req.inputs[0].data.tolist() == data


def test_bytes_tensors_json_and_binary() -> None:
    req = parse_infer_request(_body([_tensor("t", "BYTES", [2], ["héllo", "world"])]))
    assert req.inputs[0].texts() == ["héllo", "world"]
    raw = encode_bytes_tensor(["a", b"bc", ""])
    assert decode_bytes_tensor(raw) == [b"a", b"bc", b""]
    header = json.dumps({"inputs": [_tensor("t", "BYTES", [3], parameters={"binary_data_size": len(raw)})]}).encode()
    req = parse_infer_request(header + raw, len(header))
    assert list(req.inputs[0].data) == [b"a", b"bc", b""]
    bad = parse_infer_request(
        json.dumps({"inputs": [_tensor("t", "BYTES", [1], parameters={"binary_data_size": 5})]}).encode() + struct.pack("<I", 1) + b"\xff",
        len(json.dumps({"inputs": [_tensor("t", "BYTES", [1], parameters={"binary_data_size": 5})]}).encode()),
    )
    with pytest.raises(InvalidInputError) as ei:
        bad.inputs[0].texts()
    assert ei.value.code == "INVALID_INPUT" and ei.value.name == "t"
    payload, headers = encode_infer_response(
        model_name="m", model_version=None, request_id=None, outputs={"s": np.array([b"x", "y"], dtype=object)}, requested=None, binary_default=False
    )
    assert json.loads(payload)["outputs"][0] == {"name": "s", "datatype": "BYTES", "shape": [2], "data": ["x", "y"]}
    assert headers == {"content-type": "application/json"}


def test_nested_data_and_requested_outputs() -> None:
    req = parse_infer_request(_body([_tensor(shape=[2, 2], data=[[1, 2], [3, 4]])], outputs=[{"name": "y", "parameters": {"binary_data": False}}, {"name": "z"}], parameters={"timeout": 2_000_000}))
    assert req.inputs[0].data.tolist() == [[1, 2], [3, 4]]
    assert req.outputs == [RequestedOutput("y", False), RequestedOutput("z", None)]
    assert req.timeout_s == 2.0
    payload, _ = encode_infer_response(
        model_name="m", model_version="1", request_id="i", outputs={"y": np.ones(2, np.float32), "z": np.zeros(1, np.int64)}, requested=req.outputs, binary_default=True,
        parameters={"backend": "torch"},
    )
    head_len = len(payload) - 8
    header = json.loads(payload[:head_len])
    assert header["parameters"] == {"backend": "torch"} and header["id"] == "i"
    assert header["outputs"][0]["data"] == [1.0, 1.0] and header["outputs"][1]["parameters"] == {"binary_data_size": 8}
    with pytest.raises(InvalidInputError) as ei:
        encode_infer_response(model_name="m", model_version=None, request_id=None, outputs={"y": np.ones(1)}, requested=[RequestedOutput("q")], binary_default=False)
    assert ei.value.name == "q" and ei.value.expected == ["y"]
    bf = encode_infer_response(model_name="m", model_version=None, request_id=None, outputs={"b": np.ones(2, DType.BF16.to_numpy())}, requested=None, binary_default=False)
    assert json.loads(bf[0])["outputs"][0] == {"name": "b", "datatype": "BF16", "shape": [2], "data": [1.0, 1.0]}
    assert v2_datatype(np.dtype("U3")) == "BYTES"


@pytest.mark.parametrize(
    ("body", "header_length", "name", "cls"),
    [
        (b"not json", None, "body", InvalidInputError),
        (b"[]", None, "body", InvalidInputError),
        (b'{"inputs": 3}', None, "inputs", InvalidInputError),
        (b'{"inputs": [3]}', None, "inputs[0]", InvalidInputError),
        (b'{"inputs": [{"datatype": "FP32"}]}', None, "inputs[0].name", InvalidInputError),
        (b'{"id": 5, "inputs": []}', None, "id", InvalidInputError),
        (b'{"parameters": [], "inputs": []}', None, "parameters", InvalidInputError),
        (_body([_tensor(datatype=7, data=[1, 2])]), None, "x", DTypeError),
        (_body([_tensor(datatype="FP99", data=[1, 2])]), None, "x", DTypeError),
        (_body([_tensor(shape=[-1], data=[1])]), None, "x", InvalidInputError),
        (_body([_tensor(shape="2", data=[1])]), None, "x", InvalidInputError),
        (_body([_tensor(data=[1, 2]), _tensor(data=[1, 2])]), None, "x", InvalidInputError),
        (_body([_tensor()]), None, "x", InvalidInputError),
        (_body([_tensor(data=[1, 2, 3])]), None, "x", InvalidInputError),
        (_body([_tensor(datatype="INT8", data=[1, 300])]), None, "x", InvalidInputError),
        (_body([_tensor(datatype="INT32", data=[1, 2.5])]), None, "x", DTypeError),
        (_body([_tensor(datatype="BOOL", data=[1, 0])]), None, "x", DTypeError),
        (_body([_tensor(datatype="BYTES", data=[1, 2])]), None, "x", InvalidInputError),
        (_body([_tensor(data=[1, 2], parameters=[])]), None, "x.parameters", InvalidInputError),
        (_body([_tensor(parameters={"shared_memory_region": "r"})]), None, "x", InvalidInputError),
        (_body([_tensor(parameters={"binary_data_size": -1})]), None, "x", InvalidInputError),
        (_body([_tensor(parameters={"binary_data_size": 8})]), None, "x", InvalidInputError),
        (_body([_tensor(data=[1, 2])], outputs={}), None, "outputs", InvalidInputError),
        (_body([_tensor(data=[1, 2])], outputs=[{"nom": 1}]), None, "outputs[0]", InvalidInputError),
        (_body([_tensor(data=[1, 2])], outputs=[{"name": "y", "parameters": {"classification": 2}}]), None, "y", InvalidInputError),
        (b"{}", "abc", HEADER_LENGTH, InvalidInputError),
        (b"{}", "-1", HEADER_LENGTH, InvalidInputError),
    ],
)
def test_malformed_requests_name_the_field(body: bytes, header_length: str | None, name: str, cls: type[Exception]) -> None:
    with pytest.raises(cls) as ei:
        parse_infer_request(body, header_length)
    assert isinstance(ei.value, InvalidInputError) and ei.value.name == name
    assert ei.value.code == ("INVALID_DTYPE" if cls is DTypeError else "INVALID_INPUT")


def test_binary_size_and_trailing_bytes_are_checked() -> None:
    head = json.dumps({"inputs": [_tensor(parameters={"binary_data_size": 4})]}).encode()
    with pytest.raises(InvalidInputError) as ei:
        parse_infer_request(head + b"\0" * 4, len(head))
    assert ei.value.name == "x" and ei.value.actual == 4 and "8 bytes" in str(ei.value.expected)
    head8 = json.dumps({"inputs": [_tensor(parameters={"binary_data_size": 8})]}).encode()
    with pytest.raises(InvalidInputError) as ei:
        parse_infer_request(head8 + b"\0" * 12, len(head8))
    assert ei.value.name == "body" and ei.value.expected == 8 and ei.value.actual == 12
    headb = json.dumps({"inputs": [_tensor(datatype="BOOL", parameters={"binary_data_size": 2})]}).encode()
    with pytest.raises(DTypeError) as ed:
        parse_infer_request(headb + b"\x01\x07", len(headb))
    assert ed.value.name == "x"
    heads = json.dumps({"inputs": [_tensor(datatype="BYTES", shape=[2], parameters={"binary_data_size": 5})]}).encode()
    with pytest.raises(InvalidInputError) as es:
        parse_infer_request(heads + encode_bytes_tensor(["a"]), len(heads))
    assert es.value.name == "x" and es.value.expected == 2 and es.value.actual == 1
    with pytest.raises(InvalidInputError):
        decode_bytes_tensor(b"\x05\x00")
    with pytest.raises(InvalidInputError):
        decode_bytes_tensor(struct.pack("<I", 9) + b"abc")


def test_timeout_parameter_validation() -> None:
    req = parse_infer_request(_body([_tensor(data=[1, 2])], parameters={"timeout": "soon"}))
    with pytest.raises(InvalidInputError) as ei:
        _ = req.timeout_s
    assert ei.value.name == "timeout" and ei.value.actual == "soon"
    assert parse_infer_request(_body([_tensor(data=[1, 2])])).timeout_s is None


def test_error_response_parts() -> None:
    status, body, headers = error_response_parts(QueueFullError("m", max_queue_size=3, retry_after=0.2))
    assert status == 429 and body["code"] == "QUEUE_FULL" and headers == {"retry-after": "1"}
    status, body, headers = error_response_parts(QueueFullError("m", max_queue_size=3, retry_after=2.5))
    assert headers == {"retry-after": "3"}
    status, body, headers = error_response_parts(ModelNotFoundError("m"))
    assert (status, body, headers) == (404, {"error": "model 'm' not found", "code": "MODEL_NOT_FOUND"}, {})


def test_json_round_trip_keeps_the_stdlib_forms_orjson_would_change() -> None:
    """Non-finite floats are written as the strings "NaN"/"Infinity" (never null, never bare
    literals strict parsers refuse), float32 values come back exactly,
    integers keep their values, and request JSON that orjson refuses (NaN literals, numbers beyond
    double range) is still read by the stdlib — or refused with its typed error."""
    outputs = {
        "f": np.array([0.1, -2.5, 1e-8], np.float32),
        "n": np.array([np.nan, np.inf, 1.0], np.float32),
        "i": np.array([2**40, -3], np.int64),
        "b": np.array([True, False]),
        "h": np.array([0.5, 3.0], np.float16),
    }
    payload, _ = encode_infer_response(model_name="m", model_version=None, request_id=None, outputs=outputs, requested=None, binary_default=False)
    assert b'"NaN"' in payload and b'"Infinity"' in payload and b"null" not in payload
    back = {o["name"]: o["data"] for o in json.loads(payload, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))["outputs"]}
    np.testing.assert_array_equal(np.asarray(back["f"], np.float32), outputs["f"])
    assert back["i"] == [2**40, -3] and back["b"] == [True, False] and back["h"] == [0.5, 3.0]
    assert back["n"] == ["NaN", "Infinity", 1.0]
    n = np.asarray(back["n"], np.float32)  # as tritonclient's as_numpy reads them
    assert np.isnan(n[0]) and n[1:].tolist() == [float("inf"), 1.0]
    # Arrays orjson refuses (not native-endian) are written by the stdlib, with the same values.
    swapped, _ = encode_infer_response(
        model_name="m", model_version=None, request_id=None, outputs={"be": np.array([1.5, 2.0], ">f4")}, requested=None, binary_default=False
    )
    assert json.loads(swapped)["outputs"][0]["data"] == [1.5, 2.0]

    req = parse_infer_request(b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [2], "data": [NaN, 1.5]}]}')
    assert np.isnan(req.inputs[0].data[0]) and req.inputs[0].data[1] == 1.5
    # An integer literal beyond 64 bits is read as a float: no INT64, but a valid FP64 value.
    with pytest.raises(DTypeError) as derr:
        parse_infer_request(b'{"inputs": [{"name": "big", "datatype": "INT64", "shape": [1], "data": [%d]}]}' % 2**70)
    assert derr.value.code == "INVALID_DTYPE" and derr.value.name == "big"
    big = parse_infer_request(b'{"inputs": [{"name": "big", "datatype": "FP64", "shape": [1], "data": [%d]}]}' % 2**70)
    assert big.inputs[0].data[0] == float(2**70)
    with pytest.raises(InvalidInputError) as err:
        parse_infer_request(b'{"inputs": [{"name": "huge", "datatype": "FP32", "shape": [1], "data": [1%s]}]}' % (b"0" * 400))
    assert err.value.code == "INVALID_INPUT" and err.value.name == "huge" and "out of range" in err.value.message
    with pytest.raises(InvalidInputError) as err:
        parse_infer_request(b'{"inputs": [')
    assert err.value.name == "body" and "not valid JSON" in err.value.message
