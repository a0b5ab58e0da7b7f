"""A backend that runs models in 40 lines: every module of this distribution except its own new
architecture (``linear.py``, a schema and a definition) holds at most 40 lines of code together
(imports included; blank lines, comments and docstrings not) — and with those lines the backend runs
every architecture there is, since it registers no factory and runs the definitions."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import numpy as np
import pytest

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
    counts = {p.name: code_lines(p.read_text(encoding="utf-8")) for p in sorted(SRC.glob("*.py")) if p.name != "linear.py"}
    assert set(counts) == {"__init__.py", "backend.py", "plugin.py"}  # no model code: no mlp.py, no bert.py
    assert sum(counts.values()) <= LIMIT, f"{counts}: {sum(counts.values())} lines of code, more than {LIMIT}"


def test_those_lines_run_every_architecture() -> None:
    pytest.importorskip("inferox_numpy", reason="the inferox-numpy distribution is not installed in this environment")
    import inferox_numpy.plugin

    from inferox.core import AnyModel, ModelMetadata, PluginRegistry, random_weights

    assert not hasattr(inferox_numpy.plugin, "inferox_register_architectures")  # not one factory
    registry = PluginRegistry()
    registry.register_plugin(inferox_numpy.plugin, name="numpy")
    assert sorted(registry.architectures("numpy")) == registry.schema_names()  # mlp, bert and the other encoders, linear
    backend = registry.get_backend("numpy")
    for name in ("mlp", "bert", "mpnet"):
        schema = registry.schema(name)
        config, pre = dict(schema.example_config), dict(schema.example_preprocessing)
        rng = np.random.default_rng(0)
        weights = random_weights(schema, config, rng)
        inputs = schema.golden(config, pre, rng)
        model = registry.architecture_factory("numpy", name)(backend=backend, config=config, weights=weights, metadata=ModelMetadata(name), preprocessing=pre)
        got = AnyModel(model)(inputs)
        want = schema.load_reference()(config, weights, inputs, preprocessing=pre)
        assert set(got) == set(want)
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=5e-5, err_msg=f"{name}.{key}")
