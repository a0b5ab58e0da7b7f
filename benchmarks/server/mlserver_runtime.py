"""The MLServer side of ``bench_vs_mlserver.py``: a custom runtime computing MiniLM sentence
embeddings exactly as a user would write it for MLServer 1.7 — ``transformers`` tokenizer and
forward, mean pooling over the attention mask, L2 normalisation — with MLServer's adaptive batching
(``max_batch_size`` / ``max_batch_time`` in ``model-settings.json``) merging requests.

Runs inside the benchmark's own MLServer environment (MLServer pins an older FastAPI than
Inferox's), never imported by Inferox itself.
"""

from __future__ import annotations

import numpy as np
import torch
from mlserver import MLModel
from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri
from transformers import AutoModel, AutoTokenizer


class MiniLMEmbeddings(MLModel):
    async def load(self) -> bool:
        uri = await get_model_uri(self._settings)
        self.tokenizer = AutoTokenizer.from_pretrained(uri)
        self.model = AutoModel.from_pretrained(uri).eval()
        # sentence-transformers' max_seq_length for this model (sentence_bert_config.json).
        self.max_length = 256
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        texts = StringCodec.decode_input(payload.inputs[0])
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            emb = torch.nn.functional.normalize(pooled, p=2, dim=1)
        out = NumpyCodec.encode_output("sentence_embedding", np.ascontiguousarray(emb.numpy(), dtype=np.float32))
        return InferenceResponse(model_name=self.name, id=payload.id, outputs=[out])
