"""Clients cannot grow ``/metrics`` (issue 14, item 1): requests for invented model names — long,
random, many — count under one ``model="_unknown"`` series, never one series each, so the page
stays small and quick to build. (The scrape is formatted off the event loop, outside the metrics
lock: ``Metrics.render`` copies the numbers under the lock and formats them after.)

Real server on loopback, the real MLP package on torch, raw HTTP (httpx).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from inferox.engine.server import InferoxServer, ServerConfig, ServerThread

VALID = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
REQUESTS = 200


@pytest.fixture(scope="module")
def server(mlp_package: Path) -> Iterator[ServerThread]:
    with ServerThread(InferoxServer(packages={"mlp": mlp_package}, config=ServerConfig())) as st:
        yield st


def test_unknown_model_names_do_not_create_series(server: ServerThread, figures: object) -> None:
    names = [secrets.token_hex(4096) for _ in range(REQUESTS)]  # 8 KB each
    with httpx.Client(base_url=server.url, timeout=60) as client:
        before = client.get("/metrics").text
        for name in names:
            r = client.post(f"/v2/models/{name}/infer", content=json.dumps(VALID).encode(), headers={"content-type": "application/json"})
            assert r.status_code == 404 and r.json()["code"] == "MODEL_NOT_FOUND"
            assert client.get(f"/v2/models/{name}/ready").status_code in (400, 404)
        page = client.get("/metrics").text
        assert client.post("/v2/models/mlp/infer", content=json.dumps(VALID).encode(), headers={"content-type": "application/json"}).status_code == 200
    figures.record(metrics_bytes_before=len(before), metrics_bytes_after=len(page))  # type: ignore[attr-defined]
    assert not any(n[:64] in page for n in names)
    assert len(page) < len(before) + 20_000, len(page)  # a few fixed series more, not one per name
    line = next(ln for ln in page.splitlines() if ln.startswith('inferox_request_failures_total{model="_unknown"') and 'code="MODEL_NOT_FOUND"' in ln)
    assert int(line.rsplit(" ", 1)[1]) == REQUESTS
