"""The Training page's learning curves: a run stuck at chance reads as stuck."""

from __future__ import annotations

import re

import numpy as np
import vl_convert

from convlens.charts import curves_chart
from convlens.runs import Curves
from convlens.style import ACCURACY_COLOUR, CURVES_HEIGHT


def curves(accuracies: list[float]) -> Curves:
    steps = np.arange(0, 2000, 10)
    epochs = np.arange(1, len(accuracies) + 1)
    return Curves(
        steps=steps,
        loss=np.full(len(steps), 0.9),
        batch_accuracy=np.full(len(steps), 0.1),
        epoch_steps=epochs * 900,
        epochs=epochs,
        test_accuracy=np.array(accuracies),
        test_loss=np.full(len(epochs), 0.9),
    )


def accuracy_points(accuracies: list[float]) -> list[tuple[float, str]]:
    """The rendered accuracy points: their height above the plot's bottom, as a share of the plot,
    and their colour."""
    svg = vl_convert.vegalite_to_svg(curves_chart(curves(accuracies)).to_json())
    points = re.findall(
        r'<path aria-label="step: \d+; test accuracy: [^"]*" role="graphics-symbol"'
        r' aria-roledescription="point" transform="translate\(([\d.]+),([\d.]+)\)"'
        r'[^>]*fill="([^"]+)"',
        svg,
    )
    return [(1 - float(y) / CURVES_HEIGHT, fill) for _, y, fill in points]


def test_a_run_stuck_at_chance_lies_low_on_an_axis_from_0_to_100_percent() -> None:
    """The hinge run without batch norm stays at 10%: drawn a tenth up the plot, not in the middle
    of an axis spanning that one value; its points in the line's orange."""
    stuck = accuracy_points([0.1, 0.1])
    assert len(stuck) == 2
    assert all(abs(height - 0.1) < 0.02 for height, _ in stuck)
    assert {fill for _, fill in stuck} == {ACCURACY_COLOUR}
    learning = accuracy_points([0.85, 0.9])
    assert [round(height, 2) for height, _ in learning] == [0.85, 0.9]
