"""The `serve` and `export-onnx` subcommands (parsers here, heavy imports inside the handlers)."""

from __future__ import annotations

import argparse
import sys

from sav_router.cli.options import EXIT_OK, add_columns, columns
from sav_router.model.backends import BACKENDS as SERVE_BACKENDS


def _cmd_serve(args: argparse.Namespace) -> int:
    from sav_router.serving.runner import serve
    from sav_router.serving.settings import ServeSettings

    settings = ServeSettings.resolve(
        max_payload_mb=args.max_payload_mb,
        max_batch_size=args.max_batch_size,
        max_batch_tokens=args.max_batch_tokens,
        max_wait_ms=args.max_wait_ms,
        max_concurrent_transforms=args.max_concurrent_transforms,
        max_instances=args.max_instances,
        max_tokens=args.max_tokens,
        deadline_s=args.deadline,
        header_timeout_s=args.header_timeout,
        body_timeout_s=args.body_timeout,
        max_connections=args.max_connections,
        graceful_timeout_s=args.graceful_timeout,
    )
    code = serve(
        args.model,
        port=args.port,
        host=args.host,
        backend=args.backend,
        uncertified_backend=args.uncertified_backend or None,
        num_threads=args.threads,
        settings=settings,
        access_log=args.access_log,
        log_level=args.log_level,
    )
    # Every request is answered (or refused with a JSON 503) and the server's threads are stopped: skip
    # the interpreter's teardown (torch and module finalization: 1.5 s idle, 3.6 s on 2 busy cores,
    # measured) so the process exits within the SIGTERM grace period (issue 18, finding 5).
    import logging
    import os

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from sav_router.model.backends.onnx_export import prepare_onnx
    from sav_router.data.annotations import load_annotations

    texts: list[str] = []
    labels: list[str] = []
    if args.check:
        records = load_annotations(args.check, columns=columns(args)).records
        texts, labels = [r.text for r in records], [r.label for r in records]
    serving = prepare_onnx(args.model_dir, texts=texts, labels=labels, num_threads=args.threads, log=lambda m: print(m, file=sys.stderr))
    print(f"exported {', '.join(serving['onnx']['files'].values())}; serving backend recorded in the bundle: {serving['backend']}")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="run the SageMaker-compatible HTTP server (/ping, /invocations)")
    serve.add_argument("--model", metavar="DIR", help="bundle folder or model.tar.gz (default: /opt/ml/model)")
    serve.add_argument("--port", type=int, help="default: $SAGEMAKER_BIND_TO_PORT or 8080")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; the container binds 0.0.0.0)")
    serve.add_argument("--backend", choices=SERVE_BACKENDS,
                       help="default: $SAV_ROUTER_BACKEND, else the backend the bundle was certified on (its thresholds and promise "
                            "were computed on that backend's scores); another one is refused without --uncertified-backend")
    serve.add_argument("--uncertified-backend", action="store_true",
                       help="serve a --backend the bundle was not certified on: the promise does not cover its decisions "
                            "(also $SAV_ROUTER_UNCERTIFIED_BACKEND=1)")
    serve.add_argument("--threads", type=int, help="inference threads (default: usable cores)")
    serve.add_argument("--max-batch-size", type=int, help="texts per model call when batching concurrent requests (default 64)")
    serve.add_argument("--max-batch-tokens", type=int, help="tokens per model call, counted as for --max-tokens (default 4096)")
    serve.add_argument("--max-wait-ms", type=float, help="how long a model call waits for concurrent requests to join (default 0: no timed wait)")
    serve.add_argument("--max-payload-mb", type=int, help="request size limit (default 6, SageMaker's real-time limit)")
    serve.add_argument("--max-concurrent-transforms", type=int, help="advertised to Batch Transform (default 2)")
    serve.add_argument("--max-instances", type=int, help="requests (instances or lines) per POST (default 100000)")
    serve.add_argument("--max-tokens", type=int, help="token budget per POST, counted as min(max_length, characters + 2) per text (default 6400000)")
    serve.add_argument("--deadline", type=float, help="seconds a POST may take before a 504, its remaining work dropped (default 600)")
    serve.add_argument("--header-timeout", type=float, help="seconds a connection has to send its request headers (default 10)")
    serve.add_argument("--body-timeout", type=float, help="seconds a request has to send its body, else 408 (default 60)")
    serve.add_argument("--max-connections", type=int, help="open connections; beyond, the oldest idle one is closed (default 256)")
    serve.add_argument("--graceful-timeout", type=float, help="seconds to stop in on SIGTERM: in-flight requests finish or get a JSON 503 (default 30)")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    serve.set_defaults(func=_cmd_serve)

    export = sub.add_parser("export-onnx", help="export the bundle to ONNX (fp32 + int8) and check both against PyTorch")
    export.add_argument("model_dir", metavar="MODEL_DIR")
    export.add_argument("--check", nargs="+", metavar="DATA", help="labeled files for the equivalence check (needed to approve int8)")
    add_columns(export)
    export.add_argument("--threads", type=int)
    export.set_defaults(func=_cmd_export_onnx)
