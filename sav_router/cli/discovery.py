"""The `discover` command: candidate new intents from escalated novel requests."""

from __future__ import annotations

import argparse
import getpass
import json
from pathlib import Path

from sav_router.cli.options import EXIT_OK, UsageError, add_workspace, log, positive_int
from sav_router.core.defaults import DRIFT_DAYS_LOCAL

FORMATS = ("summary", "label-studio", "review-queue")


def add_discover_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "discover",
        help="cluster requests escalated as novel into candidate new intents; accept one as a new label",
    )
    add_workspace(parser)
    parser.add_argument("--from", dest="source", choices=["queue", "traffic"], default="queue",
                        help="escalated requests of the review queue (default) or of the traffic log")
    parser.add_argument("--model", metavar="DIR", help="bundle that embeds the requests (default: production)")
    parser.add_argument("--days", type=positive_int, default=DRIFT_DAYS_LOCAL, help=f"traffic days to read with --from traffic (default {DRIFT_DAYS_LOCAL})")
    parser.add_argument("--distance", type=float, default=0.35, help="cosine distance at which clusters are cut (default 0.35)")
    parser.add_argument("--min-size", type=int, default=3, help="smallest cluster reported (default 3)")
    parser.add_argument("--format", choices=FORMATS, default="summary",
                        help="summary (default), label-studio (tasks + config at --output) or review-queue (members queued for review)")
    parser.add_argument("--output", metavar="FILE", help="Label Studio tasks file (with --format label-studio)")
    parser.add_argument("--accept", metavar="CLUSTER", help="accept this cluster of the latest (or --run) discovery as a new label")
    parser.add_argument("--label", help="the new label of an accepted cluster (the out-of-scope answer is allowed)")
    parser.add_argument("--run", metavar="FILE", help="discovery file to accept from (default: the latest)")
    parser.set_defaults(func=_cmd_discover)
    return parser


def _cmd_discover(args: argparse.Namespace) -> int:
    from sav_router.loop.workspace import Workspace

    workspace = Workspace(args.workspace)
    if args.accept:
        return _accept(workspace, args)
    if args.label or args.run:
        raise UsageError("--label and --run go with --accept CLUSTER")
    if args.format == "label-studio" and not args.output:
        raise UsageError("--format label-studio needs --output FILE")
    if not 0 < args.distance < 2 or args.min_size < 1:
        raise UsageError("--distance must be in (0, 2) and --min-size at least 1")
    return _discover(workspace, args)


def _discover(workspace, args) -> int:
    from sav_router.discovery.clusters import build_clusters, novel_from_queue, novel_from_traffic
    from sav_router.core.clock import stamp
    from sav_router.core.jsonio import write_json_atomic
    from sav_router.model.router import Router
    from sav_router.core.jsonio import read_jsonl as read_rows_lenient
    from sav_router.review.queue import QUEUE_FILE

    if args.source == "queue":
        candidates = novel_from_queue(read_rows_lenient(workspace.path("review", QUEUE_FILE)))
    else:
        from sav_router.monitoring.traffic import traffic_rows

        candidates = novel_from_traffic(traffic_rows(workspace.root, days=args.days))
    if not candidates:
        print(f"no request escalated as out_of_distribution in the {args.source}: nothing to discover")
        return EXIT_OK
    router = Router.load(args.model or workspace.production_dir())
    scored = router.score([c.text for c in candidates])
    clusters = build_clusters(candidates, scored.embeddings, scored.probabilities, router.labels, distance=args.distance, min_size=args.min_size)
    run = {"model_version": router.version, "source": args.source, "candidates": len(candidates), "distance": args.distance,
           "clusters": [c.to_dict() for c in clusters]}
    path = workspace.ensure().path("review", "discovery", f"{stamp()}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, run)
    print(f"{len(candidates)} novel requests, {len(clusters)} candidate intents of >= {args.min_size} (saved to {path})")
    for c in clusters:
        near = ", ".join(f"{n['label']} {n['score']:.2f}" for n in c.nearest_labels)
        print(f"  {c.cluster}: {c.size} requests, cohesion {c.cohesion:.2f}, nearest labels: {near}")
        for example in c.examples[:3]:
            print(f"      - {example[:100]}")
    if clusters:
        print(f"accept one: sav-router discover --accept {clusters[0].cluster} --label NEW_LABEL")
    if args.format == "label-studio":
        _write_label_studio(clusters, Path(args.output), router)
    elif args.format == "review-queue":
        _queue(workspace, clusters, router.version)
    return EXIT_OK


def _write_label_studio(clusters, output: Path, router) -> None:
    from sav_router.data import labelstudio

    rows = [{"id": m["id"], "text": m["text"], "cluster": c.cluster, "cluster_size": c.size,
             "nearest_labels": ", ".join(n["label"] for n in c.nearest_labels)}
            for c in clusters for m in c.members]
    config = labelstudio.write_project(output, rows, router.labels, router.version)
    log(f"{len(rows)} Label Studio tasks -> {output} (labeling config: {config})")


def _queue(workspace, clusters, model_version: str) -> None:
    from sav_router.core.policy import OUT_OF_DISTRIBUTION
    from sav_router.core.clock import utc_now
    from sav_router.core.jsonio import append_jsonl
    from sav_router.core.jsonio import read_jsonl as read_rows_lenient
    from sav_router.review.queue import QUEUE_FILE

    path = workspace.path("review", QUEUE_FILE)
    queued = {str(row.get("id")) for row in read_rows_lenient(path)}
    now = utc_now().isoformat(timespec="seconds")
    rows = [{"id": m["id"], "text": m["text"], "decision": "escalate", "label": None, "reasons": [OUT_OF_DISTRIBUTION],
             "top_k": c.nearest_labels, "model_version": model_version, "audit": False, "queued_at": now, "cluster": c.cluster}
            for c in clusters for m in c.members if m["id"] not in queued]
    append_jsonl(path, rows)
    log(f"{len(rows)} requests queued for review ({sum(len(c.members) for c in clusters) - len(rows)} were already queued)")


def _accept(workspace, args) -> int:
    from sav_router.discovery.clusters import accepted_rows
    from sav_router.core.clock import stamp, utc_now
    from sav_router.core.jsonio import append_jsonl

    if not args.label or not args.label.strip():
        raise UsageError("--accept needs --label NEW_LABEL")
    if args.run:
        path = Path(args.run)
    else:
        runs = sorted(workspace.path("review", "discovery").glob("*.json"))
        if not runs:
            raise UsageError("no discovery run in this workspace: run `sav-router discover` first")
        path = runs[-1]
    run = json.loads(path.read_text(encoding="utf-8"))
    cluster = next((c for c in run.get("clusters", []) if c.get("cluster") == args.accept), None)
    if cluster is None:
        known = ", ".join(c.get("cluster", "?") for c in run.get("clusters", []))
        raise UsageError(f"no cluster {args.accept!r} in {path} (clusters: {known or 'none'})")
    rows = accepted_rows(cluster, args.label.strip(), reviewer=getpass.getuser(), when=utc_now().isoformat(timespec="seconds"))
    drop = workspace.ensure().path("annotations", f"{stamp()}-discover-teach.jsonl")
    append_jsonl(drop, rows)
    print(f"cluster {args.accept} accepted as {args.label.strip()!r}: {len(rows)} teach annotations -> {drop}")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    add_discover_parser(sub)
