"""What the browser tests share: the playwright API (skipped, or failed in CI, when it is missing),
waiting for the app to go idle, opening a page from the sidebar, and screenshots."""

from __future__ import annotations

import time

from tests.helpers.machine import REPO, missing

SCREENSHOTS = REPO / "test-output" / "screenshots"
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"

try:
    import playwright.sync_api as playwright_api
except ImportError:  # pragma: no cover - depends on the machine
    missing("the playwright Python package is not installed (pip install -r requirements-dev.txt)")


def wait_idle(tab: object, timeout_ms: int = 30_000) -> None:
    """Wait until the script is idle twice in a row: st.rerun passes through a short idle moment."""
    deadline = time.monotonic() + timeout_ms / 1000
    tab.wait_for_timeout(300)  # let a click's rerun begin before waiting for it to end
    while True:
        tab.locator(IDLE).wait_for(timeout=max(1, (deadline - time.monotonic()) * 1000))
        tab.wait_for_timeout(600)
        if tab.locator(IDLE).count() and time.monotonic() < deadline:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"the app kept running for {timeout_ms} ms")


def screenshot(tab: object, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def open_page(tab: object, title: str) -> None:
    tab.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()
    wait_idle(tab)
    playwright_api.expect(tab.get_by_role("heading", name=title, exact=True).first).to_be_visible()
