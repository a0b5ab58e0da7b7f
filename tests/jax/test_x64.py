"""JAX's 64-bit mode is process-wide, so its behaviour is checked in a subprocess (JAX_ENABLE_X64=1)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    from inferox.core import DType, get_backend
    from inferox.core.testing import sample_array
    from inferox.jax import x64_enabled
    from inferox.jax.tensor import aligned_empty

    b = get_backend("jax")
    assert x64_enabled() and b.x64
    assert b.supported_dtypes("cpu") == frozenset(DType), sorted(b.supported_dtypes("cpu"))
    builder = b.tensor_builder("cpu")
    for dtype in (DType.I64, DType.U64, DType.F64):
        expected = sample_array(dtype)
        t = builder.from_numpy(expected)
        assert t.dtype is dtype and t.native.dtype == expected.dtype, (dtype, t.native.dtype)
        assert np.array_equal(t.numpy(), expected), dtype
        assert builder.zeros((2,), dtype=dtype).dtype is dtype
        src = aligned_empty((4,), dtype)
        src[...] = 3
        d = builder.from_dlpack(src)
        assert d.dtype is dtype and d.data_ptr() == src.ctypes.data, "64-bit DLPack import copied"
    ids = np.array([[2**40, 1]], np.int64)
    native = b.as_native(ids, dtype=DType.I64)
    assert native.dtype == jnp.int64 and native.tolist() == ids.tolist(), "x64: no narrowing"
    assert b.as_native(np.array([0.1]), dtype=DType.F64).dtype == jnp.float64
    assert builder.randn((3,), seed=5, dtype="f64").numpy().tolist() == np.random.default_rng(5).standard_normal(3).tolist()
    assert builder.from_list([1.0]).astype("f64").dtype is DType.F64
    as_f32 = builder.from_numpy(np.array([3, -(2**40)], np.int64)).astype("f32")
    assert as_f32.dtype is DType.F32 and as_f32.numpy().tolist() == [3.0, float(-(2**40))]
    print("X64-OK")
    """
)


def test_x64_mode_supports_and_keeps_64bit_types() -> None:
    env = {**os.environ, "JAX_ENABLE_X64": "1"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "X64-OK"


@pytest.mark.slow
def test_jax_test_folder_passes_under_x64() -> None:
    """Every test in tests/jax also holds with 64-bit mode on (the no-x64 ones skip themselves)."""
    here = os.path.dirname(__file__)
    env = {**os.environ, "JAX_ENABLE_X64": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-cov", here, "-k", "not test_jax_test_folder_passes_under_x64"],
        capture_output=True,
        text=True,
        timeout=280,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
