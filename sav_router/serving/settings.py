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


# MaxPayloadInMB of the pipeline's Batch Transform jobs (infra/training_pipeline.py reads it here):
# small enough that no payload exceeds max_instances, large enough for thousands of requests a call.
TRANSFORM_MAX_PAYLOAD_MB = 1


@dataclass(frozen=True)
class ServeSettings:
    max_payload_mb: int = 6  # SageMaker real-time endpoints cap payloads at 6 MB
    max_batch_size: int = 64
    max_batch_tokens: int = 4096  # tokens per model call (64 texts of 64): what bounds a call's time, so a neighbour's wait
    max_wait_ms: float = 0.0  # see batcher: requests queued during a model call batch by themselves
    max_concurrent_transforms: int = 2  # overlaps parsing/network with the model call
    batch_strategy: str = "MULTI_RECORD"
    # Limits one client cannot exceed (issue 11). The pipeline's Batch Transform sends at most
    # TRANSFORM_MAX_PAYLOAD_MB a call: even the shortest valid line ({"id":"1","text":"a"}, 22
    # bytes) makes under 48,000 lines, within both defaults.
    max_instances: int = 100_000
    max_tokens: int = 6_400_000  # 100,000 requests of 64 tokens
    deadline_s: float = 600.0  # Batch Transform's default invocation timeout; real-time callers give up at 60 s
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    max_connections: int = 256
    graceful_timeout_s: float = 30.0  # on SIGTERM: in-flight work until grace - margin, then a JSON 503; exit within it

    def __post_init__(self) -> None:
        if self.max_payload_mb < 1 or self.max_batch_size < 1 or self.max_batch_tokens < 1 or self.max_wait_ms < 0 or self.max_concurrent_transforms < 1:
            raise ValueError("serving settings: max_payload_mb, max_batch_size, max_batch_tokens, max_concurrent_transforms must be >= 1, max_wait_ms >= 0")
        if min(self.max_instances, self.max_tokens, self.max_connections) < 1 or min(self.deadline_s, self.header_timeout_s, self.body_timeout_s, self.graceful_timeout_s) <= 0:
            raise ValueError("serving settings: max_instances, max_tokens, max_connections must be >= 1; deadline and timeouts > 0")

    @property
    def max_payload_bytes(self) -> int:
        return self.max_payload_mb * MB

    @classmethod
    def resolve(
        cls,
        *,
        max_payload_mb: int | None = None,
        max_batch_size: int | None = None,
        max_batch_tokens: int | None = None,
        max_wait_ms: float | None = None,
        max_concurrent_transforms: int | None = None,
        max_instances: int | None = None,
        max_tokens: int | None = None,
        deadline_s: float | None = None,
        header_timeout_s: float | None = None,
        body_timeout_s: float | None = None,
        max_connections: int | None = None,
        graceful_timeout_s: float | None = None,
    ) -> "ServeSettings":
        return cls(
            max_payload_mb=env.resolve(max_payload_mb, MAX_PAYLOAD_MB, cls.max_payload_mb, int),
            max_batch_size=env.resolve(max_batch_size, MAX_BATCH_SIZE, cls.max_batch_size, int),
            max_batch_tokens=max_batch_tokens if max_batch_tokens is not None else cls.max_batch_tokens,
            max_wait_ms=env.resolve(max_wait_ms, MAX_WAIT_MS, cls.max_wait_ms, float),
            max_concurrent_transforms=env.resolve(max_concurrent_transforms, MAX_CONCURRENT_TRANSFORMS, cls.max_concurrent_transforms, int),
            max_instances=env.resolve(max_instances, env.MAX_INSTANCES, cls.max_instances, int),
            max_tokens=env.resolve(max_tokens, env.MAX_TOKENS, cls.max_tokens, int),
            deadline_s=env.resolve(deadline_s, env.DEADLINE_S, cls.deadline_s, float),
            header_timeout_s=env.resolve(header_timeout_s, env.HEADER_TIMEOUT_S, cls.header_timeout_s, float),
            body_timeout_s=env.resolve(body_timeout_s, env.BODY_TIMEOUT_S, cls.body_timeout_s, float),
            max_connections=env.resolve(max_connections, env.MAX_CONNECTIONS, cls.max_connections, int),
            graceful_timeout_s=env.resolve(graceful_timeout_s, env.GRACEFUL_TIMEOUT_S, cls.graceful_timeout_s, float),
        )


def resolve_port(port: int | None) -> int:
    return env.resolve(port, env.SAGEMAKER_BIND_TO_PORT, DEFAULT_PORT, int)
