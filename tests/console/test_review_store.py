"""The console's AWS calls (`sav_router.aws.review_store.ReviewStore`) against moto: queue and bucket as the console sees them."""

from __future__ import annotations

import json

from moto import mock_aws

from sav_router.aws.review_store import ReviewStore

BUCKET = "artifacts"
REGION = "eu-west-1"


def _store():
    import boto3

    s3, sqs = boto3.client("s3", region_name=REGION), boto3.client("sqs", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    url = sqs.create_queue(QueueName="review")["QueueUrl"]
    return ReviewStore(url, BUCKET, sqs=sqs, s3=s3)


def test_the_queue_calls_renew_send_back_and_count(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        store = _store()
        store.send_back(json.dumps({"id": "r1"}))
        assert store.waiting() == 1
        message = store.sqs.receive_message(QueueUrl=store.queue_url, VisibilityTimeout=30)["Messages"][0]
        assert store.renew(message["ReceiptHandle"], 60) is True
        store.sqs.delete_message(QueueUrl=store.queue_url, ReceiptHandle=message["ReceiptHandle"])
        assert store.waiting() == 0
        assert store.renew("not-a-receipt-handle", 60) is False


def test_the_bucket_reads_manifests_runs_and_decisions(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        store = _store()
        put = lambda key, body: store.s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode())  # noqa: E731
        put("models/manifests/v1.json", json.dumps({"model_version": "v1", "labels": ["a", "b"]}))
        put("models/manifests/broken.json", "{not json")
        put("evaluations/run-1/check/report.json", json.dumps({"model_version": "v1"}))
        put("traffic/decisions/dt=2026-11-30/b.jsonl", '{"id": "t1", "decision": "route"}\n{"id": "t2", "deci\n')
        assert set(store.manifests()) == {"v1"} and store.manifests()["v1"]["labels"] == ["a", "b"]
        assert store.evaluation_runs() == [("run-1", {"model_version": "v1"}, None)]  # no shadow comparison yet
        assert list(store.decisions()) == [("2026-11-30", {"id": "t1", "decision": "route"})]  # the torn line passed over
        store.delete("models/manifests/v1.json")
        assert set(store.manifests()) == set()
