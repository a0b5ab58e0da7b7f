"""Constants and small validators of the package format (see ``docs/package-format.md``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from inferox.core.errors import PackageFormatError, PackageNotFoundError, PackageVersionError
from inferox.mlpkg._regular import open_regular

__all__ = [
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "GOLDEN_ATOL",
    "GOLDEN_INPUTS",
    "GOLDEN_OUTPUTS",
    "GOLDEN_RTOL",
    "LEGACY_GOLDEN_TOLERANCE",
    "METADATA_FILE",
    "MODEL_INFO_FILE",
    "PICKLE_SUFFIXES",
    "PREPROCESSING_FILE",
    "TMP_PREFIX",
    "WEIGHTS_FILE",
    "check_format_version",
    "read_json",
]

#: The format version this inferox writes; it reads any "1.x" package and refuses "2.0" and later.
FORMAT_VERSION = "1.0"

METADATA_FILE = "metadata.json"
MODEL_INFO_FILE = "model_info.json"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PREPROCESSING_FILE = "preprocessing.json"
GOLDEN_INPUTS = "golden/inputs.safetensors"
GOLDEN_OUTPUTS = "golden/outputs.safetensors"
#: The tolerance a build records for its golden case, ``|got - want| <= atol + rtol * |want|`` per
#: element, used by ``verify_package`` for the golden outputs and every backend against the
#: architecture's float64 reference. Measured (benchmarks/models/bench_verify_tolerance.py, results in
#: benchmarks/results/verify_tolerance.md): float32 backends on CPU differ from the reference by at
#: most 2.9e-6 on all-MiniLM-L6-v2, while a tanh GELU in place of the exact one moves MiniLM by
#: 3.9e-3 and small mlp/bert examples by 1.6e-4 to 1.5e-3 — where the old rtol=1e-3 let some pass.
GOLDEN_ATOL, GOLDEN_RTOL = 1e-5, 1e-5
#: What builds recorded before the tolerance was measured: read as the current defaults.
LEGACY_GOLDEN_TOLERANCE = (1e-4, 1e-3)
BACKENDS_DIR = "backends"

#: Prefix of the temporary folders a build assembles in; leftovers are debris from a crash.
TMP_PREFIX = ".inferox-tmp-"
#: Weights stored with pickle, refused unless the caller opts in.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")

#: Tokenizer files copied from a source when present.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "sentencepiece.bpe.model",
    "spiece.model",
)
#: sentence-transformers configuration copied verbatim (and normalised into preprocessing.json).
SENTENCE_TRANSFORMERS_FILES = (
    "sentence_bert_config.json",
    "modules.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
)


def read_json(path: Path, *, rel: str | None = None) -> Any:
    """Parse a JSON file; a missing file or bad JSON is a package error naming the file."""
    name = rel or str(path)
    try:
        with open_regular(path, rel=name, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise PackageNotFoundError(f"missing {name}", path=name) from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, and ints beyond Python's digit limit
        raise PackageFormatError(f"{name} is not valid JSON: {exc}", path=name) from exc
    except RecursionError:
        raise PackageFormatError(f"{name} is not valid JSON: nested too deeply", path=name) from None
    except IsADirectoryError:  # pragma: no cover - open_regular reports folders itself
        raise PackageFormatError(f"{name} is a folder, not a JSON file", path=name) from None


def write_json(path: Path, data: Any) -> None:
    """Write JSON deterministically (sorted keys, trailing newline) and fsync it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, ensure_ascii=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())


def check_format_version(value: Any, *, path: str = METADATA_FILE) -> str:
    """Accept ``"1.x"``; refuse a newer major (``PackageVersionError``) or garbage (``PackageFormatError``)."""
    try:
        major_s, _, minor_s = str(value).partition(".")
        major, _minor = int(major_s), int(minor_s or 0)
    except ValueError:
        raise PackageFormatError(f"unreadable format_version {value!r}", path=path, field="format_version") from None
    ours = int(FORMAT_VERSION.split(".")[0])
    if major > ours:
        raise PackageVersionError(
            f"package format {value} is newer than this inferox reads ({FORMAT_VERSION}); upgrade inferox-mlpkg",
            path=path,
            field="format_version",
        )
    if major < 1:
        raise PackageVersionError(f"package format {value} predates {FORMAT_VERSION}; rebuild the package", path=path, field="format_version")
    return str(value)
