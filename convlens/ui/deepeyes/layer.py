"""The Layer section of DeepEyes: one layer's perplexity, its filters' activity, and its maps."""

from __future__ import annotations

import streamlit as st

from convlens.deepeyes import LayerDiagnosis, PerplexityHistogram, RunDiagnosis, filter_list
from convlens.runs import run_reference
from convlens.ui.deepeyes.controls import (
    activity_threshold_inputs,
    inspect_controls,
    pick_chart_key,
    pick_filter,
)
from convlens.ui.deepeyes.maps import maps
from convlens.ui.deepeyes.specs import (
    filter_activity_spec,
    perplexity_bars_spec,
    perplexity_heatmap_spec,
)
from convlens.ui.deepeyes.training import stable_phrase


def stability_sentence(part: LayerDiagnosis) -> str:
    """Return when a layer's perplexity histogram stopped changing, in words."""
    stability = part.stability
    if stability.stable_from_step is None:
        return f"{part.layer}: not stable yet at threshold {stability.threshold:g}"
    return f"{part.layer}: {stable_phrase(stability)} (threshold {stability.threshold:g})"


def activity_sentence(part: LayerDiagnosis, step: int) -> str:
    """Return how many of a layer's filters are dead or always on at `step`, and which."""
    heatmap = part.heatmap
    filters = len(heatmap.maximum)
    if not len(heatmap.dead) and not len(heatmap.always_on):
        return f"{part.layer}: no dead or always-on filters at step {step}."
    parts = []
    if len(heatmap.dead):
        parts.append(f"{len(heatmap.dead)} of {filters} dead ({filter_list(heatmap.dead)})")
    if len(heatmap.always_on):
        parts.append(
            f"{len(heatmap.always_on)} of {filters} always on ({filter_list(heatmap.always_on)})"
        )
    return f"{part.layer} at step {step}: " + "; ".join(parts) + "."


def layer_perplexity(
    run_path: str,
    steps: list[int],
    part: LayerDiagnosis,
    histograms: list[PerplexityHistogram],
    step: int,
) -> None:
    """Draw one layer's perplexity over training and at the snapshot, and its stability."""
    over_time, at_step = st.columns([3, 2])
    title = f"{part.layer}: perplexity over training"
    over_time.vega_lite_chart(
        perplexity_heatmap_spec(run_path, tuple(steps), part.layer, step, title, False, histograms),
        width="stretch",
    )
    # the title names no step (the section's first line does, the heatmap outlines it): so the
    # spec stays from one snapshot to another, and a snapshot's click replaces its data only
    at_step.vega_lite_chart(
        perplexity_bars_spec(
            run_path, part.layer, step, f"{part.layer} at this step", part.histogram
        ),
        width="stretch",
    )
    st.markdown(stability_sentence(part))


def filter_activity(run_path: str, part: LayerDiagnosis, step: int, selected: int | None) -> None:
    """Draw one layer's filter-activity heatmaps under the thresholds that outline them; a click
    on a cell selects its filter."""
    run = run_reference(run_path)
    activity_threshold_inputs()
    heatmap = part.heatmap
    flagged = (tuple(heatmap.dead.tolist()), tuple(heatmap.always_on.tolist()))
    maximum_column, frequency_column = st.columns(2)
    for column, measure, title in (
        (maximum_column, "maximum", f"{part.layer}: maximum activation"),
        (frequency_column, "frequency", f"{part.layer}: activation frequency"),
    ):
        key = pick_chart_key(f"deepeyes_cells_{run}_{part.layer}_{measure}", selected)
        column.vega_lite_chart(
            filter_activity_spec(
                run_path,
                part.layer,
                step,
                measure,
                title,
                selected,
                flagged,
                heatmap,
            ),
            key=key,
            on_select=pick_filter(key, run, part.layer),
            selection_mode="filter_pick",
            width="stretch",
        )
    st.markdown(activity_sentence(part, step))


def layer_section(
    run_path: str,
    steps: list[int],
    diagnosis: RunDiagnosis,
    histograms: dict[str, list[PerplexityHistogram]],
    classes: list[str],
    dead_maximum: float,
) -> None:
    """One layer: its perplexity, its filters' activity, its input map and filter map."""
    step = diagnosis.step
    run = run_reference(run_path)
    layer, selected = inspect_controls(
        run, {part.layer: len(part.heatmap.maximum) for part in diagnosis.layers}
    )
    part = next(part for part in diagnosis.layers if part.layer == layer)
    layer_perplexity(run_path, steps, part, histograms[layer], step)
    st.subheader(f"{layer}: filter activity at step {step}")
    st.caption(
        "Each cell is a filter: its maximum activation over the probe patches, and how often it "
        "responds above half that maximum. Outlined: dead or always-on filters; ringed: the "
        "selected filter. Click a cell to select its filter."
    )
    filter_activity(run_path, part, step, selected)
    st.subheader(f"{layer}: input map and filter map at step {step}")
    try:
        maps(run_path, steps, step, layer, selected, classes, dead_maximum)
    except (OSError, ValueError, KeyError) as error:
        st.warning(f"The maps of {layer} cannot be drawn: {error}")
