"""The integration tests reuse the mlpkg area's real Hub fixtures (olah on loopback behind a fault
proxy) instead of copying them: that conftest is loaded under its own module name, since every
conftest is called ``conftest``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_MLPKG_CONFTEST = Path(__file__).resolve().parents[1] / "mlpkg" / "conftest.py"
_spec = importlib.util.spec_from_file_location("mlpkg_fixtures", _MLPKG_CONFTEST)
assert _spec is not None and _spec.loader is not None
_fixtures = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _fixtures
_spec.loader.exec_module(_fixtures)

olah = _fixtures.olah
hub = _fixtures.hub
minilm_dir = _fixtures.minilm_dir
minilm_repo = _fixtures.minilm_repo
