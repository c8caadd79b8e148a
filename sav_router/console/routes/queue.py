"""The review queues: the reviewer's current request, answers, skips, undo, lease renewal; an admin queues a batch.

Every answer, skip and undo is a POST answered with a redirect to the queue
(POST-redirect-GET); what it did is said on the next page (a notice kept on
the server for that user: the label saved and the request). While a request
is on screen the page's own script renews its lease (POST .../renew, only
while the page is visible); an empty queue asks .../status for new work.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from sav_router.console.deps import Admin, Form, SignedIn, flash, refuse
from sav_router.console.pages import QUEUES, page
from sav_router.console.sources import BATCH, ESCALATIONS, RECHECK, RECHECK_ON_AWS, ActionUnavailable
from sav_router.core.labels import out_of_scope_label
from sav_router.review.queue import LeaseLost
from sav_router.review.session import choices_for

router = APIRouter()
KEYS = 9  # number keys 1-9


async def desk_of(request: Request, name: str) -> Any:
    if name not in QUEUES:
        raise HTTPException(404, "no such queue")
    desk = request.app.state.source.desks.get(name)
    if desk is None:
        raise HTTPException(404, RECHECK_ON_AWS if name == RECHECK else "this source has no annotation batch (see the README: Label Studio)")
    return desk


Desk = Annotated[Any, Depends(desk_of)]


def answer_labels(source: Any, item: Any = None) -> list[str]:
    """The labels an answer may take: the production model's (else the item's model's), alphabetical; never the item's own list."""
    labels = source.labels(None) or (source.labels(item.model_version) if item is not None and item.model_version else [])
    return sorted(set(labels) - {out_of_scope_label()})


def back_to(name: str, done: str) -> RedirectResponse:
    return RedirectResponse(f"/queue/{name}?done={done}", status_code=303)


def _short(text: str, limit: int = 70) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


@router.get("/")
async def home(found: SignedIn) -> Response:
    return RedirectResponse(f"/queue/{ESCALATIONS}", status_code=303)


@router.get("/queue/{name}", response_class=HTMLResponse)
async def queue_page(request: Request, name: str, found: SignedIn, desk: Desk) -> Response:
    source = request.app.state.source
    item = await run_in_threadpool(desk.current, found[0].name, again=request.query_params.get("again") == "1")
    counts = await run_in_threadpool(desk.counts, found[0].name)
    labels = answer_labels(source, item) if item is not None else []
    if item is not None and item.audit:
        # Blind: the production model's labels in alphabetical order, the same for every audit sample and
        # re-check (so a number key means the same label on each), no score, not the model's candidates,
        # never a re-checked row's earlier label
        choices = [(label, None) for label in labels]
    else:
        choices = [(label, score) for label, score in (choices_for(item) if item is not None else []) if label != out_of_scope_label()]
    choices = choices[:KEYS]
    keys = {label: number for number, (label, _) in enumerate(choices, start=1)}
    doubts = None
    if name == RECHECK and found[0].is_admin:  # how many open doubts, by what settling would do (no label: the desk stays blind)
        doubts = {}
        for row in await run_in_threadpool(source.recheck_status):
            doubts[row["outcome"]] = doubts.get(row["outcome"], 0) + 1
    return page(
        request, "queue.html", name=name, title=QUEUES[name], item=item, choices=choices, keys=keys,
        labels=labels, descriptions=source.label_descriptions() if hasattr(source, "label_descriptions") else {},
        pending=counts["waiting"] + counts["held"], counts=counts, out_of_scope=out_of_scope_label(), doubts=doubts,
    )


@router.get("/queue/{name}/status")
async def queue_status(request: Request, name: str, found: SignedIn, desk: Desk) -> Response:
    """What waits (for the empty queue's page, which reloads when new work arrives)."""
    return JSONResponse(await run_in_threadpool(desk.counts, found[0].name))


@router.post("/queue/{name}/renew")
async def renew(request: Request, name: str, found: SignedIn, fields: Form, desk: Desk) -> Response:
    """The request is still on screen: its lease is extended (`held: false` when it is no longer this reviewer's)."""
    held = await run_in_threadpool(desk.renew, found[0].name, fields.get("item_id", ""))
    return JSONResponse({"held": held})


@router.post("/queue/{name}/answer")
async def answer(request: Request, name: str, found: SignedIn, fields: Form, desk: Desk) -> Response:
    user = found[0]
    item_id, label = fields.get("item_id", ""), fields.get("label", "").strip()
    if label != out_of_scope_label() and label not in answer_labels(request.app.state.source):
        raise HTTPException(400, "not a known label: pick one from the list, or out of scope")
    try:
        row = await run_in_threadpool(desk.answer, user.name, item_id, label)
    except LeaseLost:
        return back_to(name, "lease_lost")
    request.app.state.audit.record(user.name, "answer", queue=name, id=item_id, label=label, split=row["split"], model_version=row.get("model_version"))
    shown = "out of scope" if label == out_of_scope_label() else label
    flash(request, user.name, notice=f"Answer saved: “{shown}” for request {item_id} (“{_short(row.get('text', ''))}”). Press u to take it back.")
    return back_to(name, "answered")


@router.post("/queue/{name}/skip")
async def skip(request: Request, name: str, found: SignedIn, fields: Form, desk: Desk) -> Response:
    item_id = fields.get("item_id", "")
    try:
        await run_in_threadpool(desk.skip, found[0].name, item_id)
    except LeaseLost:
        return back_to(name, "lease_lost")
    request.app.state.audit.record(found[0].name, "skip", queue=name, id=item_id)
    flash(request, found[0].name, notice=f"Skipped request {item_id}: it stays in the queue for later or for someone else.")
    return back_to(name, "skipped")


@router.post("/queue/{name}/undo")
async def undo(request: Request, name: str, found: SignedIn, fields: Form, desk: Desk) -> Response:
    item = await run_in_threadpool(desk.undo, found[0].name)
    if item is None:
        return back_to(name, "nothing_to_undo")
    request.app.state.audit.record(found[0].name, "undo", queue=name, id=item.id)
    label = getattr(desk, "undone", {}).get(found[0].name)
    said = f"“{'out of scope' if label == out_of_scope_label() else label}” " if label else ""
    where = "here it is again" if request.app.state.source.kind == "local" else "it is back in the review queue"  # SQS: a new message, not this page's
    flash(request, found[0].name, notice=f"Answer {said}to request {item.id} taken back: {where} (u again takes back the one before).")
    return back_to(name, "undone")


@router.post("/preferences/shortcuts")
async def shortcuts(request: Request, found: SignedIn, fields: Form) -> Response:
    """Single-key shortcuts on or off for this user (WCAG 2.1.4)."""
    on = fields.get("shortcuts") == "on"
    await run_in_threadpool(lambda: request.app.state.prefs.set(found[0].name, shortcuts=on))
    flash(request, found[0].name, notice="Keyboard shortcuts are on." if on else "Keyboard shortcuts are off: use the buttons, or switch them on again under Keys.")
    back = fields.get("back", "")
    return RedirectResponse(back if back.startswith("/queue/") and "//" not in back else f"/queue/{ESCALATIONS}", status_code=303)


@router.post("/queue/batch/start")
async def start_batch(request: Request, found: Admin, fields: Form) -> Response:
    raw = (fields.get("k") or "20").strip()
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        return refuse(request, found[0].name, f"/queue/{BATCH}", "The batch size must be a whole number from 1 to 1000.", 400)
    try:
        count = await run_in_threadpool(request.app.state.source.start_batch, int(raw))
    except (ActionUnavailable, ValueError) as exc:
        return refuse(request, found[0].name, f"/queue/{BATCH}", str(exc), 409)
    request.app.state.audit.record(found[0].name, "batch_started", count=count)
    flash(request, found[0].name, notice=f"Batch queued: {count} requests ranked for annotation.")
    return back_to(BATCH, "batch")
