"""The root ``Dockerfile`` read as a list of instructions, and its build steps replayed outside a
container: in a scratch folder that stands for the image's file system, with the build context's
files copied in and every ``RUN`` step run by ``/bin/sh`` (dash, as in the Debian-based image).

What changes from a real build, and only this: absolute paths named by ``ARG`` / ``ENV`` values,
``COPY`` destinations and the ``CMD`` are re-rooted under the scratch folder; ``RUN --mount=…``
options (build-time mounts) are dropped, so pip uses this machine's cache; the step that creates
the image's user account is not run (it would add a user to this machine) but checked; ``python``
is this machine's CPython 3.11, as the base image's is.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
#: RUN steps that manage the image's accounts: checked, never run on this machine.
ACCOUNT_COMMANDS = ("useradd", "groupadd", "adduser", "addgroup")


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, ARG, ENV, RUN, ...
    args: str  # the rest, continuation lines joined
    line: int  # where it starts in the Dockerfile

    def where(self) -> str:
        return f"Dockerfile line {self.line} ({self.keyword})"


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, comments dropped and ``\\``-continued lines joined."""
    out: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):  # comment lines inside a continued instruction are dropped too
            continue
        if not pending:
            start = number
        pending.append(line[:-1].strip() if line.endswith("\\") else line)
        if not line.endswith("\\"):
            keyword, _, rest = " ".join(pending).partition(" ")
            out.append(Instruction(keyword.upper(), rest.strip(), start))
            pending = []
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return out


def expand(value: str, env: Mapping[str, str]) -> str:
    """``$NAME`` and ``${NAME}`` as Docker expands them in ARG, ENV, COPY, WORKDIR and USER."""
    return _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), value)


def assignments(args: str) -> list[tuple[str, str | None]]:
    """``A=1 B="two words"`` → [("A", "1"), ("B", "two words")]; a bare ``ARG NAME`` → ("NAME", None)."""
    out: list[tuple[str, str | None]] = []
    for word in shlex.split(args):
        name, eq, value = word.partition("=")
        out.append((name, value if eq else None))
    return out


@dataclass
class Replay:
    """The result of replaying the Dockerfile in ``root``."""

    root: Path
    base_image: str = ""
    env: dict[str, str] = field(default_factory=dict)  # the image's environment (ARG values are build-time only)
    user: str = ""
    accounts: list[str] = field(default_factory=list)  # the account steps, not run
    healthcheck: list[str] = field(default_factory=list)  # exec form
    healthcheck_options: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    exposed: list[str] = field(default_factory=list)
    stop_signal: str = "SIGTERM"  # Docker's default
    runs: list[Instruction] = field(default_factory=list)  # the RUN steps that ran

    def reroot(self, value: str) -> str:
        """An absolute path of the image, under the scratch folder; anything else unchanged."""
        if value.startswith("/") and ":" not in value and not Path(value).is_relative_to(self.root):
            return str(self.root / value.lstrip("/"))
        return value


def replay(root: Path, context: Path, *, dockerfile: Path = DOCKERFILE, timeout: float = 1800) -> Replay:
    """Run the Dockerfile's build steps with ``root`` standing for the image and ``context`` for the
    build context. Fails naming the instruction's line when a step fails."""
    image = Replay(root)
    bin_dir = root / "usr" / "local" / "bin"  # python:3.11-slim's interpreter lives there
    bin_dir.mkdir(parents=True)
    base_python = Path(getattr(sys, "_base_executable", sys.executable))
    for name in ("python", "python3", "python3.11"):
        (bin_dir / name).symlink_to(base_python)
    # The machine's pip settings (its index, its certificates) stay; nothing else of this process's environment.
    machine = {k: v for k, v in os.environ.items() if k.startswith("PIP_") or k in ("HOME", "LANG", "TMPDIR", "SSL_CERT_FILE")}
    machine.pop("PIP_CONSTRAINT", None)  # the Dockerfile names its constraints itself
    machine["PATH"] = f"{bin_dir}{os.pathsep}/usr/bin:/bin"
    build_args: dict[str, str] = {}
    for ins in instructions(dockerfile.read_text(encoding="utf-8")):
        scope = {**machine, **image.env, **build_args}
        if ins.keyword == "FROM":
            image.base_image = expand(ins.args, scope)
        elif ins.keyword in ("ARG", "ENV"):
            for name, value in assignments(ins.args):
                if value is None:  # ARG without a default: set only when given on the command line
                    continue
                value = image.reroot(expand(value, scope))
                (build_args if ins.keyword == "ARG" else image.env)[name] = value
                scope[name] = value
        elif ins.keyword == "COPY":
            *sources, dest = [expand(w, scope) for w in shlex.split(ins.args)]
            target = Path(image.reroot(dest))
            for src in sources:
                origin = context / src
                assert origin.exists(), f"{ins.where()}: {src} is not in the build context"
                if origin.is_dir():  # Docker copies a folder's contents
                    shutil.copytree(origin, target, dirs_exist_ok=True)
                else:
                    into = target / origin.name if dest.endswith("/") else target
                    into.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, into)
        elif ins.keyword == "RUN":
            command = ins.args
            while command.startswith("--"):  # --mount=…, --network=…: build-time options, not the command
                command = command.split(None, 1)[1]
            if command.split(None, 1)[0] in ACCOUNT_COMMANDS:
                image.accounts.append(command)
                continue
            proc = subprocess.run(["/bin/sh", "-c", command], cwd=root, env={**machine, **image.env, **build_args}, capture_output=True, text=True, timeout=timeout)
            assert proc.returncode == 0, f"{ins.where()} failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            image.runs.append(ins)
        elif ins.keyword == "USER":
            image.user = expand(ins.args, scope)
        elif ins.keyword == "HEALTHCHECK":
            options, _, command = ins.args.partition("CMD ")
            image.healthcheck = json.loads(command)
            image.healthcheck_options = dict(o.lstrip("-").split("=", 1) for o in options.split())
        elif ins.keyword == "ENTRYPOINT":
            image.entrypoint = json.loads(ins.args)
        elif ins.keyword == "CMD":
            image.cmd = [image.reroot(a) for a in json.loads(ins.args)]
        elif ins.keyword == "STOPSIGNAL":
            image.stop_signal = ins.args
        elif ins.keyword == "EXPOSE":
            image.exposed = ins.args.split()
        elif ins.keyword not in ("WORKDIR", "LABEL"):
            raise AssertionError(f"{ins.where()}: the replay does not know {ins.keyword}; teach tests/repo/dockerfile.py")
    return image
