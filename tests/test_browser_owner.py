"""A browser owns the runs it started, also after a reload; another browser does not (cookies,
which AppTest lacks)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from browser import app_server, browser_page, require_chromium, wait_for_app

pytestmark = pytest.mark.browser

require_chromium()

SMALL = Path(__file__).resolve().parent.parent / "assets" / "runs" / "fashion_deepeyes_small"


def delete_offered(page, url: str) -> bool:
    page.goto(f"{url}/training?run=mine", timeout=120_000)
    wait_for_app(page)
    page.wait_for_function("() => document.body.innerText.includes('mine')", timeout=60_000)
    time.sleep(1)
    return page.get_by_text("Delete", exact=True).count() > 0


def test_the_browser_that_started_a_run_keeps_it_after_a_reload(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run = home / "runs" / "mine"
    shutil.copytree(SMALL, run)
    with app_server({"CONVLENS_HOME": str(home)}) as url:
        with browser_page(1280, 720) as (page, _):
            page.goto(f"{url}/training", timeout=120_000)
            wait_for_app(page)
            deadline = time.monotonic() + 30
            owner = None
            while owner is None and time.monotonic() < deadline:
                cookies = {c["name"]: c["value"] for c in page.context.cookies()}
                owner = cookies.get("convlens_owner")
                time.sleep(0.2)
            assert owner is not None and len(owner) == 32, "the page gives this browser an id"
            (run / "owner").write_text(owner + "\n")  # as if this browser had started it
            assert delete_offered(page, url), "after a reload, the run is still this browser's"
        with browser_page(1280, 720) as (other, _):
            assert not delete_offered(other, url), "another browser may not delete it"
            assert "Only the browser that started this run" in other.inner_text("body")


def test_the_name_typed_for_annotations_is_kept_by_the_browser_across_a_reload(
    tmp_path: Path,
) -> None:
    """The Filters page asks a browser's name once: a reload or a bookmark opened in the same
    browser starts with it (a cookie); a name with markup stays text; another browser asks; an
    emptied field makes the browser forget it."""
    filters = (
        "/filters?model=fashion_basecnn_x0.25&image=fashion-mnist%3Atest%3A0"
        "&layer=features.conv2_1&filter=3"
    )
    typed = 'ana </script><b id="injected">x</b> "o\'k"'
    environment = {"CONVLENS_HOME": str(tmp_path / "home"), "CONVLENS_OFFLINE": "1"}

    def name_field(page, url: str):
        page.goto(url + filters, timeout=120_000)
        wait_for_app(page)
        field = page.get_by_role("textbox", name="Your name")
        field.wait_for(timeout=60_000)
        return field

    with app_server(environment) as url:
        with browser_page(1280, 720) as (page, _):
            field = name_field(page, url)
            assert field.input_value() == ""
            field.fill(typed)
            field.press("Enter")
            wait_for_app(page)
            assert page.locator("#injected").count() == 0, "the name stays text"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not any(
                c["name"] == "convlens_author" for c in page.context.cookies()
            ):
                time.sleep(0.2)
            field = name_field(page, url)
            assert field.input_value() == typed, "kept after a reload"
            field.fill("")  # emptied: the browser forgets it (a shared machine's next user)
            field.press("Enter")
            wait_for_app(page)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and any(
                c["name"] == "convlens_author" for c in page.context.cookies()
            ):
                time.sleep(0.2)
            assert name_field(page, url).input_value() == "", "forgotten"
        with browser_page(1280, 720) as (other, _):
            assert name_field(other, url).input_value() == "", "another browser asks again"
