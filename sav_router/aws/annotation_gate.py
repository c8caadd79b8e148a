"""When annotation drops start a training run.

Drops arrive in bursts (one file per reviewer, many files per export). Each
object counts once (a DynamoDB ledger keyed by key + ETag, written in the same
transaction as the pending-rows counter), a run starts only when at least
`min_rows` new annotated rows are pending and no run is in flight, and the
execution name is derived from the ledger generation so a retried start is a
no-op (`ExecutionAlreadyExists`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from sav_router.core import layout
from sav_router.core.jsonio import split_lines
from sav_router.data.annotations import DATA_SUFFIXES, FORMATS, HEADER_FORMATS

GATE_KEY = "gate"


@dataclass(frozen=True)
class Drop:
    bucket: str
    key: str
    etag: str


def drops_from_event(event: Mapping[str, Any]) -> list[Drop]:
    """S3 `Object Created` EventBridge events, delivered through SQS (one per record)."""
    drops = []
    for record in event.get("Records", []):
        detail = json.loads(record["body"]).get("detail", {})
        key = detail.get("object", {}).get("key", "")
        if key.startswith(layout.ANNOTATIONS) and key.lower().endswith(DATA_SUFFIXES):
            drops.append(Drop(detail["bucket"]["name"], key, str(detail["object"].get("etag", ""))))
    return drops


def count_rows(s3: Any, drop: Drop) -> int:
    """Annotated rows in a drop: non-blank lines, less the header of a format that has one (.csv, .tsv)."""
    body = s3.get_object(Bucket=drop.bucket, Key=drop.key)["Body"].read().decode("utf-8", errors="replace")
    lines = sum(1 for line in split_lines(body) if line.strip())
    return max(0, lines - 1) if FORMATS.get(PurePosixPath(drop.key).suffix.lower()) in HEADER_FORMATS else lines


class AnnotationLedger:
    def __init__(self, dynamodb: Any, table: str) -> None:
        self.db, self.table = dynamodb, table

    def record(self, drop: Drop, rows: int) -> bool:
        """Count a drop once; False when this object version was already counted."""
        try:
            self.db.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": {"pk": {"S": f"object#{drop.key}#{drop.etag}"}, "rows": {"N": str(rows)}},
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": {"pk": {"S": GATE_KEY}},
                            "UpdateExpression": "ADD pending_rows :rows, pending_objects :one",
                            "ExpressionAttributeValues": {":rows": {"N": str(rows)}, ":one": {"N": "1"}},
                        }
                    },
                ]
            )
        except self.db.exceptions.TransactionCanceledException:
            return False
        return True

    def pending(self) -> tuple[int, int, int]:
        """(pending rows, pending objects, generation)."""
        item = self.db.get_item(TableName=self.table, Key={"pk": {"S": GATE_KEY}}, ConsistentRead=True).get("Item", {})
        value = lambda name: int(item.get(name, {}).get("N", "0"))  # noqa: E731
        return value("pending_rows"), value("pending_objects"), value("generation")

    def consume(self, generation: int, rows: int) -> bool:
        """Reset the counters for a started run, unless drops arrived meanwhile (they then count for the next run)."""
        try:
            self.db.update_item(
                TableName=self.table,
                Key={"pk": {"S": GATE_KEY}},
                UpdateExpression="SET pending_rows = :zero, pending_objects = :zero, generation = :next",
                ConditionExpression="(attribute_not_exists(generation) OR generation = :gen) AND pending_rows = :rows",
                ExpressionAttributeValues={":zero": {"N": "0"}, ":next": {"N": str(generation + 1)}, ":gen": {"N": str(generation)}, ":rows": {"N": str(rows)}},
            )
        except self.db.exceptions.ConditionalCheckFailedException:
            return False
        return True


@dataclass
class TrainingGate:
    ledger: AnnotationLedger
    sfn: Any
    state_machine_arn: str
    min_rows: int

    def record(self, s3: Any, drops: Iterable[Drop]) -> int:
        """Count new drops; returns how many were new."""
        return sum(self.ledger.record(drop, count_rows(s3, drop)) for drop in drops)

    def maybe_start(self) -> dict[str, Any]:
        rows, objects, generation = self.ledger.pending()
        if rows == 0 or rows < self.min_rows:
            return {"started": False, "reason": f"{rows} new annotated rows pending, {self.min_rows} needed", "pending_rows": rows}
        running = self.sfn.list_executions(stateMachineArn=self.state_machine_arn, statusFilter="RUNNING", maxResults=1)["executions"]
        if running:
            return {"started": False, "reason": f"run {running[0]['name']} in flight", "pending_rows": rows}
        name = f"annotations-g{generation}"
        payload = json.dumps({"trigger": "annotations", "pending_rows": rows, "pending_objects": objects})
        try:
            self.sfn.start_execution(stateMachineArn=self.state_machine_arn, name=name, input=payload)
        except self.sfn.exceptions.ExecutionAlreadyExists:
            pass  # a retried start of the same generation
        self.ledger.consume(generation, rows)
        return {"started": True, "execution_name": name, "pending_rows": rows}
