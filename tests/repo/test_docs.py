"""The repository's Markdown holds together: every link resolves inside the repository (file and
anchor), nothing points outside it, and each distribution's README stands alone on PyPI."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.support import REPO_ROOT

DISTRIBUTIONS = ("inferox-core", "inferox-torch", "inferox-jax", "inferox-onnx", "inferox-mlpkg", "inferox-engine")

# [text](target) and [text](target "title"), images too; reference definitions "[x]: target".
_INLINE = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFDEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")


def tracked(pattern: str) -> list[Path]:
    """The repository's own files (git's list; a tree without .git: every file outside the usual tool folders)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", pattern], cwd=REPO_ROOT, capture_output=True, check=True, timeout=60)
        return sorted(REPO_ROOT / p for p in out.stdout.decode().split("\0") if p and (REPO_ROOT / p).is_file())
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", ".nox", "node_modules", "__pycache__"}
        return sorted(p for p in REPO_ROOT.rglob(pattern) if not skip & set(p.relative_to(REPO_ROOT).parts))


def links(markdown: str) -> list[str]:
    text = _CODE_SPAN.sub("", _FENCE.sub("", markdown))
    return _INLINE.findall(text) + _REFDEF.findall(text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|__|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    out |= set(re.findall(r"<a\s+(?:name|id)=\"([^\"]+)\"", path.read_text(encoding="utf-8")))
    return out


MARKDOWN = tracked("*.md")


def test_markdown_files_are_found() -> None:
    names = {p.relative_to(REPO_ROOT).as_posix() for p in MARKDOWN}
    assert {"README.md", "docs/architecture.md", "tests/README.md", "inferox-core/README.md"} <= names


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_every_link_resolves_inside_the_repository(path: Path) -> None:
    broken = []
    for target in links(path.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:: not ours to check offline
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / unquote(file_part)).resolve() if file_part else path
        if not dest.is_relative_to(REPO_ROOT):
            broken.append(f"{target} (outside the repository)")
        elif not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.relative_to(REPO_ROOT)})")
    assert not broken, f"{path.relative_to(REPO_ROOT)}: {broken}"


def test_nothing_points_outside_the_repository() -> None:
    """Users' clones hold only the repository: no file may send readers to a folder beside it."""
    offenders = []
    for path in tracked("*"):
        if path.suffix in {".md", ".py", ".toml", ".txt", ".sh", ".cfg", ".ini", ".yml", ".yaml", ""} and path.stat().st_size < 2_000_000:
            text = path.read_text(encoding="utf-8", errors="replace")
            if re.search(r"\.\./shared/|/work/shared", text) and path != Path(__file__):
                offenders.append(path.relative_to(REPO_ROOT).as_posix())
    assert offenders == []


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_distribution_readme_stands_alone_on_pypi(dist: str) -> None:
    """PyPI renders the README without the repository around it: no relative links (they would
    break there), and what it is, how to install it and a short example that is real Python.
    Repository pages are named as text (`docs/engine.md`), see docs/architecture.md."""
    readme = (REPO_ROOT / dist / "README.md").read_text(encoding="utf-8")
    relative = [t for t in links(readme) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]
    assert relative == [], f"{dist}/README.md links relatively (broken on PyPI): {relative}"
    assert readme.startswith(f"# {dist}\n")
    assert f"pip install {dist}" in readme or f'pip install "{dist}[' in readme
    # Until a release exists, the README says so and how to install from the repository instead.
    assert "Not published on PyPI yet" in readme and f"pip install -c constraints.txt ./{dist}" in readme
    examples = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    assert examples, f"{dist}/README.md has no Python example"
    for example in examples:
        ast.parse(example)  # a SyntaxError names the line
        assert 3 <= len(example.strip().splitlines()) <= 20
    assert "docs/architecture.md" in readme and "Apache-2.0" in readme
