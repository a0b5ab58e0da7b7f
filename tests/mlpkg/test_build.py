"""Building packages from local folders and model.toml: the format's contents and build errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inferox.core.errors import (
    ArchitectureNotFoundError,
    ConfigError,
    PackageFormatError,
    PackageNotFoundError,
    UnsafePackageError,
)
from inferox.mlpkg import (
    FORMAT_VERSION,
    build_from_folder,
    build_package,
    get_architecture,
    known_architectures,
    load_package,
)
from tests.support.model_files import mlp_reference, mlp_tensors, write_mlp_folder


def test_mlp_package_contents(mlp_dir: Path, tmp_path: Path) -> None:
    path = build_package(mlp_dir, output_dir=tmp_path / "out", name="tiny", version="3", backends=["TORCH", "jax"], description="a tiny mlp")
    assert path == tmp_path / "out" / "tiny"
    meta = json.loads((path / "metadata.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION == "1.0"
    assert meta["name"] == "tiny" and meta["version"] == "3" and meta["description"] == "a tiny mlp"
    assert meta["source"]["type"] == "folder" and meta["source_repo_id"] is None
    assert meta["created_at"].endswith("+00:00") and meta["inferox_version"]
    listed = {f["path"]: f for f in meta["files"]}
    assert set(listed) == {"config.json", "model.safetensors", "model_info.json", "golden/inputs.safetensors", "golden/outputs.safetensors"}
    import hashlib

    for rel, entry in listed.items():
        data = (path / rel).read_bytes()
        assert entry["size"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
    info = json.loads((path / "model_info.json").read_text())
    assert info["architecture"] == "mlp" and info["model_type"] == "mlp" and info["family"] == "feedforward"
    assert info["backends"] == ["torch", "jax"]  # names are case-insensitive, stored lower-case
    assert [{k: v for k, v in d.items() if k != "description"} for d in info["inputs"]] == [{"name": "input", "dtype": "f32", "shape": [-1, 4]}]
    assert info["outputs"] == [{"name": "output", "dtype": "f32", "shape": [-1, 3]}]
    assert info["parameters"] == 4 * 8 + 8 + 8 * 3 + 3
    assert info["num_layers"] == 2 and info["hidden_size"] == 8
    pkg = load_package(path, verify=True)
    assert [(s.name, s.dtype.value, s.shape) for s in pkg.input_specs] == [("input", "f32", (None, 4))]
    assert pkg.version == "3" and pkg.backends == ["torch", "jax"] and pkg.preprocessing == {}


def test_golden_outputs_match_the_reference(mlp_dir: Path, tmp_path: Path, only_ref_backend: object) -> None:

    pkg = load_package(build_package(mlp_dir, output_dir=tmp_path))
    inputs, outputs = pkg.golden_inputs(), pkg.golden_outputs()
    assert inputs is not None and outputs is not None and pkg.metadata["golden"]["backend"] == "reference"
    want = mlp_reference(pkg.config, mlp_tensors([4, 8, 3]), inputs["input"])
    np.testing.assert_allclose(outputs["output"], want, rtol=1e-6)


def test_without_any_backend_golden_outputs_come_from_the_reference(mlp_dir: Path, tmp_path: Path, no_backends: object) -> None:
    pkg = load_package(build_package(mlp_dir, output_dir=tmp_path))
    inputs, outputs = pkg.golden_inputs(), pkg.golden_outputs()
    assert inputs is not None and outputs is not None and pkg.metadata["golden"]["backend"] == "reference"
    np.testing.assert_allclose(outputs["output"], mlp_reference(pkg.config, mlp_tensors([4, 8, 3]), inputs["input"]), rtol=1e-6)


def test_an_architecture_without_reference_or_backend_gets_golden_inputs_only(tmp_path: Path, no_backends: Any) -> None:
    import dataclasses

    from inferox.core import CONTRACT_VERSION, hookimpl

    plain = dataclasses.replace(no_backends.schema("mlp"), name="plainmlp", model_types=("plainmlp",), definition=None, reference=None)
    plugin = type("P", (), {"inferox_contract_version": staticmethod(hookimpl(lambda: CONTRACT_VERSION)),
                            "inferox_register_schemas": staticmethod(hookimpl(lambda register: register(plain)))})
    no_backends.register_plugin(plugin, name="plain")
    src = write_mlp_folder(tmp_path / "src", [4, 8, 3], extra={"model_type": "plainmlp"})
    pkg = load_package(build_package(src, output_dir=tmp_path / "out"))
    assert pkg.golden_inputs() is not None and pkg.golden_outputs() is None and not pkg.has_golden_outputs
    assert pkg.metadata["golden"]["outputs"] is None and pkg.metadata["golden"]["backend"] is None


def test_golden_outputs_are_the_references_not_the_first_backends(mlp_dir: Path, tmp_path: Path, only_ref_backend: Any) -> None:
    """A backend whose name sorts first and that computes wrong numbers does not decide the golden
    outputs (before, the first backend implementing the architecture computed them)."""
    import types

    from inferox.core import CONTRACT_VERSION, BackendSpec, hookimpl
    from inferox.core.definition import definition_factory

    right = definition_factory(only_ref_backend.schema("mlp"))

    class Wrong:
        def __call__(self, **kwargs: Any) -> Any:
            model = right(**kwargs)
            forward = model.forward
            model.forward = lambda inputs: {k: v + 1.0 for k, v in forward(inputs).items()}  # type: ignore[method-assign]
            return model

    plugin = types.ModuleType("aaa_wrong")
    plugin.inferox_contract_version = hookimpl(lambda: CONTRACT_VERSION)  # type: ignore[attr-defined]
    plugin.inferox_register_backends = hookimpl(lambda register: register(BackendSpec("aaa", loader="inferox_numpy.backend:NumpyBackend")))  # type: ignore[attr-defined]
    plugin.inferox_register_architectures = hookimpl(lambda register: register("aaa", "mlp", Wrong()))  # type: ignore[attr-defined]
    only_ref_backend.register_plugin(plugin, name="aaa")
    assert only_ref_backend.backends_for("mlp")[0] == "aaa"
    pkg = load_package(build_package(mlp_dir, output_dir=tmp_path, backends=["aaa"]))
    inputs, outputs = pkg.golden_inputs(), pkg.golden_outputs()
    assert inputs is not None and outputs is not None and pkg.metadata["golden"]["backend"] == "reference"
    np.testing.assert_allclose(outputs["output"], mlp_reference(pkg.config, mlp_tensors([4, 8, 3]), inputs["input"]), rtol=1e-6)


def test_golden_can_be_skipped(mlp_dir: Path, tmp_path: Path) -> None:
    pkg = load_package(build_package(mlp_dir, output_dir=tmp_path, golden=False))
    assert pkg.golden_inputs() is None and pkg.metadata["golden"] is None


def test_minilm_folder_preprocessing_and_specs(minilm_dir: Path, tmp_path: Path, no_backends: object) -> None:
    pkg = load_package(build_package(minilm_dir, output_dir=tmp_path, name="minilm"))
    assert pkg.preprocessing == {"pooling": "mean", "normalize": True, "max_seq_length": 256, "do_lower_case": False, "source": "sentence-transformers", "pooler": True}
    # What a server needs to serve it, recorded for the data plane.
    assert pkg.model_info["task"] == {"task": "embed", "output": "sentence_embedding", "dimensions": 384, "normalized": True}
    for rel in ("sentence_bert_config.json", "modules.json", "1_Pooling/config.json", "tokenizer.json", "vocab.txt"):
        assert (pkg.path / rel).is_file()
    ins = {s.name: s for s in pkg.input_specs}
    assert set(ins) == {"input_ids", "attention_mask", "token_type_ids", "position_ids"}
    assert all(s.dtype.value == "i64" and s.shape == (None, None) for s in ins.values())
    assert ins["position_ids"].optional and not ins["input_ids"].optional
    outs = {s.name: s.shape for s in pkg.output_specs}
    assert outs == {"last_hidden_state": (None, None, 384), "pooler_output": (None, 384), "sentence_embedding": (None, 384)}
    g = pkg.golden_inputs()
    assert g is not None and g["input_ids"].dtype == np.int64 and g["attention_mask"][1, 5:].sum() == 0
    assert pkg.model_info["max_position_embeddings"] == 512


def test_bert_without_pooling_has_no_sentence_embedding(minilm_dir: Path, tmp_path: Path, no_backends: object) -> None:
    src = tmp_path / "plain-bert"
    src.mkdir()
    for rel in ("config.json", "model.safetensors", "tokenizer.json"):
        shutil.copyfile(minilm_dir / rel, src / rel)
    pkg = load_package(build_package(src, output_dir=tmp_path / "out"))
    assert [s.name for s in pkg.output_specs] == ["last_hidden_state", "pooler_output"] and pkg.pooling is None


def test_unknown_model_type_names_file_and_field(tmp_path: Path) -> None:
    src = write_mlp_folder(tmp_path / "src", extra={"model_type": "wavenet"})
    with pytest.raises(PackageFormatError) as ei:
        build_package(src, output_dir=tmp_path / "out")
    assert ei.value.code == "PACKAGE_FORMAT_ERROR" and ei.value.path == "config.json" and ei.value.field == "model_type"
    assert "wavenet" in str(ei.value) and "bert" in str(ei.value)
    (src / "config.json").write_text(json.dumps({"layer_sizes": [2, 2]}))
    with pytest.raises(PackageFormatError) as ei2:
        build_package(src, output_dir=tmp_path / "out")
    assert ei2.value.field == "model_type"
    with pytest.raises(ArchitectureNotFoundError) as ei3:
        build_package(src, output_dir=tmp_path / "out", architecture="wavenet")
    assert ei3.value.code == "ARCHITECTURE_NOT_FOUND" and ei3.value.architecture == "wavenet" and "mlp" in (ei3.value.known or [])
    # architecture= overrides a missing model_type
    assert load_package(build_package(src, output_dir=tmp_path / "out", architecture="MLP", golden=False)).architecture == "mlp"


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"model_type": "mlp", "layer_sizes": [4]}, "layer_sizes"),
        ({"model_type": "mlp", "layer_sizes": [4, -1]}, "layer_sizes"),
        ({"model_type": "mlp", "layer_sizes": [4, 2], "activation": "swish"}, "activation"),
        ({"model_type": "bert", "hidden_size": "big"}, "hidden_size"),
        ({"model_type": "bert", "hidden_size": 8, "num_attention_heads": 3}, "num_attention_heads"),
        ({"model_type": "bert", "hidden_size": 8, "num_attention_heads": 2, "vocab_size": 0}, "vocab_size"),
    ],
)
def test_malformed_config_fields(tmp_path: Path, config: dict[str, object], field: str) -> None:
    src = write_mlp_folder(tmp_path / "src")
    (src / "config.json").write_text(json.dumps(config))
    with pytest.raises(PackageFormatError) as ei:
        build_package(src, output_dir=tmp_path / "out")
    assert ei.value.path == "config.json" and ei.value.field == field


def test_malformed_json_in_source(tmp_path: Path) -> None:
    src = write_mlp_folder(tmp_path / "src")
    (src / "config.json").write_text("{not json")
    with pytest.raises(PackageFormatError) as ei:
        build_package(src, output_dir=tmp_path / "out")
    assert ei.value.path == "config.json" and "not valid JSON" in str(ei.value)
    (src / "config.json").write_text("[1, 2]")
    with pytest.raises(PackageFormatError) as ei2:
        build_package(src, output_dir=tmp_path / "out")
    assert ei2.value.path == "config.json"
    write_mlp_folder(src)
    (src / "modules.json").write_text("{}")
    with pytest.raises(PackageFormatError) as ei3:
        build_package(src, output_dir=tmp_path / "out")
    assert ei3.value.path == "modules.json"
    assert not (tmp_path / "out" / "src").exists()


def test_missing_source_and_missing_config(tmp_path: Path) -> None:
    with pytest.raises(PackageNotFoundError) as ei:
        build_package(tmp_path / "nope", output_dir=tmp_path / "out")
    assert ei.value.path == str(tmp_path / "nope")
    src = write_mlp_folder(tmp_path / "src")
    (src / "config.json").unlink()
    with pytest.raises(PackageNotFoundError) as ei2:
        build_package(src, output_dir=tmp_path / "out")
    assert ei2.value.path == "config.json"
    with pytest.raises(PackageFormatError):
        build_from_folder(src / "model.safetensors", output_dir=tmp_path / "out")


def test_truncated_and_corrupt_source_weights(tmp_path: Path) -> None:
    src = write_mlp_folder(tmp_path / "src")
    data = (src / "model.safetensors").read_bytes()
    (src / "model.safetensors").write_bytes(data[: len(data) - 10])
    with pytest.raises(PackageFormatError) as ei:
        build_package(src, output_dir=tmp_path / "out")
    assert ei.value.path == "model.safetensors" and "truncated" in str(ei.value)
    (src / "model.safetensors").write_bytes(data[:5])
    with pytest.raises(PackageFormatError) as ei2:
        build_package(src, output_dir=tmp_path / "out")
    assert ei2.value.path == "model.safetensors"
    (src / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00" + b"{bad json!!!!!!}")
    with pytest.raises(PackageFormatError) as ei3:
        build_package(src, output_dir=tmp_path / "out")
    assert "corrupt" in str(ei3.value)


def test_sharded_weights_are_merged_into_one_file(tmp_path: Path, no_backends: object) -> None:
    from safetensors.numpy import save_file

    src = write_mlp_folder(tmp_path / "src")
    tensors = mlp_tensors([4, 8, 3])
    (src / "model.safetensors").unlink()
    keys = sorted(tensors)
    save_file({k: tensors[k] for k in keys[:2]}, str(src / "model-00001-of-00002.safetensors"))
    save_file({k: tensors[k] for k in keys[2:]}, str(src / "model-00002-of-00002.safetensors"))
    (src / "model.safetensors.index.json").write_text("{}")
    pkg = load_package(build_package(src, output_dir=tmp_path / "out"))
    from safetensors.numpy import load_file

    merged = load_file(str(pkg.weights_path))
    assert sorted(merged) == keys and all(np.array_equal(merged[k], tensors[k]) for k in keys)
    assert not list(pkg.path.glob("model-0000*"))


def test_weights_are_stored_once(tmp_path: Path, no_backends: object) -> None:
    src = write_mlp_folder(tmp_path / "src")
    (src / "pytorch_model.bin").write_bytes(b"pickle")
    (src / "tf_model.h5").write_bytes(b"h5")
    (src / "onnx").mkdir()
    (src / "onnx" / "model.onnx").write_bytes(b"onnx")
    (src / ".gitattributes").write_text("*")
    pkg = load_package(build_package(src, output_dir=tmp_path / "out"))
    names = {f["path"] for f in pkg.files}
    assert "model.safetensors" in names and not names & {"pytorch_model.bin", "tf_model.h5", "onnx/model.onnx", ".gitattributes"}


def test_pickle_weights_refused_or_converted(tmp_path: Path, no_backends: object) -> None:
    torch = pytest.importorskip("torch")
    src = write_mlp_folder(tmp_path / "src")
    (src / "model.safetensors").unlink()
    tensors = mlp_tensors([4, 8, 3])
    torch.save({k: torch.from_numpy(v) for k, v in tensors.items()}, src / "pytorch_model.bin")
    with pytest.raises(UnsafePackageError) as ei:
        build_package(src, output_dir=tmp_path / "out")
    assert ei.value.code == "UNSAFE_PACKAGE" and ei.value.path == "pytorch_model.bin" and "inferox convert" in str(ei.value)
    pkg = load_package(build_package(src, output_dir=tmp_path / "out", allow_pickle=True))
    from safetensors.numpy import load_file

    got = load_file(str(pkg.weights_path))
    assert all(np.array_equal(got[k], tensors[k]) for k in tensors)
    assert "pytorch_model.bin" not in {f["path"] for f in pkg.files}


def test_repository_without_weights(tmp_path: Path) -> None:
    src = write_mlp_folder(tmp_path / "src")
    (src / "model.safetensors").unlink()
    with pytest.raises(PackageNotFoundError) as ei:
        build_package(src, output_dir=tmp_path / "out")
    assert ei.value.field == "weights"


def test_backend_overrides_are_copied(mlp_dir: Path, tmp_path: Path, no_backends: object) -> None:
    (mlp_dir / "backends" / "Torch").mkdir(parents=True)
    (mlp_dir / "backends" / "Torch" / "model.py").write_text("def create_model(**kw):\n    raise RuntimeError\n")
    pkg = load_package(build_package(mlp_dir, output_dir=tmp_path / "out"))
    assert pkg.backend_overrides == ["torch"] and (pkg.path / "backends" / "torch" / "model.py").is_file()


def test_unknown_backend_name(mlp_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as ei:
        build_package(mlp_dir, output_dir=tmp_path, backends=["tensorflow"])
    assert ei.value.code == "INVALID_CONFIG" and ei.value.field == "backends" and ei.value.value == "tensorflow"


def test_output_folder_from_environment_then_rebuild_replaces(mlp_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_backends: object) -> None:
    monkeypatch.setenv("INFEROX_PACKAGE_DIR", str(tmp_path / "pkgs"))
    path = build_package(mlp_dir, name="My Model/v2")
    assert path == tmp_path / "pkgs" / "v2"
    write_mlp_folder(mlp_dir, [4, 5, 2], seed=3)
    again = build_package(mlp_dir, name="My Model/v2")
    assert again == path and load_package(again, verify=True).config["layer_sizes"] == [4, 5, 2]
    assert sorted(p.name for p in (tmp_path / "pkgs").iterdir()) == ["v2"]  # no debris left beside it


def test_default_output_is_the_cache(mlp_dir: Path, tmp_path: Path, no_backends: object) -> None:
    from inferox.mlpkg import PackageCache

    cache = PackageCache(tmp_path / "cache")
    path = build_package(mlp_dir, name="cached", cache=cache)
    assert path.parent == cache.packages_dir and [e.key.split("@")[0] for e in cache.entries()] == ["folder/cached"]


def test_rebuild_from_a_package_folder(mlp_dir: Path, tmp_path: Path, no_backends: object) -> None:
    first = load_package(build_package(mlp_dir, output_dir=tmp_path / "a"))
    second = load_package(build_package(first.path, output_dir=tmp_path / "b", name="copy"))
    assert second.name == "copy" and second.model_info["inputs"] == first.model_info["inputs"]
    assert {f["path"]: f["sha256"] for f in second.files}["model.safetensors"] == {f["path"]: f["sha256"] for f in first.files}["model.safetensors"]


def test_architectures_come_from_plugins(tmp_path: Path, no_backends: Any) -> None:
    import dataclasses
    import types

    from inferox.core import CONTRACT_VERSION, hookimpl
    from inferox.core.errors import PluginError

    assert {"bert", "mlp"} <= set(known_architectures())  # core's built-in plugin
    assert get_architecture("BERT").family == "encoder"
    mlp = get_architecture("mlp").schema
    assert mlp.plugin == "inferox-core"
    custom = dataclasses.replace(mlp, name="tinyconv", family="conv", model_types=("tiny-conv",))
    plugin = types.ModuleType("tinyconv_plugin")
    plugin.inferox_contract_version = hookimpl(lambda: CONTRACT_VERSION)  # type: ignore[attr-defined]
    plugin.inferox_register_schemas = hookimpl(lambda register: register(custom))  # type: ignore[attr-defined]
    no_backends.register_plugin(plugin, name="tinyconv")
    src = write_mlp_folder(tmp_path / "src", extra={"model_type": "tiny-conv"})
    pkg = load_package(build_package(src, output_dir=tmp_path / "out", golden=False))
    assert pkg.architecture == "tinyconv" and pkg.family == "conv" and pkg.model_type == "tiny-conv"
    # A second plugin defining the same architecture is refused, naming both plugins.
    clash = types.ModuleType("clash_plugin")
    clash.inferox_contract_version = hookimpl(lambda: CONTRACT_VERSION)  # type: ignore[attr-defined]
    clash.inferox_register_schemas = hookimpl(lambda register: register(custom))  # type: ignore[attr-defined]
    with pytest.raises(PluginError) as ei:
        no_backends.register_plugin(clash, name="clash")
    assert ei.value.code == "PLUGIN_ERROR" and "'tinyconv'" in str(ei.value) and "'clash'" in str(ei.value)


def test_symlinked_sources_become_regular_readable_files(tmp_path: Path, no_backends: object) -> None:
    import os
    import stat

    real = write_mlp_folder(tmp_path / "blobs")
    src = tmp_path / "snapshot"  # laid out like a huggingface_hub snapshot: links to blobs
    src.mkdir()
    for name in ("config.json", "model.safetensors"):
        (src / name).symlink_to(real / name)
    pkg = load_package(build_package(src, output_dir=tmp_path / "out"), verify=True)
    for f in pkg.files:
        p = pkg.path / f["path"]
        mode = p.lstat().st_mode
        assert stat.S_ISREG(mode) and not p.is_symlink()
        assert mode & stat.S_IRUSR and mode & stat.S_IRGRP and not mode & stat.S_IXUSR and os.access(p, os.R_OK)
    assert (pkg.path / "model.safetensors").read_bytes() == (real / "model.safetensors").read_bytes()
