"""Plugins made in a test: a backend spec or an architecture factory registered for one test,
through the same hooks a published plugin implements, in-process (:func:`make_plugin`) or as a REAL
installed distribution that discovery finds through its entry point (:func:`make_distribution`)."""

from __future__ import annotations

import importlib.metadata as md
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

NUMPY_BACKEND = "inferox_numpy.backend:NumpyBackend"  # the reference backend's loader (tests/plugins/inferox-numpy)


def make_plugin(
    *, backends: Mapping[str, str] | None = None, architectures: Mapping[tuple[str, str], Callable[..., Any] | str] | None = None
) -> object:
    """A plugin object for ``registry.register_plugin(...)``: ``backends`` maps a backend name to its
    loader (``"module:Class"``), ``architectures`` maps (backend, architecture) to a factory."""
    from inferox.core import BackendSpec, hookimpl

    class _Plugin:
        @hookimpl
        def inferox_contract_version(self) -> str:
            return "1.0"

        @hookimpl
        def inferox_register_backends(self, register: Callable[[BackendSpec], None]) -> None:
            for name, loader in (backends or {}).items():
                register(BackendSpec(name, loader=loader))

        @hookimpl
        def inferox_register_architectures(self, register: Callable[..., None]) -> None:
            for (backend, arch), factory in (architectures or {}).items():
                register(backend, arch, factory)

    return _Plugin()


def make_distribution(
    site: Path,
    name: str,
    entry_points: Mapping[str, str],
    *,
    version: str = "1.0.0",
    modules: Mapping[str, str] | None = None,
    group: str = "inferox",
) -> md.PathDistribution:
    """A real installed distribution: ``site/<name>-<version>.dist-info`` with METADATA and an
    ``entry_points.txt`` naming ``entry_points`` in ``group``, plus plugin modules written to ``site``."""
    site.mkdir(parents=True, exist_ok=True)
    dist_info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")
    lines = [f"[{group}]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for module, source in (modules or {}).items():
        path = site / (module.replace(".", "/") + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    return md.PathDistribution(dist_info)


#: The source of a REAL third-party plugin module (written to a site folder by :func:`make_distribution`,
#: found through its entry point): an ``ArrayBackend`` over NumPy and its own ``mlp``, written with the
#: public ``inferox.core`` API only, each with one of the mistakes a plugin author makes switched on.
_NUMPY_MLP_PLUGIN = """
import math

import numpy as np

from inferox.core import ArrayBackend, BackendSpec, ConfigError, DType, DTypeError, Model, TensorSpec, hookimpl

NAME = {name!r}
_erf = np.frompyfunc(math.erf, 1, 1)


class Backend(ArrayBackend):
    name = NAME
    xp = np

    def cast(self, tensor, dtype):
        if {cast_through_f32!r}:  # exact for small values, wrong for 2**40 + 1
            with np.errstate(over="ignore"):
                return self.wrap(tensor.numpy().astype(np.float32).astype(DType.parse(dtype).to_numpy()))
        return super().cast(tensor, dtype)


def gelu(x):
    if {gelu!r} == "tanh":  # the approximation, where the architecture means the exact GELU
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + np.asarray(_erf(x / math.sqrt(2)), dtype=np.float64))


ACTIVATIONS = {{"gelu": gelu, "relu": lambda x: np.maximum(x, 0), "tanh": np.tanh, "identity": lambda x: x, "sigmoid": lambda x: 1 / (1 + np.exp(-x))}}


class MLP(Model):
    def __init__(self, *, backend, metadata, config, weights, device=None):
        super().__init__(backend=backend, metadata=metadata, device=device)
        self.sizes, self.activation = list(config["layer_sizes"]), config.get("activation", "relu")
        n = len(self.sizes) - 1
        self.layers = [(np.asarray(weights[f"layers.{{i}}.weight"], np.float64), np.asarray(weights[f"layers.{{i}}.bias"], np.float64)) for i in range(n)]

    @property
    def input_specs(self):
        return [TensorSpec("input", DType.F32, (None, self.sizes[0]))]

    @property
    def output_specs(self):
        return [TensorSpec("output", DType.F32, (None, self.sizes[-1]))]

    def forward(self, inputs):
        if {crash!r}:
            raise RuntimeError("kernel exploded")
        x = np.asarray(inputs["input"], np.float64)
        for i, (w, b) in enumerate(self.layers):
            x = x @ w.T + b
            if i < len(self.layers) - 1:
                x = ACTIVATIONS[self.activation](x)
        return {{"output": x.astype(np.float32)}}


def create_mlp(*, backend, config, weights, metadata, device=None, dtype=None, **options):
    if dtype is not None and DType.parse(dtype) is not DType.F32:
        if {refuse_dtype!r} == "ConfigError":  # how 1.0 plugins refused a dtype
            raise ConfigError("only f32 models", field="dtype", value=str(dtype))
        raise DTypeError("only f32 models", name="dtype", expected="f32", actual=str(dtype))
    if not isinstance(weights, dict):
        from safetensors.numpy import load_file

        weights = load_file(str(weights))
    return MLP(backend=backend, metadata=metadata, config=config, weights=weights, device=backend.check_device(device))


@hookimpl
def inferox_contract_version():
    return {version!r}


@hookimpl
def inferox_register_backends(register):
    register(BackendSpec(NAME, loader=__name__ + ":Backend", requires=("numpy",)))


@hookimpl
def {hook}(register):
    register(NAME, "mlp", __name__ + ":create_mlp")
"""


def numpy_mlp_plugin(
    name: str,
    *,
    version: str = "1.2",
    hook: str = "inferox_register_implementations",
    gelu: str = "exact",
    refuse_dtype: str = "DTypeError",
    cast_through_f32: bool = False,
    crash: bool = False,
) -> str:
    """The source of a plugin module bringing backend ``name`` (NumPy) and its ``mlp``, with the chosen
    defects: ``gelu="tanh"`` (the approximation for the exact GELU), ``refuse_dtype="ConfigError"``,
    ``cast_through_f32``, ``crash`` (every forward raises ``RuntimeError``)."""
    return _NUMPY_MLP_PLUGIN.format(
        name=name, version=version, hook=hook, gelu=gelu, refuse_dtype=refuse_dtype, cast_through_f32=cast_through_f32, crash=crash
    )
