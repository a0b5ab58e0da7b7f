"""Which backend a model is served on when none is named: the fastest installed one by the speeds
backends declare, only that one loaded (no other framework imported), the choice and its reason
recorded; a named backend or the engine's ``backend_preference`` keep deciding; ``int8`` only on
a backend that offers it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inferox.core.errors import ConfigError
from inferox.core.plugins import get_registry
from inferox.engine import BackendChoice, Engine, EngineConfig, choose_backend
from inferox.mlpkg import load_package
from tests.conftest import have

_FRAMEWORKS = {"torch": "torch", "jax": "jax", "onnx": "onnxruntime"}


def _fastest(architecture: str) -> str:
    """What the ranking must pick here: the available backend declaring the highest CPU speed."""
    reg = get_registry()
    able = [b for b in reg.backends_for(architecture) if reg.backend_info(b).available]
    return max(able, key=lambda b: (reg.declared_speed(b, architecture, "cpu") or 0.0, -able.index(b)))


_LOAD = """
import json, sys
from inferox.engine import Engine
with Engine() as engine:
    info = engine.load(sys.argv[1])
    engine.infer(info.name, ["a sentence to embed"])
    print(json.dumps({"choice": info.metadata.extra["backend_choice"], "backends": info.backends,
                      "frameworks": sorted(m for m in ("torch", "jax", "onnxruntime") if m in sys.modules)}))
"""


def test_the_default_is_the_fastest_declared_backend_and_only_it_loads(minilm_package: Path) -> None:
    out = subprocess.run([sys.executable, "-c", _LOAD, str(minilm_package)], capture_output=True, text=True, timeout=600, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    expected = _fastest("bert")
    choice = report["choice"]
    assert report["backends"] == [expected] and choice["backend"] == expected and choice["how"] == "fastest"
    speeds = [r["speed"] for r in choice["ranking"]]
    assert choice["ranking"][0]["backend"] == expected and speeds == sorted(speeds, key=lambda s: -(s or 0.0))
    assert "fastest installed backend for bert on cpu" in choice["reason"] and choice["device_kind"] == "cpu"
    # Loading one backend imports one framework: the others were ranked from their declarations.
    assert report["frameworks"] == [_FRAMEWORKS[expected]]


def test_a_named_backend_and_the_engine_preference_keep_deciding(mlp_package: Path) -> None:
    with Engine() as eng:
        info = eng.load(mlp_package, backend="torch")
        assert info.backends == ["torch"] and info.metadata.extra["backend_choice"]["how"] == "asked"
    if not have("jax"):
        pytest.skip("the preference names jax, a backend the ranking puts last")
    with Engine(EngineConfig(backend_preference=("jax", "torch"))) as eng:
        info = eng.load(mlp_package)
        choice = info.metadata.extra["backend_choice"]
        assert info.backends == ["jax"] and choice["how"] == "preference"
        assert choice["reason"] == "the first of backend_preference (jax, torch) that implements mlp"
        x = np.ones((2, 4), np.float32)
        assert eng.infer("mlp", x).backend == "jax"


def test_a_backend_declaring_no_speed_ranks_last(mlp_package: Path) -> None:
    if "numpy" not in get_registry().backend_names():
        pytest.skip("the third-party numpy plugin is not installed here")
    choice = choose_backend(load_package(mlp_package))
    assert isinstance(choice, BackendChoice) and choice.backend == _fastest("mlp")
    assert choice.ranking[-1] == ("numpy", None)
    assert [b for b, s in choice.ranking if s is not None] == [b for b, _ in sorted(((b, s) for b, s in choice.ranking if s is not None), key=lambda r: -r[1])]


def test_int8_is_refused_by_a_backend_without_it_naming_both(mlp_package: Path) -> None:
    with Engine() as eng:
        with pytest.raises(ConfigError) as info:
            eng.load(mlp_package, backend="torch", int8=True)
        err = info.value
        assert err.code == "INVALID_CONFIG" and err.field == "int8" and err.details["backend"] == "torch"
        assert "int8 is not an option of the torch backend" in err.message
        assert eng.list_models() == []  # nothing was loaded


@pytest.mark.skipif(not have("onnxruntime"), reason="int8 is an option of the onnx backend")
def test_int8_passes_over_a_preferred_backend_without_it(mlp_package: Path) -> None:
    with Engine(EngineConfig(backend_preference=("torch", "onnx"))) as eng:
        info = eng.load(mlp_package, int8=True)
        choice = info.metadata.extra["backend_choice"]
        assert info.backends == ["onnx"] and "passed over: torch has no int8 option" in choice["reason"]
        assert eng.get_model("mlp").model.int8  # type: ignore[attr-defined]
        out = eng.infer("mlp", np.ones((3, 4), np.float32))
        assert out["output"].shape == (3, 3)
