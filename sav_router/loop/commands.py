"""Command-line verbs of the improvement loop (registry, observer mode, comparison, selection).

    sav-router models | register MODEL_DIR | promote VERSION [--force --reason TEXT] | rollback
    sav-router route [--model DIR] [--observer CANDIDATE_DIR] [REQUESTS.jsonl]
    sav-router compare --production DIR --candidate DIR TRAFFIC [LABELS] --output REPORT_DIR
    sav-router select --model DIR --pool FILE -k N [--format jsonl|label-studio] --output FILE
    sav-router import FILE [--as teach|calibrate|check]
    sav-router quickstart [--output DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

from sav_router.data.annotations import SPLIT_TAGS, TEACH
from sav_router.commandline import EXIT_OK, add_columns, add_workspace, columns, log, show_progress


def _workspace(args: argparse.Namespace):
    from sav_router.loop.workspace import Workspace

    return Workspace(args.workspace)


def _bundle_dir(value: str | None, args: argparse.Namespace) -> Path:
    """A bundle folder, or a version registered in the workspace; default: production."""
    workspace = _workspace(args)
    if value is None:
        return workspace.production_dir()
    path = Path(value)
    if (path / "router.json").is_file():
        return path
    return workspace.model_dir(value)


# -- registry ------------------------------------------------------------------
def _cmd_models(args: argparse.Namespace) -> int:
    workspace = _workspace(args)
    entries = workspace.models()
    if not entries:
        print(f"no model in {workspace.root / 'models'} (train one, then `sav-router register MODEL_DIR`)")
        return 0
    print(f"{'':2}{'version':<28} {'created':<26} {'check acc':>9} {'coverage':>9} {'precision':>9} {'threshold':>9}")
    for entry in entries:
        check = entry.manifest.metrics.get("check", {})

        def cell(key: str) -> str:
            value = check.get(key)
            return "-" if value is None else f"{value:.3f}"

        marker = "* " if entry.in_production else "  "
        print(
            f"{marker}{entry.version:<28} {entry.manifest.created_at:<26} {cell('accuracy'):>9} {cell('coverage'):>9} "
            f"{cell('routed_precision'):>9} {entry.manifest.policy.threshold:>9.3f}"
        )
    history = workspace.registry()["history"]
    if history:
        last = history[-1]
        print(f"last change: {last['action']} {last['version']} by {last['by']} at {last['at']}" + (f" ({last['reason']})" if last["reason"] else ""))
    return 0


def _cmd_register(args: argparse.Namespace) -> int:
    version = _workspace(args).register(args.model_dir)
    print(f"registered {version}")
    return 0


def _cmd_promote(args: argparse.Namespace) -> int:
    result = _workspace(args).promote(args.version, force=args.force, reason=args.reason)
    gate = result["gate"]
    print(f"{result['version']} is in production (was {result['previous']})" + (f"; gate: {gate['reason']}" if gate else ""))
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    result = _workspace(args).rollback(reason=args.reason)
    print(f"rolled back to {result['version']} (was {result['previous']})")
    return 0


# -- observer mode -------------------------------------------------------------
def _cmd_route(args: argparse.Namespace) -> int:
    from sav_router.data.annotations import Columns, read_requests
    from sav_router.loop.observer import route_stream
    from sav_router.model.router import Router

    workspace = _workspace(args)
    production = Router.load(_bundle_dir(args.model, args))
    observer = Router.load(_bundle_dir(args.observer, args)) if args.observer else None
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
        print(json.dumps(routed.production, ensure_ascii=False))
        counts[routed.production["decision"]] += 1
        counts[routed.queued_for or "none"] += 1
        if routed.observer is not None:
            same_team = routed.observer.get("team") == routed.production.get("team")
            agree += routed.observer["decision"] == routed.production["decision"] and (routed.production["decision"] != "route" or same_team)
    routed_now = counts["route"] + counts["escalate"]
    if routed_now < len(records):
        log(f"{len(records) - routed_now} requests already routed (decision in the traffic log): skipped")
    summary = f"{routed_now} requests: {counts['route']} routed, {counts['escalate']} escalated; queued for review: {counts['escalation']} escalations + {counts['audit']} audit samples"
    if observer is not None and routed_now:
        summary += f"; observer {observer.version} agrees on {agree / routed_now:.1%}"
    log(summary + f" (traffic logged under {workspace.root / 'traffic'})")
    return 0


# -- comparison ----------------------------------------------------------------
def _read_rows(path: str) -> list[dict]:
    from sav_router.data.annotations import read_rows

    records, rejects = read_rows(path, require_label=False, allow_empty_text=True)
    for reject in rejects:
        log(f"skipped: {reject}")
    return [{"id": r.id if r.id is not None else f"line-{r.line}", "text": r.text, "label": r.label} for r in records]


def _comparison_markdown(report: dict, texts: dict[str, str], production: str, candidate: str) -> str:
    labeled = report["labeled"]
    gate = report["gate"]
    lines = [
        f"# Candidate {candidate} vs production {production}",
        "",
        f"**Verdict: {'PASS' if gate['passed'] else 'FAIL'}** — {gate['reason']}",
        "",
        f"Compared {report['n_compared']} requests; agreement {report['agreement_rate']}; coverage {report['production_coverage']} -> {report['candidate_coverage']}.",
        "",
    ]
    if labeled.get("n"):
        d = labeled["difference"]
        lines += [
            f"## On {labeled['n']} labeled requests",
            "",
            "| | production | candidate | difference (95% bootstrap CI) |",
            "|---|---|---|---|",
            f"| routed precision | {labeled['production']['routed_precision']} | {labeled['candidate']['routed_precision']} | {d['routed_precision']} {d['routed_precision_ci']} |",
            f"| coverage | {labeled['production']['coverage']} | {labeled['candidate']['coverage']} | {d['coverage']} {d['coverage_ci']} |",
            f"| misroutes | {labeled['production']['misroutes']} | {labeled['candidate']['misroutes']} | McNemar p = {labeled['mcnemar_misroutes']['p_value']} |",
            f"| top-1 accuracy | {labeled['production']['top1_accuracy']} | {labeled['candidate']['top1_accuracy']} | McNemar p = {labeled['mcnemar_top1']['p_value']} |",
            f"| out-of-scope requests routed (of {labeled.get('out_of_scope', 0)}) | {labeled['production'].get('out_of_scope_routed')} | {labeled['candidate'].get('out_of_scope_routed')} | misroutes |",
            "",
        ]
    for side in ("production", "candidate"):
        if report.get("monitor", {}).get(side):
            lines += [f"Monitor ({side} calibration sample vs these requests): {report['monitor'][side]}", ""]
    lines += ["## Decision flips", ""]
    for kind, flip in report["flips"].items():
        lines.append(f"- **{kind}**: {flip['count']}")
        for rid in flip["examples"]:
            lines.append(f"  - `{rid}`: {texts.get(rid, '')[:120]!r}")
    return "\n".join(lines) + "\n"


def _monitor_lines(sides, production_dir, candidate_dir) -> dict[str, str | None]:
    """Each model's drift monitor on the compared requests (its calibration sample as the reference)."""
    from sav_router.core.bundle import read_manifest
    from sav_router.monitoring.drift import check_drift

    lines: dict[str, str | None] = {}
    for name, folder in (("production", production_dir), ("candidate", candidate_dir)):
        reference = read_manifest(folder).calibration.get("reference")
        lines[name] = check_drift(sides[name][1], reference).line() if reference and reference.get("n") else None
    return lines


def compare_models(production_dir, candidate_dir, rows: list[dict], gold: dict[str, str], *, gate, workspace, output: Path | None = None) -> tuple[dict, list[Path]]:
    """Both models on the same requests, compared; the report goes where `promote` reads it (and to `output`).

    The one implementation behind `sav-router compare` and the console's "compare with production".
    """
    from sav_router.loop.comparison import compare_decisions
    from sav_router.model.router import Router
    from sav_router.core.jsonio import write_json_atomic

    if not rows:
        raise ValueError("no request to compare on")
    requests = [SimpleNamespace(id=row["id"], text=row["text"]) for row in rows]
    sides = {}
    for name, folder in (("production", production_dir), ("candidate", candidate_dir)):
        router = Router.load(folder)
        sides[name] = (router.version, router.decision_records(requests))
    report = compare_decisions(sides["production"][1], sides["candidate"][1], gold, gate=gate)
    report |= {"production_version": sides["production"][0], "candidate_version": sides["candidate"][0]}
    report["monitor"] = _monitor_lines(sides, production_dir, candidate_dir)
    by_id = {row["id"]: row["text"] for row in rows}
    markdown = _comparison_markdown(report, by_id, sides["production"][0], sides["candidate"][0])
    outputs = [Path(output)] if output is not None else []
    if (workspace.root / "models" / sides["candidate"][0]).is_dir():
        outputs.append(workspace.path("evaluations", sides["candidate"][0], "comparison"))  # what `promote` checks
    for folder in outputs:
        write_json_atomic(folder / "comparison.json", report)
        (folder / "comparison.md").write_text(markdown, encoding="utf-8")
    return report, outputs


def _cmd_compare(args: argparse.Namespace) -> int:
    from sav_router.loop.comparison import Gate

    production_dir, candidate_dir = _bundle_dir(args.production, args), _bundle_dir(args.candidate, args)
    rows = _read_rows(args.traffic)
    if not rows:
        raise ValueError(f"{args.traffic}: no request to compare on")
    gold = {row["id"]: row["label"] for row in rows if row.get("label")}
    if args.labels:
        gold.update({row["id"]: row["label"] for row in _read_rows(args.labels) if row.get("label")})
    gate = Gate(precision_tolerance=args.precision_tolerance, coverage_tolerance=args.coverage_tolerance, min_labeled=args.min_labeled)
    report, outputs = compare_models(production_dir, candidate_dir, rows, gold, gate=gate, workspace=_workspace(args), output=Path(args.output))
    print(f"verdict: {'PASS' if report['gate']['passed'] else 'FAIL'} — {report['gate']['reason']}\nreport: {outputs[0] / 'comparison.md'}")
    return 0


# -- active learning -----------------------------------------------------------
def select_batch(
    router, rows: list[dict], k: int, *, calibration_share: float = 0.0, candidate=None, max_similarity: float = 0.92, seed: int = 13
) -> tuple[list[dict], list[dict]]:
    """The ranked batch (uncertain, novel, disputed; diverse) and its random calibration part.

    The one implementation behind `sav-router select` and the console's "start a batch".
    """
    from sav_router.loop.active_learning import calibration_sample, select_for_annotation

    if not 0 <= calibration_share < 1:
        raise ValueError("--calibration-share must be in [0, 1)")
    if not rows:
        raise ValueError("no request to select from")
    scored = router.score([row["text"] for row in rows])
    candidate_probabilities = None
    if candidate is not None:
        if candidate.labels != router.labels:
            raise ValueError("--candidate must have the same labels as --model to measure disagreement")
        candidate_probabilities = candidate.score([row["text"] for row in rows]).probabilities
    n_random = round(k * calibration_share)
    selection = select_for_annotation(
        scored.probabilities,
        scored.embeddings,
        k - n_random,
        ood_scores=scored.ood_scores,
        candidate_probabilities=candidate_probabilities,
        max_similarity=max_similarity,
    )
    picked = [_selected_row(rows[i], scored.probabilities[i], router.labels, selection, i) for i in selection.indices]
    randoms: list[dict] = []
    if n_random:
        sample = calibration_sample(len(rows), n_random, exclude=selection.indices, seed=seed)
        randoms = [_selected_row(rows[i], scored.probabilities[i], router.labels, None, i) for i in sample]
    return picked, randoms


def _cmd_select(args: argparse.Namespace) -> int:
    from sav_router.model.router import Router

    if not 0 <= args.calibration_share < 1:
        raise ValueError("--calibration-share must be in [0, 1)")
    rows = [row for row in _read_rows(args.pool) if row["text"].strip()]
    if not rows:
        raise ValueError(f"{args.pool}: no request to select from")
    router = Router.load(_bundle_dir(args.model, args))
    candidate = Router.load(_bundle_dir(args.candidate, args)) if args.candidate else None
    picked, randoms = select_batch(
        router, rows, args.k, calibration_share=args.calibration_share, candidate=candidate, max_similarity=args.max_similarity, seed=args.seed
    )
    output = Path(args.output)
    _write_selection(picked, output, args.format, router, "selected for annotation")
    if randoms:
        calibration_output = output.with_name(f"{output.stem}.calibrate{output.suffix}")
        _write_selection(randoms, calibration_output, args.format, router, "drawn at random: import with --as calibrate")
    return 0


def _selected_row(row: dict, probs, labels: list[str], selection, index: int) -> dict:
    top = probs.argsort()[::-1][:3]
    picked = {"id": row["id"], "text": row["text"], "label": labels[top[0]], "score": round(float(probs[top[0]]), 4)}
    if selection is not None:
        picked["priority"] = round(float(selection.priority[index]), 4)
        picked["signals"] = {name: round(float(values[index]), 4) for name, values in selection.signals.items()}
    picked["top_k"] = [{"label": labels[j], "score": round(float(probs[j]), 4)} for j in top]
    return picked


def _write_selection(picked: list[dict], output: Path, fmt: str, router, what: str) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "label-studio":
        from sav_router.data import labelstudio

        tasks = labelstudio.tasks_with_predictions(picked, router.version)
        output.write_text(json.dumps(tasks, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        config = output.with_name(output.stem + ".label_config.xml")
        config.write_text(labelstudio.labeling_config(router.labels), encoding="utf-8")
        print(f"{len(picked)} Label Studio tasks with pre-annotations, {what} -> {output} (labeling config: {config})")
    else:
        output.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in picked), encoding="utf-8")
        print(f"{len(picked)} requests {what} -> {output}")


# -- import ---------------------------------------------------------------------
def add_import_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "import",
        help="add annotations (Label Studio JSON export, JSONL, CSV) to the workspace as a teach, calibrate or check drop",
    )
    parser.add_argument("file", metavar="FILE")
    parser.add_argument("--as", dest="split", choices=SPLIT_TAGS, default=TEACH, help="teach (training), calibrate (calibration only: a random sample) or check (held out); default teach")
    add_workspace(parser)
    parser.add_argument("--source", default="import", help="name recorded with the rows and in the drop's file name (default: import)")
    add_columns(parser)
    parser.set_defaults(func=_cmd_import)
    return parser


def _cmd_import(args: argparse.Namespace) -> int:
    from sav_router.loop.importing import import_annotations
    from sav_router.loop.workspace import Workspace

    result = import_annotations(Workspace(args.workspace), args.file, split=args.split, source=args.source, columns=columns(args))
    print(result.summary())
    return EXIT_OK


# -- quickstart -----------------------------------------------------------------
def _cmd_quickstart(args: argparse.Namespace) -> int:
    from sav_router.loop.quickstart import run_quickstart

    run_quickstart(Path(args.output), epochs=args.epochs, base_model=args.base_model, progress=show_progress(args), log=log)
    return EXIT_OK


def add_quickstart_parser(sub) -> None:
    quickstart = sub.add_parser("quickstart", help="train, evaluate and route the packaged sample data")
    quickstart.add_argument("--output", "-o", default="sav-router-quickstart", metavar="DIR")
    quickstart.add_argument("--epochs", type=int, default=4)
    quickstart.add_argument("--base-model", help="HF model folder or id (default: packaged all-MiniLM-L6-v2)")
    quickstart.add_argument("--quiet", "-q", action="store_true")
    quickstart.set_defaults(func=_cmd_quickstart)


def add_loop_commands(sub) -> None:
    models = sub.add_parser("models", help="list the workspace's model versions (* = production)")
    add_workspace(models)
    models.set_defaults(func=_cmd_models)

    register = sub.add_parser("register", help="copy a trained bundle into the workspace's models/")
    register.add_argument("model_dir", metavar="MODEL_DIR")
    add_workspace(register)
    register.set_defaults(func=_cmd_register)

    promote = sub.add_parser("promote", help="put a model version in production (gate-checked)")
    promote.add_argument("version", metavar="VERSION")
    promote.add_argument("--force", action="store_true", help="promote despite a failed or missing comparison gate")
    promote.add_argument("--reason", help="why (required with --force; recorded in the registry)")
    add_workspace(promote)
    promote.set_defaults(func=_cmd_promote)

    rollback = sub.add_parser("rollback", help="return to the previous production model")
    rollback.add_argument("--reason")
    add_workspace(rollback)
    rollback.set_defaults(func=_cmd_rollback)

    route = sub.add_parser("route", help="route requests (file or stdin) with production, a candidate in observer mode")
    route.add_argument("requests", nargs="?", metavar="REQUESTS.jsonl", help="JSONL/CSV of requests (default: stdin)")
    route.add_argument("--model", help="bundle folder or workspace version (default: production)")
    route.add_argument("--observer", metavar="CANDIDATE_DIR", help="candidate scored on the same requests, logged only")
    route.add_argument("--audit-share", type=float, default=0.02, help="share of routed requests also sent for audit review (default 0.02)")
    route.add_argument("--seed", type=int, help="seed of the audit sampling")
    route.add_argument("--resume", action="store_true", help="after a crash: skip requests whose decision is already logged (by id)")
    route.add_argument("--text-column", default="text")
    route.add_argument("--id-column", default="id")
    add_workspace(route)
    route.set_defaults(func=_cmd_route)

    compare = sub.add_parser("compare", help="compare a candidate with production on the same requests")
    compare.add_argument("--production", required=True, metavar="DIR")
    compare.add_argument("--candidate", required=True, metavar="DIR")
    compare.add_argument("traffic", metavar="TRAFFIC", help="requests (JSONL/CSV, e.g. traffic/*.jsonl or a check set)")
    compare.add_argument("labels", nargs="?", metavar="LABELS", help="human labels by id (JSONL/CSV)")
    compare.add_argument("--output", "-o", required=True, metavar="REPORT_DIR")
    compare.add_argument("--precision-tolerance", type=float, default=0.01)
    compare.add_argument("--coverage-tolerance", type=float, default=0.0)
    compare.add_argument("--min-labeled", type=int, default=50)
    add_workspace(compare)
    compare.set_defaults(func=_cmd_compare)

    select = sub.add_parser("select", help="rank unlabeled requests for annotation (uncertain, novel, disputed; diverse)")
    select.add_argument("--model", required=True, metavar="DIR")
    select.add_argument("--pool", required=True, metavar="FILE")
    select.add_argument("-k", type=int, required=True, metavar="N")
    select.add_argument("--candidate", metavar="DIR", help="a candidate model: disagreement with --model becomes a signal")
    select.add_argument("--format", choices=["jsonl", "label-studio"], default="jsonl")
    select.add_argument("--max-similarity", type=float, default=0.92, help="cosine above which two picks count as near-duplicates")
    select.add_argument(
        "--calibration-share", type=float, default=0.0,
        help="share of the k requests drawn at random instead, written to OUTPUT's .calibrate file: annotate and "
        "import them with --as calibrate, so calibration stays unbiased (default 0)",
    )
    select.add_argument("--seed", type=int, default=13, help="seed of the random calibration draw")
    select.add_argument("--output", "-o", required=True, metavar="FILE")
    add_workspace(select)
    select.set_defaults(func=_cmd_select)

    add_import_parser(sub)
    add_quickstart_parser(sub)
