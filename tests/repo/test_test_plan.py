"""tests/TEST_PLAN.md maps every original test-plan item, is what the area maps generate, and every
node id it names is a test the repository defines (read from the source: no nested pytest run)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

# tools/ is a folder of scripts, not a package: load the generator from its file.
_spec = importlib.util.spec_from_file_location("test_plan_tool", REPO_ROOT / "tools" / "test_plan.py")
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


def test_plan_is_generated_from_the_area_maps() -> None:
    """TEST_PLAN.md holds what the area maps say (run `python tools/test_plan.py build` after editing one)."""
    assert _plan() == {k: v for k, v in tp.area_maps().items() if k in _plan()}
    assert {k for k in _plan()} == {i.key for i in tp.original_items()}


def test_targets_are_well_formed() -> None:
    nox = (REPO_ROOT / "noxfile.py").read_text()
    for key, target in _plan().items():
        if target.startswith("N/A"):
            assert target.startswith("N/A: ") and len(target) > 10, f"{key}: N/A needs a reason"
        elif target.startswith("nox -s "):
            session = target.split()[2]
            assert f"def {session}(" in nox or f'name="{session}"' in nox, f"{key}: no nox session {session!r}"
        elif target.startswith("pending"):
            assert target.startswith("pending (issue "), f"{key}: pending must name the issue"
        else:
            for node in tp.node_ids(target):
                assert node.startswith("tests/") and "::" in node, f"{key}: {node!r} is not a pytest node id"


def test_every_node_id_exists() -> None:
    nodes = sorted({n for t in _plan().values() for n in tp.node_ids(t)})
    assert len(nodes) > 300
    absent = tp.absent_node_ids(nodes)
    assert not absent, f"{len(absent)} node ids name no test (first: {absent[:5]})"


@pytest.mark.parametrize(
    ("source", "node", "found"),
    [
        ("def test_a():\n    pass\n", "t.py::test_a", True),
        ("def helper():\n    pass\n", "t.py::helper", False),
        ("class TestC:\n    def test_m(self):\n        pass\n", "t.py::TestC::test_m", True),
        ("class Base:\n    def test_inherited(self):\n        pass\nclass TestD(Base):\n    pass\n", "t.py::TestD::test_inherited", True),
        ("from inferox.core.testing import BackendConformance\nclass TestE(BackendConformance):\n    pass\n", "t.py::TestE::test_tensor_round_trip_every_dtype", True),
        ("class TestF:\n    pass\n", "t.py::TestF::test_missing", False),
    ],
)
def test_the_static_reading_finds_tests_and_only_tests(tmp_path: Path, source: str, node: str, found: bool) -> None:
    """The scanner itself: inherited methods (across packages, through re-exports) count; helpers do not."""
    (tmp_path / "t.py").write_text(source)
    assert (tp.absent_node_ids([node], root=tmp_path) == []) is found
