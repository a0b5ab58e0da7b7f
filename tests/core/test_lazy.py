"""core's helpers for backend packages: lazy public names and the distribution's version."""

from __future__ import annotations

import importlib.metadata as md
import sys
from pathlib import Path

import pytest

from inferox.core import distribution_version, lazy_exports


def test_distribution_version_reads_metadata() -> None:
    assert distribution_version("inferox-core") == md.version("inferox-core")
    assert distribution_version("no-such-distribution-here") == "0+unknown"


def test_lazy_exports_import_on_first_access(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "lazypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from inferox.core import lazy_exports\n"
        "__version__ = '1'\n"
        "__getattr__, __dir__ = lazy_exports(__name__, {'heavy': 'lazypkg.heavy'}, eager=['__version__'])\n"
    )
    (pkg / "heavy.py").write_text("heavy = object()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import lazypkg  # type: ignore[import-not-found]

        assert "lazypkg.heavy" not in sys.modules
        assert dir(lazypkg) == ["__version__", "heavy"]
        value = lazypkg.heavy
        assert "lazypkg.heavy" in sys.modules and value is sys.modules["lazypkg.heavy"].heavy
        assert vars(lazypkg)["heavy"] is value  # cached: later reads skip __getattr__
        with pytest.raises(AttributeError, match="module 'lazypkg' has no attribute 'light'"):
            lazypkg.light  # noqa: B018
    finally:
        for name in ("lazypkg", "lazypkg.heavy"):
            sys.modules.pop(name, None)


def test_lazy_exports_helper_is_usable_without_eager_names() -> None:
    getattr_, dir_ = lazy_exports("json", {"dumps": "json"})
    assert dir_() == ["dumps"]
    import json

    assert getattr_("dumps") is json.dumps
