"""Clients cannot grow ``/metrics`` (issue 14, item 1): requests for invented model names — long,
random, many — count under one ``model="_unknown"`` series, never one series each, so the page
stays small and quick to build; and a scrape never delays inference: the page is formatted off the
event loop, outside the metrics lock (``Metrics.render`` copies the numbers under the lock and
formats them after), which a scrape held up mid-formatting shows.

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


def _successes(page: str, model: str) -> int:
    return sum(int(ln.rsplit(" ", 1)[1]) for ln in page.splitlines() if ln.startswith("inferox_requests_total{") and f'model="{model}"' in ln and 'outcome="success"' in ln)


def test_a_slow_scrape_does_not_delay_inference(server: ServerThread, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page is formatted off the event loop and outside the metrics lock: while one scrape's
    formatting is held up, inference requests are answered, and recorded, as usual. (Before the
    fix a 116 MB page took 3 s on the event loop, under the lock, and inference waited for it.)"""
    import threading

    import inferox.engine.server._metrics as metrics_module

    entered, release = threading.Event(), threading.Event()
    labels = metrics_module._labels

    def held_labels(pairs: object) -> str:  # the scrape's formatting, held until released
        entered.set()
        release.wait(60)
        return labels(pairs)  # type: ignore[arg-type]

    body = json.dumps(VALID).encode()
    headers = {"content-type": "application/json"}
    with httpx.Client(base_url=server.url, timeout=10) as client:
        # At least one labelled series, so that formatting the page calls ``_labels`` (in any test order).
        assert client.post("/v2/models/mlp/infer", content=body, headers=headers).status_code == 200
        before = _successes(client.get("/metrics").text, "mlp")
        monkeypatch.setattr(metrics_module, "_labels", held_labels)
        scrape: dict[str, httpx.Response] = {}
        scraper = threading.Thread(target=lambda: scrape.update(page=httpx.get(f"{server.url}/metrics", timeout=90)))
        scraper.start()
        try:
            assert entered.wait(30), "the scrape never reached its formatting"
            for _ in range(5):  # each within the client's 10 s timeout, while the scrape is held
                assert client.post("/v2/models/mlp/infer", content=body, headers=headers).status_code == 200
            assert scraper.is_alive(), "the scrape finished: it was not held while inference ran"
        finally:
            release.set()
            scraper.join(60)
        monkeypatch.setattr(metrics_module, "_labels", labels)
        assert scrape["page"].status_code == 200
        assert _successes(client.get("/metrics").text, "mlp") == before + 5
