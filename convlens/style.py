"""Visual constants in one place: colours by layer type, sizes for a projector."""

from __future__ import annotations

# Okabe-Ito palette: distinguishable with the common colour-vision deficiencies.
LAYER_COLOURS: dict[str, str] = {
    "conv": "#0072B2",
    "linear": "#CC79A7",
    "pool": "#E69F00",
    "norm": "#999999",
    "activation": "#009E73",
    "dropout": "#BBBBBB",
    "flatten": "#56B4E9",
    "other": "#666666",
    "group": "#F0E442",
}
LAYER_TYPE_NAMES: dict[str, str] = {
    "conv": "convolution",
    "linear": "fully connected",
    "pool": "pooling",
    "norm": "normalisation",
    "activation": "activation",
    "dropout": "dropout",
    "flatten": "flatten",
    "other": "other",
    "group": "collapsed group (click to expand)",
}
SELECTED_BORDER = "#D55E00"
CHAIN_FONT_SIZE = 14
# The Network page's image, under the layer details and above its top-5 classes.
NETWORK_IMAGE_WIDTH = 200
# The chain (convlens.ui.chain): one row per node, in a scrolling box of the page's height.
CHAIN_BOX_WIDTH = 170
CHAIN_ROW_PITCH = 66
CHAIN_HEADER_PITCH = 44
CHAIN_THUMB_GAP = 6
CHAIN_LANE_GAP = 10
CHAIN_VIEW_HEIGHT = 470
SKIP_COLOUR = "#8A8A8A"
COLLAPSE_GROUPS_ABOVE = 20
BAR_COLOUR = "#0072B2"
FILTER_TILE_SIZE = 56
BAR_HEIGHT = 44
HISTOGRAM_HEIGHT = 180
LABEL_FONT_SIZE = 15
AXIS_FONT_SIZE = 13
EDGE_COLOUR = "#555555"
DARK_FILL_TYPES = ("conv", "linear", "other")
TILE_GAP = 4
TILE_COLUMNS = 16
ACCURACY_COLOUR = "#D55E00"
CURVES_HEIGHT = 260
RUN_REFRESH_SECONDS = 2
# The Filters grid: tiles of 64 px in 7 columns fit beside the selected filter at 1280×720, and
# 5 rows of them below the page's controls: a page is what a projector shows without scrolling
# (and all that a page's guided back-propagation computes: 35 of EfficientNet-Lite0's deepest
# filters take ~0.4 s on two cores, 64 took ~0.75 s).
FILTER_GRID_COLUMNS = 7
FILTER_GRID_ROWS = 5
FILTER_GRID_TILE = 64
FILTERS_PER_PAGE = FILTER_GRID_COLUMNS * FILTER_GRID_ROWS
PATCH_SIZE = 84
MAGNIFIED_SIZE = 280
PREPARATION_REFRESH_SECONDS = 3
STEP_RULE_COLOUR = "#333333"
PERPLEXITY_SCHEME = "blues"
PERPLEXITY_HEATMAP_HEIGHT = 220
FILTER_SCHEME = "viridis"
FILTER_CELL_SIZE = 14
FILTER_CELL_COLUMNS = 50
FILTER_CELLS_MIN_HEIGHT = 130

# DeepEyes maps and charts (convlens.charts).
MAP_HEIGHT = 420
# The stability chart's plot and its legend (under the plot).
STABILITY_PLOT_HEIGHT = 170
STABILITY_LEGEND_SYMBOL_SIZE = 40
STABILITY_LEGEND_COLUMN_GAP = 10
# A small perplexity heatmap (one of a grid of every layer): its plot and its legend's gradient.
SMALL_HEATMAP_PLOT_HEIGHT = 75
SMALL_HEATMAP_LEGEND = 60
# The Training section's small perplexity heatmaps, one per layer, this many to a row.
OVERVIEW_COLUMNS = 3
# The stability chart shares a row with the layers' table: its legend has this many columns.
STABILITY_LEGEND_COLUMNS = 2
# Rows of the DeepEyes tables (the layers' stability, the suggested network).
TABLE_ROW_HEIGHT = 28
MAP_POINT_SIZE = 28
FIRING_POINT_SIZE = 60
FADED_OPACITY = 0.12
FILTER_POINT_SIZES = (40, 520)
FILTER_LABELS_UP_TO = 60
DEAD_FILTER_COLOUR = "#333333"
DUPLICATE_RING = "#000000"
# Vega's tableau10, in order: one colour per label.
LABEL_COLOURS = (
    "#4c78a8",
    "#f58518",
    "#e45756",
    "#72b7b2",
    "#54a24b",
    "#eeca3b",
    "#b279a2",
    "#ff9da6",
    "#9d755d",
    "#bab0ac",
)
