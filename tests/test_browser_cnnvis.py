"""The CNNVis page in Chromium: the picture is drawn, a click on a collapsed group expands it,
a click on a neuron opens it in the Filters view, and a comparison at a projector's 1280 px
draws both models readable, one below the other."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from PIL import Image

from browser import RUN_COUNTER, app_server, browser_page, require_chromium, wait_for_app
from convlens.activations import SHIPPED_DATA, analyze
from convlens.cnnvis.drawing import HEIGHT, layout, neuron_marks
from convlens.cnnvis.view import Options, build_view
from convlens.graph import build_graph
from convlens.models import load_model

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
MODEL = "fashion_basecnn_x0.25"
COMPARED = "fashion_deepeyes_small"
VEGA_PADDING = 5

pytestmark = pytest.mark.browser

require_chromium()


@pytest.fixture(scope="module")
def analysed_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ConvLens home with the analyses of MODEL and COMPARED, made once for the module."""
    home = tmp_path_factory.mktemp("cnnvis_browser_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONVLENS_OFFLINE", "1")
        patch.setenv("CONVLENS_HOME", str(home))
        for name in (MODEL, COMPARED):
            analyze(load_model(name), SHIPPED_DATA)
    return home


PICTURE_SVG = "[data-testid='stVegaLiteChart'] svg.marks"


def wait_for_picture(page):
    wait_for_app(page)
    chart = page.locator("[data-testid='stVegaLiteChart']").first
    chart.wait_for(timeout=60_000)
    time.sleep(2)  # Vega draws after the element appears
    chart.scroll_into_view_if_needed()
    return chart.bounding_box()


def click_at(page, box: dict, geometry, x: float, y: float) -> None:
    """Click the picture's point (x, y); the page stretches the picture to its width."""
    scale = (box["width"] - 2 * VEGA_PADDING) / geometry.width
    page.mouse.click(box["x"] + VEGA_PADDING + x * scale, box["y"] + VEGA_PADDING + y)


def blank_patch(*_) -> Image.Image:
    """A grey patch for pictures whose patches a test does not look at."""
    return Image.new("L", (8, 8), 128)


def query(page) -> dict[str, str]:
    """The address bar's query (Playwright's `page.url` misses Streamlit's history updates)."""
    search = page.evaluate("() => window.location.search")
    return {key: values[0] for key, values in parse_qs(search.lstrip("?")).items()}


def test_expand_a_group_and_open_a_neuron_in_filters(
    monkeypatch: pytest.MonkeyPatch, analysed_home: Path
) -> None:

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    model = load_model(MODEL)
    graph = build_graph(model.module, model.input_size)
    home = str(analysed_home)
    monkeypatch.setenv("CONVLENS_HOME", home)
    analysis = analyze(model, SHIPPED_DATA)  # from the home the app reads
    with app_server(env={"CONVLENS_HOME": home}) as url, browser_page(1600, 1000) as (page, log):
        page.add_init_script(RUN_COUNTER)
        page.goto(f"{url}/?model={MODEL}", timeout=120_000)
        wait_for_app(page)
        page.get_by_role("link", name="CNNVis", exact=True).first.click()
        box = wait_for_picture(page)
        assert query(page)["groups"] == "g3"
        page.screenshot(path=str(SCREENSHOTS / "cnnvis.png"))

        view = build_view(MODEL, model.module, graph, analysis, Options(expanded=("g3",)))
        column = layout(view).columns["g2"]
        column_mark = "[aria-roledescription='rect mark'][aria-label*='; group: g2;']"
        assert page.locator(f"{PICTURE_SVG} {column_mark}").count() == 1
        page.evaluate(f"() => {{ document.querySelector({PICTURE_SVG!r}).kept = true; }}")
        page.evaluate("() => { window.__texts = []; }")
        click_at(page, box, layout(view), column.x + column.w / 2, column.middle)
        page.wait_for_function("() => window.location.search.includes('g2')", timeout=60_000)
        box = wait_for_picture(page)
        assert query(page)["groups"] == "g2,g3"
        sent = page.evaluate("() => window.__texts.join(' ')")
        assert "Expanded groups" in sent, "the toolbar came in the messages logged"
        assert "The network left to right" not in sent, (
            "a click in the picture reruns the toolbar and the picture only (a fragment), not the "
            "page"
        )
        # the browser kept its chart and replaced the data: the same picture element, new marks
        assert page.evaluate(f"() => document.querySelector({PICTURE_SVG!r}).kept === true")
        assert page.locator(f"{PICTURE_SVG} {column_mark}").count() == 0  # g2 no longer collapsed
        # the tooltip of the mark hovered last stays until the pointer moves: it lets a click
        # through to the mark under it (a click landing on it was lost)
        tooltip = "document.getElementById('vg-tooltip-element')"
        assert page.evaluate(f"() => getComputedStyle({tooltip}).pointerEvents") == "none"
        # the click on a group reaches the neuron selection too, without a neuron to open
        assert page.locator('[data-testid="stException"]').count() == 0
        assert "Open in Filters" not in page.inner_text("body")

        # the same group again, twice: its header closes it, its column opens it again
        view = build_view(MODEL, model.module, graph, analysis, Options(expanded=("g2", "g3")))
        geometry = layout(view)
        header = geometry.columns[graph.group("g2").nodes[0]]
        click_at(page, box, geometry, header.x + 12, 15)
        page.wait_for_function("() => !window.location.search.includes('g2')", timeout=60_000)
        box = wait_for_picture(page)
        assert query(page)["groups"] == "g3"
        click_at(
            page,
            box,
            layout(build_view(MODEL, model.module, graph, analysis, Options(expanded=("g3",)))),
            column.x + column.w / 2,
            column.middle,
        )
        page.wait_for_function("() => window.location.search.includes('g2')", timeout=60_000)
        box = wait_for_picture(page)
        assert query(page)["groups"] == "g2,g3"

        patches = neuron_marks(view, geometry, "features", 0, blank_patch).patches
        biggest = max(patches, key=lambda patch: patch["x2"] - patch["x"])
        middle = ((biggest["x"] + biggest["x2"]) / 2, (biggest["y"] + biggest["y2"]) / 2)
        click_at(page, box, geometry, *middle)
        # the neuron's dialog opens where the click was, with its top patches
        dialog = page.get_by_role("dialog")
        opener = dialog.get_by_role("button", name="Open in Filters")
        opener.wait_for(timeout=60_000)
        assert page.locator('[data-testid="stException"]').count() == 0
        assert f"{biggest['node']} · neuron {biggest['neuron']}" in dialog.inner_text()
        dialog.locator("img").nth(analysis.top_k - 1).wait_for(timeout=30_000)
        assert dialog.locator("img").count() == analysis.top_k
        page.screenshot(path=str(SCREENSHOTS / "cnnvis_neuron.png"))
        # closed, the same neuron's dialog opens again on a second click
        page.keyboard.press("Escape")
        dialog.wait_for(state="detached", timeout=30_000)
        box = wait_for_picture(page)
        time.sleep(2)  # the picture redrawn without its selection
        click_at(page, box, geometry, *middle)
        opener = page.get_by_role("dialog").get_by_role("button", name="Open in Filters")
        opener.wait_for(timeout=60_000)
        opener.click()
        page.wait_for_function(
            "() => window.location.pathname.endsWith('/filters')", timeout=60_000
        )
        wait_for_app(page)
        state = query(page)
        assert (state["layer"], state["filter"]) == (biggest["node"], str(biggest["neuron"]))
        assert not log.console_errors and not log.outside_requests


def test_a_page_that_stops_early_keeps_its_bookmark(isolated_home: Path) -> None:
    """CNNVis with an ImageNet model and no analysis yet stops at its button: the address bar,
    which the page switch emptied, still names the model."""
    home = os.environ["CONVLENS_HOME"]
    with app_server(env={"CONVLENS_HOME": home}) as url, browser_page(1280, 720) as (page, log):
        page.goto(f"{url}/?model=efficientnet_lite0", timeout=120_000)
        wait_for_app(page)
        page.get_by_role("link", name="CNNVis", exact=True).first.click()
        button = page.get_by_role("button", name="Analyse 1,000 images")
        button.wait_for(timeout=60_000)
        page.wait_for_function(
            "() => window.location.search.includes('model=efficientnet_lite0')", timeout=30_000
        )
        assert query(page)["model"] == "efficientnet_lite0"
        assert not log.console_errors and not log.outside_requests


def plot_box(chart) -> tuple[float, float, float]:
    """The width and height of a drawn picture's plot (Vega's root background), and its SVG's
    width: a title or a key wider than the page squeezes the plot, not the SVG."""
    svg = chart.locator("svg.marks").first
    d = svg.locator("g.root > g > path.background").first.get_attribute("d")
    width, height = (float(v) for v in re.match(r"M0,0h([\d.]+)v([\d.]+)", d).groups())
    return width, height, float(svg.get_attribute("width"))


def test_comparison_at_1280_px_draws_both_pictures_whole_one_below_the_other(
    analysed_home: Path,
) -> None:
    """Issue 14: side by side at 1280 px, the activations facet squeezed the first picture to a
    sliver with its labels on top of each other, and the second to half the page."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    env = {"CONVLENS_HOME": str(analysed_home)}
    with app_server(env=env) as url, browser_page(1280, 720) as (page, log):
        page.goto(
            f"{url}/?model={MODEL}&compare={COMPARED}&facet=activations&groups=g3", timeout=120_000
        )
        wait_for_app(page)
        page.get_by_role("link", name="CNNVis", exact=True).first.click()
        for facet in ("activations", "features"):
            if facet == "features":
                page.locator("[data-testid='stButtonGroup']").get_by_text("features").click()
                page.wait_for_function(
                    "() => window.location.search.includes('facet=features')", timeout=60_000
                )
            wait_for_picture(page)
            charts = page.locator("[data-testid='stVegaLiteChart']")
            charts.nth(1).wait_for(timeout=60_000)
            time.sleep(2)  # Vega draws after the element appears
            state = query(page)
            assert (state["compare"], state["facet"], state["groups"]) == (COMPARED, facet, "g3")
            mine, theirs = charts.nth(0), charts.nth(1)
            first, second = mine.bounding_box(), theirs.bounding_box()
            assert second["y"] >= first["y"] + first["height"]  # below, not beside
            assert first["width"] == second["width"] >= 700  # the page's width, at 1280 px
            for chart in (mine, theirs):
                width, height, drawn = plot_box(chart)
                assert width >= 0.95 * drawn and height >= 0.75 * HEIGHT, (facet, width, height)
            assert "counted from the last): g3 → g1" in page.inner_text("body")
            theirs.scroll_into_view_if_needed()
            page.screenshot(path=str(SCREENSHOTS / f"cnnvis_compare_{facet}.png"))
        assert page.locator('[data-testid="stException"]').count() == 0
        assert not log.console_errors and not log.outside_requests
