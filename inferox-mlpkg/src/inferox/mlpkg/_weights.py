"""Weights: safetensors inspection and the pickle → safetensors conversion."""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from inferox.core.errors import PackageFormatError, PackageNotFoundError, UnsafePackageError, WeightShapeError
from inferox.mlpkg._format import PICKLE_SUFFIXES
from inferox.mlpkg._regular import open_regular

__all__ = ["check_weight_shapes", "convert_pickle_to_safetensors", "load_pickle_weights", "read_safetensors_header", "safetensors_parameter_count"]

_MAX_HEADER = 100 << 20


def check_weight_shapes(
    header: Mapping[str, Any], expected: Mapping[str, tuple[int, ...]], *, architecture: str, rel: str, optional: Collection[str] = ()
) -> None:
    """Check a safetensors header against the weights an architecture's schema expects for a config.

    Checkpoints often name weights under a prefix (the Hub's ``bert.embeddings…`` for the schema's
    ``embeddings…``): the prefix that finds the most expected names is used, as the backends' loaders
    do. A missing weight is a :class:`PackageFormatError`, a weight of another shape a
    :class:`WeightShapeError`, each naming the weight (and both shapes): such a package would build,
    then fail on every backend. ``optional`` names weights the package may lack (checked for shape
    when present).
    """
    shapes = {k: tuple(int(d) for d in v.get("shape", ())) for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}
    names = list(expected)
    prefixes = {""} | {k[: len(k) - len(n)] for n in names for k in shapes if k.endswith("." + n)}
    prefix = min(prefixes, key=lambda p: (-sum(p + n in shapes for n in names), len(p), p))
    # A task head sits beside a prefixed encoder (bert.encoder… and classifier.weight): a name not
    # under the prefix is looked up bare.
    found = {n: prefix + n if prefix + n in shapes or n not in shapes else n for n in names}
    wrong = [(found[n], shapes[found[n]], tuple(expected[n])) for n in names if found[n] in shapes and shapes[found[n]] != tuple(expected[n])]
    if wrong:
        weight, actual, want = wrong[0]
        more = f" ({len(wrong) - 1} more weight(s) differ too: {', '.join(w for w, _, _ in wrong[1:4])}{', …' if len(wrong) > 4 else ''})" if len(wrong) > 1 else ""
        raise WeightShapeError(
            f"{rel}: weight {weight!r} has shape {list(actual)}, but architecture {architecture!r} expects {list(want)} for this config{more}",
            weight=weight, expected=want, actual=actual, path=rel,
        )
    missing = [found[n] for n in names if found[n] not in shapes and n not in optional]
    if missing:
        raise PackageFormatError(
            f"{rel}: architecture {architecture!r} needs weight {missing[0]!r}, which is missing ({len(missing)} missing, {len(shapes)} tensors present)",
            path=rel, field=missing[0],
        )


def read_safetensors_header(path: Path, *, rel: str | None = None) -> dict[str, Any]:
    """Parse and check a safetensors header without reading the tensors.

    A truncated file, a header that is not JSON, or tensor offsets beyond the end of the file are a
    :class:`PackageFormatError` naming the file.
    """
    name = rel or str(path)
    try:
        with open_regular(path, rel=name) as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(8)
            if len(head) < 8:
                raise PackageFormatError(f"{name} is truncated ({size} bytes): not a safetensors file", path=name)
            (n,) = struct.unpack("<Q", head)
            if n > _MAX_HEADER or 8 + n > size:
                raise PackageFormatError(f"{name} is truncated or not safetensors (header of {n} bytes in a {size}-byte file)", path=name)
            header = json.loads(fh.read(n))
    except FileNotFoundError:
        raise PackageNotFoundError(f"missing weights file {name}", path=name) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise PackageFormatError(f"{name} has a corrupt safetensors header: {exc}", path=name) from exc
    except RecursionError:
        raise PackageFormatError(f"{name} has a corrupt safetensors header: nested too deeply", path=name) from None
    if not isinstance(header, dict):
        raise PackageFormatError(f"{name} has a corrupt safetensors header", path=name)
    data_len = size - 8 - n
    for key, info in header.items():
        if key == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
            raise PackageFormatError(f"{name}: tensor {key!r} has no valid data_offsets (two integers)", path=name, field=key)
        if not 0 <= offsets[0] <= offsets[1] <= data_len:
            raise PackageFormatError(f"{name} is truncated: tensor {key!r} lies beyond the end of the file", path=name, field=key)
    return header


def safetensors_parameter_count(header: Mapping[str, Any]) -> int:
    return sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")


def _torch_load(path: Path) -> dict[str, np.ndarray]:
    import torch

    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise PackageFormatError(f"{path} does not hold a state dict (found {type(obj).__name__})", path=str(path))
    out: dict[str, np.ndarray] = {}
    for k, v in obj.items():
        if isinstance(v, torch.Tensor):
            t = v.detach().cpu()
            if t.dtype == torch.bfloat16:
                t = t.float()
            out[str(k)] = t.contiguous().numpy()
    return out


def load_pickle_weights(path: Path, *, allow_pickle: bool) -> dict[str, np.ndarray]:
    """Tensors of a pickle checkpoint, read with ``torch.load(weights_only=True)``.

    Refused with :class:`UnsafePackageError` (offering the conversion) unless ``allow_pickle``.
    """
    if not allow_pickle:
        raise UnsafePackageError(
            f"{path.name} is a pickle file, which can run code when loaded; convert it once with "
            f"`inferox convert {path} --allow-pickle` (inferox.mlpkg.convert_pickle_to_safetensors), or accept it "
            f"with --allow-pickle on the command line (allow_pickle=True in Python)",
            path=str(path),
        )
    try:
        return _torch_load(path)
    except ImportError as exc:
        raise PackageFormatError(f"reading pickle weights {path.name} needs torch installed", path=str(path)) from exc
    except (PackageFormatError, FileNotFoundError):
        raise
    except Exception as exc:
        raise PackageFormatError(f"cannot read pickle weights {path}: {type(exc).__name__}: {exc}", path=str(path)) from exc


def convert_pickle_to_safetensors(src: str | Path, dst: str | Path) -> Path:
    """Convert a PyTorch pickle checkpoint (``.bin``/``.pt``/``.pth``) to a safetensors file.

    The checkpoint is read with ``torch.load(weights_only=True)``, which refuses arbitrary objects;
    tensors that share memory are stored once each.
    """
    from safetensors.numpy import save_file

    src_p, dst_p = Path(src), Path(dst)
    if not src_p.exists():
        raise PackageNotFoundError(f"no such file: {src_p}", path=str(src_p))
    if src_p.suffix.lower() not in PICKLE_SUFFIXES:
        raise PackageFormatError(f"{src_p} is not a pickle checkpoint ({', '.join(PICKLE_SUFFIXES)})", path=str(src_p))
    tensors = {k: np.ascontiguousarray(v) for k, v in load_pickle_weights(src_p, allow_pickle=True).items()}
    dst_p.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst_p.with_name(dst_p.name + ".partial")
    save_file(tensors, str(tmp), metadata={"format": "pt", "converted_from": src_p.name})
    # safetensors creates its file 0o600; give it the mode any other new file gets (0o666 less
    # the umask), so a converted checkpoint is as readable as the folder it lands in.
    mask = os.umask(0o022)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)
    tmp.replace(dst_p)
    return dst_p


def merge_safetensors(shards: list[Path], dst: Path) -> None:
    """Merge sharded safetensors files into one (weights are stored once, in one file)."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    tensors: dict[str, np.ndarray] = {}
    for shard in shards:
        read_safetensors_header(shard)
        with safe_open(str(shard), framework="numpy") as f:
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    save_file(tensors, str(dst), metadata={"format": "pt"})
