"""TrainConfig: the one source of training settings.

Every knob of a training run is a field here, with its default and its help
text. The CLI's `train` options, SageMaker's hyperparameters.json and the CDK
`training.hyperparameters` context are all read through this class
(`cli_options`, `from_mapping`), and the estimator is built from it
(`estimator_params`). Pure Python: the CLI parser and `cdk synth` import it
without numpy or torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

# Out-of-distribution detectors by method name; `sav_router.model.ood.DETECTORS`
# implements exactly these (a test keeps the two equal).
OOD_METHODS = ("knn", "mahalanobis")
HEADS = ("cosine", "linear")
# Backends a bundle can be certified on; "auto" = the fastest passing the equivalence gate, "onnx-auto" = among ONNX only
# (`sav_router.model.backends.certify.CHOICES`; a test keeps the two equal).
SERVING_BACKENDS = ("auto", "onnx-auto", "torch", "onnx", "onnx-int8")
# The choices whose bundle serves without torch (the serving image has none); the first is the SageMaker pipeline's default.
ONNX_SERVING_BACKENDS = ("onnx-auto", "onnx-int8", "onnx")
# Options of a training job that are not model settings (SageMaker hyperparameters only).
JOB_KEYS = ("text_column", "label_column")


def _knob(default: Any, help: str, *, flag: str | None = None, cli: bool = True, choices: tuple[str, ...] | None = None) -> Any:
    """A field with its CLI help; `flag` overrides the option name, `cli=False` keeps it off the command line."""
    return field(default=default, metadata={"help": help, "flag": flag, "cli": cli, "choices": choices})


@dataclass
class TrainConfig:
    """Every knob of a training run (hyperparameters.json keys use the same names)."""

    base_model: str | None = _knob(None, "HF model folder or id (default: packaged all-MiniLM-L6-v2)")
    max_length: int = _knob(64, "tokens kept per request (at most the model's position limit)")
    epochs: int = _knob(6, "fine-tuning epochs, early-stopped on validation")
    batch_size: int = _knob(32, "training batch size")
    learning_rate: float = _knob(5e-5, "encoder learning rate")
    head_learning_rate: float = _knob(2e-3, "classification head learning rate")
    weight_decay: float = _knob(0.01, "AdamW weight decay", cli=False)
    warmup_ratio: float = _knob(0.06, "share of steps with a linear learning-rate warm-up", cli=False)
    dropout: float = _knob(0.1, "dropout before the head", cli=False)
    label_smoothing: float = _knob(0.0, "label smoothing of the loss", cli=False)
    class_weighted: bool = _knob(False, "class-weighted loss")
    linear_probe: bool = _knob(True, "fit a linear probe first; fine-tuning must beat it on validation", cli=False)
    probe_l2: float = _knob(1e-4, "L2 penalty of the linear probe", cli=False)
    normalize: bool = _knob(True, "L2-normalize mean-pooled embeddings before the head", cli=False)
    patience: int = _knob(2, "epochs without validation gain before early stopping", cli=False)
    head: str = _knob("cosine", "head trained with the encoder (both are saved as a linear head)", choices=HEADS)
    cosine_scale: float = _knob(20.0, "scale of the cosine head's logits", cli=False)
    layer_decay: float = _knob(1.0, "layer-wise learning-rate decay (1: none)", cli=False)
    seed: int = _knob(13, "random seed of splits, augmentation and training")
    calibration_share: float = _knob(0.15, "share of teach rows held out to calibrate (when no 'calibrate' rows)")
    tuning_share: float = _knob(
        0.4, "share of 'calibrate' rows that tunes the joint calibration (outlier exposure, ranking); the rest certifies"
    )
    validation_share: float = _knob(0.05, "share held out for early stopping")
    min_count: int = _knob(30, "labels under this many training rows get noisy copies")
    target_precision: float = _knob(0.95, "routed precision to guarantee")
    confidence: float = _knob(0.95, "confidence of that guarantee")
    margins: tuple[float, ...] = _knob(
        (0.1,), "minimum top-1 minus top-2 gap; repeat to let calibration pick one (Bonferroni-corrected)", flag="--margin"
    )
    ood_quantile: float = _knob(0.99, "in-distribution quantile of the OOD threshold")
    ood_method: str = _knob("knn", "out-of-distribution score", choices=OOD_METHODS)
    ood_k: int = _knob(1, "neighbour rank of the knn score")
    min_label_support: int | None = _knob(None, "calibration rows a label needs for its own threshold", cli=False)
    out_of_scope_label: str | None = _knob(
        None, "the reserved 'none of these' answer (default: $SAV_ROUTER_OUT_OF_SCOPE_LABEL, else out_of_scope)"
    )
    serving_backend: str = _knob(
        "auto", "backend whose scores the thresholds and promise are computed on, and that serves: auto = the fastest that passes "
        "the equivalence gate with PyTorch (onnx-int8, then onnx, else torch); onnx-auto = the same among ONNX only, an error when "
        "none passes (a bundle the serving image, which has no torch, can serve; the SageMaker pipeline's default)", choices=SERVING_BACKENDS
    )
    num_threads: int | None = _knob(None, "torch threads (default: usable cores)", flag="--threads")
    device: str | None = _knob(None, "torch device for fine-tuning: cpu, cuda, cuda:N (default: $SAV_ROUTER_DEVICE, else cuda when available)")
    max_steps: int | None = _knob(None, "stop fine-tuning after this many steps (smoke runs)")
    progress: bool = _knob(True, "progress bars", cli=False)

    def __post_init__(self) -> None:
        self.margins = tuple(float(m) for m in self.margins)
        for name in ("target_precision", "confidence"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value < 1):
                raise ValueError(f"{name} must be strictly between 0 and 1, got {value!r}")
        for name in ("calibration_share", "validation_share", "ood_quantile", "warmup_ratio", "dropout", "label_smoothing"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value < 1):
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        for name in ("max_length", "epochs", "batch_size", "ood_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.ood_method not in OOD_METHODS:
            raise ValueError(f"unknown ood_method {self.ood_method!r} (available: {', '.join(OOD_METHODS)})")
        if self.serving_backend not in SERVING_BACKENDS:
            raise ValueError(f"unknown serving_backend {self.serving_backend!r} (available: {', '.join(SERVING_BACKENDS)})")
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r} (available: {', '.join(HEADS)})")
        if not (isinstance(self.tuning_share, (int, float)) and 0 < self.tuning_share < 1):
            raise ValueError(f"tuning_share must be strictly between 0 and 1, got {self.tuning_share!r}")
        if any(not (0 <= m < 1) for m in self.margins):
            raise ValueError(f"margins must be in [0, 1), got {list(self.margins)}")

    def calibration_settings(self):
        """The calibration part of these settings, as the one object the calibration takes."""
        from sav_router.calibration.settings import CalibrationSettings

        return CalibrationSettings(target_precision=self.target_precision, confidence=self.confidence, margins=tuple(self.margins),
                                   tuning_share=self.tuning_share, seed=self.seed, min_label_support=self.min_label_support)

    def hyperparameters(self) -> dict[str, Any]:
        """JSON-ready settings (what a SageMaker job receives)."""
        data = asdict(self)
        data.pop("progress")
        data["margins"] = list(self.margins)
        return data

    def estimator_params(self, accepted: Mapping[str, Any] | Any) -> dict[str, Any]:
        """The settings an estimator with these parameter names takes."""
        return {name: getattr(self, name) for name in accepted if name in _FIELD_NAMES}

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, allowed_extra: tuple[str, ...] = (), what: str = "training settings") -> TrainConfig:
        """A TrainConfig from decoded values; an unknown key or a wrong type is an error naming it."""
        unknown = sorted(set(values) - _FIELD_NAMES - set(allowed_extra))
        if unknown:
            raise ValueError(f"unknown {what}: {unknown} (known: {sorted(_FIELD_NAMES | set(allowed_extra))})")
        chosen = {k: v for k, v in values.items() if k in _FIELD_NAMES}
        for spec in fields(cls):
            if spec.name in chosen and chosen[spec.name] is not None:
                chosen[spec.name] = _coerce(spec.name, spec.type, chosen[spec.name])
        return cls(**chosen)

    @classmethod
    def cli_options(cls) -> list[dict[str, Any]]:
        """argparse specs of the options the `train` command exposes (defaults stay here: None means unset)."""
        defaults = cls()
        options = []
        for spec in fields(cls):
            if not spec.metadata.get("cli"):
                continue
            default = getattr(defaults, spec.name)
            shown = list(default) if isinstance(default, tuple) else default
            flag = spec.metadata.get("flag") or "--" + spec.name.replace("_", "-")
            help_text = spec.metadata["help"] if default is None else f"{spec.metadata['help']} (default {shown})"
            option: dict[str, Any] = {"flags": [flag], "dest": spec.name, "help": help_text, "metavar": flag.lstrip("-").upper().replace("-", "_")}
            kind = _base_type(spec.type)
            if kind == "bool":
                option["action"] = "store_true"
                option["default"] = None
                option.pop("metavar")
            elif kind.startswith("tuple"):
                option["action"] = "append"
                option["type"] = float
            else:
                option["type"] = {"int": int, "float": float}.get(kind, str)
            if spec.metadata.get("choices"):
                option["choices"] = list(spec.metadata["choices"])
                option.pop("metavar")
            options.append(option)
        return options


_FIELD_NAMES = frozenset(f.name for f in fields(TrainConfig))
assert all(f.default is not MISSING for f in fields(TrainConfig))


def _base_type(annotation: Any) -> str:
    text = str(annotation).replace(" ", "")
    return text.split("|")[0]


def _coerce(name: str, annotation: Any, value: Any) -> Any:
    """Check a decoded value against the field's type; ints are accepted for floats."""
    kind = _base_type(annotation)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false"}:
            return value.lower() == "true"
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind == "str":
        if isinstance(value, str):
            return value
    elif kind.startswith("tuple"):
        items = value if isinstance(value, (list, tuple)) else [value]
        if all(isinstance(m, (int, float)) and not isinstance(m, bool) for m in items):
            return tuple(float(m) for m in items)
    raise ValueError(f"training setting {name!r} must be {kind}, got {value!r}")
