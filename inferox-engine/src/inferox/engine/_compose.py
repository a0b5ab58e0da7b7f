"""Composing a served model from a package: the one place that does it.

:func:`compose_model` loads a package's instances (one per backend asked for), the text encoder
that turns strings into its inputs (with the package's truncation), the per-model options and the
outputs a request gets when it names none. ``Engine.load``, the ``inferox`` CLI and the server's
data plane all call it, so a package behaves the same wherever it is loaded.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inferox.core.model import AnyModel
from inferox.engine._config import ModelOptions

__all__ = ["ComposedModel", "compose_model", "package_text_encoder"]


@dataclass
class ComposedModel:
    """What :func:`compose_model` built: everything needed to register and serve a package."""

    #: The package's model name.
    name: str
    #: The loaded :class:`inferox.mlpkg.Package`.
    package: Any
    #: One loaded model per backend asked for, in that order (the first answers by default).
    instances: list[AnyModel]
    #: Turns text into the model's inputs (``None``: the model takes no text).
    text_encoder: Any = None
    #: Per-model engine options (batching, queue, timeout).
    options: ModelOptions = field(default_factory=ModelOptions)
    #: Outputs a request gets when it names none (``None``: every output).
    default_outputs: tuple[str, ...] | None = None

    def close(self) -> None:
        """Release every instance (after a failed registration)."""
        for inst in self.instances:
            with contextlib.suppress(Exception):
                inst.model.close()


def package_text_encoder(pkg: Any, model: AnyModel | None = None) -> Any:
    """The text encoder of a package: the model's own ``text_encoder`` when it carries one, else a
    :class:`~inferox.core.text.TextEncoder` over the package's ``tokenizer.json`` truncating to
    the package's ``max_seq_length`` (capped by ``max_position_embeddings``); ``None`` when the
    model takes no token ids or the package has no tokenizer."""
    if model is not None:
        own = getattr(model.model, "text_encoder", None)
        if own is not None:
            return own
        if not any(s.name == "input_ids" for s in model.input_specs):
            return None
    path = getattr(pkg, "tokenizer_path", None)
    if path is None:
        return None
    from inferox.core.text import TextEncoder

    config = getattr(pkg, "config", None)
    limit = config.get("max_position_embeddings") if isinstance(config, Mapping) else None
    return TextEncoder.from_file(path, max_length=getattr(pkg, "max_seq_length", None), limit=limit if isinstance(limit, int) else None)


def package_bytes(pkg: Any) -> int:
    """Size of a package's weights file (an estimate of what loading it takes; 0 when unknown)."""
    path = getattr(pkg, "weights_path", None)
    if path is None:
        return 0
    try:
        return int(os.path.getsize(path))
    except (OSError, TypeError):
        return 0


def package_default_outputs(pkg: Any) -> tuple[str, ...] | None:
    """The outputs the package says a request gets when it names none (``None``: all of them)."""
    value = getattr(pkg, "default_outputs", None)
    return tuple(value) if value else None


def compose_model(
    package: Any,
    *,
    backends: Sequence[str | None] = (None,),
    preference: Sequence[str] = (),
    device: str | None = None,
    dtype: Any = None,
    threads: int | None = None,
    trust_code: bool = False,
    allow_pickle: bool = False,
    verify: bool = False,
    options: ModelOptions | None = None,
    check_budget: Callable[[str, int], None] | None = None,
) -> ComposedModel:
    """Load ``package`` (a path or an ``inferox.mlpkg.Package``) for serving.

    ``backends`` lists the backends to load it on (``None``: the first of ``preference`` that
    implements the architecture, else mlpkg's choice); ``device``, ``dtype`` and ``threads`` are
    applied at load; ``verify`` checks the files' sha256 first. ``check_budget(backend, bytes)``
    is called before each backend's weights are read, so a memory budget refuses before
    allocating. Instances already loaded are released when a later one fails.
    """
    from inferox import mlpkg  # lazily: the engine imports without mlpkg's dependencies

    if isinstance(package, mlpkg.Package):
        pkg = mlpkg.load_package(package.path, verify=True) if verify else package
    else:
        pkg = mlpkg.load_package(Path(package), verify=verify)
    extra: dict[str, Any] = {} if threads is None else {"threads": threads}
    composed = ComposedModel(name=pkg.name, package=pkg, instances=[], options=options or ModelOptions(), default_outputs=package_default_outputs(pkg))
    try:
        for backend in backends or (None,):
            if backend is None and preference:
                from inferox.core.plugins import get_registry

                able = get_registry().backends_for(pkg.architecture)
                backend = next((b for b in preference if b in able), None)
            estimate = package_bytes(pkg)
            if check_budget is not None and estimate and backend is not None:
                check_budget(backend, estimate)
            composed.instances.append(
                mlpkg.load_model(pkg, backend=backend, device=device, dtype=dtype, trust_code=trust_code, allow_pickle=allow_pickle, **extra)
            )
        composed.text_encoder = package_text_encoder(pkg, composed.instances[0])
    except BaseException:
        composed.close()
        raise
    return composed
