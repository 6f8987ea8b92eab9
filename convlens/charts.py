"""Altair charts built from analysis results; no Streamlit here."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

from convlens.predict import Prediction
from convlens.style import (
    AXIS_FONT_SIZE,
    BAR_COLOUR,
    BAR_HEIGHT,
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
