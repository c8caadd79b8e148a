"""Screenshots of the console for the README, on a copy of the quickstart's workspace (not a test).

    python docs/console_demo.py --workspace sav-router-quickstart [--candidate MODEL_DIR] [--output docs/images]

It copies the workspace (the original is left as it is), adds two users,
starts `sav-router console` on it, and in system Chromium: a reviewer works
the whole review queue answering with the sample stream's true labels (out
of scope for the off-topic ones), then an admin reads the dashboard, compares
the candidate with production and promotes it. Each page is saved as a PNG
(256 colours, so each stays small).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sav_router.console.users import UsersFile  # noqa: E402
from sav_router.core.labels import OUT_OF_SCOPE  # noqa: E402
from sav_router.loop.quickstart import sample_path  # noqa: E402
from sav_router.loop.workspace import Workspace  # noqa: E402

USERS = {"sam": ("reviewer", "sam-demo-password"), "lea": ("admin", "lea-demo-password")}


def save(page, output: Path, name: str, *, full_page: bool = False) -> None:
    from PIL import Image

    path = output / f"console-{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    image = Image.open(path).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    image.save(path, optimize=True)
    print(f"{path} {path.stat().st_size // 1024} KB")


PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}


def login(browser, url: str, name: str, start: str, *, phone: bool = False):
    context = browser.new_context(**PHONE) if phone else browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(600_000)  # comparing two real models takes a while on a busy machine
    page.goto(url + start)
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", USERS[name][1])
    with page.expect_navigation():
        page.click("button[type=submit]")
    return context, page


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default="sav-router-quickstart")
    parser.add_argument("--candidate", help="a second trained bundle, registered and compared with production")
    parser.add_argument("--output", default=str(REPO / "docs" / "images"))
    parser.add_argument("--port", type=int, default=8071)
    args = parser.parse_args()
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="console-demo-")) / "ws"
    shutil.copytree(args.workspace, root, ignore=shutil.ignore_patterns("console"))
    workspace = Workspace(root)
    candidate = workspace.register(args.candidate) if args.candidate else None
    users = UsersFile(root / "console" / "users.json")
    for name, (role, password) in USERS.items():
        users.add(name, role, password)
    gold = {json.loads(line)["id"]: json.loads(line)["label"] for line in sample_path("requests.jsonl").read_text().splitlines()}
    url = f"http://127.0.0.1:{args.port}"
    server = subprocess.Popen([sys.executable, "-m", "sav_router.cli", "console", "--workspace", str(root), "--port", str(args.port)], cwd=REPO, stdin=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/login", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"])
            context, page = login(browser, url, "sam", "/queue/escalations", phone=True)  # a reviewer on a phone (390 px)
            save(page, output, "queue-phone")
            context.close()
            context, page = login(browser, url, "sam", "/queue/escalations")
            labels = set(workspace_labels(workspace))
            saved_escalation = saved_audit = False
            while page.locator("article.item").count():
                item = page.locator("article.item").get_attribute("data-item")
                audit = page.locator("article.item.audit").count() > 0
                if not audit and not saved_escalation and page.locator(".why").inner_text().count("not confident"):
                    save(page, output, "queue")
                    saved_escalation = True
                if audit and not saved_audit:
                    save(page, output, "audit")
                    saved_audit = True
                label = gold.get(item)
                label = label if label in labels else OUT_OF_SCOPE
                with page.expect_navigation():
                    page.click(f"#answer-form button[value='{label}']")
            context.close()
            context, page = login(browser, url, "lea", "/dashboard")
            save(page, output, "dashboard")
            page.locator("text=Live precision from audit samples").scroll_into_view_if_needed()
            page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
            save(page, output, "dashboard-live")
            page.goto(url + "/dashboard")
            page.locator("figure:has-text('Confusion matrix')").screenshot(path=str(output / "console-confusion.png"))
            recompress(output / "console-confusion.png")
            if candidate:
                page.goto(url + f"/models/{candidate}")
                with page.expect_navigation():
                    page.click("button:has-text('Compare with production')")
                save(page, output, "comparison", full_page=True)
                page.fill("input[name=reason]", "demo: the candidate, compared on the reviewed sample stream")
                if page.locator(".verdict.fail").count():
                    page.check("input[name=force]")  # the gate said no: the demo overrides it, with its reason recorded
                with page.expect_navigation():
                    page.click("button:has-text('Promote')")
            page.goto(url + "/models")
            save(page, output, "models")
            context.close()
            context, page = login(browser, url, "lea", "/dashboard", phone=True)
            save(page, output, "dashboard-phone")
            page.goto(url + "/models")
            save(page, output, "models-phone")
            context.close()
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)
    print(f"demo workspace: {root}")
    return 0


def workspace_labels(workspace: Workspace) -> list[str]:
    from sav_router.core.bundle import read_manifest

    return list(read_manifest(workspace.production_dir()).labels)


def recompress(path: Path) -> None:
    from PIL import Image

    Image.open(path).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"{path} {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    sys.exit(main())
