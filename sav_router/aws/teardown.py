"""What the stacks' deletion must remove although CloudFormation never created it (issue 19, bug 3).

The promotion function creates the endpoint, its configs and models (`<endpoint>`, `<endpoint>-v<N>`, with `-serverless`
appended for that kind); the state machine creates a model per run (`<prefix>-<execution>-<hash>`) and registers model package versions in the
foundation's group. None of them is a stack resource, so `cdk destroy` left the endpoint running (and billing) and
the group undeletable. A custom resource in each stack that creates them calls `remove_runtime_resources` when
the stack is deleted (`lambdas/teardown/handler.py`): the serving stack's removes the endpoint, its configs and
models; the pipeline stack's removes the run models and the package versions. Every step tolerates what is
already gone, so a retried deletion finishes the job. Pure boto3.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from sav_router.aws.settings import SERVERLESS_NAME_SUFFIX

_VERSION = rf"-v\d+(?:{re.escape(SERVERLESS_NAME_SUFFIX)})?$"  # <endpoint>-v<N>, or <endpoint>-v<N>-serverless


def _names(sm: Any, operation: str, key: str, field: str, **kwargs: Any) -> Iterator[str]:
    for page in sm.get_paginator(operation).paginate(**kwargs):
        for item in page.get(key, []):
            yield item[field]


def _gone(exc: Exception) -> bool:
    message = str(exc)
    return "Could not find" in message or "does not exist" in message or "ResourceNotFound" in message


def serving_versions(endpoint: str) -> re.Pattern[str]:
    """The names of the endpoint's configs and models, one per deployed package version."""
    return re.compile(rf"^{re.escape(endpoint)}{_VERSION}")


def remove_runtime_resources(
    sm: Any,
    *,
    endpoint_name: str | None = None,
    run_model_prefix: str | None = None,
    model_package_group: str | None = None,
) -> dict[str, list[str]]:
    """Delete what the runtime created; returns the names deleted by kind."""
    removed: dict[str, list[str]] = {"endpoint": [], "endpoint_configs": [], "models": [], "model_packages": []}
    if endpoint_name is not None:
        try:
            sm.delete_endpoint(EndpointName=endpoint_name)  # stops the billing instances; the deletion completes on its own
            removed["endpoint"].append(endpoint_name)
        except sm.exceptions.ClientError as exc:
            if not _gone(exc):
                raise
        versions = serving_versions(endpoint_name)
        for name in list(_names(sm, "list_endpoint_configs", "EndpointConfigs", "EndpointConfigName", NameContains=f"{endpoint_name}-v")):
            if versions.match(name):
                _delete(sm.delete_endpoint_config, removed["endpoint_configs"], name, EndpointConfigName=name)
        for name in list(_names(sm, "list_models", "Models", "ModelName", NameContains=f"{endpoint_name}-v")):
            if versions.match(name):
                _delete(sm.delete_model, removed["models"], name, ModelName=name)
    if run_model_prefix is not None:
        for name in list(_names(sm, "list_models", "Models", "ModelName", NameContains=run_model_prefix)):
            # a run's model, never an endpoint version (the serving stack's, named <endpoint>-v<N>)
            if name.startswith(f"{run_model_prefix}-") and not re.search(_VERSION, name):
                _delete(sm.delete_model, removed["models"], name, ModelName=name)
    if model_package_group is not None:
        try:
            packages = list(_names(sm, "list_model_packages", "ModelPackageSummaryList", "ModelPackageArn", ModelPackageGroupName=model_package_group))
        except sm.exceptions.ClientError as exc:
            if not _gone(exc):
                raise
            packages = []
        for arn in packages:
            _delete(sm.delete_model_package, removed["model_packages"], arn, ModelPackageName=arn)
    return removed


def _delete(call: Any, removed: list[str], name: str, **kwargs: Any) -> None:
    try:
        call(**kwargs)
        removed.append(name)
    except Exception as exc:  # noqa: BLE001 - gone already is fine; anything else fails the deletion (retried)
        if not _gone(exc):
            raise
