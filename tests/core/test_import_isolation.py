"""Importing core and discovering plugins imports no framework (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from inferox.core import CONTRACT_VERSION, __version__
from inferox.core import __all__ as public


def run_fresh(code: str) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_core_and_discovery_import_neither_torch_nor_jax() -> None:
    result = run_fresh(
        """
        import json, sys
        import inferox.core
        import inferox.core.testing
        after_import = sorted(m for m in ("torch", "jax", "jaxlib", "tokenizers") if m in sys.modules)
        from inferox.core import get_registry
        registry = get_registry()
        infos = registry.list_backends()
        registry.architectures()
        after_discovery = sorted(m for m in ("torch", "jax", "jaxlib") if m in sys.modules)
        print(json.dumps({"import": after_import, "discovery": after_discovery,
                          "backends": [i.name for i in infos], "failures": [f.name for f in registry.failures]}))
        """
    )
    assert result["import"] == [], f"import inferox.core pulled in {result['import']}"
    assert result["discovery"] == [], f"get_registry().list_backends() pulled in {result['discovery']}"


def test_public_api() -> None:
    import inferox.core as core

    assert __version__ and CONTRACT_VERSION == "1.2"
    for name in public:
        assert hasattr(core, name), name
    assert sorted(public) == sorted(set(public))
