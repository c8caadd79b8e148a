"""`sav-router doubts`: annotated rows whose label is probably wrong; `sav-router settle`: settle re-checked doubts."""

from __future__ import annotations

import argparse
import getpass

from sav_router.cli.options import EXIT_OK, UsageError, add_columns, add_workspace, columns, log, positive_int, workspace_of

FORMATS = ("jsonl", "label-studio", "review-queue")


def _cmd_doubts(args: argparse.Namespace) -> int:
    from sav_router.core.jsonio import write_jsonl_atomic
    from sav_router.data.annotations import load_annotations
    from sav_router.doubts.annotated import annotation_doubts, default_embed

    workspace = workspace_of(args)
    paths = args.data or workspace.annotation_files()
    if not paths:
        raise UsageError(f"no annotation file given and none in {workspace.path('annotations')}")
    data = load_annotations(paths, columns=columns(args))
    report, rows = annotation_doubts(data.records, embed=default_embed(args.base_model), folds=args.folds, seed=args.seed,
                                     duplicate_similarity=args.similarity)
    log(report.summary())
    picked = rows[: args.top] if args.top else rows
    if args.format == "review-queue":
        from sav_router.review.recheck import enqueue

        added = enqueue(workspace, picked, {str(r.label) for r in data.records if r.label is not None})
        print(f"{added} doubts queued for a blind second opinion ({len(picked) - added} already open): "
              f"`sav-router review --queue recheck`, then `sav-router settle`")
        return EXIT_OK
    if not args.output:
        raise UsageError("--output FILE is needed with --format jsonl or label-studio")
    if args.format == "label-studio":
        from sav_router.data import labelstudio

        # blind: tasks without the earlier label or a model suggestion (no predictions)
        labels = sorted({str(r.label) for r in data.records if r.label is not None})
        config = labelstudio.write_project(args.output, [{"id": r["id"], "text": r["text"]} for r in picked], labels, None)
        print(f"{len(picked)} doubts as blind Label Studio tasks -> {args.output} (labeling config: {config})")
    else:
        write_jsonl_atomic(args.output, picked)
        print(f"{len(picked)} doubts, most doubtful first -> {args.output}")
    return EXIT_OK


def _cmd_settle(args: argparse.Namespace) -> int:
    from collections import Counter

    from sav_router.review.recheck import settle, settle_by_admin

    workspace = workspace_of(args)
    by = args.by or getpass.getuser()
    if args.id:
        if not (args.label and args.reason):
            raise UsageError("settling one doubt by hand needs --label and --reason")
        result = settle_by_admin(workspace, args.id, args.label, by=by, reason=args.reason)
        print(f"{result.id or result.key}: {result.outcome} ({result.previous_label} -> {result.label}); {result.reason}")
        return EXIT_OK
    results = settle(workspace, by=by)
    counts = Counter(s.outcome for s in results)
    print(", ".join(f"{n} {outcome.replace('_', ' ')}" for outcome, n in sorted(counts.items())) or "no open doubt")
    for s in results:
        if s.outcome == "needs_admin":
            print(f"  {s.id or s.key}: needs an admin ({s.reason}): sav-router settle --id {s.key} --label LABEL --reason TEXT")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    doubts = sub.add_parser("doubts", help="rank annotated rows by how likely their label is wrong (out-of-sample confident learning)")
    doubts.add_argument("data", nargs="*", metavar="DATA", help="annotation files (default: the workspace's annotations/)")
    add_workspace(doubts)
    add_columns(doubts)
    doubts.add_argument("--base-model", help="HF model folder or id whose frozen embeddings score the rows (default: packaged all-MiniLM-L6-v2)")
    doubts.add_argument("--folds", type=positive_int, default=5, help="k of the k-fold scoring (default 5)")
    doubts.add_argument("--seed", type=int, default=13)
    doubts.add_argument("--similarity", type=float, default=0.97, help="cosine above which two texts with different labels are a doubt (default 0.97)")
    doubts.add_argument("--top", type=positive_int, metavar="N", help="the N most doubtful only")
    doubts.add_argument("--format", choices=FORMATS, default="jsonl",
                        help="jsonl (with evidence), label-studio (blind tasks) or review-queue (the workspace's re-check queue)")
    doubts.add_argument("--output", "-o", metavar="FILE")
    doubts.set_defaults(func=_cmd_doubts)

    settle = sub.add_parser("settle", help="settle re-checked doubts: agreeing opinions confirm or relabel, disagreements get a third")
    add_workspace(settle)
    settle.add_argument("--by", help="who settles (default: the login name)")
    settle.add_argument("--id", metavar="DOUBT", help="settle one open doubt by hand (an admin), with --label and --reason")
    settle.add_argument("--label")
    settle.add_argument("--reason")
    settle.set_defaults(func=_cmd_settle)
