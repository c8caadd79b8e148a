#!/usr/bin/env python3
"""CDK app of sav-router: `npx cdk deploy --all`, or `python app.py` to synthesize into cdk.out/.

Configuration is the `sav-router` context object of cdk.json (README, "Deployment on AWS"
lists the keys). `python app.py` without the CDK CLI reads cdk.json itself;
`SAV_ROUTER_IMAGE_URI` and `SAV_ROUTER_SERVING_IMAGE_URI` override `imageUri` and `servingImageUri` (CI pushes
the images, then deploys).
Synthesis runs the cdk-nag AwsSolutions and Serverless packs: any
unacknowledged finding fails it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, ServerlessChecks

from infra.config import CONTEXT_KEY, ConfigError, from_context
from infra.stacks import build
from sav_router import env

HERE = Path(__file__).resolve().parent


def cdk_json_context() -> dict:
    return json.loads((HERE / "cdk.json").read_text(encoding="utf-8"))["context"]


def context_object(given: object, defaults: dict) -> dict:
    """The `sav-router` context: cdk.json's object, or the CLI's `-c sav-router='{...}'`, which arrives as a string.

    A string is parsed as JSON and its keys override cdk.json's, one level deep, so that `-c sav-router='{"retainData": false}'`
    changes one key instead of dropping the teams.
    """
    if given is None:
        return dict(defaults)
    if isinstance(given, str):
        try:
            given = json.loads(given)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"the -c value is not a JSON object ({exc.msg} at character {exc.pos})") from None
    if not isinstance(given, dict):
        raise ConfigError(f"expected a JSON object, got {type(given).__name__}")
    return {**defaults, **given}


# Environment variables that override a cdk.json key: CI builds and pushes the images, then deploys with them.
ENVIRONMENT_OVERRIDES = {env.IMAGE_URI: "imageUri", env.SERVING_IMAGE_URI: "servingImageUri"}


def with_environment_overrides(raw: dict, environ: Mapping[str, str]) -> dict:
    """The context object with each override set in the environment (an empty variable overrides nothing)."""
    return {**raw, **{key: environ[name] for name, key in ENVIRONMENT_OVERRIDES.items() if environ.get(name)}}


def main() -> cdk.App:
    defaults = cdk_json_context()
    app = cdk.App(outdir=os.environ.get("CDK_OUTDIR", str(HERE / "cdk.out")),
                  context={k: v for k, v in defaults.items() if k.startswith("@aws-cdk")})
    try:
        raw = context_object(app.node.try_get_context(CONTEXT_KEY), defaults[CONTEXT_KEY])
    except ConfigError as exc:
        sys.exit(f"cdk context {CONTEXT_KEY!r}: {exc}")
    raw = with_environment_overrides(raw, os.environ)
    try:
        config = from_context(raw)
    except ConfigError as exc:  # a clear one-line refusal naming the key, not a traceback
        sys.exit(f"cdk.json context {CONTEXT_KEY!r}: {exc}")
    where = cdk.Environment(account=config.account or os.environ.get("CDK_DEFAULT_ACCOUNT"), region=config.region or os.environ.get("CDK_DEFAULT_REGION"))
    stacks = build(app, config, env=where)
    for stack in stacks.values():
        cdk.Tags.of(stack).add("project", "sav-router")
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app), ServerlessChecks(app))
    return app


if __name__ == "__main__":
    main().synth()
