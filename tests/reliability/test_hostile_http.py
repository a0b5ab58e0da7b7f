"""Hostile requests against the real V2 server on loopback: malformed JSON, mismatched shapes and data
lengths, binary headers with wrong lengths, huge declared shapes, garbage compression. Every case is
a 4xx with a ``{"error", "code"}`` body (never a 5xx, a hang or a dead server), and the server still
answers a valid request correctly afterwards.

The served model is the real MLP package (``input`` FP32 [-1, 4] → ``output`` FP32 [-1, 3]) on
torch. Example counts come from the hypothesis profile (short by default, long in ``nox -s fuzz``).
"""

from __future__ import annotations

import gzip
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from inferox.engine.server import InferoxServer, ServerConfig, ServerThread
from tests.support.model_files import mlp_reference

from .reliability_kit import fuzz_settings

V2_TYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BF16", "BYTES"]
VALID = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 4], "data": [0.5, 1, 2, 3, -1, -2, 0.25, 4]}]}

json_scalars = st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text(max_size=12)
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=8), c, max_size=5), max_leaves=16)


#: numpy's dtype for each V2 datatype a fuzzed request may carry (BYTES: never a valid FP32 input).
V2_NUMPY = {"BOOL": "bool", "UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "INT8": "i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}


class Served:
    def __init__(self, st_: ServerThread, package: Path) -> None:
        from safetensors.numpy import load_file

        self.thread = st_
        self.url = f"{st_.url}/v2/models/mlp/infer"
        self.client = httpx.Client(timeout=30)
        # The MLP schema's NumPy definition on the package's own weights: independent of the server's torch.
        config = json.loads((package / "config.json").read_text())
        weights = load_file(str(package / "model.safetensors"))
        self.reference = lambda x: mlp_reference(config, weights, x)
        self.expected = self.reference(np.asarray(VALID["inputs"][0]["data"], np.float32).reshape(2, 4))

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.client.post(self.url, content=body, headers={"content-type": "application/json", **(headers or {})})

    def check_accepted(self, request: bytes, headers: dict[str, str], r: httpx.Response) -> None:
        """A request the server accepted (the fuzzer wrote a valid one): the answer is the model's."""
        hl = headers.get("Inference-Header-Content-Length")
        doc = json.loads(request[: int(hl)] if hl else request)
        (tensor,) = [t for t in doc["inputs"] if t["name"] == "input"]
        if hl:  # binary extension: the tensor's bytes follow the JSON header
            size = tensor["parameters"]["binary_data_size"]
            x = np.frombuffer(request[int(hl) : int(hl) + size], V2_NUMPY[tensor["datatype"]])
        else:
            x = np.asarray(tensor["data"])
        x = x.astype(np.float32).reshape(tensor["shape"])
        assert r.headers.get("Inference-Header-Content-Length") is None, "no output asked for binary data"
        (out,) = [o for o in r.json()["outputs"] if o["name"] == "output"]
        assert out["datatype"] == "FP32" and out["shape"] == [x.shape[0], 3], out
        np.testing.assert_allclose(np.asarray(out["data"], np.float32).reshape(out["shape"]), self.reference(x), rtol=1e-4, atol=1e-4)

    def check_4xx(self, r: httpx.Response) -> str:
        assert 400 <= r.status_code < 500, (r.status_code, r.text[:500])
        body = r.json()
        assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]
        assert isinstance(body.get("code"), str) and body["code"].isupper(), body
        return str(body["code"])

    def check_still_serving(self) -> None:
        r = self.post(json.dumps(VALID).encode())
        assert r.status_code == 200, r.text
        out = r.json()["outputs"][0]
        assert out["name"] == "output" and out["shape"] == [2, 3]
        np.testing.assert_allclose(np.asarray(out["data"], np.float32).reshape(2, 3), self.expected, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def served(mlp_package: Path) -> Iterator[Served]:
    server = InferoxServer(packages={"mlp": mlp_package}, config=ServerConfig(max_body_bytes=1 << 20, request_timeout_s=30.0))
    with ServerThread(server) as st_:
        s = Served(st_, mlp_package)
        yield s
        s.client.close()


def _outcome(served: Served, r: httpx.Response, figures: Any, request: bytes, headers: dict[str, str] | None = None) -> None:
    figures.add("inputs_tried")
    if r.status_code == 200:  # the fuzzer happened to write a valid request: then the answer is right
        served.check_accepted(request, headers or {}, r)
        figures.add("accepted")
        return
    code = served.check_4xx(r)
    figures.add(f"code_{code}")


@given(body=st.binary(max_size=300))
@fuzz_settings()
def test_random_bytes_as_body(served: Served, body: bytes, figures: Any) -> None:
    _outcome(served, served.post(body), figures, body)


@given(body=json_values)
@fuzz_settings()
def test_any_json_document_as_body(served: Served, body: Any, figures: Any) -> None:
    request = json.dumps(body).encode()
    _outcome(served, served.post(request), figures, request)


tensor = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["input", "x", ""]) | json_scalars,
        "datatype": st.sampled_from([*V2_TYPES, "fp32", "FP8", "float"]) | json_scalars,
        "shape": st.lists(st.integers(min_value=-3, max_value=2**40), max_size=4) | st.lists(st.integers(0, 5), max_size=3) | json_values,
    },
    optional={
        "data": st.lists(st.floats(width=32) | st.integers(-(2**70), 2**70) | st.booleans() | st.text(max_size=3), max_size=12) | json_values,
        "parameters": st.dictionaries(st.sampled_from(["binary_data_size", "shared_memory_region", "x"]), json_scalars, max_size=2) | json_values,
    },
)
request_docs = st.fixed_dictionaries(
    {"inputs": st.lists(tensor, max_size=3)},
    optional={"id": json_scalars, "outputs": json_values | st.lists(st.fixed_dictionaries({"name": st.sampled_from(["output", "nope"]) | json_scalars}, optional={"parameters": json_values}), max_size=2), "parameters": json_values},
)


@given(doc=request_docs)
@fuzz_settings()
def test_structured_requests_with_lying_shapes_and_data(served: Served, doc: dict[str, Any], figures: Any) -> None:
    request = json.dumps(doc).encode()
    _outcome(served, served.post(request), figures, request)


@given(
    declared_shape=st.lists(st.integers(min_value=0, max_value=2**40), min_size=1, max_size=4),
    datatype=st.sampled_from(V2_TYPES),
    size=st.integers(min_value=-5, max_value=2**40) | json_scalars,
    payload=st.binary(max_size=96),
    header_len=st.none() | st.integers(min_value=-(2**40), max_value=2**40) | st.text(alphabet="0123456789-+ .xe", max_size=6),
)
@fuzz_settings()
def test_binary_extension_with_wrong_lengths(
    served: Served, declared_shape: list[int], datatype: str, size: Any, payload: bytes, header_len: Any, figures: Any
) -> None:
    header = json.dumps({"inputs": [{"name": "input", "datatype": datatype, "shape": declared_shape, "parameters": {"binary_data_size": size}}]}).encode()
    hl = str(len(header)) if header_len is None else str(header_len)
    headers = {"Inference-Header-Content-Length": hl, "content-type": "application/octet-stream"}
    try:
        r = served.post(header + payload, headers)
    except httpx.LocalProtocolError:  # httpx itself refuses some header values (never reaches the server)
        figures.add("refused_by_client")
        return
    _outcome(served, r, figures, header + payload, headers)


def _ok_binary(rows: int = 2) -> tuple[bytes, str]:
    data = np.arange(rows * 4, dtype=np.float32).tobytes()
    header = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [rows, 4], "parameters": {"binary_data_size": len(data)}}]}).encode()
    return header + data, str(len(header))


@pytest.mark.parametrize(
    "case",
    [
        "header_longer_than_body", "header_negative", "header_not_a_number", "header_cuts_json", "size_larger_than_data",
        "size_smaller_than_data", "huge_shape_small_data", "huge_shape_json", "empty_but_huge_shape", "leftover_bytes", "bytes_element_truncated",
    ],
)
def test_named_binary_and_shape_lies(served: Served, case: str) -> None:
    body, hl = _ok_binary()
    headers = {"Inference-Header-Content-Length": hl, "content-type": "application/octet-stream"}
    if case == "header_longer_than_body":
        headers["Inference-Header-Content-Length"] = str(len(body) + 10)
    elif case == "header_negative":
        headers["Inference-Header-Content-Length"] = "-4"
    elif case == "header_not_a_number":
        headers["Inference-Header-Content-Length"] = "12ab"
    elif case == "header_cuts_json":
        headers["Inference-Header-Content-Length"] = str(int(hl) - 3)
    elif case == "size_larger_than_data":
        body = body[:-4]
    elif case == "size_smaller_than_data":
        body = body + b"\0" * 4
    elif case == "huge_shape_small_data":
        header = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [2**31, 2**31], "parameters": {"binary_data_size": 32}}]}).encode()
        body, headers["Inference-Header-Content-Length"] = header + b"\0" * 32, str(len(header))
    elif case == "huge_shape_json":
        body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [2**62, 4], "data": [1.0, 2.0]}]}).encode()
        del headers["Inference-Header-Content-Length"]
    elif case == "empty_but_huge_shape":  # zero elements, yet numpy cannot even describe the shape
        header = json.dumps({"inputs": [{"name": "input", "datatype": "BOOL", "shape": [0, 2**40, 2**40], "parameters": {"binary_data_size": 0}}]}).encode()
        body, headers["Inference-Header-Content-Length"] = header, str(len(header))
    elif case == "leftover_bytes":
        header = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "parameters": {"binary_data_size": 16}}]}).encode()
        body, headers["Inference-Header-Content-Length"] = header + b"\0" * 20, str(len(header))
    elif case == "bytes_element_truncated":
        raw = struct.pack("<I", 50) + b"abc"
        header = json.dumps({"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(raw)}}]}).encode()
        body, headers["Inference-Header-Content-Length"] = header + raw, str(len(header))
    code = served.check_4xx(served.post(body, headers))
    assert code in ("INVALID_INPUT", "INVALID_DTYPE")
    served.check_still_serving()


@pytest.mark.parametrize(
    "case, code",
    [
        ("deep_nesting", "INVALID_INPUT"),
        ("huge_int_for_float", "INVALID_INPUT"),
        ("gzip_garbage", "INVALID_INPUT"),
        ("gzip_bomb", "PAYLOAD_TOO_LARGE"),
        ("body_too_large", "PAYLOAD_TOO_LARGE"),
        ("wrong_rank", "INVALID_INPUT"),
        ("wrong_width", "INVALID_INPUT"),
        ("unknown_input", "INVALID_INPUT"),
        ("bytes_for_fp32_model", "INVALID_INPUT"),
    ],
)
def test_named_malformed_requests(served: Served, case: str, code: str) -> None:
    headers: dict[str, str] = {}
    doc: Any = None
    body = b""
    if case == "deep_nesting":
        body = b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    elif case == "huge_int_for_float":
        doc = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [10**400, 1, 2, 3]}]}
    elif case == "gzip_garbage":
        body, headers = b"\x1f\x8b\x08\x00garbage", {"content-encoding": "gzip"}
    elif case == "gzip_bomb":
        body, headers = gzip.compress(b" " * (4 << 20)), {"content-encoding": "gzip"}
    elif case == "body_too_large":
        body = b" " * ((1 << 20) + 10)
    elif case == "wrong_rank":
        doc = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [4], "data": [1, 2, 3, 4]}]}
    elif case == "wrong_width":
        doc = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 5], "data": [1, 2, 3, 4, 5]}]}
    elif case == "unknown_input":
        doc = {"inputs": [VALID["inputs"][0], {"name": "extra", "datatype": "FP32", "shape": [1], "data": [1]}]}
    elif case == "bytes_for_fp32_model":
        doc = {"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1, 4], "data": ["a", "b", "c", "d"]}]}
    if doc is not None:
        body = json.dumps(doc).encode()
    r = served.post(body, headers)
    assert served.check_4xx(r) == code, r.text
    served.check_still_serving()


def test_server_still_serves_after_the_fuzzing(served: Served) -> None:
    for _ in range(3):
        served.check_still_serving()
    r = served.client.get(f"{served.thread.url}/v2/health/ready")
    assert r.status_code == 200


def test_an_accepted_request_is_checked_against_the_model(served: Served, figures: Any) -> None:
    """The fuzz tests' 200 branch: a valid request (JSON or binary) passes only with the model's answer."""
    valid = json.dumps(VALID).encode()
    _outcome(served, served.post(valid), figures, valid)
    body, hl = _ok_binary()
    headers = {"Inference-Header-Content-Length": hl, "content-type": "application/octet-stream"}
    _outcome(served, served.post(body, headers), figures, body, headers)
    other = json.dumps({"inputs": [{**VALID["inputs"][0], "data": [9.0] * 8}]}).encode()
    with pytest.raises(AssertionError):  # the answer to another request is not this one's
        served.check_accepted(other, {}, served.post(valid))
