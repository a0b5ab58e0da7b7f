"""docs/plugin-guide.md keeps its shape: enough python blocks, shell lines fenced apart from them,
both install paths shown. Running its blocks is tests/repo/test_docs_run.py's job (every page's)."""

from __future__ import annotations

import re
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "plugin-guide.md"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(line number, code)`` of every ```python block."""
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in BLOCK.finditer(text)]


def test_the_guide_has_python_blocks_and_fences_shell_lines_apart() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    blocks = python_blocks(text)
    assert len(blocks) >= 8
    assert not any(line.lstrip().startswith("$ ") for _, code in blocks for line in code.splitlines()), "shell lines belong in a ```console block"
    assert "pip install 'inferox-core[testing]'" in text and "-c constraints.txt" in text  # both install paths are shown
    assert "inferox verify" in text
