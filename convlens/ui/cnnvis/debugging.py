"""A recorded run's debugging information under the CNNVis picture: each layer's average edge
measure over the snapshots."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from convlens.models import ModelKey
from convlens.ui.cnnvis.caches import cached_layer_averages, cached_layer_averages_chart
from convlens.ui.folded import folded_section


def layer_averages(
    model_key: ModelKey,
    run: Path,
    nodes: tuple[str, ...],
    measure: str,
    step: int | None,
) -> None:
    """The average `measure` per layer at every snapshot of `run`, the one at `step` in red;
    folded while the edges show plain weights (opened when they show a debugging measure).

    The chart is built and sent only while the section is open (`convlens.ui.folded`)."""
    if not cached_layer_averages(model_key, str(run), nodes, measure):
        return
    logarithmic = measure != "weight"
    section = folded_section(
        f"Recorded run: average {measure} per layer", "cnnvis_layer_averages", logarithmic
    )
    if section is None:
        return
    spec = cached_layer_averages_chart(model_key, str(run), nodes, measure, step)
    with section:
        st.caption(
            f"Average {measure} per layer of the recorded run: red at step {step}, grey at the "
            "other snapshots" + (" (log scale)" if logarithmic else "")
        )
        st.vega_lite_chart(spec, width="stretch")
