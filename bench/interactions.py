"""Click latency: the seconds until the page settles after each of the app's standard clicks.

The app serves a fresh $CONVLENS_HOME prepared beforehand (as the first start leaves it: the
shipped models' statistics and DeepEyes maps; and EfficientNet-Lite0 on the bundled samples), so
that it measures the app, not its first start; it is started by the README's command
(`python -m convlens app`), and every page is opened once before measuring (`WARM_UP_URLS`).
One Chromium at a projector's 1280x720 clicks as a person would: sidebar links, chain nodes,
filter tiles, buttons, select boxes, points in charts; one browser profile throughout (a tab per
click), as one student's browser keeps what it has loaded: Streamlit's front end loads a page's
code when the page first needs it, and Chromium compiles it cold the first times (measured: ~0.3 s
more on the first CNNVis visit of a new profile), once per browser, not per click.

A click is timed on the page's own clock, from the browser's stamp on the user's press (the mouse
button's release, on which buttons, chart marks and the chain act, or the key going down; the
element found and scrolled to before: Playwright's checks before its own clicks took 30-60 ms,
which no person waits for) to the frame after the one in which the page first shows it settled:
Streamlit's script has run since the click and is `notRunning` again, no skeleton is left, and the
element the click asked for is drawn (its `drawn` test below), checked at every frame. The frame
after is the first that starts once the settled page has been painted. (Timed from Python before
the press instead, each visit came out 7-60 ms longer, median 15 ms: Playwright's messages to and
from the browser, which no user waits for.)

Each click is measured on FIRST inputs not seen before in the run (another image, filter, layer,
group, position, snapshot or model: a first visit; each click has its own inputs, so that no click
warms another's) and on CACHED inputs: two inputs already visited, alternated, so that each click
changes the view to one the server has drawn before. The table CLICKS lists one small function
per click; a click that fails (a selector that no longer matches, a page that never settles)
prints `failed` and the bench goes on.

A failed click leaves a screenshot in test-artifacts/interactions/.

Printed per click: the first visits' median, 95th percentile and maximum, the cached visits'
median and maximum, and the server's CPU seconds a visit (the mean over the visits: the process's
own time from /proc/<pid>/stat, counted in ticks of 10 ms, so that the browser's drawing on the
same cores does not count; what a cached visit costs the server is what it redoes); then the
plain forward pass of each model used on one image, for reference; then
`cached_server_cpu_max=<the click whose cached visits cost the server most, on average>`,
`cached_max=<the slowest cached visit of any click>`, the click of the worst first visits and,
last,
`p95_max=<the worst click's 95th percentile of first visits>`, in seconds on this machine.
Goal (issue 17): p95_max <= 1 s and cached_max <= 0.3 s.

Run: .venv/bin/python bench/interactions.py [--clicks name,name] [--first 20] [--cached 5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_FLAGS,
    RUN_COUNTER,
    SERVER_PIDS,
    app_server,
    prepare_as_first_start,
    process_cpu_seconds,
)

PHOTO_MODEL = "efficientnet_lite0"  # the app's default model
FASHION_MODEL = "fashion_basecnn"
CNNVIS_MODELS = (
    "fashion_basecnn",
    "fashion_basecnn_x0.25",
    "fashion_basecnn_shallow",
    "fashion_basecnn_hinge",
    "fashion_basecnn_hinge_bn",
    "fashion_deepeyes_small",
    "fashion_deepeyes",
)
DEEPEYES_RUNS = ("fashion_deepeyes", "fashion_deepeyes_small")
TIMEOUT_MS = 90_000
# Where a failed click leaves a screenshot of the page it failed on.
SCREENSHOTS = ROOT / "test-artifacts" / "interactions"
SETTLED = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    return app && app.getAttribute('data-test-script-state') === 'notRunning'
        && !document.querySelector('[data-testid="stSkeleton"]');
}"""
# When the user's press happened, on the page's clock (`performance.timeOrigin + ms`): the release
# of a mouse button (buttons, chart marks and the chain act on it) or a key going down, as the
# browser stamped the event. Frames of the same origin (the chain's component) stamp it on the page,
# by the event's age on their own clock: a document maps its clock to the wall clock when it
# loads, so once the system clock is set while the page is open, a frame loaded after that and
# the page disagree (in one run a press stamped on a frame's origin came 1.8 s after the page
# had settled, five visits in a row).
PRESS_CLOCK = """
const stampPress = (event) => {
    if (!event.isTrusted) return;
    try {
        const page = window.top;
        if (page.__pressedAt == null) {
            const age = performance.now() - event.timeStamp;
            page.__pressedAt = page.performance.timeOrigin + page.performance.now() - age;
        }
    } catch (error) {}  // a frame of another origin: none in this app
};
window.addEventListener('pointerup', stampPress, true);
window.addEventListener('keydown', stampPress, true);
"""
# JavaScript tests of what a click asks for; each is an expression over `document`.
IMAGES_LOADED = """[...document.images]
    .every((image) => image.complete && image.naturalWidth > 0)"""
# Charts on view only: a DeepEyes section hidden by `content-visibility` (convlens.ui.deepeyes.
# sections) may hold a chart left undrawn until the section is shown (Streamlit creates a chart's
# view once it has measured a width; seen on a tab's first DeepEyes page, 1 in ~40 such visits)
CHARTS_ON_VIEW = """[...document.querySelectorAll('[data-testid="stVegaLiteChart"]')]
    .filter((chart) => chart.checkVisibility({visibilityProperty: true}))"""
EVERY_CHART_DRAWN = f"""{CHARTS_ON_VIEW}
    .every((chart) => chart.querySelector('svg path, canvas'))"""
CHARTS_DRAWN = f"{EVERY_CHART_DRAWN} && {CHARTS_ON_VIEW}.length > 0"
CHAIN_CANVAS = """(() => {
    const frame = document.querySelector('iframe[title="streamlit_agraph.agraph"]');
    const canvas = frame && frame.contentDocument && frame.contentDocument.querySelector('canvas');
    return canvas && canvas.width ? canvas : null;
})()"""
CHAIN_DRAWN = f"""(() => {{
    const canvas = {CHAIN_CANVAS};
    if (!canvas) return false;
    const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width,
        Math.min(canvas.height, 600)).data;
    let ink = 0;
    for (let i = 0; i < pixels.length; i += 4 * 7) {{
        if (pixels[i + 3] > 0 && !(pixels[i] > 245 && pixels[i + 1] > 245 && pixels[i + 2] > 245))
            ink++;
    }}
    return ink > 100;
}})()"""
# What every settled page shows drawn: its pictures loaded, its charts drawn, its chain inked.
CHAIN_INKED = f"""(!document.querySelector('iframe[title="streamlit_agraph.agraph"]')
    || {CHAIN_DRAWN})"""
PAGE_DRAWN = f"{IMAGES_LOADED} && {EVERY_CHART_DRAWN} && {CHAIN_INKED}"
# The chain's boxes and pictures, found by colour: their top-left corners in CSS pixels of the
# canvas, top to bottom. `size` is how far a shape reaches right and down from its corner.
FIND_SHAPES = """([canvas, rgb, size, xFrom, xTo]) => {
    const { width, height } = canvas;
    const pixels = canvas.getContext('2d').getImageData(0, 0, width, height).data;
    const scale = canvas.getBoundingClientRect().width / width;
    const corners = [];
    for (let y = 0; y < height; y += 2) {
        for (let x = Math.round(xFrom / scale); x < Math.min(width, xTo / scale); x += 2) {
            const i = (y * width + x) * 4;
            if (Math.abs(pixels[i] - rgb[0]) < 6 && Math.abs(pixels[i + 1] - rgb[1]) < 6
                && Math.abs(pixels[i + 2] - rgb[2]) < 6
                && !corners.some(([cx, cy]) => x >= cx - 12 && x < cx + size[0] / scale
                                               && y >= cy && y < cy + size[1] / scale)) {
                corners.push([x, y]);
            }
        }
    }
    return corners.map(([x, y]) => [x * scale, y * scale]);
}"""
CONV_BLUE = (0x00, 0x72, 0xB2)
GROUP_YELLOW = (0xF0, 0xE4, 0x42)
HEADER_YELLOW = (0xF7, 0xF0, 0xA6)
# How far a box and a feature-map picture reach right and down from their top-left corner on the
# canvas (a little more than drawn, less than the gap to the next one).
BOX = (200, 56)
PICTURE = (44, 50)


class ClickFailed(Exception):
    """A click could not be aimed or did not settle."""


@dataclass(frozen=True)
class Aim:
    """A click ready to fire: `fire` is the user's action (timed), `drawn` a JavaScript expression
    that holds once the element the click asked for is drawn."""

    fire: Callable[[], None]
    drawn: str = "true"


@dataclass(frozen=True)
class Click:
    """One standard click: where its browser session starts, its i-th first-visit input, and
    `aim`, which brings the page to the state before the click on an input (untimed)."""

    start: Callable[[], str]
    first: Callable[[int], object]
    aim: Callable[[object, object], Aim]
    first_limit: int | None = None  # how many distinct first inputs exist, when fewer than asked


@dataclass
class Measured:
    first: list[float] = field(default_factory=list)
    cached: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    # the server's CPU seconds over each visit of `first` and `cached`
    first_cpu: list[float] = field(default_factory=list)
    cached_cpu: list[float] = field(default_factory=list)


# ---- waiting and small actions shared by the clicks ----


def wait_settled(page, drawn: str = "true", after: int = 0, timeout: float = TIMEOUT_MS) -> float:
    """Wait until a script run that started after `after` runs has finished and `drawn` holds;
    return the page's clock (`performance.timeOrigin + now()`, ms) at the frame after the one
    that first saw it hold: that frame has been painted by then."""
    held = f"window.__scriptRuns > {after} && ({SETTLED})() && ({drawn})"
    return page.wait_for_function(
        f"""() => {{
            const now = performance.timeOrigin + performance.now();
            if (!({held})) {{ window.__heldSince = null; return false; }}
            if (window.__heldSince == null) {{ window.__heldSince = now; return false; }}
            window.__heldSince = null;
            return now;
        }}""",
        timeout=timeout,
        polling="raf",  # checked at every frame: a page is seen settled within a frame of it
    ).json_value()


def runs(page) -> int:
    return page.evaluate("window.__scriptRuns")


def wait_drawn(page, drawn: str = "true", after: int = 0) -> float:
    """`wait_settled` with the page's pictures and charts drawn (PAGE_DRAWN) and `drawn`; a page
    that never gets there fails the click, naming what does not hold."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        return wait_settled(page, f"{PAGE_DRAWN} && {drawn}", after)
    except PlaywrightTimeout as error:
        raise ClickFailed(f"never settled: {unmet(page, after, drawn)}") from error


def open_url(page, url: str, drawn: str = "true") -> None:
    """Open `url` and wait until it has settled with its pictures and charts drawn."""
    page.goto(url, timeout=TIMEOUT_MS)
    wait_drawn(page, drawn)


def act(page, action: Callable[[], None], drawn: str = "true") -> None:
    """Do an untimed action that reruns the script, and wait for it to settle."""
    before = runs(page)
    action()
    wait_drawn(page, drawn, before)


def origin(page) -> str:
    return page.evaluate("() => window.location.origin")


def sidebar_link(page, title: str):
    return page.locator('[data-testid="stSidebarNav"] a', has_text=title)


def text_drawn(text: str) -> str:
    return f"document.body.innerText.includes({text!r})"


def in_address(part: str) -> str:
    return f"decodeURIComponent(window.location.search).includes({part!r})"


def image_query(index: int, model: str = PHOTO_MODEL) -> str:
    return f"model={model}&image={quote(f'fashion-mnist:test:{index}')}"


def set_image_number(page, index: int, drawn: str = "true") -> None:
    """Type a Fashion-MNIST test image's number into the sidebar (untimed)."""
    box = page.get_by_role("spinbutton").first
    if box.input_value() == str(index):
        return
    box.fill(str(index))
    act(page, lambda: box.press("Enter"), drawn)


def pressed(locator, position: dict | None = None) -> Callable[[], None]:
    """Bring `locator`'s element into view and find the point to click, `position` in it or its
    centre (untimed); return the click itself: a mouse press at that point.

    Playwright's own `click` first checks that the element is attached, visible, stable over two
    frames, enabled and the one that receives the click (measured: 30-60 ms before the browser
    sees the click). Those checks run here untimed, as a trial click; a person's click is the
    mouse press, so the time starts there."""
    locator.click(position=position, trial=True, timeout=TIMEOUT_MS)
    box = locator.bounding_box(timeout=TIMEOUT_MS)
    if box is None:
        raise ClickFailed(f"{locator} is not on the page")
    x = box["x"] + (position["x"] if position else box["width"] / 2)
    y = box["y"] + (position["y"] if position else box["height"] / 2)
    return lambda: locator.page.mouse.click(x, y)


def key_pressed(locator, key: str) -> Callable[[], None]:
    """Focus `locator`'s element (untimed); return the press of `key` on the keyboard."""
    locator.focus(timeout=TIMEOUT_MS)
    return lambda: locator.page.keyboard.press(key)


def choose_option(page, label: str, typed: str) -> Callable[[], None]:
    """Open the select box labelled `label` and type `typed` into it (untimed); return the click
    on the first option that holds `typed`."""
    page.locator('[data-testid="stSelectbox"]').filter(
        has=page.get_by_text(label, exact=True)
    ).click()
    page.keyboard.type(typed)
    option = page.get_by_role("option").filter(has_text=typed).first
    option.wait_for(timeout=TIMEOUT_MS)
    return pressed(option)


def segment(page, name: str):
    return page.locator('[data-testid="stButtonGroup"]').get_by_text(name, exact=True).first


# The centre of a Vega mark, on screen, found by its role and fields of its aria-label (Vega
# writes the encoded fields there: "x: 10; y: 46; group: g0; layers: conv1_1").
# A chart mark of `role` whose aria-label matches every one of `patterns` (undefined: none).
FIND_MARK = """([role, patterns]) => {
    const wanted = patterns.map((pattern) => new RegExp(pattern));
    return [...document.querySelectorAll(
        `[data-testid="stVegaLiteChart"] [aria-roledescription="${role}"]`)]
        .find((element) => wanted.every((p) => p.test(element.getAttribute('aria-label') || '')));
}"""
MARK_FOUND = f"(mark) => ({FIND_MARK})(mark) !== undefined"
MARK_CENTRE = f"""(mark) => {{
    const found = ({FIND_MARK})(mark);
    if (!found) return null;
    found.scrollIntoView({{ block: 'center' }});
    const box = found.getBoundingClientRect();
    return [box.x + box.width / 2, box.y + box.height / 2];
}}"""


def segment_after(page, url: str, opened: str, name: str, drawn: str) -> Aim:
    """Open `url` (untimed, until `opened` holds); return the click on the segmented control's
    option `name`, settled when `drawn` holds."""
    open_url(page, url, opened)
    return Aim(pressed(segment(page, name)), drawn)


def mark_patterns(fields: dict[str, object]) -> list[str]:
    """Patterns of an aria-label that holds `fields`."""
    return [f"(^|; ){name}: {re.escape(str(value))}( |;|$)" for name, value in fields.items()]


def mark_drawn(role: str, drawn: bool = True, **fields: object) -> str:
    """A condition: a chart mark of `role` whose aria-label holds `fields` is drawn (or not)."""
    found = f"({MARK_FOUND})({json.dumps([role, mark_patterns(fields)])})"
    return found if drawn else f"!{found}"


def chart_mark(page, role: str, **fields: object) -> Callable[[], None]:
    """Scroll to the chart mark of `role` whose aria-label holds `fields` (untimed); return the
    click on its centre."""
    patterns = mark_patterns(fields)
    centre = page.evaluate(f"({MARK_CENTRE})", [role, patterns])
    if centre is None:
        raise ClickFailed(f"no {role} with {fields} in a chart")
    return lambda: page.mouse.click(*centre)


def chain_shapes(page, rgb: tuple[int, int, int], size: tuple[int, int], x_range=(0, 1e9)):
    frame = page.frame_locator('iframe[title="streamlit_agraph.agraph"]')
    return frame.locator("canvas").first.evaluate(
        f"(canvas) => ({FIND_SHAPES})([canvas, {list(rgb)}, {list(size)}, {x_range[0]}, "
        f"{min(x_range[1], 1e9)}])"
    )


def chain_click(page, corner: tuple[float, float], inset=(10, 10)) -> Callable[[], None]:
    """Scroll the chain's box to show `corner` (untimed); return the click on it."""
    page.locator(".st-key-chain_view").evaluate(
        f"(box) => {{ box.scrollTop = Math.max(0, {corner[1]} - 150); }}"
    )
    canvas = page.frame_locator('iframe[title="streamlit_agraph.agraph"]').locator("canvas").first
    position = {"x": corner[0] + inset[0], "y": corner[1] + inset[1]}
    return pressed(canvas, position)


def nth(shapes: list, index: int, what: str):
    if index >= len(shapes):
        raise ClickFailed(f"{what} {index + 1} not found ({len(shapes)} drawn)")
    return shapes[index]


# ---- the clicks ----


def open_page_click(title: str, path: str, model: str, base: int, drawn: str) -> Click:
    """A sidebar link from Home to `title`, each first visit on a new image."""

    def aim(page, index):
        if page.evaluate("() => window.location.pathname") != "/":
            act(page, lambda: sidebar_link(page, "Home").click())
        set_image_number(page, index)
        return Aim(
            pressed(sidebar_link(page, title)),
            f"window.location.pathname.endsWith('/{path}') && {drawn}",
        )

    return Click(lambda: f"/?{image_query(base, model)}", lambda i: base + i, aim)


def change_image(base: int) -> Click:
    """The sidebar's image number on the Network page (the chain redrawn for another image)."""

    def aim(page, index):
        box = page.get_by_role("spinbutton").first
        box.fill(str(index))
        return Aim(
            key_pressed(box, "Enter"),
            f"{text_drawn(f'fashion-mnist:test:{index} (')} && {CHAIN_DRAWN} && {IMAGES_LOADED}",
        )

    return Click(lambda: f"/network?{image_query(base)}", lambda i: base + 1 + i, aim)


def chain_group(base: int) -> Click:
    """A collapsed block of EfficientNet-Lite0's chain opens (all closed before each click); each
    image's blocks in turn, then the next image's (a block opened on an image it was not opened on
    before draws pictures the server has not drawn)."""
    blocks = len(model_graph(PHOTO_MODEL).groups)

    def aim(page, pair):
        image, block = pair
        set_image_number(page, image, CHAIN_DRAWN)
        if chain_shapes(page, HEADER_YELLOW, BOX):
            act(page, lambda: page.get_by_role("button", name="Collapse all").click(), CHAIN_DRAWN)
        corner = nth(chain_shapes(page, GROUP_YELLOW, BOX), block, "collapsed block")
        return Aim(chain_click(page, corner), f"{CHAIN_DRAWN} && {header_drawn()}")

    return Click(
        lambda: f"/network?{image_query(base)}", lambda i: image_and_item(base, blocks, i), aim
    )


def header_drawn() -> str:
    r, g, b = HEADER_YELLOW
    return f"""(() => {{
        const canvas = {CHAIN_CANVAS};
        const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width,
            canvas.height).data;
        for (let i = 0; i < pixels.length; i += 4 * 3)
            if (pixels[i] === {r} && pixels[i + 1] === {g} && pixels[i + 2] === {b}) return true;
        return false;
    }})()"""


def chain_node(base: int) -> Click:
    """A conv layer's box in the expanded chain: its details beside the chain."""

    def aim(page, index):
        if chain_shapes(page, GROUP_YELLOW, BOX):
            act(page, lambda: page.get_by_role("button", name="Expand all").click(), CHAIN_DRAWN)
        boxes = chain_shapes(page, CONV_BLUE, BOX, (0, pictures_start(page)))
        corner = nth(boxes, index, "conv box")
        before = page.evaluate("() => window.location.search")
        return Aim(
            chain_click(page, corner, (20, 12)),
            f"window.location.search !== {before!r} && {text_drawn('Receptive field')}"
            f" && {CHAIN_DRAWN}",
        )

    return Click(lambda: f"/network?{image_query(base)}", lambda i: 2 * i, aim)


def pictures_start(page) -> float:
    """Where the chain's boxes end and the pictures begin, in CSS pixels of the canvas: right of
    the boxes, which start furthest left (blue conv boxes or yellow blocks)."""
    shapes = chain_shapes(page, CONV_BLUE, BOX) + chain_shapes(page, GROUP_YELLOW, BOX)
    return min(x for x, _ in shapes) + BOX[0] if shapes else 0


def chain_picture(base: int) -> Click:
    """A feature-map picture beside a block: its filter opens in Filters; each image's first
    pictures in turn, then the next image's."""

    def aim(page, pair):
        image, index = pair
        if not page.evaluate("() => window.location.pathname").endswith("/network"):
            act(page, lambda: sidebar_link(page, "Network").click(), CHAIN_DRAWN)
        set_image_number(page, image, CHAIN_DRAWN)
        pictures = chain_shapes(page, CONV_BLUE, PICTURE, (pictures_start(page), 1e9))
        corner = nth(pictures, index, "feature-map picture")
        return Aim(
            chain_click(page, corner),
            "window.location.pathname.endsWith('/filters')"
            f" && {text_drawn(' · filter ')} && {IMAGES_LOADED}",
        )

    # The first two blocks' pictures only: further down, the maps' own colours pass for frames
    # in the canvas' pixels (17 "pictures" found where 24 are drawn), and a click misses.
    return Click(lambda: f"/network?{image_query(base)}", lambda i: image_and_item(base, 8, i), aim)


def image_and_item(base: int, items: int, index: int) -> tuple[int, int]:
    """The `index`-th first input of a click that has `items` targets on an image: image `base`'s
    targets in turn, then image `base + 1`'s, and so on."""
    return base + index // items, index % items


FILTERS_DRAWN = (
    f"{IMAGES_LOADED} && {CHARTS_DRAWN} && !document.querySelector('[data-testid=\"stProgress\"]')"
)


def filter_tile_target(page, channel: int):
    """Filter `channel`'s tile: a mark in the grid's chart (a numbered button before)."""
    button = page.get_by_role("button", name=re.compile(rf"^{channel}( .)?$"))
    if button.count():
        return pressed(button.first)
    return chart_mark(page, "rect mark", filter=channel)


def filter_tile(base: int, model: str = PHOTO_MODEL, layer: str = "_conv_stem") -> Click:
    """A filter's number under its tile: the filter magnified, its guided back-propagation, its
    annotation and its top patches."""

    def aim(page, channel):
        return Aim(
            filter_tile_target(page, channel),
            f"{text_drawn(f'{layer} · filter {channel}')} && {FILTERS_DRAWN}",
        )

    return Click(lambda: f"/filters?{image_query(base, model)}&layer={layer}", lambda i: i, aim)


def layer_width(model: str, node: str) -> int:
    """The number of channels (or units) of `model`'s layer `node`."""
    return model_graph(model).node(node).output_shape[0]


def model_graph(model: str):
    from convlens.graph import build_graph
    from convlens.models import load_model

    loaded = load_model(model)
    return build_graph(loaded.module, loaded.input_size)


def layer_ids(model: str) -> list[str]:
    """The conv and linear chain nodes the Filters page offers, in its order."""
    return [n.id for n in model_graph(model).chain if n.type == "conv"]


def current_layer(page) -> str:
    return page.evaluate("() => new URLSearchParams(window.location.search).get('layer') || ''")


def pick_layer(page, layer: str, drawn: str = FILTERS_DRAWN) -> None:
    """Select `layer` on the Filters page (untimed), unless it is shown."""
    if current_layer(page) != layer:
        act(page, choose_option(page, "Layer", f"{layer}  ("), drawn)


def layer_click(base: int, layers: list[str]) -> Click:
    """The Filters page's Layer select box: another layer's tiles."""

    def aim(page, layer):
        fire = choose_option(page, "Layer", f"{layer}  (")
        return Aim(fire, f"{in_address(f'layer={layer}')} && {FILTERS_DRAWN}")

    return Click(
        lambda: f"/filters?{image_query(base)}",
        lambda i: layers[(2 * i + 1) % len(layers)],
        aim,
        first_limit=len(layers) // 2,
    )


def guided_click(base: int, layers: list[str]) -> Click:
    """Show: guided back-propagation for a page of a layer's filters (activations before)."""

    def aim(page, layer):
        # activations first: the guided view of the next layer is what the click computes
        if "guided" in page.evaluate("() => decodeURIComponent(window.location.search)"):
            act(page, lambda: segment(page, "activation").click(), FILTERS_DRAWN)
        pick_layer(page, layer)
        return Aim(
            pressed(segment(page, "guided back-propagation")),
            f"{in_address('show=guided')} && {FILTERS_DRAWN}",
        )

    # every fourth layer first, so that a few visits sample the whole network (a layer's cost
    # grows with its depth)
    spread = [layers[k] for offset in range(4) for k in range(offset, len(layers), 4)]
    return Click(
        lambda: f"/filters?{image_query(base)}",
        lambda i: spread[i % len(spread)],
        aim,
        first_limit=len(spread),
    )


def sort_click(base: int, layers: list[str]) -> Click:
    """Sort by: the mean activation on the image (filter number before)."""

    def aim(page, layer):
        if "sort=mean" in page.evaluate("() => window.location.search"):
            act(page, choose_option(page, "Sort by", "filter number"), FILTERS_DRAWN)
        pick_layer(page, layer)
        return Aim(
            choose_option(page, "Sort by", "mean activation"),
            f"{in_address('sort=mean')} && {FILTERS_DRAWN}",
        )

    # every fourth layer first, so that a few visits sample the whole network (a layer's cost
    # grows with its depth)
    spread = [layers[k] for offset in range(4) for k in range(offset, len(layers), 4)]
    return Click(
        lambda: f"/filters?{image_query(base)}",
        lambda i: spread[i % len(spread)],
        aim,
        first_limit=len(spread),
    )


def mark_filter(base: int, layer: str = "_conv_stem") -> Click:
    """Save an annotation: a filter marked useful, by an author already named."""

    def aim(page, channel):
        if f"filter={channel}" not in page.evaluate("() => window.location.search"):
            act(
                page,
                filter_tile_target(page, channel),
                f"{text_drawn(f'{layer} · filter {channel}')} && {FILTERS_DRAWN}",
            )
        name = page.get_by_role("textbox", name="Your name")
        if name.input_value() != "bench":
            name.fill("bench")
            act(page, lambda: name.press("Enter"))
        page.locator('[data-testid="stForm"]').get_by_text("useful", exact=True).click()
        return Aim(
            pressed(page.get_by_role("button", name="Save annotation")),
            f"{text_drawn('Latest: useful by bench')} && {FILTERS_DRAWN}",
        )

    return Click(
        lambda: f"/filters?{image_query(base)}&layer={layer}", lambda i: i, aim, first_limit=32
    )


# The magnified map: the chart of one image mark (the tile grid's chart has one per filter).
MAGNIFIED_MAP = """() => {
    const image = [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')]
        .map((chart) => chart.querySelectorAll('[aria-roledescription="image mark"]'))
        .filter((images) => images.length === 1).map((images) => images[0])[0];
    if (!image) return null;
    image.scrollIntoView({ block: 'center' });
    const box = image.getBoundingClientRect();
    return { x: box.x, y: box.y, width: box.width, height: box.height };
}"""
MAP_SIDE = 112  # EfficientNet-Lite0's first layer: 112 x 112 positions


def map_point(base: int, layer: str = "_conv_stem", channel: int = 1) -> Click:
    """A position on the magnified activation map: the dialog that explains its value."""

    def aim(page, at):
        if page.locator('[role="dialog"]').count():
            act(page, lambda: page.keyboard.press("Escape"))
        # a page opened by its URL may settle once before its first full run draws the map
        page.wait_for_function(f"({MAGNIFIED_MAP})() !== null", timeout=TIMEOUT_MS, polling=100)
        box = page.evaluate(MAGNIFIED_MAP)
        if box is None:
            raise ClickFailed("no activation map to click")
        y, x = at
        point = (
            box["x"] + (x + 0.5) * box["width"] / MAP_SIDE,
            box["y"] + (y + 0.5) * box["height"] / MAP_SIDE,
        )
        return Aim(
            lambda: page.mouse.click(*point),
            "document.querySelector('[role=dialog]') && document.querySelector('[role=dialog]')"
            f".innerText.includes('map shows') && {in_address(f'at={y},{x}')} && {CHARTS_DRAWN}",
        )

    return Click(
        lambda: f"/filters?{image_query(base)}&layer={layer}&filter={channel}",
        lambda i: (8 + 5 * i % 96, 4 + 7 * i % 100),
        aim,
    )


PICTURE_DRAWN = f"{CHARTS_DRAWN}"


def cnnvis_url(model: str, groups: str = "", facet: str = "") -> str:
    query = f"model={model}" + (f"&groups={groups}" if groups else "")
    return f"/cnnvis?{query}" + (f"&facet={facet}" if facet else "")


def pick_model(page, model: str) -> None:
    """Pick `model` in the sidebar's Model box (untimed), unless it is the one shown."""
    if page.evaluate("() => new URLSearchParams(location.search).get('model')") == model:
        return
    page.locator('[data-testid="stSelectbox"]').filter(
        has=page.get_by_text("Model", exact=True)
    ).click()
    page.keyboard.type(model)
    option = page.get_by_role("option").filter(has_text=re.compile(f"^{re.escape(model)}$"))
    act(page, pressed(option.first))


def open_cnnvis() -> Click:
    """The sidebar link from Home to CNNVis, each first visit on another shipped model picked on
    Home (untimed). Home is reached by its sidebar link, as the other pages' openings reach it: in
    the page the student has open. (Until 2026-12-06 Home was loaded anew before each visit: a new
    document and session, whose JavaScript compiles again and whose browser holds none of the
    page's elements; ~0.25 s more per cached visit, measured alternated: median 0.58 against 0.33.)"""

    def aim(page, model):
        if page.evaluate("() => window.location.pathname") != "/":
            act(page, lambda: sidebar_link(page, "Home").click())
        pick_model(page, model)
        return Aim(
            pressed(sidebar_link(page, "CNNVis")),
            f"window.location.pathname.endsWith('/cnnvis') && {PICTURE_DRAWN}",
        )

    return Click(
        lambda: "/",
        lambda i: CNNVIS_MODELS[i % len(CNNVIS_MODELS)],
        aim,
        first_limit=len(CNNVIS_MODELS),
    )


def gray_code(bits: int) -> list[int]:
    return [i ^ (i >> 1) for i in range(2**bits)]


def cnnvis_group_inputs(models: tuple[str, ...]) -> list[tuple[str, str]]:
    """(model, group) clicks that each open a set of expanded groups not drawn before: a Gray
    code over the first three groups g1..g3 of each model, from the default (g3 alone)."""
    clicks = []
    for model in models:
        states = [code ^ 0b100 for code in gray_code(3)]  # starts at {g3}, the default
        for before, after in zip(states, states[1:], strict=False):
            flipped = (before ^ after).bit_length()  # 1, 2 or 3
            clicks.append((model, f"g{flipped}"))
    return clicks


GROUP_MODELS = ("fashion_basecnn", "fashion_basecnn_hinge", "fashion_basecnn_hinge_bn")


def cnnvis_group() -> Click:
    """A group's column or header in the CNNVis picture: it expands or collapses."""
    inputs = cnnvis_group_inputs(GROUP_MODELS)

    def aim(page, pair):
        model, group = pair
        shown = "() => new URLSearchParams(window.location.search).get('model')"
        if page.evaluate(shown) != model:  # "model=a" is also in "model=a_b"
            open_url(page, f"{origin(page)}{cnnvis_url(model)}", PICTURE_DRAWN)
        before = page.evaluate(
            "() => new URLSearchParams(window.location.search).get('groups') || ''"
        )
        try:  # a collapsed group's column, or an expanded one's header
            click, collapsed = chart_mark(page, "rect mark", group=group), True
        except ClickFailed:
            click, collapsed = chart_mark(page, "text mark", group=group), False
        return Aim(  # drawn: the group's column there once it is collapsed, gone once expanded
            click,
            f"new URLSearchParams(window.location.search).get('groups') !== {before!r}"
            f" && {mark_drawn('rect mark', not collapsed, group=group)} && {PICTURE_DRAWN}",
        )

    return Click(lambda: cnnvis_url(GROUP_MODELS[0]), inputs.__getitem__, aim, len(inputs))


FACET_VIEWS = [
    (model, groups)
    for groups in ("g3", "g2,g3", "g1,g3", "g1,g2,g3")
    for model in (
        "fashion_basecnn_x0.25",
        "fashion_basecnn_shallow",
        "fashion_deepeyes_small",
        "fashion_deepeyes",
        "fashion_basecnn_hinge_bn",
    )
]


def cnnvis_facet() -> Click:
    """The Facet control: activations (the features facet before)."""

    def aim(page, view):
        model, groups = view
        return segment_after(
            page,
            f"{origin(page)}{cnnvis_url(model, groups, 'features')}",
            PICTURE_DRAWN,
            "activations",
            f"{in_address('facet=activations')} && {PICTURE_DRAWN}",
        )

    return Click(lambda: "/", FACET_VIEWS.__getitem__, aim, len(FACET_VIEWS))


def cnnvis_neuron(model: str = "fashion_basecnn_x0.25") -> Click:
    """A neuron in the CNNVis picture's activations facet (a row over its cluster's matrix): its
    dialog with its top patches."""

    def aim(page, neuron):
        if page.locator('[role="dialog"]').count():
            act(page, lambda: page.keyboard.press("Escape"), PICTURE_DRAWN)
        node, number = neuron
        return Aim(
            chart_mark(page, "rect mark", node=node, neuron=number),
            f"document.querySelector('[role=dialog]') && {text_drawn(f'{node} · neuron {number}')}"
            f" && {IMAGES_LOADED}",
        )

    node = "features.conv2_1"
    return Click(
        lambda: cnnvis_url(model, "g1,g2,g3", "activations"),
        lambda i: (node, i),
        aim,
        first_limit=layer_width(model, node),  # a neuron past the layer's last is no input
    )


def deepeyes_url(run: str, step: int, view: str, layer: str) -> str:
    return f"/deepeyes?run={run}&de_step={step}&de_view={view}&de_layer={layer}"


def snapshot_steps(run: str) -> list[int]:
    from convlens.runformat import list_snapshots, shipped_run

    return list_snapshots(shipped_run(run))


LAYER_DRAWN = f"{text_drawn('Filter map:')} && {CHARTS_DRAWN} && {IMAGES_LOADED}"


def deepeyes_section(layer: str = "features.conv2") -> Click:
    """The section picker: Layer (Training before), on a snapshot not shown before."""
    inputs = [(run, step) for run in DEEPEYES_RUNS for step in snapshot_steps(run)]

    def aim(page, pair):
        run, step = pair
        return segment_after(
            page,
            f"{origin(page)}{deepeyes_url(run, step, 'training', layer)}",
            CHARTS_DRAWN,
            "Layer",
            f"{in_address('de_view=layer')} && {text_drawn(f'step {step}')} && {LAYER_DRAWN}",
        )

    return Click(lambda: "/", inputs.__getitem__, aim, len(inputs))


def deepeyes_step(layer: str = "features.conv1") -> Click:
    """The snapshot slider moved one step back, on the Layer section."""
    inputs = [
        (run, steps[index], steps[index + 1])
        for run in DEEPEYES_RUNS
        for steps in [snapshot_steps(run)]
        for index in reversed(range(len(steps) - 1))
    ]

    def aim(page, triple):
        run, step, later = triple
        query = page.evaluate("() => Object.fromEntries(new URLSearchParams(location.search))")
        if query.get("de_step") != str(later) or query.get("run") != run:
            open_url(page, f"{origin(page)}{deepeyes_url(run, later, 'layer', layer)}", LAYER_DRAWN)
        thumb = page.get_by_role("slider").first  # the snapshot step
        return Aim(
            key_pressed(thumb, "ArrowLeft"),
            f"{in_address(f'de_step={step}')} && {text_drawn(f'Snapshot at step {step}')}"
            f" && {LAYER_DRAWN}",
        )

    return Click(lambda: "/", inputs.__getitem__, aim, len(inputs))


def deepeyes_filter(run: str = "fashion_deepeyes", layer: str = "features.conv2") -> Click:
    """A filter's point in the filter map: the patches it fires on."""

    def aim(page, channel):
        if not page.evaluate("() => window.location.pathname").endswith("/deepeyes"):
            open_url(page, origin(page) + start(), LAYER_DRAWN)
        return Aim(
            chart_mark(page, "point", filter=channel),
            f"{text_drawn(f'Filter {channel} fires on')} && {LAYER_DRAWN}",
        )

    def start() -> str:
        return deepeyes_url(run, snapshot_steps(run)[-1], "layer", layer)

    return Click(start, lambda i: i, aim)


def clicks() -> dict[str, Click]:
    """The standard clicks, each with its own images (a block of 200 test images each)."""
    layers = layer_ids(PHOTO_MODEL)
    return {
        "open-network": open_page_click("Network", "network", PHOTO_MODEL, 200, CHAIN_DRAWN),
        "open-filters": open_page_click("Filters", "filters", PHOTO_MODEL, 400, FILTERS_DRAWN),
        "change-image": change_image(600),
        "chain-group": chain_group(800),
        "chain-node": chain_node(1000),
        "chain-picture": chain_picture(1200),
        "filter-tile": filter_tile(1400),
        "filter-tile-fashion": filter_tile(1600, FASHION_MODEL, "features.conv2_1"),
        "layer": layer_click(1800, layers),
        "guided": guided_click(2000, layers),
        "sort": sort_click(2200, layers),
        "mark-filter": mark_filter(2400),
        "map-point": map_point(2600),
        "open-cnnvis": open_cnnvis(),
        "cnnvis-group": cnnvis_group(),
        "cnnvis-facet": cnnvis_facet(),
        "cnnvis-neuron": cnnvis_neuron(),
        "deepeyes-section": deepeyes_section(),
        "deepeyes-step": deepeyes_step(),
        "deepeyes-filter": deepeyes_filter(),
    }


# ---- measuring ----


def visit(page, click: Click, value: object, server: int) -> tuple[float, float]:
    """Aim `click` at `value` (untimed), fire it and return the seconds until the page settles
    and the CPU seconds that the process `server` spent meanwhile."""
    aim = click.aim(page, value)
    before = runs(page)
    page.evaluate("() => { window.__pressedAt = null; }")
    cpu = process_cpu_seconds(server)
    aim.fire()
    settled = wait_drawn(page, aim.drawn, before)
    cpu = process_cpu_seconds(server) - cpu
    pressed = page.evaluate("() => window.__pressedAt")
    if pressed is None:
        raise ClickFailed("the browser saw no press of a mouse button or key")
    if pressed > settled:
        raise ClickFailed("the press was stamped after the page settled: the clocks disagree")
    return (settled - pressed) / 1000, cpu


def unmet(page, before: int, drawn: str) -> str:
    """Say which of a wait's conditions does not hold now."""
    tests = {
        "a script run finished": f"window.__scriptRuns > {before}",
        "settled": f"({SETTLED})()",
        "the pictures loaded": IMAGES_LOADED,
        "the charts drawn": EVERY_CHART_DRAWN,
        "the chain inked": CHAIN_INKED,
        "the element asked for drawn": drawn,
    }
    failing = [name for name, test in tests.items() if not page.evaluate(f"() => {test}")]
    return ", ".join(failing) or "all hold now"


def measure(profile, base: str, name: str, click: Click, first: int, cached: int) -> Measured:
    """Time `click`'s visits in a new tab of the browser `profile`."""
    from playwright.sync_api import Error as PlaywrightError

    result = Measured()
    page = profile.new_page()

    def restart() -> None:
        open_url(page, base + click.start())

    def timed(value: object) -> tuple[float, float] | None:
        try:
            return visit(page, click, value, SERVER_PIDS[base])
        except (PlaywrightError, ClickFailed) as error:
            address = page.evaluate("() => decodeURIComponent(window.location.href)")
            result.failures.append(f"{value}: {str(error).splitlines()[0][:160]} at {address}")
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(PlaywrightError):
                page.screenshot(path=str(SCREENSHOTS / f"{name}-{len(result.failures)}.png"))
            with contextlib.suppress(PlaywrightError):
                restart()
            return None

    try:
        restart()
        count = min(first, click.first_limit or first)
        inputs = [click.first(i) for i in range(count)]
        for value in inputs:
            spent = timed(value)
            if spent is not None:
                result.first.append(spent[0])
                result.first_cpu.append(spent[1])
        if cached:
            pair = [click.first(0), click.first(1)]
            for value in pair:  # seen by the first visits; once more in case those failed
                timed(value)
            for i in range(cached):
                spent = timed(pair[i % 2])
                if spent is not None:
                    result.cached.append(spent[0])
                    result.cached_cpu.append(spent[1])
    except (PlaywrightError, ClickFailed) as error:
        result.failures.append(f"start: {str(error).splitlines()[0][:160]}")
    finally:
        page.close()
    return result


# Opened once before any measurement, as an instructor would before the class: each page's
# first run in the server process imports its modules (torch, captum, Altair, CNNVis: ~10 s of
# CPU), a cost of the server's start, not of a click; the browser profile loads each page's code.
# Their inputs are none of the clicks' (CNNVis: EfficientNet-Lite0 on Fashion-MNIST, analysed
# for this before the server starts).
WARM_UP_URLS = (
    "/?image=sample:chelsea",
    "/network?image=sample:chelsea",
    f"/filters?image=sample:chelsea&layer=_conv_stem&show={quote('guided back-propagation')}",
    "/annotations",
    f"/cnnvis?model={PHOTO_MODEL}&image=sample:chelsea",
    "/deepeyes",
    "/training",
)


def warm_up(profile, url: str) -> None:
    """Open every page once, untimed, in a tab of the browser `profile` (see WARM_UP_URLS)."""
    from playwright.sync_api import Error as PlaywrightError

    started = time.monotonic()
    page = profile.new_page()
    for path in WARM_UP_URLS:
        try:
            open_url(page, url + path)
        except PlaywrightError as error:
            print(f"warm-up of {path} failed: {str(error).splitlines()[0][:160]}", flush=True)
    page.close()
    print(f"every page opened once before measuring ({time.monotonic() - started:.0f} s)")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def forward_seconds(model_name: str, source: str) -> float:
    """The median of five plain forward passes of `model_name` on one image, preprocessed."""
    import torch

    from convlens.data import load_image
    from convlens.models import load_model
    from convlens.predict import input_batch

    model = load_model(model_name)
    image = load_image(source).image
    times = []
    with torch.inference_mode():
        for _ in range(6):
            start = time.perf_counter()
            model.module(input_batch(model, image))
            times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def prepared_home(path: str | None) -> Path:
    """Set `$CONVLENS_HOME` to `path` (a fresh folder without one) and prepare it as the app's
    first start leaves it, with what the warm-up and the clicks open analysed (see the top)."""
    home = Path(path or tempfile.mkdtemp(prefix="convlens-interactions-"))
    os.environ["CONVLENS_HOME"] = str(home)
    os.environ["CONVLENS_OFFLINE"] = "1"
    from convlens.activations import SHIPPED_DATA, analyze
    from convlens.models import load_model

    prepare_as_first_start()
    photo_model = load_model(PHOTO_MODEL)
    analyze(photo_model, "samples")
    analyze(photo_model, SHIPPED_DATA)  # the warm-up's CNNVis picture: a model no click opens
    return home


@contextlib.contextmanager
def served_profile(home: Path) -> Iterator[tuple[object, str]]:
    """Start the app on `home` with the README's command and a headless Chromium at 1280x720;
    yield a browser profile that has opened every page once (`warm_up`), and the app's URL."""
    from playwright.sync_api import sync_playwright

    environment = {"CONVLENS_HOME": str(home), "CONVLENS_PREPARE": "0", "CONVLENS_OFFLINE": "1"}
    with (
        app_server(environment, timeout=300, launcher="convlens") as url,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        profile = browser.new_context(viewport={"width": 1280, "height": 720})
        profile.add_init_script(RUN_COUNTER)
        profile.add_init_script(PRESS_CLOCK)
        warm_up(profile, url)
        try:
            yield profile, url
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", default="", help="comma-separated click names (default: all)")
    parser.add_argument("--first", type=int, default=20, help="first visits per click")
    parser.add_argument("--cached", type=int, default=5, help="cached visits per click")
    parser.add_argument(
        "--home", help="a ConvLens home prepared before (default: a fresh one, prepared now)"
    )
    args = parser.parse_args()

    home = prepared_home(args.home)
    table = clicks()
    names = args.clicks.split(",") if args.clicks else list(table)
    unknown = [name for name in names if name not in table]
    if unknown:
        parser.error(f"unknown clicks {unknown}; known: {', '.join(table)}")

    results: dict[str, Measured] = {}
    with served_profile(home) as (profile, url):
        print(
            f"{len(names)} clicks, {args.first} first and {args.cached} cached visits each, "
            f"{os.cpu_count()} cores; seconds until the page settles"
        )
        for name in names:
            started = time.monotonic()
            result = measure(profile, url, name, table[name], args.first, args.cached)
            results[name] = result
            print(report_line(name, result, time.monotonic() - started), flush=True)
            for failure in result.failures[:3]:
                print(f"    failed {failure}", flush=True)

    for model, source in ((PHOTO_MODEL, "sample:chelsea"), (FASHION_MODEL, "fashion-mnist:test:0")):
        print(f"plain forward pass, one image: {model} {forward_seconds(model, source):.3f} s")
    measured = {name: r for name, r in results.items() if r.first}
    failed = [name for name, r in results.items() if r.failures]
    if failed:
        print(f"failed visits in: {', '.join(failed)}")
    cached = [s for r in results.values() for s in r.cached]
    server = {name: statistics.fmean(r.cached_cpu) for name, r in results.items() if r.cached_cpu}
    if server:
        heaviest = max(server, key=server.get)
        print(f"cached_server_cpu_max={server[heaviest]:.3f} ({heaviest})")
    print(f"cached_max={max(cached):.3f}" if cached else "cached_max=failed")
    if measured:
        worst = max(measured, key=lambda n: percentile(measured[n].first, 0.95))
        print(f"worst first visits: {worst}")
        print(f"p95_max={percentile(measured[worst].first, 0.95):.3f}")
    else:
        print("p95_max=failed")


def report_line(name: str, result: Measured, seconds: float) -> str:
    first, cached = result.first, result.cached
    line = f"{name:20s} "
    if first:
        line += (
            f"first n={len(first):2d} median {statistics.median(first):6.3f} "
            f"p95 {percentile(first, 0.95):6.3f} max {max(first):6.3f}   "
        )
    else:
        line += f"first {'failed':>44s}   "
    if cached:
        line += (
            f"cached n={len(cached)} median {statistics.median(cached):6.3f} max {max(cached):6.3f}"
        )
    else:
        line += "cached failed" if result.failures else "cached -"
    spent = [
        f"{kind} {statistics.fmean(cpu):.3f}"
        for kind, cpu in (("first", result.first_cpu), ("cached", result.cached_cpu))
        if cpu
    ]
    if spent:
        line += f"   server CPU-s a visit: {', '.join(spent)}"
    failures = f"  ({len(result.failures)} failed)" if result.failures else ""
    return f"{line}{failures}  [{seconds:.0f} s]"


if __name__ == "__main__":
    main()
