"""The review queue and the artifacts bucket as the web console reads and writes them on AWS.

`SqsReviewQueue` (review/queue.py) receives, answers and skips messages; this
module holds the console's other calls, so that the console never calls a
boto3 client itself:

- the queue: keep a message on screen (renew its visibility), send one back
  (undo), count what waits;
- the bucket: take back an answer object (undo), and read the model manifests,
  the evaluation step's reports and comparisons, and the logged decisions
  (the layout in core/layout.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sav_router.aws.s3io import get_json, get_jsonl_lenient, list_keys
from sav_router.core import layout


class ReviewStore:
    def __init__(self, queue_url: str, bucket: str, *, sqs: Any, s3: Any) -> None:
        self.queue_url, self.bucket, self.sqs, self.s3 = queue_url, bucket, sqs, s3

    # -- the review queue --------------------------------------------------------
    def renew(self, handle: str, seconds: int) -> bool:
        """Keep a received message hidden `seconds` more; False when its receipt no longer holds."""
        from botocore.exceptions import ClientError

        try:
            self.sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=handle, VisibilityTimeout=seconds)
        except ClientError:
            return False
        return True

    def send_back(self, body: str) -> None:
        """Queue a message again (an answer taken back)."""
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)

    def waiting(self) -> int:
        """Messages in the queue, visible or on someone's screen (SQS's approximate counts)."""
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
        values = attributes.get("Attributes", {})
        return int(values.get("ApproximateNumberOfMessages", 0)) + int(values.get("ApproximateNumberOfMessagesNotVisible", 0))

    # -- the artifacts bucket ----------------------------------------------------
    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=key)

    def manifests(self) -> dict[str, dict[str, Any]]:
        """Model version -> its manifest under models/manifests/, with `_modified` (the object's time); unreadable ones left out."""
        found = {}
        for obj in list_keys(self.s3, self.bucket, layout.MANIFESTS):
            try:
                data = get_json(self.s3, self.bucket, obj["Key"])
            except (ValueError, KeyError):
                continue
            if isinstance(data, dict) and data.get("model_version"):
                found[str(data["model_version"])] = data | {"_modified": obj["LastModified"].isoformat()}
        return found

    def evaluation_runs(self) -> list[tuple[str, dict[str, Any], dict[str, Any] | None]]:
        """(run id, check report, shadow comparison or None) of every evaluation run with a check report."""
        runs = []
        for obj in list_keys(self.s3, self.bucket, layout.EVALUATIONS):
            if obj["Key"].endswith("/check/report.json"):
                run = obj["Key"][len(layout.EVALUATIONS) :].split("/", 1)[0]
                report = get_json(self.s3, self.bucket, obj["Key"])
                try:
                    comparison = get_json(self.s3, self.bucket, layout.run_paths(self.bucket, run)["comparison_key"])
                except self.s3.exceptions.NoSuchKey:
                    comparison = None
                runs.append((run, report, comparison))
        return runs

    def decisions(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(day, decision record) of every logged decision under traffic/decisions/dt=DAY/ (torn lines passed over)."""
        for obj in list_keys(self.s3, self.bucket, layout.TRAFFIC_DECISIONS):
            day = obj["Key"][len(layout.TRAFFIC_DECISIONS) :].split("/", 1)[0].removeprefix("dt=")
            for row in get_jsonl_lenient(self.s3, self.bucket, obj["Key"]):
                yield day, row
