"""Tiny random-weight Hugging Face checkpoints of every encoder family, made offline with ``transformers``.

``save_checkpoint("roberta", folder, head="classify")`` writes what ``save_pretrained`` writes (a
``config.json`` naming the model class in ``architectures``, ``model.safetensors``) and returns the
``transformers`` model it saved, in eval mode, to compare with. ``save_tokenizer`` adds a small
WordPiece tokenizer, so sentence-transformers can load the folder too. Everything imports
``transformers`` / ``torch`` lazily (the nox ``core`` session has neither).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FAMILIES", "HEADS", "save_checkpoint", "save_tokenizer", "token_batch"]

#: Inferox architecture name → (transformers config class, base model class, sequence-classification class, config fields).
FAMILIES: dict[str, tuple[str, str, str, dict[str, Any]]] = {
    "bert": ("BertConfig", "BertModel", "BertForSequenceClassification", {}),
    "roberta": ("RobertaConfig", "RobertaModel", "RobertaForSequenceClassification", {"pad_token_id": 1, "type_vocab_size": 1}),
    "xlm-roberta": ("XLMRobertaConfig", "XLMRobertaModel", "XLMRobertaForSequenceClassification", {"pad_token_id": 1, "type_vocab_size": 1}),
    "electra": ("ElectraConfig", "ElectraModel", "ElectraForSequenceClassification", {"embedding_size": 16}),
    "distilbert": ("DistilBertConfig", "DistilBertModel", "DistilBertForSequenceClassification", {}),
    "mpnet": ("MPNetConfig", "MPNetModel", "MPNetForSequenceClassification", {}),
}
#: What a checkpoint's head may be: none (the encoder), classification (3 labels), reranking (1 label).
HEADS = (None, "classify", "rerank")
VOCAB = 99
MAX_POSITIONS = 40


def _config(family: str, **overrides: Any) -> Any:
    import transformers

    cls_name, _, _, extra = FAMILIES[family]
    if family == "distilbert":
        fields: dict[str, Any] = {"vocab_size": VOCAB, "dim": 32, "n_layers": 2, "n_heads": 4, "hidden_dim": 37, "max_position_embeddings": MAX_POSITIONS}
    else:
        fields = {"vocab_size": VOCAB, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 37, "max_position_embeddings": MAX_POSITIONS}
    return getattr(transformers, cls_name)(**{**fields, **extra, **overrides})


def save_checkpoint(family: str, folder: Path, *, head: str | None = None, seed: int = 0, **config: Any) -> Any:
    """Save a tiny random ``family`` checkpoint (``head``: ``None``, ``"classify"`` or ``"rerank"``) to ``folder``."""
    import torch
    import transformers

    _, base, classifier, _ = FAMILIES[family]
    if head == "classify":
        config = {"num_labels": 3, "id2label": {0: "negative", 1: "neutral", 2: "positive"}, "label2id": {"negative": 0, "neutral": 1, "positive": 2}, **config}
    elif head == "rerank":
        config = {"num_labels": 1, **config}
    torch.manual_seed(seed)
    cls = getattr(transformers, classifier if head else base)
    model = cls(_config(family, **config)).eval()
    with torch.no_grad():  # LayerNorms start at 1/0: random ones, so that a swapped weight and bias show
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(str(folder))
    return model


def save_tokenizer(folder: Path) -> None:
    """A WordPiece tokenizer over :data:`VOCAB` tokens (the specials first, as BERT's), saved the way
    ``transformers`` does (``tokenizer.json`` and friends)."""
    from transformers import BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = [f"w{i}" for i in range(VOCAB - len(specials))]
    vocab = folder / "vocab.txt"
    folder.mkdir(parents=True, exist_ok=True)
    vocab.write_text("\n".join(specials + words) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True).save_pretrained(str(folder))


def token_batch(family: str, *, batch: int = 4, seq: int = 12, seed: int = 0) -> dict[str, np.ndarray]:
    """Token ids with ragged padding (the family's padding id, mask 0) — and a row that is all real tokens."""
    rng = np.random.default_rng(seed)
    pad = 1 if family in ("roberta", "xlm-roberta", "mpnet") else 0
    ids = rng.integers(5, VOCAB, size=(batch, seq), dtype=np.int64)
    mask = np.ones((batch, seq), np.int64)
    for i in range(1, batch):
        mask[i, int(rng.integers(2, seq)):] = 0
    ids[mask == 0] = pad
    out = {"input_ids": ids, "attention_mask": mask}
    if family in ("bert", "electra"):
        types = np.zeros((batch, seq), np.int64)
        types[:, seq // 2 :] = 1
        out["token_type_ids"] = types * mask
    return out
