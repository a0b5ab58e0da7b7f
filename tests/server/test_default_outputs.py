"""Default outputs: recorded at build time, applied by the server when a request names none; a
package built before the field existed keeps giving every output."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient

from inferox.core.errors import PackageFormatError
from inferox.engine.server import InferoxServer, ServerConfig, ServerThread
from inferox.mlpkg import load_package

TEXTS = ["A man is eating food.", "Inferox serves models."]
ALL = {"last_hidden_state", "pooler_output", "sentence_embedding"}


def _rewrite_model_info(pkg: Path, change: Any) -> None:
    """Edit model_info.json and keep metadata.json's size and sha256 of it right."""
    info_path = pkg / "model_info.json"
    info = json.loads(info_path.read_text())
    change(info)
    info_path.write_text(json.dumps(info))
    meta = json.loads((pkg / "metadata.json").read_text())
    for f in meta["files"]:
        if f["path"] == "model_info.json":
            f["size"] = info_path.stat().st_size
            f["sha256"] = hashlib.sha256(info_path.read_bytes()).hexdigest()
    (pkg / "metadata.json").write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def old_minilm(tmp_path_factory: pytest.TempPathFactory, minilm_package: Path) -> Path:
    """The MiniLM package as built before default outputs existed (no field)."""
    pkg = tmp_path_factory.mktemp("old") / "minilm"
    shutil.copytree(minilm_package, pkg)
    _rewrite_model_info(pkg, lambda info: info.pop("default_outputs"))
    return pkg


def test_build_records_default_outputs(minilm_package: Path, mlp_package: Path) -> None:
    assert load_package(minilm_package).default_outputs == ("sentence_embedding",)  # a sentence-transformers folder
    assert {s.name for s in load_package(minilm_package).output_specs} == ALL
    assert load_package(mlp_package).default_outputs is None  # no default: every output


def test_a_bad_default_outputs_field_is_the_packages_error(tmp_path: Path, minilm_package: Path) -> None:
    pkg = tmp_path / "bad"
    shutil.copytree(minilm_package, pkg)
    _rewrite_model_info(pkg, lambda info: info.update(default_outputs=["logits"]))
    with pytest.raises(PackageFormatError) as ei:
        load_package(pkg, verify=True)
    assert ei.value.code == "PACKAGE_FORMAT_ERROR" and ei.value.field == "default_outputs"
    assert "model_info.json" in str(ei.value)


def _text_input() -> Any:
    inp = httpclient.InferInput("text", [len(TEXTS)], "BYTES")
    inp.set_data_from_numpy(np.array([t.encode() for t in TEXTS], dtype=object), binary_data=True)
    return inp


def test_server_applies_default_outputs_and_old_packages_give_every_output(minilm_package: Path, old_minilm: Path, triton: Any) -> None:
    server = InferoxServer(packages={"minilm": minilm_package, "old": old_minilm}, config=ServerConfig())
    with ServerThread(server) as st:
        client = triton(st.address)
        result = client.infer("minilm", [_text_input()])
        assert {o["name"] for o in result.get_response()["outputs"]} == {"sentence_embedding"}
        embedding = result.as_numpy("sentence_embedding")
        assert embedding.shape == (2, 384)
        asked = [httpclient.InferRequestedOutput(n) for n in sorted(ALL)]
        every = client.infer("minilm", [_text_input()], outputs=asked)
        assert {o["name"] for o in every.get_response()["outputs"]} == ALL
        np.testing.assert_allclose(every.as_numpy("sentence_embedding"), embedding, rtol=1e-5, atol=1e-6)
        old = client.infer("old", [_text_input()])
        assert {o["name"] for o in old.get_response()["outputs"]} == ALL
        np.testing.assert_allclose(old.as_numpy("sentence_embedding"), embedding, rtol=1e-5, atol=1e-6)
        meta = httpx.get(f"{st.url}/v2/models/minilm").json()
        assert meta["parameters"]["default_outputs"] == ["sentence_embedding"]
        assert "default_outputs" not in httpx.get(f"{st.url}/v2/models/old").json()["parameters"]
