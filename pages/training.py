"""Training: start a small CNN on Fashion-MNIST, watch it learn live, stop, resume or delete runs.

Two tabs: Runs (the selected run with its role, curves and controls, then every run, refreshed
while runs train) and Start a run (its architecture, its settings in a form, the start). Its
sections are in `convlens.ui.training`."""

import streamlit as st

from convlens.ui.owner import browser_owner, instructor_box
from convlens.ui.sidebar import page_setup_without_pickers
from convlens.ui.training import architecture_picker, run_settings, runs_section, start_training

page_setup_without_pickers("training")
browser_owner()  # the runs this browser starts are its own, also after a reload
st.title("Training")
st.caption(
    "Train DeepEyes' network or CNNVis' BaseCNN on Fashion-MNIST. A run trains in its own "
    "process: close the browser and it goes on. Its curves update live; every run records "
    "snapshots that later views (and `run:…` models) open."
)

# the runs first: a link to a run (`?run=NAME`) shows it, its role and its curves at once
runs_tab, start_tab = st.tabs(["Runs", "Start a run"])
with start_tab:
    arch = architecture_picker()
    settings = run_settings(arch)
    if settings is not None:
        start_training(arch, *settings)
with runs_tab:
    runs_section()
instructor_box()
