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
