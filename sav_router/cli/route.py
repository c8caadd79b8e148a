"""`sav-router route`: route requests with production, a candidate in observer mode; traffic logged, escalations queued."""

from __future__ import annotations

import argparse
import sys
from collections import Counter

from sav_router.cli.options import EXIT_OK, add_columns, add_workspace, bundle_dir, log, share, workspace_of
from sav_router.core.defaults import AUDIT_SHARE
from sav_router.core.jsonio import dumps

def _cmd_route(args: argparse.Namespace) -> int:
    from sav_router.data.annotations import Columns, read_requests
    from sav_router.loop.observer import route_stream
    from sav_router.model.router import Router

    workspace = workspace_of(args)
    production = Router.load(bundle_dir(args.model, args))
    observer = Router.load(bundle_dir(args.observer, args)) if args.observer else None
    columns = Columns(text=args.text_column, id=args.id_column)
    if args.requests is None or args.requests == "-":
        import os
        import tempfile

        # The reader validates files; stdin goes through one that is removed at once (request text).
        with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as handle:
            handle.write(sys.stdin.buffer.read())
        try:
            records, rejects = read_requests(handle.name, columns=columns)
        finally:
            os.unlink(handle.name)
    else:
        records, rejects = read_requests(args.requests, columns=columns)
    for reject in rejects:
        log(f"not routed: {reject}")
    if rejects and not records:
        raise ValueError(f"no routable request in {args.requests or 'stdin'} ({len(rejects)} malformed rows)")
    counts: Counter[str] = Counter()
    agree = 0
    stream = route_stream(records, production, workspace=workspace, observer=observer, audit_share=args.audit_share, seed=args.seed, resume=args.resume)
    for routed in stream:
        print(dumps(routed.production))
        counts[routed.production["decision"]] += 1
        counts[routed.queued_for or "none"] += 1
        counts["already_queued"] += routed.already_queued
        if routed.observer is not None:
            same_team = routed.observer.get("team") == routed.production.get("team")
            agree += routed.observer["decision"] == routed.production["decision"] and (routed.production["decision"] != "route" or same_team)
    routed_now = counts["route"] + counts["escalate"]
    if routed_now < len(records):
        log(f"{len(records) - routed_now} requests already routed (same id and text in the traffic log): skipped")
    summary = f"{routed_now} requests: {counts['route']} routed, {counts['escalate']} escalated; queued for review: {counts['escalation']} escalations + {counts['audit']} audit samples"
    if counts["already_queued"]:
        summary += f" ({counts['already_queued']} already in the queue with the same id and text: not queued twice)"
    if observer is not None and routed_now:
        summary += f"; observer {observer.version} agrees on {agree / routed_now:.1%}"
    log(summary + f" (traffic logged under {workspace.root / 'traffic'})")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    route = sub.add_parser("route", help="route requests (file or stdin) with production, a candidate in observer mode")
    route.add_argument("requests", nargs="?", metavar="REQUESTS.jsonl", help="JSONL/CSV of requests (default: stdin)")
    route.add_argument("--model", help="bundle folder or workspace version (default: production)")
    route.add_argument("--observer", metavar="CANDIDATE_DIR", help="candidate scored on the same requests, logged only")
    route.add_argument("--audit-share", type=share, default=AUDIT_SHARE, help=f"share of routed requests also sent for audit review (default {AUDIT_SHARE})")
    route.add_argument("--seed", type=int, help="seed of the audit sampling")
    route.add_argument("--resume", action="store_true", help="after a crash: skip each request (same id and same text) as often as its decision is already logged")
    add_columns(route, label=False)
    add_workspace(route)
    route.set_defaults(func=_cmd_route)
