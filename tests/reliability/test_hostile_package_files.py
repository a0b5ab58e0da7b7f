"""Hostile package *files* (issue 14, items 2, 8 and 10): what a package folder holds besides its
JSON — FIFOs, sockets, symlink loops, files the manifest does not list, golden files whose headers
lie, and ``golden`` settings of the wrong type.

Every entry point (``load_package``, ``verify_package``, ``Engine.load``, building from a folder)
must end in a typed :class:`~inferox.core.errors.InferoxError` naming the file — never a hang,
never another exception — and ``verify`` must not pass a package it did not fully check.
Blocking calls run in a daemon thread with a deadline, so a regression fails instead of hanging.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import struct
import tempfile
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inferox.core.errors import (
    InferoxError,
    InvalidInputError,
    PackageFormatError,
    PackageIntegrityError,
    PackageNotFoundError,
)
from inferox.engine import Engine, EngineConfig
from inferox.mlpkg import build_package, load_package, verify_package

from .reliability_kit import fuzz_settings

#: Seconds any single call may take before the test calls it a hang (a load takes well under one).
HANG_S = 60.0


def within(fn: Callable[[], Any], *, seconds: float = HANG_S) -> Any:
    """Run ``fn`` in a daemon thread; return its result or raise what it raised; fail if it hangs."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test thread
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        pytest.fail(f"{fn} still blocked after {seconds} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def fresh(base: Path, tmp_path: Path) -> Path:
    pkg = tmp_path / f"pkg-{uuid.uuid4().hex[:8]}"
    shutil.copytree(base, pkg)
    return pkg


def meta(pkg: Path) -> dict[str, Any]:
    return json.loads((pkg / "metadata.json").read_text())


def write_meta(pkg: Path, data: dict[str, Any]) -> None:
    (pkg / "metadata.json").write_text(json.dumps(data))


def unlist(pkg: Path, *rels: str) -> None:
    """Drop ``rels`` (a folder name drops everything under it) from ``metadata.json``'s files."""
    data = meta(pkg)
    data["files"] = [f for f in data["files"] if not any(f["path"] == r or f["path"].startswith(r.rstrip("/") + "/") for r in rels)]
    write_meta(pkg, data)


def resign(pkg: Path) -> None:
    data = meta(pkg)
    for entry in data["files"]:
        raw = (pkg / entry["path"]).read_bytes()
        entry["size"], entry["sha256"] = len(raw), hashlib.sha256(raw).hexdigest()
    write_meta(pkg, data)


def make_special(path: Path, kind: str) -> Any:
    """Replace ``path`` by a FIFO or a listening unix socket; return what must be closed after."""
    if path.exists() or path.is_symlink():
        path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # A unix socket's address is at most 107 bytes, which a deep temporary folder (a pytest-xdist
    # worker's) exceeds: bind it in a short folder, then move the socket file into the package.
    with tempfile.TemporaryDirectory(dir="/tmp") as short:
        sock.bind(os.path.join(short, "s"))
        os.replace(os.path.join(short, "s"), path)
    return sock


# -- item 2: FIFOs and other non-regular files ----------------------------------------------------------
ENTRY_POINTS: dict[str, Callable[[Path], Any]] = {
    "load_package": lambda p: load_package(p),
    "load_package(verify)": lambda p: load_package(p, verify=True),
    "Engine.load": lambda p: Engine(EngineConfig(batching=False)).load(p, backend="torch"),
}


@pytest.mark.parametrize("kind", ["fifo", "socket"])
@pytest.mark.parametrize("member", ["config.json", "model_info.json", "metadata.json", "model.safetensors", "golden/outputs.safetensors", "notes.txt"])
@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_non_regular_files_are_refused_by_name_without_blocking(mlp_package: Path, tmp_path: Path, kind: str, member: str, entry: str) -> None:
    pkg = fresh(mlp_package, tmp_path)
    if member != "metadata.json":
        unlist(pkg, member)  # the reproducer: the file's own entry removed, so no size check catches it
    keep = make_special(pkg / member, kind)
    try:
        with pytest.raises(PackageFormatError) as ei:
            within(lambda: ENTRY_POINTS[entry](pkg))
    finally:
        if keep is not None:
            keep.close()
    assert ei.value.code == "PACKAGE_FORMAT_ERROR" and ei.value.path == member
    assert ("FIFO" if kind == "fifo" else "socket") in str(ei.value)


def test_verify_package_reports_a_fifo_instead_of_hanging(mlp_package: Path, tmp_path: Path) -> None:
    pkg = fresh(mlp_package, tmp_path)
    unlist(pkg, "config.json")
    make_special(pkg / "config.json", "fifo")
    report = within(lambda: verify_package(pkg))
    assert not report.ok
    assert isinstance(report.errors[0], PackageFormatError) and report.errors[0].path == "config.json"


def test_a_fifo_in_a_build_source_is_refused(mlp_package: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    shutil.copyfile(mlp_package / "model.safetensors", src / "model.safetensors")
    os.mkfifo(src / "config.json")
    with pytest.raises(PackageFormatError) as ei:
        within(lambda: build_package(src, output_dir=tmp_path / "out", name="m"))
    assert ei.value.code == "PACKAGE_FORMAT_ERROR" and ei.value.path == "config.json"
    assert not (tmp_path / "out" / "m").exists()


def test_a_fifo_beside_the_source_files_is_refused_not_copied(mlp_package: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("model.safetensors", "config.json"):
        shutil.copyfile(mlp_package / name, src / name)
    os.mkfifo(src / "README.md")
    with pytest.raises(PackageFormatError) as ei:
        within(lambda: build_package(src, output_dir=tmp_path / "out", name="m"))
    assert ei.value.path == "README.md" and "FIFO" in str(ei.value)


def test_a_fifo_named_model_toml_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "model.toml")
    with pytest.raises(PackageFormatError) as ei:
        within(lambda: build_package(tmp_path / "model.toml", output_dir=tmp_path / "out"))
    assert ei.value.code == "PACKAGE_FORMAT_ERROR" and "FIFO" in str(ei.value)


# -- item 10: symlinks that cannot be resolved -------------------------------------------------------------
@pytest.mark.parametrize("shape", ["self", "pair", "dangling", "listed-self"])
def test_symlink_loops_and_dangling_links_are_format_errors(mlp_package: Path, tmp_path: Path, shape: str) -> None:
    pkg = fresh(mlp_package, tmp_path)
    if shape == "self":
        (pkg / "loop").symlink_to("loop")
        name = "loop"
    elif shape == "pair":
        (pkg / "a").symlink_to("b")
        (pkg / "b").symlink_to("a")
        name = "a"
    elif shape == "dangling":
        (pkg / "gone").symlink_to("nowhere")
        name = "gone"
    else:  # a listed file replaced by a link to itself
        (pkg / "config.json").unlink()
        (pkg / "config.json").symlink_to("config.json")
        name = "config.json"
    for call in (lambda: load_package(pkg), lambda: load_package(pkg, verify=True)):
        with pytest.raises(PackageFormatError) as ei:
            within(call)
        assert ei.value.code == "PACKAGE_FORMAT_ERROR" and ei.value.path == name and "symlink" in str(ei.value)
    report = within(lambda: verify_package(pkg))
    assert not report.ok and report.errors[0].path == name  # type: ignore[attr-defined]


# -- item 8: the manifest covers every file ------------------------------------------------------------------
def test_the_reproducer_unlisted_weights_and_golden_with_changed_weights_fail_verify(mlp_package: Path, tmp_path: Path) -> None:
    pkg = fresh(mlp_package, tmp_path)
    unlist(pkg, "model.safetensors", "golden")
    raw = bytearray((pkg / "model.safetensors").read_bytes())
    raw[-1] ^= 0xFF  # one weight changed
    (pkg / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(PackageIntegrityError) as ei:
        load_package(pkg, verify=True)
    assert ei.value.code == "INTEGRITY_ERROR" and ei.value.field == "files"
    assert ei.value.path in {"model.safetensors", "golden/inputs.safetensors", "golden/outputs.safetensors"}
    report = verify_package(pkg)
    assert not report.ok
    named = {e.path for e in report.errors}  # type: ignore[attr-defined]
    assert {"model.safetensors", "golden/inputs.safetensors", "golden/outputs.safetensors"} <= named


@pytest.mark.parametrize("extra", ["notes.txt", "golden/extra.safetensors", "backends/torch/model.py"])
def test_any_unlisted_file_fails_verification(mlp_package: Path, tmp_path: Path, extra: str) -> None:
    pkg = fresh(mlp_package, tmp_path)
    (pkg / extra).parent.mkdir(parents=True, exist_ok=True)
    (pkg / extra).write_text("added after the build\n")
    with pytest.raises(PackageIntegrityError) as ei:
        load_package(pkg, verify=True)
    assert ei.value.path == extra and ei.value.field == "files" and "not listed" in str(ei.value)
    report = verify_package(pkg, run_golden=False)
    assert not report.ok and [e.path for e in report.errors] == [extra]  # type: ignore[attr-defined]
    load_package(pkg)  # a plain load checks listed files only (documented): it still opens


def test_per_deployment_files_need_no_entry(mlp_package: Path, tmp_path: Path) -> None:
    pkg = fresh(mlp_package, tmp_path)
    (pkg / "serving.toml").write_text('backend = "torch"\n')
    (pkg / "backends" / "torch" / "__pycache__").mkdir(parents=True)
    (pkg / "backends" / "torch" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\0" * 16)
    load_package(pkg, verify=True)
    assert verify_package(pkg).ok


def test_golden_outputs_named_in_metadata_but_missing_fail_verification(mlp_package: Path, tmp_path: Path) -> None:
    pkg = fresh(mlp_package, tmp_path)
    unlist(pkg, "golden/outputs.safetensors")
    (pkg / "golden" / "outputs.safetensors").unlink()
    report = verify_package(pkg)
    assert not report.ok and isinstance(report.errors[0], PackageNotFoundError) and report.errors[0].field == "golden"


def test_verify_is_not_ok_when_every_backend_was_skipped(mlp_package: Path, tmp_path: Path) -> None:
    pkg = fresh(mlp_package, tmp_path)
    report = verify_package(pkg, backends=["no-such-backend"])
    assert report.problems == [] and "no-such-backend" in report.skipped
    assert report.parity_required and not report.ok and report.to_dict()["ok"] is False
    assert verify_package(pkg, backends=["torch"]).ok
    assert verify_package(pkg, run_golden=False).ok  # hashes only: nothing asked of a backend


# -- item 10: golden settings and files that lie ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("golden", "field"),
    [
        ("yes", "golden"),
        ([1e-4], "golden"),
        ({"atol": "1e-4"}, "golden.atol"),
        ({"atol": [1]}, "golden.atol"),
        ({"rtol": {"x": 1}}, "golden.rtol"),
        ({"atol": -1}, "golden.atol"),
        ({"atol": True}, "golden.atol"),
        ({"outputs": 3}, "golden.outputs"),
    ],
)
def test_golden_metadata_of_the_wrong_type_is_a_format_error(mlp_package: Path, tmp_path: Path, golden: Any, field: str) -> None:
    pkg = fresh(mlp_package, tmp_path)
    data = meta(pkg)
    data["golden"] = golden if not isinstance(golden, dict) else {**data["golden"], **golden}
    write_meta(pkg, data)
    with pytest.raises(PackageFormatError) as ei:
        load_package(pkg)
    assert ei.value.code == "PACKAGE_FORMAT_ERROR" and ei.value.path == "metadata.json" and ei.value.field == field
    report = verify_package(pkg)
    assert not report.ok and report.errors[0].field == field  # type: ignore[attr-defined]


def _rewrite_header(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    change(header)
    hb = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(hb)) + hb + raw[8 + n :])


def _tensor_names(path: Path) -> list[str]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return sorted(k for k in json.loads(raw[8 : 8 + n]) if k != "__metadata__")


@pytest.mark.parametrize("file", ["golden/inputs.safetensors", "golden/outputs.safetensors"])
@pytest.mark.parametrize("lie", ["flat-shape", "dtype", "renamed"])
def test_golden_files_with_a_lying_header_are_reported_not_raised(mlp_package: Path, tmp_path: Path, file: str, lie: str) -> None:
    pkg = fresh(mlp_package, tmp_path)
    name = _tensor_names(pkg / file)[0]

    def change(h: dict[str, Any]) -> None:
        entry = h[name]
        if lie == "flat-shape":  # same bytes, one axis: the output would broadcast against the real one
            entry["shape"] = [int(entry["shape"][0]) * int(entry["shape"][1])]
        elif lie == "dtype":  # same bytes read as integers
            entry["dtype"] = "I32"
        else:
            h["not-" + name] = h.pop(name)

    _rewrite_header(pkg / file, change)
    resign(pkg)  # an attacker re-signs: the hashes pass and the header reaches the readers
    report = within(lambda: verify_package(pkg, backends=["torch"]))
    assert not report.ok, report.to_dict()
    assert all(isinstance(e, InferoxError) for e in report.errors)
    assert isinstance(report.errors[0], (PackageFormatError, PackageIntegrityError, InvalidInputError)), report.errors[0]


golden_entries = st.fixed_dictionaries(
    {
        "dtype": st.sampled_from(["F32", "F16", "I64", "I32", "U8", "BOOL", "F64", "XX"]),
        "shape": st.lists(st.integers(min_value=0, max_value=12), max_size=3),
        "data_offsets": st.tuples(st.integers(0, 64), st.integers(0, 64)).map(list),
    }
)


@given(file=st.sampled_from(["golden/inputs.safetensors", "golden/outputs.safetensors"]), entry=golden_entries)
@fuzz_settings()
def test_golden_headers_with_any_entry_end_in_a_report(mlp_package: Path, tmp_path_factory: pytest.TempPathFactory, file: str, entry: dict[str, Any], figures: Any) -> None:
    pkg = fresh(mlp_package, tmp_path_factory.mktemp("golden"))
    name = _tensor_names(pkg / file)[0]
    _rewrite_header(pkg / file, lambda h: h.__setitem__(name, entry))
    resign(pkg)
    report = verify_package(pkg, backends=["torch"])  # any other exception fails the test
    assert all(isinstance(e, InferoxError) for e in report.errors)
    figures.add("inputs_tried")
    figures.add("accepted" if report.ok else "typed_errors")
