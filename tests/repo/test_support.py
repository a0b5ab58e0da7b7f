"""The shared test library stays cheap to register: every session loads it, the ``core`` session
without torch, jax, olah or huggingface_hub installed."""

from __future__ import annotations

import subprocess
import sys

from tests.support import REPO_ROOT


def test_registering_the_support_plugin_imports_nothing_heavy() -> None:
    code = (
        "import sys, tests.support.fixtures, tests.support.net, tests.support.disks, tests.support.model_files;"
        "print(sorted(m for m in ('torch', 'jax', 'olah', 'huggingface_hub', 'safetensors', 'inferox.mlpkg', 'inferox.engine', 'httpx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout
