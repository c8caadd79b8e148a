"""Issue 22 in the console: doubted annotations re-checked blind on the Re-check desk, settled from the page.

A workspace with the toy annotations (a few labels planted wrong), the tiny
bundle in production and `sav-router doubts --format review-queue --top 3`.
The browser test answers the desk blind (the earlier label nowhere but in the
alphabetical list every re-check shows), settles from the page, and runs
axe-core on the desk and on the admin's page; the HTTP tests check the
admin's settle (a reason required, a reviewer refused).
"""

from __future__ import annotations

import json
import re

import pytest

from sav_router.cli import main
from tests.conftest import read_jsonl, write_jsonl
from tests.console import helpers
from tests.console.conftest import ConsoleServer, add_users, server_env
from tests.console.helpers import press
from tests.console.test_console_states import client, csrf, login as http_login, make_app

DESK = "/queue/recheck"


def doubted_workspace(root, tiny_bundle, tiny_base_model, toy_annotations):
    """Annotations imported with 8 labels planted wrong, the tiny bundle in production, the 3 most doubtful queued for a re-check."""
    from sav_router.loop.workspace import Workspace

    rows = read_jsonl(toy_annotations)
    labels = sorted({row["label"] for row in rows})
    for row in rows[:8]:
        row["label"] = labels[(labels.index(row["label"]) + 1) % len(labels)]
    root.mkdir(parents=True, exist_ok=True)
    ws = root / "ws"
    assert main(["import", str(write_jsonl(root / "drop.jsonl", rows)), "--workspace", str(ws)]) == 0
    workspace = Workspace(ws)
    workspace.promote(workspace.register(tiny_bundle))
    assert main(["doubts", "--workspace", str(ws), "--base-model", tiny_base_model, "--format", "review-queue", "--top", "3"]) == 0
    doubts = read_jsonl(ws / "review" / "recheck.doubts.jsonl")
    assert len(doubts) == 3
    return workspace, doubts


def answer_all(workspace, reviewer, label_for):
    """Blind answers straight through the queue (the terminal's way), `label_for(doubt)` each."""
    from sav_router.review.items import annotation_row
    from sav_router.review.recheck import RecheckQueue

    by_text = {d["text"]: d for d in read_jsonl(workspace.path("review", "recheck.doubts.jsonl"))}
    queue = RecheckQueue(workspace, holder=reviewer)
    while (item := queue.next_item()) is not None:
        queue.ack(item, annotation_row(item, label_for(by_text[item.text]), reviewer=reviewer))


def other_label(doubt, step=1):
    labels = sorted(set(doubt["choices"]) - {"out_of_scope"})
    return labels[(labels.index(doubt["label"]) + step) % len(labels)]


# -- HTTP: the admin's settle --------------------------------------------------
@pytest.fixture()
def needs_admin(tmp_path, tiny_bundle, tiny_base_model, toy_annotations):
    """Three doubts, each answered by ana then by bob with two different labels, none the earlier one: an admin's to settle."""
    from sav_router.review.recheck import NEEDS_ADMIN, settle

    workspace, doubts = doubted_workspace(tmp_path, tiny_bundle, tiny_base_model, toy_annotations)
    answer_all(workspace, "ana", lambda d: other_label(d, 1))
    assert {s.outcome for s in settle(workspace, by="lead")} == {"third_opinion_queued"}
    answer_all(workspace, "bob", lambda d: other_label(d, 2))
    assert {s.outcome for s in settle(workspace, by="lead")} == {NEEDS_ADMIN}
    return workspace, doubts


def test_an_admin_settles_a_doubt_with_a_reason_and_a_reviewer_is_refused(needs_admin):
    workspace, doubts = needs_admin
    app = make_app(workspace.root)
    doubt = doubts[0]
    new_label = other_label(doubt, 3)
    # GIVEN a reviewer: the admin's page and both settle actions answer 403, and the refusal is logged
    ana, _ = http_login(app, "ana")
    token = csrf(ana, DESK)
    assert ana.get("/recheck/doubts").status_code == 403
    assert ana.post(f"/recheck/doubts/{doubt['key']}/settle", data={"csrf": token, "label": new_label, "reason": "I know"}).status_code == 403
    assert ana.post(f"{DESK}/settle", data={"csrf": token}).status_code == 403
    audit = [json.loads(line) for line in (workspace.root / "console" / "audit.jsonl").read_text().splitlines()]
    assert [row["action"] for row in audit if row["user"] == "ana"].count("refused") == 3
    # GIVEN an admin: the page lists the three doubts with their earlier label and the answers
    root, _ = http_login(app, "root")
    listing = root.get("/recheck/doubts").text
    assert all(d["key"] in listing for d in doubts) and "Earlier label" in listing
    token = csrf(root, "/recheck/doubts")
    # WHEN the reason is missing (blank): refused, nothing settled
    refused = root.post(f"/recheck/doubts/{doubt['key']}/settle", data={"csrf": token, "label": new_label, "reason": "  "})
    assert refused.status_code == 400 and "needs a reason" in refused.text
    assert not (workspace.path("review", "recheck.settled.jsonl")).is_file()
    # AND an unknown label: refused
    assert root.post(f"/recheck/doubts/{doubt['key']}/settle", data={"csrf": token, "label": "no-such", "reason": "x"}).status_code == 400
    # WHEN the admin settles with a label and a reason (a browser: POST-redirect-GET)
    done = root.post(f"/recheck/doubts/{doubt['key']}/settle", data={"csrf": token, "label": new_label, "reason": "the customer asked for her money back"},
                     headers={"sec-fetch-mode": "navigate"})
    assert done.status_code == 303 and done.headers["location"].startswith("/recheck/doubts")
    assert "settled" in root.get(done.headers["location"]).text
    # THEN who and why are in the settled file, the relabel drop and the audit log
    settled = read_jsonl(workspace.path("review", "recheck.settled.jsonl"))
    assert [(s["key"], s["label"], s["by"], s["reason"]) for s in settled] == [(doubt["key"], new_label, "root", "admin: the customer asked for her money back")]
    drop = [p for p in workspace.annotation_files() if "-recheck-" in p.name]
    assert len(drop) == 1 and read_jsonl(drop[0])[0]["label"] == new_label and "root" in read_jsonl(drop[0])[0]["settled_by"]
    audit = [json.loads(line) for line in (workspace.root / "console" / "audit.jsonl").read_text().splitlines()]
    mine = [row for row in audit if row["action"] == "recheck_settled_by_admin"]
    assert mine == [mine[0]] and (mine[0]["user"], mine[0]["label"], mine[0]["previous_label"], mine[0]["reason"]) == (
        "root", new_label, doubt["label"], "the customer asked for her money back")
    assert doubt["text"] not in (workspace.root / "console" / "audit.jsonl").read_text()  # no request text in the audit log
    # AND settling it again is refused: it is no longer open
    again = root.post(f"/recheck/doubts/{doubt['key']}/settle", data={"csrf": token, "label": new_label, "reason": "twice"})
    assert again.status_code == 409


def test_on_aws_the_recheck_desk_says_it_is_not_available():
    from sav_router.console.sources import RECHECK_ON_AWS, AwsSource

    source = AwsSource.__new__(AwsSource)
    source.desks = {}
    assert not source.can("settle") and "not available on AWS" in RECHECK_ON_AWS
    with pytest.raises(Exception, match="not available on AWS"):
        source.settle_rechecks(by="root")


# -- the browser -----------------------------------------------------------------
@pytest.fixture(scope="module")
def recheck_server(tmp_path_factory, tiny_bundle, tiny_base_model, toy_annotations):
    root = tmp_path_factory.mktemp("recheck")
    workspace, doubts = doubted_workspace(root, tiny_bundle, tiny_base_model, toy_annotations)
    add_users(workspace.root)
    server = ConsoleServer(["--workspace", str(workspace.root)], env=server_env(), log_path=root / "console.log").start()
    yield {"workspace": workspace, "doubts": doubts, "server": server}
    server.stop()


def login(browser, server, name, *, start):
    return helpers.login(browser, server, name, start=start, bypass_csp=True)


def without_label_lists(page) -> str:
    """The page's HTML but the blind list of every label (the choices and the searchable list, the same on every re-check), the
    request's own words and the notice naming the reviewer's previous answer."""
    return page.evaluate("""() => { const copy = document.documentElement.cloneNode(true);
        copy.querySelectorAll('.choices, #all-labels, #request-text, .notice').forEach(e => e.remove()); return copy.outerHTML; }""")


@pytest.mark.browser
def test_the_recheck_desk_in_the_browser_blind_then_settled_from_the_page(browser, recheck_server):
    from tests.console.test_console_day import axe

    server, workspace, doubts = recheck_server["server"], recheck_server["workspace"], recheck_server["doubts"]
    by_text = {d["text"]: d for d in doubts}
    found = {}
    # GIVEN a reviewer on the Re-check desk
    context, ana = login(browser, server, "ana", start=DESK)
    try:
        assert ana.locator("nav a[aria-current=page]").inner_text() == "Re-check"
        first_labels = None
        for _ in doubts:
            text = ana.locator("#request-text").inner_text()
            doubt = by_text[text]
            # THEN it is a re-check of an earlier annotation, shown blind: not an audit sample, no score, no suggestion order
            why = ana.locator(".why").inner_text().lower()
            assert "re-check of an earlier annotation" in why and "blind" in why and "audit sample" not in why
            assert ana.locator(".choice meter, .score").count() == 0
            labels = ana.locator(".choice .label").all_inner_texts()
            assert labels[:-1] == sorted(labels[:-1])  # alphabetical, out of scope last
            first_labels = first_labels or labels
            assert labels == first_labels  # the same numbers on every re-check
            # AND the earlier label (and the suspected one) is nowhere on the page but in that fixed list
            rest = without_label_lists(ana)
            assert not re.search(rf"\b{re.escape(doubt['label'])}\b", rest), doubt["label"]
            assert not re.search(rf"\b{re.escape(doubt['suspected_label'])}\b", rest)
            if "desk" not in found:
                found["desk"] = axe(ana)
            # WHEN ana answers with the key of another label than the earlier one
            answer = other_label(doubt, 1)
            press(ana, str(first_labels.index(answer) + 1))
            assert f"“{answer}”" in ana.locator(".notice").inner_text()
        assert "Nothing waiting for you" in ana.content()
        # AND a reviewer has no settle button and no admin page
        assert ana.locator("button:has-text('Settle answered re-checks')").count() == 0
    finally:
        context.close()
    answers = [row for path in (workspace.path("review", "recheck")).glob("answers-*.jsonl") for row in read_jsonl(path)]
    assert len(answers) == 3 and {row["reviewer"] for row in answers} == {"ana"} and all(row["source"] == "recheck" for row in answers)
    assert not [p for p in workspace.annotation_files() if "-recheck-" in p.name]  # one answer changes no annotation

    # WHEN an admin settles from the page: third opinions are queued (the answers disagreed with the annotations)
    context, root = login(browser, server, "root", start=DESK)
    try:
        button = root.locator("button:has-text('Settle answered re-checks')")
        with root.expect_navigation():
            button.click()
        assert "3 third opinion queued" in root.locator(".notice").inner_text()
        assert "/queue/recheck" in root.url
        # THEN the third opinions are on the desk, blind again; root answers them like ana: two against the annotation
        for _ in doubts:
            doubt = by_text[root.locator("#request-text").inner_text()]
            labels = root.locator(".choice .label").all_inner_texts()
            press(root, str(labels.index(other_label(doubt, 1)) + 1))
        with root.expect_navigation():
            root.locator("button:has-text('Settle answered re-checks')").click()
        assert "3 relabelled" in root.locator(".notice").inner_text()
        root.goto(server.url + "/recheck/doubts")
        assert "No doubt needs an admin now" in root.content()
        found["admin page"] = axe(root)
    finally:
        context.close()
    drop = [p for p in workspace.annotation_files() if "-recheck-" in p.name]
    assert len(drop) == 1
    rows = read_jsonl(drop[0])
    assert {(row["id"], row["label"]) for row in rows} == {(d["id"], other_label(d, 1)) for d in doubts}
    assert all(row["settled_by"] == ["ana", "root", "root"] for row in rows)
    audit = [json.loads(line) for line in (workspace.root / "console" / "audit.jsonl").read_text().splitlines()]
    assert [row.get("relabelled") for row in audit if row["action"] == "recheck_settle"] == [None, 3]
    assert {path: v for path, v in found.items() if v} == {}


# -- the dashboard: label doubts and novelty tests -------------------------------
def test_the_dashboard_shows_label_doubts_and_what_each_novelty_test_flagged(tmp_path, tiny_bundle):
    import shutil

    from sav_router.data.annotations import Record
    from sav_router.loop.observer import route_stream
    from sav_router.loop.workspace import Workspace
    from sav_router.model.ood import fired_tests
    from sav_router.model.router import Router
    from sav_router.monitoring.traffic import traffic_rows
    from tests.conftest import make_texts

    # GIVEN a model whose manifest estimates its calibrate rows at 4 % wrong (half a 0.95 promise's budget is 2.5 %)
    copy = tmp_path / "model"
    shutil.copytree(tiny_bundle, copy)
    manifest = json.loads((copy / "router.json").read_text())
    manifest["calibration"]["label_doubts"] = {"rows": 100, "doubts": 4, "rate": 0.04, "interval": [0.011, 0.099], "confidence": 0.95}
    (copy / "router.json").write_text(json.dumps(manifest))
    workspace = Workspace(tmp_path / "ws").ensure()
    version = workspace.register(copy)
    workspace.promote(version)
    # AND logged traffic, off-topic requests among it
    texts = [t for label in ("delivery", "refund") for t in make_texts(label, 5, seed=3)] + ["weather football recipe poem", "poem recipe weather"]
    decisions = list(route_stream([Record(text=t, label=None, id=f"t{i}") for i, t in enumerate(texts)], Router.load(workspace.production_dir()),
                                  workspace=workspace, audit_share=0.0, seed=3))
    report = json.loads(workspace.path("models", version, "check_report", "report.json").read_text())
    app = make_app(workspace.root)
    web, _ = http_login(app, "ana")
    page = web.get("/dashboard").text
    # THEN both rates are shown with their intervals, the calibrate rows flagged as reaching half the error budget
    assert "Label doubts" in page and "calibrate rows (the model" in page and "[1.1%, 9.9%]" in page
    assert "reaches half the promise" in page and "2.5%" in page
    check = report["label_doubts"]
    assert f"{check['doubts']} of {check['rows']}" in page and f"[{100 * check['interval'][0]:.1f}%, {100 * check['interval'][1]:.1f}%]" in page
    # AND each novelty test with its words, and what it flagged in the report and in the logged traffic
    assert "Novelty tests" in page
    params, threshold = manifest["ood"]["params"], manifest["policy"]["ood_threshold"]
    rows = list(traffic_rows(workspace.root))
    assert len(rows) == len(decisions) == len(texts)
    logged = {}
    for row in rows:
        for test in fired_tests(row["production"]["ood_score"], params, threshold):
            logged[test] = logged.get(test, 0) + 1
    words = {"distance": "far from every training request", "out_of_scope_neighbours": "near requests answered out of scope",
             "distance_plus_votes": "a bundle trained before the two tests"}
    tests = {*report.get("novelty_tests", {}), *logged}
    assert tests, "the tiny bundle has a novelty detector"
    for test in tests:
        assert words[test] in page, test
        cells = re.search(rf"\({test}\)</span></td>\s*<td>(.*?)</td>\s*<td>(\d+) \(", page, re.S)
        assert cells and int(cells.group(2)) == logged.get(test, 0), test
        flagged = report.get("novelty_tests", {}).get(test)
        assert cells.group(1).startswith(str(flagged["flagged"]) if flagged else "–")
    assert f"the {len(rows)} logged requests of {version}" in page


def test_the_dashboard_has_words_for_every_novelty_test():
    from sav_router.console.pages import NOVELTY_TESTS
    from sav_router.model.ood import COMBINED, DISTANCE, NEIGHBOURS

    assert set(NOVELTY_TESTS) == {DISTANCE, NEIGHBOURS, COMBINED}
    assert NOVELTY_TESTS[DISTANCE] == "far from every training request" and NOVELTY_TESTS[NEIGHBOURS] == "near requests answered out of scope"
