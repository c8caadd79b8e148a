"""Queries on synthesized templates (by type and property, never by hashed logical id)."""

from __future__ import annotations

import json
from pathlib import Path

import aws_env

REPO = Path(__file__).resolve().parents[2]


def synth_context() -> dict:
    context = json.loads((REPO / "cdk.json").read_text())["context"]
    config = dict(context["sav-router"])
    config.update(account=aws_env.ACCOUNT, region=aws_env.REGION, imageUri=aws_env.IMAGE_URI, pollSeconds=1)
    return {**context, "sav-router": config, "aws:cdk:bundling-stacks": []}


def resources(raw: dict, resource_type: str) -> dict:
    return {logical_id: r for logical_id, r in raw["Resources"].items() if r["Type"] == resource_type}


def policy_statements(raw: dict) -> list[dict]:
    statements = []
    for policy in resources(raw, "AWS::IAM::Policy").values():
        statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return statements


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def render(value) -> str:
    """A CloudFormation value as one string (Refs as <LogicalId>, imports by name)."""
    from infra.policies import nag_render

    return nag_render(value)
