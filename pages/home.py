"""Home: what ConvLens does, the way into each view, and which models work offline here."""

import pandas as pd
import streamlit as st

from convlens.models import zoo
from convlens.style import PREPARATION_REFRESH_SECONDS
from convlens.ui.launch import PREPARATION
from convlens.ui.navigation import PAGES
from convlens.ui.sidebar import page_setup

page_setup("home")
st.title("ConvLens")
st.markdown(
    "Look inside convolutional neural networks: see a network as a chain of layers, "
    "what its layers compute, and what it predicts for your image. Pick a model and an image in "
    "the sidebar; everything here works offline."
)


@st.fragment(run_every=PREPARATION_REFRESH_SECONDS if PREPARATION.running else None)
def preparation_status() -> None:
    """The first start's analysis of the shipped models, while it runs (refreshed)."""
    if PREPARATION.running:
        share = PREPARATION.done / PREPARATION.total if PREPARATION.total else 0.0
        st.progress(
            share,
            text=f"Preparing the shipped models' {PREPARATION.task} (once: they stay on disk), "
            f"so that no view waits later: {share:.0%}",
        )
    elif PREPARATION.error:
        st.warning(
            f"Preparing the shipped models' statistics failed ({PREPARATION.error}); "
            "the views compute them when asked."
        )


preparation_status()
for page in PAGES[1:]:
    # a link's label stays on one line: the purpose goes beside it, where it can wrap
    link, purpose = st.columns([1, 4], vertical_alignment="center")
    link.page_link(page.path, label=f"**{page.title}**", icon=page.icon)
    purpose.markdown(page.purpose)
st.markdown(
    "ConvLens brings together three published systems: **ConvLens** (layer chains, filter "
    "images, annotating filters), **CNNVis** (neuron clusters, reordered activation matrices, "
    "bundled edges) and **DeepEyes** (analysis during training). "
    "Every view keeps its state in the address bar: bookmark it to reopen the same view."
)

st.subheader("Models on this machine")
rows = [
    {
        "model": entry.name,
        "pretrained weights": "ready offline"
        if entry.weights_available
        else entry.how_to_get_weights,
        "input": "×".join(str(v) for v in entry.input_size),
        "classes": entry.num_classes,
        "what it is": entry.description,
    }
    for entry in zoo()
]
# a static table wraps its cells: the commands and descriptions are read whole at 1280x720
st.table(pd.DataFrame(rows).set_index("model"))
st.caption(
    "Before a lecture without internet, fetch the weights you need on a machine that has it, "
    "with the command in the *pretrained weights* column; they stay in the torch hub cache."
)
