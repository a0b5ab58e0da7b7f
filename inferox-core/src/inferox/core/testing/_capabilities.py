"""What a backend declares it can do, which decides the only tests the conformance suite may skip."""

from __future__ import annotations

from dataclasses import dataclass, field

from inferox.core.device import DeviceKind
from inferox.core.dtype import DType

__all__ = ["ACCELERATOR_KINDS", "Capabilities"]

#: Accelerator kinds the suite always generates transfer tests for; a backend's own kinds are added.
ACCELERATOR_KINDS: tuple[str, ...] = (DeviceKind.CUDA, DeviceKind.MPS, DeviceKind.TPU)


@dataclass(frozen=True)
class Capabilities:
    """A backend's declared capabilities.

    ``device_kinds``: every device kind the backend can ever use (``"cpu"`` is mandatory).
    ``dtypes``: the dtypes the backend promises on the CPU; ``None`` means "whatever
    ``backend.supported_dtypes("cpu")`` reports" (the round trip is then checked for each of those).
    ``dlpack``: the backend exchanges tensors with numpy through DLPack.
    ``zero_copy_numpy``: CPU tensors built from numpy, and numpy arrays read back through DLPack,
    share memory with the original (checked by pointer).
    """

    device_kinds: frozenset[str] = field(default_factory=lambda: frozenset({DeviceKind.CPU}))
    dtypes: frozenset[DType] | None = None
    dlpack: bool = True
    zero_copy_numpy: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "device_kinds", frozenset(k.lower() for k in self.device_kinds))
        if self.dtypes is not None:
            object.__setattr__(self, "dtypes", frozenset(DType.parse(d) for d in self.dtypes))

    def declares(self, capability: str) -> bool:
        """Whether ``capability`` (``"dlpack"``, ``"zero_copy_numpy"`` or a device kind) is declared."""
        if capability == "dlpack":
            return self.dlpack
        if capability == "zero_copy_numpy":
            return self.dlpack and self.zero_copy_numpy
        return capability.lower() in self.device_kinds
