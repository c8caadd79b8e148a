"""Fine-tuning on CPU: the `RouterClassifier` estimator.

The recipe (measured on Banking77, see BENCHMARKS.md):
1. mean pooling, L2-normalized: the geometry the default sentence-embedding
   checkpoint was trained for;
2. linear probe: fit the head on frozen embeddings first (L-BFGS, light L2),
   so fine-tuning starts from a good classifier instead of a random one
   (LP-FT, Kumar et al. 2022; it also keeps features better for OOD);
3. gentle fine-tuning of everything: AdamW, 3e-5 for the encoder and 3e-4
   for the head, linear warm-up and decay, gradient clipping (a larger rate
   first undoes what the probe found);
4. length-bucketed batches with per-batch padding (most requests are short);
5. early stopping on validation accuracy, keeping the best weights.
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

from sav_router.modeling import (
    Encoded,
    RouterNetwork,
    bucketed_batches,
    configure_threads,
    forward_texts,
    load_encoder,
    resolve_base_model,
)


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
        max_length: int = 64,
        epochs: int = 4,
        batch_size: int = 32,
        learning_rate: float = 3e-5,
        head_learning_rate: float = 3e-4,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.06,
        dropout: float = 0.1,
        label_smoothing: float = 0.0,
        class_weighted: bool = False,
        linear_probe: bool = True,
        probe_l2: float = 1e-4,
        normalize: bool = True,
        patience: int = 1,
        seed: int = 13,
        num_threads: int | None = None,
        progress: bool = True,
        max_steps: int | None = None,
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
        self.seed = seed
        self.num_threads = num_threads
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
        self.network_ = RouterNetwork(encoder, len(self.classes_), dropout=self.dropout, normalize=self.normalize)
        self.history_ = History()
        encoded = Encoded(self.tokenizer_, texts, self.max_length)
        val_texts, val_y = self._validation_arrays(validation, index)

        if self.linear_probe:
            self._fit_linear_probe(texts, y, val_texts, val_y)
        self._fine_tune(encoded, y, val_texts, val_y, rng)
        self.history_.seconds = time.perf_counter() - started
        return self

    def _validation_arrays(self, validation, index) -> tuple[list[str], np.ndarray]:
        if not validation:
            return [], np.zeros(0, dtype=np.int64)
        texts, labels = validation
        keep = [i for i, label in enumerate(labels) if label in index]
        return [texts[i] for i in keep], np.array([index[labels[i]] for i in keep], dtype=np.int64)

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
            head.weight.copy_(probe.weight / std)
            head.bias.copy_(probe.bias - (probe.weight * (mean / std)).sum(dim=1))
        if len(val_y):
            logits, _ = forward_texts(self.network_, self.tokenizer_, val_texts, max_length=self.max_length)
            self.history_.probe_accuracy = float((logits.argmax(axis=1) == val_y).mean())
            self._say(f"linear probe: validation accuracy {self.history_.probe_accuracy:.4f}")

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
        no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
        encoder_params = list(network.encoder.named_parameters())
        groups = [
            {"params": [p for n, p in encoder_params if not n.endswith(no_decay)], "weight_decay": self.weight_decay, "lr": self.learning_rate},
            {"params": [p for n, p in encoder_params if n.endswith(no_decay)], "weight_decay": 0.0, "lr": self.learning_rate},
            {"params": list(network.head.parameters()), "weight_decay": self.weight_decay, "lr": self.head_learning_rate},
        ]
        optimizer = torch.optim.AdamW(groups)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(self.warmup_ratio * total_steps), total_steps)
        weights = _class_weights(y, len(self.classes_)) if self.class_weighted else None
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
                target = torch.from_numpy(y[indices])
                logits, _ = network(ids, mask)
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
            elif stats.validation_accuracy > best_accuracy:
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
