"""`sav-router models | register MODEL_DIR | promote VERSION | rollback`: the workspace's model registry."""

from __future__ import annotations

import argparse

from sav_router.cli.options import EXIT_OK, add_workspace, workspace_of

def _cmd_models(args: argparse.Namespace) -> int:
    workspace = workspace_of(args)
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
    return EXIT_OK


def _cmd_register(args: argparse.Namespace) -> int:
    version = workspace_of(args).register(args.model_dir)
    print(f"registered {version}")
    return EXIT_OK


def _cmd_promote(args: argparse.Namespace) -> int:
    result = workspace_of(args).promote(args.version, force=args.force, reason=args.reason)
    gate = result["gate"]
    print(f"{result['version']} is in production (was {result['previous']})" + (f"; gate: {gate['reason']}" if gate else ""))
    return EXIT_OK


def _cmd_rollback(args: argparse.Namespace) -> int:
    result = workspace_of(args).rollback(reason=args.reason)
    print(f"rolled back to {result['version']} (was {result['previous']})")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    models = sub.add_parser("models", help="list the workspace's model versions (* = production)")
    add_workspace(models)
    models.set_defaults(func=_cmd_models)

    register_ = sub.add_parser("register", help="copy a trained bundle into the workspace's models/")
    register_.add_argument("model_dir", metavar="MODEL_DIR")
    add_workspace(register_)
    register_.set_defaults(func=_cmd_register)

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
