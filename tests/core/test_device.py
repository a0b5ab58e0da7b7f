"""DeviceId parsing, predicates, Device and MemoryInfo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inferox.core import Device, DeviceError, DeviceId, DeviceKind, MemoryInfo
from inferox.core.device import host_memory_info


@pytest.mark.parametrize(
    ("text", "kind", "index", "canonical"),
    [
        ("cpu", "cpu", 0, "cpu"),
        ("CPU", "cpu", 0, "cpu"),
        (" cpu:0 ", "cpu", 0, "cpu"),
        ("cuda", "cuda", 0, "cuda:0"),
        ("cuda:1", "cuda", 1, "cuda:1"),
        ("cuda:12", "cuda", 12, "cuda:12"),
        ("mps", "mps", 0, "mps:0"),
        ("metal", "mps", 0, "mps:0"),
        ("gpu:0", "cuda", 0, "cuda:0"),
        ("gpu:3", "cuda", 3, "cuda:3"),
        ("tpu:0", "tpu", 0, "tpu:0"),
        ("tpu:7", "tpu", 7, "tpu:7"),
        ("npu:3", "npu", 3, "npu:3"),
        ("my_accel2", "my_accel2", 0, "my_accel2:0"),
    ],
)
def test_parse(text: str, kind: str, index: int, canonical: str) -> None:
    dev = DeviceId.parse(text)
    assert (dev.kind, dev.index) == (kind, index)
    assert str(dev) == canonical
    assert DeviceId.parse(canonical) == dev  # str() round-trips
    assert DeviceId.parse(dev) is dev


@pytest.mark.parametrize("bad", ["cuda:-1", "cuda:x", "", "cpu:1", "cuda:", ":0", "1cuda", "cuda:0:1", "cu da", "cuda:1.5"])
def test_malformed_strings_name_the_string(bad: str) -> None:
    with pytest.raises(DeviceError) as ei:
        DeviceId.parse(bad)
    err = ei.value
    assert err.code == "DEVICE_ERROR"
    assert err.device == bad
    assert repr(bad) in str(err)
    assert isinstance(err, RuntimeError)


def test_none_is_rejected() -> None:
    with pytest.raises(DeviceError) as ei:
        DeviceId.parse(None)
    assert ei.value.code == "DEVICE_ERROR"
    assert "None" in str(ei.value)


def test_parse_accepts_objects_that_print_as_devices() -> None:
    class FrameworkDevice:
        def __str__(self) -> str:
            return "cuda:2"

    assert DeviceId.parse(FrameworkDevice()) == DeviceId("cuda", 2)


@pytest.mark.parametrize(("kind", "index"), [("CUDA", 0), ("", 0), ("cuda", -1), ("cuda", True), ("cuda", 1.0), (3, 0)])
def test_constructor_validates(kind: object, index: object) -> None:
    with pytest.raises(DeviceError) as ei:
        DeviceId(kind, index)  # type: ignore[arg-type]
    assert ei.value.code == "DEVICE_ERROR"
    assert ei.value.device == str(kind)


@pytest.mark.parametrize(
    ("text", "cpu", "cuda", "metal", "tpu", "accel"),
    [
        ("cpu", True, False, False, False, False),
        ("cuda:1", False, True, False, False, True),
        ("gpu:0", False, True, False, False, True),
        ("mps", False, False, True, False, True),
        ("tpu:0", False, False, False, True, True),
        ("npu:3", False, False, False, False, True),
    ],
)
def test_predicates(text: str, cpu: bool, cuda: bool, metal: bool, tpu: bool, accel: bool) -> None:
    dev = DeviceId.parse(text)
    assert (dev.is_cpu, dev.is_cuda, dev.is_metal, dev.is_mps, dev.is_tpu, dev.is_accelerator) == (cpu, cuda, metal, metal, tpu, accel)


def test_constructors_kinds_and_ordering() -> None:
    assert DeviceId.cpu() == DeviceId.parse("cpu") == DeviceId(DeviceKind.CPU)
    assert DeviceId.cuda() == DeviceId("cuda", 0)
    assert DeviceId.cuda(2) == DeviceId.parse("cuda:2")
    assert {DeviceKind.CPU, DeviceKind.CUDA, DeviceKind.MPS, DeviceKind.TPU} == {"cpu", "cuda", "mps", "tpu"}
    assert sorted([DeviceId.cuda(1), DeviceId.cuda(0)]) == [DeviceId.cuda(0), DeviceId.cuda(1)]
    assert len({DeviceId.parse("gpu:1"), DeviceId.parse("cuda:1")}) == 1  # hashable, aliases collapse


def test_memory_info() -> None:
    info = MemoryInfo(total=100, free=25, used=75)
    assert info.utilization == 0.75
    assert MemoryInfo.from_total_free(1000, 400) == MemoryInfo(1000, 400, 600)
    # Free may exceed total on some drivers' rounding: used never goes negative.
    assert MemoryInfo.from_total_free(10, 12).used == 0
    assert MemoryInfo(0, 0, 0).utilization == 0.0


@pytest.mark.parametrize(("field", "kwargs"), [("total", {"total": -1, "free": 0, "used": 0}), ("free", {"total": 1, "free": 0.5, "used": 0}), ("used", {"total": 1, "free": 0, "used": "x"})])
def test_memory_info_rejects_bad_values(field: str, kwargs: dict[str, object]) -> None:
    with pytest.raises(DeviceError) as ei:
        MemoryInfo(**kwargs)  # type: ignore[arg-type]
    assert ei.value.code == "DEVICE_ERROR"
    assert f"MemoryInfo.{field}" in str(ei.value)


def test_device_record() -> None:
    mem = MemoryInfo.from_total_free(8, 2)
    dev = Device(DeviceId.cuda(1), "torch", name="H100", available=False, memory=mem, properties={"cc": "9.0"})
    assert dev.kind == "cuda"
    assert str(dev) == "torch:cuda:1"
    assert not dev.available and dev.memory is mem and dev.properties == {"cc": "9.0"}
    assert dev == Device(DeviceId.cuda(1), "torch", name="H100", available=False, memory=mem)  # properties do not count


# -- host memory: one helper for every backend whose CPU device is the host -----------------------------
def test_host_memory_parses_meminfo_file(tmp_path: Path) -> None:
    path = tmp_path / "meminfo"
    path.write_text("MemTotal:        1000 kB\nMemFree:          100 kB\nMemAvailable:     400 kB\nHugePages_Total:       0\nDirectMap:\n")
    assert host_memory_info(path) == MemoryInfo(total=1024000, free=409600, used=614400)  # available, not free
    path.write_text("MemTotal: 2000 kB\nMemFree: 500 kB\n")  # old kernels: no MemAvailable
    info = host_memory_info(path)
    assert info is not None and info.free == 512000


def test_host_memory_without_proc_meminfo_uses_sysconf(tmp_path: Path) -> None:
    # A non-Linux host has no /proc/meminfo; the sysconf page counts give the same total.
    fallback, proc = host_memory_info(tmp_path / "absent"), host_memory_info()
    assert fallback is not None and proc is not None
    assert fallback.total == proc.total and 0 < fallback.free <= fallback.total
    (tmp_path / "no-total").write_text("MemFree: 5 kB\n")  # a file without MemTotal is not trusted either
    no_total = host_memory_info(tmp_path / "no-total")
    assert no_total is not None and no_total.total == fallback.total


def test_backends_report_the_same_host_memory_helper() -> None:
    # The one helper is what core's ArrayBackend (and torch, onnx) put on their cpu device.
    from inferox.core import ArrayBackend
    from inferox.core import host_memory_info as public

    class Host(ArrayBackend):
        name = "host-mem"
        xp = np

    assert public is host_memory_info
    cpu = Host().devices()[0]
    assert cpu.memory is not None and cpu.memory.total == host_memory_info().total  # type: ignore[union-attr]
