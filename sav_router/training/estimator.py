"""Fine-tuning on CPU: the `RouterClassifier` estimator.

The default recipe (measured on Banking77, see BENCHMARKS.md):
1. mean pooling, L2-normalized: the geometry the default sentence-embedding
   checkpoint was trained for;
2. a cosine head (scaled cosine between the embedding and each class
   direction), started at the class centroids of the frozen embeddings and
   trained with the encoder: the loss can only fall by moving embeddings and
   directions on the sphere, not by inflating weights. Fine-tuning through a
   linear probe with cross-entropy (the alternative, `head="linear"`) lost
   accuracy on Banking77 instead of gaining it;
3. AdamW, 5e-5 for the encoder and 2e-3 for the head, 6 epochs, linear
   warm-up and decay, gradient clipping, optional layer-wise rate decay
   (chosen by `benchmarks/recipe_search.py` on a dev split carved from
   Banking77's train split: see BENCHMARKS.md);
4. length-bucketed batches with per-batch padding (most requests are short);
5. early stopping on validation accuracy, keeping the best weights (ties go
   to the later epoch); epoch 0 (the probe or the centroids alone) must be
   beaten, not tied, to be replaced.
The cosine head is folded into a plain linear head after training, so
bundles, ONNX export and serving do not depend on how it was trained.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from sav_router.model.network import (
    CosineHead,
    Encoded,
    RouterNetwork,
    bucketed_batches,
    configure_threads,
    forward_texts,
    load_encoder,
    resolve_base_model,
    resolve_device,
)
from sav_router.training.config import TrainConfig

_DEFAULTS = TrainConfig()  # the estimator's defaults are TrainConfig's: one source


@dataclass
class EpochStats:
    epoch: int
    train_loss: float
    validation_accuracy: float | None
    validation_loss: float | None
    seconds: float
    examples_per_second: float


@dataclass
class History:
    probe_accuracy: float | None = None
    epochs: list[EpochStats] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "probe_accuracy": self.probe_accuracy,
            "epochs": [vars(e) for e in self.epochs],
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "seconds": round(self.seconds, 1),
        }


def _class_weights(label_ids: np.ndarray, num_labels: int) -> torch.Tensor:
    counts = np.bincount(label_ids, minlength=num_labels).astype(np.float64)
    weights = len(label_ids) / (num_labels * np.maximum(counts, 1.0))
    return torch.tensor(weights / weights.mean(), dtype=torch.float32)


HEADS = ("linear", "cosine")
_NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


def _layer_depth(name: str, num_layers: int) -> int:
    """0 for embeddings, i + 1 for transformer block i, num_layers + 1 for anything above."""
    if "embeddings" in name:
        return 0
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part in ("layer", "layers", "block") and parts[i + 1].isdigit():
            return int(parts[i + 1]) + 1
    return num_layers + 1


def encoder_parameter_groups(encoder: nn.Module, learning_rate: float, weight_decay: float, layer_decay: float = 1.0) -> list[dict]:
    """AdamW groups: no decay on biases and norms; layer-wise rate decay (top block at
    `learning_rate`, each block below `layer_decay` times slower; 1.0 = uniform)."""
    num_layers = int(getattr(encoder.config, "num_hidden_layers", 0) or 0)
    groups: dict[tuple[int, bool], dict] = {}
    for name, parameter in encoder.named_parameters():
        depth = _layer_depth(name, num_layers)
        decays = not name.endswith(_NO_DECAY)
        group = groups.setdefault(
            (depth, decays),
            {"params": [], "weight_decay": weight_decay if decays else 0.0, "lr": learning_rate * layer_decay ** max(0, num_layers - depth)},
        )
        group["params"].append(parameter)
    return list(groups.values())


class RouterClassifier:
    """Fine-tunes a BERT-family encoder with a mean-pooled linear head.

    Follows the scikit-learn contract: the constructor only stores parameters,
    `fit` returns self, learned state ends in `_` (`classes_`, `network_`,
    `tokenizer_`, `history_`).
    """

    def __init__(
        self,
        base_model: str | None = None,
        *,
        max_length: int = _DEFAULTS.max_length,
        epochs: int = _DEFAULTS.epochs,
        batch_size: int = _DEFAULTS.batch_size,
        learning_rate: float = _DEFAULTS.learning_rate,
        head_learning_rate: float = _DEFAULTS.head_learning_rate,
        weight_decay: float = _DEFAULTS.weight_decay,
        warmup_ratio: float = _DEFAULTS.warmup_ratio,
        dropout: float = _DEFAULTS.dropout,
        label_smoothing: float = _DEFAULTS.label_smoothing,
        class_weighted: bool = _DEFAULTS.class_weighted,
        linear_probe: bool = _DEFAULTS.linear_probe,
        probe_l2: float = _DEFAULTS.probe_l2,
        normalize: bool = _DEFAULTS.normalize,
        patience: int = _DEFAULTS.patience,
        head: str = _DEFAULTS.head,
        cosine_scale: float = _DEFAULTS.cosine_scale,
        layer_decay: float = _DEFAULTS.layer_decay,
        seed: int = _DEFAULTS.seed,
        num_threads: int | None = _DEFAULTS.num_threads,
        device: str | None = _DEFAULTS.device,
        progress: bool = _DEFAULTS.progress,
        max_steps: int | None = _DEFAULTS.max_steps,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.base_model = base_model
        self.max_length = max_length
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.head_learning_rate = head_learning_rate
        self.weight_decay = weight_decay
        self.warmup_ratio = warmup_ratio
        self.dropout = dropout
        self.label_smoothing = label_smoothing
        self.class_weighted = class_weighted
        self.linear_probe = linear_probe
        self.probe_l2 = probe_l2
        self.normalize = normalize
        self.patience = patience
        self.head = head
        self.cosine_scale = cosine_scale
        self.layer_decay = layer_decay
        self.seed = seed
        self.num_threads = num_threads
        self.device = device
        self.progress = progress
        self.max_steps = max_steps
        self.log = log

    def get_params(self) -> dict[str, object]:
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and k != "log"}

    def _say(self, message: str) -> None:
        if self.log is not None:
            self.log(message)

    # -- fitting -------------------------------------------------------------
    def fit(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        validation: tuple[Sequence[str], Sequence[str]] | None = None,
        classes: Sequence[str] | None = None,
    ) -> "RouterClassifier":
        started = time.perf_counter()
        configure_threads(self.num_threads)
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        self.classes_ = list(classes) if classes is not None else sorted(set(labels))
        index = {label: i for i, label in enumerate(self.classes_)}
        y = np.array([index[label] for label in labels], dtype=np.int64)
        self.base_model_ = resolve_base_model(self.base_model)
        self.tokenizer_, encoder = load_encoder(self.base_model_)
        positions = getattr(encoder.config, "max_position_embeddings", None)
        if isinstance(positions, int) and self.max_length > positions:
            raise ValueError(f"max_length {self.max_length} exceeds the base model's {positions} positions ({self.base_model_})")
        self.device_ = resolve_device(self.device)
        self.network_ = RouterNetwork(encoder, len(self.classes_), dropout=self.dropout, normalize=self.normalize).to(self.device_)
        self.history_ = History()
        encoded = Encoded(self.tokenizer_, texts, self.max_length)
        val_texts, val_y = self._validation_arrays(validation, index)

        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.head == "cosine":
            self._init_cosine_head(texts, y, val_texts, val_y)
        elif self.linear_probe:
            self._fit_linear_probe(texts, y, val_texts, val_y)
        self._fine_tune(encoded, y, val_texts, val_y, rng)
        if isinstance(self.network_.head, CosineHead):
            self.network_.head = self.network_.head.folded().to(self.device_)
        self.history_.seconds = time.perf_counter() - started
        return self

    def _validation_arrays(self, validation, index) -> tuple[list[str], np.ndarray]:
        if not validation:
            return [], np.zeros(0, dtype=np.int64)
        texts, labels = validation
        keep = [i for i, label in enumerate(labels) if label in index]
        return [texts[i] for i in keep], np.array([index[labels[i]] for i in keep], dtype=np.int64)

    def _init_cosine_head(self, texts: Sequence[str], y: np.ndarray, val_texts, val_y) -> None:
        """Class directions start at the normalized class centroids of the frozen embeddings."""
        _, features = forward_texts(
            self.network_, self.tokenizer_, texts, max_length=self.max_length, progress=self.progress, description="embed (centroids)"
        )
        centroids = np.zeros((len(self.classes_), features.shape[1]), dtype=np.float32)
        np.add.at(centroids, y, features)
        head = CosineHead(features.shape[1], len(self.classes_), self.cosine_scale)
        with torch.no_grad():
            head.weight.copy_(nn.functional.normalize(torch.from_numpy(centroids), dim=-1))
        self.network_.head = head.to(self.device_)
        self._record_probe(val_texts, val_y, "nearest centroid")

    def _record_probe(self, val_texts, val_y, what: str) -> None:
        if len(val_y):
            logits, _ = forward_texts(self.network_, self.tokenizer_, val_texts, max_length=self.max_length)
            self.history_.probe_accuracy = float((logits.argmax(axis=1) == val_y).mean())
            self._say(f"{what}: validation accuracy {self.history_.probe_accuracy:.4f}")

    def _fit_linear_probe(self, texts: Sequence[str], y: np.ndarray, val_texts, val_y) -> None:
        """Fit the head on frozen features (full-batch L-BFGS on cached embeddings)."""
        _, features = forward_texts(
            self.network_, self.tokenizer_, texts, max_length=self.max_length, progress=self.progress, description="embed (probe)"
        )
        x = torch.from_numpy(features)
        target = torch.from_numpy(y)
        head = self.network_.head
        # Standardize inside the probe, then fold the scaling back into the head weights.
        mean, std = x.mean(dim=0), x.std(dim=0).clamp(min=1e-6)
        probe = nn.Linear(x.shape[1], len(self.classes_))
        optimizer = torch.optim.LBFGS(probe.parameters(), lr=1.0, max_iter=300, history_size=20, line_search_fn="strong_wolfe")
        z = (x - mean) / std
        l2 = self.probe_l2

        def closure():
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(probe(z), target) + l2 * probe.weight.pow(2).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            optimizer.step(closure)
        with torch.no_grad():
            head.weight.copy_((probe.weight / std).to(self.device_))
            head.bias.copy_((probe.bias - (probe.weight * (mean / std)).sum(dim=1)).to(self.device_))
        self._record_probe(val_texts, val_y, "linear probe")

    def _fine_tune(self, encoded: Encoded, y: np.ndarray, val_texts, val_y, rng: np.random.Generator) -> None:
        from tqdm.auto import tqdm
        from transformers import get_linear_schedule_with_warmup

        network = self.network_
        steps_per_epoch = math.ceil(len(y) / self.batch_size)
        total_steps = steps_per_epoch * self.epochs
        if self.max_steps is not None:
            total_steps = min(total_steps, self.max_steps)
        if total_steps <= 0:
            return
        groups = encoder_parameter_groups(network.encoder, self.learning_rate, self.weight_decay, self.layer_decay)
        # A cosine head's weight norm does not matter, so decaying it would only slow it down.
        head_decay = 0.0 if isinstance(network.head, CosineHead) else self.weight_decay
        groups.append({"params": list(network.head.parameters()), "weight_decay": head_decay, "lr": self.head_learning_rate})
        optimizer = torch.optim.AdamW(groups)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(self.warmup_ratio * total_steps), total_steps)
        weights = _class_weights(y, len(self.classes_)).to(self.device_) if self.class_weighted else None
        loss_fn = nn.CrossEntropyLoss(weight=weights, label_smoothing=self.label_smoothing)
        lengths = encoded.lengths
        best_accuracy, best_state, stale, step = -1.0, None, 0, 0
        if self.history_.probe_accuracy is not None:
            # Fine-tuning has to beat the probe on validation to be kept (epoch 0 = the probe alone).
            best_accuracy, best_state = self.history_.probe_accuracy, copy.deepcopy(network.state_dict())
        for epoch in range(1, self.epochs + 1):
            network.train()
            started, seen, running = time.perf_counter(), 0, 0.0
            batches = bucketed_batches(lengths, self.batch_size, rng)
            bar = tqdm(batches, desc=f"epoch {epoch}/{self.epochs}", disable=not self.progress, unit="batch")
            for indices in bar:
                ids, mask = encoded.batch(indices)
                target = torch.from_numpy(y[indices]).to(self.device_)
                logits, _ = network(ids.to(self.device_), mask.to(self.device_))
                loss = loss_fn(logits, target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(network.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                step += 1
                seen += len(indices)
                running += loss.item() * len(indices)
                bar.set_postfix(loss=f"{running / seen:.3f}")
                if step >= total_steps:
                    break
            seconds = time.perf_counter() - started
            stats = EpochStats(epoch, running / max(seen, 1), None, None, seconds, seen / max(seconds, 1e-9))
            if len(val_y):
                logits, _ = forward_texts(network, self.tokenizer_, val_texts, max_length=self.max_length)
                stats.validation_accuracy = float((logits.argmax(axis=1) == val_y).mean())
                stats.validation_loss = float(nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(val_y)))
            self.history_.epochs.append(stats)
            self._say(
                f"epoch {epoch}: loss {stats.train_loss:.4f}, "
                + (f"validation accuracy {stats.validation_accuracy:.4f}, " if stats.validation_accuracy is not None else "")
                + f"{stats.examples_per_second:.1f} examples/s"
            )
            if stats.validation_accuracy is None:
                self.history_.best_epoch, best_state = epoch, None  # no validation: keep the latest weights
            elif stats.validation_accuracy > best_accuracy or (stats.validation_accuracy == best_accuracy and self.history_.best_epoch > 0):
                # ties go to the later epoch: the learning rate has decayed further and, on a
                # small validation split, equal accuracy is no evidence against more training
                best_accuracy, stale = stats.validation_accuracy, 0
                best_state = copy.deepcopy(network.state_dict())
                self.history_.best_epoch = epoch
            else:
                stale += 1
                if stale > self.patience:
                    self.history_.stopped_early = True
                    self._say(f"early stop: no validation gain for {stale} epochs, keeping epoch {self.history_.best_epoch}")
                    break
            if step >= total_steps:
                break
        if best_state is not None and self.history_.best_epoch != self.history_.epochs[-1].epoch:
            network.load_state_dict(best_state)
            if self.history_.best_epoch == 0:
                self._say("fine-tuning did not beat the linear probe on validation: keeping the probe")
        network.eval()

    # -- inference -----------------------------------------------------------
    def logits_and_embeddings(self, texts: Sequence[str], *, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        return forward_texts(self.network_, self.tokenizer_, texts, max_length=self.max_length, batch_size=batch_size, progress=self.progress)
