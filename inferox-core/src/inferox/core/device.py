"""Devices: canonical identifiers, what a backend reports about each, and memory figures."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inferox.core.errors import DeviceError

__all__ = ["Device", "DeviceId", "DeviceKind", "MemoryInfo", "host_memory_info"]


class DeviceKind:
    """Canonical device kinds. A backend may add its own (any lowercase identifier)."""

    CPU = "cpu"
    CUDA = "cuda"
    MPS = "mps"
    TPU = "tpu"


# Aliases that name a canonical kind: JAX calls CUDA devices "gpu", Apple's are also "metal".
_ALIASES = {"gpu": DeviceKind.CUDA, "metal": DeviceKind.MPS}
_DEVICE_RE = re.compile(r"^(?P<kind>[a-z][a-z0-9_]*)(?::(?P<index>\d+))?$")


@dataclass(frozen=True, order=True)
class DeviceId:
    """A device: a kind (``cpu``, ``cuda``, ``mps``, ``tpu`` or a backend's own) and an index.

    ``DeviceId.parse("cuda")`` is ``cuda:0``; ``"gpu:1"`` is ``cuda:1``. The CPU has no index.
    """

    kind: str
    index: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not _DEVICE_RE.match(self.kind):
            raise DeviceError(f"invalid device kind {self.kind!r}", device=str(self.kind))
        if isinstance(self.index, bool) or not isinstance(self.index, int) or self.index < 0:
            raise DeviceError(f"invalid device index {self.index!r} for {self.kind!r}: must be a non-negative integer", device=str(self.kind))

    @classmethod
    def parse(cls, value: str | DeviceId | Any) -> DeviceId:
        """Parse ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"gpu:0"``, ``"tpu:0"`` or a custom kind.

        Also accepts a ``DeviceId`` or any object whose ``str()`` has that form (``torch.device``).
        Raises :class:`DeviceError` naming the string when it is malformed.
        """
        if isinstance(value, DeviceId):
            return value
        if value is None:
            raise DeviceError("device must be a string like 'cpu' or 'cuda:0', got None", device=None)
        text = str(value).strip().lower()
        match = _DEVICE_RE.match(text)
        if not match:
            raise DeviceError(
                f"malformed device string {str(value)!r}: expected KIND or KIND:INDEX, e.g. 'cpu', 'cuda:1'",
                device=str(value),
            )
        kind = _ALIASES.get(match["kind"], match["kind"])
        index = int(match["index"]) if match["index"] is not None else 0
        if kind == DeviceKind.CPU and index != 0:
            raise DeviceError(f"malformed device string {str(value)!r}: the CPU has no index", device=str(value))
        return cls(kind, index)

    @classmethod
    def cpu(cls) -> DeviceId:
        return cls(DeviceKind.CPU)

    @classmethod
    def cuda(cls, index: int = 0) -> DeviceId:
        return cls(DeviceKind.CUDA, index)

    @property
    def is_cpu(self) -> bool:
        return self.kind == DeviceKind.CPU

    @property
    def is_cuda(self) -> bool:
        return self.kind == DeviceKind.CUDA

    @property
    def is_metal(self) -> bool:
        return self.kind == DeviceKind.MPS

    is_mps = is_metal

    @property
    def is_tpu(self) -> bool:
        return self.kind == DeviceKind.TPU

    @property
    def is_accelerator(self) -> bool:
        return not self.is_cpu

    def __str__(self) -> str:
        return "cpu" if self.is_cpu else f"{self.kind}:{self.index}"


@dataclass(frozen=True)
class MemoryInfo:
    """Memory of a device in bytes. ``used`` is ``total - free`` unless the backend knows better."""

    total: int
    free: int
    used: int

    def __post_init__(self) -> None:
        for name in ("total", "free", "used"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise DeviceError(f"MemoryInfo.{name} must be a non-negative integer, got {value!r}")

    @classmethod
    def from_total_free(cls, total: int, free: int) -> MemoryInfo:
        return cls(total=int(total), free=int(free), used=max(int(total) - int(free), 0))

    @property
    def utilization(self) -> float:
        """Fraction of memory in use (0.0 when ``total`` is unknown/zero)."""
        return self.used / self.total if self.total else 0.0


def host_memory_info(meminfo: str | os.PathLike[str] = "/proc/meminfo") -> MemoryInfo | None:
    """Host RAM, for every backend whose CPU device is the host: ``MemTotal`` / ``MemAvailable``
    from ``/proc/meminfo`` where it exists (Linux: *available* counts reclaimable page cache, which
    *free* does not), else ``os.sysconf`` page counts (other POSIX systems), else ``None`` (the
    platform cannot tell)."""
    try:
        fields: dict[str, int] = {}
        for line in Path(meminfo).read_text().splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                fields[key] = int(parts[0]) * 1024  # reported in kB
        return MemoryInfo.from_total_free(fields["MemTotal"], fields.get("MemAvailable", fields.get("MemFree", 0)))
    except (OSError, KeyError):
        pass
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return MemoryInfo.from_total_free(page * os.sysconf("SC_PHYS_PAGES"), page * os.sysconf("SC_AVPHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - platforms without sysconf (Windows)
        return None


@dataclass(frozen=True)
class Device:
    """What a backend reports about one of its devices."""

    id: DeviceId
    backend: str
    name: str = ""
    available: bool = True
    memory: MemoryInfo | None = None
    properties: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def kind(self) -> str:
        return self.id.kind

    def __str__(self) -> str:
        return f"{self.backend}:{self.id}"
