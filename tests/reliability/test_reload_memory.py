"""The real all-MiniLM-L6-v2 package loaded, queried and unloaded over and over: process RSS ends
within 50 MB of where it started (after one warm-up cycle, so torch's process-wide buffers and
the tokenizer's caches are not counted as a leak).

The default run does 20 cycles (about 2 s each here); the nox ``soak`` session sets
``INFEROX_RELOAD_CYCLES=100`` for the full figure of issue 7. VmRSS comes from ``/proc`` (Linux).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inferox.core.errors import ModelNotFoundError
from inferox.engine import Engine, release_memory

from .reliability_kit import rss_bytes

pytestmark = pytest.mark.skipif(sys.platform != "linux" or not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc (Linux)")

CYCLES = int(os.environ.get("INFEROX_RELOAD_CYCLES", "20"))
LIMIT = 50 * 2**20
SENTENCES = ["the cat sat on the mat", "reliability under load"]


def _cycle(eng: Engine, package: Path, reference: np.ndarray | None) -> np.ndarray:
    eng.load(package, name="minilm", backend="torch")
    emb = np.asarray(eng.infer("minilm", SENTENCES)["sentence_embedding"])
    assert emb.shape == (2, 384)
    if reference is not None:
        np.testing.assert_allclose(emb, reference, rtol=1e-5, atol=1e-5)  # every reload is the same model
    eng.unregister("minilm")
    return emb


def test_minilm_unload_reload_cycles_keep_rss_flat(minilm_package: Path, figures: Any) -> None:
    with Engine() as eng:
        reference = _cycle(eng, minilm_package, None)  # warm-up cycle
        release_memory()
        start = rss_bytes()
        peak = start
        for _ in range(CYCLES):
            _cycle(eng, minilm_package, reference)
            peak = max(peak, rss_bytes())
        with pytest.raises(ModelNotFoundError) as ei:
            eng.infer("minilm", SENTENCES)
        assert ei.value.code == "MODEL_NOT_FOUND"
        end = rss_bytes()
    growth = end - start
    figures.record(cycles=CYCLES, rss_start_mb=round(start / 2**20, 1), rss_end_mb=round(end / 2**20, 1), rss_peak_mb=round(peak / 2**20, 1), rss_growth_mb=round(growth / 2**20, 1))
    assert growth < LIMIT, f"RSS grew by {growth / 2**20:.1f} MB over {CYCLES} load/unload cycles (start {start / 2**20:.0f} MB)"
