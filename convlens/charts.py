"""Altair charts built from analysis results; no Streamlit here."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

from convlens.predict import Prediction
from convlens.runs import Curves
from convlens.style import (
    ACCURACY_COLOUR,
    AXIS_FONT_SIZE,
    BAR_COLOUR,
    BAR_HEIGHT,
    CURVES_HEIGHT,
    HISTOGRAM_HEIGHT,
    LABEL_FONT_SIZE,
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
