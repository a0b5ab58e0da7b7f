"""The command line against text it does not control (issue 14, items 15, 8 and 17's CLI parts).

Error messages, package names, file names and paths are printed literally — never read as Rich
markup (``[ray]`` swallowed, ``[/bold]`` crashing with ``MarkupError``); ``inferox run`` and
``inferox serve`` take ``--verify``; ``inferox run`` says which backend served.
Real CLI (click's runner) on the real MLP package with real torch.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

from click.testing import CliRunner

from inferox.engine.cli import cli

MARKUP = "x[/bold][red]y[ray]"


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def fresh(mlp_package: Path, tmp_path: Path) -> Path:
    pkg = tmp_path / f"pkg-{uuid.uuid4().hex[:6]}"
    shutil.copytree(mlp_package, pkg)
    return pkg


def test_a_missing_package_whose_name_is_markup_exits_4_and_prints_it_literally(tmp_path: Path) -> None:
    code, out = invoke("run", str(tmp_path / "models" / "x[/bold]"), "-t", "hi")
    assert code == 4, out
    assert "x[/bold]" in out and "MarkupError" not in out


def test_error_messages_keep_their_brackets(tmp_path: Path) -> None:
    (tmp_path / "model.toml").write_text(f'name = "m"\nsource = "./src"\nbackends = ["{MARKUP}"]\n')
    code, out = invoke("pack", str(tmp_path / "model.toml"), "-o", str(tmp_path / "out"))
    assert code == 3, out
    assert MARKUP in out


def test_package_names_and_file_names_are_printed_literally(mlp_package: Path, tmp_path: Path) -> None:
    pkg = fresh(mlp_package, tmp_path)
    meta = json.loads((pkg / "metadata.json").read_text())
    meta["name"] = MARKUP
    (pkg / "metadata.json").write_text(json.dumps(meta))
    code, out = invoke("inspect", str(pkg))
    assert code == 0, out
    assert MARKUP in out


def test_run_says_which_backend_served(mlp_package: Path) -> None:
    code, out = invoke("run", str(mlp_package), "-i", json.dumps({"input": [[1, 2, 3, 4]]}), "--backend", "torch")
    assert code == 0, out
    assert "served by backend torch on cpu" in out


def test_run_verify_checks_every_file(mlp_package: Path, tmp_path: Path) -> None:
    pkg = fresh(mlp_package, tmp_path)
    (pkg / "extra.bin").write_bytes(b"added after the build")
    args = ["run", str(pkg), "-i", json.dumps({"input": [[1, 2, 3, 4]]}), "--backend", "torch"]
    code, out = invoke(*args)
    assert code == 0, out  # the default load checks listed files' sizes only (documented)
    code, out = invoke(*args, "--verify")
    assert code == 5 and "extra.bin" in out and "INTEGRITY_ERROR" in out, out


def test_serve_takes_verify(mlp_package: Path) -> None:
    code, out = invoke("serve", str(mlp_package), "--verify", "--print-config")
    assert code == 0, out
    line = next(ln for ln in out.splitlines() if "server.verify" in ln)
    assert "True" in line and "flag" in line
    code, out = invoke("serve", "--help")
    assert "--verify" in out and "sha256" in out
    code, out = invoke("run", "--help")
    assert "--verify" in out and "sizes" in out
