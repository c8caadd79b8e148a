"""Issue 20 in a real browser: a reviewer's whole day, a phone, axe-core on every page, screenshots.

A workspace of its own (the module's server runs with --lease-seconds 4, so a
lease lapses within the test unless the page renews it), system Chromium
through Playwright, axe-core from node_modules (package.json).
"""

from __future__ import annotations

import json
import shutil
import pytest

from tests.conftest import REPO, make_texts
from tests.console.conftest import ITEMS, ConsoleServer, add_users, read_answers, server_env
from tests.console.helpers import current_id, login, press

pytestmark = pytest.mark.browser
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def day(tmp_path_factory, tiny_bundle):
    from sav_router.core.bundle import read_manifest
    from sav_router.core.jsonio import append_jsonl
    from sav_router.data.annotations import Record
    from sav_router.loop.observer import route_stream
    from sav_router.loop.workspace import Workspace
    from sav_router.model.router import Router

    root = tmp_path_factory.mktemp("day")
    workspace = Workspace(root / "ws").ensure()
    production = workspace.register(tiny_bundle)
    workspace.promote(production)
    # a recalibrate-like candidate: no check metrics, no check report (the 500)
    copy = root / "recal"
    shutil.copytree(tiny_bundle, copy)
    manifest = json.loads((copy / "router.json").read_text())
    manifest["model_version"] += "-recal"
    manifest["metrics"] = {k: v for k, v in (manifest.get("metrics") or {}).items() if k != "check"}
    (copy / "router.json").write_text(json.dumps(manifest))
    shutil.rmtree(copy / "check_report", ignore_errors=True)
    candidate = workspace.register(copy)
    version = read_manifest(tiny_bundle).model_version
    append_jsonl(workspace.path("review", "queue.jsonl"), [dict(item, model_version=version) for item in ITEMS])
    texts = [t for label in ("delivery", "refund", "warranty", "account") for t in make_texts(label, 6, seed=5)] + ["weather football recipe"]
    records = [Record(text=text, label=None, id=f"t{i}") for i, text in enumerate(texts)]
    list(route_stream(records, Router.load(workspace.production_dir()), workspace=workspace, audit_share=0.0, seed=3))
    (workspace.root / "console").mkdir(exist_ok=True)
    (workspace.root / "console" / "labels.json").write_text(json.dumps({"refund": "Money back for an order or a returned item", "delivery": "Where a parcel is, late or lost deliveries"}))
    add_users(workspace.root)
    server = ConsoleServer(["--workspace", str(workspace.root), "--lease-seconds", "4"], env=server_env(), log_path=root / "console.log").start()
    yield {"root": workspace.root, "workspace": workspace, "server": server, "production": production, "candidate": candidate}
    server.stop()


def axe(page) -> list[dict]:
    """Serious and critical axe-core violations on the page as it is now."""
    if not AXE.is_file():
        pytest.fail(f"{AXE} missing: `npm ci` installs axe-core (package.json devDependencies; `make test` runs it)")
    page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
    result = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations.map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))")
    return [v for v in result if v["impact"] in ("serious", "critical")]


def open_as(browser, server, name, *, start="/queue/escalations", phone=False):
    if not phone:
        context, page = login(browser, server, name, start=start)
        return context, page
    from tests.console.conftest import PASSWORDS

    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2, bypass_csp=True)
    page = context.new_page()
    page.goto(server.url + start)
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORDS[name])
    with page.expect_navigation():
        page.click("button[type=submit]")
    return context, page


def test_the_page_renews_its_lease_while_shown_and_not_when_hidden(browser, day):
    server = day["server"]
    context, ana = login(browser, server, "ana")
    other, bob = login(browser, server, "bob")
    try:
        mine = current_id(ana)
        renewals = []
        ana.on("request", lambda r: renewals.append(r.url) if r.url.endswith("/renew") else None)
        ana.wait_for_timeout(7000)  # the lease is 4 s: only the page's own renewals keep it
        assert len(renewals) >= 2
        bob.reload()
        assert current_id(bob) != mine  # still ana's
        press(ana, "1")
        assert "lease_lost" not in ana.url and "Answer saved" in ana.locator(".notice").inner_text()
        assert [row["id"] for row in read_answers(day["root"]) if row["id"] == mine] == [mine]
        # WHEN the page is hidden (another tab): no renewal
        ana.evaluate("Object.defineProperty(document, 'visibilityState', {get: () => 'hidden'}); document.dispatchEvent(new Event('visibilitychange'))")
        renewals.clear()
        ana.wait_for_timeout(4500)
        assert renewals == []
    finally:
        context.close()
        other.close()


def test_keys_notice_focus_search_and_undo_in_the_browser(browser, day):
    server = day["server"]
    context, ana = login(browser, server, "ana")
    try:
        first = current_id(ana)
        # the numbering is shown next to every choice, and the search says when nothing matches
        numbers = ana.locator(".choice kbd").all_inner_texts()
        assert numbers[: ana.locator(".choice[data-key]").count() - 1] == [str(i) for i in range(1, len(numbers))]
        ana.keyboard.press("/")
        ana.keyboard.type("zzzz")
        assert "No label matches" in ana.locator("#search-result").inner_text()
        ana.keyboard.press("Enter")  # nothing matches: nothing saved
        assert current_id(ana) == first
        ana.keyboard.press("Escape")
        label = ana.locator(".choice .label").first.inner_text()
        press(ana, "1")
        notice = ana.locator(".notice").inner_text()
        assert f"“{label}”" in notice and first in notice
        # focus on the new request: the answers are the next tab stops
        assert ana.evaluate("document.activeElement.id") == "request-text"
        ana.keyboard.press("Tab")
        assert ana.evaluate("document.activeElement.closest('#answer-form') !== null")
        second = current_id(ana)
        press(ana, "o")
        # undo twice: each request it takes back is shown in turn
        press(ana, "u")
        assert current_id(ana) == second and second in ana.locator(".notice").inner_text()
        press(ana, "u")
        assert current_id(ana) == first and first in ana.locator(".notice").inner_text()
        press(ana, "1")
        press(ana, "o")
    finally:
        context.close()


def test_a_skip_link_and_shortcuts_switched_off(browser, day):
    server = day["server"]
    context, bob = login(browser, server, "bob")
    try:
        bob.goto(server.url + "/dashboard")  # a page that moves no focus: the first Tab is the skip link
        bob.keyboard.press("Tab")
        assert bob.evaluate("document.activeElement.textContent").strip() == "Skip to the content"
        bob.keyboard.press("Enter")
        assert bob.evaluate("document.activeElement.id") == "main"
        bob.goto(server.url + "/queue/escalations")
        item = current_id(bob)
        bob.locator("#help summary").click()
        with bob.expect_navigation():
            bob.click("button:has-text('Switch single-key shortcuts off')")
        assert "shortcuts are off" in bob.locator(".notice").inner_text()
        bob.locator("#request-text").focus()
        bob.keyboard.press("1")
        bob.wait_for_timeout(500)
        assert current_id(bob) == item and not [r for r in read_answers(day["root"]) if r["id"] == item and r.get("reviewer") == "bob"]
        bob.locator("#help summary").click()
        with bob.expect_navigation():
            bob.click("button:has-text('Switch single-key shortcuts on')")
    finally:
        context.close()


def test_axe_finds_no_serious_violation_on_any_page(browser, day):
    server = day["server"]
    found = {}
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    page.goto(server.url + "/login")
    found["/login"] = axe(page)
    from tests.console.conftest import PASSWORDS

    page.fill("input[name=username]", "root")
    page.fill("input[name=password]", PASSWORDS["root"])
    with page.expect_navigation():
        page.click("button[type=submit]")
    paths = ["/queue/escalations", "/queue/batch", "/dashboard", "/models", f"/models/{day['candidate']}", f"/models/{day['production']}", "/models/no-such-version"]
    for path in paths:
        page.goto(server.url + path)
        found[path] = axe(page)
    # the blind audit sample's view, and an empty queue
    page.goto(server.url + "/queue/escalations")
    for _ in range(12):
        if page.locator("article.item.audit").count() or not page.locator("article.item").count():
            break
        press(page, "s")
    found["audit or empty"] = axe(page)
    context.close()
    assert {path: v for path, v in found.items() if v} == {}


@pytest.mark.parametrize("path", ["/queue/escalations", "/dashboard", "/models"])
def test_a_phone_has_no_horizontal_scrolling(browser, day, path):
    context, page = open_as(browser, day["server"], "root", start=path, phone=True)
    try:
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], path
        if path == "/queue/escalations" and page.locator("article.item").count():
            box = page.locator("button[data-key='s']").bounding_box()
            assert box["y"] + box["height"] <= PHONE["height"] * 1.6  # skip and undo near the top, not 1,300 px down
    finally:
        context.close()


def test_screenshots_at_desktop_and_phone_size(browser, day, screenshots):
    IMAGES = screenshots  # runs/console-screenshots/; docs/images/ comes from docs/console_demo.py
    server = day["server"]
    context, page = login(browser, server, "root")
    try:
        page.screenshot(path=str(IMAGES / "console-queue.png"))
        page.goto(server.url + "/dashboard")
        page.screenshot(path=str(IMAGES / "console-dashboard.png"), full_page=True)
        page.goto(server.url + "/models")
        page.screenshot(path=str(IMAGES / "console-models.png"))
    finally:
        context.close()
    context, phone = open_as(browser, server, "ana", phone=True)
    try:
        phone.screenshot(path=str(IMAGES / "console-queue-phone.png"))
        phone.goto(server.url + "/dashboard")
        phone.screenshot(path=str(IMAGES / "console-dashboard-phone.png"))
        phone.goto(server.url + "/models")
        phone.screenshot(path=str(IMAGES / "console-models-phone.png"))
    finally:
        context.close()
    for name in ("console-queue", "console-dashboard", "console-models", "console-queue-phone", "console-dashboard-phone", "console-models-phone"):
        assert (IMAGES / f"{name}.png").stat().st_size > 10_000


def test_an_empty_queue_notices_new_work(browser, day):
    from sav_router.core.jsonio import append_jsonl

    server = day["server"]
    context, ana = login(browser, server, "ana", start="/queue/batch")
    try:
        ana.clock.install()  # the page's timers, fast-forwarded: no 20 s wait
        ana.reload()
        assert "Nothing waiting for you" in ana.content() and not ana.locator("article.item").count()
        batch = dict(ITEMS[0], id="b-new", text="a new request for the batch", model_version=day["production"])
        append_jsonl(day["root"] / "review" / "batch.jsonl", [batch])
        with ana.expect_navigation():
            ana.clock.run_for(21_000)
        assert current_id(ana) == "b-new"
        # hidden: no polling
        press(ana, "s")
        requests = []
        ana.on("request", lambda r: requests.append(r.url) if r.url.endswith("/status") else None)
        ana.evaluate("Object.defineProperty(document, 'visibilityState', {get: () => 'hidden'}); document.dispatchEvent(new Event('visibilitychange'))")
        ana.clock.run_for(65_000)
        ana.wait_for_timeout(300)
        assert requests == []
    finally:
        context.close()
