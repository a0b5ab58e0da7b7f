"""model.toml: parsing, validation errors naming the file and the field, and building from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferox.core.errors import ConfigError, PackageNotFoundError
from inferox.mlpkg import build_package, load_package, parse_model_toml
from tests.support.hub import Hub
from tests.support.model_files import mlp_files, write_mlp_folder


def write_toml(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "model.toml"
    p.write_text(body, encoding="utf-8")
    return p


def test_parse_full_file(tmp_path: Path) -> None:
    p = write_toml(
        tmp_path,
        'name = "mini"\nversion = 2\nsource = "hf://org/mini"\nrevision = "v1"\narchitecture = "BERT"\n'
        'backends = ["Torch", "JAX", "torch"]\nallow_patterns = "*.json"\ndescription = "d"\nendpoint = "http://x"\n',
    )
    spec = parse_model_toml(p)
    assert (spec.name, spec.version, spec.source, spec.revision, spec.architecture) == ("mini", "2", "hf://org/mini", "v1", "bert")
    assert spec.backends == ("torch", "jax") and spec.allow_patterns == ("*.json",) and spec.endpoint == "http://x"


def test_relative_folder_source_resolves_against_the_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    p = write_toml(tmp_path / "sub", 'source = "../weights"\nbackends = ["torch"]\n')
    assert parse_model_toml(p).source == str((tmp_path / "weights").resolve())


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(PackageNotFoundError) as ei:
        parse_model_toml(tmp_path / "nope.toml")
    assert ei.value.code == "PACKAGE_NOT_FOUND" and ei.value.path == str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError) as ei2:
        parse_model_toml(tmp_path)
    assert ei2.value.path == str(tmp_path)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('name = "x"\nbackends = ["torch"]\n', "source"),
        ('source = ""\nbackends = ["torch"]\n', "source"),
        ('source = "a"\n', "backends"),
        ('source = "a"\nbackends = ["tensorflow"]\n', "backends"),
        ('source = "a"\nbackends = []\n', "backends"),
        ('source = "a"\nbackends = [1]\n', "backends"),
        ('source = "a"\nbackends = ["jax"]\nrevision = 3\n', "revision"),
        ('source = "a"\nbackends = ["jax"]\nallow_patterns = [1]\n', "allow_patterns"),
        ('source = "a"\nbackends = ["jax"]\nversion = [1]\n', "version"),
        ('source = "a"\nbackends = ["jax"]\ndescription = 1\n', "description"),
        ('source = "a"\nbackends = ["jax"]\nweights = "x"\n', "weights"),
    ],
)
def test_malformed_fields_name_file_and_field(tmp_path: Path, body: str, field: str) -> None:
    p = write_toml(tmp_path, body)
    with pytest.raises(ConfigError) as ei:
        parse_model_toml(p)
    assert ei.value.code == "INVALID_CONFIG" and ei.value.path == str(p) and ei.value.field == field
    assert str(p) in str(ei.value) and field in str(ei.value)


def test_invalid_toml(tmp_path: Path) -> None:
    p = write_toml(tmp_path, "source = \n")
    with pytest.raises(ConfigError) as ei:
        parse_model_toml(p)
    assert ei.value.path == str(p) and "TOML" in str(ei.value)


def test_build_from_toml_folder_source(tmp_path: Path, no_backends: object) -> None:
    write_mlp_folder(tmp_path / "weights")
    p = write_toml(tmp_path, 'name = "from-toml"\nsource = "weights"\nbackends = ["Torch"]\nversion = "7"\n')
    pkg = load_package(build_package(p, output_dir=tmp_path / "out"))
    assert pkg.name == "from-toml" and pkg.version == "7" and pkg.backends == ["torch"]
    # a folder holding a model.toml (and no config.json) builds from the toml too
    pkg2 = load_package(build_package(tmp_path, output_dir=tmp_path / "out2"))
    assert pkg2.name == "from-toml"
    # keyword overrides win over the file
    assert load_package(build_package(p, output_dir=tmp_path / "out3", name="override")).name == "override"


@pytest.mark.hub
def test_build_from_toml_hub_source(hub: Hub, tmp_path: Path) -> None:
    repo_id, sha = hub.new_repo(mlp_files())
    p = write_toml(tmp_path, f'name = "hubbed"\nsource = "hf://{repo_id}"\nrevision = "main"\nbackends = ["jax"]\nendpoint = "{hub.endpoint}"\n')
    pkg = load_package(build_package(p, output_dir=tmp_path / "out", download_dir=tmp_path / "dl"))
    assert pkg.name == "hubbed" and pkg.revision == sha and pkg.source_repo_id == repo_id
