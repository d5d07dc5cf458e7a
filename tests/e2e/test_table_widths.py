"""At 1280 px, no results table overflows its container (issue 24: the leaderboard's Val Dice column
and the compression trade-off table were cut off at the right edge).

A real dashboard (`python -m app.serve`) over a workspace holding a tiny tuned study with one
compressed variant; Debian's chromium at a 1280 x 900 window opens the result pages and measures
every table against the column that holds it and against the page. The trade-off table's default
columns fit without scrolling; the leaderboard (as many columns as the user picks) scrolls inside
its frame, with the scores first: the Val Dice column is drawn whole. Screenshots land in
test-output/screenshots/ (table-widths-*.png).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.browser import SCREENSHOTS, open_page, playwright_api, wait_idle
from tests.helpers.dashboard import running_dashboard
from tests.helpers.machine import CHROMIUM, require_chromium
from tests.helpers.studies import module_workspace, tiny_study

pytestmark = pytest.mark.e2e

STUDY = "widths"
WIDTH = 1280
# How far each table's right edge passes its own container's and the window's (px; 0 when inside).
OVERFLOW_JS = """
() => [...document.querySelectorAll("[data-testid='stDataFrame']")].map(table => {
    const box = table.getBoundingClientRect();
    const holder = table.closest("[data-testid='stVerticalBlock']") || table.parentElement;
    const room = holder.getBoundingClientRect();
    const main = document.querySelector("[data-testid='stMain']").getBoundingClientRect();
    return {
        over_container: Math.max(0, box.right - room.right),
        over_window: Math.max(0, box.right - Math.min(window.innerWidth, main.right)),
        page_scrolls: document.documentElement.scrollWidth > document.documentElement.clientWidth,
        content_fits: (() => {
            const s = table.querySelector(".dvn-scroller");
            return !s || s.scrollWidth <= s.clientWidth + 1;
        })(),
        // the grid's accessible header row lists the columns it draws, the last maybe cut at the edge
        headers: [...table.querySelectorAll("th")].map(header => header.textContent),
    };
})
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from core.deploy.compression.config import CompressionConfig
    from core.deploy.compression.run import compress_trial, study_compression_data
    from core.runtime.storage import open_artifact_store, open_storage
    from core.runtime.tuning import load_study

    require_chromium()
    folder = tmp_path_factory.mktemp("widths-home")
    with module_workspace(folder) as settings:
        tiny_study(settings, STUDY, trials=2, lr={"low": 1e-3, "high": 1e-2, "log": True})
        study, spec = load_study(STUDY, open_storage(settings.db_url))
        config = CompressionConfig("prune", sparsity=0.5, finetune_steps=1, batch_size=8)
        compress_trial(
            study,
            study.best_trial.number,
            config,
            study_compression_data(spec, settings),
            open_artifact_store(settings),
        )
    yield folder


def overflows(tab: object) -> list[dict]:
    return tab.evaluate(OVERFLOW_JS)


def test_no_results_table_overflows_at_1280_px(home: Path) -> None:
    with running_dashboard(home) as dashboard, playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        tab = browser.new_context(viewport={"width": WIDTH, "height": 900}).new_page()
        tab.set_default_timeout(30_000)
        tab.goto(dashboard.url)
        wait_idle(tab)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        measured: dict[str, list[dict]] = {}
        for title in ("Leaderboard", "Compress & deploy"):
            open_page(tab, title)
            playwright_api.expect(tab.get_by_test_id("stDataFrame").first).to_be_visible()
            tab.wait_for_timeout(1000)  # the grid sizes its columns after it is drawn
            tab.screenshot(path=str(SCREENSHOTS / f"table-widths-{title.split()[0].lower()}.png"), full_page=True)
            measured[title] = overflows(tab)
        browser.close()
    for title, tables in measured.items():
        assert tables, f"{title}: no table drawn"
        for number, table in enumerate(tables):
            assert table["over_container"] <= 1 and table["over_window"] <= 1 and not table["page_scrolls"], (
                title,
                number,
                table,
            )
    assert "Val Dice" in measured["Leaderboard"][0]["headers"][:-1], measured["Leaderboard"][0]["headers"]
    assert measured["Compress & deploy"][0]["content_fits"], measured["Compress & deploy"][
        0
    ]  # the trade-off table, whole
