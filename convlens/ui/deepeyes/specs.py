"""The Vega-Lite specs of the DeepEyes page's charts, built once per server.

Altair's building and validation of a section's charts cost more than the rest of its run. Each
spec is keyed by what it shows (the run, its snapshots, the snapshot, the layer, the thresholds,
the selected filter, the labels, the title), never by a session's state, so 30 students on one
view build it once. The arguments that start with `_` are the data those keys determine. Not
validated again here: the charts' tests validate their specs against Vega-Lite's schema.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from convlens.charts import (
    curves_chart,
    filter_activity_chart,
    filter_map_chart,
    input_map_chart,
    perplexity_bars_chart,
    perplexity_heatmap_chart,
    stability_chart,
    with_step_rule,
)
from convlens.deepeyes import (
    ActivationHeatmap,
    FilterMap,
    InputMap,
    LayerStability,
    PerplexityHistogram,
)
from convlens.runs import learning_curves
from convlens.style import STABILITY_LEGEND_COLUMNS
from convlens.ui.vega import vega_lite_spec

# A spec holds its chart's data: an input map's ~1,000 points are ~0.1 MB.
MAX_SPECS = 128


@st.cache_data(show_spinner=False, max_entries=MAX_SPECS)
def learning_curves_spec(run_path: str, step: int, version: tuple[int, int] | None) -> dict | None:
    """Return the spec of the run's learning curves with snapshot `step` marked (None without a
    recorded step); `version` (`convlens.ui.run_watch.metrics_version`) keys it as the run's
    metrics grow."""
    curves = learning_curves(run_path)
    if not len(curves.steps):
        return None
    return vega_lite_spec(
        with_step_rule(curves_chart(curves), step).properties(title="Learning curves")
    )


@st.cache_data(show_spinner=False, max_entries=MAX_SPECS)
def stability_spec(
    run_path: str,
    steps: tuple[int, ...],
    threshold: float,
    _stabilities: list[LayerStability],
) -> dict:
    """Return the spec of every layer's change between the snapshots `steps` of a run, judged
    at `threshold`."""
    return vega_lite_spec(stability_chart(_stabilities, threshold, STABILITY_LEGEND_COLUMNS))


@st.cache_data(show_spinner=False, max_entries=MAX_SPECS)
def perplexity_heatmap_spec(
    run_path: str,
    steps: tuple[int, ...],
    layer: str,
    step: int,
    title: str,
    small: bool,
    _histograms: list[PerplexityHistogram],
) -> dict:
    """Return the spec of `layer`'s perplexity over the snapshots `steps`, `step` outlined."""
    return vega_lite_spec(perplexity_heatmap_chart(_histograms, step, title, small=small))


@st.cache_data(show_spinner=False, max_entries=MAX_SPECS)
def perplexity_bars_spec(
    run_path: str, layer: str, step: int, title: str, _histogram: PerplexityHistogram
) -> dict:
    """Return the spec of `layer`'s perplexity histogram at snapshot `step`."""
    return vega_lite_spec(perplexity_bars_chart(_histogram, title))


@st.cache_data(show_spinner=False, max_entries=MAX_SPECS)
def filter_activity_spec(
    run_path: str,
    layer: str,
    step: int,
    measure: str,
    title: str,
    selected: int | None,
    flagged: tuple[tuple[int, ...], tuple[int, ...]],
    _heatmap: ActivationHeatmap,
) -> dict:
    """Return the spec of `layer`'s filter cells by `measure` at snapshot `step`, the `flagged`
    filters (dead, always on: the heatmap's under the user's thresholds) outlined and `selected`
    ringed; a click is the selection "filter_pick"."""
    return vega_lite_spec(filter_activity_chart(_heatmap, measure, title, selected))


@st.cache_data(show_spinner=False, max_entries=MAX_SPECS)
def input_map_spec(
    run_path: str,
    layer: str,
    reference: int,
    step: int,
    classes: tuple[str, ...],
    selected: int | None,
    dead_maximum: float,
    title: str,
    _placed: InputMap,
    _fires: np.ndarray | None,
) -> dict:
    """Return the spec of `layer`'s input map at `step` placed in the map embedded at
    `reference`, the patches that `selected` fires on (at `dead_maximum`) highlighted; a dragged
    box is the selection "patch_brush"."""
    return vega_lite_spec(input_map_chart(_placed, list(classes), _fires, title))


@st.cache_data(show_spinner=False, max_entries=MAX_SPECS)
def filter_map_spec(
    run_path: str,
    layer: str,
    step: int,
    dead_maximum: float,
    classes: tuple[str, ...],
    selected: int | None,
    title: str,
    _mapped: FilterMap,
) -> dict:
    """Return the spec of `layer`'s filter map at `step` (dead at `dead_maximum`), `selected`
    ringed; a click is the selection "filter_pick"."""
    return vega_lite_spec(filter_map_chart(_mapped, list(classes), selected, title))
