"""The Training section of DeepEyes: the learning curves and every layer's stability and
perplexity at a glance."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from convlens.deepeyes import LayerStability, PerplexityHistogram, RunDiagnosis
from convlens.style import OVERVIEW_COLUMNS, TABLE_ROW_HEIGHT
from convlens.ui.deepeyes.caches import cached_mean_perplexities
from convlens.ui.deepeyes.controls import stability_threshold_input
from convlens.ui.deepeyes.specs import (
    learning_curves_spec,
    perplexity_heatmap_spec,
    stability_spec,
)
from convlens.ui.run_watch import metrics_version


def stable_phrase(stability: LayerStability) -> str:
    """Return "stable from step N" or "not stable yet"."""
    if stability.stable_from_step is None:
        return "not stable yet"
    return f"stable from step {stability.stable_from_step}"


def learning_curves_panel(run_path: str, step: int, live: bool) -> None:
    """Draw the run's learning curves with the snapshot marked (`live`: the run trains)."""
    spec = learning_curves_spec(run_path, step, metrics_version(run_path, live))
    if spec is None:
        st.caption("No training step recorded.")
        return
    st.vega_lite_chart(spec, width="stretch")
    st.caption(
        "blue: training loss (smoothed) · orange: test accuracy after each epoch · "
        f"dashed: the snapshot at step {step}"
    )


def stability_panel(
    run_path: str, steps: list[int], diagnosis: RunDiagnosis, threshold: float
) -> None:
    """Draw every layer's change between snapshots, with the threshold input under it."""
    stabilities = [part.stability for part in diagnosis.layers]
    if any(len(stability.distances) for stability in stabilities):
        st.vega_lite_chart(
            stability_spec(run_path, tuple(steps), threshold, stabilities), width="stretch"
        )
    else:
        st.caption("One snapshot: no change between snapshots to show yet.")
    stability_threshold_input()


def stability_table(diagnosis: RunDiagnosis, mean_perplexities: dict[str, float]) -> pd.DataFrame:
    """Return one row per layer: its width, mean perplexity at the snapshot, last change and
    from when it is stable."""
    rows = []
    for part in diagnosis.layers:
        stability = part.stability
        rows.append(
            {
                "layer": part.layer,
                "width": len(part.heatmap.maximum),
                "mean perplexity": mean_perplexities[part.layer],
                "last change": float(stability.distances[-1]) if len(stability.distances) else None,
                "stability": stable_phrase(stability),
            }
        )
    return pd.DataFrame(rows)


def perplexity_overview(
    run_path: str,
    steps: list[int],
    diagnosis: RunDiagnosis,
    histograms: dict[str, list[PerplexityHistogram]],
) -> None:
    """Draw every layer's perplexity over training, small, a few to a row."""
    parts = diagnosis.layers
    for start in range(0, len(parts), OVERVIEW_COLUMNS):
        columns = st.columns(OVERVIEW_COLUMNS)
        for column, part in zip(columns, parts[start : start + OVERVIEW_COLUMNS], strict=False):
            column.vega_lite_chart(
                perplexity_heatmap_spec(
                    run_path,
                    tuple(steps),
                    part.layer,
                    diagnosis.step,
                    part.layer,
                    True,
                    histograms[part.layer],
                ),
                width="stretch",
            )


def training_section(
    run_path: str,
    diagnosis: RunDiagnosis,
    histograms: dict[str, list[PerplexityHistogram]],
    threshold: float,
    live: bool,
) -> None:
    """The learning curves and every layer's stability and perplexity at a glance (`live`: the
    run trains)."""
    step = diagnosis.step
    # the snapshots that the histograms cover: they key the charts' specs
    steps = [histogram.step for histogram in histograms[diagnosis.layers[0].layer]]
    try:
        mean_perplexities = cached_mean_perplexities(run_path, step)
    except (OSError, ValueError, KeyError) as error:
        st.warning(f"DeepEyes cannot read {Path(run_path).name}: {error}")
        return
    learning_curves_panel(run_path, step, live)
    chart_column, table_column = st.columns([3, 5], gap="medium")
    with chart_column:
        stability_panel(run_path, steps, diagnosis, threshold)
    with table_column:
        st.dataframe(
            stability_table(diagnosis, mean_perplexities),
            hide_index=True,
            height="content",
            row_height=TABLE_ROW_HEIGHT,
            column_config={
                "layer": st.column_config.TextColumn(width=120),
                "width": st.column_config.NumberColumn(
                    width=50, help="Filters of a conv layer, units of a linear one"
                ),
                "mean perplexity": st.column_config.NumberColumn(
                    format="%.1f", width=110, help=f"Over the probe patches at step {step}"
                ),
                "last change": st.column_config.NumberColumn(
                    format="%.3f", width=80, help="Between the last two snapshots"
                ),
                "stability": st.column_config.TextColumn(width=145),
            },
        )
        st.caption(
            "Change: the L1 distance between a layer's perplexity histograms at consecutive "
            "snapshots (shares of patches per bin: 0 the same, 2 nothing in common). A layer is "
            "stable from the snapshot after which every change stays under the dashed threshold. "
            "Runs at a constant learning rate, like the shipped ones, keep changing by 0.1–0.6 "
            "while their accuracy climbs: raise the threshold to see from when the changes stay "
            "small."
        )
    st.subheader(
        "Perplexity over training",
        help="A patch's perplexity is how many filters share its response: 1 when one filter "
        "singles it out, the layer's width when all respond alike. A layer has settled when its "
        "histogram stops changing.",
    )
    st.caption(
        f"One column per snapshot (outlined: step {step}); darker: more patches at that "
        "perplexity. The Layer section shows one layer larger, with its histogram at the snapshot."
    )
    perplexity_overview(run_path, steps, diagnosis, histograms)
