"""Server settings: explicit value > environment variable > default.

In a SageMaker endpoint the container gets its configuration only through
environment variables (the Model's `Environment`), hence one variable per knob.
"""

from __future__ import annotations

from dataclasses import dataclass

from sav_router import env

MB = 1024 * 1024
DEFAULT_PORT = 8080

# Variable names live with the others in sav_router.env.
BACKEND = env.BACKEND
MAX_PAYLOAD_MB = env.MAX_PAYLOAD_MB
MAX_BATCH_SIZE = env.MAX_BATCH_SIZE
MAX_WAIT_MS = env.MAX_WAIT_MS
MAX_CONCURRENT_TRANSFORMS = env.MAX_CONCURRENT_TRANSFORMS


@dataclass(frozen=True)
class ServeSettings:
    max_payload_mb: int = 6  # SageMaker real-time endpoints cap payloads at 6 MB
    max_batch_size: int = 64
    max_wait_ms: float = 0.0  # see batcher: requests queued during a model call batch by themselves
    max_concurrent_transforms: int = 2  # overlaps parsing/network with the model call
    batch_strategy: str = "MULTI_RECORD"

    def __post_init__(self) -> None:
        if self.max_payload_mb < 1 or self.max_batch_size < 1 or self.max_wait_ms < 0 or self.max_concurrent_transforms < 1:
            raise ValueError("serving settings: max_payload_mb, max_batch_size, max_concurrent_transforms must be >= 1, max_wait_ms >= 0")

    @property
    def max_payload_bytes(self) -> int:
        return self.max_payload_mb * MB

    @classmethod
    def resolve(
        cls,
        *,
        max_payload_mb: int | None = None,
        max_batch_size: int | None = None,
        max_wait_ms: float | None = None,
        max_concurrent_transforms: int | None = None,
    ) -> "ServeSettings":
        return cls(
            max_payload_mb=env.resolve(max_payload_mb, MAX_PAYLOAD_MB, cls.max_payload_mb, int),
            max_batch_size=env.resolve(max_batch_size, MAX_BATCH_SIZE, cls.max_batch_size, int),
            max_wait_ms=env.resolve(max_wait_ms, MAX_WAIT_MS, cls.max_wait_ms, float),
            max_concurrent_transforms=env.resolve(max_concurrent_transforms, MAX_CONCURRENT_TRANSFORMS, cls.max_concurrent_transforms, int),
        )


def resolve_port(port: int | None) -> int:
    return env.resolve(port, env.SAGEMAKER_BIND_TO_PORT, DEFAULT_PORT, int)
