"""Training: start a small CNN on Fashion-MNIST, watch it learn live, stop, resume or delete runs.

The page starts a run (its architecture, its settings in a form, the start) and lists the runs
with the selected one's curves and controls, refreshed while runs train. Its sections are in
`convlens.ui.training`."""

import streamlit as st

from convlens.ui.owner import browser_owner, instructor_box
from convlens.ui.sidebar import page_setup
from convlens.ui.training import architecture_picker, run_settings, runs_section, start_training

page_setup("training")
browser_owner()  # the runs this browser starts are its own, also after a reload
st.title("Training")
st.caption(
    "Train DeepEyes' network or CNNVis' BaseCNN on Fashion-MNIST. A run trains in its own "
    "process: close the browser and it goes on. Its curves update live; every run records "
    "snapshots that later views (and `run:…` models) open."
)

st.markdown("**Start a run**")
arch = architecture_picker()
settings = run_settings(arch)
if settings is not None:
    start_training(arch, *settings)
instructor_box()
runs_section()
