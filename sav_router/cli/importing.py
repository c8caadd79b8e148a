"""`sav-router import FILE --as teach|calibrate|check`: annotations into the workspace as a drop."""

from __future__ import annotations

import argparse

from sav_router.cli.options import EXIT_OK, add_columns, add_workspace, columns
from sav_router.data.annotations import SPLIT_TAGS, TEACH

def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
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
