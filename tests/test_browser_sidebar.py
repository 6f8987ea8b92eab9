"""The sidebar on a 1280x720 projector: model and image, with its thumbnail, without scrolling."""

from __future__ import annotations

import pytest

from browser import app_server, browser_page, require_chromium, wait_for_app

pytestmark = pytest.mark.browser

require_chromium()

PROJECTOR = {"width": 1280, "height": 720}


def sidebar_bottoms(page) -> dict[str, float]:
    """The bottom edge (px from the top of the window) of the model picker, the image picker and
    the image's thumbnail in the sidebar."""
    return page.evaluate(
        """() => {
            const sidebar = document.querySelector('[data-testid="stSidebar"]');
            const boxes = [...sidebar.querySelectorAll('[data-testid="stSelectbox"]')];
            const images = [...sidebar.querySelectorAll('[data-testid="stImage"] img')];
            const bottom = (element) => element.getBoundingClientRect().bottom;
            return {model: bottom(boxes[0]), image: bottom(boxes[1]),
                    thumbnail: bottom(images[images.length - 1])};
        }"""
    )


VIEWS = ("/network", "/filters", "/network?model=fashion_basecnn&image=fashion-mnist%3Atest%3A0")


def test_model_and_image_fit_in_the_first_720_pixels() -> None:
    with app_server() as url, browser_page(**PROJECTOR) as (page, _log):
        for view in VIEWS:
            page.goto(f"{url}{view}", timeout=120_000)
            wait_for_app(page)
            page.wait_for_selector('[data-testid="stSidebar"] [data-testid="stImage"] img')
            bottoms = sidebar_bottoms(page)
            assert bottoms["model"] < bottoms["image"] < PROJECTOR["height"], (view, bottoms)
            assert bottoms["thumbnail"] <= PROJECTOR["height"], (view, bottoms)
