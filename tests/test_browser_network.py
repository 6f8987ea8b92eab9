"""The forward pass in the chain, in Debian's Chromium at 1280x720: the default model's chain shows
the image's feature maps beside its layers, and a click on one opens that filter in Filters."""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import Error as PlaywrightError

from browser import (
    CHAIN_COLOUR_AT,
    RUN_COUNTER,
    app_server,
    browser_page,
    chain_canvas_ink,
    click_colour,
    require_chromium,
    wait_for_app,
)
from convlens.graph import build_graph
from convlens.style import SELECTED_BORDER

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"

pytestmark = pytest.mark.browser

require_chromium()

# The border of a conv node's feature-map pictures (LAYER_COLOURS["conv"]): in the chain of
# collapsed groups only the pictures carry it, the boxes of the groups are yellow.
CONV_BLUE = (0x00, 0x72, 0xB2)

PICTURES = """([canvas, rgb]) => {
    const context = canvas.getContext('2d');
    const { width, height } = canvas;
    if (!width || !height) return null;
    const pixels = context.getImageData(0, 0, width, height).data;
    const scale = canvas.getBoundingClientRect().width / width;
    const near = (i, c) => Math.abs(pixels[i] - c[0]) < 8 && Math.abs(pixels[i + 1] - c[1]) < 8
        && Math.abs(pixels[i + 2] - c[2]) < 8;
    let first = null, border = 0;
    const colours = new Set();
    for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
            const i = (y * width + x) * 4;
            if (near(i, rgb)) { border++; if (!first) first = [x * scale, y * scale]; }
            colours.add((pixels[i] >> 3) << 10 | (pixels[i + 1] >> 3) << 5 | pixels[i + 2] >> 3);
        }
    }
    return { first, border, colours: colours.size };
}"""


def chain_pictures(page) -> dict:
    frame = page.frame_locator('iframe[title="streamlit_agraph.agraph"]')
    return frame.locator("canvas").first.evaluate(
        f"(canvas) => ({PICTURES})([canvas, {list(CONV_BLUE)}])"
    )


@pytest.fixture(scope="module")
def url():
    with app_server() as served:
        yield served


def test_the_chain_shows_feature_maps_and_a_click_on_one_opens_its_filter(url: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with browser_page(1280, 720) as (page, log):
        page.goto(f"{url}/network", timeout=120_000)
        wait_for_app(page)
        assert chain_canvas_ink(page, timeout=120_000) > 500
        deadline = time.monotonic() + 60
        found = chain_pictures(page)
        while (found is None or not found["first"]) and time.monotonic() < deadline:
            time.sleep(0.5)
            found = chain_pictures(page)
        assert found and found["first"], "the chain draws feature-map pictures beside its blocks"
        # pictures, not flat boxes: an image on a diverging map has many colours
        assert found["colours"] > 400, found
        assert found["border"] > 4 * 4 * 30, "four framed pictures per row of conv layers"
        page.screenshot(path=str(SCREENSHOTS / "network-chain.png"))

        # the first picture's top-left corner: group g0's most active channel
        x, y = found["first"]
        page.frame_locator('iframe[title="streamlit_agraph.agraph"]').locator("canvas").first.click(
            position={"x": x + 8, "y": y + 8}
        )
        page.wait_for_url(re.compile(r".*/filters\?.*filter=\d+"), timeout=60_000)
        query = parse_qs(urlparse(page.url).query)
        layer, channel = query["layer"][0], query["filter"][0]
        heading = f"{layer} · filter {channel}"
        page.wait_for_function(
            f"() => document.body.innerText.includes({heading!r})", timeout=60_000
        )
        wait_for_app(page)
        time.sleep(1)
        page.screenshot(path=str(SCREENSHOTS / "network-picture-opens-filter.png"))
        assert layer.startswith("_blocks.0"), "group g0 ends with _blocks.0's project conv"

        # back to the chain, the same picture again: the click is not taken for the last one
        page.locator('[data-testid="stSidebarNav"] a', has_text="Network").click()
        page.wait_for_url("**/network*", timeout=60_000)
        wait_for_app(page)
        assert chain_canvas_ink(page) > 500
        time.sleep(1)
        entries = page.evaluate("history.length")
        page.frame_locator('iframe[title="streamlit_agraph.agraph"]').locator("canvas").first.click(
            position={"x": x + 8, "y": y + 8}
        )
        page.wait_for_url(re.compile(r".*/filters\?.*filter=\d+"), timeout=60_000)
        assert parse_qs(urlparse(page.url).query)["filter"] == [channel]
        wait_for_app(page)
        assert page.evaluate("history.length") == entries + 1, "st.switch_page is one entry"

        # st.switch_page's switch is one entry of the history: one Back returns to the chain
        page.go_back()
        page.wait_for_url(lambda address: "/network?" in address, timeout=60_000)
        wait_for_app(page)

    assert log.outside_requests == [], f"requests left 127.0.0.1: {log.outside_requests[:5]}"


def test_after_expand_all_a_low_node_shows_its_details_on_screen_and_the_chain_stays(
    url: str,
) -> None:
    with browser_page(1280, 720) as (page, log):
        page.goto(f"{url}/network", timeout=120_000)
        wait_for_app(page)
        assert chain_canvas_ink(page, timeout=120_000) > 500
        page.get_by_role("button", name="Expand all").click()
        time.sleep(1)
        wait_for_app(page)
        chain_box = page.locator(".st-key-chain_view")
        page.wait_for_function(
            "() => document.querySelector('.st-key-chain_view').scrollHeight > 3000",
            timeout=60_000,
        )
        assert chain_canvas_ink(page) > 500
        time.sleep(1)
        chain_box.evaluate("(box) => { box.scrollTop = 2400; }")
        time.sleep(1)
        box = chain_box.bounding_box()
        # a conv box (blue) low in the chain, in the visible part of the scrolling box
        frame = page.frame_locator('iframe[title="streamlit_agraph.agraph"]')
        canvas = frame.locator("canvas").first
        point = canvas.evaluate(
            """(canvas) => {
                const context = canvas.getContext('2d');
                const top = document.defaultView.frameElement.getBoundingClientRect().top;
                const scale = canvas.getBoundingClientRect().width / canvas.width;
                const from = Math.round((2400 + 200) / scale), to = from + 200;
                const pixels = context.getImageData(0, from, canvas.width, to - from).data;
                for (let y = 0; y < to - from; y += 2) for (let x = 0; x < canvas.width / 2; x++) {
                    const i = (y * canvas.width + x) * 4;
                    if (pixels[i] === 0 && pixels[i + 1] === 114 && pixels[i + 2] === 178)
                        return [x * scale, (from + y) * scale];
                }
                return null;
            }"""
        )
        assert point is not None, "a conv layer's box low in the opened chain"
        canvas.click(position={"x": point[0] + 12, "y": point[1] + 12})
        page.wait_for_function(
            "() => document.body.innerText.includes('Receptive field')", timeout=60_000
        )
        wait_for_app(page)
        time.sleep(1)
        heading = page.locator(SUBHEADER, has_text="_blocks").first
        top = heading.bounding_box()["y"]
        assert 0 <= top < 720, f"the details' heading is on screen, at y={top}"
        assert chain_box.evaluate("(box) => box.scrollTop") == 2400, "the chain stays in place"
        assert chain_box.bounding_box() == box
        page.screenshot(path=str(SCREENSHOTS / "network-expanded-click.png"))
    assert log.outside_requests == []


GROUP_YELLOW = (0xF0, 0xE4, 0x42)  # LAYER_COLOURS["group"]: a closed block
HEADER_YELLOW = (0xF7, 0xF0, 0xA6)  # an open block's header
# The details' heading names the layer (`layer_heading`: markdown, so that it may break after a dot)
SUBHEADER = '[data-testid="stMainBlockContainer"] h3'
SELECTED_RGB = tuple(int(SELECTED_BORDER[k : k + 2], 16) for k in (1, 3, 5))


def chain_shows(page, rgb: tuple[int, int, int]) -> bool:
    frame = page.frame_locator('iframe[title="streamlit_agraph.agraph"]')
    canvas = frame.locator("canvas").first
    return canvas.evaluate(f"(canvas) => ({CHAIN_COLOUR_AT})([canvas, {list(rgb)}])") is not None


def click_until(page, rgb: tuple[int, int, int], done: str, timeout: float = 60) -> None:
    """Click colour `rgb` in the chain and wait until the page's JavaScript `done` holds (the
    chain may still be drawing when the click is made: then click again)."""
    deadline = time.monotonic() + timeout
    while True:
        wait_for_app(page)
        with contextlib.suppress(AssertionError, PlaywrightError):
            click_colour(page, rgb)
            page.wait_for_function(done, timeout=10_000)
            wait_for_app(page)
            return
        assert time.monotonic() < deadline, f"clicking {rgb} never made {done}"


def selected_pixels(canvas, top: float) -> int:
    """The pixels of SELECTED_BORDER in the boxes' part of the chain's canvas (its left third),
    in the row of the box whose top-left corner is at `top` (CSS pixels)."""
    return canvas.evaluate(
        """(canvas, [top, rgb]) => {
            const scale = canvas.getBoundingClientRect().width / canvas.width;
            const from = Math.max(0, Math.round((top - 6) / scale));
            const to = Math.min(canvas.height, Math.round((top + 50) / scale));
            const pixels = canvas.getContext('2d')
                .getImageData(0, from, Math.round(canvas.width / 3), to - from).data;
            let count = 0;
            for (let i = 0; i < pixels.length; i += 4)
                if (Math.abs(pixels[i] - rgb[0]) < 6 && Math.abs(pixels[i + 1] - rgb[1]) < 6
                    && Math.abs(pixels[i + 2] - rgb[2]) < 6) count++;
            return count;
        }""",
        [top, list(SELECTED_RGB)],
    )


def test_clicks_open_and_close_a_block_and_select_layers_back_and_forth(url: str) -> None:
    """A block opens and closes by clicks on it and on its header (the same id, drawn by two
    components); layers clicked in turn, back and forth, each show their details."""
    has_header = f"""() => {{
        const frame = document.querySelector('iframe[title="streamlit_agraph.agraph"]');
        const canvas = frame && frame.contentDocument.querySelector('canvas');
        return !!canvas && canvas.width > 0
            && ({CHAIN_COLOUR_AT})([canvas, {list(HEADER_YELLOW)}]) !== null;
    }}"""
    with browser_page(1280, 720) as (page, log):
        page.add_init_script(RUN_COUNTER)
        page.goto(url, timeout=120_000)  # not /network: its first request is a known 404
        wait_for_app(page)
        page.locator('[data-testid="stSidebarNav"] a', has_text="Network").click()
        page.wait_for_url("**/network*", timeout=60_000)
        wait_for_app(page)
        assert chain_canvas_ink(page, timeout=120_000) > 500
        assert not chain_shows(page, HEADER_YELLOW), "EfficientNet-Lite0 starts closed"
        for _ in range(2):  # open, close, open again, close again
            click_until(page, GROUP_YELLOW, has_header)
            click_until(page, HEADER_YELLOW, f"() => !({has_header})()")
        click_until(page, GROUP_YELLOW, has_header)
        conv_blue = list(CONV_BLUE)
        boxes = page.frame_locator('iframe[title="streamlit_agraph.agraph"]').locator("canvas")
        corners = boxes.first.evaluate(
            f"""(canvas) => {{
                const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width,
                    canvas.height).data;
                const scale = canvas.getBoundingClientRect().width / canvas.width;
                const found = [];
                let lastBlue = -10;
                for (let y = 0; y < canvas.height; y += 2) {{
                    // the boxes, left of the pictures
                    for (let x = 0; x < canvas.width / 3; x += 2) {{
                        const i = (y * canvas.width + x) * 4;
                        const near = Math.abs(pixels[i] - {conv_blue[0]}) < 6
                            && Math.abs(pixels[i + 1] - {conv_blue[1]}) < 6
                            && Math.abs(pixels[i + 2] - {conv_blue[2]}) < 6;
                        if (!near) continue;
                        if (y - lastBlue > 4) found.push([x * scale, y * scale]);  // a new box
                        lastBlue = y;
                        break;
                    }}
                }}
                return found;
            }}"""
        )
        assert len(corners) >= 2, f"the open block shows its conv layers: {corners}"
        headings = []
        page.evaluate("() => { window.__texts = []; }")
        for (x, y), (_, other) in zip(
            (corners[0], corners[1], corners[0]), (corners[1], corners[0], corners[1]), strict=True
        ):
            before = page.url
            boxes.first.click(position={"x": x + 20, "y": y + 12})
            page.wait_for_function(f"() => window.location.href !== {before!r}", timeout=30_000)
            wait_for_app(page)
            headings.append(page.locator(SUBHEADER, has_text="_").first.inner_text())
            # vis-network's own selection borders the clicked box, not the one clicked before
            # (off the chain: its hover look borders a box too)
            page.mouse.move(0, 0)
            time.sleep(0.3)
            # a border of SELECTED_BOX_BORDER (5) pixels: ~1,200 of them; vis-network's own 2: ~500
            assert selected_pixels(boxes.first, y) > 900, "the clicked box is drawn selected"
            assert selected_pixels(boxes.first, other) == 0, "the last one is not"
        assert headings[0] == headings[2] != headings[1], headings
        sent = page.evaluate("() => window.__texts.join(' ')")
        assert headings[1].split()[0] in sent, "the layers' details came in the messages logged"
        assert "way through the network" not in sent, (
            "a click in the chain reruns the chain and the details only (a fragment), not the page"
        )
        assert "layer=" in page.url

        # after those redraws a box still names its layer when hovered (its tooltip travels in a
        # vis-network group), and a double-click on it opens nothing
        x, y = corners[1]
        frame_box = boxes.first.bounding_box()
        page.mouse.move(frame_box["x"] + x + 20, frame_box["y"] + y + 12)
        tooltip = page.frame_locator('iframe[title="streamlit_agraph.agraph"]').locator(
            ".vis-tooltip"
        )
        tooltip.wait_for(state="visible", timeout=10_000)
        assert headings[1].split()[0] in tooltip.inner_text()
        assert "output" in tooltip.inner_text()
        page.mouse.dblclick(frame_box["x"] + x + 20, frame_box["y"] + y + 12)
        time.sleep(2)
        assert len(page.context.pages) == 1
    assert log.console_errors == [], log.console_errors[:5]


def test_a_bookmarked_layer_is_scrolled_into_the_chains_box(tmp_path: Path) -> None:
    """A link that names a layer deep in the chain opens with the chain's box scrolled to that
    layer's row (it sat below the box's fold); a link without a layer starts at the top."""
    from convlens.models import load_model
    from convlens.ui.chain import chain_rows, initial_expanded, scroll_offset

    layer = "_blocks.2._depthwise_conv"
    model = load_model("efficientnet_lite0")
    graph = build_graph(model.module, model.input_size)
    node = graph.chain_node_of(layer)
    expanded = initial_expanded(graph) | {graph.node(node).group}
    wanted = scroll_offset(chain_rows(graph, expanded), node)
    assert wanted > 0, "the row lies below the box's fold"
    query = "model=efficientnet_lite0&image=sample%3Achelsea"
    scrolled = "() => document.querySelector('.st-key-chain_view').scrollTop"
    with (
        app_server({"CONVLENS_HOME": str(tmp_path / "home")}) as url,
        browser_page(1280, 720) as (page, _),
    ):
        page.goto(f"{url}/network?{query}&layer={layer}", timeout=120_000)
        wait_for_app(page)
        assert chain_canvas_ink(page) > 500
        page.wait_for_function(f"() => ({scrolled})() > 0", timeout=30_000)
        assert abs(page.evaluate(scrolled) - wanted) <= 2
        # the element that holds the scrolling script takes no room under the chain
        assert page.evaluate(
            """() => [...document.querySelectorAll('[data-testid="stHtml"]')]
                .filter((html) => html.innerHTML.includes('chain_view'))
                .map((html) => html.closest('[data-testid="stElementContainer"]'))
                .map((box) => getComputedStyle(box).display)"""
        ) == ["none"]
        page.screenshot(path=str(SCREENSHOTS / "network-bookmarked-layer.png"))
        page.goto(f"{url}/network?{query}", timeout=120_000)
        wait_for_app(page)
        assert chain_canvas_ink(page) > 500
        time.sleep(1)
        assert page.evaluate(scrolled) == 0
