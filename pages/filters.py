"""Filters: every filter of a layer on the image, one filter magnified, and its annotation."""

import numpy as np
import streamlit as st

from convlens.annotations import AnnotationStore, counted
from convlens.attribution import (
    GUIDED_BACKPROP_ROWS,
    filter_weight_norms,
    input_view,
    last_conv_node,
)
from convlens.charts import bars_chart
from convlens.graph import first_conv
from convlens.style import FILTERS_PER_PAGE, MAGNIFIED_SIZE
from convlens.tiles import diverging, gradient_picture, overlay, sequential, tile
from convlens.ui.cache import (
    cached_fingerprint,
    cached_grad_cam,
    cached_graph,
    cached_guided_backprop,
    cached_guided_backprops,
    cached_layer_maps,
    cached_model,
    cached_predictions,
    model_lock,
)
from convlens.ui.details import tile_grid
from convlens.ui.filters import (
    SORT_ORDERS,
    activation_tile,
    annotation_panel,
    dataset_views,
    filter_grid,
    gradient_tile,
    sort_filters,
    unit_bars,
)
from convlens.ui.sidebar import page_setup, show_image_problem
from convlens.ui.state import keep_valid, persisted, upload_digest
from convlens.weights import filter_tiles, layer_weight

selection = page_setup("filters")
st.title("Filters")
st.caption(
    "Every filter of one layer on your image: its activation map (red above zero, blue below, one "
    "scale for the layer) or its guided back-propagation image (which pixels make it fire). "
    "Click a filter's number to magnify it, see what it responds to, and mark it useful or useless."
)
model = selection.model
image = selection.image
show_image_problem(selection)
if model is None or image is None:
    st.stop()
if not model.pretrained:
    st.warning(model.weights_note)

key = selection.model_key
graph = cached_graph(*key)
digest = upload_digest(image.source)
nodes = [n for n in graph.chain if n.type in ("conv", "linear")]
node_ids = [n.id for n in nodes]
requested = st.session_state.get("layer")
if requested not in node_ids:
    mapped = graph.chain_node_of(requested) if requested else None
    if requested and mapped not in node_ids:
        st.warning(
            f"{selection.model_name} has no conv or linear layer '{requested}'; showing "
            f"{node_ids[0]}, pick another below."
        )
    st.session_state["layer"] = mapped if mapped in node_ids else node_ids[0]


def forget_filter() -> None:
    st.session_state.pop("filter", None)
    st.session_state["page"] = 1


layer_column, show_column, order_column = st.columns([3, 3, 2])
layer_id = layer_column.selectbox(
    "Layer",
    node_ids,
    format_func=lambda i: (
        f"{node_ids.index(i) + 1}. {i}  ({graph.node(i).output_shape[0]} "
        f"{'filters' if graph.node(i).type == 'conv' else 'units'})"
    ),
    **persisted("layer", on_change=forget_filter),
)
node = graph.node(layer_id)
SHOWS = ["activation", "guided back-propagation"]
keep_valid("show", SHOWS, SHOWS[0])
show = show_column.segmented_control(
    "Show", SHOWS, disabled=node.type == "linear", **persisted("show", widget="filters_show")
)
keep_valid("sort", SORT_ORDERS, SORT_ORDERS[0])
order = order_column.selectbox(
    "Sort by",
    SORT_ORDERS,
    help="Annotation: the filters labelled useful, then useless, then unsure (each filter's "
    "latest label), then the unannotated ones.",
    # a new order starts on its first page: page 2 of "mean activation" holds the weakest filters
    **persisted("sort", on_change=lambda: st.session_state.update(page=1), widget="filters_order"),
)

maps = cached_layer_maps(*key, image.source, digest, node.id, image.image)
view = input_view(model.transform, image.image)
store = AnnotationStore()
fingerprint = cached_fingerprint(*key)
module = cached_model(*key).module
norms = filter_weight_norms(module, node)
count = len(maps.maps)
try:
    selected = int(st.session_state.get("filter", ""))
except ValueError:
    selected = None
if selected is not None and not 0 <= selected < count:
    st.warning(f"{layer_id} has no filter {selected}; it has {count}.")
    selected = None
    st.session_state.pop("filter", None)


def pick(channel: int) -> None:
    st.session_state["filter"] = str(channel)


def gradient_of(channel: int) -> np.ndarray:
    position = maps.peak(channel)
    return cached_guided_backprop(
        *key, image.source, digest, node.id, channel, position, image.image
    )


grid_column, detail_column = st.columns([3, 2], gap="large")
with grid_column:
    if node.type == "linear":
        frame = unit_bars(maps, model.class_names if count == len(model.class_names) else None)
        st.altair_chart(
            bars_chart(
                frame["unit"], frame["activation"], f"{layer_id}: strongest units", "activation"
            ),
            width="stretch",
        )
        unit_choice = st.selectbox(
            "Unit", list(range(count)), index=selected or 0, key="filters_unit"
        )
        if unit_choice != selected:
            pick(unit_choice)
            selected = unit_choice
    else:
        labels = {
            channel: label
            for (_, channel), label in store.latest_labels(
                selection.model_name, fingerprint, layer=node.id
            ).items()
        }
        ordered = sort_filters(order, maps, norms, labels)
        pages = max(1, -(-count // FILTERS_PER_PAGE))
        page = 1
        if pages > 1:
            wanted = str(st.session_state.get("page", 1))
            st.session_state["page"] = int(wanted) if wanted.isdigit() else 1
            keep_valid("page", range(1, pages + 1), 1)
            page = st.number_input(
                f"Page (of {pages}, {FILTERS_PER_PAGE} filters each)",
                1,
                pages,
                **persisted("page", widget="filter_page"),
            )
        else:
            st.session_state.pop("page", None)
        shown = ordered[(page - 1) * FILTERS_PER_PAGE : page * FILTERS_PER_PAGE]
        if show == "guided back-propagation":
            # one batched backward pass per GUIDED_BACKPROP_ROWS filters, not one per filter
            bar = st.progress(0.0, text="Guided back-propagation…")
            gradients = {}
            for start in range(0, len(shown), GUIDED_BACKPROP_ROWS):
                chunk = tuple(shown[start : start + GUIDED_BACKPROP_ROWS])
                peaks = tuple(maps.peak(channel) for channel in chunk)
                images = cached_guided_backprops(
                    *key, image.source, digest, node.id, chunk, peaks, image.image
                )
                gradients.update(zip(chunk, images, strict=True))
                done = start + len(chunk)
                bar.progress(
                    done / len(shown), text=f"Guided back-propagation: {done}/{len(shown)}"
                )
            bar.empty()
            filter_grid(
                shown, lambda k: gradient_tile(gradients[k], k), selected, pick, "gbp", labels
            )
        else:
            filter_grid(shown, lambda k: activation_tile(maps, k), selected, pick, "act", labels)

with detail_column:
    if selected is None:
        st.info(
            "Click a filter's number to see it magnified, its top image patches and its annotation."
        )
    else:
        kind = "unit" if node.type == "linear" else "filter"
        st.subheader(f"{layer_id} · {kind} {selected}")
        st.markdown(
            f"Mean activation on this image **{maps.means[selected]:.3f}** · "
            f"weight norm **{norms[selected]:.3f}** "
            f"(rank {int((norms > norms[selected]).sum()) + 1} of {count})"
        )
        if node.type == "conv":
            scale = float(np.abs(maps.maps).max())
            left, right = st.columns(2)
            left.image(
                overlay(view, diverging(maps.maps[selected], scale)),
                caption="activation over the image",
                width="stretch",
            )
            gradient = gradient_of(selected)
            right.image(
                tile(gradient_picture(gradient), MAGNIFIED_SIZE),
                caption="guided back-propagation where it fires most, cropped to the pixels "
                "that reach it",
                width="stretch",
            )
        annotation_panel(store, selection.model_name, fingerprint, node.id, selected)
        dataset_views(key, model, model_lock(*key), node.id, selected)

st.divider()
st.subheader("Why this class?")
cam_node = last_conv_node(graph.chain)
predictions = cached_predictions(*key, image.source, digest, image.image)
if cam_node is None:
    st.caption("This network has no convolution layer to explain its decision with.")
else:
    classes = list(range(len(model.class_names)))
    top_class = predictions[0].index
    target = st.selectbox(
        "Class",
        classes,
        index=top_class,
        format_func=lambda c: (
            f"{model.class_names[c]}" + (" (top prediction)" if c == top_class else "")
        ),
        key="filters_cam_class",
    )
    heat = cached_grad_cam(*key, image.source, digest, cam_node.id, target, image.image)
    left, right = st.columns(2)
    left.image(view, caption=f"{image.source}, as the network sees it", width="stretch")
    right.image(
        overlay(view, sequential(heat, 1.0)),
        caption=f"Grad-CAM at {cam_node.id}: where the evidence for '{model.class_names[target]}' lies",
        width="stretch",
    )

first = first_conv(graph)
if first is not None and first.id == node.id:
    weight = layer_weight(module.get_submodule(first.path))
    if weight is not None and weight.ndim == 4 and weight.shape[1] in (1, 3):
        filters = counted(weight.shape[0], "first-layer filter")
        with st.expander(f"The weights of the {filters} (grey = 0)"):
            st.image(tile_grid(filter_tiles(weight)), width="stretch")
