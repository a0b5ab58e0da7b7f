"""``--verify`` cannot be raced (issue 22, item 3): what loads is exactly what was hashed.

The package used to be hashed, then its weights read again from the folder to load: 6 of 32
reloads that passed verification served a same-size tampered file swapped in between. Here the
swap is made deterministic — it happens at the very moment the backend opens the weights, after
verification — by wrapping safetensors' loader (the one thing staged); the real torch backend then
loads the file it is given. A verified load reads a private copy of the verified bytes, so the
swap in the package folder changes nothing; the next verification sees the tampered file and
refuses it, while the version already served keeps answering.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inferox.core.errors import PackageIntegrityError
from inferox.engine.server import DataPlane, InferRequest, InputTensor, ServerConfig
from inferox.mlpkg import load_model, load_package

X = np.random.default_rng(7).standard_normal((3, 4)).astype(np.float32)


def _tampered_copy(weights: Path, into: Path) -> Path:
    """A file of the same size as ``weights`` with every weight negated (the header kept)."""
    data = bytearray(weights.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    body = np.frombuffer(bytes(data[header:]), dtype=np.float32).copy()
    data[header:] = (-body).tobytes()
    out = into / "tampered.safetensors"
    out.write_bytes(bytes(data))
    assert out.stat().st_size == weights.stat().st_size
    return out


@pytest.fixture()
def swap_at_load(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``arm(package, tampered)``: the next safetensors load swaps ``tampered`` into the package
    folder (os.replace: a new inode, same name, same size) just before it reads the file it was given.

    Weights are read through core's one reader (``inferox.core.weights.load_safetensors``: the
    definitions read it lazily, the torch module imported its own name for it): both are wrapped."""
    import inferox.core.weights
    import inferox.torch.model

    real = inferox.core.weights.load_safetensors
    armed: list[tuple[Path, Path]] = []
    seen: list[str] = []

    def load_safetensors(source: Any, *args: Any, **kwargs: Any) -> Any:
        if armed and isinstance(source, (str, os.PathLike)):
            pkg, tampered = armed.pop()
            os.replace(tampered, pkg / "model.safetensors")
        if isinstance(source, (str, os.PathLike)):
            seen.append(str(source))
        return real(source, *args, **kwargs)

    monkeypatch.setattr(inferox.core.weights, "load_safetensors", load_safetensors)
    monkeypatch.setattr(inferox.torch.model, "load_safetensors", load_safetensors)

    def arm(pkg: Path, tampered: Path) -> list[str]:
        armed.append((pkg, tampered))
        return seen

    return arm


def _output(model: Any) -> np.ndarray:
    return np.asarray(model.forward_any({"input": X})["output"])


def test_a_file_swapped_after_verification_is_never_loaded(tmp_path: Path, mlp_package: Path, swap_at_load: Any) -> None:
    pkg = tmp_path / "mlp"
    shutil.copytree(mlp_package, pkg)
    expected = _output(load_model(pkg, backend="torch"))
    tampered = _tampered_copy(pkg / "model.safetensors", tmp_path)
    bad = tmp_path / "bad"
    shutil.copytree(pkg, bad)
    shutil.copy(tampered, bad / "model.safetensors")
    assert not np.allclose(_output(load_model(bad, backend="torch")), expected)  # what serving the swapped file looks like
    seen = swap_at_load(pkg, tampered)
    got = _output(load_model(pkg, backend="torch", verify=True))
    np.testing.assert_allclose(got, expected, rtol=1e-6)  # the verified bytes, not the swapped file
    assert not seen[-1].startswith(str(pkg))  # read from the private copy
    # The swapped file is in the folder now: the next verification refuses it, naming it.
    with pytest.raises(PackageIntegrityError) as ei:
        load_package(pkg, verify=True)
    assert ei.value.code == "INTEGRITY_ERROR" and ei.value.path == "model.safetensors" and ei.value.field == "sha256"


def test_the_private_copy_goes_with_the_package(tmp_path: Path, mlp_package: Path) -> None:
    import gc

    before = {p.name for p in Path(tempfile.gettempdir()).glob("inferox-verified-*")}
    pkg = load_package(mlp_package, verify=True)
    copy = pkg.path
    assert copy != mlp_package and pkg.origin == mlp_package and copy.name.startswith("inferox-verified-")
    assert (copy.stat().st_mode & 0o777) == 0o700 and (copy / "model.safetensors").read_bytes() == (mlp_package / "model.safetensors").read_bytes()
    del pkg
    gc.collect()
    assert not copy.exists()
    assert {p.name for p in Path(tempfile.gettempdir()).glob("inferox-verified-*")} <= before


def test_a_server_reload_with_verify_serves_what_it_verified(tmp_path: Path, mlp_package: Path, swap_at_load: Any) -> None:
    pkg = tmp_path / "repo" / "mlp"
    shutil.copytree(mlp_package, pkg)
    (pkg / "serving.toml").write_text('backend = "torch"\n')
    expected = _output(load_model(pkg, backend="torch"))
    loop = asyncio.new_event_loop()
    dp = DataPlane(config=ServerConfig(verify=True), repository=tmp_path / "repo")
    request = InferRequest(id=None, inputs=[InputTensor("input", "FP32", X.shape, X)], outputs=None)
    try:
        loop.run_until_complete(dp.startup())
        for _ in range(2):  # a reload that passes verification while the file is swapped under it
            swap_at_load(pkg, _tampered_copy(mlp_package / "model.safetensors", tmp_path))
            loop.run_until_complete(dp.load("mlp"))
            got = loop.run_until_complete(dp.infer("mlp", request)).outputs[0].data
            np.testing.assert_allclose(got, expected, rtol=1e-6)
            shutil.copy(mlp_package / "model.safetensors", pkg / "model.safetensors")  # put the original back
        swap_at_load(pkg, _tampered_copy(mlp_package / "model.safetensors", tmp_path))
        loop.run_until_complete(dp.load("mlp"))  # the swap lands now: this load is still clean
        with pytest.raises(PackageIntegrityError):
            loop.run_until_complete(dp.load("mlp"))  # the tampered file in the folder is refused
        np.testing.assert_allclose(loop.run_until_complete(dp.infer("mlp", request)).outputs[0].data, expected, rtol=1e-6)
    finally:
        loop.run_until_complete(dp.shutdown())
        loop.close()
