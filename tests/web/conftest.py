"""A real browser (Debian's Chromium driven by Playwright) for the pages the web server serves
(the `web_server` fixture in tests/conftest.py)."""

import os

import pytest
from django.conf import settings
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


@pytest.fixture(scope="module")
def browser():
    """Chromium for one test module. Playwright's synchronous API keeps an event loop in this thread
    while it runs, and Django refuses synchronous database calls beside a running loop: the tests'
    own calls are allowed for the module (the database flush after each test included), and the
    loop ends with it. Processes the tests start do not inherit this (tests.conftest.child_environment)."""
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def page(browser, request):
    """A fresh browser context per test (no shared cookies), laptop-sized."""
    context = browser.new_context(viewport={"width": 1366, "height": 860}, locale="en-US")
    page = context.new_page()
    yield page
    context.close()


def screenshot(page, name: str) -> None:
    """Screenshots for people to look at (not compared): var/screenshots/NAME.png."""
    folder = settings.BASE_DIR / "var" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=folder / f"{name}.png", full_page=True)
