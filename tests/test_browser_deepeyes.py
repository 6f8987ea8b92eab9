"""The DeepEyes page in Debian's Chromium: its sections picked by a click and kept in the address bar,
every chart drawn offline, a click on a heatmap cell or in the filter map and a box on the input map
coordinated, dead units marked useless, and a run still training that updates itself."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect
from test_app_deepeyes import copy_run, land_snapshot

from browser import CANVAS_INK, app_server, browser_page, require_chromium, wait_for_app
from convlens.annotations import AnnotationStore
from convlens.runformat import load_snapshot
from convlens.ui.gallery import GALLERY_CLASS
from convlens.weights import weights_fingerprint

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
SMALL = Path(__file__).resolve().parent.parent / "assets" / "runs" / "fashion_deepeyes_small"

pytestmark = pytest.mark.browser

require_chromium()


def wait_for_text(page, text: str, timeout: float = 90_000) -> None:
    page.wait_for_function(
        "(text) => document.body.innerText.includes(text)", arg=text, timeout=timeout
    )


def show_section(page, name: str) -> None:
    """Click a section in the section picker and wait for the page to draw it."""
    page.locator('[data-testid="stButtonGroup"]').get_by_role("radio", name=name).click()
    page.wait_for_url(f"**de_view={name.lower()}*", timeout=60_000)
    wait_for_app(page)


# The charts on screen: the sections not shown are drawn too, hidden.
SHOWN_CHARTS = '[data-testid="stVegaLiteChart"]:visible'
CHART_TITLES = """() => [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')]
    .filter((chart) => chart.checkVisibility({visibilityProperty: true}))
    .map((chart) => (chart.querySelector('g.role-title text') || {}).textContent || '')"""
# How many of a chart's pixels are inked when Vega draws it on a canvas; its SVG paths otherwise.
INKED = f"""(chart) => {{
    const canvas = chart.querySelector('canvas');
    return canvas ? ({CANVAS_INK})(canvas) : chart.querySelectorAll('svg path').length;
}}"""


def assert_charts_drawn(page, count: int, timeout: float = 30) -> None:
    """Check that the page shows `count` charts (once the last section's have gone), all drawn."""
    deadline = time.monotonic() + timeout
    titles = page.evaluate(CHART_TITLES)
    while len(titles) != count and time.monotonic() < deadline:
        time.sleep(0.5)
        titles = page.evaluate(CHART_TITLES)
    assert len(titles) == count, titles
    charts = page.locator(SHOWN_CHARTS)
    for index in range(count):
        assert charts.nth(index).evaluate(INKED) > 0, f"chart {index} is drawn"


def wait_for_images(page, timeout: float = 60_000) -> None:
    """Wait until every picture on the page has loaded (the image patches, the sidebar's image):
    a click before that replaces them, and the browser's requests for replaced media files fail
    (404) when they come too late."""
    page.wait_for_function(
        """() => [...document.images]
            .every((image) => image.complete && image.naturalWidth > 0)""",
        timeout=timeout,
    )


def choose(page, label: str, option: str) -> None:
    """Pick `option` in the selectbox labelled `label`."""
    picker = page.locator('[data-testid="stSelectbox"]').filter(
        has=page.get_by_text(label, exact=True)
    )
    picker.click()
    page.keyboard.type(option.split(" ")[0])  # a long list: filter it first
    page.get_by_role("option", name=option).click()


def click_filter(page, mark, filter_index: int) -> None:
    """Click a filter's `mark` in a chart and check that the page selects that filter. After a
    pick the charts are drawn fresh: the one replaced may linger a moment after the run ends."""
    expect(mark).to_have_count(1, timeout=30_000)
    mark.click()
    wait_for_text(page, f"Filter {filter_index} fires on")
    wait_for_app(page)
    assert f"de_filter={filter_index}" in page.url
    wait_for_text(page, f"The patches filter {filter_index} responds to most")
    wait_for_images(page)


def test_deepeyes_page_in_chromium(tmp_path: Path) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    home = tmp_path / "home"
    live = copy_run(home / "runs" / "live", 4, pid=os.getpid())  # steps 100 to 2300, training
    environment = {"CONVLENS_HOME": str(home), "CONVLENS_OFFLINE": "1"}
    with app_server(env=environment) as url, browser_page(1600, 1200) as (page, log):
        page.goto(url, timeout=120_000)
        wait_for_app(page)
        page.locator('[data-testid="stSidebarNav"] a', has_text="DeepEyes").click()
        page.wait_for_url("**/deepeyes*", timeout=60_000)
        # the Training section first: curves, stability, a small heat map per layer
        wait_for_text(page, "Change between snapshots", timeout=180_000)
        wait_for_app(page)
        page.wait_for_url("**de_view=training*", timeout=60_000)
        assert_charts_drawn(page, 2 + 3)
        page.screenshot(path=str(SCREENSHOTS / "deepeyes.png"), full_page=True)

        # the Layer section: the first layer's perplexity, filter activity and maps
        show_section(page, "Layer")
        wait_for_text(page, "Filter map: 20 filters", timeout=180_000)
        wait_for_app(page)
        assert_charts_drawn(page, 6)
        charts = page.locator(SHOWN_CHARTS)
        input_map = charts.filter(has=page.locator("canvas"))  # the one drawn on a canvas
        # a point per patch (unlabelled for screen readers: the chart's title says what they
        # are), drawn on a canvas: a thousand points of 5 to 6 pixels across, some overlapping
        assert input_map.locator("svg").count() == 0
        assert input_map.evaluate(INKED) > 1000 * 10
        page.screenshot(path=str(SCREENSHOTS / "deepeyes-layer.png"), full_page=True)

        # a click on filter 3's cell in the heatmap selects it everywhere
        heatmap = charts.filter(has_text="features.conv1: activation frequency")
        cell = 'path[aria-roledescription="rect mark"][aria-label*="; filter: 3;"]'
        click_filter(page, heatmap.locator(cell), 3)
        assert "de_view=layer" in page.url

        # a click on filter 5 in the filter map selects it instead
        filter_map = charts.filter(has_text="Filter map:")
        point = 'path[aria-roledescription="point"][aria-label*="filter: 5;"]'
        click_filter(page, filter_map.locator(point), 5)

        # a click on a filter picked before is answered too: filter 3's cell again, and filter 5
        # in the filter map after "none" in the selectbox (a chart that kept its last selection
        # took either click for no change)
        click_filter(page, heatmap.locator(cell), 3)
        choose(page, "Filter (or click one in a chart)", "none")
        page.wait_for_url(lambda address: "de_filter" not in address, timeout=30_000)
        wait_for_app(page)
        click_filter(page, filter_map.locator(point), 5)

        # a box dragged on the input map shows the patches inside it
        box = input_map.locator("canvas").bounding_box()
        page.mouse.move(box["x"] + 0.3 * box["width"], box["y"] + 0.3 * box["height"])
        page.mouse.down()
        page.mouse.move(box["x"] + 0.55 * box["width"], box["y"] + 0.7 * box["height"], steps=8)
        page.mouse.up()
        wait_for_text(page, "patches in the box")
        wait_for_app(page)
        assert page.locator(f".{GALLERY_CLASS} img").count() > 1
        wait_for_images(page)
        page.screenshot(path=str(SCREENSHOTS / "deepeyes-selected.png"), full_page=True)

        # a section shown again without a redraw (drawn at the same snapshot) and a snapshot
        # picked there: Layer, shown again, is drawn anew at that snapshot
        show_section(page, "Training")
        assert_charts_drawn(page, 2 + 3)
        page.get_by_role("slider").first.press("ArrowLeft")
        wait_for_text(page, "Snapshot at step 5400")
        wait_for_app(page)
        show_section(page, "Layer")
        wait_for_text(page, "features.conv1: input map and filter map at step 5400")
        page.get_by_role("slider").first.press("ArrowRight")
        wait_for_text(page, "features.conv1: input map and filter map at step 5628")
        wait_for_app(page)
        # Diagnosis, drawn at that snapshot when the page opened, is shown without a redraw: its
        # slider stands where its diagnosis was drawn (not at 5400, the step when the page last
        # ran whole)
        show_section(page, "Diagnosis")
        wait_for_text(page, "Snapshot at step 5628")
        assert page.locator('[data-testid="stSliderThumbValue"]:visible').inner_text() == "5628"
        show_section(page, "Layer")
        wait_for_text(page, "features.conv1: input map and filter map at step 5628")

        # the small run's dead fc1 units, marked useless from the diagnosis (with fc1's maps,
        # the cheaper ones, from here on)
        choose(page, "Layer to inspect", "classifier.fc1 (500 units)")
        wait_for_text(page, "classifier.fc1: input map and filter map")
        wait_for_app(page)
        choose(page, "Run", "fashion_deepeyes_small (shipped)")
        wait_for_text(page, "classifier.fc1 at step 5628: 3 of 100 dead")
        wait_for_app(page)
        # the layer stays, and conv1's cell selection, which the browser still holds, is not
        # taken for a click: neither conv1 nor its filter 3 comes back
        page.wait_for_url("**de_layer=classifier.fc1*", timeout=30_000)
        assert "de_filter" not in page.url
        show_section(page, "Diagnosis")
        wait_for_text(page, "3 of 100 units dead at step 5628")
        wait_for_app(page)
        page.get_by_role("button", name="Mark 3 useless").click()
        wait_for_text(page, "Marked useless")
        wait_for_app(page)
        # the button's toast leaves the style that hides the other sections in place
        assert page.locator(SHOWN_CHARTS).count() == 0
        assert "Layer to inspect" not in page.locator("body").inner_text()
        fingerprint = weights_fingerprint(load_snapshot(SMALL)[0])
        store = AnnotationStore(home / "annotations.sqlite")
        assert store.useless_filters("fashion_deepeyes_small", fingerprint) == {
            "classifier.fc1": [44, 54, 70]
        }

        # a run still training: a snapshot lands and the page shows it without a click
        choose(page, "Run", "live (yours, training)")
        wait_for_text(page, "Snapshot at step 2300 · the run is still training")
        wait_for_app(page)
        land_snapshot(live, 2900)
        started = time.monotonic()
        wait_for_text(page, "Snapshot at step 2900", timeout=60_000)
        assert time.monotonic() - started < 60
        wait_for_app(page)
        page.screenshot(path=str(SCREENSHOTS / "deepeyes-live.png"), full_page=True)

    assert log.outside_requests == [], f"requests left 127.0.0.1: {log.outside_requests[:5]}"
    assert log.console_errors == [], f"console errors: {log.console_errors[:5]}"
