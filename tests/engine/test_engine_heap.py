"""``limit_heap_fragmentation``: glibc's mmap threshold fixed, so that a freed multi-MiB tensor
buffer cannot raise it and send later buffers of new shapes into (and fragment) the heap.

Each case runs in a fresh interpreter: the setting is process-wide and glibc reads its own
``MALLOC_MMAP_THRESHOLD_`` only at start-up. The probe frees an 8 MiB block (which, with glibc's
adaptive threshold, raises the threshold to 8 MiB) and then asks for 1 MiB: ``mallinfo2().hblks``
(blocks served by ``mmap``) tells where that 1 MiB came from.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from inferox.core.constants import ENV_MMAP_THRESHOLD
from inferox.core.errors import ConfigError
from inferox.engine import limit_heap_fragmentation

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc" or tuple(int(p) for p in platform.libc_ver()[1].split(".")[:2]) < (2, 33),
    reason="glibc >= 2.33 (mallopt, mallinfo2) only",
)

PROBE = r"""
import ctypes, json, sys
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
applied = None
if sys.argv[1] == "limit":
    from inferox.engine import limit_heap_fragmentation
    applied = limit_heap_fragmentation()
libc.free(libc.malloc(8 << 20))  # freed mmapped block: glibc's adaptive threshold rises to 8 MiB
before = libc.mallinfo2().hblks
block = libc.malloc(1 << 20)
print(json.dumps({"applied": applied, "mmapped": libc.mallinfo2().hblks - before}))
libc.free(block)
"""


def probe(mode: str, **env: str) -> dict[str, int | None]:
    clean = {k: v for k, v in os.environ.items() if k not in (ENV_MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_")}
    proc = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120, env={**clean, **env})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_glibc_alone_moves_a_1_mib_buffer_into_the_heap_after_a_bigger_one_was_freed() -> None:
    # The behaviour the fix exists for; if glibc ever stops doing this, this test says so.
    assert probe("plain") == {"applied": None, "mmapped": 0}


def test_a_fixed_threshold_keeps_the_buffer_on_mmap() -> None:
    assert probe("limit") == {"applied": 256 * 1024, "mmapped": 1}


def test_the_threshold_comes_from_the_environment() -> None:
    # 4 MiB: a 1 MiB buffer is below it, so it comes from the heap.
    assert probe("limit", **{ENV_MMAP_THRESHOLD: str(4 << 20)}) == {"applied": 4 << 20, "mmapped": 0}


def test_zero_turns_it_off() -> None:
    assert probe("limit", **{ENV_MMAP_THRESHOLD: "0"}) == {"applied": None, "mmapped": 0}


def test_glibcs_own_setting_is_left_alone() -> None:
    # Applied by glibc at start-up (128 KiB, so the 1 MiB buffer is mmapped); inferox changes nothing.
    assert probe("limit", MALLOC_MMAP_THRESHOLD_="131072") == {"applied": None, "mmapped": 1}


@pytest.mark.parametrize(("raw", "named"), [("lots", "'lots'"), ("-1", "-1"), (str(64 << 20), str(64 << 20))])
def test_a_bad_environment_value_is_a_config_error(monkeypatch: pytest.MonkeyPatch, raw: str, named: str) -> None:
    monkeypatch.setenv(ENV_MMAP_THRESHOLD, raw)
    with pytest.raises(ConfigError) as info:
        limit_heap_fragmentation()
    assert info.value.code == "INVALID_CONFIG" and info.value.field == ENV_MMAP_THRESHOLD
    assert ENV_MMAP_THRESHOLD in str(info.value) and named in str(info.value)


def test_a_bad_argument_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        limit_heap_fragmentation(-5)
    assert info.value.field == "threshold" and "-5" in str(info.value)
