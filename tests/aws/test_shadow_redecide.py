"""One decider per deployment: the shadow comparison re-decides the candidate like the routing Lambda decides production."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from sav_router.aws.routing import PolicyStore
from sav_router.aws.shadow import compare_shadow
from sav_router.core import layout
from sav_router.core.bundle import Manifest
from sav_router.core.policy import RoutingPolicy, redecide

BUCKET = "artifacts"
LABELS = ["orders", "returns"]


def answer(request_id, label, confidence, version):
    other = next(name for name in LABELS if name != label)
    return {"id": request_id, "decision": "route", "label": label, "team": label, "confidence": confidence, "reasons": [],
            "model_version": version, "ood_score": 1.0, "scores": {label: confidence, other: 1 - confidence}}


@pytest.fixture
def bucket(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        for version in ("prod", "cand"):
            manifest = Manifest(labels=LABELS, policy=RoutingPolicy(threshold=0.9), base_model="x", model_version=version, created_at="2026-01-01")
            s3.put_object(Bucket=BUCKET, Key=layout.manifest_key(version), Body=json.dumps(manifest.to_dict()).encode())
        yield s3


def put_lines(s3, key, rows):
    s3.put_object(Bucket=BUCKET, Key=key, Body="".join(json.dumps(r) + "\n" for r in rows).encode())


def test_an_override_applies_to_the_candidate_as_to_production(bucket):
    # GIVEN operators raised the threshold to 0.99: the Lambda escalated production's 0.95 answers
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/overrides", Value=json.dumps({"threshold": 0.99}), Type="String")
    policies = PolicyStore(s3=bucket, bucket=BUCKET, ssm=ssm, overrides_parameter="/overrides")
    teams = frozenset(LABELS)
    ids = [f"r{i}" for i in range(60)]
    production = [redecide(answer(i, "orders", 0.95, "prod"), policies.policy_for("prod"), teams) for i in ids]
    assert {p["decision"] for p in production} == {"escalate"}
    paths = layout.run_paths(BUCKET, "run1")
    put_lines(bucket, paths["shadow_production_key"], production)
    # and the candidate's raw container answers (decided with its manifest policy only) say "route" at 0.96
    put_lines(bucket, paths["shadow_output_key"], [answer(i, "orders", 0.96, "cand") for i in ids])
    bucket.put_object(Bucket=BUCKET, Key=paths["gold_by_id_key"], Body=json.dumps({i: "orders" for i in ids}).encode())
    # WHEN the shadow comparison runs with the Lambda's policies
    result = compare_shadow(bucket, BUCKET, "run1", approval_mode="auto", policies=policies, teams_with_queue=teams)
    # THEN the candidate is held to the same override: no coverage for free, every decision agrees
    report = json.loads(bucket.get_object(Bucket=BUCKET, Key=paths["comparison_key"])["Body"].read())
    assert report["candidate_coverage"] == report["production_coverage"] == 0.0
    assert result["agreement_rate"] == 1.0


def test_redecide_sends_a_team_without_queue_to_a_human_on_both_sides():
    policy = RoutingPolicy(threshold=0.5, teams={"orders": "orders", "returns": "returns-team"})
    record = redecide(answer("r1", "returns", 0.9, "v"), policy, frozenset({"orders"}))
    assert record["decision"] == "escalate" and record["reasons"] == ["no_team_for_label"]
    assert redecide(answer("r1", "returns", 0.9, "v"), policy, None)["decision"] == "route"
    assert redecide({"id": "r2", "error": "boom"}, policy, None)["reasons"] == ["model_unavailable"]
    assert redecide(answer("r3", "orders", 0.9, "v"), None, None)["reasons"] == ["model_unavailable"]
    empty = {"id": "r4", "decision": "escalate", "reasons": ["empty_text"], "scores": None, "model_version": "v"}
    assert redecide(empty, policy, None)["reasons"] == ["empty_text"]
