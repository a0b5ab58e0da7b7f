"""Composing a served model from a package: the one place that does it.

:func:`compose_model` loads a package's instances (one per backend asked for), the text encoder
that turns strings into its inputs (with the package's truncation), the per-model options and the
outputs a request gets when it names none. ``Engine.load``, the ``inferox`` CLI and the server's
data plane all call it, so a package behaves the same wherever it is loaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inferox.core.errors import ArchitectureNotFoundError, BackendUnavailableError, ConfigError
from inferox.core.model import AnyModel
from inferox.engine._config import ModelOptions

__all__ = ["BackendChoice", "ComposedModel", "choose_backend", "compose_model", "package_text_encoder"]

log = logging.getLogger("inferox.engine")


@dataclass(frozen=True)
class BackendChoice:
    """Which backend a model was loaded on, and why.

    ``ranking`` lists the installed backends that implement the architecture, fastest first, each
    with the speed it declares for the architecture on ``device_kind`` (relative to
    inferox-torch's; ``None``: none declared). ``how`` is ``"asked"`` (a backend was named),
    ``"preference"`` (the engine's ``backend_preference``) or ``"fastest"`` (the declared ranking).
    """

    backend: str
    reason: str
    how: str = "fastest"
    device_kind: str = "cpu"
    ranking: tuple[tuple[str, float | None], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "how": self.how,
            "reason": self.reason,
            "device_kind": self.device_kind,
            "ranking": [{"backend": b, "speed": s} for b, s in self.ranking],
        }


def _speed_text(ranking: Sequence[tuple[str, float | None]]) -> str:
    return ", ".join(f"{b} {'?' if s is None else f'{s:g}x'}" for b, s in ranking)


def choose_backend(
    package: Any,
    *,
    device: str | None = None,
    preference: Sequence[str] = (),
    int8: bool = False,
) -> BackendChoice:
    """The backend to serve ``package`` on when none is named.

    The first of ``preference`` (the engine's ``backend_preference``) that implements the
    architecture wins; without a preference, the installed backend that declares the highest speed
    for the architecture on the device kind (``device``'s, else ``cpu``; see
    ``inferox.core.ArchitectureSpec.speed``), a backend declaring none ranking last and ties going
    to the package's own ``backends`` order, then the name. The chosen backend's framework is
    imported (it is about to load the model); the others' never are — a backend whose import
    fails is passed over, named in the reason. With ``int8`` only a backend offering the ``int8``
    load option (``Backend.load_options``) qualifies.
    """
    from inferox.core.device import DeviceId
    from inferox.core.plugins import get_registry

    reg = get_registry()
    arch = package.architecture
    installed = reg.backend_names()
    able = set(reg.backends_for(arch)) | {b for b in getattr(package, "backend_overrides", ()) if b in installed}
    kind = str(DeviceId.parse(device).kind) if device else "cpu"
    if not able:
        raise ArchitectureNotFoundError(arch, available=[])
    order = [b.lower() for b in getattr(package, "backends", ())]

    def rank(b: str) -> tuple[bool, float, int, str]:
        speed = reg.declared_speed(b, arch, kind)
        return (speed is None, -(speed or 0.0), order.index(b) if b in order else len(order), b)

    preferred = [b for b in preference if b in able]
    how = "preference" if preferred else "fastest"
    candidates = preferred or sorted((b for b in able if reg.backend_info(b).available), key=rank)
    ranking = tuple((b, reg.declared_speed(b, arch, kind)) for b in sorted(able, key=rank))
    passed: list[str] = []
    for name in candidates:
        try:
            backend = reg.get_backend(name)
        except BackendUnavailableError as exc:
            passed.append(f"{name} unavailable: {exc.reason}")
            continue
        if int8 and "int8" not in backend.load_options:
            passed.append(f"{name} has no int8 option")
            continue
        if how == "preference":
            reason = f"the first of backend_preference ({', '.join(preference)}) that implements {arch}"
        elif len(ranking) == 1:
            reason = f"the only installed backend that implements {arch}"
        elif ranking[0][1] is None:
            reason = f"no installed backend declares its speed for {arch} on {kind}; " + (
                f"the package's preference ({', '.join(order)})" if order else "the first by name"
            )
        else:
            reason = f"the fastest installed backend for {arch} on {kind} by the speeds backends declare ({_speed_text(ranking)}; torch = 1)"
        if passed:
            reason += f"; passed over: {'; '.join(passed)}"
        return BackendChoice(name, reason, how=how, device_kind=kind, ranking=ranking)
    if int8 and all(not p.endswith("unavailable") for p in passed):
        raise ConfigError(
            f"int8 is not an option of any installed backend implementing {arch} ({', '.join(candidates)}); install inferox-onnx", field="int8", value=True
        )
    raise BackendUnavailableError("any", reason=f"no backend for architecture {arch!r} could load: {'; '.join(passed) or 'none installed'}")


def _check_options(backend: str, int8: bool) -> None:
    """A load option the backend does not offer is refused, naming the option and the backend (a
    factory would silently ignore it)."""
    if not int8:
        return
    from inferox.core.plugins import get_registry

    reg = get_registry()
    if "int8" in reg.get_backend(backend).load_options:
        return
    # Only backends already imported are asked: importing every framework to phrase an error is not worth it.
    offering = [n for n in reg.backend_names() if reg.is_loaded(n) and "int8" in reg.get_backend(n).load_options]
    hint = f"backends offering it: {', '.join(offering)}" if offering else "inferox-onnx offers it"
    err = ConfigError(f"int8 is not an option of the {backend} backend ({hint})", field="int8", value=True)
    err.details["backend"] = backend
    raise err


def _record_choice(model: AnyModel, choice: BackendChoice) -> None:
    """Put the choice in the model's metadata (``extra["backend_choice"]``), where model info, the
    server's model metadata and ``inferox run`` read it."""
    inner = model.model
    meta = inner.metadata
    inner.metadata = dataclasses.replace(meta, extra={**dict(meta.extra), "backend_choice": choice.to_dict()})


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
    #: Why each instance is on its backend, in the order of :attr:`instances`.
    choices: list[BackendChoice] = field(default_factory=list)

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
    """Bytes of a package's weights (an estimate of what loading it takes; 0 when unknown): the
    tensor data of a safetensors file — its size less the 8-byte length and the JSON header, which
    for a small model is most of the file — else the file's size."""
    path = getattr(pkg, "weights_path", None)
    if path is None:
        return 0
    try:
        size = int(os.path.getsize(path))
        if str(path).endswith(".safetensors") and size >= 8:
            with open(path, "rb") as fh:
                header = int.from_bytes(fh.read(8), "little")
            if 0 <= header <= size - 8:
                return size - 8 - header
        return size
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
    int8: bool = False,
    trust_code: bool = False,
    allow_pickle: bool = False,
    verify: bool = False,
    options: ModelOptions | None = None,
    check_budget: Callable[[str, int], None] | None = None,
) -> ComposedModel:
    """Load ``package`` (a path or an ``inferox.mlpkg.Package``) for serving.

    ``backends`` lists the backends to load it on; ``None`` chooses one with
    :func:`choose_backend` (the first of ``preference`` that implements the architecture, else
    the fastest installed one), and only that one is loaded. Why each instance is on its backend
    is logged, kept in :attr:`ComposedModel.choices` and put in the model's
    ``metadata.extra["backend_choice"]``. ``device``, ``dtype`` and ``threads`` are applied at
    load; ``int8`` asks for an int8-quantised model (an option of the onnx backend: another
    backend refuses it with a :class:`ConfigError` naming ``int8`` and the backend); ``verify``
    checks the files' sha256 first. ``check_budget(backend, bytes)`` is called before each
    backend's weights are read, so a memory budget refuses before allocating. Instances already
    loaded are released when a later one fails.
    """
    from inferox import mlpkg  # lazily: the engine imports without mlpkg's dependencies

    if isinstance(package, mlpkg.Package):
        pkg = mlpkg.load_package(package.path, verify=True) if verify else package
    else:
        pkg = mlpkg.load_package(Path(package), verify=verify)
    extra: dict[str, Any] = {} if threads is None else {"threads": threads}
    if int8:
        extra["int8"] = True
    composed = ComposedModel(name=pkg.name, package=pkg, instances=[], options=options or ModelOptions(), default_outputs=package_default_outputs(pkg))
    try:
        for backend in backends or (None,):
            if backend is None:
                choice = choose_backend(pkg, device=device, preference=preference, int8=int8)
            else:
                choice = BackendChoice(backend.strip().lower(), "named by the caller (--backend, backend=, serving.toml backends)", how="asked")
                if int8:
                    _check_options(choice.backend, int8)
            log.info("model %s: backend %s — %s", pkg.name, choice.backend, choice.reason)
            estimate = package_bytes(pkg)
            if check_budget is not None and estimate:
                check_budget(choice.backend, estimate)
            model = mlpkg.load_model(pkg, backend=choice.backend, device=device, dtype=dtype, trust_code=trust_code, allow_pickle=allow_pickle, **extra)
            _record_choice(model, choice)
            composed.instances.append(model)
            composed.choices.append(choice)
        composed.text_encoder = package_text_encoder(pkg, composed.instances[0])
    except BaseException:
        composed.close()
        raise
    return composed
