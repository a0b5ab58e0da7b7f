"""Tiny task-head checkpoints for the server tests: a classifier and cross-encoders, made offline by
``transformers`` (see families.py) and packed into a model repository."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .families import save_checkpoint, save_tokenizer

__all__ = ["LABELS", "make_heads", "pack_into"]

#: The classifier's labels (its id2label).
LABELS = ["negative", "neutral", "positive"]


def make_heads(root: Path) -> dict[str, Path]:
    """Model folders: ``cls`` (3 labels), ``ce`` (one label, sigmoid) and ``ce-raw`` (the same weights, Identity)."""
    folders = {"cls": root / "cls", "ce": root / "ce", "ce-raw": root / "ce-raw"}
    save_checkpoint("bert", folders["cls"], head="classify", seed=3)
    save_tokenizer(folders["cls"])
    save_checkpoint("bert", folders["ce"], head="rerank", seed=11)
    save_tokenizer(folders["ce"])
    shutil.copytree(folders["ce"], folders["ce-raw"])
    config = json.loads((folders["ce-raw"] / "config.json").read_text())
    config["sentence_transformers"] = {"activation_fn": "torch.nn.modules.linear.Identity"}
    (folders["ce-raw"] / "config.json").write_text(json.dumps(config))
    return folders


def pack_into(repo: Path, folders: dict[str, Path], *, packages: dict[str, Path] | None = None) -> Path:
    """Each folder packed into ``repo/NAME`` — and each of ``packages`` (already packed) copied
    there — served on the torch backend (loads fast, no graph to build); returns ``repo``."""
    from inferox.mlpkg import build_package

    for name, folder in folders.items():
        pkg = build_package(folder, output_dir=repo / "_build", name=name)
        shutil.move(str(pkg), str(repo / name))
    shutil.rmtree(repo / "_build", ignore_errors=True)
    for name, package in (packages or {}).items():
        shutil.copytree(package, repo / name)
    for name in [*folders, *(packages or {})]:
        (repo / name / "serving.toml").write_text('backend = "torch"\n')
    return repo
