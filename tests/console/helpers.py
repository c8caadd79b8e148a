"""Browser steps shared by the local and the AWS console tests."""

from __future__ import annotations

from tests.console.conftest import PASSWORDS


def login(browser, server, name: str, *, start: str = "/queue/escalations", bypass_csp: bool = False):
    """Signed in at `start` (bypass_csp: so that axe-core can be injected)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=bypass_csp)
    page = context.new_page()
    page.goto(server.url + start)
    assert "/login" in page.url  # GIVEN nobody logged in THEN the login page, not the queue
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORDS[name])
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert start in page.url
    return context, page


def current_id(page) -> str | None:
    article = page.locator("article.item")
    return article.get_attribute("data-item") if article.count() else None


def press(page, key: str) -> None:
    """A key that submits a form: wait for the page it leads to."""
    with page.expect_navigation():
        page.keyboard.press(key)


def csrf_of(page) -> str:
    return page.locator("input[name=csrf]").first.get_attribute("value")


def shot(page, screenshots, name: str, *, full_page: bool = False) -> None:
    page.screenshot(path=str(screenshots / f"{name}.png"), full_page=full_page)
