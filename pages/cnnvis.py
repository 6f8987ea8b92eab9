"""CNNVis: neuron clusters with packed learned features or reordered activation matrices, and
the bundled edges between them, with the debugging information of a recorded run."""

import streamlit as st

from convlens.activations import Analysis, ImageDataset
from convlens.cnnvis.view import default_groups, quality_flags
from convlens.graph import LayerGraph
from convlens.models import list_models
from convlens.runformat import list_snapshots
from convlens.runs import model_run
from convlens.ui.cache import cached_graph, model_lock
from convlens.ui.cnnvis.caches import ViewKey, cached_dialog_patches, cached_view
from convlens.ui.cnnvis.controls import (
    analysed_group_ids,
    controls,
    expanded_groups,
    labelled_data,
)
from convlens.ui.cnnvis.debugging import layer_averages
from convlens.ui.cnnvis.export import export_picture
from convlens.ui.cnnvis.flags import flags_section, outlined
from convlens.ui.cnnvis.picture import (
    compare_choice,
    compared_model,
    comparison,
    neuron_dialog,
    newly_clicked_neuron,
    show_picture,
    toggle_clicked_group,
    undo_moves_button,
)
from convlens.ui.filters import dataset_analysis
from convlens.ui.folded import folded_section
from convlens.ui.sidebar import Selection, page_setup
from convlens.ui.state import stop_page, url_fragment

selection = page_setup("cnnvis")
st.title("CNNVis")
st.caption(
    "The network left to right: click a layer group to expand it; each large rectangle is a "
    "cluster of neurons that respond alike to the classes, showing their top image patches (size = "
    "importance) or their activation matrix; green and red curves bundle the strongest positive "
    "and negative weights between clusters. Click a neuron to inspect or move it."
)
model = selection.model
if model is None:
    stop_page()
labelled = labelled_data(selection.model_name, model)
if labelled is None:
    stop_page()
data, source = labelled

key = selection.model_key
graph = cached_graph(key)
analysis = dataset_analysis(key, model, model_lock(key), data, "cnnvis_analyze")
if analysis is None:
    stop_page()


def cnnvis_view(
    selection: Selection, data: str, source: ImageDataset, graph: LayerGraph, analysis: Analysis
) -> None:
    """The toolbar, the picture and what it shows below: a click in them (a group, a neuron, a
    facet, a snapshot) reruns them alone, not the sidebar and the page's head."""
    model, key = selection.model, selection.model_key
    # Groups: a click in the picture toggles one before the toolbar shows them.
    group_ids = analysed_group_ids(graph, analysis)
    toggle_clicked_group(group_ids, ",".join(default_groups(graph, analysis)))
    expanded = expanded_groups(selection.model_name, group_ids, graph, analysis)

    run = model_run(selection.model_name)
    steps = list_snapshots(run) if run is not None else []
    choices = controls(group_ids, expanded, list(analysis.classes), run, steps)
    view_key = ViewKey(
        key,
        data,
        choices.options,
        str(run) if run is not None else None,
        choices.step,
        choices.edges,
    )
    try:
        view = cached_view(view_key, analysis)
    except ValueError as error:  # a link's move that the layer cannot make
        st.error(str(error))
        stop_page()

    # The picture, its quality flags outlined when one is selected below, the compared model
    # under it.
    flags = quality_flags(view)
    compare_options = ["none"] + [m for m in list_models() if m != selection.model_name]
    compare = compared_model(compare_options)
    undo_moves_button(choices.options.moves)
    if compare != "none":
        st.markdown(f"**{selection.model_name}**")
    inline_spec = show_picture(view_key, choices.look, analysis, outlined(flags))
    if compare != "none":
        comparison(compare, view_key, choices.look, graph, analysis, model.input_size)

    picked = newly_clicked_neuron(view)
    if picked is not None:
        neuron_dialog(
            *picked,
            cached_dialog_patches(key, data),
            lambda index: source.classes[source.labels[index]],
        )

    flags_section(flags)

    if run is not None and steps:
        nodes = tuple(layer.id for layer in analysis.layers)
        layer_averages(key, run, nodes, choices.edges, choices.step)

    compare_choice(compare_options)

    export = folded_section("Export the picture for slides", "cnnvis_export")
    if export is not None:
        with export:
            export_picture(selection.model_name, repr((selection.model_name, choices)), inline_spec)


url_fragment("cnnvis", cnnvis_view, None)(selection, data, source, graph, analysis)
