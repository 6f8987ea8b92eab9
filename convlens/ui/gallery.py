"""Small pictures side by side, a caption under each, magnified by the browser.

`st.image` with a list draws an element per picture, which the browser fetches one by one from
the server's media store: DeepEyes' 40 image patches cost ~0.1 s of each pick of a filter on a
2-core machine (docs/performance.md, "DeepEyes' snapshots and filters"). A gallery is one HTML
element whose pictures are PNGs inline at their own size (a 5x5-pixel receptive field is ~100
bytes), drawn `size` pixels wide with square pixels.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import streamlit as st
from PIL import Image

from convlens.tiles import png_bytes, png_url

# The class of a gallery's outer element, for tests and the benchmarks.
GALLERY_CLASS = "convlens-gallery"


def gallery_html(pictures: Sequence[Image.Image], captions: Sequence[str], size: int) -> str:
    """Return the HTML of `pictures`, each `size` pixels square, above its caption (escaped, and
    its picture's text alternative: screen readers read it there, once, not in the caption)."""
    figures = "".join(
        f'<figure style="margin: 0; width: {size}px">'
        f'<img src="{png_url(png_bytes(picture))}" alt="{html.escape(caption)}" width="{size}" '
        f'height="{size}" style="display: block; image-rendering: pixelated">'
        '<figcaption aria-hidden="true" '
        'style="font-size: 0.85rem; line-height: 1.25; text-align: center">'
        f"{html.escape(caption)}</figcaption></figure>"
        for picture, caption in zip(pictures, captions, strict=True)
    )
    return (
        f'<div class="{GALLERY_CLASS}" style="display: flex; flex-wrap: wrap; gap: 0.5rem">'
        f"{figures}</div>"
    )


def show_gallery(pictures: Sequence[Image.Image], captions: Sequence[str], size: int) -> None:
    """Draw `pictures` with their `captions` (see `gallery_html`)."""
    st.html(gallery_html(pictures, captions, size))
