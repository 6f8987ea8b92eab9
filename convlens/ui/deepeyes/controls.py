"""The DeepEyes page's controls: the snapshot step, the section, the thresholds, and the layer and
filter inspected, kept in session state (the step, section, layer and filter also in the URL)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import streamlit as st

from convlens.access import whole_number
from convlens.deepeyes import ALWAYS_ON_FREQUENCY, DEAD_MAXIMUM, STABILITY_THRESHOLD, unit_noun
from convlens.ui.state import DEEPEYES_SECTIONS, NO_FILTER, keep_valid, persisted, quoted

SECTIONS = {name: name.capitalize() for name in DEEPEYES_SECTIONS}
SECTIONS_CAPTION = (
    "Training: when the layers settle · Layer: what one layer's filters and patches do · "
    "Diagnosis: what to change in the network."
)
# Session keys of the thresholds, with their defaults: each input is drawn in one section, and
# every section uses them.
THRESHOLD_DEFAULTS = {
    "deepeyes_threshold": STABILITY_THRESHOLD,
    "deepeyes_dead_maximum": DEAD_MAXIMUM,
    "deepeyes_always_on": ALWAYS_ON_FREQUENCY,
}
PICK_CHART_GENERATIONS = "_deepeyes_pick_chart_generations"


def current_step(steps: list[int]) -> int:
    """Return the snapshot step the user picked: the last one by default, and the newest one of
    a run still training as long as the user stays on its newest snapshot."""
    current = st.session_state.get("de_step")
    newest_seen = st.session_state.get("_deepeyes_newest_step")
    if current not in steps or (current == newest_seen and current != steps[-1]):
        st.session_state["de_step"] = steps[-1]
    st.session_state["_deepeyes_newest_step"] = steps[-1]
    return st.session_state["de_step"]


def step_slider(steps: list[int], section: str, shown_step: int) -> None:
    """Draw `section`'s snapshot slider at `shown_step`, the snapshot the section is drawn at
    (a hidden section's may be an earlier pick); moving it picks the step for the page. Each
    section has its own slider: a section's fragment draws its own widgets only."""
    if len(steps) == 1:
        return
    st.select_slider(
        "Snapshot step",
        options=steps,
        **persisted("de_step", widget=f"de_step_{section}_widget", seed=shown_step),
    )


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """What the diagnosis counts as stable, dead and always on."""

    stability: float
    dead_maximum: float
    always_on: float


def current_thresholds() -> Thresholds:
    """Return the thresholds the user set, the defaults until then.

    They live under plain session keys (the inputs edit them through `persisted`), so that a
    section that does not draw an input still uses its value."""
    for key, default in THRESHOLD_DEFAULTS.items():
        st.session_state.setdefault(key, default)
    return Thresholds(
        stability=float(st.session_state["deepeyes_threshold"]),
        dead_maximum=float(st.session_state["deepeyes_dead_maximum"]),
        always_on=float(st.session_state["deepeyes_always_on"]),
    )


def stability_threshold_input() -> None:
    """Draw the input of the stability threshold."""
    st.number_input(
        "Stability threshold",
        0.0,
        2.0,
        step=0.01,
        help="A layer is stable from the step after which its perplexity histogram changes "
        "(L1 distance of shares between snapshots, 0 to 2) by less than this.",
        **persisted("deepeyes_threshold"),
    )


def activity_threshold_inputs() -> None:
    """Draw the inputs of the dead and always-on thresholds, above the heatmaps they outline."""
    dead_column, always_on_column = st.columns(2)
    dead_column.number_input(
        "Dead: maximum activation at most",
        0.0,
        100.0,
        format="%.6f",
        **persisted("deepeyes_dead_maximum"),
    )
    always_on_column.number_input(
        "Always on: frequency at least",
        0.0,
        1.0,
        step=0.05,
        help="Share of probe patches on which a filter responds above half its maximum.",
        **persisted("deepeyes_always_on"),
    )


def section_picker(on_change: Callable[[], None] | None = None) -> str:
    """Return the section the user picked: Training unless the session or the URL names
    another; `on_change` runs when the user picks one."""
    if "de_view" not in st.session_state and st.session_state.get("de_filter") is not None:
        st.session_state["de_view"] = "layer"  # a bookmark from before the sections names a filter
    keep_valid("de_view")
    st.segmented_control(
        "Section",
        list(SECTIONS),
        required=True,
        format_func=SECTIONS.__getitem__,
        label_visibility="collapsed",
        **persisted("de_view", on_change=on_change),
    )
    st.caption(SECTIONS_CAPTION)
    return st.session_state["de_view"]


def forget_filter() -> None:
    """A filter number means nothing in another layer."""
    st.session_state["de_filter"] = NO_FILTER


def latest(key: str) -> object:
    """Return the state `key` as the user last set it: its widget's value when the widget is on
    the page, which a callback sees before the widget's own callback copies it to `key`."""
    return st.session_state.get(f"{key}_widget", st.session_state.get(key))


def pick_chart_key(name: str, selected: int | None) -> str:
    """Return the key of the chart `name` whose clicks pick a filter, `selected` the page's filter.

    The chart keeps its key while the selection it last sent is none or `selected`: a pick then
    replaces its data in place (its spec does not name the filter). Once the page's filter is
    another (picked in another chart, in the selectbox, by a link) the chart starts fresh under a
    new key, without a selection: under its key, a click on the filter it held selected changed
    nothing in the chart and was not answered."""
    generations: dict[str, int] = st.session_state.setdefault(PICK_CHART_GENERATIONS, {})
    generation = generations.get(name, 0)
    if sent_pick(f"{name}_{generation}") not in (None, selected):
        generation = generations[name] = generation + 1
    return f"{name}_{generation}"


def sent_pick(chart_key: str) -> int | None:
    """Return the filter of the selection a chart's clicks last sent, None without one (or where
    what was sent is no filter number: the browser may send any text)."""
    try:
        return whole_number(
            str(st.session_state[chart_key]["selection"]["filter_pick"][0]["filter"])
        )
    except (LookupError, TypeError):
        return None


def pick_filter(chart_key: str, run: str, layer: str):
    """Return the callback that makes a click on a filter in one of `layer`'s charts of `run` the
    selected filter.

    The browser may send a chart's last selection again after the page stopped drawing the
    chart (another layer or run shown since): such a selection is ignored, so that it never
    brings back its filter, nor its layer over the one the user picked since."""

    def callback() -> None:
        if latest("run") != run or latest("de_layer") != layer:
            return
        number = sent_pick(chart_key)
        if number is not None:  # what the browser sent: any text
            st.session_state["de_filter"] = number

    return callback


def _say_in_layer_section(said: str) -> None:
    """Say what a link asked for that the Layer section cannot show: in the section, and in a
    toast too while the section is hidden (another one is shown)."""
    st.info(said)
    if st.session_state.get("de_view") != "layer":
        st.toast(said)


def inspect_controls(run: str, filters: dict[str, int]) -> tuple[str, int | None]:
    """Return the layer whose maps are shown and the selected filter (None: none).

    The layer and the filter stay when the user picks another run that has them; a layer this
    run lacks gives way to its first layer, with a line that says so, and the filter goes."""
    layers = list(filters)
    wanted = st.session_state.get("de_layer")
    if wanted not in layers:
        if wanted is not None:
            _say_in_layer_section(
                f"{Path(run).name} has no layer {quoted(wanted)}: it shows {layers[0]}."
            )
            forget_filter()
        st.session_state["de_layer"] = layers[0]
    layer = st.session_state["de_layer"]
    chosen = st.session_state.get("de_filter", NO_FILTER)
    if not isinstance(chosen, int) or not 0 <= chosen < filters[layer]:
        if isinstance(chosen, int) and chosen != NO_FILTER:  # a bookmark's or a link's
            noun = unit_noun(layer)
            _say_in_layer_section(
                f"{layer} has no {noun[:-1]} {chosen} (it has {filters[layer]} {noun}): "
                "none is selected."
            )
        st.session_state["de_filter"] = NO_FILTER
    layer_column, filter_column = st.columns(2)
    layer = layer_column.selectbox(
        "Layer to inspect",
        layers,
        format_func=lambda name: f"{name} ({filters[name]} {unit_noun(name)})",
        **persisted("de_layer", on_change=forget_filter),
    )
    chosen = filter_column.selectbox(
        "Filter (or click one in a chart)",
        [NO_FILTER, *range(filters[layer])],
        format_func=lambda f: "none" if f == NO_FILTER else f"filter {f}",
        **persisted("de_filter"),
    )
    return layer, None if chosen == NO_FILTER else int(chosen)
