"""``inferox pack hf://…`` against a real Hub-compatible server (olah, offline, on loopback)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from inferox.engine.cli import cli
from tests.support.hub import OlahServer


def test_pack_from_a_hub_repository(olah: OlahServer, hub_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from safetensors.numpy import save

    rng = np.random.default_rng(0)
    tensors = {"layers.0.weight": rng.standard_normal((3, 4)).astype(np.float32), "layers.0.bias": np.zeros(3, np.float32)}
    olah.repos.create("org/tiny-mlp", {"config.json": json.dumps({"model_type": "mlp", "layer_sizes": [4, 3]}).encode(), "model.safetensors": save(tensors)})
    runner = CliRunner()
    result = runner.invoke(cli, ["pack", "hf://org/tiny-mlp", "-o", str(tmp_path), "--name", "tiny", "--endpoint", olah.endpoint], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    pkg = Path(result.output.strip().splitlines()[-1])
    assert pkg == tmp_path / "tiny" and (pkg / "model.safetensors").is_file()
    inspected = json.loads(runner.invoke(cli, ["inspect", str(pkg), "--json"]).output)
    assert inspected["architecture"] == "mlp" and inspected["outputs"][0]["shape"] == [-1, 3]
    missing = runner.invoke(cli, ["pack", "hf://org/does-not-exist", "-o", str(tmp_path), "--endpoint", olah.endpoint])
    assert missing.exit_code == 4 and "error [REPOSITORY_NOT_FOUND]" in missing.output, missing.output
    bad_rev = runner.invoke(cli, ["pack", "hf://org/tiny-mlp", "--revision", "nope", "-o", str(tmp_path / "r"), "--endpoint", olah.endpoint])
    assert bad_rev.exit_code == 4 and "error [REVISION_NOT_FOUND]" in bad_rev.output, bad_rev.output
