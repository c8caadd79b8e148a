"""The console on the local workspace, driven in system Chromium: the scenarios of issue 13, point 7."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.console.conftest import XSS, ConsoleServer, read_answers, server_env
from tests.console.helpers import csrf_of, current_id, login, press, shot

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(local_workspace, tmp_path_factory):
    server = ConsoleServer(["--workspace", str(local_workspace["root"])], env=server_env(), log_path=tmp_path_factory.mktemp("logs") / "console.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ana(browser, server):
    context, page = login(browser, server, "ana")
    yield page
    context.close()


def answers(ws, item_id):
    return [row for row in read_answers(ws["root"]) if row["id"] == item_id]


def test_nothing_is_served_without_logging_in(server, browser):
    # WHEN a stranger asks for pages or posts an answer
    for path in ("/", "/queue/escalations", "/dashboard", "/models"):
        request = urllib.request.Request(server.url + path)
        opener = urllib.request.build_opener(NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as caught:
            opener.open(request)
        # THEN a redirect to the login page, never the content
        assert caught.value.code == 303 and caught.value.headers["location"].startswith("/login")
    post = urllib.request.Request(server.url + "/queue/escalations/answer", data=b"item_id=e1&label=refund", method="POST", headers={"Content-Type": "application/x-www-form-urlencoded"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(post)
    assert caught.value.code == 401
    # AND the login page carries a strict CSP and is the only thing a browser sees
    page = browser.new_page()
    response = page.goto(server.url + "/queue/escalations")
    assert "/login" in page.url
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    # AND a wrong password gets nothing but the login page again
    page.fill("input[name=username]", "ana")
    page.fill("input[name=password]", "not her password")
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert "wrong password" in page.locator(".error").inner_text() and not any(c["name"] == "sav_console" for c in page.context.cookies())
    page.close()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_a_reviewer_answers_three_escalations_with_the_keyboard_and_a_reload_keeps_the_work(ana, local_workspace, screenshots):
    ws = local_workspace
    # GIVEN the first escalation on screen with the model's suggestions sorted by score
    assert current_id(ana) == "e1"
    assert ana.locator(".choice .label").all_inner_texts()[:3] == ["delivery", "refund", "warranty"]
    assert "not confident enough" in ana.locator(".why").inner_text()
    shot(ana, screenshots, "queue")
    ana.keyboard.press("?")  # the keys, on screen
    assert ana.locator("#help").get_attribute("open") is not None and ana.locator("#help li").count() == 4
    ana.keyboard.press("?")
    cookie = next(c for c in ana.context.cookies() if c["name"] == "sav_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # WHEN the reviewer presses 1: the top suggestion
    press(ana, "1")
    assert current_id(ana) == "e2" and "Answer saved" in ana.locator(".notice").inner_text()
    # AND reloads in the middle
    ana.reload()
    # THEN the same request is back, the answer kept
    assert current_id(ana) == "e2"
    assert [row["label"] for row in answers(ws, "e1")] == ["delivery"]
    # WHEN the second suggestion by digit, then a label found by search (/ then Enter)
    press(ana, "2")
    assert current_id(ana) == "e3"
    ana.keyboard.press("/")
    ana.keyboard.type("warr")
    assert ana.locator(".label-option:visible").all_inner_texts() == ["warranty"]
    press(ana, "Enter")
    # THEN three annotation rows exactly as `review` writes them, with reviewer, time and model version
    rows = {row["id"]: row for row in read_answers(ws["root"])}
    assert (rows["e1"]["label"], rows["e2"]["label"], rows["e3"]["label"]) == ("delivery", "account", "warranty")
    for rid in ("e1", "e2", "e3"):
        row = rows[rid]
        assert row["split"] == "teach" and row["source"] == "review" and row["reviewer"] == "ana"
        assert row["model_version"] == ws["production"] and row["reviewed_at"] and row["text"]
    assert current_id(ana) == "e4"


def test_out_of_scope_and_undo(ana, local_workspace, screenshots):
    ws = local_workspace
    assert current_id(ana) == "e4"
    assert "unlike anything the model was trained on" in ana.locator(".why").inner_text()
    # WHEN "none of these" by its key
    press(ana, "o")
    assert [row["label"] for row in answers(ws, "e4")] == ["out_of_scope"]
    assert current_id(ana) == "e5"
    # AND undo
    press(ana, "u")
    # THEN the answer is gone from the drop and the request is back on screen
    assert answers(ws, "e4") == [] and current_id(ana) == "e4"
    assert "taken back" in ana.locator(".notice").inner_text()
    press(ana, "o")
    assert [row["label"] for row in answers(ws, "e4")] == ["out_of_scope"]


def test_request_text_is_shown_as_text_and_skip_then_a_blind_audit_sample(ana, local_workspace, screenshots):
    ws = local_workspace
    # GIVEN a request whose text is markup: shown literally, never run
    assert current_id(ana) == "e5"
    assert ana.locator("#request-text").inner_text() == XSS and ana.title() != "pwned"
    # WHEN skipped
    press(ana, "s")
    assert answers(ws, "e5") == []
    # THEN the audit sample comes, blind: no score, no suggestion order, fixed alphabetical candidates
    assert current_id(ana) == "a1"
    assert "audit sample" in ana.locator(".why").inner_text().lower()
    assert ana.locator(".choice meter").count() == 0 and ana.locator(".choice .score").count() == 0
    # every label in a fixed order (warranty is not among its scored candidates), then out of scope
    assert ana.locator(".choice .label").all_inner_texts()[:4] == ["account", "delivery", "refund", "warranty"]
    assert "0.97" not in ana.content()
    shot(ana, screenshots, "queue-audit")
    press(ana, "2")  # delivery: the reviewer disagrees with the routed label
    row = answers(ws, "a1")[0]
    assert (row["split"], row["source"], row["label"], row["model_label"]) == ("check", "audit", "delivery", "account")


def test_two_reviewers_at_once_get_different_requests(ana, browser, server, local_workspace):
    ws = local_workspace
    context, bob = login(browser, server, "bob")
    try:
        mine, theirs = current_id(ana), current_id(bob)
        assert mine and theirs and mine != theirs
        # WHEN bob tries to answer ana's request with a hand-made form
        response = bob.request.post(server.url + "/queue/escalations/answer", form={"csrf": csrf_of(bob), "item_id": mine, "label": "refund"}, max_redirects=0)
        # THEN it is not his: refused, nothing written
        assert response.status == 303 and "lease_lost" in response.headers["location"]
        assert answers(ws, mine) == []
        bob.reload()
        assert current_id(bob) == theirs
    finally:
        context.close()


def test_readable_on_a_tablet(browser, server, screenshots):
    context = browser.new_context(viewport={"width": 768, "height": 1024}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(server.url + "/login")
    page.fill("input[name=username]", "bob")
    page.fill("input[name=password]", "bob-password-2")
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.evaluate("document.documentElement.scrollWidth") <= 768  # nothing wider than the screen
    shot(page, screenshots, "queue-tablet")
    context.close()


def test_a_server_restart_loses_nothing(ana, server, local_workspace):
    before = current_id(ana)
    server.restart()
    ana.reload()
    assert current_id(ana) == before  # same session cookie, same leased request


def test_a_form_without_its_csrf_token_is_refused(ana, server, local_workspace):
    ws = local_workspace
    item = current_id(ana)
    ana.evaluate("document.querySelectorAll('#answer-form input[name=csrf]').forEach(e => e.remove())")
    with ana.expect_navigation():
        ana.keyboard.press("1")
    assert "CSRF" in ana.locator(".error").inner_text()
    assert answers(ws, item) == []
    response = ana.request.post(server.url + "/queue/escalations/answer", form={"csrf": "forged", "item_id": item, "label": "refund"})
    assert response.status == 403 and answers(ws, item) == []
    ana.goto(server.url + "/queue/escalations")
    assert current_id(ana) == item


def test_a_reviewer_is_refused_on_promote(ana, server, local_workspace):
    ws = local_workspace
    ana.goto(server.url + f"/models/{ws['candidate']}")
    assert ana.locator("form[action$='/promote']").count() == 0 and "Only admins" in ana.content()
    response = ana.request.post(server.url + f"/models/{ws['candidate']}/promote", form={"csrf": csrf_of(ana), "reason": "because", "force": "on"})
    assert response.status == 403
    assert ws["workspace"].production_version() == ws["production"]
    ana.goto(server.url + "/queue/escalations")


def test_an_admin_compares_is_refused_by_the_failed_gate_then_forces_with_a_reason_and_rolls_back(browser, server, local_workspace, screenshots):
    ws = local_workspace
    context, root = login(browser, server, "root", start="/models")
    try:
        assert root.locator("tr.production").inner_text().count(ws["production"]) == 1
        shot(root, screenshots, "models")
        root.click(f"a[href='/models/{ws['candidate']}']")
        # WHEN the admin compares the candidate with production (the CLI's compare, on the logged traffic)
        with root.expect_navigation():
            root.click("button:has-text(\"Compare with production\")")
        assert "Comparison done" in root.locator(".notice").inner_text()
        verdict = root.locator(".verdict-line").inner_text()
        assert verdict.startswith("FAIL") and "insufficient evidence" in verdict  # a handful of labels, the gate needs 50
        comparison = json.loads((ws["root"] / "evaluations" / ws["candidate"] / "comparison" / "comparison.json").read_text())
        assert comparison["n_compared"] > 0 and comparison["gate"]["passed"] is False
        # AND promotes without forcing
        root.fill("input[name=reason]", "looks better")
        with root.expect_navigation():
            root.click("button:has-text(\"Promote\")")
        # THEN refused by the gate, production unchanged
        assert "failed the promotion gate" in root.locator(".error").inner_text()
        assert ws["workspace"].production_version() == ws["production"]
        shot(root, screenshots, "model-comparison", full_page=True)
        # WHEN forced with a reason
        root.fill("input[name=reason]", "pilot on the new labels")
        root.check("input[name=force]")
        with root.expect_navigation():
            root.click("button:has-text(\"Promote\")")
        assert ws["workspace"].production_version() == ws["candidate"]
        last = ws["workspace"].registry()["history"][-1]
        assert (last["action"], last["by"], last["forced"], last["reason"]) == ("promote", "root", True, "pilot on the new labels")
        # AND rolled back
        root.goto(server.url + "/models")
        root.fill("input[name=reason]", "pilot over")
        with root.expect_navigation():
            root.click("button:has-text(\"Roll back\")")
        assert ws["workspace"].production_version() == ws["production"]
        assert ws["workspace"].registry()["history"][-1]["by"] == "root"
    finally:
        context.close()


def test_an_admin_starts_an_annotation_batch_answered_on_the_same_screen(browser, server, local_workspace, screenshots):
    ws = local_workspace
    context, root = login(browser, server, "root", start="/queue/batch")
    try:
        assert "No annotation batch" in root.content()
        root.fill("input[name=k]", "4")
        with root.expect_navigation():
            root.click("button:has-text(\"Start batch\")")
        assert "Batch queued" in root.content()
        batch = [json.loads(line) for line in (ws["root"] / "review" / "batch.jsonl").read_text().splitlines()]
        assert len(batch) == 4 and all("priority" in row for row in batch)
        assert current_id(root) == batch[0]["id"]  # priority order
        shot(root, screenshots, "queue-batch")
        first = batch[0]["id"]
        press(root, "1")
        assert answers(ws, first)[0]["reviewer"] == "root"
    finally:
        context.close()


def test_the_dashboard_draws_the_report_live_precision_and_escalations(browser, server, local_workspace, screenshots):
    context, root = login(browser, server, "root", start="/dashboard")
    try:
        titles = [chart.get_attribute("aria-label") for chart in root.locator("svg.chart").all()]
        assert {"Risk-coverage curve", "Reliability diagram", "Confusion matrix", "Live routed precision from audit samples", "Escalations over time"} <= set(titles)
        assert root.locator("table.data").count() >= 4 and "Per label" in root.content()
        assert "0 of 1 audited routed requests confirmed" in root.content()
        shot(root, screenshots, "dashboard", full_page=True)
    finally:
        context.close()


def test_server_logs_hold_no_request_text_and_the_audit_log_holds_every_action(server, local_workspace):
    logs = server.logs()
    for text in local_workspace["texts"]:
        assert text not in logs
    audit = [json.loads(line) for line in (local_workspace["root"] / "console" / "audit.jsonl").read_text().splitlines()]
    actions = {row["action"] for row in audit}
    assert {"login", "answer", "undo", "skip", "refused", "compare", "promote_refused", "promote", "rollback", "batch_started"} <= actions
    dumped = json.dumps(audit)
    assert not any(text in dumped for text in local_workspace["texts"])
