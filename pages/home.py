"""Home: what ConvLens does, and the way into each view."""

import streamlit as st

from convlens.ui.navigation import PAGES
from convlens.ui.sidebar import page_setup

page_setup()

st.title("ConvLens")
st.markdown(
    "Look inside convolutional neural networks: see a network as a chain of layers, "
    "what its layers compute, and what it predicts for your image. Pick a model and an image in "
    "the sidebar; everything here works offline."
)
for page in PAGES[1:]:
    st.page_link(page.path, label=f"**{page.title}** — {page.purpose}", icon=page.icon)
st.markdown(
    "ConvLens brings together three published systems: **ConvLens** (layer chains, filter "
    "images, annotating filters), **CNNVis** (neuron clusters, reordered activation matrices, "
    "bundled edges) and **DeepEyes** (analysis during training). "
    "Every view keeps its state in the address bar: bookmark it to reopen the same view."
)
