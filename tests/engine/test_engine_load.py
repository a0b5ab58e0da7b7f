"""engine.load: real packages (an MLP and the real all-MiniLM-L6-v2) on torch and jax."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from inferox.core.errors import ArchitectureNotFoundError, BackendUnavailableError, OutOfMemoryError, PackageError, PackageNotFoundError
from inferox.engine import Engine, EngineConfig
from tests.support.model_files import mlp_config, mlp_reference, mlp_tensors


@pytest.fixture(scope="module")
def minilm_engine(minilm_package: Path) -> Iterator[Engine]:
    eng = Engine(EngineConfig(max_batch_size=8))
    eng.load(minilm_package, backend="torch")
    eng.load(minilm_package, backend="jax")
    yield eng
    eng.shutdown()


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_load_package_and_infer(mlp_package: Path, backend: str) -> None:
    path, tensors = mlp_package, mlp_tensors()
    with Engine() as eng:
        info = eng.load(path, backend=backend, device="cpu", threads=1)
        assert info.name == "mlp" and info.backends == [backend] and info.ready
        assert info.instances[0].memory_bytes > 0
        x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
        res = eng.infer("mlp", x)
        assert res.backend == backend
        np.testing.assert_allclose(res["output"], mlp_reference(mlp_config(), tensors, x), rtol=1e-5, atol=1e-5)
        out = eng.infer_batch("mlp", list(x))
        np.testing.assert_allclose(np.stack([r["output"] for r in out]), mlp_reference(mlp_config(), tensors, x), rtol=1e-5, atol=1e-5)


def test_load_options_name_dtype_verify(mlp_package: Path) -> None:
    from inferox.mlpkg import load_package

    path, tensors = mlp_package, mlp_tensors()
    x = np.ones((2, 4), np.float32)
    with Engine() as eng:
        eng.load(path, name="half", backend="torch", dtype="f16", verify=True, warmup=False)
        eng.load(load_package(path), name="brain", backend="torch", dtype="bf16")
        assert eng.list_models() == ["brain", "half"]
        for name, tol in (("half", 5e-3), ("brain", 3e-2)):
            res = eng.infer(name, x)
            np.testing.assert_allclose(res["output"], mlp_reference(mlp_config(), tensors, x), rtol=tol, atol=tol)


def test_load_uses_backend_preference(mlp_package: Path) -> None:
    path = mlp_package
    with Engine(EngineConfig(backend_preference=("jax", "torch"))) as eng:
        assert eng.load(path).backends == ["jax"]
        eng.load(path, backend="torch")  # a second instance of the same name
        assert eng.model_info("mlp").backends == ["jax", "torch"]
        assert eng.infer("mlp", np.ones((1, 4), np.float32)).backend == "jax"


def test_load_errors_come_from_mlpkg_typed(mlp_package: Path, minilm_package: Path, tmp_path: Path) -> None:
    path = mlp_package
    with Engine() as eng:
        missing = tmp_path / "nope"
        with pytest.raises(PackageNotFoundError) as ei:
            eng.load(missing)
        assert ei.value.code == "PACKAGE_NOT_FOUND" and str(missing) in str(ei.value.path)
        with pytest.raises(BackendUnavailableError) as ei2:
            eng.load(path, backend="tensorflow")
        assert ei2.value.backend == "tensorflow"
        # Every first-party backend runs a plugin's architecture from its definition (onnx traces it);
        # with the plugin that defines it blocked, it is unknown — typed, naming the plugin.
        from safetensors.numpy import save_file

        from inferox.core.plugins import reset_registry
        from inferox.mlpkg import build_package

        src = tmp_path / "linear-src"
        src.mkdir()
        (src / "config.json").write_text('{"model_type": "linear", "in_features": 2, "out_features": 2}')
        w = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
        save_file({"weight": w, "bias": np.ones(2, np.float32)}, str(src / "model.safetensors"))
        linear = build_package(src, output_dir=tmp_path / "pkgs", name="lin")
        eng.load(linear, backend="onnx")
        got = eng.infer("lin", {"x": np.array([[1.0, 1.0]], np.float32)}).outputs
        np.testing.assert_allclose(next(iter(got.values())), np.array([[1.0, 1.0]], np.float32) @ w + 1.0, rtol=1e-6)  # linear: x @ weight + bias
        eng.unregister("lin")
        import os

        os.environ["INFEROX_BLOCKED_PLUGINS"] = "numpy"  # the autouse fixture removes it after the test
        try:
            reset_registry()
            with pytest.raises(ArchitectureNotFoundError) as ei3:
                eng.load(linear, backend="onnx")
            assert ei3.value.code == "ARCHITECTURE_NOT_FOUND" and ei3.value.architecture == "linear" and "linear" in str(ei3.value)
        finally:
            del os.environ["INFEROX_BLOCKED_PLUGINS"]
            reset_registry()
        broken = tmp_path / "broken"
        broken.mkdir()
        (broken / "metadata.json").write_text("{not json")
        with pytest.raises(PackageError) as ei4:
            eng.load(broken)
        assert ei4.value.path is not None and "metadata.json" in str(ei4.value.path)
        assert eng.list_models() == []


def test_load_refuses_beyond_memory_budget(mlp_package: Path) -> None:
    path = mlp_package
    with Engine(EngineConfig(memory_budget_bytes=16)) as eng:
        with pytest.raises(OutOfMemoryError) as ei:
            eng.load(path, backend="torch")
        assert ei.value.code == "OUT_OF_MEMORY" and ei.value.budget == 16 and ei.value.required > 16  # type: ignore[attr-defined]
        assert eng.list_models() == []
        with pytest.raises(OutOfMemoryError):
            eng.load(path)  # no backend named: refused after loading, the model released


def test_minilm_text_on_both_backends_agrees(minilm_engine: Engine) -> None:
    info = minilm_engine.model_info("minilm")
    assert info.backends == ["torch", "jax"] and info.has_text_encoder
    text = "Inferox runs the same package on every backend."
    t = minilm_engine.infer("minilm", text, backend="torch")
    j = minilm_engine.infer("minilm", {"text": text}, backend="jax")
    assert (t.backend, j.backend) == ("torch", "jax")
    assert set(t) == set(j) and "last_hidden_state" in t
    for key in t:
        assert t[key].dtype == j[key].dtype and t[key].shape == j[key].shape
        np.testing.assert_allclose(t[key], j[key], rtol=1e-3, atol=1e-4)


def test_minilm_infer_batch_pads_and_trims_to_single_results(minilm_engine: Engine) -> None:
    texts = ["hi", "a considerably longer sentence about dynamic batching in an inference engine", "three word one", "x"]
    for backend in ("torch", "jax"):
        batch = minilm_engine.infer_batch("minilm", texts, backend=backend)
        assert batch[0].batch_size == 4
        for text, res in zip(texts, batch):
            single = minilm_engine.infer("minilm", text, backend=backend)
            assert res["last_hidden_state"].shape == single["last_hidden_state"].shape  # trimmed back to its own length
            for key in single:
                np.testing.assert_allclose(res[key], single[key], rtol=1e-4, atol=1e-4)


def _cuda_available() -> bool:
    from inferox.core import get_registry

    return get_registry().get_backend("torch").is_device_available("cuda:0")


@pytest.mark.skipif(_cuda_available(), reason="this machine has CUDA: the unavailable-device path cannot be shown")
def test_load_on_an_unavailable_device_is_typed(mlp_package: Path) -> None:
    from inferox.core.errors import DeviceUnavailableError

    path = mlp_package
    with Engine() as eng:
        with pytest.raises(DeviceUnavailableError) as ei:
            eng.load(path, backend="torch", device="cuda:0")
        assert ei.value.code == "DEVICE_UNAVAILABLE" and ei.value.device == "cuda:0"
        assert eng.list_models() == []


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_available(), reason="needs a CUDA device")
def test_load_on_cuda_batches_and_returns_numpy(mlp_package: Path) -> None:
    path, tensors = mlp_package, mlp_tensors()
    with Engine() as eng:
        info = eng.load(path, backend="torch", device="cuda:0")
        assert info.instances[0].device == "cuda:0"
        x = np.random.default_rng(3).standard_normal((6, 4)).astype(np.float32)
        res = eng.infer("mlp", x)
        assert res.device == "cuda:0" and isinstance(res["output"], np.ndarray)
        np.testing.assert_allclose(res["output"], mlp_reference(mlp_config(), tensors, x), rtol=1e-4, atol=1e-4)
        out = eng.infer_batch("mlp", list(x))
        np.testing.assert_allclose(np.stack([r["output"] for r in out]), mlp_reference(mlp_config(), tensors, x), rtol=1e-4, atol=1e-4)
