"""The re-check of doubted annotations: an admin settles what the blind answers allow, and the doubts left to an admin.

Reviewers answer the re-check desk (`/queue/recheck`, queue.py's routes: blind,
every label alphabetically). Here, admins only (local workspace; on AWS the
page says it is not available):

    POST /queue/recheck/settle           `sav-router settle`: confirm, relabel, or queue a third blind opinion
    GET  /recheck/doubts                 open doubts with their earlier label and the answers given
                                         (a separate page: the desk itself never shows the earlier label)
    POST /recheck/doubts/{key}/settle    an admin's label for a doubt the answers could not settle, with a reason

Every action is a form answered with a redirect; who and why go to the audit
log and, through `review.recheck`, to `review/recheck.settled.jsonl` (and the
relabel drop under annotations/).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from sav_router.console.deps import Admin, Form, flash, refuse
from sav_router.console.pages import page
from sav_router.console.sources import RECHECK, ActionUnavailable
from sav_router.core.labels import out_of_scope_label

router = APIRouter()
DOUBTS_PAGE = "/recheck/doubts"
OUTCOMES = {  # review.recheck's outcomes, in the page's words
    "confirmed": "confirmed", "relabelled": "relabelled", "third_opinion_queued": "third opinion queued",
    "needs_admin": "need an admin", "pending": "waiting for an answer",
}


def _available(source) -> None:
    if not source.can("settle"):
        raise HTTPException(404, source_message(source))


def source_message(source) -> str:
    from sav_router.console.sources import RECHECK_ON_AWS

    return RECHECK_ON_AWS if source.kind == "aws" else "The re-check queue is not available here."


@router.post(f"/queue/{RECHECK}/settle")
async def settle(request: Request, found: Admin, fields: Form) -> Response:
    source, user = request.app.state.source, found[0]
    try:
        counts = await run_in_threadpool(lambda: source.settle_rechecks(by=user.name))
    except ActionUnavailable as exc:
        return refuse(request, user.name, f"/queue/{RECHECK}", str(exc), 409)
    request.app.state.audit.record(user.name, "recheck_settle", **{outcome: n for outcome, n in counts.items()})
    said = ", ".join(f"{n} {OUTCOMES.get(outcome, outcome)}" for outcome, n in sorted(counts.items())) or "no open doubt"
    admin = counts.get("needs_admin")
    more = f" {admin} need{'s' if admin == 1 else ''} an admin: see “Doubts for an admin”." if admin else ""
    flash(request, user.name, notice=f"Re-checks settled: {said}.{more}")
    return RedirectResponse(f"/queue/{RECHECK}?done=settled", status_code=303)


@router.get(DOUBTS_PAGE, response_class=HTMLResponse)
async def doubts_page(request: Request, found: Admin) -> Response:
    source = request.app.state.source
    _available(source)
    doubts = await run_in_threadpool(source.recheck_status)
    counts: dict[str, int] = {}
    for doubt in doubts:
        counts[doubt["outcome"]] = counts.get(doubt["outcome"], 0) + 1
    return page(
        request, "recheck.html", doubts=[d for d in doubts if d["outcome"] == "needs_admin"], counts=counts, outcomes=OUTCOMES,
        labels=_labels(source, doubts), out_of_scope=out_of_scope_label(),
    )


def _labels(source, doubts) -> list[str]:
    """What an admin may settle on: production's labels and the labels the annotations offered (out of scope apart)."""
    offered = {label for doubt in doubts for label in doubt.get("choices") or []}
    return sorted((set(source.labels(None)) | offered) - {out_of_scope_label()})


@router.post(DOUBTS_PAGE + "/{key}/settle")
async def settle_one(request: Request, key: str, found: Admin, fields: Form) -> Response:
    source, user = request.app.state.source, found[0]
    _available(source)
    label, reason = fields.get("label", "").strip(), " ".join(fields.get("reason", "").split())
    if not reason:
        return refuse(request, user.name, DOUBTS_PAGE, "Settling a doubt by hand needs a reason: fill in the Reason field (it is recorded).", 400)
    doubts = await run_in_threadpool(source.recheck_status)
    doubt = next((d for d in doubts if d["key"] == key), None)
    if doubt is None:
        return refuse(request, user.name, DOUBTS_PAGE, "That doubt is no longer open (settled already): nothing changed.", 409)
    if label != out_of_scope_label() and label not in _labels(source, [doubt]):
        return refuse(request, user.name, DOUBTS_PAGE, "Pick the label from the list (or out of scope).", 400)
    try:
        settled = await run_in_threadpool(lambda: source.settle_doubt(key, label, by=user.name, reason=reason[:500]))
    except (ActionUnavailable, ValueError) as exc:
        return refuse(request, user.name, DOUBTS_PAGE, str(exc), 409)
    request.app.state.audit.record(
        user.name, "recheck_settled_by_admin", key=key, id=settled.get("id"), label=label, previous_label=settled.get("previous_label"),
        outcome=settled.get("outcome"), reason=reason[:500],
    )
    shown = "out of scope" if label == out_of_scope_label() else label
    flash(request, user.name, notice=f"Doubt {settled.get('id') or key} settled: “{shown}” ({OUTCOMES.get(settled.get('outcome'), settled.get('outcome'))}), your reason recorded.")
    return RedirectResponse(DOUBTS_PAGE + "?done=settled", status_code=303)
