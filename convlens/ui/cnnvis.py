"""Pieces of the CNNVis page: its URL-backed state, clicks in the picture, the quality flags."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import streamlit as st
import torch

from convlens.activations import Analysis
from convlens.attribution import readout_layer
from convlens.cnnvis.debugging import (
    LayerAverage,
    run_layer_averages,
    snapshot_edge_weights,
    with_debug,
)
from convlens.cnnvis.drawing import patch_images
from convlens.cnnvis.pipeline import contribution
from convlens.cnnvis.view import CnnvisView, LayerView, Options, QualityFlag, build_view
from convlens.runformat import read_stats
from convlens.ui.cache import browser_source, cached_graph, cached_model, model_lock
from convlens.ui.state import warn_reset, write_to_url

CONTRIBUTION_IMAGES = 256
CHART_GENERATION = "_cnnvis_chart_generation"
LAST_NEURON = "_cnnvis_last_neuron"
DIALOG_PATCH_PIXELS = 72


def text_state(key: str, default: str) -> str:
    """The URL-backed string state `key` (set to `default` when absent)."""
    value = st.session_state.get(key)
    if value in (None, ""):
        st.session_state[key] = value = default
    return str(value)


def set_state(key: str, value: str) -> None:
    st.session_state[key] = value


def split(value: str) -> list[str]:
    """The items of a comma-separated state value."""
    return [part for part in value.split(",") if part]


def choice(
    container, label: str, options: Sequence[str], state: str, default: str, **kwargs
) -> str:
    """A selectbox in `container` that edits the URL-backed string state `state` (a value not
    among `options`, from an old bookmark, falls back to `default`)."""
    wanted = text_state(state, default)
    if wanted not in options:
        warn_reset(state)
        set_state(state, default)
    index = list(options).index(wanted if wanted in options else default)
    return container.selectbox(
        label,
        options,
        index=index,
        key=f"cnnvis_{state}",
        on_change=lambda: set_state(state, st.session_state[f"cnnvis_{state}"]),
        **kwargs,
    )


SELECTION_FIELDS = {"neuron": ("node", "neuron"), "group": ("group",)}


def clicked(name: str) -> list[dict]:
    """The points of the picture's selection `name` (from the last click) that carry its fields:
    a click on a group header also reaches the neuron selection, with the header's fields."""
    state = st.session_state.get(chart_key()) or {}
    points = state.get("selection", {}).get(name) or []
    return [p for p in points if all(field in p for field in SELECTION_FIELDS[name])]


def toggle_clicked_group(group_ids: list[str], default: str) -> None:
    """Expand or collapse the group clicked in the picture (once per click), before the widgets
    that show the expanded groups are drawn; the address bar follows at once."""
    groups = clicked("group")
    group_id = groups[0].get("group") if groups else None
    if group_id in group_ids and st.session_state.get("_cnnvis_last_group") != group_id:
        now = set(split(text_state("groups", default))) ^ {group_id}
        set_state("groups", ",".join(g for g in group_ids if g in now))
        # The write at the end of a run that a chart selection started does not reach the
        # browser; this one does.
        write_to_url("cnnvis")
    st.session_state["_cnnvis_last_group"] = group_id


def chart_key() -> str:
    """The picture's widget key. It changes when a neuron's dialog closes: the new picture has no
    selection, so a second click on the same neuron opens its dialog again (the old picture kept
    the neuron selected, and a click on it changed nothing)."""
    return f"cnnvis_chart_{st.session_state.get(CHART_GENERATION, 0)}"


def forget_neuron_click() -> None:
    st.session_state[CHART_GENERATION] = st.session_state.get(CHART_GENERATION, 0) + 1
    st.session_state[LAST_NEURON] = None


def newly_clicked_neuron(view: CnnvisView) -> tuple[LayerView, int] | None:
    """The neuron a click in the picture has just picked (once per click: the chart keeps its
    selection over later reruns), when it is one of the view's."""
    picked = clicked("neuron")
    point = (picked[0]["node"], int(picked[0]["neuron"])) if picked else None
    if point == st.session_state.get(LAST_NEURON):
        return None
    st.session_state[LAST_NEURON] = point
    layer = view.layers.get(point[0]) if point else None
    if layer is None or not 0 <= point[1] < layer.neurons:
        return None
    return layer, point[1]


@st.dialog("Neuron", width="large", on_dismiss=forget_neuron_click)
def neuron_dialog(
    layer: LayerView,
    neuron: int,
    patch_uri: Callable[[LayerView, int, int], str],
    class_of: Callable[[int], str],
) -> None:
    """What a click on a neuron offers, where the click was: its top image patches (small ones
    outlined in their surroundings) with their images' classes (`class_of(image index)`), opening
    it in the Filters view, and moving it to another cluster (CNNVis 4.4's interactions)."""
    cluster = int(layer.clusters.labels[neuron])
    st.markdown(
        f"**{layer.node} · neuron {neuron}** — cluster c{cluster} of {layer.clusters.count}"
        + (" · dead: about zero on every class" if neuron in layer.dead else "")
    )
    ranks = range(layer.top_images.shape[1])
    st.image(
        [patch_uri(layer, neuron, rank) for rank in ranks],
        width=DIALOG_PATCH_PIXELS,
        caption=[f"#{rank + 1} {class_of(int(layer.top_images[neuron, rank]))}" for rank in ranks],
    )
    left, middle, right = st.columns([1, 1, 1], vertical_alignment="bottom")
    if left.button("Open in Filters", type="primary"):
        st.session_state["layer"], st.session_state["filter"] = layer.node, str(neuron)
        st.switch_page("pages/filters.py")
    target = middle.selectbox(
        "Move to cluster",
        range(layer.clusters.count + 1),
        index=cluster,
        format_func=lambda c: f"c{c}" if c < layer.clusters.count else "a new cluster",
    )
    if right.button("Move", help="Matrices, packing and bundling are recomputed"):
        kept = [
            move
            for move in split(text_state("moves", "").replace(";", ","))
            if not move.startswith(f"{layer.node}:{neuron}>")
        ]
        set_state("moves", ",".join([*kept, f"{layer.node}:{neuron}>{target}"]))
        st.rerun()


@st.cache_data(show_spinner="Weighing each neuron's contribution…", max_entries=8)
def cached_contributions(
    model_key: tuple[str, str | None, str], data: str, nodes: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """Each node's per-neuron contribution over the first CONTRIBUTION_IMAGES images of `data`."""
    model = cached_model(*model_key)
    graph = cached_graph(*model_key)
    source = browser_source(data)
    count = min(CONTRIBUTION_IMAGES, source.size)
    batch = torch.stack([model.transform(source.load(i)) for i in range(count)])
    with model_lock(*model_key):
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
    model_key: tuple[str, str | None, str], run_path: str, nodes: tuple[str, ...], measure: str
) -> list[LayerAverage]:
    """`run_layer_averages` over every snapshot of a run (read once, not on every rerun)."""
    return run_layer_averages(run_path, cached_graph(*model_key), nodes, measure)


def shown_nodes(
    model_key: tuple[str, str | None, str], analysis: Analysis, groups: Sequence[str]
) -> tuple[str, ...]:
    """The analysed nodes of the expanded `groups`, in network order."""
    analysed = {layer.id for layer in analysis.layers}
    return tuple(
        node
        for group in cached_graph(*model_key).groups
        if group.id in groups
        for node in group.nodes
        if node in analysed
    )


@st.cache_data(show_spinner="Clustering neurons and bundling their edges…", max_entries=16)
def cached_view(
    model_key: tuple[str, str | None, str],
    data: str,
    options: Options,
    run_path: str | None,
    step: int | None,
    edges: str,
    _analysis: Analysis,
) -> CnnvisView:
    """The CNNVis view of the model's analysis over `data` (`_analysis`, which the model and the
    data determine), with snapshot `step` of the recorded run at `run_path` on its edges: a click
    that changes none of these draws at once instead of clustering and bundling again."""
    model, graph = cached_model(*model_key), cached_graph(*model_key)
    shown = shown_nodes(model_key, _analysis, options.expanded)
    given = None
    if options.importance == "contribution" and shown:
        given = cached_contributions(model_key, data, shown)
    stats = cached_stats(run_path, step) if run_path is not None and step is not None else {}
    view = build_view(
        model_key[0],
        model.module,
        graph,
        _analysis,
        options,
        contributions=given,
        edge_weights=snapshot_edge_weights(stats, graph, shown),
    )
    return with_debug(view, stats, graph, edges) if stats else view


@st.cache_resource(show_spinner=False, max_entries=8)
def cached_patch_images(
    model_key: tuple[str, str | None, str], data: str
) -> Callable[[LayerView, int, int], str]:
    """The picture's patch function for a model and a data source, kept with its memo of encoded
    patches across reruns and sessions."""
    return patch_images(browser_source(data).load, cached_model(*model_key).transform)


@st.cache_resource(show_spinner=False, max_entries=8)
def cached_dialog_patches(
    model_key: tuple[str, str | None, str], data: str
) -> Callable[[LayerView, int, int], str]:
    """The neuron dialog's patch function: larger patches, small ones in their surroundings."""
    model = cached_model(*model_key)
    return patch_images(
        browser_source(data).load, model.transform, DIALOG_PATCH_PIXELS, context=True
    )


def flags_table(flags: list[QualityFlag], key: str | None) -> None:
    """The quality flags; with a key, selecting a row outlines its neurons in the picture."""
    if not flags:
        st.caption("No impure clusters, redundant or dead neurons in the expanded layers.")
        return
    frame = pd.DataFrame(
        [{"layer": f.layer, "flag": f.flag, "where": f.where, "detail": f.detail} for f in flags]
    )
    if key is None:
        st.dataframe(frame, hide_index=True, width="stretch")
        return
    st.caption("Select a row to outline its neurons in the picture.")
    st.dataframe(
        frame,
        hide_index=True,
        width="stretch",
        on_select="rerun",
        selection_mode="single-row",
        key=key,
    )


def outlined(flags: list[QualityFlag], key: str) -> set[tuple[str, int]]:
    """The neurons of the flag selected in the table `key` (read before the picture is drawn)."""
    chosen = (st.session_state.get(key) or {}).get("selection", {}).get("rows") or []
    if not chosen or chosen[0] >= len(flags):
        return set()
    flag = flags[chosen[0]]
    return {(flag.layer, neuron) for neuron in flag.neurons}
