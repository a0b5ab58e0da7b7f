"""Default outputs: which outputs a request that names none gets, recorded at build time.

``model_info.json``'s ``default_outputs`` lists them. At build time it comes from the source:
a sentence-transformers folder defaults to ``sentence_embedding`` (the others are there on
request), otherwise the architecture's schema says (``ArchitectureSchema.default_outputs``), and
when that is every output the field is left out. A package without the field — every package built before it
existed — gives every output, as it always did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from inferox.core.errors import PackageFormatError
from inferox.core.spec import TensorSpec

__all__ = ["DEFAULT_OUTPUTS_FIELD", "build_default_outputs", "read_default_outputs"]

#: The ``model_info.json`` field.
DEFAULT_OUTPUTS_FIELD = "default_outputs"
#: What a sentence-transformers model is for.
_SENTENCE_EMBEDDING = "sentence_embedding"


def build_default_outputs(
    architecture: Any, outputs: Sequence[TensorSpec], preprocessing: Mapping[str, Any], config: Mapping[str, Any]
) -> list[str] | None:
    """The default outputs to record for a package being built (``None``: every output).

    ``architecture`` is mlpkg's ``PackageArchitecture``: its ``default_outputs(config, pre)`` is the
    schema's choice, a typed package error when the schema refuses the config.
    """
    names = [s.name for s in outputs]
    if preprocessing.get("source") == "sentence-transformers" and _SENTENCE_EMBEDDING in names:
        return [_SENTENCE_EMBEDDING]
    chosen = [n for n in architecture.default_outputs(config, preprocessing) if n in names]
    return chosen if chosen and len(chosen) < len(names) else None


def read_default_outputs(info: Mapping[str, Any], outputs: Sequence[TensorSpec], *, rel: str) -> tuple[str, ...] | None:
    """``model_info.json``'s default outputs, checked against its outputs (``None`` when absent)."""
    value = info.get(DEFAULT_OUTPUTS_FIELD)
    if value is None:
        return None
    names = {s.name for s in outputs}
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v in names for v in value):
        raise PackageFormatError(f"{rel}: {DEFAULT_OUTPUTS_FIELD} must be a non-empty list of output names {sorted(names)}", path=rel, field=DEFAULT_OUTPUTS_FIELD)
    return tuple(value)
