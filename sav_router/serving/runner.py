"""Start the server: find the bundle, load the router, run uvicorn until SIGTERM.

On SIGTERM/SIGINT uvicorn stops accepting connections and lets in-flight
requests finish; the app is told at once (`GracefulServer`), and what is still
computing at the grace period's cut-off is answered with a JSON 503
`shutting_down` and its model work cancelled, so the process exits within
`graceful_timeout_s` (issue 18, finding 5); then the app's shutdown stops the
micro-batcher. One process, one model copy:
the micro-batcher needs every request in the same process, and the model
uses every core inside a call.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import tarfile
import tempfile
from pathlib import Path

from sav_router import env
from sav_router.core.bundle import MANIFEST_NAME, read_manifest
from sav_router.model.backends import CERTIFIED, TORCH, certified_backend, uncovered_message
from sav_router.serving.settings import BACKEND, ServeSettings, resolve_port

log = logging.getLogger("sav_router.serving")
MODEL_ARCHIVE = "model.tar.gz"


def default_model_dir() -> Path:
    """Where SageMaker puts the model: /opt/ml/model (moved by SAV_ROUTER_OPT_ML in tests)."""
    from sav_router.training.sagemaker import opt_ml_root

    return opt_ml_root() / "model"


def resolve_model_dir(model: str | os.PathLike[str] | None) -> Path:
    """A bundle folder; a `model.tar.gz` (or a folder holding only one) is extracted to a temp folder first."""
    path = Path(model) if model is not None else default_model_dir()
    if path.is_dir() and not (path / MANIFEST_NAME).is_file() and (path / MODEL_ARCHIVE).is_file():
        path = path / MODEL_ARCHIVE
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        target = Path(tempfile.mkdtemp(prefix="sav-router-model-"))
        with tarfile.open(path) as archive:
            archive.extractall(target, filter="data")  # refuses absolute paths and links out of target
        nested = [p.parent for p in target.rglob(MANIFEST_NAME)]
        path = min(nested, key=lambda p: len(p.parts)) if nested else target
    if not path.is_dir():
        raise FileNotFoundError(f"no model at {path} (pass --model DIR, or mount the model at {default_model_dir()})")
    read_manifest(path)  # a clear BundleError now rather than a failed load later
    return path


class UncertifiedBackendError(ValueError):
    """Asked to serve a backend the bundle's promise was not computed on, without saying so is intended."""


class BackendUnavailableError(ValueError):
    """The chosen backend's runtime is not installed here (a torch bundle in the serving image, which has no torch)."""


def load_router(model_dir: Path, backend: str, *, num_threads: int | None = None):
    """The router on `backend`; a missing runtime (ImportError) becomes one clear BackendUnavailableError."""
    from sav_router.model.router import Router

    try:
        return Router.load(model_dir, backend=backend, num_threads=num_threads)
    except ImportError as exc:
        hint = (" This image serves ONNX bundles only (training_image/Dockerfile --target serving, no torch): serve the bundle "
                "from the full image, or train it with --serving-backend onnx-auto") if backend == TORCH else ""
        raise BackendUnavailableError(f"{model_dir}: the {backend} backend cannot run here ({exc}).{hint}") from exc


def _flag(raw: str) -> bool:
    if raw.strip().lower() in {"1", "true", "yes"}:
        return True
    if raw.strip().lower() in {"0", "false", "no"}:
        return False
    raise ValueError("expected 1/0, true/false or yes/no")


def choose_backend(model_dir: Path, backend: str | None, *, uncertified: bool | None = None) -> str:
    """--backend > SAV_ROUTER_BACKEND > the backend the bundle was certified on.

    Another backend than the certified one is refused (UncertifiedBackendError) unless
    `uncertified` (--uncertified-backend, SAV_ROUTER_UNCERTIFIED_BACKEND=1) says it is
    meant; then it serves with a warning that the promise does not cover it.
    """
    manifest = read_manifest(model_dir)
    certified = certified_backend(manifest)
    choice = env.resolve(backend, BACKEND, None)
    choice = certified if choice in (None, "", CERTIFIED) else choice
    if choice != certified:
        if not env.resolve(uncertified, env.UNCERTIFIED_BACKEND, False, _flag):
            raise UncertifiedBackendError(
                f"{model_dir}: {uncovered_message(choice, manifest)}. Serve {certified} (the default), or pass "
                f"--uncertified-backend (SAV_ROUTER_UNCERTIFIED_BACKEND=1) to serve {choice} without the promise"
            )
        log.warning("%s: %s; served anyway (--uncertified-backend)", model_dir, uncovered_message(choice, manifest))
    return choice


def limit_helper_threads() -> None:
    """Single-threaded BLAS for numpy's small per-batch work (OOD scores, softmax).

    The inference backend already runs one thread per core; a second, spinning
    BLAS pool competes with it for the same cores. Measured on 2 busy cores:
    single-request p50 went from 24 ms to 4.5 ms (ONNX int8) with this limit.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


def _graceful_server():
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """uvicorn's server, which also starts the app's shutdown cut-off as soon as the stop signal arrives."""

        def __init__(self, config, shutdown) -> None:
            super().__init__(config)
            self.app_shutdown = shutdown

        def handle_exit(self, sig, frame) -> None:
            super().handle_exit(sig, frame)
            self.app_shutdown.begin()

    return GracefulServer


def serve(
    model: str | os.PathLike[str] | None = None,
    *,
    port: int | None = None,
    host: str = "127.0.0.1",
    backend: str | None = None,
    uncertified_backend: bool | None = None,
    num_threads: int | None = None,
    settings: ServeSettings | None = None,
    graceful_timeout_s: float | None = None,
    access_log: bool = False,
    log_level: str = "info",
) -> int:
    import uvicorn

    from sav_router.serving.app import create_app

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limit_helper_threads()
    model_dir = resolve_model_dir(model)
    chosen = choose_backend(model_dir, backend, uncertified=uncertified_backend)
    router = load_router(model_dir, chosen, num_threads=num_threads)
    port = resolve_port(port)
    log.info("serving %s (model %s, %s backend, %s) on %s:%d", model_dir, router.version, chosen,
             "certified: the promise covers it" if router.certified else "NOT certified: the promise does not cover it", host, port)
    from sav_router.serving.http import guarded_protocol

    GracefulServer = _graceful_server()

    settings = settings or ServeSettings.resolve()
    if graceful_timeout_s is not None:
        settings = dataclasses.replace(settings, graceful_timeout_s=graceful_timeout_s)
    app = create_app(router, settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        workers=1,
        lifespan="on",
        access_log=access_log,
        log_level=log_level,
        timeout_graceful_shutdown=settings.graceful_timeout_s,  # a backstop: the app's cut-off comes first
        timeout_keep_alive=75,  # longer than the SageMaker front end's idle timeout (60 s)
        http=guarded_protocol(header_timeout_s=settings.header_timeout_s, max_connections=settings.max_connections),
        h11_max_incomplete_event_size=16 * 1024,  # request line + headers; larger gets a JSON 400
        backlog=settings.max_connections,
    )
    stop_signals: list[int] = []
    for number in (signal.SIGTERM, signal.SIGINT):
        # uvicorn re-raises the stop signal once shut down; this handler turns it into a clean exit 0
        signal.signal(number, lambda received, frame: stop_signals.append(received))
    GracefulServer(config, app.state.shutdown).run()
    log.info("server stopped%s", f" by {signal.Signals(stop_signals[0]).name}" if stop_signals else "")
    return 0
