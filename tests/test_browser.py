"""End to end in Debian's Chromium: every page opens offline, the chain is drawn and clickable."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Error as PlaywrightError

from browser import (
    app_server,
    browser_page,
    chain_canvas_ink,
    click_colour,
    require_chromium,
    wait_for_app,
)
from convlens.style import FILTER_GRID_TILE
from convlens.ui.navigation import PAGES

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"

pytestmark = pytest.mark.browser

require_chromium()


def click_tile(page, label: str) -> None:
    """Click the tile labelled `label` (its filter's number) in the Filters page's grid, a chart
    whose every tile is a button: the click lands in the tile, below and right of its label."""
    grid = page.locator('[data-testid="stVegaLiteChart"]').filter(has=page.locator(".mark-text"))
    number = grid.locator(".mark-text text").filter(has_text=re.compile(f"^{label}$"))
    number.wait_for(timeout=60_000)
    number.scroll_into_view_if_needed()
    box = number.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + FILTER_GRID_TILE / 2, box["y"] + FILTER_GRID_TILE / 2)


def test_every_page_offline_with_chain_drawn_and_clickable() -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with app_server(launcher="convlens") as url, browser_page() as (page, log):
        pictures = []  # the media store's answers: (status, Cache-Control)
        page.on(
            "response",
            lambda response: (
                pictures.append((response.status, response.headers.get("cache-control")))
                if urlparse(response.url).path.startswith("/media/")
                else None
            ),
        )
        page.goto(url, timeout=120_000)
        wait_for_app(page)
        page.wait_for_selector('[data-testid="stPageLink"]', timeout=30_000)
        time.sleep(1)
        page.screenshot(path=str(SCREENSHOTS / "home.png"), full_page=True)
        for spec in PAGES[1:]:
            page.locator('[data-testid="stSidebarNav"] a', has_text=spec.title).click()
            page.wait_for_url(f"**/{spec.url_path}*", timeout=60_000)
            wait_for_app(page)
            if spec.url_path == "network":
                assert chain_canvas_ink(page) > 500, "the chain canvas is drawn on"
            page.screenshot(path=str(SCREENSHOTS / f"{spec.url_path}.png"), full_page=True)

        page.locator('[data-testid="stSidebarNav"] a', has_text="Network").click()
        page.wait_for_url("**/network*", timeout=60_000)
        wait_for_app(page)
        assert chain_canvas_ink(page) > 500
        # Back on Network, the chain's frame takes its script and style from the browser's cache
        # (`convlens.ui.http_cache`): nothing of them crosses the room's network again.
        chain_frame = page.frame(url=lambda address: "streamlit_agraph" in address)
        fetched = chain_frame.evaluate(
            """() => performance.getEntriesByType('resource')
                .filter((entry) => /\\.(js|css)$/.test(new URL(entry.name).pathname))
                .map((entry) => [entry.name, entry.transferSize])"""
        )
        assert fetched, "the chain's frame loads its script and style"
        assert all(size == 0 for _, size in fetched), f"fetched again: {fetched}"
        # EfficientNet-Lite0 starts with collapsed groups (yellow); a click expands one,
        # then a click on a convolution node (blue) shows its details beside the chain.
        click_colour(page, (0xF0, 0xE4, 0x42))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            wait_for_app(page)
            try:
                click_colour(page, (0x00, 0x72, 0xB2))
                break
            except (AssertionError, PlaywrightError):
                time.sleep(0.5)  # the chain is being redrawn after the expansion
        page.wait_for_function(
            "() => document.body.innerText.includes('Receptive field')", timeout=60_000
        )
        wait_for_app(page)
        page.wait_for_selector('[data-testid="stTable"]', timeout=30_000)
        time.sleep(1)
        assert "layer=" in page.url, "the selected layer is in the URL"
        page.screenshot(path=str(SCREENSHOTS / "network-details.png"), full_page=True)

    assert log.outside_requests == [], f"requests left 127.0.0.1: {log.outside_requests[:5]}"
    assert log.console_errors == [], f"console errors: {log.console_errors[:5]}"
    # the pages' pictures (the sidebar's image of the input, the chain's input) are named by
    # their content: browsers keep them a day, each student's own (`convlens.ui.http_cache`)
    assert pictures, "the pages show pictures of the media store"
    assert set(pictures) == {(200, "private, max-age=86400, immutable")}, pictures


def test_bookmarked_link_reopens_the_same_view() -> None:
    with app_server() as url, browser_page() as (page, log):
        page.goto(
            f"{url}/network?model=alexnet&image=sample%3Acoffee&layer=features.3", timeout=120_000
        )
        wait_for_app(page)
        # The layer's name shows in the chain before its details are drawn: wait for both.
        page.wait_for_function(
            "() => document.body.innerText.includes('features.3')"
            " && document.body.innerText.includes('Receptive field')",
            timeout=60_000,
        )
        text = page.inner_text("body")
        assert "Receptive field" in text
        assert "untrained" in text.lower()
        assert chain_canvas_ink(page) > 500
        page.screenshot(path=str(SCREENSHOTS / "bookmark-alexnet.png"), full_page=True)
    assert log.outside_requests == []


def test_annotating_a_filter_in_the_browser_reaches_the_cli(tmp_path: Path) -> None:
    """Open a layer of the shipped BaseCNN, click a filter, mark it useless: the CLI lists it."""
    import json
    import subprocess
    import sys

    home = tmp_path / "home"
    environment = {"CONVLENS_HOME": str(home), "CONVLENS_OFFLINE": "1"}
    with app_server(env=environment) as url, browser_page() as (page, log):
        page.goto(
            f"{url}/?model=fashion_basecnn&image=fashion-mnist%3Atest%3A0&layer=features.conv2_1",
            timeout=120_000,
        )
        wait_for_app(page)
        page.locator('[data-testid="stSidebarNav"] a', has_text="Filters").click()
        page.wait_for_url("**/filters*", timeout=60_000)
        wait_for_app(page)
        click_tile(page, "7")
        page.wait_for_function(
            "() => document.body.innerText.includes('features.conv2_1 · filter 7')", timeout=60_000
        )
        wait_for_app(page)
        assert "filter=7" in page.url, "the selected filter is in the URL"
        page.get_by_role("textbox", name="Your name").fill("ana")
        page.get_by_role("textbox", name="Your name").press("Enter")
        wait_for_app(page)
        page.locator('[data-testid="stForm"]').get_by_text("useless", exact=True).click()
        page.get_by_role("textbox", name="Note").fill("blank on most images")
        page.get_by_role("button", name="Save annotation").click()
        wait_for_app(page)
        page.screenshot(path=str(SCREENSHOTS / "filters-saving.png"), full_page=True)
        page.wait_for_function(
            "() => document.body.innerText.includes('Latest: useless by ana')", timeout=60_000
        )
        page.screenshot(path=str(SCREENSHOTS / "filters-annotated.png"), full_page=True)
    listed = subprocess.run(
        [sys.executable, "-m", "convlens", "annotations", "list", "--json"],
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        check=True,
    )
    rows = json.loads(listed.stdout)
    assert [
        (r["model"], r["layer"], r["filter"], r["label"], r["note"], r["author"]) for r in rows
    ] == [("fashion_basecnn", "features.conv2_1", 7, "useless", "blank on most images", "ana")]
    assert log.outside_requests == []
    assert log.console_errors == [], f"console errors: {log.console_errors[:5]}"


WORKING_BADGE = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (!app) return null;
    const badge = getComputedStyle(app, '::after');
    return [app.getAttribute('data-test-script-state'), badge.content, Number(badge.opacity)];
}"""


def test_a_slow_rerun_shows_that_the_app_is_working(tmp_path: Path) -> None:
    """The minimal toolbar hides Streamlit's running indicator: the app's own badge shows instead
    while a rerun takes longer than its half-second delay, and goes once the page is drawn. The
    slow rerun is the annotations' cost check over Fashion-MNIST's 10,000 test images (seconds on
    any machine; a guided back-propagation grid, the earlier choice, now finishes near the delay
    on a quiet machine)."""
    from convlens.annotations import DATABASE_NAME, AnnotationStore
    from convlens.models import load_model
    from convlens.weights import weights_fingerprint

    home = tmp_path / "home"
    environment = {"CONVLENS_HOME": str(home), "CONVLENS_OFFLINE": "1", "CONVLENS_PREPARE": "0"}
    fingerprint = weights_fingerprint(load_model("fashion_basecnn").module)
    AnnotationStore(home / DATABASE_NAME).set_annotation(
        "fashion_basecnn", fingerprint, "features.conv4_3", 2, "useless", "", "ana"
    )
    with app_server(environment) as url, browser_page(1280, 720) as (page, log):
        page.goto(f"{url}/annotations?model=fashion_basecnn", timeout=120_000)
        wait_for_app(page)
        page.get_by_text("filter marked useless").wait_for(timeout=60_000)
        assert page.evaluate(WORKING_BADGE)[1] == "none"
        page.get_by_role("button", name="Run the check").click()
        shown = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and shown is None:
            state = page.evaluate(WORKING_BADGE)
            if state and state[0] == "running" and state[1] == '"Working…"' and state[2] > 0.5:
                shown = state
            time.sleep(0.05)
        assert shown is not None, "no working badge during a slow rerun"
        page.screenshot(path=str(SCREENSHOTS / "working-badge.png"))
        page.get_by_text("Accuracy now").wait_for(timeout=120_000)
        wait_for_app(page)
        assert page.evaluate(WORKING_BADGE)[1] == "none"
