"""The Filters page builds its charts' Vega-Lite specs once per server: a spec from the cache equals
one built afresh, and the specs are valid Vega-Lite (the picker's pointer events aside)."""

from __future__ import annotations

import copy

import altair as alt
import numpy as np
import pytest
from PIL import Image

from convlens.attribution import LayerMaps
from convlens.charts import (
    POSITION_POINTER,
    POSITION_SELECTION,
    channel_sums_chart,
    convolution_spec,
    filter_grid_spec,
    position_picker_spec,
)
from convlens.data import load_image
from convlens.explain import convolution_step
from convlens.models import load_model
from convlens.style import FILTER_GRID_COLUMNS, MAGNIFIED_SIZE
from convlens.tiles import diverging
from convlens.ui.explain import _map_picture, picker_spec, step_specs, strongest_channels
from convlens.ui.filters import activation_tile, grid_spec
from convlens.ui.vega import named_by_position, with_arrow_datasets

MAPS = LayerMaps("conv", np.random.default_rng(0).normal(size=(4, 14, 10)).astype(np.float32))
VIEW = Image.new("RGB", (28, 20), (90, 140, 200))


def without_pointer_events(spec: dict) -> dict:
    """The spec as Vega-Lite's schema knows it: the pointer parameter without its `on`."""
    plain = copy.deepcopy(spec)
    for parameter in plain["params"]:
        parameter.pop("on", None)
    return plain


@pytest.mark.parametrize("at", [None, (13, 9)])
def test_a_cached_picker_spec_equals_a_fresh_one(at):
    key = ("model", "sample:test", None, "conv")
    cached = [picker_spec(key, 2, at, MAPS, VIEW) for _ in range(2)]
    size = (MAGNIFIED_SIZE, round(MAGNIFIED_SIZE * 14 / 10))
    picture = _map_picture(VIEW, diverging(MAPS.maps[2], float(np.abs(MAPS.maps).max())), size)
    fresh = position_picker_spec(picture, 14, 10, at)
    assert cached[0] == cached[1] == with_arrow_datasets(fresh)
    alt.LayerChart.from_dict(without_pointer_events(fresh))  # valid Vega-Lite otherwise


def test_the_picker_is_one_clickable_cell_whose_position_follows_the_pointer():
    spec = position_picker_spec(Image.new("RGB", (360, 504)), 14, 10, (13, 9))
    (selection,) = [p for p in spec["params"] if p["name"] == POSITION_SELECTION]
    assert selection["select"] == {"type": "point", "fields": ["y", "x"], "on": "click"}
    (cell,) = [layer for layer in spec["layer"] if layer.get("name") in selection["views"]]
    assert "sequence" not in str(spec), "no mark per position"
    assert len(spec["datasets"][cell["data"]["name"]]) == 1
    assert {t["as"] for t in cell["transform"]} == {"y", "x"}
    assert all(POSITION_POINTER in t["calculate"] for t in cell["transform"])
    (pointer,) = [p for p in spec["params"] if p["name"] == POSITION_POINTER]
    (handler,) = pointer["on"]
    assert "pointerdown" in handler["events"]
    # the last row and column, never one past them
    assert "0, 13)" in handler["update"] and "0, 9)" in handler["update"]
    picture, _, outline = spec["layer"]
    (image,) = spec["datasets"][picture["data"]["name"]]
    assert (image["left"], image["top"], image["right"], image["bottom"]) == (0, 0, 10, 14)
    assert image["url"].startswith("data:image/png;base64,")
    assert spec["datasets"][outline["data"]["name"]] == [
        {"top": 13, "left": 9, "bottom": 14, "right": 10}
    ], "the selected position (y 13, x 9) outlined"
    assert (spec["width"], spec["height"]) == (360, 504)


def test_cached_dialog_specs_equal_fresh_ones():
    model = load_model("fashion_basecnn")
    image = load_image("fashion-mnist:test:0").image
    step = convolution_step(model, image, "features.conv2_1", 7, 0, 13)
    shown = strongest_channels(step)
    assert len(shown) < len(step.channel_sums), "a layer whose sums chart is drawn"
    key = ("fashion_basecnn", "fashion-mnist:test:0", None, "features.conv2_1", 7, (0, 13))
    cached = [step_specs(key, step) for _ in range(2)]
    window = convolution_spec(
        step.window,
        step.kernel,
        step.channel_sums,
        step.padding_mask,
        shown,
        step.first_input_channel,
    )
    alt.ConcatChart.from_dict(window)  # valid Vega-Lite
    sums = channel_sums_chart(step.channel_sums, step.first_input_channel, shown)
    with alt.theme.enable("none"):  # validated against Vega-Lite's schema here
        sums_spec = named_by_position(sums.to_dict())
    fresh = (with_arrow_datasets(window), with_arrow_datasets(sums_spec))
    assert cached[0] == cached[1] == fresh


@pytest.mark.parametrize("kernel", [(3, 3), (5, 3)])
def test_a_convolutions_spec_shows_each_channels_window_kernel_and_sum(kernel):
    """By hand: every cell's input, weight, product and padding; values written in the cells of
    kernels up to 3 x 3 only; one colour scale per panel, symmetric about the largest value."""
    kh, kw = kernel
    rng = np.random.default_rng(0)
    window = rng.normal(size=(4, kh, kw)).astype(np.float32)
    weights = rng.normal(size=(4, kh, kw)).astype(np.float32)
    sums = (window * weights).sum(axis=(1, 2))
    padding = np.zeros((kh, kw), bool)
    padding[0] = True
    spec = convolution_spec(window, weights, sums, padding, [3, 1], 8, per_row=2)
    alt.ConcatChart.from_dict(spec)  # valid Vega-Lite
    assert spec["columns"] == 2
    assert [[panel["title"] for panel in block["hconcat"]] for block in spec["concat"]] == [
        ["channel 11: window", "kernel", "Σ input × weight"],
        ["channel 9: window", "kernel", "Σ input × weight"],
    ]
    for block, channel in zip(spec["concat"], [3, 1], strict=True):
        window_panel, kernel_panel, total = block["hconcat"]
        cells = spec["datasets"][window_panel["data"]["name"]]
        assert kernel_panel["data"] == window_panel["data"]
        for cell in cells:
            y, x = cell["row"], cell["column"]
            assert cell["input"] == pytest.approx(float(window[channel, y, x]))
            assert cell["weight"] == pytest.approx(float(weights[channel, y, x]))
            assert cell["product"] == pytest.approx(
                float(window[channel, y, x] * weights[channel, y, x])
            )
            assert cell["padding"] == (y == 0)
        assert sorted((c["row"], c["column"]) for c in cells) == [
            (y, x) for y in range(kh) for x in range(kw)
        ]
        (text,) = spec["datasets"][total["data"]["name"]]
        assert text == {"text": f"= {sums[channel]:.4f}"}
        assert ("layer" in window_panel) == (kernel == (3, 3)), "values written in 3 x 3 cells"
    shown = np.abs(window[[3, 1]]).max()
    first = spec["concat"][0]["hconcat"][0]
    rect = first["layer"][0] if "layer" in first else first
    assert rect["encoding"]["color"]["scale"]["domain"] == pytest.approx([-shown, shown])
    assert rect["encoding"]["color"]["condition"]["test"] == "datum.padding"


def test_a_cached_grid_spec_equals_a_fresh_one():
    filters = [3, 0, 2, 1]
    labels = ("3 ✓", "0", "2", "1")
    key = ("model", "sample:test", None, "conv", "activation", tuple(filters))
    cached = [
        grid_spec(key, labels, 2, "maps", filters, lambda k: activation_tile(MAPS, k))
        for _ in range(2)
    ]
    pictures = [activation_tile(MAPS, k) for k in filters]
    fresh = filter_grid_spec(filters, pictures, list(labels), FILTER_GRID_COLUMNS, 2, "maps")
    assert cached[0] == cached[1] == with_arrow_datasets(fresh)
    alt.LayerChart.from_dict(fresh)  # valid Vega-Lite
