"""Playwright driving Debian's chromium against pytest-django's live server.

One browser for the browser tests (this package); a context per user and viewport.
Screenshots go to artifacts/browser/. `make test` installs chromium (the `chromium`
target).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.adminutil import PASSWORD

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "browser"
WIDE = {"width": 1280, "height": 900}
NARROW = {"width": 390, "height": 844}


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/browser/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="package")
def browser(django_db_setup, django_db_blocker):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, which Django
    # takes for an async context. The ORM calls here are plain sync test code, so
    # allow them while the browser lives, and only then: during this package's tests
    # (package scope; one chromium launch instead of one a module).
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=[
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                ],
            )
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class Session:
    """A logged-in user in a browser context of one viewport size."""

    def __init__(self, browser, base_url: str, viewport: dict, locale: str = "en-US"):
        self.base_url = base_url
        self.context = browser.new_context(viewport=viewport, locale=locale)
        self.context.set_default_timeout(15_000)
        # Anything a payload manages to run would call one of these: record, don't block.
        self.context.add_init_script(
            "window.__xss = [];"
            "for (const name of ['alert', 'confirm', 'prompt']) {"
            "  window[name] = (...args) => { window.__xss.push([name, ...args]); };"
            "}"
        )
        self.page = self.context.new_page()
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", self._dialog)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.console: list[str] = []
        self.page.on(
            "console", lambda message: self.console.append(f"{message.type}: {message.text}")
        )
        self.width = viewport["width"]

    def _dialog(self, dialog):
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def url(self, path: str) -> str:
        return self.base_url + path

    def goto(self, path: str):
        return self.page.goto(self.url(path))

    def login(self, username: str) -> Session:
        self.goto("/admin/login/")
        self.page.fill("#id_username", username)
        self.page.fill("#id_password", PASSWORD)
        self.page.click("input[type=submit]")
        self.page.wait_for_selector("#user-tools")
        return self

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}-{self.width}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self):
        self.context.close()


@pytest.fixture
def open_session(browser, live_server):
    sessions = []

    def open_(username: str | None = None, viewport: dict = WIDE, locale: str = "en-US"):
        session = Session(browser, live_server.url, viewport, locale)
        sessions.append(session)
        if username:
            session.login(username)
        return session

    yield open_
    for session in sessions:
        session.close()
