"""The HTTP application: the SageMaker inference contract on top of a Router.

GET /ping                   200 once the model is loaded (it is loaded before the app exists)
POST /invocations           decisions for JSON or JSON Lines requests (see `protocol`)
GET /execution-parameters   what Batch Transform should send us

Every client error is a 4xx with a JSON body {"error", "code"}; a 5xx means
a bug or a broken model, never bad input (except the 504 of a request that
outlives its deadline: too much work, not malformed). Limits one client cannot exceed
(`ServeSettings`): body size (413), instances and tokens per request (413), body
read time (408), a deadline per request (504); a request whose client went away
is dropped and its remaining model work cancelled. Parsing, checking and encoding
run on a worker thread, so the event loop (and `/ping`) stays responsive while
a large request is handled.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from sav_router.serving import protocol
from sav_router.serving.batcher import BatcherClosed, MicroBatcher
from sav_router.serving.settings import ServeSettings

log = logging.getLogger("sav_router.serving")

_REQUEST = {"type": "object", "properties": {"text": {"type": "string"}, "id": {"type": ["string", "integer", "null"]}}, "required": ["text"]}
_ERROR = {"type": "object", "properties": {"error": {"type": "string"}, "code": {"type": "string"}}, "required": ["error", "code"]}
_INVOCATIONS_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            protocol.JSON: {
                "schema": {
                    "oneOf": [
                        _REQUEST,
                        {"type": "object", "properties": {"instances": {"type": "array", "items": _REQUEST}}, "required": ["instances"]},
                    ]
                }
            },
            protocol.JSONLINES: {"schema": {"type": "string", "description": "one JSON request per line"}},
        },
    },
    "responses": {
        "200": {"description": "a decision record, {'predictions': [...]}, or one JSON line per input line"},
        **{
            str(status): {"description": text, "content": {"application/json": {"schema": _ERROR}}}
            for status, text in [
                (400, "invalid request"), (406, "not acceptable"), (408, "body not received in time"),
                (413, "payload, instances or tokens over the limit"), (415, "unsupported media type"),
                (503, "shutting down: not finished within the grace period"), (504, "deadline exceeded"),
            ]
        },
    },
}


def predict_records(router, texts: list[str]) -> list[tuple]:
    """(decision, scores) per text: what the batcher computes in one model call."""
    decisions, scores = router.predict(texts)
    return list(zip(decisions, scores))


class FramingGuard:
    """Refuses a request that declares both Transfer-Encoding and Content-Length (RFC 9112 6.3).

    h11 lets Transfer-Encoding win, but a proxy in front may have framed the body by
    Content-Length: the two disagree on where the request ends, the ground of request
    smuggling. Answered with the JSON 400 of unparsable HTTP, body unread, connection closed.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            names = {name.lower() for name, _ in scope["headers"]}
            if b"transfer-encoding" in names and b"content-length" in names:
                body = {"error": "invalid HTTP request: both Transfer-Encoding and Content-Length", "code": "invalid_http"}
                await JSONResponse(body, status_code=400, headers={"Connection": "close"})(scope, receive, send)
                return
        await self.app(scope, receive, send)


class Shutdown:
    """SIGTERM's cut-off (issue 18, finding 5): what is still computing at `grace_s - margin` gets a JSON 503.

    `begin` is called (from the signal handler, through the loop) when the server stops
    taking connections; requests in flight go on until the cut-off, then each is answered
    503 `shutting_down` and its model work is cancelled, so the process exits within the
    grace period: the margin leaves time for the 503s, the model call already running
    (one slice, bounded in tokens) and the exit.
    """

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.cutoff = asyncio.Event()
        self.started = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def margin_s(self) -> float:
        return min(2.0, self.grace_s / 4)

    def bind(self) -> None:
        self._loop = asyncio.get_running_loop()

    def begin(self) -> None:
        """Thread- and signal-safe: schedules the cut-off on the server's loop."""
        if self._loop is not None and not self.started:
            self.started = True
            self._loop.call_soon_threadsafe(self._loop.call_later, self.grace_s - self.margin_s, self.cutoff.set)

    def error(self) -> protocol.RequestError:
        return protocol.RequestError(503, "shutting_down", f"the server is shutting down and could not finish this request within its {self.grace_s:g} s grace period; send it again")


async def before_cutoff(handler, shutdown: Shutdown):
    """`handler`'s result, unless the shutdown cut-off comes first: then it is cancelled (its model work too) and a 503 raised."""
    task = asyncio.ensure_future(handler)
    cutoff = asyncio.ensure_future(shutdown.cutoff.wait())
    try:
        await asyncio.wait({task, cutoff}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        task.cancel()
        raise shutdown.error()
    finally:
        cutoff.cancel()
        task.cancel()


class ClientGone(Exception):
    """The client closed the connection before its answer: nothing to send, nothing to log but a line."""


async def read_body(request: Request, limit: int, timeout_s: float | None = None) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `limit` bytes, 408 if not in within `timeout_s`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise protocol.RequestError(413, "payload_too_large", f"payload of {declared} bytes exceeds the {limit}-byte limit")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise protocol.RequestError(413, "payload_too_large", f"payload exceeds the {limit}-byte limit")
                chunks.append(chunk)
    except TimeoutError:
        raise protocol.RequestError(408, "body_timeout", f"request body not received within {timeout_s:g} s") from None
    except ClientDisconnect:
        raise ClientGone() from None
    return b"".join(chunks)


def token_bound(text: str, max_length: int) -> int:
    """Upper bound of the tokens the model sees for `text`: at most max_length once truncated, and a
    WordPiece / BPE text has at most one token per character (+ 2 special tokens). What the 413 limit
    and the batcher's slices count."""
    return min(max_length, len(text) + 2)


def parse_checked(body: bytes, media_type: str, settings: ServeSettings, max_length: int) -> protocol.Parsed:
    """Parse and apply the per-request limits (on a worker thread: a 6 MB body takes a while)."""
    parsed = protocol.parse_body(body, media_type)
    if len(parsed.items) > settings.max_instances:
        raise protocol.RequestError(413, "too_many_instances", f"{len(parsed.items)} requests in one call; at most {settings.max_instances}")
    tokens = sum(token_bound(item.text, max_length) for item in parsed.items if item.text)
    if tokens > settings.max_tokens:
        raise protocol.RequestError(413, "too_many_tokens", f"about {tokens} tokens in one call; at most {settings.max_tokens}")
    return parsed


async def until_answered(work: asyncio.Future, request: Request, deadline_s: float):
    """The model's results, unless the client leaves (ClientGone) or the deadline passes (504); both cancel the work."""
    gone = asyncio.ensure_future(request.receive())  # after the body, the next message is the disconnect
    try:
        done, _ = await asyncio.wait({work, gone}, timeout=deadline_s, return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            return work.result()
        work.cancel()
        if gone in done:
            raise ClientGone()
        raise protocol.RequestError(504, "deadline_exceeded", f"not answered within the {deadline_s:g} s deadline; send fewer requests per call")
    finally:
        gone.cancel()
        work.cancel()  # no-op once done; cancelled from outside (shutdown cut-off), the work stops too


def create_app(router, settings: ServeSettings | None = None) -> FastAPI:
    from sav_router.core.policy import EMPTY_TEXT, decision_record, escalation

    settings = settings or ServeSettings()
    max_length = router.manifest.max_length
    batcher = MicroBatcher(
        lambda texts: predict_records(router, texts),
        max_batch_size=settings.max_batch_size,
        max_wait_ms=settings.max_wait_ms,
        cost=lambda text: token_bound(text, max_length),  # slices counted in tokens (issue 18, finding 4)
        max_batch_cost=settings.max_batch_tokens,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        shutdown.bind()
        await batcher.start()
        log.info("model %s (%s backend) ready", router.version, router.backend.name)
        yield
        await batcher.close()  # uvicorn has already stopped taking connections and drained requests
        log.info("stopped after %d model calls (%d texts)", batcher.stats.calls, batcher.stats.texts)

    app = FastAPI(title="sav-router", summary="Precision-first routing of after-sales requests", lifespan=lifespan)
    app.state.batcher = batcher
    app.state.shutdown = shutdown = Shutdown(settings.graceful_timeout_s)
    app.add_middleware(FramingGuard)
    app.state.router = router

    @app.exception_handler(protocol.RequestError)
    async def request_error(request: Request, exc: protocol.RequestError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail), "code": "http_error"}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, exc: ClientGone) -> Response:
        log.info("client disconnected before its answer; its remaining work is cancelled")
        return Response(status_code=499)  # never sent: the connection is closed

    @app.exception_handler(BatcherClosed)
    async def closed(request: Request, exc: BatcherClosed) -> JSONResponse:
        return JSONResponse({"error": str(exc), "code": "unavailable"}, status_code=503)

    @app.get("/ping")
    async def ping() -> dict:
        return {"status": "healthy", "model_version": router.version, "backend": router.backend.name,
                "certified": bool(getattr(router, "certified", False))}

    @app.get("/execution-parameters")
    async def execution_parameters() -> dict:
        return {
            "MaxConcurrentTransforms": settings.max_concurrent_transforms,
            "BatchStrategy": settings.batch_strategy,
            "MaxPayloadInMB": settings.max_payload_mb,
        }

    @app.post("/invocations", openapi_extra=_INVOCATIONS_OPENAPI)
    async def invocations(request: Request) -> Response:
        return await before_cutoff(answer(request), shutdown)

    async def answer(request: Request) -> Response:
        request_type = protocol.content_type(request.headers.get("content-type"))
        answer_type = protocol.accept_type(request.headers.get("accept"), request_type)
        body = await read_body(request, settings.max_payload_bytes, settings.body_timeout_s)
        parsed = await asyncio.to_thread(parse_checked, body, request_type, settings, router.manifest.max_length)
        valid = [item for item in parsed.items if item.error is None]
        if parsed.items and not valid:
            errors = [protocol.error_record(item) for item in parsed.items]
            raise protocol.RequestError(400, "no_valid_request", f"none of the {len(errors)} requests is valid (first: {errors[0]['error']})", items=errors)
        work = asyncio.ensure_future(batcher.submit([item.text for item in valid if item.text.strip()]))  # blanks need no model
        results = await until_answered(work, request, settings.deadline_s)
        answer = await asyncio.to_thread(encode_answer, parsed, results, answer_type)
        return Response(answer, media_type=answer_type, headers={"X-Model-Version": router.version})

    def encode_answer(parsed: protocol.Parsed, results: list, answer_type: str) -> bytes:
        computed = iter(results)
        blank = (escalation(EMPTY_TEXT, model_version=router.version), None)
        records = [
            protocol.error_record(item) if item.error is not None else decision_record(item.id, *(next(computed) if item.text.strip() else blank))
            for item in parsed.items
        ]
        return protocol.encode(records, single=parsed.single, media_type=answer_type)

    return app
