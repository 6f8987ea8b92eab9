"""The CNNVis page's caches, shared by every browser session of the server.

Their keys name only what determines the result (the model, the data source, the user's options,
the run and snapshot): 30 students asking for the same view compute it once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import streamlit as st
import torch

from convlens.activations import Analysis
from convlens.attribution import readout_layer
from convlens.charts import layer_averages_chart
from convlens.cnnvis.debugging import (
    LayerAverage,
    run_layer_averages,
    snapshot_edge_weights,
    with_debug,
)
from convlens.cnnvis.drawing import (
    FACETS,
    PALETTES,
    Patch,
    Picture,
    draw,
    patch_crops,
    patch_images,
)
from convlens.cnnvis.pipeline import contribution
from convlens.cnnvis.view import (
    CnnvisView,
    LayerView,
    Options,
    build_view,
    row_orders,
    with_row_orders,
)
from convlens.models import ModelKey
from convlens.runformat import read_stats
from convlens.ui.cache import browser_source, cached_graph, cached_model, model_lock
from convlens.ui.vega import vega_lite_spec, with_arrow_datasets

CONTRIBUTION_IMAGES = 256
DIALOG_PATCH_PIXELS = 72


@dataclass(frozen=True)
class ViewKey:
    """What determines a CNNVis view: the model, the labelled data source, the user's options,
    and the recorded run (its folder) whose snapshot `step` colours the edges by `edges`."""

    model: ModelKey
    data: str
    options: Options
    run: str | None = None
    step: int | None = None
    edges: str = "weight"


@dataclass(frozen=True)
class Look:
    """How the picture shows a view: the facet, which top patch (0: the best), the palette and
    whether weak edges are drawn."""

    facet: str = FACETS[0]
    rank: int = 0
    palette: str = next(iter(PALETTES))
    show_weak: bool = False


@st.cache_data(show_spinner="Weighing each neuron's contribution…", max_entries=8)
def cached_contributions(
    model_key: ModelKey, data: str, nodes: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """Each node's per-neuron contribution over the first CONTRIBUTION_IMAGES images of `data`."""
    model = cached_model(model_key)
    graph = cached_graph(model_key)
    source = browser_source(data)
    count = min(CONTRIBUTION_IMAGES, source.size)
    batch = torch.stack([model.transform(source.load(i)) for i in range(count)])
    with model_lock(model_key):
        return {
            node: contribution(model.module, batch, readout_layer(graph, graph.node(node)))
            for node in nodes
        }


@st.cache_data(show_spinner=False, max_entries=64)
def cached_stats(run_path: str, step: int) -> dict[str, np.ndarray]:
    """The debugging statistics of one snapshot of a recorded run."""
    return read_stats(run_path, step)


@st.cache_data(show_spinner=False, max_entries=32)
def cached_layer_averages(
    model_key: ModelKey, run_path: str, nodes: tuple[str, ...], measure: str
) -> list[LayerAverage]:
    """`run_layer_averages` over every snapshot of a run (read once, not on every rerun)."""
    return run_layer_averages(run_path, cached_graph(model_key), nodes, measure)


@st.cache_data(show_spinner=False, max_entries=32)
def cached_layer_averages_chart(
    model_key: ModelKey,
    run_path: str,
    nodes: tuple[str, ...],
    measure: str,
    step: int | None,
) -> dict | None:
    """The Vega-Lite spec of `layer_averages_chart` with snapshot `step` in red (None when the run
    has no averages). Not validated on every rerun: the chart is checked in the tests."""
    averages = cached_layer_averages(model_key, run_path, nodes, measure)
    if not averages:
        return None
    return vega_lite_spec(layer_averages_chart(averages, nodes, step, measure))


def shown_nodes(model_key: ModelKey, analysis: Analysis, groups: Sequence[str]) -> tuple[str, ...]:
    """The analysed nodes of the expanded `groups`, in network order."""
    analysed = {layer.id for layer in analysis.layers}
    return tuple(
        node
        for group in cached_graph(model_key).groups
        if group.id in groups
        for node in group.nodes
        if node in analysed
    )


# A view holds its layers' activation vectors, clusters and top patches (EfficientNet-Lite0's
# default 6 MB; 113 MB while each layer's (n, n) similarity was kept), a picture its spec with
# the packed patches (1-4 MB): 64 of each let a room's students come back to the views they opened
# (16 did not hold bench/interactions.py's 21 group states of three models).
@st.cache_data(show_spinner="Clustering neurons and bundling their edges…", max_entries=64)
def cached_view(key: ViewKey, _analysis: Analysis) -> CnnvisView:
    """The CNNVis view that `key` names, over the model's analysis of its data (`_analysis`,
    which the model and the data determine): a click that changes none of these draws at once
    instead of clustering and bundling again. Its matrix orders are left to `cached_ordered_view`
    (the activations facet's): the default features facet opens without them."""
    model, graph = cached_model(key.model), cached_graph(key.model)
    shown = shown_nodes(key.model, _analysis, key.options.expanded)
    given = None
    if key.options.importance == "contribution" and shown:
        given = cached_contributions(key.model, key.data, shown)
    stats = cached_stats(key.run, key.step) if key.run is not None and key.step is not None else {}
    view = build_view(
        key.model.name,
        model.module,
        graph,
        _analysis,
        key.options,
        contributions=given,
        edge_weights=snapshot_edge_weights(stats, graph, shown),
        order_rows=False,
    )
    return with_debug(view, stats, graph, key.edges) if stats else view


def cached_ordered_view(key: ViewKey, _analysis: Analysis) -> CnnvisView:
    """`cached_view` with its matrix orders, each layer's ordered once for every session and
    view (only the orders are cached: a second copy of the view would hold its similarity
    matrices twice)."""
    return with_row_orders(
        cached_view(key, _analysis),
        lambda layer: cached_row_orders(layer.vectors, tuple(layer.clusters.representatives)),
    )


@st.cache_data(show_spinner="Ordering the matrix rows…", max_entries=256)
def cached_row_orders(
    vectors: np.ndarray, clusters: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, ...]:
    """A layer's matrix orders (`row_orders`), keyed by what they depend on (Streamlit hashes the
    arrays): the views that show a layer clustered alike share them, so a view with one more
    group expanded orders only that group's layers."""
    return row_orders(vectors, clusters)


def drawn_picture(
    key: ViewKey, look: Look, highlight: tuple[tuple[str, int], ...], analysis: Analysis
) -> Picture:
    """The picture of the view `key` names, drawn as `look` says with the neurons of `highlight`
    framed (from the cached view). Not validated: `draw`'s pictures are checked against
    Vega-Lite's schema in the tests."""
    shown = cached_ordered_view if look.facet == "activations" else cached_view
    view = shown(key, analysis)
    return draw(
        view,
        cached_patch_crops(key.model, key.data),
        facet=look.facet,
        rank=look.rank,
        palette=look.palette,
        show_weak=look.show_weak,
        debug_title=key.edges if key.edges != "weight" else None,
        highlight=set(highlight),
    )


@st.cache_data(show_spinner="Drawing the picture…", max_entries=64)
def cached_picture(
    key: ViewKey, look: Look, highlight: tuple[tuple[str, int], ...], _analysis: Analysis
) -> dict:
    """`drawn_picture` as the page sends it, kept in this form only: the Vega-Lite spec with its
    layers' data as named Arrow datasets (a rerun copies bytes, not records; pictures that share
    a spec keep the browser's chart, `Picture`)."""
    return with_arrow_datasets(drawn_picture(key, look, highlight, _analysis).with_datasets())


@st.cache_resource(show_spinner=False, max_entries=8)
def cached_patch_crops(model_key: ModelKey, data: str) -> Patch:
    """The picture's patch function for a model and a data source, kept with its memo of cropped
    patches across reruns and sessions."""
    return patch_crops(browser_source(data).load, cached_model(model_key).transform)


@st.cache_resource(show_spinner=False, max_entries=8)
def cached_dialog_patches(model_key: ModelKey, data: str) -> Callable[[LayerView, int, int], str]:
    """The neuron dialog's patch function: larger patches, small ones in their surroundings."""
    model = cached_model(model_key)
    return patch_images(
        browser_source(data).load, model.transform, DIALOG_PATCH_PIXELS, context=True
    )
