"""The settings a calibration takes, as one frozen object (pure Python: the config imports it cheaply)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CalibrationSettings:
    """What a calibration certifies and how it splits its sample (`TrainConfig.calibration_settings()` builds it)."""

    target_precision: float = 0.95
    confidence: float = 0.95
    margins: tuple[float, ...] = (0.1,)
    tuning_share: float = 0.4
    seed: int = 13
    min_label_support: int | None = None

    def to_dict(self) -> dict[str, object]:
        return {"target_precision": self.target_precision, "confidence": self.confidence, "tuning_share": self.tuning_share,
                "seed": self.seed, "margins": list(self.margins)}
