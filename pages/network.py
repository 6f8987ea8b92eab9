"""Network: the model as a chain of layer nodes; click a node for its details."""

import streamlit as st

from convlens.charts import predictions_chart
from convlens.style import NETWORK_IMAGE_WIDTH
from convlens.ui.cache import cached_graph, cached_predictions
from convlens.ui.chain import render_chain
from convlens.ui.details import render_details
from convlens.ui.sidebar import page_setup, show_image_problem
from convlens.ui.state import upload_digest

selection = page_setup("network")
st.title("Network")
st.caption(
    "The network as a chain of layer nodes, left to right. A convolution and its normalisation "
    "and activation are one node; groups end at pooling layers. Click a node to see its details."
)
model = selection.model
if model is None:
    st.stop()
if not model.pretrained:
    st.warning(model.weights_note)

graph = cached_graph(*selection.model_key)
# Two nodes a row beside the details: at 1280x720 the chain's labels read at full size and a
# click's details appear next to it, in view.
chain_column, details_column = st.columns(2, gap="medium")
with chain_column:
    render_chain(graph, selection.model_name)

requested = st.session_state.get("layer")
selected = graph.chain_node_of(requested) if requested else None
with details_column:
    if requested and selected is None:
        st.warning(f"{model.name} has no layer '{requested}'; click one in the chain.")
        st.session_state.pop("layer", None)
    if selected is None:
        st.info("Click a layer node in the chain to see its attributes, weights and filters.")
    else:
        st.session_state["layer"] = selected
        render_details(graph, graph.node(selected), selection.model_key)
    show_image_problem(selection)
    if selection.image is not None:
        predictions = cached_predictions(
            *selection.model_key,
            selection.image.source,
            upload_digest(selection.image.source),
            selection.image.image,
        )
        st.markdown(f"**Top-5 classes** ({model.name}, {model.weights_status} weights)")
        st.image(selection.image.image, caption=selection.image.source, width=NETWORK_IMAGE_WIDTH)
        st.altair_chart(predictions_chart(predictions), width="stretch")
