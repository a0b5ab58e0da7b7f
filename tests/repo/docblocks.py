"""The fenced code blocks of the repository's Markdown, with where they are and what the page says
about running them.

A block is marked by HTML comments on the lines right above its opening fence (blank lines and other
comments may sit between):

- ``<!-- docs-test: skip REASON -->``: not run (a Ray cluster, a container build…); the reason is
  required, and tests/repo/test_docs_run.py lists every skipped block with it.

Every fence names its language: ``python`` (run), ``bash`` / ``console`` / ``shell`` / ``sh``
(commands, run; in ``console`` blocks only ``$ `` lines are commands, the rest is their output),
``toml`` and ``json`` (parsed), ``text`` for what is neither code nor a command (a tree, a
diagram, a signature, output), and ``pycon`` for an interactive transcript, which is never run and
so needs a ``skip`` with its reason.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import REPO_ROOT

RUN_LANGUAGES = {"python", "bash", "console", "shell", "sh"}
PARSED_LANGUAGES = {"toml", "json"}
SHOWN_LANGUAGES = {"text"}
#: Interactive transcripts (``>>>`` and their output): never run, so they must say why (``skip``).
TRANSCRIPT_LANGUAGES = {"pycon"}
LANGUAGES = RUN_LANGUAGES | PARSED_LANGUAGES | SHOWN_LANGUAGES | TRANSCRIPT_LANGUAGES

_OPEN = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)[^`]*$")
_DIRECTIVE = re.compile(r"<!--\s*docs-test:\s*(?P<body>.*?)\s*-->")
_COMMENT = re.compile(r"^\s*<!--.*-->\s*$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    directives: tuple[str, ...] = field(default=())

    @property
    def where(self) -> str:
        name = self.path.relative_to(REPO_ROOT).as_posix() if self.path.is_relative_to(REPO_ROOT) else str(self.path)
        return f"{name} line {self.line} ({self.language or 'no language'} block)"

    @property
    def skip_reason(self) -> str | None:
        """The reason of a ``skip`` directive ("" when the directive gives none), else None."""
        for d in self.directives:
            if d == "skip" or d.startswith("skip "):
                return d[len("skip") :].strip()
        return None


def blocks(path: Path) -> list[Block]:
    """Every fenced block of ``path``, in order, its indentation (a block inside a list item) removed."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = _OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = len(m["indent"]), m["fence"], m["info"]
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not re.match(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[i]):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        i += 1  # the closing fence
        out.append(Block(path, start + 1, info.lower(), "\n".join(body) + "\n", _directives_above(lines, start)))
    return out


def _directives_above(lines: list[str], start: int) -> tuple[str, ...]:
    found: list[str] = []
    j = start - 1
    while j >= 0 and (not lines[j].strip() or _COMMENT.match(lines[j])):
        m = _DIRECTIVE.search(lines[j])
        if m:
            found.append(m["body"])
        j -= 1
    return tuple(reversed(found))


# -- shell blocks ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Command:
    line: int  # the Markdown line it starts on
    text: str  # as written (continuations joined), comment kept
    words: tuple[str, ...]  # shell words, comment dropped


def commands(block: Block) -> list[Command]:
    """The commands of a shell block: ``\\``-continued lines joined; in a ``console`` block only
    ``$ `` lines (the rest is output); comment-only lines dropped."""
    out: list[Command] = []
    pending: list[str] = []
    first = 0
    for offset, raw in enumerate(block.code.splitlines(), 1):
        line = raw.rstrip()
        if block.language == "console" and not pending:
            if not line.startswith("$ "):
                continue
            line = line[2:]
        if not pending:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            first = block.line + offset
        pending.append(line[:-1] if line.endswith("\\") else line)
        if not line.endswith("\\"):
            text = " ".join(p.strip() for p in pending)
            out.append(Command(first, text, tuple(shlex.split(text, comments=True))))
            pending = []
    return out


def looks_like_a_command(text: str) -> bool:
    """Whether a ``text`` block holds something that should run (a prompt, an install, a CLI call)."""
    return any(re.match(r"^\s*(\$ |>>> |pip install |inferox |python -m |curl )", line) for line in text.splitlines())
