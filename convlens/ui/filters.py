"""Pieces of the Filters page: the filter grid, the tile images and the selected filter's views."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from threading import Lock

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from convlens.activations import (
    SHIPPED_DATA,
    Analysis,
    analyze,
    cached_analysis,
    default_limit,
)
from convlens.annotations import LABELS, AnnotationStore, counted
from convlens.attribution import LayerMaps, input_view
from convlens.charts import bars_chart
from convlens.data import ImageSourceError
from convlens.models import LoadedModel
from convlens.style import FILTER_GRID_COLUMNS, FILTER_GRID_TILE, PATCH_SIZE
from convlens.tiles import diverging, gradient_picture, patch_in_context, tile
from convlens.ui.cache import browser_source
from convlens.ui.launch import PREPARATION
from convlens.ui.state import persisted

SORT_ORDERS = (
    "filter number",
    "mean activation on this image",
    "weight norm (importance)",
    "annotation",
)
# Sorting by annotation: annotated filters first, in the order of LABELS (useful, useless,
# unsure), then the unannotated ones; by filter number within each.
ANNOTATION_ORDER = {label: rank for rank, label in enumerate(LABELS)}


def sort_filters(
    order: str,
    maps: LayerMaps,
    weight_norms: np.ndarray,
    labels: dict[int, str] | None = None,
) -> list[int]:
    """Return the filter numbers in the chosen order: strongest first for the measures, and for
    "annotation" the filters labelled useful, useless, unsure (their latest label in `labels`)
    before the unannotated ones."""
    count = len(maps.maps)
    if order == "mean activation on this image":
        return [int(k) for k in np.argsort(-maps.means, kind="stable")]
    if order == "weight norm (importance)":
        return [int(k) for k in np.argsort(-weight_norms, kind="stable")]
    if order == "annotation":
        labels = labels or {}
        unannotated = len(ANNOTATION_ORDER)
        return sorted(
            range(count), key=lambda k: (ANNOTATION_ORDER.get(labels.get(k), unannotated), k)
        )
    return list(range(count))


def activation_tile(maps: LayerMaps, channel: int, size: int = FILTER_GRID_TILE) -> Image.Image:
    """Return filter `channel`'s map on the layer's common diverging scale, numbered."""
    scale = float(np.abs(maps.maps).max())
    return tile(diverging(maps.maps[channel], scale), size, label=str(channel))


def gradient_tile(gradient: np.ndarray, channel: int, size: int = FILTER_GRID_TILE) -> Image.Image:
    """Return a guided back-propagation image as a numbered tile (magnitude, sequential map)."""
    return tile(gradient_picture(gradient), size, label=str(channel))


# How a filter's latest annotation shows on its button in the grid.
LABEL_MARKS = {"useful": "✓", "useless": "✗", "unsure": "?"}


def filter_grid(
    filters: Sequence[int],
    picture: Callable[[int], Image.Image],
    selected: int | None,
    on_pick: Callable[[int], None],
    key: str,
    labels: Mapping[int, str],
) -> None:
    """Draw the tiles of `filters` in rows, each with a button that selects it and shows the
    filter's latest annotation in `labels` (useful, useless, unsure) as a mark."""
    for start in range(0, len(filters), FILTER_GRID_COLUMNS):
        columns = st.columns(FILTER_GRID_COLUMNS, gap="xsmall")  # room for 3-digit numbers
        for column, channel in zip(
            columns, filters[start : start + FILTER_GRID_COLUMNS], strict=False
        ):
            column.image(picture(channel), width="stretch")
            mark = LABEL_MARKS.get(labels.get(channel, ""), "")
            column.button(
                f"{channel} {mark}".strip(),  # the selected one is the primary button
                key=f"{key}_{channel}",
                on_click=on_pick,
                args=(channel,),
                type="primary" if channel == selected else "secondary",
                width="stretch",
            )
    if any(channel in labels for channel in filters):
        st.caption(
            " · ".join(f"{mark} {label}" for label, mark in LABEL_MARKS.items())
            + " (the latest annotation of any author)"
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
    """Draw the controls that mark one filter useful, useless or unsure, with a note.

    The marks are kept per author: the name is asked for once and kept for the browser's
    session. It starts empty, never the server's login name, which names the server's user,
    not whoever marks from this browser.
    """
    author = st.text_input(
        "Your name",
        placeholder="asked once, kept for this session",
        help="Annotations are kept per author",
        # kept for the session: the panel is not drawn while no filter is selected
        **persisted("author", widget="annotation_author"),
    ).strip()
    if not author:
        st.caption("Type your name to mark this filter; it is kept until you close this tab.")
    rows = store.list_annotations(
        model=model_name, layer=layer, fingerprint=fingerprint, author=author, filter=channel
    )
    mine = rows[0] if author and rows else None
    label_key = f"annotation_label_{layer}_{channel}"
    note_key = f"annotation_note_{layer}_{channel}"

    def save() -> None:
        """Store the form's label (a callback: the page then draws the saved state)."""
        label = st.session_state.get(label_key)
        # the field as the click found it: a name typed just before the click counts
        name = str(st.session_state.get("annotation_author", "")).strip()
        if not name:
            st.toast("Type your name first: annotations are kept per author.")
            return
        if label is None:
            st.toast("Choose useful, useless or unsure first.")
            return
        note = st.session_state.get(note_key, "")
        store.set_annotation(model_name, fingerprint, layer, channel, label, note, name)
        st.toast(f"Marked {layer} filter {channel} as {label}.")

    latest = store.latest_annotations(model_name, fingerprint, layer=layer).get((layer, channel))
    if latest is not None:
        st.caption(
            f"Latest: **{latest.label}** by {latest.author} "
            f"({latest.updated_at[:16].replace('T', ' ')} UTC)"
            + (f" — {latest.note}" if latest.note else "")
        )
    with st.form(f"annotate_{layer}_{channel}", border=True):
        st.segmented_control(
            "This filter is",
            list(LABELS),
            default=mine.label if mine is not None else None,
            key=label_key,
        )
        st.text_input(
            "Note",
            value=mine.note if mine is not None else "",
            key=note_key,
            placeholder="e.g. responds to horizontal edges",
        )
        st.form_submit_button("Save annotation", type="primary", on_click=save)


def dataset_analysis(
    model_key: tuple[str, str | None, str],
    model: LoadedModel,
    lock: Lock,
    data: str,
    button_key: str,
) -> Analysis | None:
    """Return the activation analysis of `model` over `data` from the session or the disk cache,
    or offer a button that computes it with a progress bar; None (with a message) until then.

    An analysis found (on disk or computed) is kept in the session, so reruns do not re-read it.
    """
    try:
        source = browser_source(data)
    except (ImageSourceError, ValueError) as error:
        st.error(str(error))
        return None
    found: dict = st.session_state.setdefault("_analyses", {})
    memo = (*model_key, data)
    try:
        analysis = found.get(memo) or cached_analysis(model, data)
    except (ImageSourceError, ValueError) as error:
        st.error(str(error))
        return None
    if analysis is None:
        images = min(source.size, default_limit(model) or source.size)
        if PREPARATION.running and data == SHIPPED_DATA:
            st.info(
                "The shipped models' statistics are being prepared in the background "
                f"({PREPARATION.done:,}/{counted(PREPARATION.total, 'image')}); "
                "this view fills in then."
            )
        st.caption(
            f"{model.name}'s activations over {counted(images, 'image')} of {data} are not "
            "analysed yet: "
            "one pass over the images for every layer at once, kept on disk afterwards."
        )
        if not st.button(f"Analyse {counted(images, 'image')}", key=button_key, type="primary"):
            return None
        bar = st.progress(0.0, text=f"Reading the activations over {data}…")

        def report(done: int, total: int) -> None:
            share = min(done / max(total, 1), 1.0)
            bar.progress(share, text=f"{data}: {done:,}/{counted(total, 'image')}")

        try:
            with lock:
                analysis = analyze(model, data, progress=report)
        except (ImageSourceError, ValueError) as error:
            bar.empty()
            st.error(str(error))
            return None
        bar.empty()
        found[memo] = analysis
        st.rerun()  # draw the page again without the button that started the analysis
    found[memo] = analysis
    return analysis


def dataset_views(
    model_key: tuple[str, str | None, str],
    model: LoadedModel,
    lock: Lock,
    node_id: str,
    channel: int,
) -> None:
    """Draw the filter's top image patches and per-class mean activation over a dataset."""
    data = st.text_input(
        "Images to search",
        value="fashion-mnist:test" if model.reads_fashion_mnist else "samples",
        key="filters_data",
        help="fashion-mnist:test, fashion-mnist:train, samples (the bundled photos) or an "
        "ImageFolder directory; analysed once, then cached on disk",
    ).strip()
    analysis = dataset_analysis(model_key, model, lock, data, "filters_analyze")
    if analysis is None:
        return
    source = browser_source(data)
    stats = analysis.layer(node_id)
    patches = stats.top_patches
    count = patches.image.shape[1]
    st.markdown(
        f"**Top {counted(count, 'image patch', 'image patches')}** over "
        f"{counted(analysis.images, 'image')} of {data}"
    )
    images, captions = [], []
    for rank in range(count):
        index = int(patches.image[channel, rank])
        view = input_view(model.transform, source.load(index))
        box = tuple(int(v) for v in patches.box[channel, rank])
        images.append(patch_in_context(view, box, PATCH_SIZE))
        label = int(patches.label[channel, rank])
        name = analysis.classes[label] if label >= 0 else f"image {index}"
        captions.append(f"{name} · {patches.value[channel, rank]:.2f}")
    st.image(images, caption=captions, width=PATCH_SIZE)
    values = patches.value[channel]
    if count > 1 and np.all(values == values[0]):
        st.caption(
            f"All {count} patches reach {values[0]:.2f} (a ceiling, such as ReLU6's 6): more images "
            "may tie, and these are the first of them in the data's order."
        )
    if analysis.classes:
        means = stats.per_class_mean[:, channel]
        shown = [(c, float(m)) for c, m in zip(analysis.classes, means, strict=True) if m == m]
        st.altair_chart(
            bars_chart(
                [c for c, _ in shown],
                [m for _, m in shown],
                "mean activation per class",
                f"activation ({analysis.reduce} over positions)",
            ),
            width="stretch",
        )
