"""Defaults the local loop and the AWS deployment share, each defined once.

Every command-line option, Lambda setting, CDK prop and console default that
stands for one of these facts imports it from here. Where the local and the
AWS value differ on purpose, both are here, with the reason.

Pure Python: the routing Lambda imports it.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# -- review ----------------------------------------------------------------------
# How long a request on a reviewer's screen stays reserved to them: the local
# queue's lease and the SQS review queue's visibility timeout (the queue's own
# setting and each receive). The console renews it while the page is shown.
REVIEW_LEASE_SECONDS = 900

# Share of confidently routed requests also sent, blind, to human review, so
# that live precision is measured (`route`, the routing Lambda, `cdk.json`).
AUDIT_SHARE = 0.02

# -- intake ----------------------------------------------------------------------
# Longest request text accepted anywhere (annotation files, the routing Lambda's
# intake): far above any real after-sales request; it bounds every payload.
MAX_TEXT_CHARS = 20_000
# Longest caller-given request id: ids travel in every message and file name.
MAX_ID_CHARS = 256

# -- drift monitor ---------------------------------------------------------------
DRIFT_ALPHA = 0.01  # false-alarm rate of one check (all three tests together)
# Days of logged decisions one check reads. Locally the monitor is run by hand,
# now and then: a week of traffic. On AWS it runs hourly on the current day's
# logged decisions (days=1: today's partition), so a change is seen within hours.
DRIFT_DAYS_LOCAL = 7
DRIFT_DAYS_AWS = 1

# -- AWS addresses ---------------------------------------------------------------
# An SQS queue URL as SQS returns it: https, /ACCOUNT/NAME. Plain http only to a
# loopback host (a local emulator such as moto's server): SQS itself refuses it.
_QUEUE_PATH = re.compile(r"/\d{1,12}/[A-Za-z0-9_-]{1,80}(?:\.fifo)?")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def is_sqs_queue_url(value: str) -> bool:
    parts = urlsplit(value)
    secure = parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK)
    return secure and bool(parts.hostname) and bool(_QUEUE_PATH.fullmatch(parts.path))
