"""The CNNVis picture on the page: drawing it, clicks in it (a group expands or collapses, a
neuron opens its dialog), the comparison with another model below it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import streamlit as st

from convlens.activations import Analysis
from convlens.cnnvis.drawing import selection_names
from convlens.cnnvis.view import (
    CnnvisView,
    LayerView,
    format_moves,
    matched_groups,
    parse_moves,
    quality_flags,
    with_move,
)
from convlens.graph import LayerGraph
from convlens.models import ModelKey
from convlens.ui.cache import cached_graph, cached_model, model_lock
from convlens.ui.cnnvis.caches import (
    DIALOG_PATCH_PIXELS,
    Look,
    ViewKey,
    cached_picture,
    cached_view,
    drawn_picture,
)
from convlens.ui.cnnvis.controls import groups_state, state_groups
from convlens.ui.cnnvis.flags import flags_section
from convlens.ui.filters import dataset_analysis
from convlens.ui.state import keep_valid, persisted, write_to_url

CHART_GENERATION = "_cnnvis_chart_generation"
LAST_NEURON = "_cnnvis_last_neuron"
TOGGLED_GROUPS = "_cnnvis_toggled_groups"
SELECTION_FIELDS = {"neuron": ("node", "neuron"), "group": ("group",)}


def chart_key() -> str:
    """The picture's widget key. It changes when a neuron's dialog closes: the new picture has no
    selection, so a second click on the same neuron opens its dialog again (the old picture kept
    the neuron selected, and a click on it changed nothing). A click on a group keeps it: the
    browser keeps its chart and replaces the data (`convlens.cnnvis.drawing.Picture`)."""
    return f"cnnvis_chart_{st.session_state.get(CHART_GENERATION, 0)}"


def clicked(name: str) -> list[dict]:
    """The points of the picture's selection `name` (from the last click) that carry its fields:
    a click on a group header also reaches the neuron selection, with the header's fields."""
    state = st.session_state.get(chart_key()) or {}
    points = state.get("selection", {}).get(name) or []
    return [
        p
        for p in points
        if isinstance(p, dict) and all(field in p for field in SELECTION_FIELDS[name])
    ]


def toggle_clicked_group(group_ids: list[str], default: str) -> None:
    """Expand or collapse the group clicked in the picture (once per click), before the widgets
    that show the expanded groups are drawn; the address bar follows at once.

    The picture's group selection toggles: it holds the groups clicked an odd number of times
    since the chart was drawn, so a click is the group that entered or left it since the last
    run. A chart drawn anew (another key, or none in the last run) starts empty."""
    seen = st.session_state.get(TOGGLED_GROUPS)
    drawn = st.session_state.get(chart_key()) is not None
    before = seen[1] if drawn and seen is not None and seen[0] == chart_key() else frozenset()
    now = frozenset(str(p["group"]) for p in clicked("group")) & set(group_ids)
    st.session_state[TOGGLED_GROUPS] = (chart_key(), now)
    if now != before:
        expanded = set(state_groups(st.session_state.get("groups") or default)) ^ now ^ before
        st.session_state["groups"] = groups_state(g for g in group_ids if g in expanded)
        # The write at the end of a run that a chart selection started does not reach the
        # browser; this one does.
        write_to_url("cnnvis")


def forget_picture_clicks() -> None:
    """Draw a fresh picture, without the selections of the clicks made so far."""
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


def undo_moves_button(moves: tuple) -> None:
    """A button that takes back the neurons the user moved, when there are any."""
    if moves and st.button(
        f"Undo the moves ({len(moves)})", help="Back to the clusters the algorithm found"
    ):
        st.session_state["moves"] = ""
        st.rerun()


def show_picture(
    key: ViewKey, look: Look, analysis: Analysis, highlight: set[tuple[str, int]]
) -> Callable[[], dict]:
    """Draw the picture of the view `key` names; a click in it reruns the page. Returns what
    gives its Vega-Lite spec with the data inline (for the export: drawn again when asked)."""
    framed = tuple(sorted(highlight))
    spec = cached_picture(key, look, framed, analysis)
    st.vega_lite_chart(
        spec, on_select="rerun", selection_mode=selection_names(spec), key=chart_key()
    )
    st.caption(
        "Brown dashed frame: an impure cluster, under half of its top patches from one class. "
        "Orange frames: the neurons of the quality flags selected below."
    )
    return lambda: drawn_picture(key, look, framed, analysis).to_dict(validate=False)


def compared_model(options: Sequence[str]) -> str:
    """The model the URL state `compare` names to draw below this one ("none" for none)."""
    keep_valid("compare", options, "none")
    return st.session_state["compare"]


def compare_choice(options: Sequence[str]) -> None:
    """The selectbox of the model to compare with, under the page's sections."""
    st.selectbox(
        "Compare with another model on the same images",
        options,
        **persisted("compare", widget="cnnvis_compare"),
        help="Draws it below this one, its layer groups matched to the expanded ones by kind "
        "(conv with conv, fc with fc, counted from the last), e.g. fashion_basecnn against "
        "fashion_basecnn_x0.25 or fashion_basecnn_shallow (CNNVis 7.2)",
    )


def comparison(
    name: str, key: ViewKey, look: Look, graph: LayerGraph, analysis: Analysis, input_size
) -> None:
    """The other model's picture below this one, with the groups that match the expanded ones
    expanded (CNNVis 7.2), and its flags. Each picture keeps the page's whole width: side by
    side, at 1280 px, neither was readable."""
    other_key = ModelKey.of(name)
    other = cached_model(other_key)
    if tuple(other.input_size) != tuple(input_size):
        st.warning(f"{name} takes {other.input_size} images, not {input_size}: no common images.")
        return
    other_graph = cached_graph(other_key)
    other_analysis = dataset_analysis(
        other_key, other, model_lock(other_key), key.data, "cnnvis_compare_analyze"
    )
    if other_analysis is None:
        return
    expanded = key.options.expanded
    matches = matched_groups(graph, analysis, other_graph, other_analysis, expanded)
    options = replace(key.options, expanded=tuple(dict.fromkeys(matches.values())), moves=())
    other_view = ViewKey(other_key, key.data, options)
    rule = "conv with conv, fc with fc, counted from the last"
    st.markdown(
        f"**{name}** — its groups matched by kind to the expanded ones ({rule}): "
        + (", ".join(f"{mine} → {theirs}" for mine, theirs in matches.items()) or "none")
    )
    st.vega_lite_chart(cached_picture(other_view, look, (), other_analysis))
    flags = quality_flags(cached_view(other_view, other_analysis))
    flags_section(flags, name)


@st.dialog("Neuron", width="large", on_dismiss=forget_picture_clicks)
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
        moves = parse_moves(st.session_state.get("moves") or "")
        st.session_state["moves"] = format_moves(with_move(moves, layer.node, neuron, target))
        st.rerun()
