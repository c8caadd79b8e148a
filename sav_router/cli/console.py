"""`sav-router console` and `sav-router console users add` (parsers here, heavy imports inside the handlers)."""

from __future__ import annotations

import argparse
import getpass
import sys

from sav_router.cli.options import EXIT_OK, UsageError as ConsoleUsageError, add_annotation_prefix, positive_int
from sav_router.console.users import ROLES  # standard library only: the parser stays light
from sav_router.core.defaults import REVIEW_LEASE_SECONDS, is_sqs_queue_url

DEFAULT_PORT = 8070


def _state(args: argparse.Namespace):
    from pathlib import Path

    from sav_router.loop.workspace import Workspace

    workspace = Workspace(args.workspace)
    state = workspace.root / "console"
    users = Path(args.users) if args.users else state / "users.json"
    return workspace, state, users


def _read_password(name: str) -> str:
    """Asked twice on a terminal; the first line of standard input otherwise (scripts)."""
    if sys.stdin.isatty():
        first = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != first:
            raise ConsoleUsageError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _cmd_users_add(args: argparse.Namespace) -> int:
    from sav_router.console.users import UsersFile

    _, _, path = _state(args)
    user = UsersFile(path).add(args.name, args.role, _read_password(args.name))
    print(f"{user.name} ({user.role}) saved in {path}")
    return EXIT_OK


def _cmd_users_list(args: argparse.Namespace) -> int:
    from sav_router.console.users import UsersFile

    _, _, path = _state(args)
    users = UsersFile(path)
    for name in users.names():
        print(f"{name}\t{users.get(name)[0].role}")
    return EXIT_OK


def _source(args: argparse.Namespace, workspace):
    if args.queue:
        if not is_sqs_queue_url(args.queue):
            raise ConsoleUsageError(f"--queue must be an SQS queue URL, got {args.queue!r}")
        if not args.bucket:
            raise ConsoleUsageError("--bucket is required with --queue (answers go to s3://BUCKET/PREFIX/review/)")
        from sav_router.console.sources import AwsSource

        return AwsSource(args.queue, args.bucket, prefix=args.prefix, kms_key_id=args.kms_key_id, lease_seconds=args.lease_seconds)
    if args.bucket:
        raise ConsoleUsageError("--bucket goes with --queue SQS_URL")
    from sav_router.console.sources import LocalSource

    if not workspace.root.is_dir():
        raise ConsoleUsageError(f"no workspace at {workspace.root} (run `sav-router quickstart`, or pass --workspace DIR)")
    return LocalSource(workspace, lease_seconds=args.lease_seconds)


def _cmd_console(args: argparse.Namespace) -> int:
    from sav_router.console.users import UsersFile

    if args.console_command is not None:  # pragma: no cover - subcommands have their own func
        return args.func(args)
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise ConsoleUsageError("--ssl-certfile and --ssl-keyfile go together")
    workspace, state, users_path = _state(args)
    source = _source(args, workspace)
    users = UsersFile(users_path)
    if not users.names():
        if not sys.stdin.isatty():
            raise ConsoleUsageError(f"no console user in {users_path}: add one with `sav-router console users add NAME --role admin`")
        print(f"No console user yet ({users_path}): create the first admin.", file=sys.stderr)
        name = input("admin name: ").strip()
        users.add(name, "admin", _read_password(name))
    from sav_router.console.server import run_console

    return run_console(
        source, state_dir=state, users_file=users_path, host=args.host, port=args.port, ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile, secure_cookies=args.secure_cookies, access_log=args.access_log,
        allowed_hosts=tuple(args.allowed_host or ()), lease_seconds=args.lease_seconds,
    )


def register(sub: argparse._SubParsersAction) -> None:
    console = sub.add_parser("console", help="the web console: escalation queue, evaluation dashboard, models and promotion")
    console.add_argument("--workspace", "-w", metavar="DIR", help="workspace folder (default: $SAV_ROUTER_WORKSPACE or ./sav-router-workspace); also where users and the audit log live")
    console.add_argument("--queue", metavar="SQS_URL", help="the AWS review queue instead of the workspace's")
    console.add_argument("--bucket", help="the artifacts bucket (with --queue): answers, reports, traffic")
    add_annotation_prefix(console)
    console.add_argument("--kms-key-id", help="KMS key for the answers written to S3 (SSE-KMS)")
    console.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    console.add_argument(
        "--allowed-host", action="append", metavar="NAME",
        help="a host name browsers may use to reach the console (repeatable; default: loopback names and --host; '*' allows any, not advised: DNS rebinding)",
    )
    console.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    console.add_argument("--users", metavar="FILE", help="users file (default: WORKSPACE/console/users.json)")
    console.add_argument("--lease-seconds", type=positive_int, default=REVIEW_LEASE_SECONDS, help=f"how long a request on screen stays reserved to its reviewer (default {REVIEW_LEASE_SECONDS})")
    console.add_argument("--ssl-certfile", metavar="PEM", help="serve over TLS with this certificate (cookies are then Secure)")
    console.add_argument("--ssl-keyfile", metavar="PEM", help="the certificate's private key")
    console.add_argument("--secure-cookies", action="store_true", help="Secure cookies over plain HTTP too (behind a TLS proxy)")
    console.add_argument("--access-log", action="store_true", help="log every HTTP request line (paths only, never request text)")
    console.set_defaults(func=_cmd_console, console_command=None)
    commands = console.add_subparsers(dest="console_command", metavar="users")
    users = commands.add_parser("users", help="manage console users")
    users_commands = users.add_subparsers(dest="users_command", metavar="add|list", required=True)
    add = users_commands.add_parser("add", help="add a user (or set its role and password); the password is asked, or read from stdin")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--role", choices=ROLES, required=True)
    listing = users_commands.add_parser("list", help="user names and roles")
    for parser in (add, listing):
        parser.add_argument("--workspace", "-w", metavar="DIR", help="workspace whose console/users.json is meant")
        parser.add_argument("--users", metavar="FILE", help="users file (default: WORKSPACE/console/users.json)")
    add.set_defaults(func=_cmd_users_add)
    listing.set_defaults(func=_cmd_users_list)
