"""Build and check ``tests/TEST_PLAN.md``: the map from the original Rust test plan to our tests.

Each area keeps its own ``tests/<area>/PLAN_MAP.md`` with lines of the form::

    - [Phase 1 / Tensor Tests] Test TensorBuilder with empty tensor → tests/core/test_tensor.py::test_empty

A target is a pytest node id (several may be joined with `` ; ``), ``nox -s SESSION`` for a
criterion a whole session enforces (coverage bars), ``N/A: reason``, or ``pending (issue N): what
remains`` for work an open issue still owes. ``python tools/test_plan.py
build`` merges the area maps, in the original plan's order, into ``tests/TEST_PLAN.md``;
``tests/repo/test_test_plan.py`` checks that every original item is mapped and that every node id
names a test that exists, by reading the test files' source (:func:`defined_node_ids`), not by
running pytest.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORIGINAL = ROOT / "docs" / "original-test-plan.md"  # the original plan, kept as written
PLAN = ROOT / "tests" / "TEST_PLAN.md"
ARROW = " → "

_ITEM = re.compile(r"^- \[[ x]\] (?P<text>.+?)\s*$")
_MAP_LINE = re.compile(r"^- \[(?P<phase>[^/\]]+?)(?: / (?P<section>[^\]]*))?\] (?P<text>.+)" + ARROW + r"(?P<target>.+?)\s*$")


@dataclass(frozen=True)
class Item:
    phase: str
    section: str
    text: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.phase, _norm(self.text))


def _norm(text: str) -> str:
    return " ".join(text.replace("`", "").split()).lower()


def original_items(path: Path = ORIGINAL) -> list[Item]:
    """Every checklist item of the original plan, with its phase and section."""
    items: list[Item] = []
    phase = section = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            m = re.match(r"## (Phase \d+)", line)
            phase = m.group(1) if m else line[3:].strip()
            section = ""
        elif line.startswith("### "):
            section = re.sub(r"\s*\(`.*`\)\s*$", "", line[4:]).strip()
        elif phase and not phase.startswith("Progress") and (m := _ITEM.match(line)):
            items.append(Item(phase, section, m["text"]))
    return items


def parse_map(text: str) -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    for line in text.splitlines():
        m = _MAP_LINE.match(line.strip())
        if m:
            out[(m["phase"].strip(), _norm(m["text"]))] = m["target"].strip()
    return out


def area_maps() -> dict[tuple[str, str], str]:
    merged: dict[tuple[str, str], str] = {}
    for path in sorted((ROOT / "tests").glob("**/PLAN_MAP.md")):
        for key, target in parse_map(path.read_text(encoding="utf-8")).items():
            # A node id beats N/A or pending when two areas map the same item.
            if key not in merged or (_is_pending_or_na(merged[key]) and not _is_pending_or_na(target)):
                merged[key] = target
    return merged


def _is_pending_or_na(target: str) -> bool:
    return target.startswith(("N/A", "pending", "nox -s"))


def node_ids(target: str) -> list[str]:
    """The pytest node ids in a target (empty for N/A and pending)."""
    if _is_pending_or_na(target):
        return []
    # A node id may carry a short comment in parentheses after it: "tests/x.py::test_y (why)".
    return [t.strip().split(" (", 1)[0] for t in target.split(";") if t.strip()]


# -- node ids, read from the source ----------------------------------------------------------------------
# A static reading, so that checking the map costs milliseconds and imports nothing (a nested pytest
# run would import torch and jax). It finds test functions, test classes and their test methods,
# inherited ones included: a base class is followed through `from X import Name` (re-exports too)
# into this repository's sources (tests/, inferox-*/src/). Parametrize ids ("[u8]") are not checked.
_SOURCES = [ROOT, *sorted(ROOT.glob("inferox-*/src")), *sorted(ROOT.glob("tests/plugins/*/src"))]


def _module_file(module: str) -> Path | None:
    rel = Path(*module.split("."))
    for base in _SOURCES:
        for candidate in (base / rel.with_suffix(".py"), base / rel / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _resolve_class(path: Path, name: str, depth: int = 0) -> tuple[Path, ast.ClassDef] | None:
    """Where class ``name``, as seen from module ``path``, is defined."""
    if depth > 10:
        return None
    tree = _parse(path)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return path, node
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name for a in node.names):
            original = next(a.name for a in node.names if (a.asname or a.name) == name)
            if node.level:  # relative: from the module's own package
                package = path.parent
                for _ in range(node.level - 1):
                    package = package.parent
                target = package / Path(*(node.module or "").split(".")) if node.module else package
                found = next((c for c in (target.with_suffix(".py"), target / "__init__.py") if c.is_file()), None)
            else:
                found = _module_file(node.module or "")
            return _resolve_class(found, original, depth + 1) if found else None
    return None


def _test_methods(path: Path, cls: ast.ClassDef, depth: int = 0) -> set[str]:
    names = {n.name for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name.startswith("test")}
    for base in cls.bases:
        base_name = base.id if isinstance(base, ast.Name) else base.attr if isinstance(base, ast.Attribute) else None
        found = _resolve_class(path, base_name) if base_name and depth < 10 else None
        if found:
            names |= _test_methods(*found, depth=depth + 1)
    return names


def defined_node_ids(test_file: Path, root: Path = ROOT) -> set[str]:
    """``file::test_x``, ``file::TestC`` and ``file::TestC::test_y`` for every test the file defines."""
    rel = test_file.relative_to(root).as_posix()
    out: set[str] = set()
    for node in _parse(test_file).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            out.add(f"{rel}::{node.name}")
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            out.add(f"{rel}::{node.name}")
            out |= {f"{rel}::{node.name}::{m}" for m in _test_methods(test_file, node)}
    return out


def absent_node_ids(nodes: list[str], root: Path = ROOT) -> list[str]:
    """The node ids (parametrize ids ignored) that name no test in the test files under ``root``."""
    absent = []
    cache: dict[str, set[str]] = {}
    for node in nodes:
        file = node.split("::")[0]
        if file not in cache:
            path = root / file
            cache[file] = defined_node_ids(path, root) if path.is_file() else set()
        if node.split("[")[0] not in cache[file]:
            absent.append(node)
    return absent


def build() -> int:
    items = original_items()
    maps = area_maps()
    lines = [
        "# Test plan map",
        "",
        "Every item of the original Rust test plan ([docs/original-test-plan.md](../docs/original-test-plan.md)) mapped to the pytest",
        "node id(s) that cover it, to `N/A: reason`, or to `pending (issue N)` where an open issue owes it.",
        "Candle maps to inferox-jax, LibTorch/Tch to inferox-torch, hf-xet-rs to huggingface_hub + inferox-mlpkg,",
        "cdylib `create_model` to backend-registered architectures. Generated by `python tools/test_plan.py build`",
        "from each area's `tests/<area>/PLAN_MAP.md`; `tests/repo/test_test_plan.py` checks it.",
        "",
    ]
    missing = 0
    last: tuple[str, str] | None = None
    for item in items:
        if (item.phase, item.section) != last:
            if lines[-1] != "":
                lines.append("")
            if last is None or item.phase != last[0]:
                lines += [f"## {item.phase}", ""]
            lines += [f"### {item.section}" if item.section else "### (general)", ""]
            last = (item.phase, item.section)
        target = maps.get(item.key)
        if target is None:
            missing += 1
            target = "UNMAPPED"
        lines.append(f"- [{item.phase} / {item.section}] {item.text}{ARROW}{target}")
    PLAN.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {PLAN.relative_to(ROOT)}: {len(items)} items, {missing} unmapped")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(build() if sys.argv[1:] == ["build"] else print(__doc__) or 2)
