"""Sentence embeddings of the base model, frozen (never fine-tuned on the annotations).

What `doubts` scores teach rows with: a fine-tuned encoder has been pulled towards
each teach row's label, wrong ones included, so its embeddings of those rows are not
out of sample; the base model's are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sav_router.model.network import Encoded, length_sorted_batches, load_encoder, mean_pool, resolve_base_model


@torch.inference_mode()
def frozen_embeddings(base_model: str | None, texts: Sequence[str], *, max_length: int = 64, batch_size: int = 64) -> np.ndarray:
    """Mean-pooled, L2-normalised embeddings of `texts` by the base model (default: the packaged MiniLM)."""
    tokenizer, encoder = load_encoder(resolve_base_model(base_model))
    encoder.eval()
    out = np.zeros((len(texts), encoder.config.hidden_size), dtype=np.float32)
    if not texts:
        return out
    encoded = Encoded(tokenizer, texts, max_length)
    for indices in length_sorted_batches(encoded.lengths, batch_size):
        ids, mask = encoded.batch(indices)
        hidden = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        pooled = torch.nn.functional.normalize(mean_pool(hidden, mask), dim=-1)
        out[indices] = pooled.float().numpy()
    return out
