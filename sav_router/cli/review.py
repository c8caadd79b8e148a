"""The `review` and `audit` commands (the parsers import nothing heavy)."""

from __future__ import annotations

import argparse
import getpass
import json

from sav_router.cli.options import EXIT_OK, UsageError, add_annotation_prefix, add_workspace, positive_int, probability
from sav_router.core.defaults import REVIEW_LEASE_SECONDS, is_sqs_queue_url
from sav_router.core.stats import CONFIDENCE


def add_review_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("review", help="answer escalated requests in the terminal (local queue or the AWS SQS review queue)")
    parser.add_argument("--queue", default="local", metavar="local|recheck|SQS_URL",
                        help="the workspace queue (default), its re-check queue of doubted annotations (blind), or the SQS review queue URL")
    add_workspace(parser)
    parser.add_argument("--bucket", help="artifacts bucket the answers go to (required with an SQS queue)")
    add_annotation_prefix(parser)
    parser.add_argument("--kms-key-id", help="KMS key for the answers written to S3 (SSE-KMS)")
    parser.add_argument("--visibility-timeout", type=positive_int, default=REVIEW_LEASE_SECONDS, help=f"seconds a message stays hidden while on screen (default {REVIEW_LEASE_SECONDS})")
    parser.add_argument("--model", metavar="DIR", help="bundle whose labels are the known labels (default: the workspace's production model)")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="stop after N requests")
    parser.add_argument("--reviewer", help="name recorded with the answers (default: the login name)")
    parser.set_defaults(func=_cmd_review)
    return parser



def _cmd_review(args: argparse.Namespace) -> int:
    from sav_router.loop.workspace import Workspace
    from sav_router.review.session import known_labels_for, run_session

    workspace = Workspace(args.workspace)
    if args.queue == "recheck":
        from sav_router.review.recheck import RecheckQueue

        queue = RecheckQueue(workspace)
    elif args.queue == "local":
        from sav_router.review.queue import LocalReviewQueue

        queue = LocalReviewQueue(workspace)
    elif is_sqs_queue_url(args.queue):
        if not args.bucket:
            raise UsageError("--bucket is required with an SQS queue URL (answers are written to s3://BUCKET/PREFIX/review/)")
        from sav_router.review.queue import SqsReviewQueue

        queue = SqsReviewQueue(args.queue, args.bucket, args.prefix, kms_key_id=args.kms_key_id, visibility_timeout=args.visibility_timeout)
    else:
        raise UsageError(f"--queue must be 'local' or an SQS queue URL (https://sqs...), got {args.queue!r}")
    known = known_labels_for(args.model, workspace)
    result = run_session(queue, known_labels=known, limit=args.limit, reviewer=args.reviewer or getpass.getuser())
    print(result.summary())
    return EXIT_OK


def add_audit_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("audit", help="live routed precision estimated from answered audit samples")
    add_workspace(parser)
    parser.add_argument("--bucket", help="read the audit answers from this S3 bucket instead of the workspace")
    add_annotation_prefix(parser)
    parser.add_argument("--confidence", type=probability, default=CONFIDENCE, help="interval confidence level (default 0.95)")
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON")
    parser.set_defaults(func=_cmd_audit)
    return parser


def _cmd_audit(args: argparse.Namespace) -> int:
    from sav_router.loop.workspace import Workspace
    from sav_router.review.audit import audit_estimate, estimate_precision, format_estimate, s3_audit_rows

    if args.bucket:
        import boto3

        answers = s3_audit_rows(boto3.client("s3"), args.bucket, args.prefix)
        report = estimate_precision(answers, confidence=args.confidence)
    else:
        report = audit_estimate(Workspace(args.workspace), confidence=args.confidence)
    print(json.dumps(report, indent=2) if args.json else format_estimate(report))
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    add_review_parser(sub)
    add_audit_parser(sub)
