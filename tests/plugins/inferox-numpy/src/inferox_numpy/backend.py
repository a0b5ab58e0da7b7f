"""``NumpyBackend``: numpy arrays are the native tensors; the host CPU is the only device."""

from __future__ import annotations

import numpy as np

from inferox.core import ArrayBackend


class NumpyBackend(ArrayBackend):
    """Everything (tensor, builder, devices, every dtype with bf16 through ml_dtypes, casts) comes from ArrayBackend."""

    name = "numpy"
    xp = np
