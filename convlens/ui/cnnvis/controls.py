"""The CNNVis page's choices: the labelled images, the expanded groups and the toolbar above the
picture. Each is kept in the session under its URL name (`convlens.ui.state.URL_STATE`), as text:
lists comma-separated, numbers as digits."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from convlens.access import whole_number
from convlens.activations import SHIPPED_DATA, Analysis, ImageDataset
from convlens.cnnvis.debugging import MEASURES
from convlens.cnnvis.drawing import FACETS, PALETTES
from convlens.cnnvis.pipeline import CLUSTER_METHODS, IMPORTANCE_MEASURES
from convlens.cnnvis.view import THRESHOLD_SHARE, Options, default_groups, parse_moves
from convlens.data import ImageSourceError
from convlens.graph import LayerGraph
from convlens.models import LoadedModel
from convlens.ui.cache import browser_source
from convlens.ui.cnnvis.caches import Look
from convlens.ui.state import keep_all_valid, keep_valid, persisted

# The model a page without labelled images offers instead.
DEFAULT_MODEL = "fashion_basecnn"
PATCH_RANKS = ("1", "2", "3", "4", "5")
MAX_CLUSTERS = 16
# The `clusters` URL values: a method, K-Means with its number of clusters per layer.
CLUSTERINGS = (*CLUSTER_METHODS, *(f"kmeans:{count}" for count in range(1, MAX_CLUSTERS + 1)))
# The "More" popover's choices with their defaults: a dot on the button when one differs.
TUNED_DEFAULTS = {
    "patch": "1",
    "importance": "mean",
    "clusters": "kmeans",
    "edges": "weight",
    "palette": "green / red",
    "weak": "0",
}


def split(value: str) -> list[str]:
    """The items of a comma-separated state value."""
    return [part for part in value.split(",") if part]


# The URL state `groups` when the user has collapsed every group (no state: the default ones).
NO_GROUPS = "none"


def groups_state(groups: Iterable[str]) -> str:
    """The URL state `groups` of the expanded `groups`."""
    return ",".join(groups) or NO_GROUPS


def state_groups(value: str) -> list[str]:
    """The expanded groups that the URL state `groups` names."""
    return [] if value == NO_GROUPS else split(value)


def remember(key: str, widget: str, text: Callable[[object], str]) -> Callable[[], None]:
    """A widget's change callback that keeps its value (`widget`'s) as the text `text(value)` in
    the state `key`: for the widgets whose values are not the state's text (lists, numbers)."""

    def keep() -> None:
        st.session_state[key] = text(st.session_state[widget])

    return keep


@dataclass(frozen=True)
class Choices:
    """What the toolbar chose: the view's options, the recorded run's snapshot and edge measure,
    and the picture's look."""

    options: Options
    step: int | None
    edges: str
    look: Look


def labelled_data(model_name: str, model: LoadedModel) -> tuple[str, ImageDataset] | None:
    """The labelled images CNNVis groups the neurons by (a text field unless the model reads
    Fashion-MNIST) and their dataset; None, with what to do, when they cannot serve."""
    if model.reads_fashion_mnist:
        data = SHIPPED_DATA
    else:
        data = st.text_input(
            "Labelled images",
            value=SHIPPED_DATA,
            key="cnnvis_data",
            help="An ImageFolder directory (one folder per class), or the bundled Fashion-MNIST "
            "test images (labelled and offline, though not what an ImageNet model was trained "
            "on); CNNVis groups neurons by their average activation on each class",
        ).strip()
        if data == SHIPPED_DATA:
            st.info(
                f"{model_name} was not trained on {SHIPPED_DATA}: its clusters then show how it "
                "responds to grey clothing, not to its own classes. For those, give a folder of "
                "labelled photos above (one sub-folder per class)."
            )
    try:
        source = browser_source(data)
    except (ImageSourceError, ValueError) as error:
        st.error(str(error))
        return None
    if not source.classes or source.labels is None:
        st.warning(
            f"CNNVis clusters neurons by their average activation per class, and {data} has no "
            f"classes. Give a labelled ImageFolder directory above, or look at {DEFAULT_MODEL}, "
            "trained on Fashion-MNIST."
        )
        if st.button(f"Open {DEFAULT_MODEL}", type="primary"):
            st.session_state["model"] = DEFAULT_MODEL
            st.rerun()
        return None
    return data, source


def analysed_group_ids(graph: LayerGraph, analysis: Analysis) -> list[str]:
    """The graph's layer groups that hold an analysed layer, in network order."""
    analysed = {layer.id for layer in analysis.layers}
    return [group.id for group in graph.groups if any(node in analysed for node in group.nodes)]


def expanded_groups(
    model_name: str, group_ids: list[str], graph: LayerGraph, analysis: Analysis
) -> list[str]:
    """The expanded groups of the URL state `groups` (the default one without the state; none
    when the user collapsed them all); a link's group that the model lacks is said and dropped,
    one named twice is kept once (the state, and so the view's key and the address, too)."""
    default = ",".join(default_groups(graph, analysis))
    state = st.session_state
    state["groups"] = state.get("groups") or default
    named = state_groups(state["groups"])
    wanted = list(dict.fromkeys(named))
    expanded = [group for group in wanted if group in group_ids]
    if len(expanded) < len(wanted):
        st.warning(f"The link's groups= names groups that {model_name} lacks; they are ignored.")
        expanded = expanded or split(default)
    if expanded != named:
        state["groups"] = groups_state(expanded)
    return expanded


def controls(
    group_ids: list[str],
    expanded: list[str],
    class_names: Sequence[str],
    run: Path | None,
    steps: Sequence[int],
) -> Choices:
    """The toolbar above the picture (facet, expanded groups, classes of interest, the recorded
    run's snapshot, and the rarer choices under "More"), each kept in the URL state."""
    keep_toolbar_valid(recorded=bool(steps))
    with st.container(border=True):
        # about these widths in pixels at 1280x720: the facets side by side, two group chips on a
        # line, a class chip on a line, and More's label whole
        top = st.columns(
            [184, 170, 196, *([96] if steps else []), 108], vertical_alignment="bottom", gap="small"
        )
        facet = (
            top[0].segmented_control(
                "Facet",
                FACETS,
                **persisted("facet", widget="cnnvis_facet"),
                help="Learned features: each neuron's top image patch, packed, size = importance. "
                "Activations: rows are neurons (reordered so that similar rows sit together), "
                "columns classes",
            )
            or FACETS[0]
        )
        # The widget is seeded from the URL state on every run: a click in the picture changes it.
        st.session_state["cnnvis_groups"] = expanded
        chosen_groups = top[1].multiselect(
            "Expanded groups",
            group_ids,
            key="cnnvis_groups",
            on_change=remember("groups", "cnnvis_groups", groups_state),
            help="Or click a group's column or header in the picture",
        )
        classes = _classes_of_interest(top[2], class_names)
        step = _snapshot(top[3], run, steps) if steps and run is not None else None
        customised = any(
            st.session_state.get(key) not in (None, "", default)
            for key, default in TUNED_DEFAULTS.items()
        )
        with top[-1].popover(
            "More" + (" •" if customised else ""),
            icon=":material/tune:",
            help="Which top patch, importance, clustering, edge colour, palette, weak edges, "
            "bundling" + (" (some changed from their defaults)" if customised else ""),
        ):
            return _more(facet, chosen_groups, classes, step, bool(steps))


def keep_toolbar_valid(recorded: bool) -> None:
    """Reset each of the toolbar's choices that a link got wrong, said in one warning above the
    toolbar: inside the closed "More" popover, no one would see it. A number of clusters outside
    the box's range is capped to it first, without a word."""
    asked = st.session_state.get("clusters")
    if isinstance(asked, str):
        st.session_state["clusters"] = clusters_choice(asked) or asked
    options = {
        "patch": PATCH_RANKS,
        "importance": IMPORTANCE_MEASURES,
        "clusters": CLUSTERINGS,
        "edges": edge_measures(recorded),
        "palette": list(PALETTES),
        "weak": ("0", "1"),
    }
    keep_all_valid(
        [
            ("facet", FACETS, FACETS[0]),
            *((key, options[key], default) for key, default in TUNED_DEFAULTS.items()),
        ]
    )


def clusters_choice(text: str) -> str | None:
    """The `clusters` URL value `text` as the page offers it: a method, or K-Means with its
    number of clusters capped to 0-MAX_CLUSTERS (0: plain "kmeans", which finds it); None for what
    does not read so."""
    method, colon, count = text.partition(":")
    if method not in CLUSTER_METHODS or (colon and method != "kmeans"):
        return None
    number = whole_number(count) if colon else 0
    if number is None:
        return None
    number = min(max(number, 0), MAX_CLUSTERS)
    return f"kmeans:{number}" if number else method


def edge_measures(recorded: bool) -> tuple[str, ...]:
    """What the edges can show: their weight, and with a recorded run its debugging measures."""
    return MEASURES if recorded else MEASURES[:1]


def _classes_of_interest(column, class_names: Sequence[str]) -> list[int]:
    """Draw the classes-of-interest picker, starting at the `classes` that are this model's
    (a link's, or another model's left in the session); say how many others it leaves out."""
    entries = split(st.session_state.get("classes") or "")
    numbers = (whole_number(entry) for entry in entries)
    wanted = [c for c in numbers if c is not None and 0 <= c < len(class_names)]
    if len(wanted) < len(entries):
        left_out = len(entries) - len(wanted)
        st.warning(
            f"{left_out} of the classes= asked for {'is' if left_out == 1 else 'are'} not a class "
            f"number of this model (0–{len(class_names) - 1}), so left out."
        )
        st.session_state["classes"] = ",".join(map(str, wanted))
    return column.multiselect(
        "Classes of interest",
        range(len(class_names)),
        default=wanted,
        format_func=lambda c: class_names[c],
        key="cnnvis_classes",
        on_change=remember("classes", "cnnvis_classes", lambda chosen: ",".join(map(str, chosen))),
        help="Neurons that do not respond more to these classes than to the others fade out",
    )


def _snapshot(column, run: Path, steps: Sequence[int]) -> int:
    keep_valid("step", [str(step) for step in steps], str(steps[-1]))
    return column.select_slider(
        "Snapshot",
        options=steps,
        value=int(st.session_state["step"]),
        key="cnnvis_step",
        on_change=remember("step", "cnnvis_step", str),
        help=f"Replays the weights, gradients and relative changes of the recorded run {run.name} "
        "on the edges",
    )


def _more(
    facet: str, expanded: list[str], classes: list[int], step: int | None, recorded: bool
) -> Choices:
    """The "More" popover's choices, and with them all of the toolbar's."""
    patch = st.select_slider(
        "Top patch shown (features facet)",
        options=PATCH_RANKS,
        **persisted("patch", widget="cnnvis_patch"),
        disabled=facet != "features",
        help="Each neuron shows its best image patch (1), or its second best, ...",
    )
    importance = st.selectbox(
        "Importance (patch size)",
        IMPORTANCE_MEASURES,
        **persisted("importance", widget="cnnvis_importance"),
        help="mean / max: average activation over the classes of interest (all when none); "
        "contribution: activation x gradient of the predicted class (Captum)",
    )
    method_name, _, count_text = st.session_state["clusters"].partition(":")
    row = st.columns(2)
    method = row[0].selectbox(
        "Clustering",
        CLUSTER_METHODS,
        index=CLUSTER_METHODS.index(method_name),
        key="cnnvis_method",
        help="K-Means with the number of clusters on the right (0: about sqrt(neurons / 2), 2 to "
        "8), or "
        "MeanShift, which finds the number itself",
    )
    count = row[1].number_input(
        "Clusters per layer",
        min_value=0,
        max_value=MAX_CLUSTERS,
        value=int(count_text or 0),
        key="cnnvis_count",
        disabled=method != "kmeans",
        help="0: chosen by the layer's size, about sqrt(neurons / 2), 2 to 8",
    )
    st.session_state["clusters"] = method if method != "kmeans" or not count else f"kmeans:{count}"
    edges = st.selectbox(
        "Edge colour",
        edge_measures(recorded),
        **persisted("edges", widget="cnnvis_edges"),
        help="weight: green positive, red negative, width = strength. gradient and relative "
        "change come from a recorded run's snapshots (pick a shipped run such as "
        "fashion_basecnn_hinge)",
    )
    palette = st.selectbox(
        "Palette",
        list(PALETTES),
        **persisted("palette", widget="cnnvis_palette"),
        help="blue / orange is safe for the common colour blindnesses",
    )
    weak = st.toggle(
        "Weak edges",
        value=st.session_state["weak"] == "1",
        key="cnnvis_weak",
        on_change=remember("weak", "cnnvis_weak", lambda on: "1" if on else "0"),
        help="Also draw, thin, the cluster-to-cluster edges no bicluster took",
    )
    threshold = st.slider(
        "Bundle edges down to this share of the strongest",
        0.5,
        0.99,
        THRESHOLD_SHARE,
        0.01,
        key="cnnvis_threshold",
        help="Biclusters are mined until the strongest remaining cluster-to-cluster edge is "
        "weaker than this; lower it to bundle more edges",
    )
    options = Options(
        expanded=tuple(expanded),
        method=method,
        clusters=int(count) or None,
        classes=tuple(classes),
        importance=importance,
        moves=parse_moves(st.session_state.get("moves") or ""),
        threshold_share=float(threshold),
    )
    return Choices(options, step, edges, Look(facet, int(patch) - 1, palette, weak))
