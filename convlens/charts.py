"""Altair charts built from analysis results; no Streamlit here."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd

from convlens.predict import Prediction
from convlens.style import BAR_COLOUR


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
        .properties(height=44 * max(len(predictions), 1))
        .configure_axis(labelFontSize=15, titleFontSize=15, labelLimit=260)
    )


def histogram_chart(values: np.ndarray, title: str, bins: int = 60) -> alt.Chart:
    """Return a histogram of `values` (e.g. the weights of one layer)."""
    counts, edges = np.histogram(np.asarray(values, dtype=np.float64).ravel(), bins=bins)
    frame = pd.DataFrame({"start": edges[:-1], "end": edges[1:], "count": counts})
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
        .properties(height=180)
        .configure_axis(labelFontSize=13, titleFontSize=13)
    )
