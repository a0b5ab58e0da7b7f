"""A backend in 40 lines: the plugin module and the backend of this example, architecture code
excluded, hold at most 40 lines of code (imports included; blank lines, comments and docstrings not)."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "inferox_numpy"
LIMIT = 40


def code_lines(source: str) -> int:
    """Lines holding code: not blank, not only a comment, not part of a docstring."""
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                docstrings.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    lines: set[int] = set()
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in skip:
            lines.update(n for n in range(tok.start[0], tok.end[0] + 1) if n not in docstrings)
    return len(lines)


def test_counting_rules() -> None:
    source = '"""Module docstring\nover two lines."""\n\nimport os  # a comment\n\n# only a comment\ndef f(\n    x,\n):\n    """Doc."""\n    return x\n'
    assert code_lines(source) == 5  # import, the three lines of the def, the return


def test_plugin_and_backend_fit_in_40_lines() -> None:
    counts = {name: code_lines((SRC / name).read_text(encoding="utf-8")) for name in ("plugin.py", "backend.py")}
    assert sum(counts.values()) <= LIMIT, f"{counts}: {sum(counts.values())} lines of code, more than {LIMIT}"
