"""Requests the server used to read leniently or answer with a 500 (issue 14, items 10 and 16):
ragged nested data, bytes after the gzip stream, two text inputs, ``binary_data: "false"``, a
NaN timeout, a lone surrogate in BYTES data, more dimensions than numpy holds.

Each is a 400 with ``{"error", "code"}`` naming what was wrong, and the server keeps serving.
Real server on loopback, the real MLP and MiniLM packages on torch, raw HTTP bodies (httpx).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from inferox.engine.server import InferoxServer, ServerConfig, ServerThread

MLP_OK = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 4], "data": [[1, 2, 3, 4], [5, 6, 7, 8]]}]}


@pytest.fixture(scope="module")
def server(mlp_package: Path, minilm_package: Path) -> Iterator[ServerThread]:
    with ServerThread(InferoxServer(packages={"mlp": mlp_package, "minilm": minilm_package}, config=ServerConfig())) as st:
        yield st


def post(st: ServerThread, model: str, body: bytes | dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{st.url}/v2/models/{model}/infer", content=content, headers={"content-type": "application/json", **(headers or {})}, timeout=60)


def bad_request(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 400, (r.status_code, r.text[:300])
    body = r.json()
    assert body["code"] in ("INVALID_INPUT", "INVALID_DTYPE") and body["error"]
    return body  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "data",
    [
        [[1, 2, 3], [4, 5, 6, 7, 8]],  # 8 values, the right count, ragged rows
        [[1, 2, 3, 4, 5, 6, 7], [8]],
        [1, 2, 3, 4, [5, 6, 7, 8]],  # flat and nested mixed
        [[[1, 2], [3, 4]], [[5, 6], [7, 8]]],  # deeper than the shape
    ],
)
def test_ragged_nested_data_is_refused(server: ServerThread, data: Any) -> None:
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 4], "data": data}]}
    err = bad_request(post(server, "mlp", body))
    assert "input" in err["error"] and "shape" in err["error"]


@pytest.mark.parametrize("tail", ["garbage", "second member", "truncated"])
def test_gzip_bodies_with_trailing_or_missing_bytes_are_refused(server: ServerThread, tail: str) -> None:
    good = gzip.compress(json.dumps(MLP_OK).encode())
    body = {"garbage": good + b"trailing junk", "second member": good + gzip.compress(b'{"x": 1}'), "truncated": good[:-6]}[tail]
    err = bad_request(post(server, "mlp", body, {"content-encoding": "gzip"}))
    assert "gzip" in err["error"]
    assert post(server, "mlp", good, {"content-encoding": "gzip"}).status_code == 200  # the clean stream still works


def test_two_text_inputs_are_refused_not_one_silently_dropped(server: ServerThread) -> None:
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["first"]},
                       {"name": "text2", "datatype": "BYTES", "shape": [1], "data": ["second"]}]}
    err = bad_request(post(server, "minilm", body))
    assert "text" in err["error"] and "text2" in err["error"]
    one = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["first"]}]}
    assert post(server, "minilm", one).status_code == 200


@pytest.mark.parametrize("value", ["false", "true", 0, 1, None])
def test_binary_data_must_be_a_boolean(server: ServerThread, value: Any) -> None:
    body = {**MLP_OK, "outputs": [{"name": "output", "parameters": {"binary_data": value}}]}
    r = post(server, "mlp", body)
    if value is None:  # absent: the default (JSON)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        return
    err = bad_request(r)
    assert "binary_data" in err["error"]


@pytest.mark.parametrize("timeout", ["NaN", "Infinity", "-Infinity"])
def test_a_non_finite_timeout_is_refused(server: ServerThread, timeout: str) -> None:
    raw = json.dumps({**MLP_OK, "parameters": {"timeout": "TIMEOUT"}}).replace('"TIMEOUT"', timeout).encode()
    err = bad_request(post(server, "mlp", raw))
    assert "timeout" in err["error"]


@pytest.mark.parametrize("model", ["mlp", "minilm"])
def test_a_lone_surrogate_in_bytes_data_is_a_400(server: ServerThread, model: str) -> None:
    raw = b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a\\ud800b"]}]}'
    err = bad_request(post(server, model, raw))
    assert "Unicode" in err["error"] or "surrogate" in err["error"]


@pytest.mark.parametrize("rank", [65, 200])
def test_more_dimensions_than_numpy_holds_is_a_400(server: ServerThread, rank: int) -> None:
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1] * rank, "data": [1.0]}]}
    err = bad_request(post(server, "mlp", body))
    assert "64" in str(err)


def test_still_serving_after_the_bad_requests(server: ServerThread) -> None:
    r = post(server, "mlp", MLP_OK)
    assert r.status_code == 200 and r.json()["outputs"][0]["shape"] == [2, 3]
