"""tests/TEST_PLAN.md maps every original test-plan item, and every node id it names exists."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("test_plan_tool", ROOT / "tools" / "test_plan.py")
assert _spec and _spec.loader
tp = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = tp  # dataclasses look their module up in sys.modules
_spec.loader.exec_module(tp)

def _plan() -> dict[tuple[str, str], str]:
    return tp.parse_map(tp.PLAN.read_text(encoding="utf-8"))


def test_every_original_item_is_mapped() -> None:
    plan = _plan()
    items = tp.original_items()
    assert len(items) > 400
    unmapped = [f"{i.phase}: {i.text}" for i in items if i.key not in plan or plan[i.key] == "UNMAPPED"]
    assert not unmapped, f"{len(unmapped)} items unmapped, first: {unmapped[:5]}"


def test_targets_are_well_formed() -> None:
    for key, target in _plan().items():
        if target.startswith("N/A"):
            assert target.startswith("N/A: ") and len(target) > 10, f"{key}: N/A needs a reason"
        elif target.startswith("nox -s "):
            session = target.split()[2]
            assert f"def {session}(" in (ROOT / "noxfile.py").read_text() or f'name="{session}"' in (ROOT / "noxfile.py").read_text(), f"{key}: no nox session {session!r}"
        elif target.startswith("pending"):
            assert target.startswith("pending (issue "), f"{key}: pending must name the issue"
        else:
            for node in tp.node_ids(target):
                assert node.startswith("tests/") and "::" in node, f"{key}: {node!r} is not a pytest node id"


def test_every_node_id_exists() -> None:
    """Collect the referenced files with pytest and check each node id is among the collected items."""
    nodes = sorted({n for t in _plan().values() for n in tp.node_ids(t)})
    files = sorted({n.split("::")[0] for n in nodes})
    missing_files = [f for f in files if not (ROOT / f).exists()]
    assert not missing_files, f"files named in TEST_PLAN.md do not exist: {missing_files}"
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "--no-cov", *files],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    collected = {line.strip() for line in out.stdout.splitlines() if "::" in line}
    # A node id may name a parametrized test without its [params], or a class.
    prefixes = {c.split("[")[0] for c in collected} | {"::".join(c.split("::")[:2]) for c in collected}
    absent = [n for n in nodes if n not in collected and n not in prefixes]
    assert not absent, f"{len(absent)} node ids not collected (first: {absent[:5]})\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
