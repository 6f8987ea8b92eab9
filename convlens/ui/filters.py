"""Pieces of the Filters page: the filter grid, the tile images and the selected filter's views."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from convlens.annotations import LABELS, AnnotationStore, default_author
from convlens.attribution import LayerMaps
from convlens.style import FILTER_GRID_COLUMNS, FILTER_GRID_TILE
from convlens.tiles import diverging, gradient_magnitude, sequential, tile

SORT_ORDERS = (
    "filter number",
    "mean activation on this image",
    "weight norm (importance)",
    "annotation",
)
ANNOTATION_ORDER = {"useful": 0, "unsure": 1, None: 2, "useless": 3}


def sort_filters(
    order: str,
    maps: LayerMaps,
    weight_norms: np.ndarray,
    labels: dict[int, str] | None = None,
) -> list[int]:
    """Return the filter numbers in the chosen order (strongest first for the measures)."""
    count = len(maps.maps)
    if order == "mean activation on this image":
        return [int(k) for k in np.argsort(-maps.means, kind="stable")]
    if order == "weight norm (importance)":
        return [int(k) for k in np.argsort(-weight_norms, kind="stable")]
    if order == "annotation":
        labels = labels or {}
        return sorted(range(count), key=lambda k: (ANNOTATION_ORDER.get(labels.get(k), 2), k))
    return list(range(count))


def activation_tile(maps: LayerMaps, channel: int, size: int = FILTER_GRID_TILE) -> Image.Image:
    """Return filter `channel`'s map on the layer's common diverging scale, numbered."""
    scale = float(np.abs(maps.maps).max())
    return tile(diverging(maps.maps[channel], scale), size, label=str(channel))


def gradient_tile(gradient: np.ndarray, channel: int, size: int = FILTER_GRID_TILE) -> Image.Image:
    """Return a guided back-propagation image as a numbered tile (magnitude, sequential map)."""
    return tile(sequential(gradient_magnitude(gradient)), size, label=str(channel))


def filter_grid(
    filters: Sequence[int],
    picture: Callable[[int], Image.Image],
    selected: int | None,
    on_pick: Callable[[int], None],
    key: str,
) -> None:
    """Draw the tiles of `filters` in rows, each with a button that selects it."""
    for start in range(0, len(filters), FILTER_GRID_COLUMNS):
        columns = st.columns(FILTER_GRID_COLUMNS, gap="small")
        for column, channel in zip(
            columns, filters[start : start + FILTER_GRID_COLUMNS], strict=False
        ):
            column.image(picture(channel), width="stretch")
            column.button(
                f"{'▶ ' if channel == selected else ''}{channel}",
                key=f"{key}_{channel}",
                on_click=on_pick,
                args=(channel,),
                type="primary" if channel == selected else "secondary",
                width="stretch",
            )


def unit_bars(maps: LayerMaps, class_names: Sequence[str] | None, top: int = 40) -> pd.DataFrame:
    """Return the strongest units of a fully connected layer as rows for a bar chart."""
    values = maps.maps.reshape(-1)
    order = np.argsort(-values, kind="stable")[:top]
    names = [
        f"{k}: {class_names[k]}" if class_names and len(class_names) == len(values) else str(k)
        for k in order
    ]
    return pd.DataFrame({"unit": names, "activation": values[order], "number": order})


def annotation_panel(
    store: AnnotationStore, model_name: str, fingerprint: str, layer: str, channel: int
) -> None:
    """Draw the controls that mark one filter useful, useless or unsure, with a note."""
    author = (
        st.text_input(
            "Your name",
            key="annotation_author",
            placeholder=default_author(),
            help="Annotations are kept per author; empty: your login name",
        ).strip()
        or default_author()
    )
    mine = {
        row.filter: row
        for row in store.list_annotations(
            model=model_name, layer=layer, fingerprint=fingerprint, author=author
        )
    }.get(channel)
    latest = store.latest_annotations(model_name, fingerprint, layer=layer).get((layer, channel))
    if latest is not None:
        st.caption(
            f"Latest: **{latest.label}** by {latest.author} ({latest.updated_at[:16]} UTC)"
            + (f" — {latest.note}" if latest.note else "")
        )
    with st.form(f"annotate_{layer}_{channel}", border=True):
        label = st.segmented_control(
            "This filter is",
            list(LABELS),
            default=mine.label if mine is not None else None,
            key=f"annotation_label_{layer}_{channel}",
        )
        note = st.text_input(
            "Note",
            value=mine.note if mine is not None else "",
            key=f"annotation_note_{layer}_{channel}",
            placeholder="e.g. responds to horizontal edges",
        )
        if st.form_submit_button("Save annotation", type="primary"):
            if label is None:
                st.warning("Choose useful, useless or unsure first.")
            else:
                store.set_annotation(model_name, fingerprint, layer, channel, label, note, author)
                st.toast(f"Marked {layer} filter {channel} as {label}.")
