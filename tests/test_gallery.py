"""The gallery of small pictures: one HTML element, each picture inline at its own size."""

from __future__ import annotations

import base64
import io
import re
from html import unescape

import numpy as np
from PIL import Image

from convlens.ui.gallery import GALLERY_CLASS, gallery_html


def figures(body: str) -> list[tuple[str, str, str, str]]:
    """Return each figure's (picture as base64 PNG, alt text, size, caption)."""
    return re.findall(
        r'<figure[^>]*><img src="data:image/png;base64,([^"]+)" alt="([^"]*)" width="(\d+)"'
        r"[^>]*><figcaption[^>]*>([^<]*)</figcaption></figure>",
        body,
    )


def test_each_picture_is_inline_at_its_own_size_above_its_caption():
    first = np.arange(15, dtype=np.uint8).reshape(3, 5) * 17
    second = np.full((4, 4), 200, dtype=np.uint8)
    body = gallery_html([Image.fromarray(first), Image.fromarray(second)], ["a · #1", "b"], 84)
    assert body.startswith(f'<div class="{GALLERY_CLASS}"')
    found = figures(body)
    assert [(alt, size, caption) for _, alt, size, caption in found] == [
        ("a · #1", "84", "a · #1"),
        ("b", "84", "b"),
    ]
    for (picture, *_), pixels in zip(found, (first, second), strict=True):
        decoded = Image.open(io.BytesIO(base64.b64decode(picture)))
        np.testing.assert_array_equal(np.asarray(decoded), pixels)
    assert body.count("image-rendering: pixelated") == 2
    assert body.count('<figcaption aria-hidden="true"') == 2, "the alt text is read, once"


def test_captions_are_text_not_markup():
    hostile = '<script>alert(1)</script>" onerror="alert(2)'
    body = gallery_html([Image.new("L", (2, 2))], [hostile], 10)
    assert "<script>" not in body and '" onerror=' not in body
    ((_, alt, _, caption),) = figures(body)
    assert unescape(alt) == unescape(caption) == hostile


def test_no_pictures_draw_an_empty_gallery():
    assert figures(gallery_html([], [], 84)) == []
