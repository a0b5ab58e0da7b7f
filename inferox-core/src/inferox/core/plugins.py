"""Plugin discovery: the plugin manager, lazy backend specs, architecture schemas and factories.

:func:`get_registry` builds (once, on first call — never at import) a :class:`PluginRegistry`
from the ``inferox`` entry-point group. The registry is the typed wrapper callers use; nobody
outside this module calls ``pm.hook`` directly. Discovery imports plugin modules only — which import
no framework — so listing backends and their versions is cheap. A plugin whose import raises, or
that speaks another contract version, is recorded in :attr:`PluginRegistry.failures` by name
instead of crashing discovery.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata as md
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from inferox.core import hookspecs
from inferox.core.constants import (
    BUILTIN_PLUGIN,
    CONTRACT_VERSION,
    ENTRY_POINT_GROUP,
    PROJECT_NAME,
    STANDARD_BACKEND_DISTRIBUTIONS,
    blocked_plugins,
)
from inferox.core.errors import (
    ArchitectureNotFoundError,
    BackendUnavailableError,
    ConfigError,
    InferoxError,
    PluginError,
    PluginVersionError,
)
from inferox.core.schema import ArchitectureSchema

if TYPE_CHECKING:
    from inferox.core.backend import Backend
    from inferox.core.model import Model

__all__ = [
    "ArchitectureSpec",
    "BackendInfo",
    "BackendSpec",
    "PluginFailure",
    "PluginRegistry",
    "check_contract_version",
    "get_backend",
    "get_registry",
    "load_object",
    "reset_registry",
]

Factory = Callable[..., "Model"]


def load_object(path: str) -> Any:
    """Import ``"package.module:attr.sub"`` and return the attribute."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise PluginError(f"invalid loader path {path!r}: expected 'module:attribute'")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class BackendSpec:
    """A lazily loaded backend: its name, the ``"module:Class"`` that implements it, and the
    distributions (``("torch",)``) whose presence and version describe it.

    ``definitions=True`` says the backend declares an array namespace
    (:meth:`Backend.array_namespace <inferox.core.Backend.array_namespace>`): it then runs every
    architecture that has a definition, without registering a factory — and the registry lists them
    for it without importing the framework. ``speed`` is what such a backend declares for the
    architectures it runs that way (see :attr:`ArchitectureSpec.speed`), keyed by architecture name
    or, for every architecture of a schema ``family`` without an entry of its own, by the family
    (``{"encoder": {"cpu": 1.5}, "mlp": {"cpu": 1.2}}``).
    """

    name: str
    loader: str
    requires: tuple[str, ...] = ()
    description: str = ""
    plugin: str = ""
    definitions: bool = False
    speed: Mapping[str, Mapping[str, float]] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ArchitectureSpec:
    backend: str
    name: str
    factory: str | Factory
    plugin: str = ""
    #: The speed the backend declares for this architecture per device kind, as
    #: ``(("cpu", 1.5), ...)``: throughput relative to inferox-torch's implementation on that
    #: device kind (1.0). The engine serves a model on the fastest installed backend by it; a
    #: benchmark (``benchmarks/engine/bench_backend_choice.py``) checks the declarations.
    speed: tuple[tuple[str, float], ...] = ()

    def load(self) -> Factory:
        return load_object(self.factory) if isinstance(self.factory, str) else self.factory


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded, and why."""

    name: str
    error: str
    exception: BaseException | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class BackendInfo:
    """What ``inferox backends`` shows about one backend, gathered without importing the framework
    (unless the backend was already loaded)."""

    name: str
    plugin: str
    plugin_version: str | None
    versions: dict[str, str | None]
    installed: bool
    reason: str | None
    description: str = ""

    @property
    def available(self) -> bool:
        return self.installed and self.reason is None


def _dist_version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def check_contract_version(plugin: str, version: Any) -> None:
    """Refuse a plugin whose contract version core cannot honour (naming both versions)."""
    core_major, core_minor = (int(p) for p in CONTRACT_VERSION.split("."))
    try:
        major_s, _, minor_s = str(version).partition(".")
        major, minor = int(major_s), int(minor_s or 0)
    except ValueError:
        raise PluginVersionError(f"plugin {plugin!r} declares an unreadable contract version {version!r}; core speaks {CONTRACT_VERSION}", plugin=plugin) from None
    if major != core_major or minor > core_minor:
        raise PluginVersionError(
            f"plugin {plugin!r} was built for inferox contract {version}, but inferox-core speaks {CONTRACT_VERSION}; "
            "upgrade whichever is older",
            plugin=plugin,
        )


class PluginRegistry:
    """Discovered plugins, backends, architecture schemas and factories; thread-safe backend instantiation.

    Core's built-in plugin (the ``mlp`` and ``bert`` schemas) is registered first, under the name
    ``inferox-core``, through the same hook as every other plugin; ``builtin=False`` leaves it out.
    """

    def __init__(self, *, builtin: bool = True) -> None:
        self.pm = pluggy.PluginManager(PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self._backends: dict[str, BackendSpec] = {}
        self._architectures: dict[tuple[str, str], ArchitectureSpec] = {}
        #: ``{backend: {architecture or family: speed}}`` from ``BackendSpec.speed``, checked.
        self._definition_speeds: dict[str, dict[str, tuple[tuple[str, float], ...]]] = {}
        self._schemas: dict[str, ArchitectureSchema] = {}
        self._model_types: dict[str, str] = {}
        self._instances: dict[str, Backend] = {}
        self._instance_errors: dict[str, str] = {}
        self._plugin_versions: dict[str, str | None] = {}
        self._contract_versions: dict[str, str] = {}
        self._distributions: dict[str, str] = {}
        self.failures: list[PluginFailure] = []
        self.blocked: list[str] = []
        self._lock = threading.RLock()
        if builtin:
            from inferox.core import _builtin

            self.register_plugin(_builtin, name=_builtin.PLUGIN_NAME, version=_dist_version("inferox-core"), distribution="inferox-core")

    # -- loading plugins ------------------------------------------------------------------------
    def load_entry_points(self, distributions: Iterable[md.Distribution] | None = None, *, blocked: Iterable[str] | None = None) -> None:
        """Register every plugin named in the ``inferox`` entry-point group.

        ``distributions`` defaults to every installed distribution; tests pass real
        ``importlib.metadata.Distribution`` objects. ``blocked`` defaults to ``INFEROX_BLOCKED_PLUGINS``.
        """
        block = {b.lower() for b in (blocked if blocked is not None else blocked_plugins())}
        seen: set[str] = {name for name, _ in self.pm.list_name_plugin()}  # the built-in plugin's name is taken
        for dist in distributions if distributions is not None else md.distributions():
            for ep in dist.entry_points:
                if ep.group != ENTRY_POINT_GROUP or ep.name in seen:
                    continue
                seen.add(ep.name)
                if ep.name.lower() in block:
                    self.blocked.append(ep.name)
                    continue
                try:
                    module = ep.load()
                except Exception as exc:  # noqa: BLE001 - a broken plugin must not break discovery
                    self.failures.append(PluginFailure(ep.name, f"import of {ep.value!r} failed: {type(exc).__name__}: {exc}", exc))
                    continue
                if not isinstance(module, ModuleType):
                    # A common slip: "pkg.plugin:MyBackend" instead of "pkg.plugin". Say so, rather
                    # than report the hooks a class does not have.
                    err = PluginError(
                        f"entry point {ep.name!r} = {ep.value!r} names a {type(module).__name__}, not a module: an inferox entry point "
                        f"must name the plugin module that holds the hooks (e.g. {ep.value.partition(':')[0]!r})",
                        plugin=ep.name,
                    )
                    self.failures.append(PluginFailure(ep.name, str(err), err))
                    continue
                try:
                    self.register_plugin(module, name=ep.name, version=dist.version, distribution=dist.metadata["Name"])
                except InferoxError as exc:
                    self.failures.append(PluginFailure(ep.name, str(exc), exc))

    def register_plugin(self, plugin: ModuleType | object, *, name: str, version: str | None = None, distribution: str | None = None) -> None:
        """Register one plugin object or module (checks its contract, then collects its registrations).

        ``version`` and ``distribution`` describe where the plugin comes from (what ``pip`` installed);
        discovery fills them in from the entry point's distribution, and errors name them.
        """
        impl = getattr(plugin, "inferox_contract_version", None)
        if impl is None:
            raise PluginVersionError(f"plugin {name!r} does not declare inferox_contract_version(); core speaks {CONTRACT_VERSION}", plugin=name)
        declared = impl()
        check_contract_version(name, declared)
        with self._lock:
            self.pm.register(plugin, name=name)
            self._plugin_versions[name] = version
            self._contract_versions[name] = str(declared)
            if distribution:
                self._distributions[name] = distribution
            try:
                self._collect(name)
            except InferoxError:
                self.pm.unregister(name=name)
                self._contract_versions.pop(name, None)
                self._distributions.pop(name, None)
                raise

    def _collect(self, plugin_name: str) -> None:
        new_backends: list[BackendSpec] = []
        new_archs: list[ArchitectureSpec] = []

        def register_backend(spec: BackendSpec) -> None:
            if not isinstance(spec, BackendSpec):
                raise PluginError(f"plugin {plugin_name!r} registered {spec!r}, not a BackendSpec", plugin=plugin_name)
            new_backends.append(dataclasses.replace(spec, name=spec.name.lower(), requires=tuple(spec.requires), plugin=plugin_name))

        def register_architecture(backend: str, name: str, factory: str | Factory, *, speed: Mapping[str, float] | None = None) -> None:
            new_archs.append(ArchitectureSpec(backend.lower(), name.lower(), factory, plugin_name, _check_speed(plugin_name, speed)))

        new_schemas: list[ArchitectureSchema] = []

        def register_schema(schema: ArchitectureSchema) -> None:
            if not isinstance(schema, ArchitectureSchema):
                raise PluginError(f"plugin {plugin_name!r} registered {schema!r}, not an ArchitectureSchema", plugin=plugin_name)
            new_schemas.append(dataclasses.replace(schema, name=schema.name.lower(), model_types=tuple(t.lower() for t in schema.model_types), plugin=plugin_name))

        # Call this plugin's implementations only, so each registration is attributed to its plugin.
        for impl in self.pm.hook.inferox_register_backends.get_hookimpls():
            if impl.plugin_name == plugin_name:
                impl.function(register=register_backend)
        # inferox_register_architectures is the 1.0/1.1 name of inferox_register_implementations: both are read.
        for hook in (self.pm.hook.inferox_register_implementations, self.pm.hook.inferox_register_architectures):
            for impl in hook.get_hookimpls():
                if impl.plugin_name == plugin_name:
                    impl.function(register=register_architecture)
        for impl in self.pm.hook.inferox_register_schemas.get_hookimpls():
            if impl.plugin_name == plugin_name:
                impl.function(register=register_schema)
        model_types: dict[str, str] = {}
        for schema in new_schemas:
            if schema.name in self._schemas or any(s.name == schema.name for s in new_schemas if s is not schema):
                other = self._schemas[schema.name].plugin if schema.name in self._schemas else plugin_name
                raise PluginError(f"architecture {schema.name!r} defined by both {other!r} and {plugin_name!r}", plugin=plugin_name)
            for mt in {*schema.model_types, schema.name}:
                owner = self._model_types.get(mt) or model_types.get(mt)
                if owner is not None and owner != schema.name:
                    other = self._schemas[owner].plugin if owner in self._schemas else plugin_name
                    raise PluginError(
                        f"model_type {mt!r} claimed by architecture {owner!r} ({other!r}) and {schema.name!r} ({plugin_name!r})", plugin=plugin_name
                    )
                model_types[mt] = schema.name
        for spec in new_backends:
            if spec.name in self._backends:
                other = self._backends[spec.name].plugin
                raise PluginError(f"backend {spec.name!r} registered by both {other!r} and {plugin_name!r}", plugin=plugin_name)
        for i, arch in enumerate(new_archs):
            key = (arch.backend, arch.name)
            if any((a.backend, a.name) == key for a in new_archs[:i]):
                raise PluginError(
                    f"plugin {plugin_name!r} registers architecture {arch.name!r} for backend {arch.backend!r} twice "
                    "(once is enough: inferox_register_architectures is the old name of inferox_register_implementations)",
                    plugin=plugin_name,
                )
            if key in self._architectures:
                other = self._architectures[key].plugin
                raise PluginError(
                    f"architecture {arch.name!r} for backend {arch.backend!r} registered by both {other!r} and {plugin_name!r}", plugin=plugin_name
                )
        speeds = {spec.name: _check_backend_speed(plugin_name, spec.speed) for spec in new_backends}
        self._backends.update({s.name: s for s in new_backends})
        self._definition_speeds.update(speeds)
        self._architectures.update({(a.backend, a.name): a for a in new_archs})
        self._schemas.update({s.name: s for s in new_schemas})
        self._model_types.update(model_types)

    # -- backends -----------------------------------------------------------------------------
    def backend_names(self) -> list[str]:
        return sorted(self._backends)

    def backend_spec(self, name: str) -> BackendSpec:
        spec = self._backends.get(name.lower())
        if spec is None:
            reason = "blocked by INFEROX_BLOCKED_PLUGINS" if name.lower() in {b.lower() for b in self.blocked} else "not installed"
            raise BackendUnavailableError(name, reason=reason, available=self.backend_names())
        return spec

    def backend_info(self, name: str) -> BackendInfo:
        spec = self.backend_spec(name)
        versions = {dist: _dist_version(dist) for dist in spec.requires}
        missing = [d for d, v in versions.items() if v is None]
        reason = f"missing distribution(s): {', '.join(missing)}" if missing else self._instance_errors.get(spec.name)
        return BackendInfo(
            name=spec.name,
            plugin=spec.plugin,
            plugin_version=self._plugin_versions.get(spec.plugin),
            versions=versions,
            installed=not missing,
            reason=reason,
            description=spec.description,
        )

    def list_backends(self) -> list[BackendInfo]:
        return [self.backend_info(n) for n in self.backend_names()]

    def is_loaded(self, name: str) -> bool:
        return name.lower() in self._instances

    def get_backend(self, name: str) -> Backend:
        """The backend instance (created on first use; imports the framework).

        Raises :class:`BackendUnavailableError` naming the reason: not installed, blocked, a
        missing framework, or the framework's own import error.
        """
        key = name.lower()
        inst = self._instances.get(key)
        if inst is not None:
            return inst
        with self._lock:
            inst = self._instances.get(key)
            if inst is not None:
                return inst
            spec = self.backend_spec(key)
            try:
                cls = load_object(spec.loader)
                inst = cls()
                if not isinstance(inst, _backend_base()):
                    raise PluginError(f"{spec.loader} is not an inferox.core.Backend subclass", plugin=spec.plugin)
            except InferoxError:
                raise
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                self._instance_errors[key] = reason
                raise BackendUnavailableError(key, reason=reason) from exc
            self._instances[key] = inst
            return inst

    def available_backends(self) -> list[str]:
        """Names of backends whose framework loads (imports each framework once)."""
        out = []
        for name in self.backend_names():
            try:
                self.get_backend(name)
            except BackendUnavailableError:
                continue
            out.append(name)
        return out

    # -- plugins ------------------------------------------------------------------------------
    def contract_version(self, plugin: str) -> str | None:
        """The contract version ``plugin`` declares (its ``inferox_contract_version()``), ``None`` if unknown."""
        return self._contract_versions.get(plugin)

    def describe_plugin(self, plugin: str) -> str:
        """``"plugin 'torch' (inferox-torch 0.1.0)"``: a plugin as errors name it, with what pip installed it as."""
        dist, version = self._distributions.get(plugin), self._plugin_versions.get(plugin)
        where = " ".join(filter(None, [dist, version]))
        return f"plugin {plugin!r}" + (f" ({where})" if where else "")

    # -- architectures ------------------------------------------------------------------------
    def _pairs(self) -> set[tuple[str, str]]:
        """Every (backend, architecture) with a factory: registered ones, and the generic one a
        backend that runs definitions gets for every architecture with a definition."""
        pairs = set(self._architectures)
        runs = [b for b, spec in self._backends.items() if spec.definitions]
        if runs:
            pairs |= {(b, a) for b in runs for a, schema in self._schemas.items() if schema.definition is not None}
        return pairs

    def architectures(self, backend: str | None = None) -> dict[str, list[str]]:
        """``{architecture: [backends]}``, optionally only those of one backend.

        Only implementations on backends that some installed, unblocked plugin registers: a plugin
        may implement an architecture for another plugin's backend, and when that backend's plugin
        is blocked (``INFEROX_BLOCKED_PLUGINS``) or not installed, its implementations are hidden.
        """
        out: dict[str, list[str]] = {}
        for (b, a) in sorted(self._pairs()):
            if b in self._backends and (backend is None or b == backend.lower()):
                out.setdefault(a, []).append(b)
        return out

    def backends_for(self, architecture: str) -> list[str]:
        """The registered backends that implement ``architecture`` (see :meth:`architectures`)."""
        return sorted(b for (b, a) in self._pairs() if a == architecture.lower() and b in self._backends)

    def implementation(self, backend: str, architecture: str) -> ArchitectureSpec:
        """What ``backend`` runs ``architecture`` with: the factory a plugin registered (and the plugin
        that registered it) or, where none did and the backend runs definitions
        (``BackendSpec.definitions``), the generic factory running the architecture's definition
        (:func:`~inferox.core.definition.definition_factory`), attributed to the backend's plugin,
        with the speed the backend declares for it (``BackendSpec.speed``).

        :class:`ArchitectureNotFoundError` names the backend's plugin, the plugin that defines the
        architecture, the backends that do implement it and, when none does, what to install.
        """
        spec = self._architectures.get((backend.lower(), architecture.lower())) or self._definition_implementation(backend, architecture)
        if spec is None:
            raise self._not_implemented(backend, architecture)
        return spec

    def declared_speed(self, backend: str, architecture: str, device_kind: str = "cpu") -> float | None:
        """The speed ``backend`` declares for ``architecture`` on ``device_kind`` (throughput
        relative to inferox-torch's = 1.0), ``None`` when it declares none."""
        spec = self._architectures.get((backend.lower(), architecture.lower())) or self._definition_implementation(backend, architecture)
        return None if spec is None else dict(spec.speed).get(device_kind.lower())

    def architecture_factory(self, backend: str, architecture: str) -> Factory:
        """The factory ``backend`` registered for ``architecture`` — or, where it registered none and
        runs definitions (``BackendSpec.definitions``), the generic factory that runs the
        architecture's definition on it (:func:`~inferox.core.definition.definition_factory`).

        :class:`ArchitectureNotFoundError` lists the backends that do implement it; a factory that
        fails to import is a :class:`BackendUnavailableError` naming the plugin that registered it.
        """
        spec = self.implementation(backend, architecture)
        try:
            return spec.load()
        except Exception as exc:
            where = f"{spec.factory!r}, registered by {self.describe_plugin(spec.plugin)}" if isinstance(spec.factory, str) else f"registered by {self.describe_plugin(spec.plugin)}"
            raise BackendUnavailableError(backend, reason=f"architecture {architecture!r} failed to load: {type(exc).__name__}: {exc} (factory {where})") from exc

    def _not_implemented(self, backend: str, architecture: str) -> ArchitectureNotFoundError:
        key = architecture.lower()
        name = key if key in self._schemas else self._model_types.get(key)
        defined_by = self._schemas[name].plugin if name is not None else None
        spec = self._backends.get(backend.lower())
        available = self.backends_for(name or key)
        return ArchitectureNotFoundError(
            architecture, backend=backend, available=available, plugin=spec.plugin if spec else None, defined_by=defined_by,
            install=None if available else self.install_hint(name or key),
        )

    def install_hint(self, architecture: str) -> str:
        """What to install so that some backend runs ``architecture`` (for errors and ``inferox backends``)."""
        key = architecture.lower()
        hidden = sorted(b for (b, a) in self._architectures if a == key and b not in self._backends)
        blocked = {b.lower() for b in self.blocked}
        if hidden:
            why = "blocked by INFEROX_BLOCKED_PLUGINS" if all(b in blocked for b in hidden) else "not installed or blocked"
            return f"backend(s) {', '.join(hidden)} implement it but are {why}"
        name = key if key in self._schemas else self._model_types.get(key)
        if name is not None and self._schemas[name].plugin == BUILTIN_PLUGIN:
            return f"install a backend that implements it, e.g. {', '.join(STANDARD_BACKEND_DISTRIBUTIONS[:-1])} or {STANDARD_BACKEND_DISTRIBUTIONS[-1]}"
        if name is not None:
            return f"install a backend plugin that implements it ({self.describe_plugin(self._schemas[name].plugin)} defines it but registers no backend for it)"
        return "install the plugin that defines it" + (f" (blocked by INFEROX_BLOCKED_PLUGINS: {', '.join(sorted(self.blocked))})" if self.blocked else "")

    def _definition_implementation(self, backend: str, architecture: str) -> ArchitectureSpec | None:
        """The generic implementation of ``architecture`` on a backend that runs definitions, or ``None``."""
        be = self._backends.get(backend.lower())
        key = architecture.lower()
        name = key if key in self._schemas else self._model_types.get(key)
        if be is None or not be.definitions or name is None or self._schemas[name].definition is None:
            return None
        from inferox.core.definition import definition_factory

        schema = self._schemas[name]
        speeds = self._definition_speeds.get(be.name, {})
        speed = speeds.get(name, speeds.get(schema.family, ()))
        return ArchitectureSpec(be.name, name, definition_factory(schema), be.plugin, speed)

    # -- architecture schemas -------------------------------------------------------------------
    def schema_names(self) -> list[str]:
        """Every architecture some plugin defines (``["bert", "mlp", ...]``)."""
        return sorted(self._schemas)

    def schema(self, architecture: str) -> ArchitectureSchema:
        """The schema of ``architecture`` (by name or by a ``model_type`` it claims).

        :class:`ArchitectureNotFoundError` names the architectures that are known.
        """
        key = architecture.lower()
        name = key if key in self._schemas else self._model_types.get(key)
        if name is None:
            raise ArchitectureNotFoundError(architecture, known=self.schema_names(), install=self.install_hint(key))
        return self._schemas[name]

    def schema_for_model_type(self, model_type: str) -> ArchitectureSchema | None:
        """The schema that claims ``config.json``'s ``model_type`` (how a Hugging Face folder is recognised), or ``None``."""
        name = self._model_types.get(model_type.lower())
        return None if name is None else self._schemas[name]

    def parse_config(self, architecture: str, config: Any) -> Any:
        """``config`` checked against ``architecture``'s schema; a :class:`ConfigError` names the field."""
        schema = self.schema(architecture)
        if not isinstance(config, Mapping):
            raise ConfigError(f"a {schema.name} config must be an object", field="config", value=type(config).__name__)
        return schema.parse(config)


def _check_speed(plugin: str, speed: Mapping[str, float] | None) -> tuple[tuple[str, float], ...]:
    """A declared speed as a hashable tuple; anything but device kind → positive number is refused."""
    if speed is None:
        return ()
    if not isinstance(speed, Mapping):
        raise PluginError(f"plugin {plugin!r} declared speed {speed!r}: expected a mapping of device kind to a positive number", plugin=plugin)
    out = []
    for kind, value in speed.items():
        if not isinstance(kind, str) or isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise PluginError(f"plugin {plugin!r} declared speed {kind!r}: {value!r}; expected a device kind and a positive number", plugin=plugin)
        out.append((kind.lower(), float(value)))
    return tuple(sorted(out))


def _check_backend_speed(plugin: str, speed: Mapping[str, Mapping[str, float]]) -> dict[str, tuple[tuple[str, float], ...]]:
    """``BackendSpec.speed`` checked: architecture or family names, each with a declared speed."""
    if not isinstance(speed, Mapping):
        raise PluginError(f"plugin {plugin!r} declared speed {speed!r}: expected a mapping of architecture to device kind speeds", plugin=plugin)
    out: dict[str, tuple[tuple[str, float], ...]] = {}
    for name, per_kind in speed.items():
        if not isinstance(name, str):
            raise PluginError(f"plugin {plugin!r} declared speed for {name!r}: expected an architecture or family name", plugin=plugin)
        out[name.lower()] = _check_speed(plugin, per_kind)
    return out


def _backend_base() -> type[Backend]:
    from inferox.core.backend import Backend  # deferred: backend imports tensor, which imports spec

    return Backend


_registry: PluginRegistry | None = None
_registry_lock = threading.Lock()


def get_registry() -> PluginRegistry:
    """The process-wide registry, discovering entry-point plugins on the first call."""
    global _registry
    if _registry is None:
        with _registry_lock:
            if _registry is None:
                reg = PluginRegistry()
                reg.load_entry_points()
                _registry = reg
    return _registry


def reset_registry() -> None:
    """Forget the process-wide registry (the next :func:`get_registry` rediscovers plugins)."""
    global _registry
    with _registry_lock:
        _registry = None


def get_backend(name: str) -> Backend:
    """Shortcut for ``get_registry().get_backend(name)``."""
    return get_registry().get_backend(name)
