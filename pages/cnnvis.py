"""CNNVis: neuron clusters with packed learned features or reordered activation matrices, and
the bundled edges between them, with the debugging information of a recorded run."""

from dataclasses import replace
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st
import vl_convert

from convlens.activations import SHIPPED_DATA
from convlens.cnnvis.debugging import MEASURES
from convlens.cnnvis.drawing import FACETS, PALETTES, PICTURE_WIDTH, draw, selection_names
from convlens.cnnvis.pipeline import CLUSTER_METHODS, IMPORTANCE_MEASURES
from convlens.cnnvis.view import (
    THRESHOLD_SHARE,
    Options,
    default_groups,
    matched_groups,
    quality_flags,
)
from convlens.data import ImageSourceError
from convlens.models import list_models
from convlens.runformat import list_snapshots
from convlens.runs import model_run
from convlens.ui.cache import browser_source, cached_graph, cached_model, model_lock
from convlens.ui.cnnvis import (
    cached_dialog_patches,
    cached_layer_averages,
    cached_patch_images,
    cached_view,
    chart_key,
    choice,
    flags_table,
    neuron_dialog,
    newly_clicked_neuron,
    outlined,
    set_state,
    split,
    text_state,
    toggle_clicked_group,
)
from convlens.ui.filters import dataset_analysis
from convlens.ui.sidebar import page_setup
from convlens.ui.state import warn_reset

DEFAULT_MODEL = "fashion_basecnn"

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
    st.stop()


if model.reads_fashion_mnist:
    data = SHIPPED_DATA
else:
    data = st.text_input(
        "Labelled images",
        value=SHIPPED_DATA,
        key="cnnvis_data",
        help="An ImageFolder directory (one folder per class), or the bundled Fashion-MNIST test "
        "images (labelled and offline, though not what an ImageNet model was trained on); CNNVis "
        "groups neurons by their average activation on each class",
    ).strip()
    if data == SHIPPED_DATA:
        st.info(
            f"{selection.model_name} was not trained on {SHIPPED_DATA}: its clusters then show how it "
            "responds to grey clothing, not to its own classes. For those, give a folder of labelled "
            "photos above (one sub-folder per class)."
        )
try:
    source = browser_source(data)
except (ImageSourceError, ValueError) as error:
    st.error(str(error))
    st.stop()
if not source.classes or source.labels is None:
    st.warning(
        f"CNNVis clusters neurons by their average activation per class, and {data} has no classes. "
        f"Give a labelled ImageFolder directory above, or look at {DEFAULT_MODEL}, trained on Fashion-MNIST."
    )
    if st.button(f"Open {DEFAULT_MODEL}", type="primary"):
        st.session_state["model"] = DEFAULT_MODEL
        st.rerun()
    st.stop()

key = selection.model_key
graph = cached_graph(*key)
lock = model_lock(*key)
analysis = dataset_analysis(key, model, lock, data, "cnnvis_analyze")
if analysis is None:
    st.stop()

group_ids = [
    g.id for g in graph.groups if any(n in {s.id for s in analysis.layers} for n in g.nodes)
]


toggle_clicked_group(group_ids, ",".join(default_groups(graph, analysis)))
wanted_groups = split(text_state("groups", ",".join(default_groups(graph, analysis))))
expanded = [g for g in wanted_groups if g in group_ids]
if len(expanded) < len(wanted_groups):
    st.warning(
        f"The link's groups= names groups that {selection.model_name} lacks; they are ignored."
    )
    set_state("groups", ",".join(expanded) or ",".join(default_groups(graph, analysis)))
    expanded = split(text_state("groups", ""))


run = model_run(selection.model_name)
steps = list_snapshots(run) if run is not None else []

if text_state("facet", FACETS[0]) not in FACETS:
    warn_reset("facet")
    set_state("facet", FACETS[0])
with st.container(border=True):
    top = st.columns([1.5, 1.2, 1.3, *([1.2] if steps else []), 0.9], vertical_alignment="bottom")
    facet = (
        top[0].segmented_control(
            "Facet",
            FACETS,
            default=text_state("facet", FACETS[0]),
            key="cnnvis_facet",
            on_change=lambda: set_state("facet", st.session_state["cnnvis_facet"] or FACETS[0]),
            help="Learned features: each neuron's top image patch, packed, size = importance. "
            "Activations: rows are neurons (reordered so that similar rows sit together), columns classes",
        )
        or FACETS[0]
    )
    # The widget is seeded from the URL state on every run: a click in the picture changes it.
    st.session_state["cnnvis_groups"] = expanded
    chosen_groups = top[1].multiselect(
        "Expanded groups",
        group_ids,
        key="cnnvis_groups",
        on_change=lambda: set_state("groups", ",".join(st.session_state["cnnvis_groups"])),
        help="Or click a group's column or header in the picture",
    )
    class_names = list(analysis.classes)
    wanted = [
        int(c)
        for c in split(text_state("classes", ""))
        if c.isdigit() and int(c) < len(class_names)
    ]
    classes = top[2].multiselect(
        "Classes of interest",
        range(len(class_names)),
        default=wanted,
        format_func=lambda c: class_names[c],
        key="cnnvis_classes",
        on_change=lambda: set_state(
            "classes", ",".join(map(str, st.session_state["cnnvis_classes"]))
        ),
        help="Neurons that do not respond more to these classes than to the others fade out",
    )
    step = None
    if steps:
        wanted_step = text_state("step", str(steps[-1]))
        step = top[3].select_slider(
            "Snapshot",
            options=steps,
            value=int(wanted_step)
            if wanted_step.isdigit() and int(wanted_step) in steps
            else steps[-1],
            key="cnnvis_step",
            on_change=lambda: set_state("step", str(st.session_state["cnnvis_step"])),
            help=f"Replays the weights, gradients and relative changes of the recorded run {run.name} "
            "on the edges",
        )
    customised = any(
        st.session_state.get(key) not in (None, "", default)
        for key, default in (
            ("importance", "mean"),
            ("clusters", "kmeans"),
            ("edges", "weight"),
            ("palette", "green / red"),
            ("weak", "0"),
            ("patch", "1"),
        )
    )
    more = top[-1].popover(
        "More" + (" •" if customised else ""),
        icon=":material/tune:",
        help="Which top patch, importance, clustering, edge colour, palette, weak edges, bundling"
        + (" (some changed from their defaults)" if customised else ""),
    )
    with more:
        patch = int(text_state("patch", "1")) if text_state("patch", "1").isdigit() else 1
        patch = st.select_slider(
            "Top patch shown (features facet)",
            options=[1, 2, 3, 4, 5],
            value=min(max(patch, 1), 5),
            key="cnnvis_patch",
            on_change=lambda: set_state("patch", str(st.session_state["cnnvis_patch"])),
            disabled=facet != "features",
            help="Each neuron shows its best image patch (1), or its second best, ...",
        )
        importance = choice(
            st,
            "Importance (patch size)",
            IMPORTANCE_MEASURES,
            "importance",
            "mean",
            help="mean / max: average activation over the classes of interest (all when none); "
            "contribution: activation x gradient of the predicted class (Captum)",
        )
        clusters_text = text_state("clusters", "kmeans")
        method_name, _, count_text = clusters_text.partition(":")
        row = st.columns(2)
        method = row[0].selectbox(
            "Clustering",
            CLUSTER_METHODS,
            index=CLUSTER_METHODS.index(method_name) if method_name in CLUSTER_METHODS else 0,
            key="cnnvis_method",
            help="K-Means with the number of clusters on the right (0: about sqrt(neurons / 2)), or "
            "MeanShift, which finds the number itself",
        )
        count = row[1].number_input(
            "Clusters per layer",
            min_value=0,
            max_value=16,
            value=int(count_text) if count_text.isdigit() else 0,
            key="cnnvis_count",
            disabled=method != "kmeans",
        )
        set_state("clusters", method if method != "kmeans" or not count else f"kmeans:{count}")
        edge_measures = MEASURES if steps else MEASURES[:1]
        edges = choice(
            st,
            "Edge colour",
            edge_measures,
            "edges",
            "weight",
            help="weight: green positive, red negative, width = strength. gradient and relative change "
            "come from a recorded run's snapshots (pick a shipped run such as fashion_basecnn_hinge)",
        )
        palette = choice(
            st,
            "Palette",
            list(PALETTES),
            "palette",
            "green / red",
            help="blue / orange is safe for the common colour blindnesses",
        )
        weak = st.toggle(
            "Weak edges",
            value=text_state("weak", "0") == "1",
            key="cnnvis_weak",
            on_change=lambda: set_state("weak", "1" if st.session_state["cnnvis_weak"] else "0"),
            help="Also draw, thin, the cluster-to-cluster edges no bicluster took",
        )
        threshold = st.slider(
            "Bundle edges down to this share of the strongest",
            0.5,
            0.99,
            THRESHOLD_SHARE,
            0.01,
            key="cnnvis_threshold",
            help="Biclusters are mined until the strongest remaining cluster-to-cluster edge is weaker "
            "than this; lower it to bundle more edges",
        )

moves = []
for part in split(text_state("moves", "").replace(";", ",")):
    try:
        where, target = part.split(">")
        node, neuron = where.rsplit(":", 1)
        moves.append((node, int(neuron), int(target)))
    except ValueError:
        continue

options = Options(
    expanded=tuple(chosen_groups),
    method=method,
    clusters=int(count) or None,
    classes=tuple(classes),
    importance=importance,
    moves=tuple(moves),
    threshold_share=float(threshold),
)


try:
    view = cached_view(
        key, data, options, str(run) if run is not None else None, step, edges, analysis
    )
except ValueError as error:
    st.error(str(error))
    st.stop()


flags = quality_flags(view)
compare_options = ["none"] + [m for m in list_models() if m != selection.model_name]
compare = text_state("compare", "none")
compare = compare if compare in compare_options else "none"
drawing = {
    "facet": facet,
    "rank": patch - 1,
    "palette": palette,
    "show_weak": weak,
    "width": PICTURE_WIDTH,
}
chart = draw(
    view,
    cached_patch_images(key, data),
    debug_title=edges if edges != "weight" else None,
    highlight=outlined(flags, "cnnvis_flags"),
    **drawing,
)
if moves and st.button(
    f"Undo the moves ({len(moves)})", help="Back to the clusters the algorithm found"
):
    set_state("moves", "")
    st.rerun()
if compare != "none":
    st.markdown(f"**{selection.model_name}**")
st.altair_chart(chart, on_select="rerun", selection_mode=selection_names(chart), key=chart_key())
st.caption(
    "Brown dashed frame: an impure cluster, under half of its top patches from one class. "
    "Orange frames: the neurons of the quality flags selected below."
)


def comparison(name: str) -> None:
    """The other model's picture below this one, with the groups that match the expanded ones
    expanded (CNNVis 7.2), and its flags. Each picture keeps the page's whole width: side by
    side, at 1280 px, neither was readable."""
    other_key = (name, None, "")
    other = cached_model(*other_key)
    if tuple(other.input_size) != tuple(model.input_size):
        st.warning(
            f"{name} takes {other.input_size} images, not {model.input_size}: no common images."
        )
        return
    other_graph = cached_graph(*other_key)
    other_analysis = dataset_analysis(
        other_key, other, model_lock(*other_key), data, "cnnvis_compare_analyze"
    )
    if other_analysis is None:
        return
    matches = matched_groups(graph, analysis, other_graph, other_analysis, chosen_groups)
    other_options = replace(options, expanded=tuple(dict.fromkeys(matches.values())), moves=())
    other_view = cached_view(other_key, data, other_options, None, None, "weight", other_analysis)
    rule = "conv with conv, fc with fc, counted from the last"
    st.markdown(
        f"**{name}** — its groups matched by kind to the expanded ones ({rule}): "
        + (", ".join(f"{mine} → {theirs}" for mine, theirs in matches.items()) or "none")
    )
    st.altair_chart(draw(other_view, cached_patch_images(other_key, data), **drawing))
    with st.expander(f"Quality flags of {name}"):
        flags_table(quality_flags(other_view), None)


if compare != "none":
    comparison(compare)

picked = newly_clicked_neuron(view)
if picked is not None:
    neuron_dialog(
        *picked,
        cached_dialog_patches(key, data),
        lambda index: source.classes[source.labels[index]],
    )

with st.expander(
    "Quality flags: impure clusters, redundant and dead neurons", expanded=bool(view.layers)
):
    flags_table(flags, "cnnvis_flags")

if run is not None and steps:
    nodes = tuple(s.id for s in analysis.layers)
    averages = cached_layer_averages(key, str(run), nodes, edges)
    if averages:
        frame = pd.DataFrame([a.__dict__ for a in averages])
        frame["current"] = frame["step"] == step
        frame["layer"] = frame["node"].str.rsplit(".", n=1).str[-1]
        # Gradients and relative changes span orders of magnitude across layers.
        logarithmic = edges != "weight"
        if logarithmic:
            frame = frame[frame["value"] > 0]
        st.caption(
            f"Average {edges} per layer of the recorded run: red at step {step}, grey at the other "
            "snapshots" + (" (log scale)" if logarithmic else "")
        )
        st.altair_chart(
            alt.Chart(frame)
            .mark_line(point=True)
            .encode(
                x=alt.X(
                    "layer:N",
                    sort=[s.id.rsplit(".", 1)[-1] for s in analysis.layers],
                    title="layer",
                    axis=alt.Axis(labelAngle=0),
                ),
                y=alt.Y(
                    "value:Q",
                    title=f"layer average of {edges}",
                    scale=alt.Scale(type="log" if logarithmic else "linear", zero=False),
                ),
                detail="step:O",
                color=alt.condition("datum.current", alt.value("#d62728"), alt.value("#c7c7c7")),
                tooltip=["step", "node", alt.Tooltip("value:Q", format=".4g")],
            )
            .properties(height=260),
            width="stretch",
        )

choice(
    st,
    "Compare with another model on the same images",
    compare_options,
    "compare",
    "none",
    help="Draws it below this one, its layer groups matched to the expanded ones by kind (conv with "
    "conv, fc with fc, counted from the last), e.g. fashion_basecnn against fashion_basecnn_x0.25 "
    "or fashion_basecnn_shallow (CNNVis 7.2)",
)

with st.expander("Export the picture for slides"):
    picture = repr((selection.model_name, options, facet, patch, palette, weak, edges, step))
    if st.button("Prepare SVG and PNG", help="Renders the picture above with vl-convert"):
        spec = chart.to_dict()
        svg, png = vl_convert.vegalite_to_svg(spec), vl_convert.vegalite_to_png(spec, scale=2)
        st.session_state["_cnnvis_export"] = (picture, svg, png)
    exported = st.session_state.get("_cnnvis_export")
    if exported and exported[0] == picture:
        _, svg, png = exported
        name = f"cnnvis-{Path(selection.model_name).name}"
        st.download_button("Download SVG", svg, file_name=f"{name}.svg", mime="image/svg+xml")
        st.download_button("Download PNG", png, file_name=f"{name}.png", mime="image/png")
