"""A hostile model repository and hostile request metadata (issue 14, items 3, 5, 6, 7, 10).

* a ``serving.toml`` that is not UTF-8 (or is a FIFO) fails its own model only — reported in the
  index with the reason — while the others load and the index stays a JSON 200;
* ``/v2/repository/index`` bodies are bounded, parsed strictly and never a plain-text 500;
* loading a name that is a plain file is a 404, not a 500;
* request ids reach the ``x-request-id`` header only when they are short printable ASCII;
* protection asked for without a usable token refuses to start.

Real server on loopback with real packages on torch; raw HTTP (httpx) and the real CLI (click).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from inferox.core.errors import ConfigError
from inferox.engine.server import InferoxServer, ServerConfig, ServerThread

VALID = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, mlp_package: Path) -> Path:
    root = tmp_path_factory.mktemp("hostile-repo")
    for name in ("good", "latin1", "fifo"):
        shutil.copytree(mlp_package, root / name)
    (root / "latin1" / "serving.toml").write_bytes('# réglages\nbackend = "torch"\n'.encode("latin-1"))
    os.mkfifo(root / "fifo" / "serving.toml")
    (root / "afile").write_text("not a model")
    return root


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[ServerThread]:
    config = ServerConfig(exit_on_error=False, strict_readiness=False, max_body_bytes=1 << 20)
    st = ServerThread(InferoxServer(repository=repo, config=config)).start(timeout=300)
    try:
        yield st
    finally:
        st.stop()


def test_a_bad_serving_toml_fails_only_its_own_model(server: ServerThread) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        r = client.post("/v2/models/good/infer", content=json.dumps(VALID).encode(), headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text
        index = client.post("/v2/repository/index")
        assert index.status_code == 200 and index.headers["content-type"].startswith("application/json")
        by_name = {e["name"]: e for e in index.json()}
        assert by_name["good"]["state"] == "READY"
        assert by_name["latin1"]["state"] == "UNAVAILABLE" and "UTF-8" in by_name["latin1"]["reason"]
        assert by_name["fifo"]["state"] == "UNAVAILABLE" and "regular file" in by_name["fifo"]["reason"]
        for name, words in (("latin1", "UTF-8"), ("fifo", "regular file")):
            r = client.post(f"/v2/repository/models/{name}/load")
            assert 400 <= r.status_code < 500 and r.json()["code"] == "INVALID_CONFIG" and words in r.json()["error"], r.text


def test_loading_a_name_that_is_a_plain_file_is_a_404(server: ServerThread) -> None:
    r = httpx.post(server.url + "/v2/repository/models/afile/load", timeout=60)
    assert r.status_code == 404 and r.json()["code"] == "MODEL_NOT_FOUND"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"[" * 100_000 + b"]" * 100_000, 400),  # nested too deeply for the parser
        (b'{"ready": "yes"}', 400),
        (b"[1, 2]", 400),
        (b"x" * (3 << 20), 413),  # beyond max_body_bytes (1 MiB here)
        (b'{"ready": true}', 200),
        (b"", 200),
    ],
)
def test_repository_index_bodies_are_bounded_and_strict(server: ServerThread, body: bytes, status: int) -> None:
    r = httpx.post(server.url + "/v2/repository/index", content=body, timeout=60)
    assert r.status_code == status, r.text[:200]
    doc: Any = r.json()
    if status != 200:
        assert doc["code"] in ("INVALID_INPUT", "PAYLOAD_TOO_LARGE")


@pytest.mark.parametrize("request_id", ["é✓ non-latin-1", "a\r\nX-Injected: 1", "x" * 100_000, "tab\tin it", ""])
def test_request_ids_never_become_raw_headers(server: ServerThread, request_id: str) -> None:
    body = {**VALID, "id": request_id}
    r = httpx.post(server.url + "/v2/models/good/infer", content=json.dumps(body).encode(), headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 200, r.text[:200]
    assert "x-injected" not in r.headers
    header = r.headers["x-request-id"]
    assert len(header) <= 128 and header.isascii() and header.isprintable() and " " not in header
    if request_id:
        assert r.json()["id"] == request_id  # the body still echoes the client's id as it was


def test_a_printable_request_id_is_kept(server: ServerThread) -> None:
    body = {**VALID, "id": "req-42_abc.DEF"}
    r = httpx.post(server.url + "/v2/models/good/infer", content=json.dumps(body).encode(), headers={"content-type": "application/json"}, timeout=60)
    assert r.headers["x-request-id"] == "req-42_abc.DEF"
    r = httpx.post(server.url + "/v2/models/good/infer", content=json.dumps(VALID).encode(), headers={"content-type": "application/json", "x-request-id": "y" * 5000}, timeout=60)
    assert r.status_code == 200 and len(r.headers["x-request-id"]) <= 128


# -- item 6: protection without a usable token ---------------------------------------------------------
@pytest.mark.parametrize(("kw", "field"), [({"token": ""}, "server.token"), ({"token": "   "}, "server.token"), ({"protect_all": True}, "server.protect_all")])
def test_protection_without_a_usable_token_is_a_config_error(kw: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as ei:
        ServerConfig(**kw)
    assert ei.value.code == "INVALID_CONFIG" and ei.value.field == field


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["--protect-all"], {}, "server.protect_all"),
        (["--token", ""], {}, "server.token"),
        ([], {"INFEROX_SERVER_TOKEN": ""}, "INFEROX_SERVER_TOKEN"),
        (["--protect-all"], {"INFEROX_SERVER_TOKEN": ""}, "INFEROX_SERVER_TOKEN"),
    ],
)
def test_inferox_serve_refuses_to_start_without_a_usable_token(repo: Path, args: list[str], env: dict[str, str], named: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from inferox.engine.cli import cli

    monkeypatch.delenv("INFEROX_SERVER_TOKEN", raising=False)
    result = CliRunner().invoke(cli, ["serve", str(repo), "--print-config", *args], env=env)
    assert result.exit_code == 3, result.output  # a usage / configuration error, before serving anything
    assert named in result.output


# -- item 2 (the repository part): one stuck load does not hold up the others -------------------------
def test_a_stuck_load_does_not_block_other_models_loads_and_unloads(repo: Path) -> None:
    """A load that never finishes (here a model whose warm-up blocks; a FIFO in a package used to do
    this) holds only its own model's lock: other models load and unload meanwhile."""
    import asyncio
    import threading

    from inferox.engine.server import DataPlane
    from tests.support.engine_models import TorchLinear, make_weights

    release = threading.Event()

    class StuckWarmup(TorchLinear):
        def warmup(self) -> None:
            release.wait(120)

    async def scenario() -> None:
        dp = DataPlane(config=ServerConfig(), repository=repo)
        stuck = asyncio.ensure_future(dp.add_model("stuck", StuckWarmup(*make_weights(0))))
        await asyncio.sleep(0.5)
        assert not stuck.done()
        try:
            model = await asyncio.wait_for(dp.load("good"), 120)
            assert model.state == "READY" and dp.model_ready("good")
            await asyncio.wait_for(dp.unload("good"), 60)
            assert "good" not in dp.models
        finally:
            release.set()
            await asyncio.wait_for(stuck, 120)
            await dp.shutdown()

    asyncio.run(scenario())
