"""The human side of the loop: the review queue, the terminal session, audit estimates.

    items.py    queue item format in, annotation row out
    queue.py    LocalReviewQueue (workspace review/queue.jsonl, leases, undo) and SqsReviewQueue (AWS)
    session.py  the terminal loop and `sav-router review`
    audit.py    live routed precision from audit answers and `sav-router audit`

Importing this package loads nothing heavy: boto3 only when an SQS queue is used.
"""
