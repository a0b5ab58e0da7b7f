"""NaN and ±Infinity in model outputs (issue 14, item 11).

A model's output may legitimately hold non-finite floats; the JSON response must still be JSON:
strict parsers (``json.loads`` refusing the constants, as JavaScript's and Go's do) accept it, and
tritonclient's ``as_numpy`` reads the values back as the floats. The binary extension carries them
bit for bit. Real server, real MLP package on torch, real tritonclient.http.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient

from inferox.engine.server import InferoxServer, ServerConfig, ServerThread


@pytest.fixture(scope="module")
def server(mlp_package: Path) -> Iterator[ServerThread]:
    with ServerThread(InferoxServer(packages={"mlp": mlp_package}, config=ServerConfig())) as st:
        yield st


#: Rows whose outputs are NaN (NaN in), ±Infinity (beyond float32's range), and finite.
INPUT = np.array([[np.nan, 0, 0, 0], [3e38, 3e38, 3e38, 3e38], [-3e38, -3e38, -3e38, -3e38], [1, 2, 3, 4]], np.float32)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"bare {name} is not JSON")


def _infer(server: ServerThread, *, binary: bool) -> np.ndarray:
    client = httpclient.InferenceServerClient(server.address)
    try:
        inp = httpclient.InferInput("input", list(INPUT.shape), "FP32")
        inp.set_data_from_numpy(INPUT, binary_data=True)
        result = client.infer("mlp", [inp], outputs=[httpclient.InferRequestedOutput("output", binary_data=binary)])
    finally:
        client.close()
    return result.as_numpy("output")  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def expected(server: ServerThread) -> np.ndarray:
    """The outputs as the binary extension carries them (exact), the reference for JSON."""
    out = _infer(server, binary=True)
    assert np.isnan(out).any() and np.isinf(out).any()  # the case really has both
    return out


def test_json_outputs_with_nan_and_infinity_are_strict_json_and_read_back_as_floats(server: ServerThread, expected: np.ndarray) -> None:
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [4, 4], "parameters": {"binary_data_size": INPUT.nbytes}}],
            "outputs": [{"name": "output", "parameters": {"binary_data": False}}]}
    head = json.dumps(body).encode()
    r = httpx.post(server.url + "/v2/models/mlp/infer", content=head + INPUT.tobytes(),
                   headers={"content-type": "application/octet-stream", "inference-header-content-length": str(len(head))}, timeout=60)
    assert r.status_code == 200, r.text
    doc = json.loads(r.content, parse_constant=_refuse_constant)  # strict: bare NaN/Infinity fail here
    data = doc["outputs"][0]["data"]
    assert {"NaN", "Infinity", "-Infinity"} & {x for x in data if isinstance(x, str)}
    got = np.asarray(data, np.float32).reshape(doc["outputs"][0]["shape"])
    np.testing.assert_array_equal(got, expected)  # NaN equals NaN here


def test_tritonclient_reads_non_finite_json_outputs_back(server: ServerThread, expected: np.ndarray) -> None:
    got = _infer(server, binary=False)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
