"""Pieces of the Filters page: the filter grid, the tile images and the selected filter's views."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from threading import Lock

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from convlens.access import whole_number
from convlens.activations import (
    Analysis,
    ImageDataset,
    analyze,
    default_limit,
)
from convlens.annotations import LABELS, MAX_FIELD_CHARS, AnnotationStore, counted
from convlens.attribution import LayerMaps, input_view, last_conv_node
from convlens.charts import FILTER_SELECTION, bars_chart, filter_grid_spec
from convlens.data import ImageSourceError, LoadedImage
from convlens.graph import ChainNode, LayerGraph, first_conv
from convlens.models import LoadedModel, ModelKey
from convlens.style import (
    FILTER_GRID_COLUMNS,
    FILTER_GRID_TILE,
    FILTERS_PER_PAGE,
    MAGNIFIED_SIZE,
    PATCH_SIZE,
)
from convlens.tiles import (
    diverging,
    empty_tile,
    gradient_picture,
    has_gradient,
    overlay,
    patch_in_context,
    sequential,
    tile,
)
from convlens.ui.cache import (
    NotAnalysed,
    browser_source,
    cached_convolution_step,
    cached_dataset_analysis,
    cached_grad_cam,
    cached_guided_backprops,
    cached_guided_picture,
    cached_predictions,
    model_lock,
)
from convlens.ui.details import layer_heading, tile_grid
from convlens.ui.explain import (
    AT,
    explanation_dialog,
    forget_position,
    picked_position,
    position_picker,
)
from convlens.ui.launch import PREPARATION, prepares
from convlens.ui.owner import (
    AUTHOR,
    AUTHOR_CHARS,
    clean_author,
    remember_author,
    seed_author,
)
from convlens.ui.state import keep_valid, persisted, warn_reset
from convlens.ui.vega import with_arrow_datasets
from convlens.weights import filter_tiles, layer_weight

SORT_ORDERS = (
    "filter number",
    "mean activation on this image",
    "weight norm (importance)",
    "annotation",
)
# What the Sort box shows of each order (the URL keeps the order's full name): short enough for
# its narrow column at 1280x720.
SORT_LABELS = dict(
    zip(SORT_ORDERS, ("filter number", "mean activation", "weight norm", "annotation"), strict=True)
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
    """Return filter `channel`'s map on the layer's common diverging scale (the grid numbers it)."""
    scale = float(np.abs(maps.maps).max())
    return tile(diverging(maps.maps[channel], scale), size)


# Said on a guided back-propagation tile whose gradient is zero everywhere (two short lines that a
# projector shows legibly; the caption under the grid says why).
NO_GRADIENT = "no\ngradient"
NO_GRADIENT_REASON = (
    "the gradient that reaches the image is zero everywhere, most often because the filter's "
    "activation at its strongest position is saturated (ReLU6 at 6, whose slope is 0) or zero."
)


def gradient_tile(
    gradient: np.ndarray, image: Image.Image, size: int = FILTER_GRID_TILE
) -> Image.Image:
    """Return a guided back-propagation image over the whole image as a tile (magnitude on the
    sequential map, robust percentiles, drawn over `image`), or a tile that says why it has no
    gradient."""
    if not has_gradient(gradient):
        return empty_tile(size, "", NO_GRADIENT)
    return tile(gradient_picture(gradient, size, image), size)


# How a filter's latest annotation shows beside its number in the grid.
LABEL_MARKS = {"useful": "✓", "useless": "✗", "unsure": "?"}


def tile_label(channel: int, labels: Mapping[int, str]) -> str:
    """Return a tile's label: the filter's number and its latest annotation's mark, if any."""
    return f"{channel} {LABEL_MARKS.get(labels.get(channel, ''), '')}".strip()


# A grid's spec holds a page's 35 tiles as PNG data URLs (~0.2 MB): 64 specs stay under ~15 MB.
@st.cache_data(max_entries=64, show_spinner=False)
def grid_spec(
    tiles_key: tuple,
    tile_labels: tuple[str, ...],
    selected: int | None,
    description: str,
    _filters: Sequence[int],
    _picture: Callable[[int], Image.Image],
) -> dict:
    """Return the Vega-Lite spec of a page of tiles, built once per server for the pictures that
    `tiles_key` names (model, image, layer, what is shown, the filters), their labels and the
    selected one: a page of tiles drawn and encoded costs more than the rest of the view. Not validated
    again here: `filter_grid_spec`'s tests validate its specs."""
    return with_arrow_datasets(
        filter_grid_spec(
            _filters,
            [_picture(channel) for channel in _filters],
            list(tile_labels),
            FILTER_GRID_COLUMNS,
            selected,
            description,
        )
    )


def outlined(chart_key: str) -> int | None:
    """Return the filter that the grid chart `chart_key` outlines in the browser after a click,
    or None before any (what the browser sent: any text)."""
    try:
        point = st.session_state[chart_key]["selection"][FILTER_SELECTION][0]
        return whole_number(str(point["filter"]))
    except (LookupError, TypeError):  # no click yet, or a crafted message
        return None


def grid_chart_key(
    key: str, tile_labels: tuple[str, ...], selected: int | None
) -> tuple[str, int | None]:
    """Return the key of grid `key`'s chart and the filter its spec starts outlining.

    The chart, and so its spec, stays as drawn while the browser outlines `selected` and the
    labels stay: a click on a tile moves the outline in the browser, and the page's tiles are not
    sent and drawn again. A filter picked elsewhere (a link, Back, a map in Network) or a new
    label starts a fresh chart at `selected`.
    """
    drawn = st.session_state.setdefault("grid_charts", {})
    if key in drawn:
        chart_key, starts_at, labels = drawn[key]
        shown = outlined(chart_key)
        if (starts_at if shown is None else shown) == selected and labels == tile_labels:
            return chart_key, starts_at
    fresh = st.session_state.get("grid_chart_count", 0) + 1
    st.session_state["grid_chart_count"] = fresh
    drawn[key] = (f"{key}_{fresh}", selected, tile_labels)
    return drawn[key][:2]


def filter_grid(
    filters: Sequence[int],
    picture: Callable[[int], Image.Image],
    selected: int | None,
    key: str,
    labels: Mapping[int, str],
    description: str,
    tiles_key: tuple,
) -> None:
    """Draw the tiles of `filters` as one chart whose click on a tile selects its filter; each
    tile shows the filter's number and its latest annotation in `labels` (useful, useless,
    unsure) as a mark. `tiles_key` names the pictures (see `grid_spec`)."""
    tile_labels = tuple(tile_label(channel, labels) for channel in filters)
    chart_key, starts_at = grid_chart_key(key, tile_labels, selected)

    def picked() -> None:
        channel = outlined(chart_key)
        if channel in filters:  # what the browser sent: a number of this page's filters
            pick(channel)

    spec = grid_spec(tiles_key, tile_labels, starts_at, description, filters, picture)
    st.vega_lite_chart(
        spec,
        on_select=picked,
        selection_mode=[FILTER_SELECTION],
        key=chart_key,
        width=spec["width"],
        height=spec["height"],
        theme=None,  # the theme's padding would shrink the tiles
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

    The marks are kept per author: the name is asked for once and kept in the browser's cookie
    (`convlens.ui.owner`), so that a reload or a bookmark does not ask again. It starts empty,
    never the server's login name, which names the server's user, not whoever marks from this
    browser.
    """
    seed_author()
    author = st.text_input(
        "Your name",
        placeholder="asked once, kept by this browser",
        help="Annotations are kept per author. This browser keeps the name for next time; "
        "empty the field to make it forget.",
        max_chars=AUTHOR_CHARS,
        # kept for the session: the panel is not drawn while no filter is selected
        **persisted(AUTHOR, widget="annotation_author"),
    )
    author = clean_author(author)
    remember_author(author)
    if not author:
        st.caption("Type your name to mark this filter; this browser keeps it for next time.")
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
        name = clean_author(st.session_state.get("annotation_author", ""))
        if not name:
            st.toast("Type your name first: annotations are kept per author.")
            return
        if label is None:
            st.toast("Choose useful, useless or unsure first.")
            return
        note = st.session_state.get(note_key, "")
        try:
            store.set_annotation(model_name, fingerprint, layer, channel, label, note, name)
        except ValueError as error:  # a field the store refuses, e.g. sent around max_chars
            st.toast(str(error))
            return
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
            max_chars=MAX_FIELD_CHARS,
        )
        st.form_submit_button("Save annotation", type="primary", on_click=save)


def dataset_analysis(
    model_key: ModelKey,
    model: LoadedModel,
    lock: Lock,
    data: str,
    button_key: str,
) -> Analysis | None:
    """Return the activation analysis of `model` over `data` from the server's or the disk cache,
    or offer a button that computes it with a progress bar; None (with a message) until then."""
    try:
        source = browser_source(data)
        analysis = cached_dataset_analysis(model_key, data, model)
    except NotAnalysed:
        analysis = None
    except (ImageSourceError, ValueError) as error:
        st.error(str(error))
        return None
    if analysis is None:
        images = min(source.size, default_limit(model) or source.size)
        if prepares(model_key, data):
            st.info(
                "The shipped models' statistics are being prepared in the background "
                f"({PREPARATION.progress()}); "
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
                analyze(model, data, progress=report)
        except (ImageSourceError, ValueError) as error:
            bar.empty()
            st.error(str(error))
            return None
        bar.empty()
        st.rerun()  # draw the page again without the button, from the cache the analysis filled
    return analysis


# An entry is one filter's top patches, PATCH_SIZE pixels a side, with their captions.
@st.cache_data(max_entries=128, show_spinner=False)
def top_patches(
    model_key: ModelKey,
    data: str,
    layer_id: str,
    channel: int,
    _model: LoadedModel,
    _source: ImageDataset,
    _analysis: Analysis,
) -> tuple[list[Image.Image], list[str]]:
    """Return filter `channel`'s top patches over `data`, each in its image's context, and their
    captions (class and value); read once per server: each is an image read from disk."""
    patches = _analysis.layer(layer_id).top_patches
    images, captions = [], []
    for rank in range(patches.image.shape[1]):
        index = int(patches.image[channel, rank])
        view = input_view(_model.transform, _source.load(index))
        box = tuple(int(v) for v in patches.box[channel, rank])
        images.append(patch_in_context(view, box, PATCH_SIZE))
        label = int(patches.label[channel, rank])
        name = _analysis.classes[label] if label >= 0 else f"image {index}"
        captions.append(f"{name} · {patches.value[channel, rank]:.2f}")
    return images, captions


def dataset_views(
    model_key: ModelKey,
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
    stats = analysis.layer(node_id)
    patches = stats.top_patches
    count = patches.image.shape[1]
    st.markdown(
        f"**Top {counted(count, 'image patch', 'image patches')}** over "
        f"{counted(analysis.images, 'image')} of {data}"
    )
    images, captions = top_patches(
        model_key, data, node_id, channel, model, browser_source(data), analysis
    )
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


@dataclass(frozen=True)
class LayerView:
    """One layer of a model on one image: what the Filters page's sections draw from."""

    model_key: ModelKey
    model: LoadedModel
    image: LoadedImage
    digest: str | None
    graph: LayerGraph
    node: ChainNode
    maps: LayerMaps
    norms: np.ndarray
    picture: Image.Image  # the image as the network sees it

    @property
    def image_key(self) -> tuple[str, str | None]:
        return self.image.source, self.digest

    @property
    def maps_key(self) -> tuple:
        """What the layer's maps depend on, for the caches of what is drawn from them."""
        return self.model_key, *self.image_key, self.node.id


def forget_filter() -> None:
    """A new layer starts without a selected filter or position, on its first page."""
    st.session_state.pop("filter", None)
    st.session_state.pop(AT, None)
    st.session_state["page"] = 1


def pick(channel: int) -> None:
    """Select filter `channel` (its explanation starts closed)."""
    st.session_state["filter"] = str(channel)
    st.session_state.pop(AT, None)


SHOWS = ["activation", "guided back-propagation"]


def layer_controls(graph: LayerGraph, model_name: str) -> tuple[ChainNode, str, str]:
    """Draw the layer, show and sort controls; return the chain node, what to show, the order.

    A layer that the model lacks (from a link) is said and the first one shown; a layer inside a
    chain node (from the Network page) opens its node.
    """
    nodes = [n.id for n in graph.chain if n.type in ("conv", "linear")]
    requested = st.session_state.get("layer")
    if requested not in nodes:
        mapped = graph.chain_node_of(requested) if requested else None
        if requested and mapped not in nodes:
            st.warning(
                f"{model_name} has no conv or linear layer '{requested}'; showing "
                f"{nodes[0]}, pick another below."
            )
        st.session_state["layer"] = mapped if mapped in nodes else nodes[0]
    # the longest layer names ("38. _blocks.12._depthwise_conv  (1152 filters)") and both Show
    # choices fit at 1280x720
    layer_column, show_column, order_column = st.columns([4, 3.3, 2.1], gap="small")
    layer_id = layer_column.selectbox(
        "Layer",
        nodes,
        format_func=lambda i: (
            f"{nodes.index(i) + 1}. {i}  ({graph.node(i).output_shape[0]} "
            f"{'filters' if graph.node(i).type == 'conv' else 'units'})"
        ),
        **persisted("layer", on_change=forget_filter),
    )
    node = graph.node(layer_id)
    keep_valid("show", SHOWS, SHOWS[0])
    show = show_column.segmented_control(
        "Show", SHOWS, disabled=node.type == "linear", **persisted("show", widget="filters_show")
    )
    keep_valid("sort", SORT_ORDERS, SORT_ORDERS[0])
    order = order_column.selectbox(
        "Sort by",
        SORT_ORDERS,
        format_func=SORT_LABELS.__getitem__,
        help="Mean activation: on this image, strongest first. Weight norm: the filter's "
        "importance, largest first. Annotation: the filters labelled useful, then useless, then "
        "unsure (each filter's latest label), then the unannotated ones.",
        # a new order starts on its first page: page 2 of "mean activation" holds the weakest
        **persisted(
            "sort", on_change=lambda: st.session_state.update(page=1), widget="filters_order"
        ),
    )
    return node, show, order


def selected_filter(layer_id: str, count: int) -> int | None:
    """Return the selected filter, or None; one the layer lacks (from a link) is said and dropped."""
    try:
        selected = int(st.session_state.get("filter", ""))
    except ValueError:
        return None
    if not 0 <= selected < count:
        st.warning(f"{layer_id} has no filter {selected}; it has {count}.")
        st.session_state.pop("filter", None)
        return None
    return selected


def _page_of_filters(count: int) -> int:
    """Draw the page picker when the filters fill more than one page; return the page."""
    pages = max(1, -(-count // FILTERS_PER_PAGE))
    if pages == 1:
        st.session_state.pop("page", None)
        return 1
    wanted = str(st.session_state.get("page", 1))
    st.session_state["page"] = int(wanted) if wanted.isdigit() else 1
    keep_valid("page", range(1, pages + 1), 1)
    return st.number_input(
        f"Page (of {pages}, {FILTERS_PER_PAGE} filters each)",
        1,
        pages,
        **persisted("page", widget="filter_page"),
    )


def grid_section(
    layer: LayerView, show: str, order: str, selected: int | None, labels: dict[int, str]
) -> int | None:
    """Draw a linear layer's strongest units and its unit picker, or a page of the conv layer's
    filter tiles; return the selected filter or unit (the picker always selects a unit)."""
    maps, node, count = layer.maps, layer.node, len(layer.maps.maps)
    if node.type == "linear":
        names = layer.model.class_names
        frame = unit_bars(maps, names if count == len(names) else None)
        st.altair_chart(
            bars_chart(
                frame["unit"], frame["activation"], f"{node.id}: strongest units", "activation"
            ),
            width="stretch",
        )
        choice = st.selectbox("Unit", list(range(count)), index=selected or 0, key="filters_unit")
        if choice != selected:
            pick(choice)
        return choice
    ordered = sort_filters(order, maps, layer.norms, labels)
    page = _page_of_filters(count)
    shown = ordered[(page - 1) * FILTERS_PER_PAGE : page * FILTERS_PER_PAGE]
    if show != "guided back-propagation":
        filter_grid(
            shown,
            lambda k: activation_tile(maps, k),
            selected,
            f"grid_act_{node.id}_{page}",
            labels,
            f"activation maps of {node.id}'s filters",
            (*layer.maps_key, "activation", tuple(shown)),
        )
        return selected
    peaks = tuple(maps.peak(channel) for channel in shown)
    images = cached_guided_backprops(
        layer.model_key, *layer.image_key, node.id, tuple(shown), peaks, layer.image.image
    )
    gradients = dict(zip(shown, images, strict=True))
    filter_grid(
        shown,
        lambda k: gradient_tile(gradients[k], layer.picture),
        selected,
        f"grid_gbp_{node.id}_{page}",
        labels,
        f"guided back-propagation images of {node.id}'s filters",
        (*layer.maps_key, "guided", tuple(shown)),
    )
    if not all(has_gradient(gradients[k]) for k in shown):
        st.caption(f"A grey tile has no gradient: {NO_GRADIENT_REASON}")
    return selected


def filter_details(
    layer: LayerView, selected: int | None, store: AnnotationStore, fingerprint: str
) -> None:
    """Draw the selected filter magnified (its map picks a position to explain), its
    annotation and its top patches over a dataset."""
    node, maps = layer.node, layer.maps
    if st.session_state.get(AT) not in (None, "") and (selected is None or node.type != "conv"):
        warn_reset(AT)  # a position of no filter's map (an edited link)
        forget_position()
    if selected is None:
        st.info(
            "Click a filter's tile to see it magnified, its top image patches and its annotation."
        )
        return
    count = len(maps.maps)
    layer_heading(f"{node.id} · {'unit' if node.type == 'linear' else 'filter'} {selected}")
    st.markdown(
        f"Mean activation on this image **{maps.means[selected]:.3f}** · "
        f"weight norm **{layer.norms[selected]:.3f}** "
        f"(rank {int((layer.norms > layer.norms[selected]).sum()) + 1} of {count})"
    )
    if node.type == "conv":
        at = picked_position(maps.maps.shape[1:])
        position_picker(layer.maps_key, maps, selected, layer.picture, node.id, at)
        guided = cached_guided_picture(
            layer.model_key,
            *layer.image_key,
            node.id,
            selected,
            maps.peak(selected),
            layer.image.image,
            layer.picture,
        )
        if guided is not None:
            st.image(
                guided,
                caption="guided back-propagation where it fires most: which pixels of the "
                "image make it fire",
                width=MAGNIFIED_SIZE // 2,
            )
        else:
            st.caption(f"No guided back-propagation to show: {NO_GRADIENT_REASON}")
        if at is not None:
            _explain(layer, selected, at)
    annotation_panel(store, layer.model_key.name, fingerprint, node.id, selected)
    dataset_views(layer.model_key, layer.model, model_lock(layer.model_key), node.id, selected)


def _explain(layer: LayerView, channel: int, at: tuple[int, int]) -> None:
    """Open the dialog that explains filter `channel`'s value at `at`."""
    step_key = (*layer.maps_key, channel, at)
    step = cached_convolution_step(
        layer.model_key, *layer.image_key, layer.node.id, channel, at, layer.image.image
    )
    first = first_conv(layer.graph)
    reads_image = (
        first is not None
        and first.id == layer.node.id
        and step.input_size == (layer.picture.height, layer.picture.width)
        and step.window.shape[0] == len(layer.picture.getbands())
    )
    explanation_dialog(
        step_key,
        step,
        float(layer.maps.maps[channel][at]),
        layer.picture if reads_image else None,
    )


def class_evidence(layer: LayerView) -> None:
    """Draw Grad-CAM of a chosen class (the top prediction first) at the last conv node."""
    st.subheader("Why this class?")
    cam_node = last_conv_node(layer.graph.chain)
    if cam_node is None:
        st.caption("This network has no convolution layer to explain its decision with.")
        return
    names = layer.model.class_names
    predictions = cached_predictions(layer.model_key, *layer.image_key, layer.image.image)
    top_class = predictions[0].index
    target = st.selectbox(
        "Class",
        list(range(len(names))),
        index=top_class,
        format_func=lambda c: f"{names[c]}" + (" (top prediction)" if c == top_class else ""),
        key="filters_cam_class",
    )
    heat = cached_grad_cam(
        layer.model_key, *layer.image_key, cam_node.id, target, layer.image.image
    )
    left, right = st.columns(2)
    left.image(
        layer.picture, caption=f"{layer.image.source}, as the network sees it", width="stretch"
    )
    right.image(
        overlay(layer.picture, sequential(heat, 1.0)),
        caption=f"Grad-CAM at {cam_node.id}: where the evidence for '{names[target]}' lies",
        width="stretch",
    )


def first_layer_weights(layer: LayerView) -> None:
    """Draw the first conv layer's filters as pictures, when that layer is shown."""
    first = first_conv(layer.graph)
    if first is None or first.id != layer.node.id:
        return
    weight = layer_weight(layer.model.module.get_submodule(first.path))
    if weight is not None and weight.ndim == 4 and weight.shape[1] in (1, 3):
        filters = counted(weight.shape[0], "first-layer filter")
        with st.expander(f"The weights of the {filters} (grey = 0)"):
            st.image(tile_grid(filter_tiles(weight)), width="stretch")
