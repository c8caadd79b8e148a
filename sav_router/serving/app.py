"""The HTTP application: the SageMaker inference contract on top of a Router.

GET /ping                   200 once the model is loaded (it is loaded before the app exists)
POST /invocations           decisions for JSON or JSON Lines requests (see `protocol`)
GET /execution-parameters   what Batch Transform should send us

Every client error is a 4xx with a JSON body {"error", "code"}; a 5xx means
a bug or a broken model, never bad input.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

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
            for status, text in [(400, "invalid request"), (406, "not acceptable"), (413, "payload too large"), (415, "unsupported media type")]
        },
    },
}


def predict_records(router, texts: list[str]) -> list[tuple]:
    """(decision, scores) per text: what the batcher computes in one model call."""
    decisions, scores = router.predict(texts)
    return list(zip(decisions, scores))


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise protocol.RequestError(413, "payload_too_large", f"payload of {declared} bytes exceeds the {limit}-byte limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise protocol.RequestError(413, "payload_too_large", f"payload exceeds the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(router, settings: ServeSettings | None = None) -> FastAPI:
    from sav_router.core.policy import decision_record

    settings = settings or ServeSettings()
    batcher = MicroBatcher(lambda texts: predict_records(router, texts), max_batch_size=settings.max_batch_size, max_wait_ms=settings.max_wait_ms)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        log.info("model %s (%s backend) ready", router.version, router.backend.name)
        yield
        await batcher.close()  # uvicorn has already stopped taking connections and drained requests
        log.info("stopped after %d model calls (%d texts)", batcher.stats.calls, batcher.stats.texts)

    app = FastAPI(title="sav-router", summary="Precision-first routing of after-sales requests", lifespan=lifespan)
    app.state.batcher = batcher
    app.state.router = router

    @app.exception_handler(protocol.RequestError)
    async def request_error(request: Request, exc: protocol.RequestError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail), "code": "http_error"}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(BatcherClosed)
    async def closed(request: Request, exc: BatcherClosed) -> JSONResponse:
        return JSONResponse({"error": str(exc), "code": "unavailable"}, status_code=503)

    @app.get("/ping")
    async def ping() -> dict:
        return {"status": "healthy", "model_version": router.version, "backend": router.backend.name}

    @app.get("/execution-parameters")
    async def execution_parameters() -> dict:
        return {
            "MaxConcurrentTransforms": settings.max_concurrent_transforms,
            "BatchStrategy": settings.batch_strategy,
            "MaxPayloadInMB": settings.max_payload_mb,
        }

    @app.post("/invocations", openapi_extra=_INVOCATIONS_OPENAPI)
    async def invocations(request: Request) -> Response:
        request_type = protocol.content_type(request.headers.get("content-type"))
        answer_type = protocol.accept_type(request.headers.get("accept"), request_type)
        parsed = protocol.parse_body(await read_body(request, settings.max_payload_bytes), request_type)
        valid = [item for item in parsed.items if item.error is None]
        if parsed.items and not valid:
            errors = [protocol.error_record(item) for item in parsed.items]
            raise protocol.RequestError(400, "no_valid_request", f"none of the {len(errors)} requests is valid (first: {errors[0]['error']})", items=errors)
        results = iter(await batcher.submit([item.text for item in valid]))
        records = [protocol.error_record(item) if item.error is not None else decision_record(item.id, *next(results)) for item in parsed.items]
        body = protocol.encode(records, single=parsed.single, media_type=answer_type)
        return Response(body, media_type=answer_type, headers={"X-Model-Version": router.version})

    return app
