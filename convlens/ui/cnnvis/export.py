"""The CNNVis picture exported for slides, as SVG and PNG."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import streamlit as st
import vl_convert

EXPORTED = "_cnnvis_export"


def export_picture(model_name: str, picture: str, inline_spec: Callable[[], dict]) -> None:
    """Buttons that render the picture's Vega-Lite spec (`inline_spec()`, its data inline) with
    vl-convert and offer the files; `picture` names what it shows, so that a changed view is not
    offered stale files."""
    if st.button("Prepare SVG and PNG", help="Renders the picture above with vl-convert"):
        spec = inline_spec()
        svg, png = vl_convert.vegalite_to_svg(spec), vl_convert.vegalite_to_png(spec, scale=2)
        st.session_state[EXPORTED] = (picture, svg, png)
    exported = st.session_state.get(EXPORTED)
    if exported and exported[0] == picture:
        _, svg, png = exported
        name = f"cnnvis-{Path(model_name).name}"
        st.download_button("Download SVG", svg, file_name=f"{name}.svg", mime="image/svg+xml")
        st.download_button("Download PNG", png, file_name=f"{name}.png", mime="image/png")
