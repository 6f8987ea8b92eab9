"""The Filters page's grid as one chart: a tile per filter, its label, and a click that selects it."""

from __future__ import annotations

import base64
import io

import altair as alt
import numpy as np
from PIL import Image

from convlens.charts import FILTER_SELECTION, GRID_GAP, filter_grid_spec
from convlens.style import FILTER_GRID_COLUMNS, SELECTED_BORDER
from convlens.style import FILTER_GRID_TILE as GRID_TILE


def valid(spec: dict) -> dict:
    """`spec`, after validating it against Vega-Lite's schema."""
    alt.LayerChart.from_dict(spec)
    return spec


def pictures(count: int) -> list[Image.Image]:
    return [Image.new("RGB", (96, 96), (k, 255 - k, 0)) for k in range(count)]


def main_rows(spec: dict) -> list[dict]:
    return max(spec["datasets"].values(), key=len)


def test_a_page_of_64_filters_is_64_image_tiles_with_their_numbers_in_order():
    filters = list(np.random.default_rng(0).permutation(64))
    labels = [f"{k} ✗" if k == 7 else str(k) for k in filters]
    spec = valid(filter_grid_spec(filters, pictures(64), labels, 8))
    rows = main_rows(spec)
    assert [row["filter"] for row in rows] == filters
    assert [row["label"] for row in rows] == labels
    images = [layer for layer in spec["layer"] if layer["mark"]["type"] == "image"]
    assert len(images) == 1 and images[0]["encoding"]["url"]["field"] == "url"
    decoded = [
        Image.open(io.BytesIO(base64.b64decode(row["url"].split(",", 1)[1]))) for row in rows
    ]
    assert [picture.getpixel((0, 0))[0] for picture in decoded] == list(range(64))
    texts = [layer for layer in spec["layer"] if layer["mark"]["type"] == "text"]
    assert texts[0]["encoding"]["text"]["field"] == "label"


def test_tiles_are_at_least_64_pixels_and_a_page_of_64_fits_in_720():
    labels = [str(k) for k in range(64)]
    spec = valid(filter_grid_spec(list(range(64)), pictures(64), labels, FILTER_GRID_COLUMNS))
    rows = main_rows(spec)
    assert GRID_TILE >= 64
    assert all(r["x_end"] - r["x"] == GRID_TILE and r["y_end"] - r["y"] == GRID_TILE for r in rows)
    second_row = FILTER_GRID_COLUMNS + 1  # the second tile of the second row
    step = GRID_TILE + GRID_GAP
    assert (rows[second_row]["x"], rows[second_row]["y"]) == (step, step)
    assert spec["height"] == -(-64 // FILTER_GRID_COLUMNS) * step - GRID_GAP <= 720
    assert spec["width"] == FILTER_GRID_COLUMNS * step - GRID_GAP
    # the tiles of a partial last row do not stretch the chart
    short = valid(filter_grid_spec([0, 1, 2], pictures(3), ["0", "1", "2"], 8))
    assert short["height"] == GRID_TILE


def test_a_click_on_a_tile_selects_its_filter_and_the_selected_one_is_outlined():
    spec = valid(filter_grid_spec([4, 5, 6], pictures(3), ["4", "5", "6"], 8, selected=5))
    (param,) = spec["params"]
    assert param["name"] == FILTER_SELECTION
    # one filter at a time, kept by a click between tiles
    assert param["select"] == {
        "type": "point",
        "fields": ["filter"],
        "on": "click",
        "clear": False,
        "toggle": False,
    }
    assert param["value"] == [{"filter": 5}], "the selection starts at the selected filter"
    (clickable,) = [layer for layer in spec["layer"] if layer.get("name") in param["views"]]
    assert clickable is spec["layer"][-1], "the clickable tiles lie above the labels"
    # the browser outlines the selection's tile: only it, none while nothing is selected
    stroke = clickable["encoding"]["stroke"]
    assert stroke["condition"] == [
        {"param": FILTER_SELECTION, "value": SELECTED_BORDER, "empty": False}
    ]
    assert stroke["value"] is None
    assert clickable["mark"]["fillOpacity"] == 0 and clickable["mark"]["strokeWidth"] == 3
    assert not [layer for layer in spec["layer"] if layer["mark"].get("stroke")]
    unselected = valid(filter_grid_spec([4, 5, 6], pictures(3), ["4", "5", "6"], 8))
    assert "value" not in unselected["params"][0]
    missing = valid(filter_grid_spec([4, 5, 6], pictures(3), ["4", "5", "6"], 8, selected=9))
    assert "value" not in missing["params"][0], "a filter of another page is not selected here"
