"""Every page at a projector's 1280x720 in Debian's Chromium: no element sticks out of its column
and no label, value or command is cut short (issue 18). Each view's screenshot is saved for a look.

Canvas-drawn text (st.dataframe's cells, the chain's and the charts' labels) is not in the page's
DOM and is not checked here."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from browser import app_server, browser_page, require_chromium, wait_for_app
from convlens.activations import SHIPPED_DATA, analyze
from convlens.models import load_model

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots" / "layout"
PROJECTOR = {"width": 1280, "height": 720}
# CNNVis needs a dataset analysis; this model's takes a couple of seconds.
CNNVIS_MODEL = "fashion_basecnn_x0.25"
FASHION = "image=fashion-mnist%3Atest%3A0"
CAT = "model=efficientnet_lite0&image=sample%3Achelsea"

pytestmark = pytest.mark.browser

require_chromium()

# (name of the screenshot, the view's path and query): each page's default view and the denser
# bookmarked ones of README's "Teach a lecture".
VIEWS = (
    ("home", "/home"),
    ("network", "/network"),
    ("network_layer", f"/network?{CAT}&layer=_blocks.2._depthwise_conv"),
    ("filters", "/filters"),
    (
        "filters_layer",
        # the longest layer name of the model, and the longest order
        f"/filters?{CAT}&layer=_blocks.12._depthwise_conv&filter=8"
        "&sort=mean%20activation%20on%20this%20image",
    ),
    (
        "filters_guided",
        f"/filters?{CAT}&layer=_blocks.2._depthwise_conv&show=guided%20back-propagation",
    ),
    ("filters_explained", f"/filters?{CAT}&layer=_conv_stem&filter=3&at=50,60"),
    ("cnnvis", f"/cnnvis?model={CNNVIS_MODEL}&{FASHION}"),
    (
        "cnnvis_expanded",
        f"/cnnvis?model={CNNVIS_MODEL}&{FASHION}&groups=g2,g3&facet=activations&classes=0,9",
    ),
    ("deepeyes", "/deepeyes?run=fashion_deepeyes"),
    ("deepeyes_layer", "/deepeyes?run=fashion_deepeyes&de_view=layer"),
    ("deepeyes_diagnosis", "/deepeyes?run=fashion_deepeyes&de_view=diagnosis"),
    ("training", "/training"),
    ("training_failure", "/training?run=fashion_basecnn_hinge"),
    ("annotations", "/annotations"),
)

# Text that a view shows within the projector's first screen, without scrolling.
FIRST_SCREEN = {"training_failure": "Meant to fail"}

# Offenders in the page, each as {what, text, by, element}: (a) a visible element whose box sticks
# out of its column (or the main block, the sidebar, a dialog) by more than 2 px; (b) an element
# whose text is cut short: wider than its box, which hides the rest (overflow not visible, or an
# ellipsis), or cut by Vega with an ellipsis.
OFFENDERS = """() => {
    const SLACK = 2;
    const main = document.querySelector('[data-testid="stMainBlockContainer"]');
    const sidebar = document.querySelector('[data-testid="stSidebarUserContent"]');
    const dialogs = [...document.querySelectorAll('[role="dialog"]')];
    // canvas-drawn or drawn by a component in its own frame: their text is not in this DOM
    const SKIP = '[data-testid="stDataFrame"], [data-testid="stToolbar"], [data-baseweb="tooltip"]';
    // shown, not folded away in a closed expander or popover
    const visible = (element) => {
        const box = element.getBoundingClientRect();
        return element.checkVisibility({visibilityProperty: true, opacityProperty: true})
            && box.width > 0 && box.height > 0 && getComputedStyle(element).position !== 'fixed';
    };
    // a select box shows its value in an input
    const text = (element) => (element.tagName === 'INPUT' ? element.value
        : element.innerText || element.textContent || '').trim().replace(/\\s+/g, ' ').slice(0, 80);
    // how much wider its content is than its box: scrollWidth is rounded, and an ellipsis hides
    // a fraction of a pixel too much, so a text's own width is measured
    const cut = (element, style) => {
        const over = element.scrollWidth - element.clientWidth - 1;
        if (style.textOverflow !== 'ellipsis' || element.tagName === 'INPUT') return over;
        const range = document.createRange();
        range.selectNodeContents(element);
        const inner = element.getBoundingClientRect().width - parseFloat(style.paddingLeft)
            - parseFloat(style.paddingRight) - parseFloat(style.borderLeftWidth)
            - parseFloat(style.borderRightWidth);
        return Math.max(over, range.getBoundingClientRect().width - inner);
    };
    const label = (element) => element.closest('[data-testid]')?.getAttribute('data-testid')
        || element.tagName.toLowerCase();
    const offenders = [];
    for (const root of [main, sidebar, ...dialogs].filter(Boolean)) {
        for (const element of root.querySelectorAll('*')) {
            if (element.closest(SKIP) || !visible(element)) continue;
            // (a) inside its column, the main block, the sidebar or a dialog; what an ancestor
            // scrolls or clips is (b)'s business, on that ancestor
            const column = element.parentElement.closest('[data-testid="stColumn"]') || root;
            let clipped = false;
            for (let up = element.parentElement; up && up !== column; up = up.parentElement) {
                if (getComputedStyle(up).overflowX !== 'visible') { clipped = true; break; }
            }
            const box = element.getBoundingClientRect();
            const bounds = column.getBoundingClientRect();
            if (!clipped && (box.left < bounds.left - SLACK || box.right > bounds.right + SLACK)) {
                offenders.push({what: 'sticks out of its column', text: text(element),
                                by: Math.round(Math.max(bounds.left - box.left,
                                                        box.right - bounds.right)),
                                element: label(element)});
            }
            // (b) its text cut short: by its box, or by Vega's ellipsis (a mark's `limit`)
            const style = getComputedStyle(element);
            const hides = style.overflowX !== 'visible' || style.textOverflow === 'ellipsis';
            if (hides && text(element) && cut(element, style) > 0.5) {
                offenders.push({what: 'text cut short', text: text(element),
                                by: Math.round(cut(element, style)), element: label(element)});
            }
            if (element.tagName === 'text' && element.closest('[data-testid="stVegaLiteChart"]')
                && element.textContent.endsWith('…')) {
                offenders.push({what: 'text cut short', text: text(element), by: '?',
                                element: 'stVegaLiteChart'});
            }
        }
    }
    const page = document.documentElement;
    if (page.scrollWidth > page.clientWidth + 1) {
        offenders.push({what: 'the page scrolls sideways', text: '',
                        by: page.scrollWidth - page.clientWidth, element: 'html'});
    }
    return offenders;
}"""

# Open the expanders a person can click (not those behind a dialog or in a hidden tab); return
# how many.
OPEN_EXPANDERS = """() => {
    const closed = [...document.querySelectorAll(
        '[data-testid="stExpander"] details:not([open]) > summary')]
        .filter((summary) => summary.checkVisibility() && !summary.closest('[inert]'));
    closed.forEach((summary) => summary.click());
    return closed.length;
}"""

# The page has settled: the script ran, nothing is loading, and the layout has stopped moving.
SETTLED = """() => {
    const busy = document.querySelector(
        '[data-testid="stSpinner"], [data-testid="stSkeleton"], .stSpinner');
    const images = [...document.images].every((image) => image.complete);
    return busy ? null : images && [document.body.innerText.length,
                                    document.body.scrollHeight].join(',');
}"""


def settle(page, timeout: float = 120) -> None:
    """Wait until the page's script has run and its text and height stay the same for a second."""
    deadline = time.monotonic() + timeout
    wait_for_app(page, timeout=timeout * 1000)
    last, same = None, 0
    while same < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
        now = page.evaluate(SETTLED)
        same = same + 1 if now and now == last else 0
        last = now
    wait_for_app(page, timeout=max(deadline - time.monotonic(), 1) * 1000)


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory):
    """One app server for every view, with CNNVIS_MODEL's analysis in its home."""
    home = tmp_path_factory.mktemp("layout_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONVLENS_OFFLINE", "1")
        patch.setenv("CONVLENS_HOME", str(home))
        analyze(load_model(CNNVIS_MODEL), SHIPPED_DATA)
    with app_server(env={"CONVLENS_HOME": str(home), "CONVLENS_PREPARE": "0"}) as served:
        yield served


def test_no_element_overflows_its_column_at_1280x720(url: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    found: dict[str, list[dict]] = {}
    with browser_page(**PROJECTOR) as (page, log):
        for name, view in VIEWS:
            page.goto(f"{url}{view}", timeout=120_000)
            settle(page)
            page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
            assert page.locator('[data-testid="stException"]').count() == 0, view
            if name in FIRST_SCREEN:
                shown = page.get_by_text(FIRST_SCREEN[name]).first.bounding_box()
                assert shown and shown["y"] + shown["height"] <= PROJECTOR["height"], (view, shown)
            offenders = page.evaluate(OFFENDERS)
            # and with every expander open (in the browser: the script does not run again)
            if page.evaluate(OPEN_EXPANDERS):
                time.sleep(0.5)
            offenders += [o for o in page.evaluate(OFFENDERS) if o not in offenders]
            if offenders:
                found[view] = offenders
        assert not log.outside_requests
    assert not found, "\n".join(
        f"{view}: {offender['what']} by {offender['by']} px, {offender['element']}: "
        f"{offender['text']!r}"
        for view, offenders in found.items()
        for offender in offenders
    )
