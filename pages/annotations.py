"""Annotations: every filter marked useful, useless or unsure; export, import, and the ablation check.

The page lists the rows marked (one page at a time, chosen by model, layer and filter), exports and
imports them, and checks what zeroing the sidebar model's useless filters costs. Its sections are in
`convlens.ui.annotations`."""

import streamlit as st

from convlens.annotations import AnnotationStore
from convlens.ui.annotations import (
    ablation_check,
    annotation_table,
    chosen_rows,
    export_buttons,
    import_box,
    row_filters,
)
from convlens.ui.sidebar import page_setup
from convlens.ui.state import stop_page

selection = page_setup("annotations")
st.title("Annotations")
st.caption(
    "Every filter someone marked useful, useless or unsure (on the Filters page or with "
    "`python -m convlens annotations set`), and what removing the useless ones costs the model."
)
store = AnnotationStore()

overview, chosen_filter = chosen_rows(store, selection.model_name)
row_filters(overview)
annotation_table(overview, chosen_filter)

export_column, import_column = st.columns(2)
with export_column:
    export_buttons(store)
with import_column:
    import_box(store)

st.divider()
st.subheader("What do the useless filters cost?")
if selection.model is None:
    stop_page()
ablation_check(store, selection, selection.model)
