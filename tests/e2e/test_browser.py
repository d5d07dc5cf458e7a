"""A real browser against the dashboard (`python -m app.serve`): sign in; add data, start a tiny study, watch it, get
the model.

Needs Debian's chromium (`apt-get install -y chromium`) and the playwright Python package; never
`playwright install`. Screenshots of every page land in test-output/screenshots/ (look at them:
the pages must read like a product). Run with `python -m pytest -m e2e tests/e2e -q`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.browser import open_page, playwright_api, screenshot, wait_idle
from tests.helpers.dashboard import running_dashboard
from tests.helpers.machine import CHROMIUM, require_chromium, shared_path

pytestmark = pytest.mark.e2e

TINY_SPEC = {
    "name": "e2e-tiny",
    "dataset": "demo-cells",
    "image_size": 64,
    "budget": {"n_trials": 2, "max_epochs": 4},
    "sampler": "random",
    "pruner": "none",
    "preview_count": 4,
    "search_space": {
        "architecture": "ClassicUNet",
        "unet_start_filters": {"choices": [4, 8]},
        "unet_depth": 2,
        "epochs": 4,
        "batch_size": 8,
        "lr": 0.01,
        "loss": "dice_bce",
    },
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_chromium()
    home = tmp_path_factory.mktemp("segtune-e2e")
    try:
        with running_dashboard(home) as dashboard:  # python -m app.serve, as scripts/start.sh runs it
            yield dashboard.url
    finally:
        _stop_workers(home)


def _stop_workers(home: Path) -> None:
    # Workers are detached on purpose (they outlive the dashboard); end the ones this test started.
    from core.runtime.job_table import job_workers
    from core.settings import load_settings

    for worker in job_workers(load_settings({"SEGTUNE_HOME": str(home)})):
        if worker.host == socket.gethostname():
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGTERM)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    require_chromium()
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        playwright_api.expect.set_options(timeout=30_000)
        yield chromium
        chromium.close()


def new_tab(browser: object) -> object:
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    return tab


@pytest.fixture(scope="module")
def page(server: str, browser: object) -> Iterator[object]:
    tab = new_tab(browser)
    tab.goto(server)
    wait_idle(tab)
    yield tab
    tab.context.close()


def no_exceptions(tab: object) -> None:
    assert tab.get_by_test_id("stException").count() == 0, "a page showed a raw exception"


def brain_zip(folder: Path) -> Path:
    source = shared_path("brain_mri_lgg_mini")
    archive = folder / "brain_mri_lgg_mini.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                zipped.write(path, Path("brain_mri_lgg_mini") / path.relative_to(source))
    return archive


def test_study_from_browser(page: object, tmp_path: Path) -> None:
    expect = playwright_api.expect
    tab = page

    # Datasets: the empty state offers the demo; then upload a real zip.
    expect(tab.get_by_text("No datasets yet")).to_be_visible()
    tab.get_by_role("button", name="Create demo dataset").first.click()
    wait_idle(tab, 60_000)
    expect(tab.get_by_test_id("stMetric").filter(has_text="Image/mask pairs").first).to_contain_text("60")
    expect(tab.get_by_test_id("stImage").first).to_be_visible()
    screenshot(tab, "01-datasets-demo")

    tab.get_by_test_id("stExpander").filter(has_text="Add a dataset").locator("summary").click()
    tab.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(str(brain_zip(tmp_path)))
    wait_idle(tab)
    tab.get_by_role("button", name="Add dataset").first.click()
    wait_idle(tab, 60_000)
    expect(tab.get_by_text("Added brain_mri_lgg_mini: 22 image/mask pairs")).to_be_visible()
    no_exceptions(tab)
    screenshot(tab, "02-datasets-uploaded")

    # New study: import the tiny spec, check it validates, start it.
    open_page(tab, "New study")
    spec_file = tmp_path / "e2e-tiny.json"
    spec_file.write_text(json.dumps(TINY_SPEC), encoding="utf-8")
    tab.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(str(spec_file))
    wait_idle(tab)
    expect(tab.get_by_text("Imported e2e-tiny.json")).to_be_visible()
    expect(tab.get_by_role("button", name="Start tuning")).to_be_enabled()
    no_exceptions(tab)
    screenshot(tab, "03-new-study")
    tab.get_by_role("button", name="Start tuning").click()

    # Jobs: the page follows the job live until both trials are done.
    wait_idle(tab, 60_000)
    expect(tab.get_by_role("heading", name="Jobs", exact=True).first).to_be_visible()
    expect(tab.get_by_text("Job #1 · e2e-tiny")).to_be_visible()
    screenshot(tab, "04-jobs-running")
    expect(tab.get_by_test_id("stMetric").filter(has_text="Status").first).to_contain_text("Finished", timeout=180_000)
    expect(tab.get_by_test_id("stMetric").filter(has_text="Trials done").first).to_contain_text("2 / 2")
    no_exceptions(tab)
    screenshot(tab, "05-jobs-finished")

    # Results (part B's pages): the trials are listed, masks are drawn, the weights download and load.
    open_page(tab, "Leaderboard")
    expect(tab.get_by_test_id("stDataFrame").first).to_be_visible()
    no_exceptions(tab)
    screenshot(tab, "06-leaderboard")
    open_page(tab, "Compare masks")
    expect(tab.get_by_test_id("stImage").first).to_be_visible()
    no_exceptions(tab)
    screenshot(tab, "07-compare-masks")
    for title, name in (("Learning curves", "08-learning-curves"), ("Insights", "09-insights")):
        open_page(tab, title)
        no_exceptions(tab)
        screenshot(tab, name)
    open_page(tab, "Export")
    no_exceptions(tab)
    screenshot(tab, "10-export")
    with tab.expect_download() as download_info:
        tab.get_by_role("button", name="Download model bundle (.zip)").click()
    bundle = tmp_path / "bundle.zip"
    download_info.value.save_as(bundle)
    check_bundle_loads(bundle, tmp_path / "bundle")


def check_bundle_loads(archive: Path, folder: Path) -> None:
    """The downloaded bundle rebuilds the trained model, which segments an image at its input size."""
    import torch

    from core.modeling.bundle import load_bundle

    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(folder)
    bundle = next(folder.rglob("model.safetensors")).parent
    model, config = load_bundle(bundle)
    with torch.no_grad():
        logits = model(torch.rand(2, config.channels, config.image_size, config.image_size))
    assert logits.shape[0] == 2 and logits.shape[-2:] == (config.image_size, config.image_size)
    assert torch.isfinite(logits).all() and logits.std() > 0  # trained weights, not an empty shell


def test_sign_in_and_out(browser: object, tmp_path: Path) -> None:
    """With a password, the browser lands on the login page, gets in with the right password (the
    app's websocket then opens with the session cookie) and is back at the login page after signing out."""
    expect = playwright_api.expect
    with running_dashboard(tmp_path / "home", SEGTUNE_PASSWORD="e2e passphrase") as dashboard:
        tab = new_tab(browser)
        tab.goto(f"{dashboard.url}/jobs")
        expect(tab.get_by_role("heading", name="SegTune")).to_be_visible()
        assert "/login?next=/jobs" in tab.url
        tab.get_by_label("Password").fill("wrong")
        tab.get_by_role("button", name="Sign in").click()
        expect(tab.get_by_role("alert")).to_have_text("Wrong password.")
        screenshot(tab, "00-login")
        tab.get_by_label("Password").fill("e2e passphrase")
        tab.get_by_role("button", name="Sign in").click()
        wait_idle(tab)
        expect(tab.get_by_role("heading", name="Jobs", exact=True).first).to_be_visible()
        no_exceptions(tab)
        tab.get_by_test_id("stSidebar").get_by_role("link", name="Sign out").click()
        expect(tab.get_by_role("button", name="Sign in")).to_be_visible()
        tab.goto(dashboard.url)
        assert "/login" in tab.url
        tab.context.close()
