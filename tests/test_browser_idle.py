"""A lecture room keeps tabs open: a page left alone must not redraw itself on a timer. With no
run training, the Training and DeepEyes pages rerun only for the watch of run folders (every
`NEW_RUN_CHECK_SECONDS`); 20 idle Training tabs redrawn every 2 s took 0.7 of a server core.
The watch still lists a run started elsewhere (a terminal) without a click."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from browser import RUN_COUNTER, app_server, browser_page, require_chromium, wait_for_app
from convlens.ui.run_watch import NEW_RUN_CHECK_SECONDS

pytestmark = pytest.mark.browser

require_chromium()

IDLE_SECONDS = 8


def test_pages_of_runs_left_alone_rerun_only_for_the_watch(tmp_path: Path) -> None:
    with (
        app_server({"CONVLENS_HOME": str(tmp_path)}) as url,
        browser_page(1280, 720) as (page, _),
    ):
        page.context.add_init_script(RUN_COUNTER)
        for path in ("/training", "/deepeyes"):
            page.goto(url + path, timeout=120_000)
            wait_for_app(page)
            time.sleep(1.0)  # a page opened by its address runs its script a second time
            before = page.evaluate("window.__scriptRuns")
            time.sleep(IDLE_SECONDS)
            reruns = page.evaluate("window.__scriptRuns") - before
            # A window of IDLE_SECONDS holds at most IDLE_SECONDS // period + 1 ticks of a timer
            # (8 s: 1 tick of the 30 s watch; the old 2 s refresh gave 4, the 5 s watch 2).
            assert reruns <= IDLE_SECONDS // NEW_RUN_CHECK_SECONDS + 1, (path, reruns)


def test_a_run_folder_that_appears_is_listed_at_the_watch_s_next_tick(tmp_path: Path) -> None:
    with (
        app_server({"CONVLENS_HOME": str(tmp_path)}) as url,
        browser_page(1280, 720) as (page, _),
    ):
        page.goto(url + "/deepeyes", timeout=120_000)
        wait_for_app(page)
        time.sleep(1.0)
        (tmp_path / "runs" / "started_in_a_terminal").mkdir(parents=True)
        picker = page.locator('[data-testid="stSelectbox"]').filter(
            has=page.get_by_text("Run", exact=True)
        )
        deadline = time.monotonic() + NEW_RUN_CHECK_SECONDS + 20
        while time.monotonic() < deadline:
            picker.click()
            listed = page.get_by_role("option", name="started_in_a_terminal (yours)")
            if listed.count():
                return
            page.keyboard.press("Escape")
            time.sleep(2.0)
        raise AssertionError("the new run folder was not listed")
