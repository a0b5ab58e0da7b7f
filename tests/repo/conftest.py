"""What the repository tests share: every distribution built once a session (sdist and wheel)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.repo.dists import DISTRIBUTION_FOLDERS, Built, build, found


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Built]:
    """Every distribution's sdist and wheel (the ``inferox-*`` folders and the third-party example),
    built once a session — or, with ``INFEROX_DIST_DIR`` set (``nox -s dist`` writes ``dist/``), the
    ones already built there, so a release's own files are what the tests check."""
    given = os.environ.get("INFEROX_DIST_DIR")
    dest = tmp_path_factory.mktemp("dist")
    out = {folder: found(folder, Path(given)) if given else build(folder, dest) for folder in DISTRIBUTION_FOLDERS}
    out["tests/plugins/inferox-numpy"] = build("tests/plugins/inferox-numpy", dest)  # not published: never in dist/
    return out


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """After a run of the docs test: how many blocks ran, parsed or were skipped, and every skip with
    its reason, so that none is skipped silently."""
    ran = [r for reports in terminalreporter.stats.values() for r in reports if getattr(r, "nodeid", "").startswith("tests/repo/test_docs_run.py")]
    if not ran:
        return
    from tests.repo.docblocks import PARSED_LANGUAGES, RUN_LANGUAGES
    from tests.repo.test_docs_run import ALL_BLOCKS

    skipped = [b for b in ALL_BLOCKS if b.skip_reason is not None]
    run = sum(1 for b in ALL_BLOCKS if b.skip_reason is None and b.language in RUN_LANGUAGES)
    parsed = sum(1 for b in ALL_BLOCKS if b.skip_reason is None and b.language in PARSED_LANGUAGES)
    shown = len(ALL_BLOCKS) - run - parsed - len(skipped)
    terminalreporter.section("docs blocks")
    terminalreporter.write_line(f"{len(ALL_BLOCKS)} fenced blocks: {run} run, {parsed} parsed, {shown} shown as text, {len(skipped)} skipped:")
    for b in skipped:
        terminalreporter.write_line(f"  {b.where}: {b.skip_reason}")
