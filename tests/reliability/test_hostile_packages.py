"""Hostile packages: malformed and adversarial ``metadata.json`` / ``model_info.json`` / ``config.json``
/ ``model.toml``, truncated or lying safetensors headers, ``..`` and absolute file names, symlinks
escaping the package. Every case ends in a typed :class:`~inferox.core.errors.InferoxError` (class and
code asserted) or a model that really works — never another exception, a hang, an out-of-memory, or
a file written outside the package.

An attacker controls every byte of a package, ``metadata.json``'s sizes and sha256 included, so most
cases "re-sign" the package after tampering (:func:`resign`): the integrity check then passes and
the tampered content reaches the parsers behind it. Loading goes all the way to a real torch model
(``load_model``) and one inference through the engine.

Example counts come from the hypothesis profile in ``reliability_kit`` (short by default, long in
the nox ``fuzz`` session).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from inferox.core.errors import (
    ConfigError,
    InferoxError,
    PackageError,
    PackageFormatError,
    UnsafePackageError,
)
from inferox.engine import Engine, EngineConfig
from inferox.mlpkg import load_model, load_package, parse_model_toml

from .reliability_kit import fuzz_settings

#: Codes a hostile package may legitimately end in (package problems, and a model the backend refuses).
PACKAGE_CODES = {
    "PACKAGE_ERROR", "PACKAGE_FORMAT_ERROR", "PACKAGE_NOT_FOUND", "PACKAGE_VERSION_UNSUPPORTED", "INTEGRITY_ERROR",
    "UNSAFE_PACKAGE", "ARCHITECTURE_NOT_FOUND", "BACKEND_ERROR", "INVALID_INPUT", "INVALID_DTYPE", "INVALID_CONFIG",
    "OUT_OF_MEMORY",
}

json_scalars = st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=True) | st.text(max_size=30)
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4), max_leaves=12)


# -- the sandbox ----------------------------------------------------------------------------------------
class Sandbox:
    """A fresh copy of a real package under ``root/pkg-*``, next to ``root/outside/`` (a canary folder)."""

    def __init__(self, root: Path, base: Path) -> None:
        self.root = root
        self.base = base
        self.outside = root / "outside"
        self.outside.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(base / "model.safetensors", self.outside / "model.safetensors")
        (self.outside / "secret.json").write_text('{"model_type": "mlp", "layer_sizes": [4, 8, 3]}')
        self._listing = self.snapshot()

    def fresh(self) -> Path:
        d = self.root / f"pkg-{uuid.uuid4().hex[:8]}"
        shutil.copytree(self.base, d)
        return d

    def snapshot(self) -> list[tuple[str, int]]:
        return sorted((str(p.relative_to(self.root)), p.stat().st_size) for p in self.outside.rglob("*")) + sorted(
            (p.name, 0) for p in self.root.parent.iterdir()
        )

    def check_nothing_written_outside(self) -> None:
        assert self.snapshot() == self._listing


@pytest.fixture(scope="module")
def sandbox_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile") / "area"


@pytest.fixture
def sandbox(sandbox_root: Path, mlp_package: Path) -> Iterator[Sandbox]:
    box = Sandbox(sandbox_root, mlp_package)
    yield box
    box.check_nothing_written_outside()


def resign(pkg: Path) -> None:
    """Rewrite ``metadata.json``'s recorded sizes and sha256 to match the (tampered) files."""
    meta = json.loads((pkg / "metadata.json").read_text())
    for entry in meta.get("files", []):
        p = pkg / entry["path"]
        if p.is_file():
            data = p.read_bytes()
            entry["size"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (pkg / "metadata.json").write_text(json.dumps(meta))


def edit_json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def load_and_serve(pkg: Path) -> InferoxError | None:
    """Load ``pkg`` on torch and run one inference; return the typed error, or ``None`` if it worked.

    Anything that is not an :class:`InferoxError` propagates and fails the test.
    """
    try:
        package = load_package(pkg, verify=True)
        model = load_model(package, backend="torch")
        with Engine(EngineConfig(batching=False)) as eng:
            eng.register("m", model)
            spec = model.input_specs[0]
            shape = tuple(1 if d is None else d for d in spec.shape)
            eng.infer("m", {spec.name: np.zeros(shape, spec.dtype.to_numpy())})
    except InferoxError as exc:
        assert exc.code in PACKAGE_CODES, (type(exc).__name__, exc.code, str(exc))
        assert exc.code == type(exc).code
        return exc
    return None


def weights_header(pkg: Path) -> tuple[dict[str, Any], bytes]:
    raw = (pkg / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def write_weights(pkg: Path, header: Any, data: bytes, *, declared: int | None = None) -> None:
    hb = json.dumps(header).encode()
    (pkg / "model.safetensors").write_bytes(struct.pack("<Q", len(hb) if declared is None else declared) + hb + data)


# -- metadata.json / model_info.json / config.json -------------------------------------------------------
METADATA_FIELDS = ["format_version", "name", "files", "weights", "backend_overrides", "version", "golden", "revision"]
INFO_FIELDS = ["architecture", "inputs", "outputs", "backends", "model_type", "parameters"]
CONFIG_FIELDS = ["model_type", "layer_sizes", "activation"]


@given(field=st.sampled_from(METADATA_FIELDS), value=json_values)
@fuzz_settings()
def test_metadata_fields_with_any_json_value(sandbox: Sandbox, field: str, value: Any, figures: Any) -> None:
    pkg = sandbox.fresh()
    edit_json(pkg / "metadata.json", lambda m: m.__setitem__(field, value))
    err = load_and_serve(pkg)
    if err is None and field == "weights":  # accepted: then it must name a file inside the package
        assert (pkg / str(value)).resolve().is_relative_to(pkg.resolve())
    figures.add("inputs_tried")
    figures.add("typed_errors" if err is not None else "accepted")


@given(file=st.sampled_from(["model_info.json", "config.json"]), field=st.sampled_from(INFO_FIELDS + CONFIG_FIELDS), value=json_values)
@fuzz_settings()
def test_model_info_and_config_fields_with_any_json_value(sandbox: Sandbox, file: str, field: str, value: Any, figures: Any) -> None:
    pkg = sandbox.fresh()
    edit_json(pkg / file, lambda m: m.__setitem__(field, value))
    resign(pkg)
    err = load_and_serve(pkg)
    figures.add("inputs_tried")
    figures.add("typed_errors" if err is not None else "accepted")


spec_dicts = st.fixed_dictionaries(
    {"name": st.text(max_size=8) | json_scalars, "dtype": st.sampled_from(["f32", "i64", "bf16", "bogus", "f64"]) | json_scalars},
    optional={"shape": st.lists(st.integers(min_value=-(2**63), max_value=2**63) | st.none(), max_size=5) | json_values, "pad_value": json_scalars, "optional": json_scalars},
)


@given(key=st.sampled_from(["inputs", "outputs"]), specs=st.lists(spec_dicts, max_size=3))
@fuzz_settings()
def test_tensor_specs_with_lying_shapes_and_dtypes(sandbox: Sandbox, key: str, specs: list[Any], figures: Any) -> None:
    pkg = sandbox.fresh()
    edit_json(pkg / "model_info.json", lambda m: m.__setitem__(key, specs))
    resign(pkg)
    err = load_and_serve(pkg)
    figures.add("inputs_tried")
    figures.add("typed_errors" if err is not None else "accepted")


@given(file=st.sampled_from(["metadata.json", "model_info.json", "config.json", "preprocessing.json"]), content=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
@fuzz_settings()
def test_whole_json_files_replaced_by_garbage(sandbox: Sandbox, file: str, content: bytes, figures: Any) -> None:
    pkg = sandbox.fresh()
    (pkg / file).write_bytes(content)
    if file != "metadata.json":
        resign(pkg)
    err = load_and_serve(pkg)
    figures.add("inputs_tried")
    figures.add("typed_errors" if err is not None else "accepted")


@pytest.mark.parametrize("file", ["metadata.json", "model_info.json", "config.json"])
def test_deeply_nested_json_is_a_format_error(sandbox: Sandbox, file: str) -> None:
    pkg = sandbox.fresh()
    (pkg / file).write_text("[" * 200_000 + "]" * 200_000)
    if file != "metadata.json":
        resign(pkg)
    with pytest.raises(PackageFormatError) as ei:
        load_package(pkg, verify=True)
    assert ei.value.code == "PACKAGE_FORMAT_ERROR" and ei.value.path == file


# -- safetensors headers ----------------------------------------------------------------------------------
DTYPES = ["F32", "F16", "BF16", "F64", "I64", "I32", "U8", "BOOL", "F8_E4M3", "XX"]
shapes = st.lists(st.integers(min_value=-5, max_value=2**62), max_size=4) | st.lists(st.integers(min_value=0, max_value=64), max_size=3)
offsets = st.lists(st.integers(min_value=-10, max_value=2**64), min_size=0, max_size=3) | st.tuples(st.integers(0, 600), st.integers(0, 600)).map(list) | json_values
entries = st.fixed_dictionaries({"dtype": st.sampled_from(DTYPES) | json_scalars, "shape": shapes | json_values, "data_offsets": offsets})


@given(name=st.sampled_from(["layers.0.weight", "layers.0.bias", "layers.1.weight", "extra"]), entry=entries | json_values)
@fuzz_settings()
def test_lying_safetensors_tensor_entries(sandbox: Sandbox, name: str, entry: Any, figures: Any) -> None:
    pkg = sandbox.fresh()
    header, data = weights_header(pkg)
    header[name] = entry
    write_weights(pkg, header, data)
    resign(pkg)
    err = load_and_serve(pkg)
    figures.add("inputs_tried")
    figures.add("typed_errors" if err is not None else "accepted")


@given(declared=st.integers(min_value=0, max_value=2**64 - 1), cut=st.integers(min_value=0, max_value=700))
@fuzz_settings()
def test_lying_header_length_and_truncated_files(sandbox: Sandbox, declared: int, cut: int, figures: Any) -> None:
    pkg = sandbox.fresh()
    header, data = weights_header(pkg)
    write_weights(pkg, header, data, declared=declared)
    raw = (pkg / "model.safetensors").read_bytes()
    (pkg / "model.safetensors").write_bytes(raw[: min(cut, len(raw))] if cut < len(raw) else raw)
    resign(pkg)
    err = load_and_serve(pkg)
    figures.add("inputs_tried")
    figures.add("typed_errors" if err is not None else "accepted")


def test_huge_declared_shape_is_refused_without_allocating(sandbox: Sandbox) -> None:
    pkg = sandbox.fresh()
    header, data = weights_header(pkg)
    header["layers.0.weight"]["shape"] = [2**40, 2**40]
    write_weights(pkg, header, data)
    resign(pkg)
    err = load_and_serve(pkg)
    assert isinstance(err, PackageFormatError) and err.code == "PACKAGE_FORMAT_ERROR"
    assert "model.safetensors" in str(err.path)


def test_non_integer_offsets_are_a_format_error(sandbox: Sandbox) -> None:
    pkg = sandbox.fresh()
    header, data = weights_header(pkg)
    header["layers.0.bias"]["data_offsets"] = ["0", "32"]
    write_weights(pkg, header, data)
    resign(pkg)
    with pytest.raises(PackageFormatError) as ei:
        load_package(pkg, verify=True)
    assert ei.value.code == "PACKAGE_FORMAT_ERROR" and ei.value.path == "model.safetensors" and ei.value.field == "layers.0.bias"


# -- paths and symlinks -------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["../outside/secret.json", "/etc/passwd", "a/../../outside/secret.json", "config.json/../../x"])
def test_file_entries_escaping_the_package(sandbox: Sandbox, bad: str) -> None:
    pkg = sandbox.fresh()
    edit_json(pkg / "metadata.json", lambda m: m["files"].append({"path": bad, "size": 1, "sha256": "0" * 64}))
    with pytest.raises(PackageFormatError) as ei:
        load_package(pkg)
    assert ei.value.code == "PACKAGE_FORMAT_ERROR" and ei.value.field == "files" and ei.value.path == "metadata.json"


@pytest.mark.parametrize("how", ["dotdot", "absolute"])
def test_weights_path_escaping_the_package(sandbox: Sandbox, how: str) -> None:
    pkg = sandbox.fresh()
    target = "../outside/model.safetensors" if how == "dotdot" else str(sandbox.outside / "model.safetensors")
    edit_json(pkg / "metadata.json", lambda m: m.__setitem__("weights", target))
    with pytest.raises(PackageFormatError) as ei:
        load_model(pkg, backend="torch")
    assert ei.value.code == "PACKAGE_FORMAT_ERROR" and ei.value.field == "weights" and ei.value.path == "metadata.json"


def test_backend_override_names_escaping_the_package(sandbox: Sandbox) -> None:
    pkg = sandbox.fresh()
    edit_json(pkg / "metadata.json", lambda m: m.__setitem__("backend_overrides", ["../../outside"]))
    with pytest.raises(PackageFormatError) as ei:
        load_model(pkg, backend="torch", trust_code=True)
    assert ei.value.code == "PACKAGE_FORMAT_ERROR" and ei.value.field == "backend_overrides"


@pytest.mark.parametrize("member", ["model.safetensors", "config.json", "model_info.json", "golden"])
def test_symlinks_escaping_the_package_are_refused(sandbox: Sandbox, member: str) -> None:
    pkg = sandbox.fresh()
    target = sandbox.root / f"escaped-{uuid.uuid4().hex[:6]}"
    shutil.move(str(pkg / member), str(target))  # same content, but it now lives outside the package
    (pkg / member).symlink_to(target)
    with pytest.raises(UnsafePackageError) as ei:
        load_model(pkg, backend="torch")
    assert ei.value.code == "UNSAFE_PACKAGE" and isinstance(ei.value, PermissionError)
    assert ei.value.path is not None and member in str(ei.value.path)


def test_symlinks_inside_the_package_still_load(sandbox: Sandbox) -> None:
    pkg = sandbox.fresh()
    (pkg / "weights").mkdir()
    shutil.move(str(pkg / "model.safetensors"), str(pkg / "weights" / "real.safetensors"))
    (pkg / "model.safetensors").symlink_to(Path("weights") / "real.safetensors")
    assert load_and_serve(pkg) is None


def test_loading_a_symlinked_metadata_outside_is_refused(sandbox: Sandbox) -> None:
    pkg = sandbox.fresh()
    outside = sandbox.root / f"meta-{uuid.uuid4().hex[:6]}.json"
    shutil.move(str(pkg / "metadata.json"), str(outside))
    (pkg / "metadata.json").symlink_to(outside)
    with pytest.raises(UnsafePackageError) as ei:
        load_package(pkg)
    assert ei.value.code == "UNSAFE_PACKAGE" and "metadata.json" in str(ei.value.path)


# -- model.toml ------------------------------------------------------------------------------------------------
toml_keys = st.sampled_from(["name", "architecture", "source", "weights", "config", "backends", "version", "revision", "tokenizer", "description"])
toml_scalars = st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(max_size=20) | st.floats(allow_nan=False, allow_infinity=False)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(v)  # a TOML basic string is a JSON string for these characters


@given(doc=st.dictionaries(toml_keys, toml_scalars | st.lists(toml_scalars, max_size=3), max_size=6), section=st.sampled_from(["", "model", "package"]))
@fuzz_settings()
def test_model_toml_with_adversarial_values(tmp_path_factory: pytest.TempPathFactory, doc: dict[str, Any], section: str, figures: Any) -> None:
    folder = tmp_path_factory.mktemp("toml")
    body = (f"[{section}]\n" if section else "") + "".join(f"{k} = {_toml_value(v)}\n" for k, v in doc.items())
    (folder / "model.toml").write_text(body)
    try:
        parse_model_toml(folder / "model.toml")
    except InferoxError as exc:
        assert isinstance(exc, (PackageError, ConfigError)), (type(exc), exc)
        assert exc.code in PACKAGE_CODES | {"PACKAGE_FORMAT_ERROR"}
        figures.add("typed_errors")
    else:
        figures.add("accepted")
    figures.add("inputs_tried")


@given(content=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
@fuzz_settings()
def test_model_toml_garbage_bytes(tmp_path_factory: pytest.TempPathFactory, content: bytes, figures: Any) -> None:
    folder = tmp_path_factory.mktemp("tomlg")
    (folder / "model.toml").write_bytes(content)
    try:
        parse_model_toml(folder / "model.toml")
    except InferoxError as exc:
        assert isinstance(exc, (PackageError, ConfigError)) and exc.code in PACKAGE_CODES
        figures.add("typed_errors")
    else:
        figures.add("accepted")
    figures.add("inputs_tried")


def test_nothing_was_written_outside_any_sandbox(sandbox: Sandbox) -> None:
    """Escapes of every kind, one after another in one area, whatever ran before (in any order):
    each is refused, and the area then holds only package copies and the canary, unchanged."""
    attacks = [
        ("files", lambda m: m["files"].append({"path": "../outside/secret.json", "size": 1, "sha256": "0" * 64})),
        ("weights", lambda m: m.__setitem__("weights", "../outside/model.safetensors")),
        ("backend_overrides", lambda m: m.__setitem__("backend_overrides", ["../../outside"])),
    ]
    for field, attack in attacks:
        pkg = sandbox.fresh()
        edit_json(pkg / "metadata.json", attack)
        with pytest.raises(PackageFormatError) as ei:
            load_model(pkg, backend="torch", trust_code=True)
        assert ei.value.code == "PACKAGE_FORMAT_ERROR" and ei.value.field == field
    sandbox.check_nothing_written_outside()
    names = {p.name.split("-")[0] for p in sandbox.root.iterdir()}
    assert "pkg" in names and names <= {"outside", "pkg", "escaped", "meta"}, names
    assert sorted(os.listdir(sandbox.outside)) == ["model.safetensors", "secret.json"]
    assert (sandbox.outside / "secret.json").read_text() == '{"model_type": "mlp", "layer_sizes": [4, 8, 3]}'
    assert (sandbox.outside / "model.safetensors").read_bytes() == (sandbox.base / "model.safetensors").read_bytes()
