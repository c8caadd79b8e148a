"""Deployment configuration: `cdk.json` context -> typed, validated dataclasses.

Every environment-specific value lives in the `sav-router` context object
(override per deployment with `cdk deploy -c sav-router='{...}'` or by
editing cdk.json); constructs receive these dataclasses, never raw context.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

from sav_router.aws.approval import APPROVAL_MODES, MANUAL
from sav_router.aws.instances import has_instance_storage
from sav_router.aws.settings import ENDPOINT_KINDS, PROVISIONED, SERVERLESS
from sav_router.core.defaults import AUDIT_SHARE
from sav_router.training.config import JOB_KEYS, TrainConfig  # pure Python: the one source of training settings

CONTEXT_KEY = "sav-router"
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")  # short: job names are <prefix>-<run>-check
_TEAM = re.compile(r"^[a-z][a-z0-9_-]{0,40}$")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class TrainingConfig:
    instance_type: str = "ml.m5.2xlarge"
    instance_count: int = 1
    volume_gb: int = 30
    max_runtime_seconds: int = 4 * 3600
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The job reads them through TrainConfig: check them against it now, not in a failed training job.
        try:
            TrainConfig.from_mapping(self.hyperparameters, allowed_extra=JOB_KEYS, what="training.hyperparameters")
        except ValueError as exc:
            raise ConfigError(str(exc).replace("training setting ", "training.hyperparameters.")) from exc


# SageMaker's ranges for a serverless variant (ProductionVariantServerlessConfig,
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ProductionVariantServerlessConfig.html)
SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)
SERVERLESS_MAX_CONCURRENCY = 200


@dataclass(frozen=True)
class ServerlessEndpoint:
    memory_size_mb: int = 2048
    max_concurrency: int = 5
    provisioned_concurrency: int | None = None  # instances kept warm (billed while idle); None: scale to zero

    def __post_init__(self) -> None:
        if self.memory_size_mb not in SERVERLESS_MEMORY_MB:
            raise ConfigError(f"endpoint.serverless.memorySizeMb must be one of {list(SERVERLESS_MEMORY_MB)} (1 GB steps), got {self.memory_size_mb}")
        if not 1 <= self.max_concurrency <= SERVERLESS_MAX_CONCURRENCY:
            raise ConfigError(f"endpoint.serverless.maxConcurrency must be within [1, {SERVERLESS_MAX_CONCURRENCY}], got {self.max_concurrency}")
        if self.provisioned_concurrency is not None and not 1 <= self.provisioned_concurrency <= self.max_concurrency:
            raise ConfigError(f"endpoint.serverless.provisionedConcurrency must be within [1, maxConcurrency={self.max_concurrency}] "
                              f"(or null to scale to zero), got {self.provisioned_concurrency}")

    def api(self) -> dict[str, int]:
        """The production variant's `ServerlessConfig` as CreateEndpointConfig takes it."""
        config = {"MemorySizeInMB": self.memory_size_mb, "MaxConcurrency": self.max_concurrency}
        if self.provisioned_concurrency is not None:
            config["ProvisionedConcurrency"] = self.provisioned_concurrency
        return config


@dataclass(frozen=True)
class EndpointConfig:
    name: str = "sav-router"
    kind: str = PROVISIONED  # or SERVERLESS: SageMaker Serverless Inference, scaled to zero between requests
    instance_type: str = "ml.c5.xlarge"  # provisioned only
    instance_count: int = 1  # provisioned only
    serverless: ServerlessEndpoint = ServerlessEndpoint()  # serverless only
    baking_seconds: int = 600
    latency_p99_ms: int = 1000  # alarm (and rollback) threshold on ModelLatency

    def __post_init__(self) -> None:
        if self.kind not in ENDPOINT_KINDS:
            raise ConfigError(f"endpoint.kind must be one of {list(ENDPOINT_KINDS)}, got {self.kind!r}")
        if self.instance_count < 1:
            raise ConfigError(f"endpoint.instanceCount must be >= 1, got {self.instance_count}")

    @property
    def is_serverless(self) -> bool:
        return self.kind == SERVERLESS


@dataclass(frozen=True)
class VpcPlacement:
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # SageMaker refuses a VpcConfig without either half, but only when a job or model is created (at run time).
        if bool(self.subnet_ids) != bool(self.security_group_ids):
            raise ConfigError("vpc needs both subnetIds and securityGroupIds (or neither)")

    @property
    def enabled(self) -> bool:
        return bool(self.subnet_ids)


@dataclass(frozen=True)
class DeploymentConfig:
    prefix: str = "sav-router"
    account: str | None = None
    region: str | None = None
    # label -> team comes from here: {team: [labels]}; one SQS queue per team
    teams: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    image_uri: str | None = None  # prebuilt training/serving image; None: build training_image/ at deploy
    serving_image_uri: str | None = None  # prebuilt serving image (--target serving, no torch); None: imageUri, else built
    training: TrainingConfig = TrainingConfig()
    transform_instance_type: str = "ml.m5.xlarge"
    endpoint: EndpointConfig = EndpointConfig()
    target_precision: float = 0.95
    min_coverage: float = 0.3
    approval_mode: str = MANUAL
    min_new_annotations: int = 100
    traffic_days: int = 7
    max_shadow_requests: int = 20000
    poll_seconds: int = 60
    vpc: VpcPlacement = VpcPlacement()
    alarm_email: str | None = None
    log_retention_days: int = 90
    escalation_rate_alarm: float = 0.6  # share of requests escalated over 15 minutes
    audit_share: float = AUDIT_SHARE  # share of routed requests also sent to human review, to measure live precision
    routing_concurrency: int = 5  # concurrent routing invocations at most: bounds the load on the endpoint
    retain_data: bool = True  # keep the bucket, key and tables on stack deletion

    def __post_init__(self) -> None:
        if not _NAME.match(self.prefix):
            raise ConfigError(f"prefix {self.prefix!r}: lowercase letters, digits and hyphens, 20 characters at most")
        if not 0 < self.target_precision < 1 or not 0 <= self.min_coverage <= 1:
            raise ConfigError("targetPrecision must be in (0, 1) and minCoverage in [0, 1]")
        if self.approval_mode not in APPROVAL_MODES:
            raise ConfigError(f"approvalMode must be one of {APPROVAL_MODES}, got {self.approval_mode!r}")
        if not self.teams:
            raise ConfigError("teams must declare at least one team: {team: [labels]}")
        for team in self.teams:
            if not _TEAM.match(team):
                raise ConfigError(f"team {team!r}: lowercase letters, digits, _ and - (it names a queue)")
        labels = [label for labels in self.teams.values() for label in labels]
        if len(labels) != len(set(labels)):
            raise ConfigError("a label is assigned to two teams")
        if not 0 <= self.audit_share <= 1:
            raise ConfigError("auditShare must be within [0, 1]")
        if self.poll_seconds < 1 or self.min_new_annotations < 1:
            raise ConfigError("pollSeconds and minNewAnnotations must be >= 1")
        for where, instance_type in (("training.instanceType", self.training.instance_type), ("transformInstanceType", self.transform_instance_type),
                                     ("endpoint.instanceType", self.endpoint.instance_type)):
            try:
                has_instance_storage(instance_type)  # NVMe types get no volume KMS key (sav_router.aws.instances)
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        if not 2 <= self.routing_concurrency <= 1000:
            raise ConfigError("routingConcurrency must be within [2, 1000] (the SQS event source's maximum concurrency starts at 2)")
        if self.endpoint.is_serverless:
            # Serverless Inference does not support VPC configuration or network isolation
            # (https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints.html, "Feature exclusions"): a deployment
            # placed in a VPC keeps its model in it, so it cannot use a serverless endpoint.
            if self.vpc.enabled:
                raise ConfigError("endpoint.kind serverless cannot run in the vpc: SageMaker Serverless Inference supports neither a VPC "
                                  "configuration nor network isolation; remove vpc or keep endpoint.kind provisioned")
            if self.endpoint.serverless.max_concurrency < self.routing_concurrency:
                raise ConfigError(f"endpoint.serverless.maxConcurrency ({self.endpoint.serverless.max_concurrency}) is below routingConcurrency "
                                  f"({self.routing_concurrency}): concurrent routing invocations would be throttled by the endpoint")

    @property
    def team_labels(self) -> dict[str, list[str]]:
        return {team: list(labels) for team, labels in self.teams.items()}


def _describe(hint: Any) -> str:
    return " or ".join("null" if h is type(None) else getattr(h, "__name__", str(h)) for h in get_args(hint) or (hint,))


def _check(path: str, value: Any, hint: Any) -> Any:
    """`value` as `hint` wants it (lists become tuples), or a ConfigError naming the key."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check(path, value, inner[0]) if len(inner) == 1 else value
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__} {value!r}")
        return tuple(_check(f"{path}[{i}]", item, args[0]) for i, item in enumerate(value))
    if origin in (Mapping, dict) or hint in (Mapping, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected an object, got {type(value).__name__} {value!r}")
        if len(args) == 2 and args[1] is not Any:
            return {key: _check(f"{path}.{key}", item, args[1]) for key, item in value.items()}
        return value
    ok = {bool: lambda v: isinstance(v, bool), int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), str: lambda v: isinstance(v, str)}.get(hint)
    if ok is not None and not ok(value):
        raise ConfigError(f"{path}: expected {_describe(hint)}, got {type(value).__name__} {value!r}")
    return float(value) if hint is float else value


def _build(cls: type, data: Any, mapping: Mapping[str, str], path: str, **nested: Any) -> Any:
    """`cls` from a camelCase object: unknown keys and wrong types are refused with the key named."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path or CONTEXT_KEY}: expected an object, got {type(data).__name__} {data!r}")
    unknown = set(data) - set(mapping) - set(nested)
    if unknown:
        where = f" in {path}" if path else ""
        raise ConfigError(f"unknown configuration keys {sorted(unknown)}{where} (known: {sorted({*mapping, *nested})})")
    hints = get_type_hints(cls)
    values = {mapping[key]: _check(f"{path}.{key}" if path else key, value, hints[mapping[key]]) for key, value in data.items() if key in mapping}
    return cls(**values, **nested)


_INSTANCE_KEYS = ("instanceType", "instanceCount")


def _endpoint(raw: Any) -> EndpointConfig:
    """`endpoint`: each kind takes its own keys; the other kind's keys are refused rather than silently ignored."""
    data = dict(raw) if isinstance(raw, dict) else raw
    serverless_raw = data.pop("serverless", None) if isinstance(data, dict) else None
    kind = data.get("kind", PROVISIONED) if isinstance(data, dict) else PROVISIONED
    if kind == SERVERLESS:
        given = [key for key in _INSTANCE_KEYS if key in data]
        if given:
            raise ConfigError(f"endpoint.kind serverless takes no {given}: a serverless endpoint has no instances (size it with endpoint.serverless)")
    elif serverless_raw is not None:
        raise ConfigError(f"endpoint.serverless is set but endpoint.kind is {kind!r}: set endpoint.kind to \"serverless\" or remove endpoint.serverless")
    serverless = _build(ServerlessEndpoint, serverless_raw, {
        "memorySizeMb": "memory_size_mb", "maxConcurrency": "max_concurrency", "provisionedConcurrency": "provisioned_concurrency",
    }, "endpoint.serverless")
    return _build(EndpointConfig, data, {
        "name": "name", "kind": "kind", "instanceType": "instance_type", "instanceCount": "instance_count",
        "bakingSeconds": "baking_seconds", "latencyP99Ms": "latency_p99_ms",
    }, "endpoint", serverless=serverless)


def from_context(raw: Mapping[str, Any] | None) -> DeploymentConfig:
    """Build the configuration from the `sav-router` context object (camelCase keys)."""
    data = dict(raw or {})
    training = _build(TrainingConfig, data.pop("training", None), {
        "instanceType": "instance_type", "instanceCount": "instance_count", "volumeGb": "volume_gb",
        "maxRuntimeSeconds": "max_runtime_seconds", "hyperparameters": "hyperparameters",
    }, "training")
    endpoint = _endpoint(data.pop("endpoint", None))
    vpc = _build(VpcPlacement, data.pop("vpc", None), {"subnetIds": "subnet_ids", "securityGroupIds": "security_group_ids"}, "vpc")
    teams = _check("teams", data.pop("teams", None) or {}, Mapping[str, tuple[str, ...]])
    return _build(DeploymentConfig, data, {
        "prefix": "prefix", "account": "account", "region": "region", "imageUri": "image_uri", "servingImageUri": "serving_image_uri",
        "transformInstanceType": "transform_instance_type", "targetPrecision": "target_precision",
        "minCoverage": "min_coverage", "approvalMode": "approval_mode", "minNewAnnotations": "min_new_annotations",
        "trafficDays": "traffic_days", "maxShadowRequests": "max_shadow_requests", "pollSeconds": "poll_seconds",
        "alarmEmail": "alarm_email", "logRetentionDays": "log_retention_days", "routingConcurrency": "routing_concurrency",
        "escalationRateAlarm": "escalation_rate_alarm", "retainData": "retain_data", "auditShare": "audit_share",
    }, "", teams=teams, training=training, endpoint=endpoint, vpc=vpc)
