"""The review queues: the reviewer's current request, answers, skips, undo; an admin queues a batch."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from sav_router.console.deps import Admin, Form, SignedIn
from sav_router.console.pages import QUEUES, page
from sav_router.console.sources import BATCH, ESCALATIONS, ActionUnavailable
from sav_router.core.labels import out_of_scope_label
from sav_router.review.queue import LeaseLost
from sav_router.review.session import choices_for

router = APIRouter()


async def desk_of(request: Request, name: str) -> Any:
    if name not in QUEUES:
        raise HTTPException(404, "no such queue")
    desk = request.app.state.source.desks.get(name)
    if desk is None:
        raise HTTPException(404, "this source has no annotation batch (see the README: Label Studio)")
    return desk


Desk = Annotated[Any, Depends(desk_of)]


def known_labels(source: Any, item: Any) -> list[str]:
    labels = set(source.labels(item.model_version)) | {label for label, _ in item.top_k} | ({item.label} if item.label else set())
    return sorted(labels - {out_of_scope_label()})


def back_to(name: str, done: str) -> RedirectResponse:
    return RedirectResponse(f"/queue/{name}?done={done}", status_code=303)


@router.get("/")
async def home(found: SignedIn) -> Response:
    return RedirectResponse(f"/queue/{ESCALATIONS}", status_code=303)


@router.get("/queue/{name}", response_class=HTMLResponse)
async def queue_page(request: Request, name: str, found: SignedIn, desk: Desk) -> Response:
    item = await run_in_threadpool(desk.current, found[0].name)
    pending = await run_in_threadpool(desk.pending)
    labels = known_labels(request.app.state.source, item) if item is not None else []
    if item is not None and item.audit:
        # Blind: the same fixed (alphabetical) list for every audit sample, not the model's candidates
        choices = [(label, None) for label in labels]
    else:
        choices = choices_for(item) if item is not None else []
    return page(
        request, "queue.html", name=name, title=QUEUES[name], item=item, choices=choices[:9],
        labels=labels, pending=pending, out_of_scope=out_of_scope_label(),
    )


@router.post("/queue/{name}/answer")
async def answer(request: Request, name: str, found: SignedIn, fields: Form, desk: Desk) -> Response:
    user = found[0]
    item_id, label = fields.get("item_id", ""), fields.get("label", "").strip()
    item = await run_in_threadpool(desk.current, user.name)
    if item is None or item.id != item_id:
        return back_to(name, "lease_lost")
    if label != out_of_scope_label() and label not in known_labels(request.app.state.source, item):
        raise HTTPException(400, "not a known label: pick one from the list, or out of scope")
    try:
        row = await run_in_threadpool(desk.answer, user.name, item_id, label)
    except LeaseLost:
        return back_to(name, "lease_lost")
    request.app.state.audit.record(user.name, "answer", queue=name, id=item_id, label=label, split=row["split"], model_version=row.get("model_version"))
    return back_to(name, "answered")


@router.post("/queue/{name}/skip")
async def skip(request: Request, name: str, found: SignedIn, fields: Form, desk: Desk) -> Response:
    try:
        await run_in_threadpool(desk.skip, found[0].name, fields.get("item_id", ""))
    except LeaseLost:
        return back_to(name, "lease_lost")
    request.app.state.audit.record(found[0].name, "skip", queue=name, id=fields.get("item_id"))
    return back_to(name, "skipped")


@router.post("/queue/{name}/undo")
async def undo(request: Request, name: str, found: SignedIn, fields: Form, desk: Desk) -> Response:
    item = await run_in_threadpool(desk.undo, found[0].name)
    if item is None:
        return back_to(name, "nothing_to_undo")
    request.app.state.audit.record(found[0].name, "undo", queue=name, id=item.id)
    return back_to(name, "undone")


@router.post("/queue/batch/start")
async def start_batch(request: Request, found: Admin, fields: Form) -> Response:
    try:
        count = await run_in_threadpool(request.app.state.source.start_batch, int(fields.get("k") or 20))
    except (ActionUnavailable, ValueError) as exc:
        raise HTTPException(409, str(exc)) from None
    request.app.state.audit.record(found[0].name, "batch_started", count=count)
    return back_to(BATCH, "batch")
