"""``dtype`` and ``int8`` for served models: from serving.toml, ``[models]`` / ``inferox serve``
flags, down to the loaded model; an option its backend does not offer fails the model's load
with a typed error naming the option and the backend; and the V2 model metadata says which
backend was chosen, why, and with which thread pools."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from inferox.core.errors import ConfigError, DTypeError
from inferox.engine.server import DataPlane, ServerConfig, ServingSettings
from inferox.engine.server._settings import resolve


def _repo(tmp_path: Path, package: Path, settings: dict[str, str]) -> Path:
    root = tmp_path / "repo"
    for name, toml in settings.items():
        shutil.copytree(package, root / name)
        (root / name / "serving.toml").write_text(toml)
    return root


def test_int8_and_dtype_reach_the_model_or_fail_its_load_naming_them(tmp_path: Path, mlp_package: Path) -> None:
    pytest.importorskip("inferox.onnx")
    root = _repo(
        tmp_path,
        mlp_package,
        {"quant": 'backend = "onnx"\nint8 = true\n', "torchq": 'backend = "torch"\nint8 = true\n', "half": 'backend = "torch"\ndtype = "f16"\n',
         "onnxhalf": 'backend = "onnx"\ndtype = "f16"\n'},
    )

    async def scenario() -> dict[str, object]:
        dp = DataPlane(config=ServerConfig(), repository=root)
        out: dict[str, object] = {}
        try:
            await dp.load("quant")
            out["quant"] = dp.models["quant"].primary.model.int8  # type: ignore[attr-defined]
            await dp.load("half")
            out["half"] = dp.models["half"].primary.model.load_dtype  # type: ignore[attr-defined]
            for name in ("torchq", "onnxhalf"):
                try:
                    await dp.load(name)
                except Exception as exc:  # noqa: BLE001 - the test inspects it
                    out[name] = exc
            out["failed"] = dict(dp.failed)
            out["metadata"] = dp.model_metadata("quant")["parameters"]
        finally:
            await dp.shutdown()
        return out

    got = asyncio.run(scenario())
    assert got["quant"] and str(got["half"]) == "f16"
    torchq = got["torchq"]
    assert isinstance(torchq, ConfigError) and torchq.field == "int8" and torchq.details["backend"] == "torch"
    onnxhalf = got["onnxhalf"]
    assert isinstance(onnxhalf, DTypeError) and onnxhalf.name == "dtype"
    assert got["failed"]["torchq"].startswith("INVALID_CONFIG: int8 is not an option of the torch backend")  # type: ignore[index]
    params = got["metadata"]
    assert params["backend_choice"] == "asked" and params["threads_intra_op"] >= 1 and params["threads_spinning"] is False  # type: ignore[index]


def test_int8_is_a_boolean_setting_everywhere(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        ServingSettings.from_mapping({"int8": "yes"}, path="serving.toml")
    assert info.value.field == "int8" and info.value.path == "serving.toml"
    assert ServingSettings.from_mapping({"int8": True, "dtype": "bf16"}) == ServingSettings(int8=True, dtype="bf16")
    config_file = tmp_path / "server.toml"
    config_file.write_text("[models]\nint8 = true\ndtype = \"f32\"\n")
    resolved = resolve(file=config_file, environ={})
    assert resolved.config.defaults.int8 is True and resolved.config.defaults.dtype == "f32"
    assert resolved.sources["models.int8"] == (True, "file")
    flagged = resolve(environ={}, flags={"models.int8": True, "models.dtype": "bf16"})
    assert flagged.config.defaults.int8 is True and flagged.sources["models.dtype"] == ("bf16", "flag")
