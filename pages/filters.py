"""Filters: every filter of a layer on the image, one filter magnified, and its annotation."""

import streamlit as st

from convlens.annotations import AnnotationStore
from convlens.attribution import filter_weight_norms, input_view
from convlens.ui.cache import cached_fingerprint, cached_graph, cached_layer_maps, cached_model
from convlens.ui.filters import (
    LayerView,
    class_evidence,
    filter_details,
    first_layer_weights,
    grid_section,
    layer_controls,
    selected_filter,
)
from convlens.ui.sidebar import page_setup, show_image_problem
from convlens.ui.state import stop_page, upload_digest, url_fragment

selection = page_setup("filters")
st.title("Filters")
st.caption(
    "Every filter of one layer on your image: its activation map (red above zero, blue below, one "
    "scale for the layer) or its guided back-propagation image (which pixels make it fire). "
    "Click a filter's tile to magnify it, see what it responds to, and mark it useful or useless; "
    "click a position of its map to see the arithmetic of one convolution."
)
model = selection.model
image = selection.image
show_image_problem(selection)
if model is None or image is None:
    stop_page()
if not model.pretrained:
    st.warning(model.weights_note)

key = selection.model_key
graph = cached_graph(key)
digest = upload_digest(image.source)
node, show, order = layer_controls(graph, selection.model_name)
layer = LayerView(
    model_key=key,
    model=model,
    image=image,
    digest=digest,
    graph=graph,
    node=node,
    maps=cached_layer_maps(key, image.source, digest, node.id, image.image),
    norms=filter_weight_norms(cached_model(key).module, node),
    picture=input_view(model.transform, image.image),
)
store = AnnotationStore()
fingerprint = cached_fingerprint(key)


def filters_view(
    layer: LayerView, show: str, order: str, store: AnnotationStore, fingerprint: str
) -> None:
    """The grid and the selected filter: a click in either (a tile, a map's position, an
    annotation, the grid's page) reruns them alone, not the page around them."""
    node = layer.node
    selected = selected_filter(node.id, len(layer.maps.maps))
    labels = {
        channel: label
        for (_, channel), label in store.latest_labels(
            layer.model_key.name, fingerprint, layer=node.id
        ).items()
    }
    # the grid's FILTER_GRID_COLUMNS tiles beside the magnified map, at 1280×720
    grid_column, detail_column = st.columns([8, 5], gap="medium")
    with grid_column:
        selected = grid_section(layer, show, order, selected, labels)
    with detail_column:
        filter_details(layer, selected, store, fingerprint)


url_fragment("filters", filters_view, None)(layer, show, order, store, fingerprint)

st.divider()
class_evidence(layer)
first_layer_weights(layer)
