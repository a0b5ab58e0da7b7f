"""The committed V2 gRPC code matches its .proto files, and speaks tritonclient's wire format.

``inferox-engine/src/inferox/engine/_proto`` holds Triton's ``.proto`` files and the code
``tools/gen_protos.py`` generates from them (``nox -s protos``). These tests fail when someone edits
a ``.proto`` without regenerating, edits the generated code by hand, or moves the pinned
grpcio-tools in one place only.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("gen_protos_tool", ROOT / "tools" / "gen_protos.py")
assert _spec and _spec.loader
gen = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = gen
_spec.loader.exec_module(gen)

needs_tools = pytest.mark.skipif(
    gen.tools_version() != gen.GRPCIO_TOOLS_VERSION,
    reason=f"regenerating needs grpcio-tools=={gen.GRPCIO_TOOLS_VERSION} (tests/requirements.txt installs it)",
)


def test_manifest_records_the_committed_sources_and_outputs() -> None:
    # Runs without grpcio-tools: a .proto changed without `nox -s protos`, or a generated file edited
    # by hand, no longer matches the hashes recorded when the code was generated.
    recorded = json.loads(gen.MANIFEST.read_text(encoding="utf-8"))
    assert recorded == gen.manifest()


def test_the_tool_version_is_pinned_once_everywhere() -> None:
    recorded = json.loads(gen.MANIFEST.read_text(encoding="utf-8"))
    assert recorded["grpcio_tools"] == gen.GRPCIO_TOOLS_VERSION
    pins = re.findall(r"^grpcio-tools==(\S+)", (ROOT / "tests" / "requirements.txt").read_text(encoding="utf-8"), re.MULTILINE)
    assert pins == [gen.GRPCIO_TOOLS_VERSION]
    extra = (ROOT / "inferox-engine" / "pyproject.toml").read_text(encoding="utf-8")
    # The service module refuses a grpcio older than the tool that generated it: the extra says so.
    assert f'"grpcio>={gen.GRPCIO_TOOLS_VERSION}"' in extra


def test_the_protos_keep_their_license_header() -> None:
    for proto in gen.PROTOS:
        head = (gen.PROTO_DIR / proto).read_text(encoding="utf-8")[:2000]
        assert "NVIDIA CORPORATION" in head and "Redistribution and use in source and binary forms" in head, proto
    assert "Redistribution and use" in (gen.PROTO_DIR / "LICENSE-triton-common").read_text(encoding="utf-8")


@needs_tools
def test_regenerating_reproduces_the_committed_code() -> None:
    assert gen.check() == []


@needs_tools
def test_a_changed_proto_changes_the_generated_code(tmp_path: Path) -> None:
    # The check above can fail: a one-field change to the service's proto shows in its outputs.
    src = tmp_path / "src"
    src.mkdir()
    for proto in gen.PROTOS:
        shutil.copyfile(gen.PROTO_DIR / proto, src / proto)
    text = (src / "grpc_service.proto").read_text(encoding="utf-8")
    (src / "grpc_service.proto").write_text(text.replace("message ServerLiveResponse\n{", "message ServerLiveResponse\n{\n  string note = 99;", 1), encoding="utf-8")
    fresh = gen.generate(tmp_path / "out", proto_dir=src)
    differing = {name for name, data in fresh.items() if (gen.PROTO_DIR / name).read_bytes() != data}
    assert differing == {"grpc_service_pb2.py", "grpc_service_pb2.pyi"}


def test_generation_needs_the_pinned_tool_version(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(gen, "GRPCIO_TOOLS_VERSION", "0.0.1")
    with pytest.raises(gen.GenerationError, match=r"grpcio-tools==0\.0\.1 is needed"):
        gen.generate(tmp_path)


def test_messages_are_wire_compatible_with_tritonclient_and_registered_apart() -> None:
    pytest.importorskip("tritonclient.grpc")
    from tritonclient.grpc import service_pb2 as theirs

    from inferox.engine._proto import POOL
    from inferox.engine._proto import grpc_service_pb2 as ours

    # Our own descriptor pool: a tritonclient built from another revision of the same files cannot
    # clash with ours in protobuf's default pool.
    assert ours.DESCRIPTOR.pool is POOL
    assert ours.ModelInferRequest is not theirs.ModelInferRequest
    # ... under the same file name Triton's own build uses, so descriptors stay byte-identical.
    assert ours.DESCRIPTOR.name == "grpc_service.proto"

    sent = theirs.ModelInferRequest(model_name="minilm", model_version="2", id="req-7", raw_input_contents=[b"\x03\x00\x00\x00abc"])
    tensor = sent.inputs.add(name="text", datatype="BYTES", shape=[1])
    tensor.parameters["binary_data_size"].int64_param = 7
    sent.parameters["timeout"].int64_param = 5_000_000
    got = ours.ModelInferRequest.FromString(sent.SerializeToString())
    assert (got.model_name, got.model_version, got.id) == ("minilm", "2", "req-7")
    assert list(got.raw_input_contents) == [b"\x03\x00\x00\x00abc"]
    assert (got.inputs[0].name, got.inputs[0].datatype, list(got.inputs[0].shape)) == ("text", "BYTES", [1])
    assert got.parameters["timeout"].int64_param == 5_000_000

    reply = ours.ModelInferResponse(model_name="minilm", id="req-7", raw_output_contents=[b"\x00\x00\x80?"])
    reply.outputs.add(name="sentence_embedding", datatype="FP32", shape=[1, 1])
    back = theirs.ModelInferResponse.FromString(reply.SerializeToString())
    assert (back.id, back.outputs[0].name, list(back.outputs[0].shape), back.raw_output_contents[0]) == ("req-7", "sentence_embedding", [1, 1], b"\x00\x00\x80?")


def test_the_protobuf_requirement_is_the_generated_codes_runtime() -> None:
    """The one-line error for an old protobuf runtime names the version the generated code needs,
    which is the [grpc] extra's lower bound."""
    from inferox.engine.server._grpc import PROTOBUF_REQUIREMENT

    header = (gen.PROTO_DIR / "grpc_service_pb2.py").read_text(encoding="utf-8")
    generated = re.search(r"^# Protobuf Python Version: (\S+)$", header, re.MULTILINE)
    assert generated is not None and PROTOBUF_REQUIREMENT == f"protobuf>={generated.group(1)}"
    extra = (ROOT / "inferox-engine" / "pyproject.toml").read_text(encoding="utf-8")
    assert f'"{PROTOBUF_REQUIREMENT},<8"' in extra


@pytest.mark.slow  # builds a virtualenv and installs into it (minutes)
def test_tritonclient_installed_after_the_grpc_extra_keeps_a_working_set(tmp_path: Path) -> None:
    """``pip install inferox-engine[grpc]`` then ``pip install tritonclient[grpc]`` (through the
    repository's constraints): pip finds no broken requirement, and both import together."""
    import subprocess
    import venv

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt")]
    subprocess.run([*pip, str(ROOT / "inferox-core"), str(ROOT / "inferox-mlpkg"), f"{ROOT / 'inferox-engine'}[serve,grpc]"], check=True)
    subprocess.run([*pip, "tritonclient[grpc]"], check=True)
    check = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    probe = "import tritonclient.grpc; from inferox.engine.server._grpc import require_grpc; require_grpc(); print('ok')"
    assert subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "ok"
