"""A hostile student against a real server in Chromium: server files stay unreadable, large
images do not pile up in memory, and the server stays healthy."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote

import pytest
from PIL import Image

from browser import app_server, browser_page, healthy, require_chromium, server_rss_mb, wait_for_app
from convlens.access import NOT_PUBLISHED

pytestmark = pytest.mark.browser

require_chromium()

ROOT = Path(__file__).resolve().parent.parent


def body_after_run(page) -> str:
    wait_for_app(page)
    time.sleep(0.5)
    return page.inner_text("body")


def test_hostile_image_links_are_refused_and_large_images_do_not_pile_up(tmp_path: Path) -> None:
    published = tmp_path / "published"
    published.mkdir()
    big = published / "big.png"
    Image.new("RGB", (8000, 5000), "orange").save(big)  # 40 megapixels
    env = {"CONVLENS_DATA_ROOTS": str(published), "CONVLENS_HOME": str(tmp_path / "home")}
    with app_server(env) as url, browser_page(1280, 720) as (page, log):
        page.goto(f"{url}/network?image=sample%3Acoffee", timeout=120_000)
        body_after_run(page)
        for source in ("/", "/:5000", "/etc/shadow", "/dev/zero", str(ROOT), f"{published}/../"):
            page.goto(f"{url}/network?image={quote(source, safe='')}", timeout=120_000)
            text = body_after_run(page)
            assert NOT_PUBLISHED in text, source
            assert "Traceback" not in text and str(ROOT) not in text
        page.goto(f"{url}/network?image={quote(str(big), safe='')}", timeout=120_000)
        body_after_run(page)
        before = server_rss_mb(url)
        spellings = [
            f"{published}/./big.png",
            f"{published}//big.png",
            f"{published}/../published/big.png",
            f"{published}/./././big.png",
            f"{published}///big.png",
            f"{published}/.//big.png",
        ]
        for spelling in spellings:
            page.goto(f"{url}/network?image={quote(spelling, safe='')}", timeout=120_000)
            text = body_after_run(page)
            assert NOT_PUBLISHED not in text, spelling
        grown = server_rss_mb(url) - before
        # Each spelling is cached once, at 2,048 px (12 MB), not at 40 megapixels (120 MB).
        assert grown < 300, f"the server grew by {grown:.0f} MB"
        assert healthy(url)
    assert log.outside_requests == []
