"""End to end in Debian's Chromium: every page opens offline, the chain is drawn and clickable."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError

from browser import CHROMIUM, app_server, browser_page, chain_canvas_ink, wait_for_app
from convlens.ui.navigation import PAGES

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"

pytestmark = pytest.mark.browser

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError("Chromium is missing: the README's test command installs it")
    pytest.skip(
        "Chromium is not installed (the README's test command installs it)", allow_module_level=True
    )

FIND_COLOUR = """([canvas, rgb]) => {
    const context = canvas.getContext('2d');
    const { width, height } = canvas;
    if (!width || !height) return null;  // a chain being redrawn
    const pixels = context.getImageData(0, 0, width, height).data;
    const scale = canvas.getBoundingClientRect().width / width;
    for (let y = 0; y < height; y += 2) {
        for (let x = 0; x < width; x += 2) {
            const i = (y * width + x) * 4;
            if (Math.abs(pixels[i] - rgb[0]) < 6 && Math.abs(pixels[i + 1] - rgb[1]) < 6
                && Math.abs(pixels[i + 2] - rgb[2]) < 6) {
                return [x * scale, y * scale];
            }
        }
    }
    return null;
}"""


def click_colour(page, rgb: tuple[int, int, int]) -> None:
    frame = page.frame_locator('iframe[title="streamlit_agraph.agraph"]')
    canvas = frame.locator("canvas").first
    point = canvas.evaluate(f"(canvas) => ({FIND_COLOUR})([canvas, {list(rgb)}])")
    assert point is not None, f"no node of colour {rgb} on the chain"
    canvas.click(position={"x": point[0] + 3, "y": point[1] + 3})


def test_every_page_offline_with_chain_drawn_and_clickable() -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with app_server(launcher="convlens") as url, browser_page() as (page, log):
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


def test_bookmarked_link_reopens_the_same_view() -> None:
    with app_server() as url, browser_page() as (page, log):
        page.goto(
            f"{url}/network?model=alexnet&image=sample%3Acoffee&layer=features.3", timeout=120_000
        )
        wait_for_app(page)
        page.wait_for_function(
            "() => document.body.innerText.includes('features.3')", timeout=60_000
        )
        text = page.inner_text("body")
        assert "Receptive field" in text
        assert "untrained" in text.lower()
        assert chain_canvas_ink(page) > 500
        page.screenshot(path=str(SCREENSHOTS / "bookmark-alexnet.png"), full_page=True)
    assert log.outside_requests == []
