"""Unregistering frees memory: RSS after 20 register/unregister cycles of a ~90 MB torch model.

How it is measured: VmRSS from ``/proc/self/status`` (Linux). The engine itself drops every
reference to an unregistered instance, calls ``Model.close()``, runs ``gc.collect()`` and glibc's
``malloc_trim(0)`` (``inferox.engine.release_memory``), so the test calls nothing extra before
reading the end figure. One warm-up cycle runs before the start figure is taken, so that lazily
allocated, process-wide buffers (torch's thread pools, allocator caches) are not counted as a leak.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inferox.core import DeviceId, DType, Model, ModelMetadata, TensorSpec, get_registry
from inferox.engine import Engine, EngineConfig, release_memory

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc (Linux)")

ROWS, COLS = 5500, 4096  # 5500 * 4096 * 4 bytes ≈ 90 MB of f32 weights


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")  # pragma: no cover


class Big(Model):
    """y = x @ W.T with ~90 MB of real torch weights (every page written, so RSS counts them)."""

    def __init__(self, seed: int) -> None:
        import torch

        super().__init__(backend=get_registry().get_backend("torch"), metadata=ModelMetadata("big"), device=DeviceId.cpu())
        self.weight = torch.full((ROWS, COLS), 1.0 / COLS + seed * 1e-6)

    @property
    def input_specs(self) -> Sequence[TensorSpec]:
        return [TensorSpec("x", DType.F32, (None, COLS))]

    @property
    def output_specs(self) -> Sequence[TensorSpec]:
        return [TensorSpec("y", DType.F32, (None, ROWS))]

    def forward(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        return {"y": inputs["x"] @ self.weight.T}

    def memory_requirements(self) -> int:
        return int(self.weight.numel() * self.weight.element_size())

    def close(self) -> None:
        self.weight = None


def _cycle(eng: Engine, seed: int) -> tuple[weakref.ref[Big], int]:
    """Register, infer, unregister; the model's weak reference and the RSS while it was loaded."""
    model = Big(seed)
    ref = weakref.ref(model)
    eng.register("big", model)
    del model
    out = eng.infer("big", np.ones((2, COLS), np.float32))["y"]
    assert out.shape == (2, ROWS) and abs(float(out[0, 0]) - (1.0 + seed * 1e-6 * COLS)) < 1e-3
    del out
    loaded = rss_bytes()
    eng.unregister("big")
    return ref, loaded


@pytest.mark.skipif(sys.platform != "linux", reason="VmRSS is Linux-only")
def test_rss_after_20_register_unregister_cycles_within_50mb() -> None:
    with Engine(EngineConfig(max_batch_size=4)) as eng:
        assert _cycle(eng, 0)[0]() is None  # warm-up cycle (process-wide torch buffers)
        release_memory()
        start = rss_bytes()
        peak = start
        for i in range(1, 21):
            ref, loaded = _cycle(eng, i)
            assert ref() is None, f"cycle {i}: the engine still references the unregistered model"
            peak = max(peak, loaded)
        end = rss_bytes()
    assert peak - start > 80 * 2**20  # sanity: the measurement does see the ~90 MB of weights while loaded
    assert end - start < 50 * 2**20, f"RSS grew by {(end - start) / 2**20:.1f} MiB over 20 cycles (start {start / 2**20:.0f} MiB)"


def test_hot_swap_releases_the_old_instance() -> None:
    with Engine() as eng:
        first = Big(1)
        ref = weakref.ref(first)
        eng.register("big", first)
        del first
        eng.register("big", Big(2))
        assert ref() is None
        assert eng.model_info("big").instances[0].memory_bytes == ROWS * COLS * 4
