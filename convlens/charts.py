"""Altair charts built from analysis results; no Streamlit here."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd

from convlens.deepeyes import ActivationHeatmap, PerplexityHistogram
from convlens.predict import Prediction
from convlens.runs import Curves
from convlens.style import (
    ACCURACY_COLOUR,
    AXIS_FONT_SIZE,
    BAR_COLOUR,
    BAR_HEIGHT,
    CURVES_HEIGHT,
    FILTER_CELL_COLUMNS,
    FILTER_CELL_SIZE,
    FILTER_CELLS_MIN_HEIGHT,
    FILTER_SCHEME,
    HISTOGRAM_HEIGHT,
    LABEL_FONT_SIZE,
    PERPLEXITY_HEATMAP_HEIGHT,
    PERPLEXITY_SCHEME,
    SELECTED_BORDER,
    STEP_RULE_COLOUR,
)
from convlens.weights import Histogram


def predictions_chart(predictions: Sequence[Prediction]) -> alt.Chart:
    """Return a horizontal bar chart of class probabilities, most probable on top."""
    frame = pd.DataFrame(
        {
            "class": [p.label for p in predictions],
            "probability": [p.probability for p in predictions],
            "rank": list(range(len(predictions))),
        }
    )
    return (
        alt.Chart(frame)
        .mark_bar(color=BAR_COLOUR)
        .encode(
            x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
            y=alt.Y(
                "class:N",
                sort=alt.EncodingSortField("rank"),
                title=None,
                axis=alt.Axis(labelOverlap=False),
            ),
            tooltip=["class", alt.Tooltip("probability:Q", format=".2%")],
        )
        .properties(height=BAR_HEIGHT * max(len(predictions), 1))
        .configure_axis(
            labelFontSize=LABEL_FONT_SIZE, titleFontSize=LABEL_FONT_SIZE, labelLimit=260
        )
    )


def histogram_chart(histogram: Histogram, title: str) -> alt.Chart:
    """Return a bar chart of a histogram (e.g. the weights of one layer)."""
    frame = pd.DataFrame(
        {"start": histogram.edges[:-1], "end": histogram.edges[1:], "count": histogram.counts}
    )
    return (
        alt.Chart(frame, title=title)
        .mark_bar(color=BAR_COLOUR)
        .encode(
            x=alt.X("start:Q", title="value", bin="binned"),
            x2="end:Q",
            y=alt.Y("count:Q", title="count"),
            tooltip=[
                alt.Tooltip("start:Q", format=".3g"),
                alt.Tooltip("end:Q", format=".3g"),
                "count:Q",
            ],
        )
        .properties(height=HISTOGRAM_HEIGHT)
        .configure_axis(labelFontSize=AXIS_FONT_SIZE, titleFontSize=AXIS_FONT_SIZE)
    )


def curves_chart(curves: Curves, max_points: int = 1500) -> alt.LayerChart | alt.Chart:
    """Return training loss per step (smoothed) and test accuracy per epoch, on two axes."""
    stride = max(1, len(curves.steps) // max_points)
    window = max(1, stride * 5)
    smoothed = (
        pd.Series(curves.loss).rolling(window, min_periods=1).mean().to_numpy()
        if len(curves.loss)
        else curves.loss
    )
    losses = pd.DataFrame({"step": curves.steps[::stride], "training loss": smoothed[::stride]})
    tests = pd.DataFrame({"step": curves.epoch_steps, "test accuracy": curves.test_accuracy})
    loss_line = (
        alt.Chart(losses)
        .mark_line(color=BAR_COLOUR)
        .encode(
            x=alt.X("step:Q", title="step"),
            y=alt.Y("training loss:Q", axis=alt.Axis(titleColor=BAR_COLOUR)),
            tooltip=["step:Q", alt.Tooltip("training loss:Q", format=".3f")],
        )
    )
    accuracy = (
        alt.Chart(tests)
        .mark_line(color=ACCURACY_COLOUR, point=True)
        .encode(
            x="step:Q",
            y=alt.Y(
                "test accuracy:Q",
                axis=alt.Axis(format="%", titleColor=ACCURACY_COLOUR),
                scale=alt.Scale(zero=False),
            ),
            tooltip=["step:Q", alt.Tooltip("test accuracy:Q", format=".2%")],
        )
    )
    return (
        alt.layer(loss_line, accuracy)
        .resolve_scale(y="independent")
        .properties(height=CURVES_HEIGHT)
        .configure_axis(labelFontSize=AXIS_FONT_SIZE, titleFontSize=AXIS_FONT_SIZE)
    )


def bars_chart(
    labels: Sequence[str], values: Sequence[float], title: str, value_title: str
) -> alt.Chart:
    """Return horizontal bars, one per label in the given order (e.g. per-class mean activation)."""
    frame = pd.DataFrame({"label": list(labels), "value": list(values), "rank": range(len(labels))})
    return (
        alt.Chart(frame, title=title)
        .mark_bar(color=BAR_COLOUR)
        .encode(
            x=alt.X("value:Q", title=value_title),
            y=alt.Y(
                "label:N",
                sort=alt.EncodingSortField("rank"),
                title=None,
                axis=alt.Axis(labelOverlap=False),
            ),
            tooltip=["label", alt.Tooltip("value:Q", format=".3f")],
        )
        .properties(height=max(BAR_HEIGHT * 0.6 * len(frame), 60))
        .configure_axis(
            labelFontSize=LABEL_FONT_SIZE, titleFontSize=LABEL_FONT_SIZE, labelLimit=260
        )
    )


def with_step_rule(chart: alt.LayerChart, step: int) -> alt.LayerChart:
    """Return a copy of a layered chart over steps (e.g. `curves_chart`) with a rule at `step`."""
    rule = (
        alt.Chart(pd.DataFrame({"step": [int(step)]}))
        .mark_rule(color=STEP_RULE_COLOUR, strokeWidth=2, strokeDash=[4, 3])
        .encode(x="step:Q", tooltip=[alt.Tooltip("step:Q", title="selected snapshot")])
    )
    marked = chart.copy(deep=False)
    marked.layer = [*chart.layer, rule]
    return marked


def perplexity_heatmap_chart(
    histograms: Sequence[PerplexityHistogram], selected_step: int, title: str
) -> alt.LayerChart:
    """Return one layer's perplexity histograms over training: a column per snapshot step.

    Colour is each bin's share of the probe patches; the selected snapshot's column is outlined.
    """
    rows = [
        {
            "step": histogram.step,
            "low": float(low),
            "high": float(high),
            "patches": int(count),
            "share": float(count) / max(int(histogram.counts.sum()), 1),
        }
        for histogram in histograms
        for low, high, count in zip(
            histogram.edges[:-1], histogram.edges[1:], histogram.counts, strict=True
        )
    ]
    frame = pd.DataFrame(rows)
    steps = [histogram.step for histogram in histograms]
    x = alt.X("step:O", title="snapshot step", scale=alt.Scale(domain=steps))
    cells = (
        alt.Chart(frame)
        .mark_rect()
        .encode(
            x=x,
            y=alt.Y("low:Q", title="perplexity"),
            y2="high:Q",
            color=alt.Color(
                "share:Q",
                title="share of patches",
                scale=alt.Scale(scheme=PERPLEXITY_SCHEME),
                legend=alt.Legend(format="%"),
            ),
            tooltip=[
                "step:O",
                alt.Tooltip("low:Q", format=".1f", title="perplexity from"),
                alt.Tooltip("high:Q", format=".1f", title="perplexity to"),
                "patches:Q",
                alt.Tooltip("share:Q", format=".1%"),
            ],
        )
    )
    edges = histograms[0].edges if histograms else [1.0, 2.0]
    outline = (
        alt.Chart(
            pd.DataFrame({"step": [int(selected_step)], "low": [edges[0]], "high": [edges[-1]]})
        )
        .mark_rect(filled=False, stroke=SELECTED_BORDER, strokeWidth=3)
        .encode(x=x, y="low:Q", y2="high:Q")
    )
    return (
        alt.layer(cells, outline, title=title)
        .properties(height=PERPLEXITY_HEATMAP_HEIGHT)
        .configure_axis(labelFontSize=AXIS_FONT_SIZE, titleFontSize=AXIS_FONT_SIZE)
    )


def perplexity_bars_chart(histogram: PerplexityHistogram, title: str) -> alt.Chart:
    """Return one snapshot's perplexity histogram as bars of the share of probe patches."""
    total = max(int(histogram.counts.sum()), 1)
    frame = pd.DataFrame(
        {
            "low": histogram.edges[:-1],
            "high": histogram.edges[1:],
            "patches": histogram.counts,
            "share": histogram.counts / total,
        }
    )
    return (
        alt.Chart(frame, title=title)
        .mark_bar(color=BAR_COLOUR)
        .encode(
            x=alt.X("low:Q", title="perplexity", bin="binned"),
            x2="high:Q",
            y=alt.Y("share:Q", title="share of patches", axis=alt.Axis(format="%")),
            tooltip=[
                alt.Tooltip("low:Q", format=".1f", title="perplexity from"),
                alt.Tooltip("high:Q", format=".1f", title="perplexity to"),
                "patches:Q",
                alt.Tooltip("share:Q", format=".1%"),
            ],
        )
        .properties(height=PERPLEXITY_HEATMAP_HEIGHT)
        .configure_axis(labelFontSize=AXIS_FONT_SIZE, titleFontSize=AXIS_FONT_SIZE)
    )


def filter_cells_chart(heatmap: ActivationHeatmap, measure: str, title: str) -> alt.Chart:
    """Return a layer's filters as a grid of cells coloured by "maximum" or "frequency".

    Dead and always-on filters are outlined and named in the tooltip.
    """
    values = heatmap.maximum if measure == "maximum" else heatmap.frequency
    flags = np.full(len(values), "", dtype=object)
    flags[heatmap.dead] = "dead"
    flags[heatmap.always_on] = "always on"
    columns = max(1, min(len(values), FILTER_CELL_COLUMNS))
    indices = np.arange(len(values))
    frame = pd.DataFrame(
        {
            "filter": indices,
            "column": indices % columns,
            "row": indices // columns,
            measure: values.astype(float),
            "flag": flags,
        }
    )
    rows = int(frame["row"].max()) + 1 if len(frame) else 1
    return (
        alt.Chart(frame, title=title)
        .mark_rect()
        .encode(
            x=alt.X("column:O", axis=None),
            y=alt.Y("row:O", axis=None),
            color=alt.Color(
                f"{measure}:Q",
                scale=alt.Scale(scheme=FILTER_SCHEME),
                legend=alt.Legend(
                    format="%" if measure == "frequency" else ".2g", gradientLength=50
                ),
            ),
            stroke=alt.condition("datum.flag != ''", alt.value(SELECTED_BORDER), alt.value(None)),
            strokeWidth=alt.condition("datum.flag != ''", alt.value(2), alt.value(0)),
            tooltip=[
                "filter:Q",
                alt.Tooltip(f"{measure}:Q", format=".1%" if measure == "frequency" else ".3g"),
                "flag:N",
            ],
        )
        # Streamlit draws the legend inside the given height, so a one-row grid needs more.
        .properties(
            width=FILTER_CELL_SIZE * columns,
            height=max(FILTER_CELL_SIZE * rows, FILTER_CELLS_MIN_HEIGHT),
        )
    )
