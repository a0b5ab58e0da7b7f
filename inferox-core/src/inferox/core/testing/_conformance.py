"""The backend conformance suite (see :mod:`inferox.core.testing`).

Compatibility within a contract major version: a backend whose plugin passed the suite of 1.0 keeps
passing every 1.x. Each check added after 1.0 is marked with the minor that added it
(:func:`since`); for a plugin that declares an older minor (its ``inferox_contract_version()``) a
failure of such a check is a :class:`ConformanceWarning` saying what will be required, not a
failure. Declaring the newer minor opts in to it; the next major version requires every check.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np
import pytest

from inferox.core.backend import Backend
from inferox.core.device import DeviceId, MemoryInfo
from inferox.core.dtype import DType
from inferox.core.errors import (
    BackendError,
    DeviceError,
    DTypeError,
    InferoxError,
    InvalidInputError,
    TypeMismatchError,
)
from inferox.core.model import AnyModel, Model
from inferox.core.plugins import PluginRegistry, get_registry
from inferox.core.spec import TensorSpec
from inferox.core.tensor import Tensor
from inferox.core.testing._capabilities import ACCELERATOR_KINDS, Capabilities
from inferox.core.testing._numbers import (
    TOLERANCES,
    ArchitectureMismatch,
    check_architecture,
    checked_architectures,
    gelu_sensitivity,
    native_input_outputs,
    refused_dtype_error,
)
from inferox.core.testing._values import sample_array, to_python_list

__all__ = ["BackendConformance", "ConformanceWarning", "NotTheModel", "since"]

#: The tiny model's sizes: y = x @ W + b with x (batch, IN) and y (batch, OUT).
TINY_IN = 4
TINY_OUT = 3

# DLPack carries these dtypes between numpy and any framework (numpy cannot export bf16/f16 reliably).
_DLPACK_DTYPES = (DType.F32, DType.F64, DType.I32, DType.I64, DType.U8, DType.I8)


class NotTheModel(Model):
    """A model class no backend's tiny model is an instance of (the target of a wrong downcast)."""

    @property
    def input_specs(self) -> Sequence[TensorSpec]:  # pragma: no cover - never instantiated
        return ()

    @property
    def output_specs(self) -> Sequence[TensorSpec]:  # pragma: no cover - never instantiated
        return ()

    def forward(self, inputs: Mapping[str, Any]) -> dict[str, Any]:  # pragma: no cover - never instantiated
        return {}


def _assert_same(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    assert isinstance(actual, np.ndarray), f"{what}: expected a numpy array, got {type(actual).__name__}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype}, expected {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    assert np.array_equal(actual, expected), f"{what}: values {actual!r}, expected {expected!r}"


def _collect(failures: list[str]) -> None:
    """Fail once, listing every dtype/case that failed, so one run shows the whole picture."""
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)


class ConformanceWarning(UserWarning):
    """A conformance check added in a newer contract minor than the plugin declares failed.

    It is a warning until the plugin declares that minor (and in the next major, a failure)."""


def _minor(version: str) -> tuple[int, int]:
    major, _, minor = str(version).partition(".")
    return int(major), int(minor or 0)


_Check = TypeVar("_Check", bound=Callable[..., None])


def since(version: str) -> Callable[[_Check], _Check]:
    """Mark a conformance check as added in contract ``version`` (``"1.2"``).

    The check runs for every backend. When it fails for a backend whose plugin declares an older
    minor of the same major, the failure becomes a :class:`ConformanceWarning` naming the check, the
    backend, the plugin, both versions and what failed; the test passes. Skips are never changed.
    The decorated check takes the ``backend`` and ``registry`` fixtures (by keyword).
    """

    def decorate(check: _Check) -> _Check:
        @functools.wraps(check)
        def run(self: BackendConformance, *args: Any, **kwargs: Any) -> None:
            try:
                check(self, *args, **kwargs)
            except (Exception, pytest.fail.Exception) as exc:  # pytest.skip's exception is neither: skips stay skips
                backend, registry = kwargs["backend"], kwargs["registry"]
                plugin = registry.backend_spec(backend.name).plugin if backend.name in registry.backend_names() else ""
                declared = registry.contract_version(plugin)
                if declared is None or _minor(declared) >= _minor(version) or _minor(declared)[0] != _minor(version)[0]:
                    raise
                what = str(exc).strip() or type(exc).__name__
                warnings.warn(
                    ConformanceWarning(
                        f"{check.__name__} (added in contract {version}) fails for backend {backend.name!r}, whose plugin {plugin!r} "
                        f"declares contract {declared}: a warning until the plugin declares {version} or later, then a failure: {what}"
                    ),
                    stacklevel=2,
                )

        run.since = version  # type: ignore[attr-defined]
        return run  # type: ignore[return-value]

    return decorate


class BackendConformance:
    """Subclass as ``TestXConformance`` and set :attr:`backend_name`, :attr:`capabilities` and
    :meth:`make_tiny_model`; pytest then runs every test below against the backend.

    Mandatory tests never skip: a capability they need that is missing is a failure. Capability
    tests skip only through :meth:`require`, when the backend does not declare the capability or
    this machine lacks the device.
    """

    #: The registry name of the backend under test.
    backend_name: ClassVar[str] = ""
    #: What the backend declares; decides which capability tests run.
    capabilities: ClassVar[Capabilities] = Capabilities()
    #: Dtypes the architecture factories are also checked in, beyond the default f32
    #: (``(DType.F16, DType.BF16)`` for a backend whose models compute in them).
    model_dtypes: ClassVar[tuple[DType, ...]] = ()

    # -- what a backend's test module provides -----------------------------------------------------
    def make_tiny_model(self, backend: Backend, weight: np.ndarray, bias: np.ndarray) -> Model:
        """A model with input ``"x"`` f32 ``(None, in)`` and output ``"y"`` f32 ``(None, out)``
        computing ``x @ weight + bias`` in the backend's framework."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_tiny_model")

    @pytest.fixture
    def registry(self) -> PluginRegistry:
        """The registry the backend is discovered in (override to use a private one)."""
        return get_registry()

    @pytest.fixture
    def backend(self, registry: PluginRegistry) -> Backend:
        """The backend under test (override e.g. for a backend registered in-process)."""
        assert self.backend_name, f"{type(self).__name__}.backend_name is not set"
        return registry.get_backend(self.backend_name)

    # -- the only way a test may skip ----------------------------------------------------------------
    def require(self, capability: str, backend: Backend | None = None) -> None:
        """Skip unless the backend declares ``capability``; for a device kind, also skip unless
        ``backend`` has such a device available on this machine."""
        if not self.capabilities.declares(capability):
            pytest.skip(f"capability {capability!r} not declared by backend {self.backend_name!r}")
        if capability in self.capabilities.device_kinds and backend is not None and capability != "cpu":
            if not any(d.id.kind == capability and d.available for d in backend.devices()):
                pytest.skip(f"no {capability} device on this machine")

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Generate one transfer test per accelerator kind (canonical ones plus the backend's own)."""
        if "accelerator" in metafunc.fixturenames:
            kinds = sorted(set(ACCELERATOR_KINDS) | (self.capabilities.device_kinds - {"cpu"}))
            metafunc.parametrize("accelerator", kinds)

    # -- helpers -------------------------------------------------------------------------------------
    def declared_dtypes(self, backend: Backend) -> list[DType]:
        declared = self.capabilities.dtypes
        found = declared if declared is not None else backend.supported_dtypes(DeviceId.cpu())
        return [d for d in DType if d in found]

    def tiny_weights(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(1234)
        weight = rng.standard_normal((TINY_IN, TINY_OUT)).astype(np.float32)
        bias = rng.standard_normal(TINY_OUT).astype(np.float32)
        return weight, bias

    def tiny_any_model(self, backend: Backend) -> tuple[AnyModel, np.ndarray, np.ndarray]:
        weight, bias = self.tiny_weights()
        model = self.make_tiny_model(backend, weight, bias)
        assert isinstance(model, Model), f"make_tiny_model returned {type(model).__name__}, not an inferox Model"
        return AnyModel(model), weight, bias

    # =================================================================================================
    # Mandatory: tensors
    # =================================================================================================
    def test_declared_dtypes_are_supported(self, backend: Backend) -> None:
        supported = backend.supported_dtypes(DeviceId.cpu())
        missing = [d.value for d in self.declared_dtypes(backend) if d not in supported]
        assert not missing, f"declared dtypes {missing} are not in backend.supported_dtypes('cpu')"
        assert DType.F32 in supported, "every backend must support f32 on the CPU"

    def test_tensor_round_trip_every_dtype(self, backend: Backend) -> None:
        builder = backend.tensor_builder("cpu")
        failures: list[str] = []
        for dtype in self.declared_dtypes(backend):
            expected = sample_array(dtype)
            try:
                tensor = builder.from_numpy(expected.copy())
                assert isinstance(tensor, Tensor), f"from_numpy returned {type(tensor).__name__}"
                assert tensor.dtype is dtype, f"tensor.dtype {tensor.dtype}"
                assert tensor.shape == expected.shape, f"tensor.shape {tensor.shape}"
                assert tensor.device == DeviceId.cpu(), f"tensor.device {tensor.device}"
                assert tensor.backend.name == backend.name
                assert tensor.size == expected.size and tensor.ndim == 2
                assert tensor.nbytes == expected.size * dtype.itemsize
                assert backend.is_native(tensor.native)
                _assert_same(tensor.numpy(), expected, "tensor.numpy()")
                _assert_same(backend.to_numpy(tensor.native), expected, "backend.to_numpy()")
                _assert_same(np.asarray(tensor), expected, "np.asarray(tensor)")
                _assert_same(backend.wrap(tensor.native).numpy(), expected, "backend.wrap()")
                _assert_same(builder.from_list(to_python_list(expected), dtype=dtype).numpy(), expected, "from_list()")
                flat = to_python_list(expected.reshape(-1))
                _assert_same(builder.from_list(flat, shape=expected.shape, dtype=dtype).numpy(), expected, "from_list(flat, shape)")
                _assert_same(builder.from_buffer(expected.tobytes(), shape=expected.shape, dtype=dtype).numpy(), expected, "from_buffer()")
                _assert_same(builder.from_array(expected).numpy(), expected, "from_array(numpy)")
                _assert_same(builder.from_array(tensor).numpy(), expected, "from_array(tensor)")
                _assert_same(builder.from_array(tensor.native).numpy(), expected, "from_array(native)")
                _assert_same(tensor.to("cpu").numpy(), expected, "tensor.to('cpu')")
                _assert_same(backend.to_numpy(backend.as_native(expected, dtype=dtype, device=DeviceId.cpu())), expected, "as_native()")
                assert dtype.value in repr(tensor)
            except AssertionError as exc:
                failures.append(f"{dtype.value}: {exc}")
            except Exception as exc:  # noqa: BLE001 - report every dtype, not only the first failure
                failures.append(f"{dtype.value}: {type(exc).__name__}: {exc}")
        _collect(failures)

    def test_cast_between_declared_dtypes(self, backend: Backend) -> None:
        builder = backend.tensor_builder("cpu")
        source = builder.from_numpy(np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], dtype=np.float32))
        failures: list[str] = []
        for dtype in self.declared_dtypes(backend):
            expected = np.array([[0, 1, 2], [3, 4, 5]]).astype(dtype.to_numpy())
            try:
                cast = source.astype(dtype)
                assert cast.dtype is dtype, f"astype gave {cast.dtype}"
                _assert_same(cast.numpy(), expected, "astype()")
                _assert_same(builder.from_array(source, dtype=dtype).numpy(), expected, "from_array(tensor, dtype)")
            except AssertionError as exc:
                failures.append(f"{dtype.value}: {exc}")
            except Exception as exc:  # noqa: BLE001
                failures.append(f"{dtype.value}: {type(exc).__name__}: {exc}")
        _collect(failures)

    def test_zeros_ones_full_empty(self, backend: Backend) -> None:
        builder = backend.tensor_builder("cpu")
        failures: list[str] = []
        for dtype in self.declared_dtypes(backend):
            np_dtype = dtype.to_numpy()
            try:
                _assert_same(builder.zeros((2, 3), dtype=dtype).numpy(), np.zeros((2, 3), np_dtype), "zeros")
                _assert_same(builder.ones((4,), dtype=dtype).numpy(), np.ones((4,), np_dtype), "ones")
                _assert_same(builder.empty((1, 2), dtype=dtype).numpy(), np.zeros((1, 2), np_dtype), "empty")
                value = True if dtype is DType.BOOL else 7
                _assert_same(builder.full((3, 1), value, dtype=dtype).numpy(), np.full((3, 1), value, np_dtype), "full")
            except AssertionError as exc:
                failures.append(f"{dtype.value}: {exc}")
            except Exception as exc:  # noqa: BLE001
                failures.append(f"{dtype.value}: {type(exc).__name__}: {exc}")
        _collect(failures)

    def test_randn_matches_numpy_generator(self, backend: Backend) -> None:
        builder = backend.tensor_builder("cpu")
        floats = [d for d in self.declared_dtypes(backend) if d.is_float]
        assert floats, "a backend must declare at least one float dtype"
        failures: list[str] = []
        for dtype in floats:
            expected = np.random.default_rng(42).standard_normal((3, 5)).astype(dtype.to_numpy())
            try:
                _assert_same(builder.randn((3, 5), seed=42, dtype=dtype).numpy(), expected, "randn(seed=42)")
                again = builder.randn((3, 5), seed=42, dtype=dtype).numpy()
                other = builder.randn((3, 5), seed=43, dtype=dtype).numpy()
                assert np.array_equal(again, expected), "the same seed gave different numbers"
                assert not np.array_equal(other, expected), "different seeds gave the same numbers"
            except AssertionError as exc:
                failures.append(f"{dtype.value}: {exc}")
            except Exception as exc:  # noqa: BLE001
                failures.append(f"{dtype.value}: {type(exc).__name__}: {exc}")
        _collect(failures)
        ints = [d for d in self.declared_dtypes(backend) if d.is_int]
        if ints:
            with pytest.raises(DTypeError) as ei:
                builder.randn((2,), seed=0, dtype=ints[0])
            assert ei.value.code == "INVALID_DTYPE"
            assert ei.value.actual == ints[0].value

    def test_zero_size_shapes(self, backend: Backend) -> None:
        builder = backend.tensor_builder("cpu")
        for shape in [(0,), (0, 3), (2, 0), (2, 0, 4)]:
            expected = np.zeros(shape, np.float32)
            _assert_same(builder.zeros(shape).numpy(), expected, f"zeros{shape}")
            _assert_same(builder.from_numpy(expected).numpy(), expected, f"from_numpy{shape}")
            _assert_same(builder.from_list([], shape=shape).numpy(), expected, f"from_list([], {shape})")
            _assert_same(builder.randn(shape, seed=0).numpy(), expected, f"randn{shape}")
            tensor = builder.zeros(shape)
            assert tensor.shape == shape and tensor.size == 0 and tensor.nbytes == 0

    def test_shape_errors(self, backend: Backend) -> None:
        builder = backend.tensor_builder("cpu")
        with pytest.raises(InvalidInputError) as ei:
            builder.from_list([1.0, 2.0, 3.0], shape=(2, 2))
        assert ei.value.code == "INVALID_INPUT"
        assert "4" in str(ei.value.expected) and "3" in str(ei.value.actual)

        with pytest.raises(InvalidInputError) as ei:
            builder.from_buffer(np.zeros(5, np.float32).tobytes(), shape=(2, 3), dtype=DType.F32)
        assert ei.value.code == "INVALID_INPUT"
        assert "24" in str(ei.value.expected) and "20" in str(ei.value.actual)

        for bad, actual in [((2, -1), -1), ((-3,), -3)]:
            with pytest.raises(InvalidInputError) as ei:
                builder.zeros(bad)
            assert ei.value.code == "INVALID_INPUT", bad
            assert ei.value.actual == actual and ei.value.expected is not None

        for bad_dim in (2.5, "3", None, True):
            with pytest.raises(InvalidInputError) as ei:
                builder.ones((2, bad_dim))  # type: ignore[arg-type]
            assert ei.value.code == "INVALID_INPUT", bad_dim
            assert ei.value.actual == repr(bad_dim) and ei.value.expected is not None

        with pytest.raises(InvalidInputError) as ei:
            builder.from_list([[1.0, 2.0], [3.0]])
        assert ei.value.code == "INVALID_INPUT"
        assert ei.value.name == "data"

        with pytest.raises(InvalidInputError) as ei:
            builder.from_numpy([1.0, 2.0])  # type: ignore[arg-type]
        assert ei.value.code == "INVALID_INPUT"
        assert ei.value.actual == "list"

    def test_unsupported_dtype(self, backend: Backend) -> None:
        builder = backend.tensor_builder("cpu")
        supported = backend.supported_dtypes(DeviceId.cpu())
        for dtype in (d for d in DType if d not in supported):
            with pytest.raises(DTypeError) as ei:
                builder.zeros((2,), dtype=dtype)
            assert ei.value.code == "INVALID_DTYPE"
            assert ei.value.actual == dtype.value
        # Types no backend has: complex numbers and unknown names.
        with pytest.raises(DTypeError) as ei:
            builder.from_numpy(np.zeros(2, np.complex64))
        assert ei.value.code == "INVALID_DTYPE"
        assert ei.value.actual == "complex64"
        with pytest.raises(DTypeError) as ei:
            builder.zeros((2,), dtype="f128")
        assert ei.value.code == "INVALID_DTYPE"
        assert ei.value.actual == "f128"

    # =================================================================================================
    # Mandatory: devices
    # =================================================================================================
    def test_device_listing_and_default_device(self, backend: Backend) -> None:
        assert "cpu" in self.capabilities.device_kinds, "capabilities.device_kinds must include 'cpu'"
        assert "cpu" in backend.device_kinds
        devices = backend.devices()
        ids = [d.id for d in devices]
        cpu = [d for d in devices if d.id == DeviceId.cpu()]
        assert cpu, f"backend.devices() does not list the cpu: {ids}"
        assert cpu[0].available, "the cpu must be available"
        for device in devices:
            assert device.backend == backend.name, f"{device} reports backend {device.backend!r}"
            assert device.id.kind in backend.device_kinds, f"{device} is not of a declared kind"
            assert device.memory is None or isinstance(device.memory, MemoryInfo)
        default = backend.default_device()
        assert default in ids, f"default device {default} is not listed in {ids}"
        assert backend.is_device_available(default)
        assert backend.check_device(None) == default
        assert backend.check_device("cpu") == DeviceId.cpu()
        assert backend.tensor_builder(None).device == default
        info = backend.memory_info("cpu")
        assert info is None or isinstance(info, MemoryInfo)
        backend.synchronize("cpu")

    def test_check_device_errors(self, backend: Backend) -> None:
        for bad in ("cuda:x", "", "cuda:-1", "cpu:1", "gpu::0", "0"):
            with pytest.raises(DeviceError) as ei:
                backend.check_device(bad)
            assert ei.value.code == "DEVICE_ERROR", bad
            assert ei.value.device == bad
        undeclared = "inferoxtestkind"
        with pytest.raises(DeviceError) as ei:
            backend.check_device(f"{undeclared}:0")
        assert ei.value.code == "DEVICE_ERROR"
        assert ei.value.device == f"{undeclared}:0"
        assert ei.value.backend == backend.name

    # =================================================================================================
    # Mandatory: models
    # =================================================================================================
    def test_any_model_round_trip(self, backend: Backend) -> None:
        any_model, weight, bias = self.tiny_any_model(backend)
        specs = {s.name: s for s in any_model.input_specs}
        assert list(specs) == ["x"] and specs["x"].dtype is DType.F32 and specs["x"].shape == (None, TINY_IN)
        out_specs = {s.name: s for s in any_model.output_specs}
        assert list(out_specs) == ["y"] and out_specs["y"].shape == (None, TINY_OUT)
        assert any_model.backend_name == backend.name

        x = np.random.default_rng(7).standard_normal((5, TINY_IN)).astype(np.float32)
        expected = x @ weight + bias
        out = any_model.forward_any({"x": x})
        assert set(out) == {"y"}
        assert isinstance(out["y"], np.ndarray) and out["y"].dtype == np.float32 and out["y"].shape == (5, TINY_OUT)
        np.testing.assert_allclose(out["y"], expected, rtol=1e-5, atol=1e-5)

        from_lists = any_model.forward_any({"x": x.tolist()})
        np.testing.assert_allclose(from_lists["y"], expected, rtol=1e-5, atol=1e-5)
        positional = any_model(x)
        np.testing.assert_allclose(positional["y"], expected, rtol=1e-5, atol=1e-5)
        native = any_model.forward_any({"x": x}, return_native=True)
        assert backend.is_native(native["y"])
        np.testing.assert_allclose(backend.to_numpy(native["y"]), expected, rtol=1e-5, atol=1e-5)
        tensor_in = backend.tensor_builder(any_model.device).from_numpy(x)
        np.testing.assert_allclose(any_model.forward_any({"x": tensor_in})["y"], expected, rtol=1e-5, atol=1e-5)
        empty = any_model.forward_any({"x": np.zeros((0, TINY_IN), np.float32)})
        assert empty["y"].shape == (0, TINY_OUT)

        concrete = any_model.downcast(type(any_model.model))
        assert concrete is any_model.model
        assert any_model.downcast(Model) is any_model.model  # type: ignore[type-abstract]
        with pytest.raises(TypeMismatchError) as ei:
            any_model.downcast(NotTheModel)
        assert ei.value.code == "TYPE_MISMATCH"
        assert ei.value.expected == NotTheModel.__qualname__
        assert ei.value.actual == type(any_model.model).__qualname__

    def test_validation_errors_never_reach_the_framework(self, backend: Backend) -> None:
        any_model, _, _ = self.tiny_any_model(backend)
        model = any_model.model
        calls: list[int] = []
        original = model.forward

        def counting_forward(inputs: Mapping[str, Any]) -> dict[str, Any]:
            calls.append(1)
            return original(inputs)

        model.forward = counting_forward  # type: ignore[method-assign]
        bad_inputs: list[tuple[Any, type[InferoxError], str, str | None]] = [
            ({"x": np.zeros((2, TINY_IN + 1), np.float32)}, InvalidInputError, "INVALID_INPUT", "x"),
            ({"x": np.zeros((2, TINY_IN, 1), np.float32)}, InvalidInputError, "INVALID_INPUT", "x"),
            ({"x": np.zeros((2, TINY_IN), np.float64)}, DTypeError, "INVALID_DTYPE", "x"),
            ({"x": [[1.0, 2.0], [3.0]]}, InvalidInputError, "INVALID_INPUT", "x"),
            ({"z": np.zeros((2, TINY_IN), np.float32)}, InvalidInputError, "INVALID_INPUT", "z"),
            ({}, InvalidInputError, "INVALID_INPUT", "x"),
        ]
        for inputs, cls, code, name in bad_inputs:
            with pytest.raises(cls) as ei:
                any_model.forward_any(inputs)
            assert ei.value.code == code, inputs
            assert getattr(ei.value, "name", None) == name, inputs
        assert calls == [], "a request that failed validation reached the framework"
        any_model.forward_any({"x": np.zeros((1, TINY_IN), np.float32)})
        assert calls == [1]

    def test_framework_errors_are_wrapped(self, backend: Backend) -> None:
        any_model, _, _ = self.tiny_any_model(backend)
        # Bypass validation on purpose: a wrong inner shape must fail inside the framework itself.
        wrong = backend.tensor_builder(any_model.device).from_numpy(np.ones((2, TINY_IN + 1), np.float32))
        with pytest.raises(BackendError) as ei:
            any_model.forward_native({"x": wrong.native})
        err = ei.value
        assert err.code == "BACKEND_ERROR"
        assert err.backend == backend.name
        assert err.model == any_model.name
        assert err.__cause__ is not None, "the framework's exception must be kept as __cause__"
        assert not isinstance(err.__cause__, InferoxError), "the cause must be the framework's own exception"

    # =================================================================================================
    # Architectures: the numbers, against the schema's NumPy reference
    # =================================================================================================
    @since("1.1")
    def test_architecture_numbers(self, backend: Backend, registry: PluginRegistry) -> None:
        """Every architecture the backend implements that has a reference: golden inputs through the
        backend's factory, compared with the reference per output, in f32 and each of model_dtypes."""
        archs = checked_architectures(backend.name, registry)
        if not archs:
            pytest.skip(f"no architecture with a reference implementation is registered for backend {backend.name!r}")
        failures: list[str] = []
        for arch in archs:
            for dtype in (None, *self.model_dtypes):
                try:
                    check_architecture(backend, arch, registry=registry, dtype=dtype)
                except ArchitectureMismatch as exc:
                    failures.append(str(exc))
        _collect(failures)

    @since("1.1")
    def test_architecture_factories_refuse_a_dtype_they_cannot_compute_in(self, backend: Backend, registry: PluginRegistry) -> None:
        """A factory given ``dtype="i32"`` raises DTypeError naming ``dtype`` (never ignores it)."""
        archs = [a for a in sorted(registry.architectures(backend.name)) if a in registry.schema_names()]
        if not archs:
            pytest.skip(f"no factory for an architecture with a schema is registered for backend {backend.name!r}")
        failures: list[str] = []
        for arch in archs:
            err = refused_dtype_error(backend, arch, registry=registry)
            if not isinstance(err, DTypeError) or err.code != "INVALID_DTYPE" or getattr(err, "name", None) != "dtype":
                failures.append(f"{arch}: dtype='i32' gave {type(err).__name__}: {err} (expected a DTypeError naming 'dtype')")
        _collect(failures)

    @since("1.2")
    def test_example_weights_separate_exact_from_tanh_gelu(self, backend: Backend, registry: PluginRegistry) -> None:
        """The sensitivity probe: for every architecture checked above whose example uses the exact
        GELU, the reference with the tanh GELU differs by more than the f32 tolerance on the example
        weights, so that test_architecture_numbers can catch a backend making that mistake."""
        archs = checked_architectures(backend.name, registry)
        if not archs:
            pytest.skip(f"no architecture with a reference implementation is registered for backend {backend.name!r}")
        failures: list[str] = []
        for arch in archs:
            schema = registry.schema(arch)
            try:
                found = gelu_sensitivity(schema)
            except InferoxError as exc:
                failures.append(f"architecture {arch!r}: the tanh GELU cannot be swapped in to probe the example: {exc}")
                continue
            if found is not None and not found.separates:
                atol, rtol = TOLERANCES[DType.F32]
                worst = max(found.max_differences.values(), default=0.0)
                failures.append(
                    f"architecture {arch!r} ({registry.describe_plugin(schema.plugin)}): on the conformance example the tanh GELU moves the reference by "
                    f"at most {worst:.3g} ({', '.join(f'{k} {v:.3g}' for k, v in found.max_differences.items())}), within the f32 tolerance "
                    f"atol={atol:g}, rtol={rtol:g}: a backend using it would pass; raise the schema's example_weight_scale ({schema.example_weight_scale:g})"
                )
        _collect(failures)

    @since("1.2")
    def test_native_inputs(self, backend: Backend, registry: PluginRegistry) -> None:
        """The backend's own native tensors as inputs give what numpy inputs give: the tiny model,
        and every architecture the backend implements with a schema."""
        any_model, weight, bias = self.tiny_any_model(backend)
        x = np.random.default_rng(11).standard_normal((3, TINY_IN)).astype(np.float32)
        native = backend.tensor_builder(any_model.device).from_numpy(x).native
        assert backend.is_native(native), f"tensor_builder().from_numpy(x).native is not native to backend {backend.name!r}"
        failures: list[str] = []
        try:
            got = any_model.forward_any({"x": native})
            np.testing.assert_allclose(np.asarray(got["y"]), x @ weight + bias, rtol=1e-5, atol=1e-5)
        except (AssertionError, InferoxError) as exc:
            failures.append(f"tiny model with a native input: {type(exc).__name__}: {exc}")
        for arch in (a for a in sorted(registry.architectures(backend.name)) if a in registry.schema_names()):
            try:
                from_numpy, from_native = native_input_outputs(backend, arch, registry=registry)
                for name, want in from_numpy.items():
                    np.testing.assert_allclose(from_native[name], want, rtol=1e-6, atol=1e-6, err_msg=f"output {name!r}")
            except (AssertionError, InferoxError, KeyError) as exc:
                failures.append(f"architecture {arch!r} with native inputs: {type(exc).__name__}: {exc}")
        _collect(failures)

    @since("1.2")
    def test_casts_keep_extreme_values(self, backend: Backend, registry: PluginRegistry) -> None:
        """Values where a cast through a narrower type shows: integers past float32's 24 bits (2**40+1)
        and float64's 53 (2**53+1), and float64 precision and range (1/3, 1+2**-52, the smallest normal,
        1e308), through every constructor and ``astype`` to each declared float dtype, exactly as numpy
        casts (subnormals may flush to zero: they are not checked)."""
        builder = backend.tensor_builder("cpu")
        declared = set(self.declared_dtypes(backend))
        failures: list[str] = []
        sources: list[tuple[DType, np.ndarray]] = []
        if DType.I64 in declared:
            sources.append((DType.I64, np.array([2**40 + 1, -(2**40 + 1), 2**53 + 1, -(2**62) - 3], dtype=np.int64)))
        if DType.F64 in declared:
            sources.append((DType.F64, np.array([1 / 3, 1 + 2**-52, 2.2250738585072014e-308, -1e-300, 1e308, 0.1], dtype=np.float64)))
        if DType.F32 in declared:
            # Normal numbers only: flushing subnormals to zero is allowed (XLA does, on CPU and GPU).
            sources.append((DType.F32, np.array([1 / 3, 1 + 2**-23, 1.1754944e-38, 3.4e38, 0.1], dtype=np.float32)))
        for dtype, values in sources:
            what = f"{dtype.value} {values.tolist()}"
            try:
                tensor = builder.from_numpy(values.copy())
                _assert_same(tensor.numpy(), values, f"{what}: from_numpy")
                _assert_same(builder.from_list(values.tolist(), dtype=dtype).numpy(), values, f"{what}: from_list")
                _assert_same(builder.full((2,), values.tolist()[0], dtype=dtype).numpy(), np.full((2,), values[0]), f"{what}: full")
                for target in (d for d in DType if d in declared and (d.is_float or d is dtype)):
                    with np.errstate(over="ignore"):
                        expected = values.astype(target.to_numpy())
                    _assert_same(tensor.astype(target).numpy(), expected, f"{what}: astype({target.value})")
            except AssertionError as exc:
                failures.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - report every source, not only the first failure
                failures.append(f"{what}: {type(exc).__name__}: {exc}")
        if not sources:
            pytest.skip(f"backend {backend.name!r} declares none of i64, f64, f32")  # pragma: no cover - f32 is mandatory
        _collect(failures)

    # =================================================================================================
    # Mandatory: discovery
    # =================================================================================================
    def test_backend_listed_by_discovery(self, backend: Backend, registry: PluginRegistry) -> None:
        assert backend.name == self.backend_name
        assert self.backend_name in registry.backend_names()
        infos = {info.name: info for info in registry.list_backends()}
        info = infos[self.backend_name]
        assert info.installed and info.available, f"backend listed as unavailable: {info.reason}"
        assert all(v for v in info.versions.values()), f"missing framework versions: {info.versions}"
        assert isinstance(backend.version, str) and backend.version, "backend.version must be a non-empty string"
        assert registry.get_backend(self.backend_name) is backend
        assert backend.name in repr(backend)

    # =================================================================================================
    # Capabilities: skipped only when not declared (through require)
    # =================================================================================================
    def test_dlpack_round_trip(self, backend: Backend) -> None:
        self.require("dlpack")
        assert backend.supports_dlpack, "capabilities declare dlpack but backend.supports_dlpack is False"
        builder = backend.tensor_builder("cpu")
        declared = self.declared_dtypes(backend)
        failures: list[str] = []
        for dtype in (d for d in _DLPACK_DTYPES if d in declared):
            expected = sample_array(dtype)
            try:
                tensor = builder.from_numpy(expected.copy())
                _assert_same(np.from_dlpack(tensor), expected, "np.from_dlpack(tensor)")
                _assert_same(np.from_dlpack(tensor.native), expected, "np.from_dlpack(native)")
                imported = builder.from_dlpack(expected.copy())
                assert imported.dtype is dtype
                _assert_same(imported.numpy(), expected, "builder.from_dlpack(numpy)")
                _assert_same(builder.from_dlpack_or_copy(expected.copy()).numpy(), expected, "from_dlpack_or_copy")
            except AssertionError as exc:
                failures.append(f"{dtype.value}: {exc}")
            except Exception as exc:  # noqa: BLE001
                failures.append(f"{dtype.value}: {type(exc).__name__}: {exc}")
        _collect(failures)
        with pytest.raises(InvalidInputError) as ei:
            builder.from_dlpack([1, 2, 3])
        assert ei.value.code == "INVALID_INPUT"
        assert ei.value.actual == "list"

    def test_dlpack_shares_memory_with_numpy(self, backend: Backend) -> None:
        self.require("zero_copy_numpy")
        builder = backend.tensor_builder("cpu")
        source = np.arange(12, dtype=np.float32).reshape(3, 4)
        tensor = builder.from_dlpack(source)
        back = np.from_dlpack(tensor)
        assert back.ctypes.data == source.ctypes.data, "numpy → backend → numpy through DLPack copied the data"
        from_numpy = builder.from_numpy(source)
        assert np.from_dlpack(from_numpy).ctypes.data == source.ctypes.data, "from_numpy copied a CPU array"

    def test_transfer_to_accelerator(self, backend: Backend, accelerator: str) -> None:
        self.require(accelerator, backend)
        self._check_transfer(backend, DeviceId(accelerator, 0))  # pragma: gpu

    def test_dtypes_on_accelerator(self, backend: Backend, accelerator: str) -> None:
        self.require(accelerator, backend)
        self._check_dtypes_on(backend, DeviceId(accelerator, 0))  # pragma: gpu

    # Only a machine with an accelerator reaches these two (coverage policy: "pragma: gpu").
    def _check_transfer(self, backend: Backend, device: DeviceId) -> None:  # pragma: gpu
        assert backend.check_device(device) == device
        expected = sample_array(DType.F32)
        on_cpu = backend.tensor_builder("cpu").from_numpy(expected)
        moved = on_cpu.to(device)
        assert moved.device == device
        _assert_same(moved.numpy(), expected, f"cpu → {device}")
        back = moved.to("cpu")
        assert back.device == DeviceId.cpu()
        _assert_same(back.numpy(), expected, f"{device} → cpu")
        built = backend.tensor_builder(device).from_numpy(expected)
        assert built.device == device
        _assert_same(built.numpy(), expected, f"built on {device}")
        info = backend.memory_info(device)
        assert info is None or (isinstance(info, MemoryInfo) and info.total > 0)
        backend.synchronize(device)

    def _check_dtypes_on(self, backend: Backend, device: DeviceId) -> None:  # pragma: gpu
        builder = backend.tensor_builder(device)
        supported = backend.supported_dtypes(device)
        failures: list[str] = []
        for dtype in (d for d in DType if d in supported):
            expected = sample_array(dtype)
            try:
                tensor = builder.from_numpy(expected)
                assert tensor.device == device and tensor.dtype is dtype, f"{tensor!r}"
                _assert_same(tensor.numpy(), expected, f"round trip on {device}")
            except AssertionError as exc:
                failures.append(f"{dtype.value}: {exc}")
            except Exception as exc:  # noqa: BLE001
                failures.append(f"{dtype.value}: {type(exc).__name__}: {exc}")
        for dtype in (d for d in DType if d not in supported):
            with pytest.raises(DTypeError) as ei:
                builder.zeros((1,), dtype=dtype)
            assert ei.value.code == "INVALID_DTYPE"
        _collect(failures)
