"""Network: the image's forward pass through the chain of layer nodes; click a node for details."""

import streamlit as st

from convlens.graph import LayerGraph
from convlens.overview import ForwardPass
from convlens.predict import Prediction
from convlens.style import CHAIN_VIEW_HEIGHT, NETWORK_IMAGE_WIDTH
from convlens.ui.cache import (
    cached_forward_pass,
    cached_graph,
    cached_predictions,
    cached_predictions_spec,
)
from convlens.ui.chain import render_chain
from convlens.ui.details import render_details
from convlens.ui.sidebar import Selection, page_setup, show_image_problem, thumbnail
from convlens.ui.state import quoted, stop_page, upload_digest, url_fragment

selection = page_setup("network")
st.title("Network")
st.caption(
    "The image's way through the network, top to bottom: each layer (a convolution with its "
    "normalisation and activation) beside its most active feature maps. Click a map to open its "
    "filter, a layer for its details, a group to open or close it."
)
model = selection.model
if model is None:
    stop_page()
if not model.pretrained:
    st.warning(model.weights_note)

graph = cached_graph(selection.model_key)
forward, predictions, image_key = None, [], None
if selection.image is not None:
    image_key = (selection.image.source, upload_digest(selection.image.source))
    forward = cached_forward_pass(selection.model_key, *image_key, selection.image.image)
    predictions = cached_predictions(selection.model_key, *image_key, selection.image.image)


def network_view(
    selection: Selection,
    graph: LayerGraph,
    forward: ForwardPass | None,
    predictions: list[Prediction],
    image_key: tuple[str, str | None] | None,
) -> None:
    """The chain and the selected layer's details: a click in the chain (a layer, a group)
    reruns them alone, not the sidebar and the page's head."""
    model = selection.model
    # The chain and the details side by side, each in a box of the window's height: a click on
    # any node, however far down the chain, shows its details beside it, on screen.
    chain_column, details_column = st.columns([4, 3], gap="medium")
    with chain_column:
        render_chain(graph, selection.model_name, forward, predictions, model.class_names)

    requested = st.session_state.get("layer")
    selected = graph.chain_node_of(requested) if requested else None
    with details_column, st.container(height=CHAIN_VIEW_HEIGHT + 52, border=False):
        # The layer's details in a box of their own: however many elements they take, the image
        # and its classes below keep their place, and the browser keeps their chart instead of
        # drawing it anew on each click in the chain.
        with st.container():
            if requested and selected is None:
                st.warning(
                    f"{model.name} has no layer {quoted(requested)}; click one in the chain."
                )
                st.session_state.pop("layer", None)
            if selected is None:
                st.info("Click a layer in the chain for its attributes, weights and filters.")
            else:
                st.session_state["layer"] = selected
                render_details(graph, graph.node(selected), selection.model_key)
            show_image_problem(selection)
        if selection.image is not None:
            st.markdown(f"**Top-5 classes** ({model.name}, {model.weights_status} weights)")
            st.image(
                thumbnail(selection.image.image, NETWORK_IMAGE_WIDTH),
                caption=selection.image.source,
                width=NETWORK_IMAGE_WIDTH,
            )
            st.vega_lite_chart(
                cached_predictions_spec(selection.model_key, *image_key, selection.image.image),
                width="stretch",
            )


url_fragment("network", network_view, None)(selection, graph, forward, predictions, image_key)
