"""docs/plugin-guide.md cannot rot: every ```python block of the guide runs, in order, in one
namespace (install and shell lines are fenced otherwise and only shown). The guide's worked example
is the real inferox-numpy distribution, so this runs where it is installed (the ``all`` session)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from inferox.core.plugins import reset_registry

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "plugin-guide.md"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(line number, code)`` of every ```python block."""
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in BLOCK.finditer(text)]


@pytest.fixture
def fresh_registry() -> Iterator[None]:
    reset_registry()
    yield
    reset_registry()


def test_the_guide_has_python_blocks_and_fences_shell_lines_apart() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    blocks = python_blocks(text)
    assert len(blocks) >= 8
    assert not any(line.lstrip().startswith("$ ") for _, code in blocks for line in code.splitlines()), "shell lines belong in a plain ``` block"
    assert "pip install 'inferox-core[testing]'" in text and "-c constraints.txt" in text  # both install paths are shown
    assert "inferox verify" in text


def test_every_python_block_runs(fresh_registry: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("inferox_numpy", reason="the guide's worked example, inferox-numpy, is not installed")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "plugin_guide"}
    for line, code in python_blocks(GUIDE.read_text(encoding="utf-8")):
        try:
            exec(compile(code, f"{GUIDE.name}:{line}", "exec"), namespace)
        except Exception as exc:  # noqa: BLE001 - any failure of a block is reported with its line
            pytest.fail(f"the python block at docs/plugin-guide.md line {line} fails: {type(exc).__name__}: {exc}")
