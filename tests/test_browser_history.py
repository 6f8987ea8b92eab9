"""Back and Forward in Debian's Chromium: each change of the view is one entry of the browser's
history, and going back or forward to an entry shows that entry's view again, not only its URL."""

from __future__ import annotations

import pytest
from test_browser import click_tile
from test_browser_deepeyes import wait_for_images

from browser import app_server, browser_page, require_chromium, wait_for_app

pytestmark = pytest.mark.browser

require_chromium()


def wait_for_text(page, text: str, timeout: float = 90_000) -> None:
    page.wait_for_function(
        "(text) => document.body.innerText.includes(text)", arg=text, timeout=timeout
    )


def settled_view(page, text: str, url_part: str) -> None:
    """Wait until the page shows `text` with `url_part` in its address bar, and has finished."""
    page.wait_for_url(f"**{url_part}*", timeout=60_000)
    wait_for_text(page, text)
    wait_for_app(page)
    wait_for_images(page)  # a patch replaced before it loaded is a failed request (404)
    assert url_part in page.url


def test_the_history_script_makes_a_page_switch_one_entry() -> None:
    """`HISTORY_SCRIPT`'s rules, with the pushes Streamlit's page makes, on a page of its own."""
    from convlens.ui.state import HISTORY_SCRIPT

    with browser_page() as (page, log):
        page.route(
            "http://127.0.0.1:9/**",
            lambda route: route.fulfill(body="<p>app</p>", content_type="text/html"),
        )
        script = HISTORY_SCRIPT.removeprefix("<script>").removesuffix("</script>")
        page.goto("http://127.0.0.1:9/network?run=x")
        page.add_script_tag(content=script)
        start = page.evaluate("history.length")

        def push(address: str) -> tuple[int, str]:
            page.evaluate("(address) => history.pushState({}, '', address)", address)
            entries, path, query = page.evaluate(
                "[history.length, location.pathname, location.search]"
            )
            return entries - start, path + query

        # a link's first run writes its view before any input: it replaces the link
        assert push("/network?layer=a") == (0, "/network?layer=a"), "a link's view"
        page.mouse.click(5, 5)  # the person's first input: from now on, a write is a click's

        # st.switch_page: the address of the page it leaves emptied, the switch, the view
        assert push("/network") == (0, "/network?layer=a"), "held"
        assert push("/filters") == (1, "/filters"), "the emptying dropped"
        assert push("/filters?layer=a&filter=1") == (1, "/filters?layer=a&filter=1"), "replaced"
        assert push("/filters?layer=a&filter=2") == (2, "/filters?layer=a&filter=2"), "a click"
        # an emptying that no switch follows is made when the next write comes, or after 2 s
        assert push("/filters") == (2, "/filters?layer=a&filter=2")
        assert push("/filters?layer=b") == (3, "/filters?layer=b")
        page.go_back()
        assert page.url.endswith("/filters?layer=a&filter=2")
        page.go_forward()
        assert push("/filters?embed=true") == (3, "/filters?layer=b"), "embed keys do not count"
        page.wait_for_url("**/filters?embed=true", timeout=5_000)
        assert page.evaluate("history.length") - start == 4
        assert push("/filters?embed=true&layer=c") == (4, "/filters?embed=true&layer=c")
        # a switch that carries the address shown is made, unless Back went through its page
        assert push("/network?embed=true&layer=c") == (5, "/network?embed=true&layer=c")
        assert push("/deepeyes") == (6, "/deepeyes")
        assert push("/deepeyes?run=x") == (6, "/deepeyes?run=x")
        page.go_back()
        page.wait_for_url("**/network?embed=true&layer=c", timeout=5_000)
        page.go_back()
        page.wait_for_url("**/filters?embed=true&layer=c", timeout=5_000)
        # Network's run, begun after Back left it, starts late: not a switch
        assert push("/network?embed=true&layer=c") == (6, "/filters?embed=true&layer=c")
        page.go_forward()
        page.wait_for_url("**/network?embed=true&layer=c", timeout=5_000)
        page.go_forward()
        page.wait_for_url("**/deepeyes?run=x", timeout=5_000)
        # a fast page's view written on the old path, then the switch that moves it: one entry
        assert push("/deepeyes?model=m") == (7, "/deepeyes?model=m")
        assert push("/?model=m") == (7, "/?model=m"), "the misplaced view replaced"
        page.go_back()
        page.wait_for_url("**/deepeyes?run=x", timeout=5_000)
        page.go_forward()
        page.wait_for_url("**/?model=m", timeout=5_000)
        # a switch carrying the address shown a second after this page wrote it is made
        assert push("/?model=n") == (8, "/?model=n")
        page.wait_for_timeout(1_100)
        assert push("/network?model=n") == (9, "/network?model=n")
        # nor one that an input came between: that write was the view of a click before it
        assert push("/network?model=p") == (10, "/network?model=p")
        page.mouse.click(5, 5)
        assert push("/?model=p") == (11, "/?model=p"), "a click's view kept"
        # installed once: drawn again, it does not wrap its own wrapper
        page.evaluate("() => { window.__wrapped = history.pushState; }")
        page.add_script_tag(content=script)
        assert page.evaluate("() => history.pushState === window.__wrapped")

        # a press in a frame (the chain's) is the person's input too
        page.goto("http://127.0.0.1:9/network?layer=a")
        page.add_script_tag(content=script)
        page.evaluate(
            "() => document.body.insertAdjacentHTML('beforeend', "
            "'<iframe srcdoc=\"<button>node</button>\"></iframe>')"
        )
        page.frame_locator("iframe").locator("button").click()
        start = page.evaluate("history.length")
        assert push("/network?layer=b") == (1, "/network?layer=b"), "a click in the frame"

        # so is a key pressed, a keyboard-only person's first input (Tab to a widget)
        page.goto("http://127.0.0.1:9/network?layer=a")
        page.add_script_tag(content=script)
        page.keyboard.press("Tab")
        start = page.evaluate("history.length")
        assert push("/network?layer=b") == (1, "/network?layer=b"), "a key press"

        # only a page's first write answers its link
        page.goto("http://127.0.0.1:9/filters?run=x")
        page.add_script_tag(content=script)
        start = page.evaluate("history.length")
        assert push("/filters?layer=c") == (0, "/filters?layer=c")
        assert push("/filters?layer=d") == (1, "/filters?layer=d")
        # a first write that empties the address is held: dropped by st.switch_page's switch,
        # or made in the link's place
        page.goto("http://127.0.0.1:9/filters?run=x")
        page.add_script_tag(content=script)
        start = page.evaluate("history.length")
        assert push("/filters") == (0, "/filters?run=x"), "held"
        assert push("/network") == (1, "/network"), "dropped: a switch"
        page.go_back()
        page.wait_for_url("**/filters?run=x", timeout=5_000)
        page.goto("http://127.0.0.1:9/filters?run=x")
        page.add_script_tag(content=script)
        start = page.evaluate("history.length")
        assert push("/filters") == (0, "/filters?run=x"), "held"
        page.wait_for_url("**/filters", timeout=5_000)
        assert page.evaluate("history.length") == start, "made after 2 s, in the link's place"
    assert log.console_errors == []


def test_back_and_forward_restore_the_filter_shown(tmp_path) -> None:
    environment = {"CONVLENS_HOME": str(tmp_path / "home"), "CONVLENS_OFFLINE": "1"}
    with app_server(env=environment) as url, browser_page() as (page, log):
        page.goto(
            f"{url}/?model=fashion_basecnn&image=fashion-mnist%3Atest%3A0&layer=features.conv2_1",
            timeout=120_000,
        )
        wait_for_app(page)
        entries = page.evaluate("history.length")
        page.locator('[data-testid="stSidebarNav"] a', has_text="Filters").click()
        page.wait_for_url("**/filters?*", timeout=60_000)
        wait_for_app(page)
        assert page.evaluate("history.length") == entries + 1, "a page switch is one entry"
        click_tile(page, "7")
        settled_view(page, "features.conv2_1 · filter 7", "filter=7")
        click_tile(page, "3")
        settled_view(page, "features.conv2_1 · filter 3", "filter=3")

        page.go_back()
        settled_view(page, "features.conv2_1 · filter 7", "filter=7")
        assert "features.conv2_1 · filter 3" not in page.inner_text("body")
        page.go_forward()
        settled_view(page, "features.conv2_1 · filter 3", "filter=3")
        assert "features.conv2_1 · filter 7" not in page.inner_text("body")

        # the page switch is one entry of the history: its view replaced the bare address
        page.go_back()
        settled_view(page, "features.conv2_1 · filter 7", "filter=7")
        page.go_back()
        page.wait_for_url(lambda address: "filter=" not in address, timeout=60_000)
        assert "/filters?" in page.url and "layer=features.conv2_1" in page.url
        page.go_back()  # before this page's run began: its late start is not a page switch
        page.wait_for_url(lambda address: "/filters" not in address, timeout=60_000)
        wait_for_app(page)
        page.go_forward()
        page.wait_for_url(lambda address: "/filters?" in address, timeout=60_000)
        wait_for_app(page)
        assert "layer=features.conv2_1" in page.url and "filter=" not in page.url
    assert log.outside_requests == []
    assert log.console_errors == [], f"console errors: {log.console_errors[:5]}"


def choose(page, label: str, option: str) -> None:
    """Pick `option` in the selectbox labelled `label`."""
    page.locator('[data-testid="stSelectbox"]').filter(
        has=page.get_by_text(label, exact=True)
    ).click()
    page.get_by_role("option", name=option, exact=True).click()


def test_back_and_forward_restore_deepeyes_sections_and_filters(tmp_path) -> None:
    environment = {"CONVLENS_HOME": str(tmp_path / "home"), "CONVLENS_OFFLINE": "1"}
    with app_server(env=environment) as url, browser_page(1600, 1200) as (page, log):
        page.goto(f"{url}/?run=fashion_deepeyes_small", timeout=120_000)
        wait_for_app(page)
        page.locator('[data-testid="stSidebarNav"] a', has_text="DeepEyes").click()
        settled_view(page, "Change between snapshots", "de_view=training")
        page.locator('[data-testid="stButtonGroup"]').get_by_role("radio", name="Layer").click()
        settled_view(page, "Filter map: 10 filters", "de_view=layer")
        choose(page, "Filter (or click one in a chart)", "filter 3")
        settled_view(page, "Filter 3 fires on", "de_filter=3")
        choose(page, "Filter (or click one in a chart)", "filter 5")
        settled_view(page, "Filter 5 fires on", "de_filter=5")

        page.go_back()
        settled_view(page, "Filter 3 fires on", "de_filter=3")
        page.go_back()
        wait_for_text(page, "Drag a box on the input map, or pick a filter")
        wait_for_app(page)
        wait_for_images(page)
        assert "de_filter" not in page.url and "de_view=layer" in page.url
        assert "fires on" not in page.inner_text("body"), "no filter selected"
        page.go_back()
        settled_view(page, "Change between snapshots", "de_view=training")
        page.go_forward()
        settled_view(page, "Filter map: 10 filters", "de_view=layer")
        page.go_forward()
        settled_view(page, "Filter 3 fires on", "de_filter=3")
        page.go_forward()
        settled_view(page, "Filter 5 fires on", "de_filter=5")
    assert log.outside_requests == []
    assert log.console_errors == [], f"console errors: {log.console_errors[:5]}"


def test_leaving_deepeyes_for_home_is_one_entry_of_the_history(tmp_path) -> None:
    """Home's run may end before the browser has taken DeepEyes down: Streamlit's page then
    writes Home's view on DeepEyes' path first, and moves it to Home's (`HISTORY_SCRIPT`)."""
    environment = {"CONVLENS_HOME": str(tmp_path / "home"), "CONVLENS_OFFLINE": "1"}
    with app_server(env=environment) as url, browser_page() as (page, log):
        page.goto(f"{url}/?run=fashion_deepeyes_small", timeout=120_000)
        wait_for_app(page)
        wait_for_images(page)  # Home's image, left before it loaded, would be a failed request
        page.wait_for_timeout(1_000)
        # Home does not show run=: its first run writes its view in the link's place
        assert page.evaluate("history.length") == 2, "about:blank, then the link's page"
        for _ in range(3):
            page.locator('[data-testid="stSidebarNav"] a', has_text="DeepEyes").click()
            settled_view(page, "Change between snapshots", "de_view=training")
            page.wait_for_timeout(1_000)
            entries = page.evaluate("history.length")
            page.locator('[data-testid="stSidebarNav"] a', has_text="Home").click()
            page.wait_for_url(lambda address: "/deepeyes" not in address, timeout=60_000)
            wait_for_app(page)
            wait_for_images(page)
            page.wait_for_timeout(1_000)
            assert page.evaluate("history.length") == entries + 1
        page.go_back()
        settled_view(page, "Change between snapshots", "de_view=training")
    assert log.outside_requests == []
    assert log.console_errors == [], f"console errors: {log.console_errors[:5]}"


def test_a_run_picked_on_the_training_page_is_in_the_address_bar(tmp_path) -> None:
    """The run picker lives in a fragment that refreshes the runs on its own: picking a run
    there reruns the fragment alone, which must still write the bookmark."""
    environment = {"CONVLENS_HOME": str(tmp_path / "home"), "CONVLENS_OFFLINE": "1"}
    with app_server(env=environment) as url, browser_page() as (page, log):
        # opened from Home: a page's own address first asks for its path's /_stcore/health, a
        # 404 that Streamlit logs (streamlit/streamlit#7074)
        page.goto(f"{url}/?run=fashion_deepeyes_small", timeout=120_000)
        wait_for_app(page)
        wait_for_images(page)  # Home's image, left before it loaded, would be a failed request
        page.locator('[data-testid="stSidebarNav"] a', has_text="Training").click()
        page.wait_for_url("**/training?*run=fashion_deepeyes_small*", timeout=60_000)
        wait_for_app(page)
        choose(page, "Run", "fashion_basecnn")
        page.wait_for_url("**run=fashion_basecnn*", timeout=60_000)
        wait_for_app(page)
        page.go_back()
        page.wait_for_url("**run=fashion_deepeyes_small*", timeout=60_000)
    assert log.outside_requests == []
    assert log.console_errors == [], f"console errors: {log.console_errors[:5]}"
