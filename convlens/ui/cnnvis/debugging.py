"""A recorded run's debugging information under the CNNVis picture: each layer's average edge
measure over the snapshots."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from convlens.models import ModelKey
from convlens.ui.cnnvis.caches import cached_layer_averages_chart


def layer_averages(
    model_key: ModelKey,
    run: Path,
    nodes: tuple[str, ...],
    measure: str,
    step: int | None,
) -> None:
    """The average `measure` per layer at every snapshot of `run`, the one at `step` in red;
    folded while the edges show plain weights (opened when they show a debugging measure)."""
    spec = cached_layer_averages_chart(model_key, str(run), nodes, measure, step)
    if spec is None:
        return
    logarithmic = measure != "weight"
    with st.expander(f"Recorded run: average {measure} per layer", expanded=logarithmic):
        st.caption(
            f"Average {measure} per layer of the recorded run: red at step {step}, grey at the "
            "other snapshots" + (" (log scale)" if logarithmic else "")
        )
        st.vega_lite_chart(spec, width="stretch")
