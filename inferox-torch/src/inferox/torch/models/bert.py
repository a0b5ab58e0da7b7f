"""The ``bert`` architecture in PyTorch: Hugging Face BERT weights, no ``transformers`` at run time.

The encoder is written for inference speed: the query/key/value projections are fused into one
matmul, attention is :func:`torch.nn.functional.scaled_dot_product_attention` (which picks a fused
kernel), the mask is dropped when nothing is padded, and the forward runs under
:func:`torch.inference_mode`. Pooling and normalisation of ``sentence_embedding`` happen here, on
the model's device, as the package's pre-processing settings say.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inferox.core import Backend, DeviceId, DType, ModelMetadata
from inferox.core.architectures import (
    BertConfig,
    Preprocessing,
    bert_input_specs,
    bert_output_specs,
    bert_weight_shapes,
    check_bert_inputs,
    select_weights,
)
from inferox.core.errors import InvalidInputError
from inferox.torch.model import TorchModel
from inferox.torch.models._common import check_float, on_meta, read_weights

__all__ = ["BertEncoder", "BertModel", "create_model"]

_ACT: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "relu": F.relu,
    "tanh": torch.tanh,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
}


class _Layer(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        h = cfg.hidden_size
        self.heads = cfg.num_attention_heads
        self.head_dim = cfg.head_dim
        self.qkv = nn.Linear(h, 3 * h)
        self.attn_out = nn.Linear(h, h)
        self.attn_norm = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.inter = nn.Linear(h, cfg.intermediate_size)
        self.out = nn.Linear(cfg.intermediate_size, h)
        self.out_norm = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.act: Callable[[torch.Tensor], torch.Tensor] = _ACT[cfg.hidden_act]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, n, h = x.shape
        # (b, n, 3, heads, d) → three (b, heads, n, d) views: one matmul instead of three.
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        ctx = ctx.transpose(1, 2).reshape(b, n, h)
        x = self.attn_norm(self.attn_out(ctx) + x)
        out: torch.Tensor = self.out_norm(self.out(self.act(self.inter(x))) + x)
        return out


class BertEncoder(nn.Module):
    """BERT embeddings, encoder and pooler, plus sentence pooling; inputs are token-id tensors."""

    def __init__(self, cfg: BertConfig, pre: Preprocessing | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.pre = pre or Preprocessing()
        h = cfg.hidden_size
        self.word = nn.Embedding(cfg.vocab_size, h)
        self.position = nn.Embedding(cfg.max_position_embeddings, h)
        self.token_type = nn.Embedding(cfg.type_vocab_size, h)
        self.emb_norm = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.layers = nn.ModuleList(_Layer(cfg) for _ in range(cfg.num_hidden_layers))
        self.pooler = nn.Linear(h, h)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Return ``(last_hidden_state, pooler_output, sentence_embedding or None without pooling)``."""
        n = input_ids.shape[1]
        x = self.word(input_ids)
        # Defaults add one broadcast row instead of gathering a tensor of zeros / aranges.
        x = x + (self.token_type.weight[0] if token_type_ids is None else self.token_type(token_type_ids))
        x = x + (self.position.weight[:n] if position_ids is None else self.position(position_ids))
        x = self.emb_norm(x)
        additive: torch.Tensor | None = None
        if attention_mask is not None and not bool(attention_mask.all()):
            # Additive mask (b, 1, 1, n) with the dtype's minimum rather than a boolean one, so a row
            # that is all padding still has finite scores (uniform attention) instead of NaN.
            keep = attention_mask[:, None, None, :].to(x.dtype)
            additive = (1.0 - keep) * torch.finfo(x.dtype).min
        for layer in self.layers:
            x = layer(x, additive)
        pooled = torch.tanh(self.pooler(x[:, 0]))
        return x, pooled, None if self.pre.pooling is None else self.sentence_embedding(x, attention_mask)

    def sentence_embedding(self, x: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        mode = self.pre.pooling
        if mode == "cls":
            emb = x[:, 0]
        else:
            m = torch.ones(x.shape[:2], dtype=x.dtype, device=x.device) if attention_mask is None else attention_mask.to(x.dtype)
            m3 = m.unsqueeze(-1)
            if mode == "max":
                emb = x.masked_fill(m3 == 0, -1e9).max(dim=1).values
            else:
                counts = m3.sum(dim=1).clamp(min=1e-9)
                total = (x * m3).sum(dim=1)
                emb = total / counts if mode == "mean" else total / counts.sqrt()
        if self.pre.normalize:
            emb = F.normalize(emb, p=2.0, dim=1)
        return emb

    def load_hf_weights(self, weights: Mapping[str, torch.Tensor]) -> None:
        """Assign Hugging Face BERT parameters (prefix already stripped) to this module."""
        w = weights
        sd: dict[str, torch.Tensor] = {
            "word.weight": w["embeddings.word_embeddings.weight"],
            "position.weight": w["embeddings.position_embeddings.weight"],
            "token_type.weight": w["embeddings.token_type_embeddings.weight"],
            "emb_norm.weight": w["embeddings.LayerNorm.weight"],
            "emb_norm.bias": w["embeddings.LayerNorm.bias"],
            "pooler.weight": w["pooler.dense.weight"],
            "pooler.bias": w["pooler.dense.bias"],
        }
        for i in range(self.cfg.num_hidden_layers):
            p, q = f"encoder.layer.{i}.", f"layers.{i}."
            for kind in ("weight", "bias"):
                sd[q + "qkv." + kind] = torch.cat([w[p + f"attention.self.{t}.{kind}"] for t in ("query", "key", "value")], dim=0)
                sd[q + "attn_out." + kind] = w[p + "attention.output.dense." + kind]
                sd[q + "attn_norm." + kind] = w[p + "attention.output.LayerNorm." + kind]
                sd[q + "inter." + kind] = w[p + "intermediate.dense." + kind]
                sd[q + "out." + kind] = w[p + "output.dense." + kind]
                sd[q + "out_norm." + kind] = w[p + "output.LayerNorm." + kind]
        self.load_state_dict(sd, strict=True, assign=True)


class BertModel(TorchModel):
    """A :class:`BertEncoder` behind the Inferox model interface.

    ``text_encoder`` (a :class:`~inferox.core.text.TextEncoder`, or ``None``) turns strings into this
    model's inputs; ``preprocessing`` says how ``sentence_embedding`` is pooled.
    """

    def __init__(
        self,
        module: BertEncoder,
        *,
        metadata: ModelMetadata,
        backend: Backend | None = None,
        device: DeviceId | str | None = None,
        dtype: DType | str | None = None,
        threads: int | None = None,
        text_encoder: Any = None,
    ) -> None:
        super().__init__(
            module,
            metadata=metadata,
            input_specs=bert_input_specs(module.cfg),
            output_specs=bert_output_specs(module.cfg, module.pre),
            backend=backend,
            device=device,
            dtype=dtype,
            threads=threads,
        )
        self.config = module.cfg
        self.preprocessing = module.pre
        self.text_encoder = text_encoder

    @staticmethod
    def _value_range(value: Any) -> tuple[int, int]:
        t = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
        lo, hi = torch.aminmax(t)
        return int(lo), int(hi)

    def check_inputs(self, inputs: Mapping[str, Any]) -> None:
        """Empty input, over-long sequences, ids outside the vocabulary, mismatched shapes → InvalidInputError."""
        check_bert_inputs(self.config, inputs, self._value_range)

    def run(self, inputs: dict[str, torch.Tensor]) -> Any:
        dev = self.torch_device
        args = {k: v.to(device=dev, dtype=torch.long) for k, v in inputs.items() if v is not None}
        hidden, pooled, emb = self.module(**args)
        out = {"last_hidden_state": hidden.float(), "pooler_output": pooled.float()}
        if emb is not None:
            out["sentence_embedding"] = emb.float()
        return out

    def encode_text(self, texts: Sequence[str] | str, *, max_length: int | None = None) -> dict[str, Any]:
        """Tokenise and run ``texts`` in one call (needs ``text_encoder``); returns torch outputs."""
        if self.text_encoder is None:
            raise InvalidInputError("this model has no tokenizer; build it with the tokenizer_path option", name="text")
        batch = {k: torch.from_numpy(v) for k, v in self.text_encoder.encode(texts, max_length=max_length).items()}
        self.check_inputs(batch)
        return self.forward(batch)

    def warmup(self) -> None:
        ids = torch.full((1, 8), 1, dtype=torch.long)
        self.forward({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
        self.backend.synchronize(self.device)


def create_model(
    *,
    backend: Backend,
    config: Mapping[str, Any],
    weights: str | os.PathLike[str] | Mapping[str, Any],
    metadata: ModelMetadata,
    device: DeviceId | str | None = None,
    dtype: DType | str | None = None,
    **options: Any,
) -> BertModel:
    """The ``bert`` factory.

    Options: ``preprocessing`` (``{"pooling", "normalize", "max_seq_length"}``, as the package
    records), or the flat ``pooling`` / ``normalize`` / ``max_seq_length``, which win;
    ``tokenizer_path`` (a ``tokenizer.json``) to attach a :class:`~inferox.core.text.TextEncoder`;
    ``threads`` (``torch.set_num_threads``, process-wide). Others are ignored.
    """
    cfg = BertConfig.from_dict(config)
    pre = Preprocessing.from_options(options, limit=cfg.max_position_embeddings)
    tensors, source = read_weights(weights)
    chosen = check_float(select_weights(tensors, bert_weight_shapes(cfg), prefixes=("", "bert."), source=source), source)
    with on_meta():
        module = BertEncoder(cfg, pre)
    module.load_hf_weights(chosen)
    text_encoder = None
    if options.get("tokenizer_path") is not None:
        from inferox.core.text import TextEncoder

        text_encoder = TextEncoder.from_file(options["tokenizer_path"], max_length=pre.max_seq_length, limit=cfg.max_position_embeddings)
    return BertModel(module, metadata=metadata, backend=backend, device=device, dtype=dtype, threads=options.get("threads"), text_encoder=text_encoder)
