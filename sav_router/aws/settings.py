"""One settings object per Lambda function: the typed contract between `infra/` and `lambdas/`.

The CDK construct builds the object and writes it with `to_environment()`; the handler reads it
back with `from_environ()`. The variable names are `sav_router.env` constants, so neither side
spells one as a literal. Pure Python (the routing Lambda imports it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from sav_router import env
from sav_router.core.defaults import DRIFT_ALPHA, DRIFT_DAYS_AWS

S = TypeVar("S", bound="FunctionSettings")
_JSON = "json"


def _var(name: str, default: Any = MISSING, *, codec: type | str = str) -> Any:
    metadata = {"env": name, "codec": codec}
    if default is MISSING:
        return field(metadata=metadata)
    if isinstance(default, (dict, list, tuple)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


class SettingsError(ValueError):
    """A missing or malformed environment variable: the function cannot start."""


# The endpoint's kind (cdk.json `endpoint.kind`): instances that run all the time, or SageMaker Serverless Inference.
PROVISIONED = "provisioned"
SERVERLESS = "serverless"
ENDPOINT_KINDS = (PROVISIONED, SERVERLESS)
# Models and endpoint configs of a serverless endpoint are named `<endpoint>-v<N>-serverless` (sav_router.aws.promotion),
# so that a deployment switched between kinds never reuses the other kind's; the teardown matches both.
SERVERLESS_NAME_SUFFIX = "-serverless"
ROUTING_WORK_SECONDS = 24  # what the routing function does besides calling the endpoint: S3, SSM, SQS, DynamoDB


@dataclass(frozen=True)
class EndpointCallLimits:
    """How long the routing function waits for the endpoint, and so its own timeout and the intake queue's visibility.

    The one place these numbers are set: the routing handler builds its sagemaker-runtime client from them, and
    infra/routing.py derives the function timeout and the intake queue's visibility timeout from them.
    """

    connect_timeout: int
    read_timeout: int
    max_attempts: int  # botocore "standard" retries: throttling, 5xx and read timeouts are retried

    @property
    def worst_call_seconds(self) -> int:
        return self.max_attempts * (self.connect_timeout + self.read_timeout)

    @property
    def function_timeout_seconds(self) -> int:
        return self.worst_call_seconds + ROUTING_WORK_SECONDS

    @property
    def visibility_timeout_seconds(self) -> int:
        return 6 * self.function_timeout_seconds  # AWS guidance for SQS event sources: 6x the function timeout


def endpoint_call_limits(kind: str) -> EndpointCallLimits:
    """A provisioned endpoint answers in milliseconds (BENCHMARKS.md) or is down: wait 10 s, three times.
    A serverless endpoint may first start a container (a cold start: image pull, model download, `/ping`), then has up
    to 60 s to answer (https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints-invoke.html): wait 90 s,
    twice (the second attempt usually finds the container the first one started)."""
    if kind == PROVISIONED:
        return EndpointCallLimits(connect_timeout=2, read_timeout=10, max_attempts=3)
    if kind == SERVERLESS:
        return EndpointCallLimits(connect_timeout=2, read_timeout=90, max_attempts=2)
    raise SettingsError(f"endpoint kind must be one of {ENDPOINT_KINDS}, got {kind!r}")


@dataclass(frozen=True, kw_only=True)
class FunctionSettings:
    """Base: (de)serialization through each field's `env` name and codec (str, int, float, json)."""

    function: ClassVar[str] = ""

    def to_environment(self, *, dumps: Callable[[Any], str] = json.dumps) -> dict[str, str]:
        """The Lambda environment; `dumps` lets CDK encode tokens inside JSON (Stack.to_json_string)."""
        out: dict[str, str] = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if value is None:
                continue
            out[spec.metadata["env"]] = dumps(value) if spec.metadata["codec"] == _JSON else str(value)
        return out

    @classmethod
    def from_environ(cls: type[S], environ: Mapping[str, str] | None = None) -> S:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in fields(cls):
            name, codec = spec.metadata["env"], spec.metadata["codec"]
            raw = environ.get(name)
            if raw is None or raw == "":
                if spec.default is MISSING and spec.default_factory is MISSING:
                    raise SettingsError(f"{cls.function or cls.__name__}: environment variable {name} is required")
                continue
            try:
                values[spec.name] = json.loads(raw) if codec == _JSON else codec(raw)
            except ValueError as exc:
                raise SettingsError(f"{cls.function or cls.__name__}: environment variable {name}={raw!r} is invalid: {exc}") from exc
        return cls(**values)


@dataclass(frozen=True, kw_only=True)
class RoutingSettings(FunctionSettings):
    function: ClassVar[str] = "routing"
    endpoint_name: str = _var(env.ENDPOINT_NAME)
    endpoint_kind: str = _var(env.ENDPOINT_KIND, PROVISIONED)  # how long to wait for the endpoint: endpoint_call_limits
    artifacts_bucket: str = _var(env.ARTIFACTS_BUCKET)
    team_queues: dict[str, str] = _var(env.TEAM_QUEUES, codec=_JSON)
    review_queue_url: str = _var(env.REVIEW_QUEUE_URL)
    intake_dlq_url: str = _var(env.INTAKE_DLQ_URL)
    idempotency_table: str = _var(env.IDEMPOTENCY_TABLE)
    overrides_parameter: str | None = _var(env.OVERRIDES_PARAMETER, None)
    overrides_ttl_seconds: float = _var(env.OVERRIDES_TTL_SECONDS, 60.0, codec=float)
    # The deployment always writes it (cdk.json `auditShare`, default core.defaults.AUDIT_SHARE). A function started
    # without it (by hand, in a test) samples nothing: reviewers' work is added only where a deployment asked for it.
    audit_share: float = _var(env.AUDIT_SHARE, 0.0, codec=float)
    idempotency_ttl_seconds: int = _var(env.IDEMPOTENCY_TTL_SECONDS, 86400, codec=int)

    def __post_init__(self) -> None:
        endpoint_call_limits(self.endpoint_kind)  # an unknown kind stops the function at start, not at the first call

    @property
    def endpoint_limits(self) -> EndpointCallLimits:
        return endpoint_call_limits(self.endpoint_kind)


@dataclass(frozen=True, kw_only=True)
class GateSettings(FunctionSettings):
    function: ClassVar[str] = "annotation_trigger"
    ledger_table: str = _var(env.LEDGER_TABLE)
    state_machine_arn: str = _var(env.STATE_MACHINE_ARN)
    min_new_rows: int = _var(env.MIN_NEW_ROWS, codec=int)


@dataclass(frozen=True, kw_only=True)
class DatasetSettings(FunctionSettings):
    function: ClassVar[str] = "prepare_dataset"
    artifacts_bucket: str = _var(env.ARTIFACTS_BUCKET)
    run_prefix: str = _var(env.RUN_PREFIX)
    team_labels: dict[str, list[str]] = _var(env.TEAM_LABELS, {}, codec=_JSON)


@dataclass(frozen=True, kw_only=True)
class EvaluateSettings(FunctionSettings):
    function: ClassVar[str] = "evaluate"
    artifacts_bucket: str = _var(env.ARTIFACTS_BUCKET)
    target_precision: float = _var(env.TARGET_PRECISION, codec=float)
    min_coverage: float = _var(env.MIN_COVERAGE, codec=float)


@dataclass(frozen=True, kw_only=True)
class ShadowPrepareSettings(FunctionSettings):
    function: ClassVar[str] = "shadow_prepare"
    artifacts_bucket: str = _var(env.ARTIFACTS_BUCKET)
    traffic_days: int = _var(env.TRAFFIC_DAYS, codec=int)
    max_shadow_requests: int = _var(env.MAX_SHADOW_REQUESTS, codec=int)


@dataclass(frozen=True, kw_only=True)
class ShadowCompareSettings(FunctionSettings):
    function: ClassVar[str] = "shadow_compare"
    artifacts_bucket: str = _var(env.ARTIFACTS_BUCKET)
    approval_mode: str = _var(env.APPROVAL_MODE)
    # the routing Lambda's overrides and the teams that have a queue: the candidate is re-decided as production was
    overrides_parameter: str | None = _var(env.OVERRIDES_PARAMETER, None)
    teams_with_queue: list[str] = _var(env.TEAMS_WITH_QUEUE, [], codec=_JSON)


@dataclass(frozen=True, kw_only=True)
class PromotionSettings(FunctionSettings):
    function: ClassVar[str] = "promotion"
    endpoint_name: str = _var(env.ENDPOINT_NAME)
    sagemaker_role_arn: str = _var(env.SAGEMAKER_ROLE_ARN)
    kms_key_arn: str = _var(env.KMS_KEY_ARN)
    endpoint_kind: str = _var(env.ENDPOINT_KIND, PROVISIONED)
    # provisioned: the instances; serverless: the variant's ServerlessConfig as the API takes it
    # ({MemorySizeInMB, MaxConcurrency[, ProvisionedConcurrency]}); each kind is written with its own fields only
    instance_type: str | None = _var(env.INSTANCE_TYPE, None)
    instance_count: int = _var(env.INSTANCE_COUNT, 1, codec=int)
    serverless_config: dict[str, int] | None = _var(env.SERVERLESS_CONFIG, None, codec=_JSON)
    rollback_alarms: list[str] = _var(env.ROLLBACK_ALARMS, codec=_JSON)
    artifacts_bucket: str = _var(env.ARTIFACTS_BUCKET)
    subnet_ids: list[str] = _var(env.SUBNET_IDS, [], codec=_JSON)
    security_group_ids: list[str] = _var(env.SECURITY_GROUP_IDS, [], codec=_JSON)
    baking_seconds: int = _var(env.BAKING_SECONDS, 600, codec=int)

    def __post_init__(self) -> None:
        if self.endpoint_kind not in ENDPOINT_KINDS:
            raise SettingsError(f"promotion: {env.ENDPOINT_KIND} must be one of {ENDPOINT_KINDS}, got {self.endpoint_kind!r}")
        if self.endpoint_kind == PROVISIONED and not self.instance_type:
            raise SettingsError(f"promotion: a provisioned endpoint needs {env.INSTANCE_TYPE}")
        if self.endpoint_kind == SERVERLESS and not self.serverless_config:
            raise SettingsError(f"promotion: a serverless endpoint needs {env.SERVERLESS_CONFIG}")

    @property
    def serverless(self) -> bool:
        return self.endpoint_kind == SERVERLESS


@dataclass(frozen=True, kw_only=True)
class DriftSettings(FunctionSettings):
    function: ClassVar[str] = "drift_monitor"
    artifacts_bucket: str = _var(env.ARTIFACTS_BUCKET)
    drift_days: int = _var(env.DRIFT_DAYS, DRIFT_DAYS_AWS, codec=int)
    drift_alpha: float = _var(env.DRIFT_ALPHA, DRIFT_ALPHA, codec=float)


@dataclass(frozen=True, kw_only=True)
class TeardownSettings(FunctionSettings):
    """None: what to remove comes with CloudFormation's request (the custom resource's properties)."""

    function: ClassVar[str] = "teardown"


SETTINGS = {cls.function: cls for cls in (RoutingSettings, GateSettings, DatasetSettings, EvaluateSettings,
                                          ShadowPrepareSettings, ShadowCompareSettings, PromotionSettings, DriftSettings,
                                          TeardownSettings)}
