"""Building packages from a ``model.toml``, a local folder or a Hub repository."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import re
import shutil
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from inferox.core.constants import ENV_PACKAGE_DIR
from inferox.core.errors import (
    ConfigError,
    InferoxError,
    PackageFormatError,
    PackageNotFoundError,
    UnsafePackageError,
)
from inferox.core.model import ModelMetadata
from inferox.core.plugins import get_registry
from inferox.mlpkg._architectures import PackageArchitecture, architecture_for_config, get_architecture
from inferox.mlpkg._format import (
    BACKENDS_DIR,
    CONFIG_FILE,
    FORMAT_VERSION,
    GOLDEN_INPUTS,
    GOLDEN_OUTPUTS,
    METADATA_FILE,
    MODEL_INFO_FILE,
    PICKLE_SUFFIXES,
    PREPROCESSING_FILE,
    WEIGHTS_FILE,
    read_json,
    write_json,
)
from inferox.mlpkg._fs import atomic_package_dir, file_entry, sha256_file
from inferox.mlpkg._hub import HUB_SCHEME, DownloadPolicy, HubSource, download_repo, split_hub_source
from inferox.mlpkg._outputs import DEFAULT_OUTPUTS_FIELD, build_default_outputs
from inferox.mlpkg._regular import file_kind, open_regular
from inferox.mlpkg._toml import ModelToml, normalize_backends, parse_model_toml
from inferox.mlpkg._weights import (
    convert_pickle_to_safetensors,
    merge_safetensors,
    read_safetensors_header,
    safetensors_parameter_count,
)

__all__ = ["build_from_folder", "build_from_hub", "build_from_toml", "build_package", "package_name"]

log = logging.getLogger("inferox.mlpkg")

#: Weight files of other frameworks, never copied into a package (weights are stored once).
_OTHER_WEIGHTS = (".h5", ".msgpack", ".onnx", ".ot", ".tflite", ".gguf", ".mlmodel", ".xml")
_SKIP_DIRS = ("onnx", "openvino", "coreml", "tf", "flax")
#: Files a build regenerates rather than copies (a package can be rebuilt from its own folder).
_GENERATED = {METADATA_FILE, MODEL_INFO_FILE, GOLDEN_INPUTS, GOLDEN_OUTPUTS}
GOLDEN_ATOL, GOLDEN_RTOL = 1e-4, 1e-3
#: ``golden.backend`` of a package whose golden outputs come from its architecture's reference.
REFERENCE_BACKEND = "reference"
_NAME_RE = re.compile(r"[^A-Za-z0-9._-]+")


def package_name(value: str) -> str:
    """A filesystem-safe package name (``"org/Model v2"`` → ``"Model-v2"``)."""
    base = value.rstrip("/").split("/")[-1]
    name = _NAME_RE.sub("-", base).strip("-.")
    if not name:
        raise ConfigError(f"cannot derive a package name from {value!r}", field="name", value=value)
    return name


def _inferox_version() -> str:
    import importlib.metadata as md

    try:
        return md.version("inferox-mlpkg")
    except md.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def _default_output_dir() -> Path | None:
    value = os.environ.get(ENV_PACKAGE_DIR)
    return Path(value).expanduser() if value else None


# -- choosing what to copy ------------------------------------------------------------------------------
def _is_weight(rel: str) -> bool:
    return rel.endswith(".safetensors") or rel.lower().endswith(PICKLE_SUFFIXES)


def select_weights(paths: Sequence[str]) -> tuple[list[str], str]:
    """Which source files hold the weights: ``(files, kind)`` with kind ``safetensors`` or ``pickle``.

    Top-level ``model.safetensors`` wins; else the shards an index names; else the single
    top-level safetensors file; else a pickle checkpoint. No weights → :class:`PackageNotFoundError`.
    """
    top = [p for p in paths if "/" not in p]
    if WEIGHTS_FILE in top:
        return [WEIGHTS_FILE], "safetensors"
    st = sorted(p for p in top if p.endswith(".safetensors"))
    if len(st) == 1:
        return st, "safetensors"
    shards = [p for p in st if re.match(r".+-\d+-of-\d+\.safetensors$", p)]
    if shards:
        return shards, "safetensors"
    for name in ("pytorch_model.bin", "model.bin", "model.pt", "model.pth"):
        if name in top:
            return [name], "pickle"
    pickles = sorted(p for p in top if p.lower().endswith(PICKLE_SUFFIXES) and "training_args" not in p and "optimizer" not in p)
    if pickles:
        return [pickles[0]], "pickle"
    raise PackageNotFoundError("the source has no weights (no model.safetensors or other weights file)", path=WEIGHTS_FILE, field="weights")


def _copied(rel: str, weights: Sequence[str]) -> bool:
    parts = PurePosixPath(rel).parts
    if any(p.startswith(".") for p in parts) or rel in _GENERATED or rel in weights:
        return False
    if parts[0] in _SKIP_DIRS:
        return False
    if _is_weight(rel) and parts[0] != BACKENDS_DIR:
        return False  # weights are stored once, as model.safetensors
    return not rel.lower().endswith(_OTHER_WEIGHTS)


def _package_rel(rel: str) -> str:
    """Where a source file lands in the package: backend folder names are lower-cased."""
    parts = list(PurePosixPath(rel).parts)
    if parts[0] == BACKENDS_DIR and len(parts) > 2:
        parts[1] = parts[1].lower()
    return "/".join(parts)


def hub_file_filter(paths: Sequence[str]) -> list[str]:
    """The files a Hub build downloads: everything it would copy, plus the chosen weights only."""
    try:
        weights, _ = select_weights(paths)
    except PackageNotFoundError:
        weights = []
    return [p for p in paths if p in weights or _copied(p, weights)]


# -- pre-processing ---------------------------------------------------------------------------------------
#: sentence-transformers' ``Dense`` activations (the ``torch.nn`` class it saves) → Inferox's names.
_DENSE_ACTIVATIONS = {"Tanh": "tanh", "Identity": "identity", "ReLU": "relu", "Sigmoid": "sigmoid", "GELU": "gelu"}


def _module_kind(module: Any) -> str:
    return str(module.get("type", "")).rsplit(".", 1)[-1] if isinstance(module, dict) else ""


def normalize_preprocessing(files: Mapping[str, Path]) -> dict[str, Any]:
    """``preprocessing.json`` from a source's own one or its sentence-transformers files.

    From a sentence-transformers folder: ``max_seq_length`` and ``do_lower_case``
    (``sentence_bert_config.json``), the ``Pooling`` module's modes (``pooling``: one, or a list
    concatenated in order), ``Dense`` modules (``dense``: their settings; :func:`dense_weights` reads
    their weights), ``Normalize`` (``normalize``), and a cross-encoder's saved activation.
    """
    from inferox.core.architectures import pooling_modes

    if PREPROCESSING_FILE in files:
        own = read_json(files[PREPROCESSING_FILE], rel=PREPROCESSING_FILE)
        if not isinstance(own, dict):
            raise PackageFormatError(f"{PREPROCESSING_FILE} must hold a JSON object", path=PREPROCESSING_FILE)
        return own
    pre: dict[str, Any] = {}
    if "sentence_bert_config.json" in files:
        sbert = read_json(files["sentence_bert_config.json"], rel="sentence_bert_config.json")
        if isinstance(sbert, dict):
            if "max_seq_length" in sbert:
                pre["max_seq_length"] = int(sbert["max_seq_length"])
            if "do_lower_case" in sbert:
                pre["do_lower_case"] = bool(sbert["do_lower_case"])
        pre["source"] = "sentence-transformers"
    modules: list[Any] = []
    if "modules.json" in files:
        raw = read_json(files["modules.json"], rel="modules.json")
        if not isinstance(raw, list):
            raise PackageFormatError("modules.json must hold a list of modules", path="modules.json")
        modules = raw
        pre["source"] = "sentence-transformers"
    pooling_dirs = [m.get("path", "") for m in modules if _module_kind(m) == "Pooling"]
    pooling_cfgs = [f"{d}/config.json" for d in pooling_dirs if d] or (["1_Pooling/config.json"] if "1_Pooling/config.json" in files else [])
    for rel in pooling_cfgs:
        if rel in files:
            cfg = read_json(files[rel], rel=rel)
            if not isinstance(cfg, dict):
                raise PackageFormatError(f"{rel} must hold a JSON object", path=rel)
            modes = pooling_modes(cfg, path=rel)
            pre["pooling"] = modes[0] if len(modes) == 1 else modes
            if cfg.get("include_prompt") is False:
                pre["include_prompt"] = False
            break
    dense = [_dense_settings(files, str(m.get("path", "")), index=i) for i, m in enumerate(m for m in modules if _module_kind(m) == "Dense")]
    if dense:
        pre["dense"] = dense
    if pre.get("source") == "sentence-transformers":
        pre["normalize"] = any(_module_kind(m) == "Normalize" for m in modules)
    if "config_sentence_transformers.json" in files:
        st = read_json(files["config_sentence_transformers.json"], rel="config_sentence_transformers.json")
        if isinstance(st, dict) and isinstance(st.get("activation_fn"), str):
            pre["activation_fn"] = st["activation_fn"]  # a cross-encoder's score activation; the schema's resolve consumes it
    return pre


def _dense_settings(files: Mapping[str, Path], folder: str, *, index: int) -> dict[str, Any]:
    rel = f"{folder}/config.json"
    if rel not in files:
        raise PackageFormatError(f"the Dense module in {folder or '(root)'} has no config.json", path=rel)
    cfg = read_json(files[rel], rel=rel)
    if not isinstance(cfg, dict):
        raise PackageFormatError(f"{rel} must hold a JSON object", path=rel)
    path = str(cfg.get("activation_function") or "torch.nn.modules.activation.Tanh")
    act = _DENSE_ACTIVATIONS.get(path.rsplit(".", 1)[-1])
    if act is None:
        raise PackageFormatError(f"{rel}: Dense activation {path!r} is not supported (supported: torch.nn {', '.join(_DENSE_ACTIVATIONS)})", path=rel, field="activation_function")
    if cfg.get("module_input_name", "sentence_embedding") != "sentence_embedding":
        raise PackageFormatError(f"{rel}: a Dense module on {cfg['module_input_name']!r} is not supported (only on sentence_embedding)", path=rel, field="module_input_name")
    return {
        "in_features": cfg.get("in_features"), "out_features": cfg.get("out_features"), "bias": bool(cfg.get("bias", True)),
        "activation": act, "residual": bool(cfg.get("use_residual", False)), "path": folder,
    }


def dense_weights(files: Mapping[str, Path], pre: Mapping[str, Any], *, allow_pickle: bool) -> dict[str, np.ndarray]:
    """The weights of the ``Dense`` modules ``pre`` lists, renamed ``dense.{i}.linear.weight`` … for the
    package's one ``model.safetensors`` (each module keeps its own file in a sentence-transformers folder)."""
    out: dict[str, np.ndarray] = {}
    for i, layer in enumerate(pre.get("dense") or ()):
        folder = str(layer.get("path", ""))
        candidates = [f"{folder}/model.safetensors", f"{folder}/pytorch_model.bin"]
        rel = next((c for c in candidates if c in files), None)
        if rel is None:
            raise PackageNotFoundError(f"the Dense module in {folder} has no weights ({' or '.join(candidates)})", path=candidates[0], field="weights")
        if rel.endswith(".safetensors"):
            from inferox.core.weights import load_safetensors

            read_safetensors_header(files[rel], rel=rel)
            tensors = load_safetensors(files[rel], framework="numpy")
        else:
            if not allow_pickle:
                raise UnsafePackageError(f"the Dense weights {rel} are a pickle file, which can run code when loaded; build with --allow-pickle (allow_pickle=True) to convert them", path=rel, field="weights")
            from inferox.mlpkg._weights import load_pickle_weights

            tensors = dict(load_pickle_weights(files[rel], allow_pickle=True))
        for key, value in tensors.items():
            out[f"dense.{i}.{key}"] = np.asarray(value)
    return out


# -- golden cases -------------------------------------------------------------------------------------------
def _golden_outputs(
    arch: PackageArchitecture,
    config: Mapping[str, Any],
    weights: Path,
    inputs: Mapping[str, np.ndarray],
    meta: ModelMetadata,
    backends: Sequence[str],
    options: Mapping[str, Any],
) -> tuple[dict[str, np.ndarray], str] | None:
    """Outputs of the golden inputs: from the architecture's reference (its definition on NumPy in
    float64, recorded as backend ``"reference"``) — else, for an architecture with neither a
    definition nor a reference, on the first installed backend that registers it."""
    from inferox.core.model import AnyModel
    from inferox.core.weights import load_safetensors
    from inferox.mlpkg._loading import instantiate

    reference = arch.schema.load_reference()
    if reference is not None:
        out = reference(dict(config), load_safetensors(weights, framework="numpy"), dict(inputs), **options)
        return {k: np.ascontiguousarray(v) for k, v in out.items()}, REFERENCE_BACKEND
    reg = get_registry()
    have = reg.backends_for(arch.name)
    order = [b for b in backends if b in have] + [b for b in have if b not in backends]
    for name in order:
        try:
            be = reg.get_backend(name)
            factory = reg.architecture_factory(name, arch.name)
            model = instantiate(factory, backend=be, config=config, weights=weights, metadata=meta, device=None, dtype=None, origin=f"{name}:{arch.name}", **options)
            result = AnyModel(model).forward_any(dict(inputs))
            model.close()
            return {k: np.ascontiguousarray(v) for k, v in result.items()}, name
        except InferoxError as exc:
            log.warning("golden outputs: backend %s could not run %s: %s", name, arch.name, exc)
    return None


# -- assembling -----------------------------------------------------------------------------------------------
def _assemble(
    files: Mapping[str, Path],
    target: Path,
    *,
    name: str,
    version: str | None,
    description: str,
    architecture: str | None,
    backends: Sequence[str] | None,
    source: dict[str, Any],
    allow_pickle: bool,
    golden: bool,
    encoder_only: bool = False,
) -> Path:
    if CONFIG_FILE not in files:
        raise PackageNotFoundError(f"the source has no {CONFIG_FILE}", path=CONFIG_FILE)
    config = read_json(files[CONFIG_FILE], rel=CONFIG_FILE)
    if not isinstance(config, dict):
        raise PackageFormatError(f"{CONFIG_FILE} must hold a JSON object", path=CONFIG_FILE)
    arch = get_architecture(architecture) if architecture else architecture_for_config(config)
    pre = normalize_preprocessing(files)
    arch.check_config(config)
    facts = arch.describe(config)
    weights, kind = select_weights(list(files))
    if kind == "pickle" and not allow_pickle:
        raise UnsafePackageError(
            f"the source's weights {weights[0]} are a pickle file, which can run code when loaded; convert them with "
            f"`inferox convert {weights[0]} --allow-pickle` (inferox.mlpkg.convert_pickle_to_safetensors), or convert while building with --allow-pickle on the "
            f"command line (allow_pickle=True in Python)",
            path=weights[0],
            field="weights",
        )
    names: list[str] = []
    for w in weights:
        if w.endswith(".safetensors"):
            names += list(read_safetensors_header(files[w], rel=w))
    if kind != "pickle":
        # Which head the checkpoint has is settled before anything is written: a head Inferox does not
        # compute is refused here (UnsupportedHeadError), not dropped.
        pre = arch.resolve(config, pre, weight_names=names, encoder_only=encoder_only)
    extra = dense_weights(files, pre, allow_pickle=allow_pickle)
    backend_list = list(backends) if backends else []
    with atomic_package_dir(target) as tmp:
        dst = tmp / WEIGHTS_FILE
        if kind == "pickle":
            convert_pickle_to_safetensors(files[weights[0]], dst)
        elif len(weights) == 1:
            shutil.copyfile(files[weights[0]], dst)
        else:
            merge_safetensors([files[w] for w in weights], dst)
        if extra:
            _add_tensors(dst, extra)
        header = read_safetensors_header(dst, rel=WEIGHTS_FILE)
        if kind == "pickle":
            pre = arch.resolve(config, pre, weight_names=list(header), encoder_only=encoder_only)
        for layer in pre.get("dense") or ():
            layer.pop("path", None)  # the weights are in model.safetensors now
        inputs, outputs = arch.specs(config, pre)
        for rel, src in sorted(files.items()):
            if _copied(rel, weights):
                out = tmp / _package_rel(rel)
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, out)
        overrides = sorted({PurePosixPath(r).parts[1].lower() for r in files if r.startswith(f"{BACKENDS_DIR}/") and len(PurePosixPath(r).parts) > 2})
        if pre:
            write_json(tmp / PREPROCESSING_FILE, pre)
        meta_obj = ModelMetadata(name=name, architecture=arch.name, version=version or "1", extra={"preprocessing": pre})
        golden_info: dict[str, Any] | None = None
        if golden:
            from safetensors.numpy import save_file

            rng = np.random.default_rng(0)
            g_in = arch.golden(config, pre, rng)
            (tmp / "golden").mkdir(exist_ok=True)
            save_file(g_in, str(tmp / GOLDEN_INPUTS))
            golden_info = {"inputs": GOLDEN_INPUTS, "outputs": None, "backend": None, "atol": GOLDEN_ATOL, "rtol": GOLDEN_RTOL}
            opts = {"preprocessing": dict(pre)} if pre else {}
            result = _golden_outputs(arch, config, dst, g_in, meta_obj, backend_list, opts)
            if result is not None:
                g_out, used = result
                save_file(g_out, str(tmp / GOLDEN_OUTPUTS))
                golden_info.update(outputs=GOLDEN_OUTPUTS, backend=used)
        info: dict[str, Any] = {
            "architecture": arch.name,
            "model_type": str(config.get("model_type") or arch.name),
            "family": arch.family,
            "backends": backend_list,
            "inputs": [s.to_dict() for s in inputs],
            "outputs": [s.to_dict() for s in outputs],
            **({DEFAULT_OUTPUTS_FIELD: defaults} if (defaults := build_default_outputs(arch, outputs, pre, config)) else {}),
            "parameters": safetensors_parameter_count(header),
            **{k: v for k, v in facts.items() if v is not None},
            **({"task": task} if (task := arch.task(config, pre)) else {}),
        }
        write_json(tmp / MODEL_INFO_FILE, info)
        entries = [file_entry(tmp, p) for p in sorted(tmp.rglob("*")) if p.is_file()]
        metadata = {
            "format_version": FORMAT_VERSION,
            "name": name,
            "version": version or "1",
            "description": description,
            "source_repo_id": source.get("repo_id"),
            "revision": source.get("sha"),
            "source": source,
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "inferox_version": _inferox_version(),
            "weights": WEIGHTS_FILE,
            "golden": golden_info,
            "backend_overrides": overrides,
            "files": entries,
        }
        write_json(tmp / METADATA_FILE, metadata)
    log.info("built package %s at %s", name, target)
    return target


def _add_tensors(path: Path, tensors: Mapping[str, np.ndarray]) -> None:
    """Rewrite the safetensors file at ``path`` with ``tensors`` added (a name it has already is an error)."""
    from safetensors.numpy import save_file

    from inferox.core.weights import load_safetensors

    have = load_safetensors(path, framework="numpy")
    clash = sorted(set(have) & set(tensors))
    if clash:
        raise PackageFormatError(f"the checkpoint already has a tensor named {clash[0]!r}", path=WEIGHTS_FILE, field=clash[0])
    save_file({**have, **tensors}, str(path), metadata={"format": "pt"})


def _folder_files(folder: Path) -> dict[str, Path]:
    if not folder.exists():
        raise PackageNotFoundError(f"no such source folder: {folder}", path=str(folder))
    if not folder.is_dir():
        raise PackageFormatError(f"source {folder} is not a folder", path=str(folder))
    out: dict[str, Path] = {}
    for dirpath, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for n in sorted(names):
            p = Path(dirpath) / n
            rel = p.relative_to(folder).as_posix()
            try:
                mode = os.stat(p).st_mode
            except OSError:
                mode = stat.S_IFREG  # a dangling link: reported by name when it is copied
            if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
                # Reading a FIFO blocks forever and copying one fails half-way: refuse it up front.
                raise PackageFormatError(f"{rel} in the source folder is {file_kind(mode)}; only regular files can be packaged", path=rel)
            out[rel] = p
    return out


def _resolve_target(name: str, output_dir: str | Path | None) -> Path | None:
    base = Path(output_dir).expanduser() if output_dir is not None else _default_output_dir()
    return base / name if base is not None else None


#: Folder names that say nothing about the model they hold (a wheel's ``model/``, an export).
_GENERIC_FOLDER_NAMES = {"model", "models", "weights", "checkpoint", "checkpoints", "export", "exported", "files", "src", "source", "snapshot", "hf", "hub"}
_SHA_RE = re.compile(r"[0-9a-f]{40}")
_TITLE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _folder_model_name(folder: Path, files: Mapping[str, Path]) -> str:
    """The package name of a folder build with no ``name=``: the folder's own name, unless it is a
    generic one (``model/`` inside a wheel, a Hugging Face cache snapshot named by its SHA) and the
    source names the model itself — its model card's ``model_name:`` or a one-word first heading
    (``# all-MiniLM-L6-v2``), or the ``models--org--name`` folder of a Hub cache snapshot."""
    resolved = folder.resolve()
    own = resolved.name
    if own.lower() not in _GENERIC_FOLDER_NAMES and not _SHA_RE.fullmatch(own):
        return own
    if _SHA_RE.fullmatch(own) and resolved.parent.name == "snapshots" and resolved.parent.parent.name.startswith("models--"):
        return resolved.parent.parent.name.split("--")[-1]
    card = files.get("README.md")
    if card is not None:
        text: str
        try:
            with open_regular(card, encoding="utf-8") as fh:
                text = fh.read(64 * 1024)
        except (OSError, UnicodeDecodeError, InferoxError):
            text = ""
        body = text
        if text.startswith("---"):
            front, _, body = text[3:].partition("\n---")
            m = re.search(r"^model_name:\s*['\"]?([^'\"\n]+?)['\"]?\s*$", front, re.MULTILINE)
            if m and _TITLE_RE.fullmatch(m.group(1).split("/")[-1]):
                return m.group(1).split("/")[-1]
        for line in body.splitlines():
            if line.startswith("# "):
                title = line[2:].strip()
                if _TITLE_RE.fullmatch(title):
                    return title
                break
    return own


def _git_head(folder: Path) -> str | None:
    head = folder / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            return (folder / ".git" / ref[5:]).read_text().strip()
        return ref
    except OSError:
        return None


def build_from_folder(
    folder: str | Path,
    *,
    output_dir: str | Path | None = None,
    name: str | None = None,
    version: str | None = None,
    description: str = "",
    architecture: str | None = None,
    backends: Sequence[str] | None = None,
    allow_pickle: bool = False,
    golden: bool = True,
    cache: Any = None,
    encoder_only: bool = False,
) -> Path:
    """Build a package from a local folder holding ``config.json`` and weights (a Hugging Face
    model folder, a sentence-transformers folder, or another package).

    A checkpoint whose task head (``config.json``'s ``architectures``) Inferox does not compute is
    refused with :class:`~inferox.core.errors.UnsupportedHeadError`; ``encoder_only=True`` packages
    its encoder alone."""
    src = Path(folder).expanduser()
    files = _folder_files(src)
    pkg_name = package_name(name or _folder_model_name(src, files))
    be = normalize_backends(backends, field="backends") if backends else None
    source: dict[str, Any] = {"type": "folder", "path": str(src.resolve()), "sha": _git_head(src)}

    def build(target: Path) -> Path:
        return _assemble(files, target, name=pkg_name, version=version, description=description, architecture=architecture, backends=be,
                         source=source, allow_pickle=allow_pickle, golden=golden, encoder_only=encoder_only)

    target = _resolve_target(pkg_name, output_dir)
    if target is not None:
        return build(target)
    from inferox.mlpkg._cache import PackageCache

    # The cache key covers what the package is made of, not just its name: two folders named
    # alike, or one folder whose weights changed, must never share an entry.
    options = {"name": pkg_name, "version": version, "description": description, "architecture": architecture, "backends": be,
               "allow_pickle": allow_pickle, "golden": golden, **({"encoder_only": True} if encoder_only else {})}
    digest = source_digest(files, options)
    source["content_sha256"] = digest
    return (cache or PackageCache()).get_or_build(f"folder/{pkg_name}@{digest[:16]}", build, source=source)


def source_digest(files: Mapping[str, Path], options: Mapping[str, Any]) -> str:
    """sha256 over the build options and the name and sha256 of every source file a build reads
    (the weights it picks, the files it copies, ``config.json``); the folder-build cache key."""
    try:
        weights, _ = select_weights(list(files))
    except PackageNotFoundError:
        weights = []
    used = sorted(rel for rel in files if rel in weights or rel == CONFIG_FILE or _copied(rel, weights))
    h = hashlib.sha256(json.dumps(dict(options), sort_keys=True, default=str).encode())
    for rel in used:
        h.update(f"\0{rel}\0{sha256_file(files[rel], rel=rel)}".encode())
    return h.hexdigest()


def build_from_hub(
    source: str | HubSource,
    *,
    output_dir: str | Path | None = None,
    name: str | None = None,
    version: str | None = None,
    description: str = "",
    revision: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    allow_patterns: Sequence[str] | None = None,
    architecture: str | None = None,
    backends: Sequence[str] | None = None,
    allow_pickle: bool = False,
    golden: bool = True,
    policy: DownloadPolicy | None = None,
    download_dir: str | Path | None = None,
    cache: Any = None,
    encoder_only: bool = False,
) -> Path:
    """Download a Hub repository (``"hf://org/name"``, ``"hf://org/name@revision"``, ``"org/name"``
    or a :class:`HubSource`) at a revision and build a package from it; the package records the
    resolved commit SHA. ``encoder_only`` as for :func:`build_from_folder`."""
    if isinstance(source, HubSource):
        hub = source
        if revision or token or endpoint or allow_patterns:
            hub = HubSource(
                hub.repo_id,
                revision=revision or hub.revision,
                token=token or hub.token,
                endpoint=endpoint or hub.endpoint,
                allow_patterns=tuple(allow_patterns) if allow_patterns else hub.allow_patterns,
            )
    else:
        repo_id, revision = split_hub_source(source, revision)
        hub = HubSource(repo_id, revision=revision, token=token, endpoint=endpoint, allow_patterns=tuple(allow_patterns) if allow_patterns else None)
    pkg_name = package_name(name or hub.repo_id)
    requested = hub.revision or "main"
    be = normalize_backends(backends, field="backends") if backends else None
    dl_dir = Path(download_dir) if download_dir else None

    def fetch() -> tuple[dict[str, Path], dict[str, Any]]:
        dl = download_repo(hub, policy=policy, download_dir=dl_dir, file_filter=hub_file_filter)
        src = {"type": "hub", "repo_id": hub.repo_id, "requested_revision": requested, "sha": dl.sha, "endpoint": hub.endpoint}
        return dict(dl.files), src

    def build_into(target: Path, fetched: tuple[dict[str, Path], dict[str, Any]] | None = None) -> Path:
        files, src = fetched or fetch()
        return _assemble(files, target, name=pkg_name, version=version, description=description, architecture=architecture, backends=be,
                         source=src, allow_pickle=allow_pickle, golden=golden, encoder_only=encoder_only)

    target = _resolve_target(pkg_name, output_dir)
    if target is not None:
        return build_into(target)
    from inferox.mlpkg._cache import PackageCache

    store = cache or PackageCache()
    sha = store.resolve_hub_revision(hub, policy=policy)
    key = f"hub/{hub.repo_id}@{sha}" + ("+encoder-only" if encoder_only else "")
    pinned = HubSource(hub.repo_id, revision=sha, token=hub.token, endpoint=hub.endpoint, allow_patterns=hub.allow_patterns)
    hub = pinned
    return store.get_or_build(key, build_into, source={"type": "hub", "repo_id": hub.repo_id, "sha": sha})


def build_from_toml(path: str | Path, *, output_dir: str | Path | None = None, **overrides: Any) -> Path:
    """Build the package a ``model.toml`` describes (keyword ``overrides`` win over the file)."""
    spec: ModelToml = parse_model_toml(path)
    common: dict[str, Any] = {
        "name": spec.name,
        "version": spec.version,
        "description": spec.description,
        "architecture": spec.architecture,
        "backends": spec.backends,
    }
    common.update({k: v for k, v in overrides.items() if v is not None})
    if spec.source.startswith(HUB_SCHEME):
        hub_args = {"revision": spec.revision, "allow_patterns": spec.allow_patterns, "endpoint": spec.endpoint}
        hub_args.update({k: overrides[k] for k in ("revision", "allow_patterns", "endpoint", "token") if overrides.get(k) is not None})
        common.update(hub_args)
        return build_from_hub(spec.source, output_dir=output_dir, **common)
    for key in ("revision", "allow_patterns", "endpoint", "token", "policy", "download_dir"):
        common.pop(key, None)
    return build_from_folder(spec.source, output_dir=output_dir, **common)


def build_package(
    source: str | Path | HubSource,
    *,
    output_dir: str | Path | None = None,
    name: str | None = None,
    architecture: str | None = None,
    backends: Sequence[str] | None = None,
    revision: str | None = None,
    token: str | None = None,
    allow_patterns: Sequence[str] | None = None,
    endpoint: str | None = None,
    **options: Any,
) -> Path:
    """Build a package and return its folder.

    ``source`` is a ``model.toml`` path, a local model folder, ``"hf://org/name"`` or a
    :class:`HubSource`. The package is written to ``output_dir/<name>``, else
    ``$INFEROX_PACKAGE_DIR/<name>``, else into the package cache (:class:`PackageCache`).
    Other keyword options (``version``, ``description``, ``allow_pickle``, ``golden``,
    ``encoder_only``, ``policy``, ``download_dir``, ``cache``) are passed to the specific builder.
    """
    common: dict[str, Any] = {"name": name, "architecture": architecture, "backends": backends, **options}
    if isinstance(source, HubSource) or (isinstance(source, str) and source.startswith(HUB_SCHEME)):
        return build_from_hub(source, output_dir=output_dir, revision=revision, token=token, allow_patterns=allow_patterns, endpoint=endpoint, **common)
    path = Path(source).expanduser()
    if path.suffix == ".toml" or path.name == "model.toml":
        return build_from_toml(path, output_dir=output_dir, revision=revision, token=token, allow_patterns=allow_patterns, endpoint=endpoint,
                               **{k: v for k, v in common.items() if v is not None})
    if path.is_dir() and (path / "model.toml").is_file() and not (path / CONFIG_FILE).exists():
        return build_from_toml(path / "model.toml", output_dir=output_dir, **{k: v for k, v in common.items() if v is not None})
    return build_from_folder(path, output_dir=output_dir, **{k: v for k, v in common.items() if k != "cache" or v is not None})
