"""JaxBackend: identity, devices, memory, dtypes, transfers, casts, host export and as_native."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import pytest

from inferox.core import (
    Backend,
    DeviceError,
    DeviceId,
    DeviceUnavailableError,
    DType,
    DTypeError,
    InvalidInputError,
    MemoryInfo,
)
from inferox.jax import JaxBackend, JaxTensor, JaxTensorBuilder, x64_enabled

NO_X64 = pytest.mark.skipif(jax.config.jax_enable_x64, reason="checks the default (no 64-bit mode) rule")


def test_identity(backend: JaxBackend) -> None:
    assert isinstance(backend, Backend)
    assert backend.name == "jax"
    assert backend.device_kinds == frozenset({"cpu", "cuda", "tpu"})
    assert backend.supports_dlpack
    assert backend.version == f"{jax.__version__} (jaxlib {jaxlib.__version__})"
    assert repr(backend) == f"<JaxBackend jax {backend.version}>"
    assert backend.x64 is x64_enabled() is bool(jax.config.jax_enable_x64)


# -- devices ------------------------------------------------------------------------------------------------
def test_devices_mirror_jax(backend: JaxBackend) -> None:
    devices = backend.devices()
    ids = [d.id for d in devices]
    assert ids[0] == DeviceId.cpu() and ids.count(DeviceId.cpu()) == 1
    cpu = devices[0]
    assert cpu.backend == "jax" and cpu.available and cpu.properties["platform"] == "cpu"
    assert isinstance(cpu.memory, MemoryInfo) and cpu.memory.total > 0 and cpu.memory.total >= cpu.memory.free
    platforms = {d.platform for d in jax.devices()}
    n_gpu = len(jax.devices("gpu")) if "gpu" in platforms else 0
    assert sum(1 for i in ids if i.kind == "cuda") == n_gpu
    assert [i for i in ids if i.kind == "cuda"] == [DeviceId.cuda(k) for k in range(n_gpu)]
    assert all(i.kind in backend.device_kinds for i in ids)
    # JAX's device set is fixed for a process: the listing is stable (free memory, read each time, is not).
    assert [(d.id, d.name, d.available, d.properties) for d in backend.devices()] == [(d.id, d.name, d.available, d.properties) for d in devices]


def test_default_device(backend: JaxBackend) -> None:
    default = backend.default_device()
    accelerators = [d.id for d in backend.devices() if not d.id.is_cpu]
    assert default == (accelerators[0] if accelerators else DeviceId.cpu())
    assert backend.check_device(None) == default
    assert backend.tensor_builder().device == default
    assert backend.jax_device(None) in jax.devices()


def test_jax_device_mapping(backend: JaxBackend) -> None:
    assert backend.jax_device("cpu") == jax.devices("cpu")[0]
    x = jax.device_put(jnp.ones(2), jax.devices("cpu")[0])
    assert backend.device_of(x) == DeviceId.cpu()


@pytest.mark.parametrize("bad", ["cuda:x", "gpu::1", "cpu:2", "", ":0", "CUDA-1"])
def test_malformed_device(backend: JaxBackend, bad: str) -> None:
    for call in (backend.check_device, backend.tensor_builder, backend.memory_info, backend.synchronize):
        with pytest.raises(DeviceError) as ei:
            call(bad)
        assert ei.value.code == "DEVICE_ERROR" and ei.value.device == bad


def test_kind_jax_never_has(backend: JaxBackend) -> None:
    with pytest.raises(DeviceError) as ei:
        backend.check_device("mps")
    assert type(ei.value) is DeviceError and ei.value.code == "DEVICE_ERROR"
    assert ei.value.device == "mps:0" and ei.value.backend == "jax"
    assert "cpu, cuda, tpu" in str(ei.value)


@pytest.mark.parametrize("device", ["cuda:0", "gpu:0", "cuda:7", "tpu:0"])
def test_unavailable_device(backend: JaxBackend, device: str) -> None:
    canonical = str(DeviceId.parse(device))
    if backend.is_device_available(canonical):
        pytest.skip(f"{canonical} exists on this machine")
    for call in (backend.check_device, backend.tensor_builder, backend.supported_dtypes, backend.memory_info):
        with pytest.raises(DeviceUnavailableError) as ei:
            call(device)
        assert ei.value.code == "DEVICE_UNAVAILABLE" and ei.value.device == canonical and ei.value.backend == "jax"
    assert not backend.is_device_available(device)


def test_memory_info_and_synchronize(backend: JaxBackend, builder: JaxTensorBuilder) -> None:
    info = backend.memory_info("cpu")
    assert isinstance(info, MemoryInfo) and info.total > 0 and info.used == info.total - info.free
    assert 0.0 <= info.utilization <= 1.0
    t = builder.randn((64, 64), seed=0)
    y = t.native @ t.native  # dispatched asynchronously
    backend.synchronize("cpu")
    assert y.is_ready()
    backend.synchronize()


# -- dtypes -----------------------------------------------------------------------------------------------------
@NO_X64
def test_supported_dtypes_without_x64(backend: JaxBackend) -> None:
    supported = backend.supported_dtypes("cpu")
    assert supported == {DType.BOOL, DType.U8, DType.U16, DType.U32, DType.I8, DType.I16, DType.I32, DType.F16, DType.BF16, DType.F32}
    assert not supported & {DType.I64, DType.U64, DType.F64}
    assert backend.supported_dtypes() == supported
    assert backend.narrowed_dtype(DType.I64) is DType.I32
    assert backend.narrowed_dtype(DType.U64) is DType.U32
    assert backend.narrowed_dtype(DType.F64) is DType.F32


@NO_X64
def test_as_native_narrows_token_ids_with_range_check(backend: JaxBackend) -> None:
    ids = np.array([[101, 2023, 102]], dtype=np.int64)
    out = backend.as_native(ids, dtype=DType.I64)
    assert isinstance(out, jax.Array) and out.dtype == jnp.int32 and out.tolist() == ids.tolist()
    edge = np.array([np.iinfo(np.int32).min, np.iinfo(np.int32).max], dtype=np.int64)
    assert backend.as_native(edge, dtype="i64").tolist() == edge.tolist()
    for bad in (np.array([1, 2**31], np.int64), np.array([-(2**31) - 1], np.int64)):
        with pytest.raises(DTypeError) as ei:
            backend.as_native(bad, dtype=DType.I64)
        assert ei.value.code == "INVALID_DTYPE"
        assert ei.value.expected == "[-2147483648, 2147483647]" and str(int(bad.max() if bad.max() > 0 else bad.min())) in ei.value.actual
    with pytest.raises(DTypeError) as ei:
        backend.as_native(np.array([2**32], np.uint64), dtype=DType.U64)
    assert ei.value.code == "INVALID_DTYPE" and ei.value.expected == "[0, 4294967295]"
    # Lists of Python ints take the same path.
    assert backend.as_native([[5, 6]], dtype="i64").dtype == jnp.int32


def test_as_native_explicit_int_narrowing_is_checked_too(backend: JaxBackend, builder: JaxTensorBuilder) -> None:
    """Asking for i32 from an int64 (or a negative int into u32) never wraps around silently."""
    assert backend.as_native(np.array([7, -7], np.int64), dtype="i32").tolist() == [7, -7]
    with pytest.raises(DTypeError) as ei:
        backend.as_native(np.array([2**40], np.int64), dtype="i32")
    assert ei.value.code == "INVALID_DTYPE" and "1099511627776" in ei.value.actual
    with pytest.raises(DTypeError) as ei:
        backend.as_native(np.array([-1], np.int32), dtype="u32")
    assert ei.value.code == "INVALID_DTYPE" and ei.value.expected == "[0, 4294967295]"
    # A jax tensor face of another int type is cast like any Tensor.
    assert backend.as_native(builder.from_list([1, 2], dtype="i16"), dtype="i32").dtype == jnp.int32


@NO_X64
def test_f64_to_f32_only_when_explicit(backend: JaxBackend) -> None:
    x = np.array([0.1, 2.5], dtype=np.float64)
    with pytest.raises(DTypeError) as ei:
        backend.as_native(x, dtype=DType.F64)
    assert ei.value.code == "INVALID_DTYPE" and ei.value.actual == "f64" and "JAX_ENABLE_X64" in str(ei.value)
    with pytest.raises(DTypeError) as ei:
        backend.as_native(x)  # no dtype: the array's own f64 is unsupported
    assert ei.value.code == "INVALID_DTYPE" and ei.value.actual == "f64"
    explicit = backend.as_native(x, dtype=DType.F32)
    assert explicit.dtype == jnp.float32 and explicit.tolist() == [np.float32(0.1), 2.5]
    opted = backend.as_native(x, dtype=DType.F64, narrow_floats=True)
    assert opted.dtype == jnp.float32 and float(opted[0]) == pytest.approx(0.1)


def test_as_native_keeps_natives_and_places_on_device(backend: JaxBackend) -> None:
    x = jnp.arange(4, dtype=jnp.float32)
    assert backend.as_native(x) is x
    assert backend.as_native(x, dtype="f16").dtype == jnp.float16
    assert backend.as_native([1.0, 2.0], device="cpu").dtype == jnp.float32


# -- tensors ------------------------------------------------------------------------------------------------------
def test_is_native_and_wrap(backend: JaxBackend) -> None:
    x = jnp.ones((2, 2), jnp.bfloat16)
    assert backend.is_native(x) and not backend.is_native(np.ones(2)) and not backend.is_native([1])
    t = backend.wrap(x)
    assert isinstance(t, JaxTensor) and t.native is x and t.dtype is DType.BF16
    assert backend.wrap(t) is t
    with pytest.raises(InvalidInputError) as ei:
        backend.wrap(np.ones(2))
    assert ei.value.code == "INVALID_INPUT" and ei.value.name == "native"
    assert ei.value.expected == "jax.Array" and ei.value.actual == "ndarray"


def test_wrap_refuses_jax_only_dtypes(backend: JaxBackend) -> None:
    x = jnp.zeros(2, jnp.float8_e4m3fn)
    with pytest.raises(DTypeError) as ei:
        backend.wrap(x)
    assert ei.value.code == "INVALID_DTYPE" and ei.value.actual == "float8_e4m3fn"


def test_to_device_cpu(backend: JaxBackend, builder: JaxTensorBuilder) -> None:
    t = builder.from_list([1.0, 2.0])
    moved = backend.to_device(t, DeviceId.cpu())
    assert moved.device == DeviceId.cpu() and moved.numpy().tolist() == [1.0, 2.0]
    assert t.to("cpu").numpy().tolist() == [1.0, 2.0]
    assert backend.to_device(t.native, "cpu").numpy().tolist() == [1.0, 2.0]
    with pytest.raises(DeviceUnavailableError) as ei:
        t.to("tpu:3")
    assert ei.value.code == "DEVICE_UNAVAILABLE" and ei.value.device == "tpu:3"
    with pytest.raises(InvalidInputError) as ei:
        backend.to_device([1.0], "cpu")
    assert ei.value.code == "INVALID_INPUT" and ei.value.name == "tensor" and ei.value.actual == "list"


@pytest.mark.skipif(not JaxBackend().is_device_available("cuda:0"), reason="needs a CUDA device visible to JAX")
def test_transfer_cpu_cuda_round_trip(backend: JaxBackend, builder: JaxTensorBuilder) -> None:  # pragma: gpu
    source = np.arange(12, dtype=np.float32).reshape(3, 4)
    on_gpu = builder.from_numpy(source).to("cuda:0")
    assert on_gpu.device == DeviceId.cuda(0)
    assert on_gpu.to("cpu").device == DeviceId.cpu() and np.array_equal(on_gpu.numpy(), source)
    assert backend.tensor_builder("cuda:0").zeros((2,)).device == DeviceId.cuda(0)
    info = backend.memory_info("cuda:0")
    assert info is not None and info.total > 0
    backend.synchronize("cuda:0")


@pytest.mark.parametrize(
    "src,dst,values,expected",
    [
        (DType.F32, DType.I32, [1.9, -2.7], [1, -2]),
        (DType.I32, DType.F32, [3, -4], [3.0, -4.0]),
        (DType.F32, DType.BF16, [1.0, 0.5], [1.0, 0.5]),
        (DType.F32, DType.F16, [65504.0, 2.0], [65504.0, 2.0]),
        (DType.I32, DType.U8, [1, 255], [1, 255]),
        (DType.U8, DType.BOOL, [0, 3], [False, True]),
    ],
    ids=lambda v: v.value if isinstance(v, DType) else None,
)
def test_cast(backend: JaxBackend, builder: JaxTensorBuilder, src: DType, dst: DType, values: list, expected: list) -> None:
    t = builder.from_list(values, dtype=src)
    out = backend.cast(t, dst)
    assert out.dtype is dst and out.numpy().tolist() == expected
    assert t.astype(dst.value).dtype is dst


@NO_X64
def test_cast_to_64bit_is_refused(backend: JaxBackend, builder: JaxTensorBuilder) -> None:
    for dtype in (DType.F64, DType.I64, DType.U64):
        with pytest.raises(DTypeError) as ei:
            builder.from_list([1.0]).astype(dtype)
        assert ei.value.code == "INVALID_DTYPE" and ei.value.actual == dtype.value and ei.value.name == "dtype"
        assert "JAX_ENABLE_X64" in str(ei.value)


def test_to_numpy(backend: JaxBackend, builder: JaxTensorBuilder) -> None:
    t = builder.from_list([[1, 2], [3, 4]], dtype="u16")
    for source in (t, t.native):
        out = backend.to_numpy(source)
        assert out.dtype == np.uint16 and out.tolist() == [[1, 2], [3, 4]]
    with pytest.raises(InvalidInputError) as ei:
        backend.to_numpy(np.ones(2))
    assert ei.value.code == "INVALID_INPUT" and ei.value.actual == "ndarray"


def test_backend_errors_are_wrapped(backend: JaxBackend, builder: JaxTensorBuilder) -> None:
    """A deleted (donated) buffer makes JAX itself raise: the backend reports a typed BackendError."""
    from inferox.core import BackendError

    t = builder.from_list([1.0, 2.0])
    t.native.delete()
    with pytest.raises(BackendError) as ei:
        backend.to_numpy(t)
    assert ei.value.code == "BACKEND_ERROR" and ei.value.backend == "jax"
    assert ei.value.__cause__ is not None and "deleted" in str(ei.value.__cause__).lower()
    with pytest.raises(BackendError) as ei:
        t.data_ptr()
    assert ei.value.code == "BACKEND_ERROR"


def test_several_xla_cpu_devices_are_one_inferox_cpu() -> None:
    """XLA can split the host into N "devices" (a process-wide flag): Inferox still lists one cpu."""
    import os
    import subprocess
    import sys

    code = (
        "import jax, jax.numpy as jnp\n"
        "from inferox.core import get_backend, DeviceId\n"
        "b = get_backend('jax')\n"
        "assert len(jax.devices('cpu')) == 2, jax.devices()\n"
        "assert [d.id for d in b.devices()] == [DeviceId.cpu()], b.devices()\n"
        "x = jax.device_put(jnp.ones(2), jax.devices('cpu')[1])\n"
        "assert b.wrap(x).device == DeviceId.cpu()\n"
        "print('OK')\n"
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "OK"


def test_tensor_of_another_backend_moves_into_jax(backend: JaxBackend) -> None:
    """A third-party backend's Tensor (the inferox-numpy reference plugin) goes through DLPack."""
    from inferox.core.plugins import get_registry

    if "numpy" not in get_registry().backend_names():
        pytest.skip("the inferox-numpy reference plugin is not installed")
    foreign = get_registry().get_backend("numpy").tensor_builder("cpu").from_list([[1, 2], [3, 4]], dtype="i32")
    moved = backend.to_device(foreign, "cpu")
    assert isinstance(moved, JaxTensor) and moved.dtype is DType.I32 and moved.numpy().tolist() == [[1, 2], [3, 4]]


def test_as_native_of_a_dtype_inferox_lacks(backend: JaxBackend) -> None:
    with pytest.raises(DTypeError) as ei:
        backend.as_native(np.array([1 + 2j]), dtype="i32")
    assert ei.value.code == "INVALID_DTYPE" and ei.value.actual == "complex128"


def test_builder_knows_its_jax_device(backend: JaxBackend, builder: JaxTensorBuilder) -> None:
    assert builder.jax_device == jax.devices("cpu")[0] and builder.device == DeviceId.cpu() and builder.backend is backend
