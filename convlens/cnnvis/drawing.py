"""The CNNVis picture (Fig. 1 and 5 of the paper) as one layered Vega-Lite spec (`Picture`).

Left to right: layer groups, collapsed to a labelled column or expanded into one column per layer;
each layer's neuron clusters as large rectangles showing one facet (packed learned features or
the reordered activation matrix); between two expanded layers the "in-between" layer of
biclusters (small rectangles, green/red in the proportion of their positive/negative edges) and
the bundled edges as curves. The same chart is shown in the app and exported as SVG or PNG by
vl-convert, so slides show exactly what the page showed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import altair as alt
import numpy as np
from PIL import Image

from convlens.attribution import input_view
from convlens.cnnvis.packing import pack_rectangles
from convlens.cnnvis.pipeline import neuron_similarity
from convlens.cnnvis.view import Bundles, CnnvisView, LayerView, with_row_orders
from convlens.tiles import crop_patch, patch_in_context, photo_url, png_bytes, png_url

Records = list[dict]  # a layer's marks, one record per mark

FACETS = ("features", "activations")
# Positive / negative edge colours; the second pair is safe for the common colour blindnesses.
# The matrix's darkest grey: this percentile of the layer's per-class mean activations.
MATRIX_TOP_PERCENTILE = 95
PALETTES = {"green / red": ("#1a9850", "#d73027"), "blue / orange": ("#2166ac", "#e66101")}
HEIGHT = 560
HEADER = 46
PICTURE_WIDTH = 900
CLUSTER_WIDTHS = (90.0, 300.0)
CLUSTER_LABEL = 17
CLUSTER_GAP = 12
MIN_CLUSTER_HEIGHT = 40
COLLAPSED_WIDTH = 52
PAIR_GAP = 100
PLAIN_GAP = 36
BICLUSTER_WIDTH = 12
BICLUSTER_HEIGHT = 18
CURVE_POINTS = 14
# The curves are GeoJSON lines through an identity projection: one Vega item per curve, where a
# line mark made an item of each of its points (a third of a large picture's drawing). A
# projection scales x and y alike, and the page stretches only the picture's width, so the
# browser places each point itself (`_curve_path`) and the projection leaves them where they are.
SCREEN = {"type": "identity", "scale": 1, "translate": [0, 0]}
FADED = 0.18
FONT = 13
# A cluster's label starts this far into its rectangle and ends as far before the next column;
# Vega never cuts it shorter than MIN_LABEL_LIMIT pixels.
LABEL_INSET = 3
MIN_LABEL_LIMIT = 20
HIGHLIGHT = "#ff7f00"
OUTLINE_NEURONS_NAMED = 8  # a highlight frame's tooltip names at most this many of its neurons
PATCH_PIXELS = 32
# Images whose view (as the model sees them) a patch function keeps: 256 of ImageNet's 224x224
# views are ~40 MB.
INPUT_VIEWS = 256
# A cluster's packed patches are drawn into one picture at this many pixels per picture pixel:
# sharp on a high-density screen and in the PNG exported at scale 2.
PICTURE_SCALE = 2
# Under the activation matrices: each column's class number, where a column is this wide at least.
MATRIX_KEY = 16
MATRIX_KEY_COLUMN = 7
# The line that names those numbers, wrapped: a title wider than the page's column squeezes the
# whole picture into what is left (Vega-Lite fits title and plot together into the width): 90
# characters of 12 px text are about 430 px, well under the page's width at 1024 px. Lines past
# MATRIX_KEY_LINES end in an ellipsis; a class name too long for a line is cut.
MATRIX_KEY_LINE = 90
MATRIX_KEY_PIXELS = 540
MATRIX_KEY_LINES = 3


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def middle(self) -> float:
        return self.y + self.h / 2


@dataclass(frozen=True)
class Geometry:
    """Where each column and each cluster lies, in pixels from the top left."""

    width: float
    columns: dict[str, Box]
    clusters: dict[tuple[str, int], Box]


def layout(view: CnnvisView, width: float = PICTURE_WIDTH, footer: float = 0.0) -> Geometry:
    """Place group columns, layer columns and cluster rectangles left to right, the layer
    columns as wide as fills `width` (within CLUSTER_WIDTHS): the page stretches the picture to
    its own width, so a picture near that width keeps the patches square. `footer` pixels stay
    free under the columns."""
    paired = {(b.source, b.target) for b in view.bundles}
    sequence = [
        (name, group.expanded)
        for group in view.groups
        for name in (group.nodes if group.expanded else (group.id,))
    ]
    gaps = sum(
        PAIR_GAP if (a, b) in paired else PLAIN_GAP
        for (a, _), (b, _) in zip(sequence, sequence[1:], strict=False)
    )
    expanded = sum(1 for _, open_ in sequence if open_)
    fixed = 20 + gaps + COLLAPSED_WIDTH * (len(sequence) - expanded)
    cluster_width = float(np.clip((width - fixed) / max(expanded, 1), *CLUSTER_WIDTHS))
    x = 10.0
    columns: dict[str, Box] = {}
    clusters: dict[tuple[str, int], Box] = {}
    previous: str | None = None
    for name, open_ in sequence:
        if previous is not None:
            x += PAIR_GAP if (previous, name) in paired else PLAIN_GAP
        column_width = cluster_width if open_ else COLLAPSED_WIDTH
        columns[name] = Box(x, HEADER, column_width, HEIGHT - HEADER - footer)
        if open_:
            clusters.update(_cluster_boxes(view.layers[name], columns[name]))
        x += column_width
        previous = name
    return Geometry(x + 10, columns, clusters)


def _cluster_boxes(layer: LayerView, column: Box) -> dict[tuple[str, int], Box]:
    sizes = np.array([len(m) for m in layer.clusters.representatives], dtype=float)
    available = column.h - CLUSTER_GAP * (len(sizes) - 1)
    heights = np.maximum(MIN_CLUSTER_HEIGHT, available * sizes / sizes.sum())
    heights *= min(1.0, available / heights.sum())
    boxes, y = {}, column.y
    for cluster, height in enumerate(heights):
        boxes[(layer.node, cluster)] = Box(column.x, y, column.w, float(height))
        y += float(height) + CLUSTER_GAP
    return boxes


def _curve(x0: float, y0: float, x1: float, y1: float) -> tuple[np.ndarray, np.ndarray]:
    """A cubic Bezier from (x0, y0) to (x1, y1) leaving and arriving horizontally."""
    t = np.linspace(0, 1, CURVE_POINTS)
    mid = (x0 + x1) / 2
    xs = (1 - t) ** 3 * x0 + 3 * (1 - t) ** 2 * t * mid + 3 * (1 - t) * t**2 * mid + t**3 * x1
    ys = (1 - t) ** 3 * y0 + 3 * (1 - t) ** 2 * t * y0 + 3 * (1 - t) * t**2 * y1 + t**3 * y1
    return xs, ys


def short_names(nodes: Sequence[str]) -> dict[str, str]:
    """Each node's shortest ending (by its dotted parts) that no other of `nodes` has: a column's
    header says `11._expand_conv` where EfficientNet-Lite0 has an `_expand_conv` in every block,
    and `conv3_1` where the name alone is enough."""
    names = {}
    for node in nodes:
        parts = node.split(".")
        for size in range(1, len(parts) + 1):
            ending = ".".join(parts[-size:])
            others = (n for n in nodes if n != node)
            if not any(n == ending or n.endswith("." + ending) for n in others):
                break
        names[node] = ending
    return names


def _layer_names(view: CnnvisView) -> dict[str, str]:
    """The short name (`short_names`) of every layer of the view's groups, as headers and
    tooltips name them."""
    return short_names([node for group in view.groups for node in group.nodes])


class NeuronMarks(NamedTuple):
    """A picture's marks of single neurons: one picture per cluster (its packed patches, or its
    activation matrix) under a transparent, clickable mark per neuron (its square, or its matrix
    row). A picture per cluster instead of an image per neuron: the browser decodes a few dozen
    pictures, not hundreds of patches, and draws the neurons as plain rectangles."""

    pictures: Records
    patches: Records
    rows: Records


Patch = Callable[["LayerView", int, int], Image.Image]  # a neuron's top patch `rank`, cropped


def neuron_marks(
    view: CnnvisView, geometry: Geometry, facet: str, rank: int, patch: Patch
) -> NeuronMarks:
    """The marks of the neurons of the view's expanded layers in `facet` (the activations facet
    reads the layers' matrix orders: a view after `with_row_orders`)."""
    marks = NeuronMarks([], [], [])
    for node, layer in view.layers.items():
        top = matrix_top(layer)
        for cluster, members in enumerate(layer.clusters.representatives):
            inner = _inner(geometry.clusters[(node, cluster)])
            box = {"x": _px(inner.x), "x2": _px(inner.right), "y": _px(inner.y)}
            box["y2"] = _px(inner.y + inner.h)
            if facet == "features":
                squares = []
                rects = _packed(layer, members, inner)
                for neuron, (x, y, w, h) in zip(members, rects, strict=True):
                    if w <= 0:
                        continue
                    row = _neuron_row(layer, int(neuron), cluster, view.classes)
                    squares.append((patch(layer, int(neuron), rank), (x, y, w, h), row["opacity"]))
                    marks.patches.append(
                        row
                        | {
                            "x": _px(inner.x + x),
                            "x2": _px(inner.x + x + w),
                            "y": _px(inner.y + y),
                            "y2": _px(inner.y + y + h),
                        }
                    )
                if squares:
                    picture = packed_picture(squares, (inner.w, inner.h))
                    marks.pictures.append(
                        box | {"node": node, "cluster": cluster, "url": photo_url(picture)}
                    )
            elif view.classes:
                picture = matrix_picture(layer, cluster, top)
                marks.pictures.append(
                    box | {"node": node, "cluster": cluster, "url": png_url(png_bytes(picture))}
                )
                order = layer.orders[cluster]
                row_h = inner.h / len(order)
                for row, neuron in enumerate(order):
                    marks.rows.append(
                        _matrix_row(layer, int(neuron), cluster, view.classes, top)
                        | box
                        | {"y": _px(inner.y + row * row_h), "y2": _px(inner.y + (row + 1) * row_h)}
                    )
    return marks


def packed_picture(
    squares: Sequence[tuple[Image.Image, tuple[float, float, float, float], float]],
    size: tuple[float, float],
    scale: float | None = None,
) -> Image.Image:
    """A cluster's packed patches as one picture of `size` (picture pixels) times about `scale`:
    each (patch, (x, y, w, h), opacity) resized into its square, a faded one (opacity < 1) blended
    with the white under it, white between them. A square's edges are rounded to whole pixels of
    the picture as drawn (its width over `size`), so that it sits under its clickable mark.

    `scale` defaults to PICTURE_SCALE, or less where the largest square would magnify its patch
    (the browser magnifies as well, from fewer bytes), but never under one pixel per picture
    pixel: a small square is as sharp as the screen shows it.
    """
    if scale is None:
        largest = max(max(w, h) for _, (_, _, w, h), _ in squares)
        detail = max(max(patch.size) for patch, _, _ in squares)
        scale = min(PICTURE_SCALE, max(1.0, detail / largest)) if largest > 0 else PICTURE_SCALE
    colour = any(patch.mode != "L" for patch, _, _ in squares)
    mode = "RGB" if colour else "L"
    white = (255, 255, 255) if colour else 255
    width, height = (max(1, int(np.ceil(side * scale))) for side in size)
    across, down = width / size[0], height / size[1]  # the scale the browser draws it at
    canvas = Image.new(mode, (width, height), white)
    for patch, (x, y, w, h), opacity in squares:
        left, top = round(x * across), round(y * down)
        right = max(round((x + w) * across), left + 1)
        bottom = max(round((y + h) * down), top + 1)
        tile = patch.convert(mode).resize((right - left, bottom - top), Image.Resampling.BILINEAR)
        if opacity < 1:
            tile = Image.blend(Image.new(mode, tile.size, white), tile, opacity)
        canvas.paste(tile, (left, top))
    return canvas


# Vega's "greys" colour scheme at 0, 0.1, ..., 1 (grey levels): the matrices' colours.
GREYS = np.array([226, 212, 196, 177, 157, 136, 117, 98, 77, 53, 30], dtype=np.float64)


def matrix_top(layer: LayerView) -> float:
    """The activation drawn darkest in a layer's matrices: its `MATRIX_TOP_PERCENTILE`, so that a
    few strong neurons do not leave every other row near white (on a projector: blank)."""
    return float(np.nanpercentile(layer.vectors, MATRIX_TOP_PERCENTILE)) or 1.0


def matrix_picture(layer: LayerView, cluster: int, top: float) -> Image.Image:
    """A cluster's activation matrix as a grey picture, a pixel per neuron (rows, in the cluster's
    order) and class (columns): the activation over `top` in `GREYS` (over 1: the darkest), a
    faded neuron's row blended with the white under it, a missing value white."""
    order = layer.orders[cluster]
    values = layer.vectors[order] / top
    shares = np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0)
    grey = np.interp(shares, np.linspace(0.0, 1.0, len(GREYS)), GREYS)
    opacity = np.where(layer.relevant[order], 1.0, FADED)[:, None]
    grey = np.where(np.isnan(values), 255.0, 255.0 - opacity * (255.0 - grey))
    return Image.fromarray(np.rint(grey).astype(np.uint8), mode="L")


def matrix_key_marks(view: CnnvisView, geometry: Geometry) -> Records:
    """Under each layer's activation matrices, the class number of every column (when columns
    are wide enough to read it); `matrix_key` names the numbers."""
    rows = []
    for node, layer in view.layers.items():
        if not layer.clusters.representatives or not view.classes:
            continue
        inner = _inner(geometry.clusters[(node, 0)])
        column = inner.w / len(view.classes)
        if column < MATRIX_KEY_COLUMN:
            continue
        for index, name in enumerate(view.classes):
            rows.append(
                {"x": inner.x + (index + 0.5) * column, "y": HEIGHT - 4, "text": str(index)}
                | {"class": name}
            )
    return rows


def matrix_key(classes: Sequence[str], line: int = MATRIX_KEY_LINE) -> list[str]:
    """The lines under the activations facet that name the matrices' columns, each at most
    `line` characters (a longer class name alone on its line), at most MATRIX_KEY_LINES lines."""
    lines = ["Matrix columns, left to right:"]
    for index, name in enumerate(classes):
        item = f"{index} {name}"
        if len(lines[-1]) + len(item) + 3 <= line:
            lines[-1] += f" {item}" if lines[-1].endswith(":") else f" · {item}"
        else:
            lines.append(item)
    if len(lines) > MATRIX_KEY_LINES:
        lines = lines[:MATRIX_KEY_LINES]
        lines[-1] += " …"
    return lines


def outline_marks(
    view: CnnvisView, geometry: Geometry, facet: str, highlight: Collection[tuple[str, int]]
) -> Records:
    """Frames around the highlighted (layer, neuron) pairs: each one's patch, or, in the
    activations facet (a view after `with_row_orders`), each run of adjacent highlighted rows of a
    matrix once. A row is a pixel or two high: a frame per row hid a cluster whose rows were all
    highlighted under a block of orange; now its matrix gets one frame."""
    chosen: dict[tuple[str, int], list[int]] = {}
    for node, neuron in sorted(highlight):
        layer = view.layers.get(node)
        if layer is not None and 0 <= neuron < layer.neurons:
            chosen.setdefault((node, int(layer.clusters.labels[neuron])), []).append(int(neuron))
    rows = []
    for (node, cluster), neurons in chosen.items():
        layer = view.layers[node]
        inner = _inner(geometry.clusters[(node, cluster)])
        if facet == "features":
            members = layer.clusters.representatives[cluster]
            rects = _packed(layer, members, inner)
            for neuron in neurons:
                x, y, w, h = rects[int(np.flatnonzero(members == neuron)[0])]
                rows.append(_frame(node, [neuron], inner.x + x, inner.y + y, max(w, 3), max(h, 3)))
            continue
        order = layer.orders[cluster]
        row_h = inner.h / len(order)
        position = {int(neuron): row for row, neuron in enumerate(order)}
        for run in _adjacent_runs(sorted(position[neuron] for neuron in neurons)):
            y = inner.y + run[0] * row_h
            rows.append(
                _frame(
                    node,
                    [int(order[i]) for i in run],
                    inner.x,
                    y,
                    inner.w,
                    max(len(run) * row_h, 2),
                )
            )
    return rows


def _adjacent_runs(positions: list[int]) -> list[list[int]]:
    """Sorted positions split where they are not adjacent: [1, 2, 3, 7, 8] -> [[1, 2, 3], [7, 8]]."""
    runs: list[list[int]] = []
    for position in positions:
        if runs and position == runs[-1][-1] + 1:
            runs[-1].append(position)
        else:
            runs.append([position])
    return runs


def _frame(node: str, neurons: list[int], x: float, y: float, w: float, h: float) -> dict:
    """A highlight frame one pixel outside the box (x, y, w, h) of `neurons` of `node`."""
    shown = ", ".join(map(str, neurons[:OUTLINE_NEURONS_NAMED]))
    if len(neurons) > OUTLINE_NEURONS_NAMED:
        shown += f", … ({len(neurons)} neurons)"
    return {
        "node": node,
        "neuron": neurons[0],
        "neurons": shown,
        "x": _px(x - 1),
        "x2": _px(x + w + 1),
        "y": _px(y - 1),
        "y2": _px(y + h + 1),
    }


def _inner(box: Box) -> Box:
    """The part of a cluster's rectangle under its label, where the facet is drawn."""
    return Box(box.x + 2, box.y + CLUSTER_LABEL, box.w - 4, max(box.h - CLUSTER_LABEL - 2, 4))


def _packed(layer: LayerView, members: np.ndarray, inner: Box) -> np.ndarray:
    """Pack a cluster's neurons, similar ones side by side (their similarity computed here: a
    view that kept every layer's (n, n) matrix held ~110 MB for EfficientNet-Lite0's default)."""
    similarity = neuron_similarity(layer.vectors[members])
    return pack_rectangles(layer.importance[members], inner.w, inner.h, similarity)


def _edge_description(style: dict) -> str:
    """A curve's label for screen readers: what its tooltip says (Vega-Lite's own label formats
    every field of every mark in the browser, and listed the coordinates of each point)."""
    return f"sign: {style['sign']}; strength: {style['strength']}"


def _px(value: float) -> float:
    """A position in the picture's pixels, to a hundredth: the same picture, and a spec that the
    server serialises and the browser parses on every click a fifth shorter (two expanded groups'
    matrices: 2.2 MB)."""
    return round(float(value), 2)


def _number(value: float) -> float | None:
    """A record's number as JSON holds it: a plain float, None (missing, to Vega) for NaN."""
    value = float(value)
    return None if np.isnan(value) else value


def _neuron_row(layer: LayerView, neuron: int, cluster: int, classes: list[str]) -> dict:
    best = int(np.argmax(layer.vectors[neuron])) if layer.vectors.shape[1] else 0
    return {
        "node": layer.node,
        "neuron": neuron,
        "cluster": cluster,
        "importance": _number(round(float(layer.importance[neuron]), 4)),
        "strongest class": classes[best] if classes else "",
        "opacity": 1.0 if layer.relevant[neuron] else FADED,
    }


def _matrix_row(
    layer: LayerView, neuron: int, cluster: int, classes: list[str], top: float
) -> dict:
    """A neuron's row over its cluster's matrix: what its tooltip and its label for screen readers
    say, its activations over `top` by class in the matrix's order."""
    row = _neuron_row(layer, neuron, cluster, classes)
    values = layer.vectors[neuron] / top
    row["activations"] = " ".join("–" if np.isnan(v) else f"{min(v, 1.0):.2f}" for v in values)
    return row


# A neuron mark's label for screen readers, made in the browser from the mark's fields: Vega-Lite's
# own formats every field of every mark; a label sent with each of EfficientNet-Lite0's 12,105
# neuron marks was a quarter of its picture's bytes (1 of 4.4 MB, docs/performance.md).
NEURON_LABEL = {
    "calculate": "'node: ' + datum.node + '; neuron: ' + datum.neuron + '; cluster: ' "
    "+ datum.cluster + '; strongest class: ' + datum['strongest class']",
    "as": "description",
}


def cluster_marks(view: CnnvisView, geometry: Geometry) -> Records:
    """One row per cluster rectangle, with its label and quality flags."""
    rows = []
    for node, layer in view.layers.items():
        impure = {p.cluster for p in layer.purity if p.impure}
        for cluster, members in enumerate(layer.clusters.representatives):
            box = geometry.clusters[(node, cluster)]
            purity = layer.purity[cluster]
            dead = int(np.isin(members, layer.dead).sum())
            # the cluster's number and size are in its tooltip: the label keeps to what a class
            # reads at a glance
            text = f"c{cluster} · {len(members)}"
            if purity.patches:
                text = f"{purity.share:.0%} {view.classes[purity.majority_class]}"
            if dead:
                text += f" · {dead} dead"
            rows.append(
                {
                    "node": node,
                    "cluster": cluster,
                    "x": box.x,
                    "x2": box.right,
                    "y": box.y,
                    "y2": box.y + box.h,
                    "label": text,
                    "label_x": box.x + LABEL_INSET,
                    "label_room": _label_room(geometry, box),
                    "label_y": box.y + 13,
                    "stroke": "#b35806" if cluster in impure else "#888888",
                    "dash": 4 if cluster in impure else 0,
                    "neurons": len(members),
                }
            )
    return rows


def column_marks(view: CnnvisView, geometry: Geometry) -> tuple[Records, Records]:
    """Collapsed groups (clickable rectangles) and the headers of every column (their `limit`s:
    `header_limits`). An expanded group's name leads its first column's header only, so that the
    others have their width for the layer's name."""
    groups, headers = [], []
    names = _layer_names(view)
    for group in view.groups:
        if group.expanded:
            for node in group.nodes:
                box = geometry.columns[node]
                neurons = view.layers[node].neurons
                text = f"{group.id} ▾ {names[node]}" if node == group.nodes[0] else names[node]
                headers.append(
                    {"group": group.id, "x": box.x, "y": 15, "text": text}
                    | {"sub": f"{neurons} neurons", "sub_y": 32, "layers": node}
                )
        else:
            box = geometry.columns[group.id]
            layers = ", ".join(names[n] for n in group.nodes)
            groups.append(
                {"group": group.id, "x": box.x, "x2": box.right, "y": box.y, "y2": box.y + box.h}
                | {"layers": layers}
            )
            headers.append(
                {"group": group.id, "x": box.x, "y": 15, "text": f"{group.id} ▸"}
                | {"sub": f"{len(group.nodes)} layer{'' if len(group.nodes) == 1 else 's'}"}
                | {"sub_y": 32, "layers": layers}
            )
    return groups, headers


def header_limits(headers: Records, scale: float, width: float) -> Records:
    """`headers` with the width each may take (`label_limit`, pixels of the picture as drawn, its
    positions times `scale`): up to the next column's header, or the picture's edge. The many
    narrow columns of a large group (EfficientNet-Lite0's g4 has 16 layers) drew their headers
    over each other; now Vega cuts them short, and their tooltips say them whole."""
    starts = sorted({row["x"] * scale for row in headers})
    limited = []
    for row in headers:
        start = row["x"] * scale
        end = next((x for x in starts if x > start), width)
        limited.append(
            row | {"label_limit": round(max(end - start - LABEL_INSET, MIN_LABEL_LIMIT), 1)}
        )
    return limited


def edge_marks(
    view: CnnvisView, geometry: Geometry, palette: tuple[str, str], show_weak: bool
) -> tuple[Records, Records]:
    """Bundled edges as curves through their bicluster's small rectangle, and those rectangles."""
    lines, nodes = [], []
    names = _layer_names(view)
    for pair, bundles in enumerate(view.bundles):
        source, target = geometry.columns[bundles.source], geometry.columns[bundles.target]
        middle = (source.right + target.x) / 2
        biclusters, height = _stacked(bundles, geometry)
        covered: set[tuple[int, int]] = set()
        for index, (bicluster, y) in enumerate(biclusters):
            key = f"{pair}:{index}"
            colour = palette[0] if bicluster.sign > 0 else palette[1]
            width = 1 + 5 * bicluster.strength / bundles.strongest
            debug = _number(bundles.debug[index]) if bundles.debug is not None else None
            style = {
                "colour": colour,
                "width": width,
                "opacity": 0.75,
                "debug": debug,
                "strength": round(float(bicluster.strength), 4),
                "sign": "positive" if bicluster.sign > 0 else "negative",
            }
            style["description"] = _edge_description(style)
            for cluster in bicluster.inputs:
                box = geometry.clusters[(bundles.source, cluster)]
                end = middle - BICLUSTER_WIDTH / 2
                lines.append(_line(f"{key}:i{cluster}", box.right, box.middle, end, y, style))
            for cluster in bicluster.outputs:
                box = geometry.clusters[(bundles.target, cluster)]
                start = middle + BICLUSTER_WIDTH / 2
                lines.append(_line(f"{key}:o{cluster}", start, y, box.x, box.middle, style))
            covered |= {(i, o) for i in bicluster.inputs for o in bicluster.outputs}
            edges = bicluster.n_positive + bicluster.n_negative
            green = height * bicluster.n_positive / max(edges, 1)
            top = y - height / 2
            described = _describe(bicluster, names[bundles.source], names[bundles.target])
            nodes.append(_rect(middle, top, top + green, palette[0], described))
            nodes.append(_rect(middle, top + green, top + height, palette[1], described))
        if show_weak:
            lines += _weak_lines(bundles, geometry, covered, palette, pair)
    return lines, nodes


def _stacked(bundles: Bundles, geometry: Geometry) -> tuple[list, float]:
    """Each bicluster with the height of its rectangle's middle: near the clusters it joins, in
    that order, without overlaps, within the picture (closer together when there are many)."""
    wanted = []
    for bicluster in bundles.biclusters:
        ys = [geometry.clusters[(bundles.source, c)].middle for c in bicluster.inputs]
        ys += [geometry.clusters[(bundles.target, c)].middle for c in bicluster.outputs]
        wanted.append(float(np.mean(ys)))
    count = len(wanted)
    step = min(BICLUSTER_HEIGHT + 4, (HEIGHT - HEADER - BICLUSTER_HEIGHT) / max(count - 1, 1))
    low, high = HEADER + BICLUSTER_HEIGHT / 2, HEIGHT - BICLUSTER_HEIGHT / 2
    placed: dict[int, float] = {}
    last = -np.inf
    for rank, index in enumerate(np.argsort(wanted, kind="stable")):
        # Leave room below for the biclusters still to come.
        y = min(max(wanted[index], last + step, low), high - step * (count - 1 - rank))
        placed[int(index)] = y
        last = y
    height = min(BICLUSTER_HEIGHT, max(step - 2, 3))
    return [(bundles.biclusters[i], placed[i]) for i in range(count)], height


def _line(key: str, x0: float, y0: float, x1: float, y1: float, style: dict) -> dict:
    """One curve, from (x0, y0) to (x1, y1), beside its `style` columns: the browser places its
    CURVE_POINTS points (`_curve_path`). A row per point repeated the style in every point, and
    lists of points do not travel as Arrow columns that Vega reads as arrays."""
    ends = {"x0": _px(x0), "y0": _px(y0), "x1": _px(x1), "y1": _px(y1)}
    return {"edge": key} | ends | style


def _curve_path(picture_width: float) -> str:
    """A Vega expression: a `_line` record's curve (`_curve` between its ends, a weighted sum of
    them at each point) as a GeoJSON LineString in the pixels of the picture as drawn, its x
    scaled as the page scales the picture's width (`width`, the drawn width, over
    `picture_width`) and its y as its height (`height` over HEIGHT)."""
    start_x, start_y = _curve(1.0, 1.0, 0.0, 0.0)  # each point's weights of the start
    end_x, end_y = _curve(0.0, 0.0, 1.0, 1.0)  # and of the end
    points = ", ".join(
        f"[({a:.6g} * datum.x0 + {b:.6g} * datum.x1) * width / {float(picture_width)!r}, "
        f"({c:.6g} * datum.y0 + {d:.6g} * datum.y1) * height / {HEIGHT}]"
        for a, b, c, d in zip(start_x, end_x, start_y, end_y, strict=True)
    )
    return f"{{type: 'LineString', coordinates: [{points}]}}"


def _describe(bicluster, source: str, target: str) -> str:
    """A bicluster's tooltip, its layers named as the columns' headers name them."""
    sign = "positive" if bicluster.sign > 0 else "negative"
    inputs = ", ".join(f"c{c}" for c in sorted(bicluster.inputs))
    outputs = ", ".join(f"c{c}" for c in sorted(bicluster.outputs))
    return (
        f"{source} {inputs} → {target} {outputs}: {sign}, "
        f"strength {bicluster.strength:.3g}, {bicluster.n_positive} positive / {bicluster.n_negative} negative edges"
    )


def _rect(middle: float, y: float, y2: float, colour: str, text: str) -> dict:
    half = BICLUSTER_WIDTH / 2
    return {
        "x": _px(middle - half),
        "x2": _px(middle + half),
        "y": _px(y),
        "y2": _px(y2),
        "colour": colour,
        "bicluster": text,
    }


def _weak_lines(
    bundles: Bundles, geometry: Geometry, covered: set, palette: tuple[str, str], pair: int
) -> list[dict]:
    lines = []
    for i in range(bundles.aggregated.shape[0]):
        for o in range(bundles.aggregated.shape[1]):
            if (i, o) in covered:
                continue
            positive, negative = bundles.aggregated[i, o]
            strength = max(positive, -negative)
            if strength <= 0:
                continue
            source, target = (
                geometry.clusters[(bundles.source, i)],
                geometry.clusters[(bundles.target, o)],
            )
            style = {
                "colour": palette[0] if positive >= -negative else palette[1],
                "width": 0.8,
                "opacity": 0.3,
                "debug": None,
                "strength": round(float(strength), 4),
                "sign": "weak",
            }
            style["description"] = _edge_description(style)
            key = f"{pair}:weak:{i}:{o}"
            lines.append(_line(key, source.right, source.middle, target.x, target.middle, style))
    return lines


def _label_room(geometry: Geometry, box: Box) -> float:
    """The width a cluster's label may take, in the picture's units: over its rectangle and the
    gap after it, up to the next column (or the picture's edge)."""
    following = [column.x for column in geometry.columns.values() if column.x > box.x]
    end = min(following, default=geometry.width - 10)
    return end - box.x - LABEL_INSET - LABEL_INSET


def _label_limit(room: float, geometry: Geometry, width: float) -> float:
    """Vega's `limit` of a cluster's label, in pixels, for its `room` (`label_room`). The page
    draws the picture about `width` pixels wide, so a picture laid out wider shrinks, and the
    room with it, while the text keeps its size; beyond it Vega cuts the text with an ellipsis."""
    shrink = min(1.0, width / geometry.width)
    return round(max(room * shrink, MIN_LABEL_LIMIT), 1)


X_FIELDS = ("x", "x2", "label_x", "x0", "x1")


def _stretched(marks: Records, scale: float) -> Records:
    """`marks` with their x positions (X_FIELDS) multiplied by `scale`."""
    return [
        row | {field: _px(row[field] * scale) for field in X_FIELDS if field in row}
        for row in marks
    ]


@dataclass(frozen=True)
class Picture:
    """The picture: a layered Vega-Lite spec whose layers name their data, and that data (records
    by name), joined in `to_dict` or sent beside it (`with_datasets`).

    Pictures of one model, facet and look share one spec whatever their expanded groups: every
    layer of the facet is there, empty or not, and the x axis spans the width the page is assumed
    to draw, the marks' positions stretched into it. A click on a group then changes only the
    data, and the page keeps its chart and replaces the data (Streamlit draws a chart anew only
    when its spec changes): docs/architecture.md.

    The spec is written here as Vega-Lite's JSON: Altair copied and checked every layer's objects
    while building, most of the time a picture took to draw (0.08 of 0.13 s on each click that
    draws one); `to_dict` checks it against Vega-Lite's schema where asked (the tests).
    """

    spec: dict
    marks: dict[str, Records]

    def to_dict(self, validate: bool = True) -> dict:
        """The Vega-Lite spec with each layer's marks inline (as the page and vl-convert take it);
        `validate` checks its structure against Vega-Lite's schema (the records are not part of
        it)."""
        if validate:
            alt.TopLevelLayerSpec.validate(self.spec)
        layers = [
            view | {"data": {"values": self.marks[view["data"]["name"]]}}
            for view in self.spec["layer"]
        ]
        return self.spec | {"layer": layers}

    def with_datasets(self) -> dict:
        """The Vega-Lite spec with the layers' data beside it, as named datasets."""
        return self.spec | {"datasets": dict(self.marks)}


def selection_names(spec: Mapping) -> list[str]:
    """The names of the click selections of a picture's Vega-Lite `spec` (Streamlit refuses a
    selection mode the chart lacks)."""
    return [param["name"] for param in spec.get("params", ()) if "select" in param]


TYPES = {"N": "nominal", "Q": "quantitative"}


def _channel(shorthand: str, **more: object) -> dict:
    """An encoding channel of a field, "name:N" (nominal) or "name:Q" (quantitative)."""
    name, _, kind = shorthand.rpartition(":")
    return {"field": name, "type": TYPES[kind], **more}


def _tooltips(*fields: str) -> list[dict]:
    return [_channel(field) for field in fields]


def _click(name: str, fields: list[str]) -> dict:
    """A point selection `name` of `fields` that a click sets and a double click clears; the
    group selection instead toggles the clicked group in or out (`"toggle": "true"`, an
    expression: Vega-Lite's `true` means with shift), so that every click on a group changes it,
    a second click on the same group too, while the chart stays."""
    if name == "group":
        return {"type": "point", "clear": False, "toggle": "true", "fields": fields, "on": "click"}
    return {"type": "point", "clear": "dblclick", "fields": fields, "on": "click"}


def draw(
    view: CnnvisView,
    patch: Patch,
    facet: str = "features",
    rank: int = 0,
    palette: str = "green / red",
    show_weak: bool = False,
    debug_title: str | None = None,
    width: float = PICTURE_WIDTH,
    highlight: Collection[tuple[str, int]] = (),
) -> Picture:
    """Return the whole picture; clicking a neuron selects `neuron`, clicking a group `group`.

    `patch(layer, neuron, rank)` returns a neuron's top patch number `rank` (`patch_crops`).
    With `debug_title` the edges are coloured by their bicluster's debugging value; the (layer,
    neuron) pairs of `highlight` are framed.
    """
    if facet not in FACETS:
        raise ValueError(f"Unknown facet '{facet}'; choose one of {', '.join(FACETS)}.")
    matrices = facet == "activations"
    if matrices:
        view = with_row_orders(view)
    geometry = layout(view, width, MATRIX_KEY if matrices else 0.0)
    colours = PALETTES[palette]
    x_scale = {"domain": [0, width], "nice": False, "zero": False}
    y_scale = {"domain": [HEIGHT, 0], "nice": False, "zero": False}

    def at(x: str = "x", y: str = "y") -> dict:
        return {
            "x": _channel(f"{x}:Q", scale=x_scale, axis=None),
            "y": _channel(f"{y}:Q", scale=y_scale, axis=None),
        }

    box = at() | {"x2": {"field": "x2"}, "y2": {"field": "y2"}}
    marks: dict[str, Records] = {}
    layers: list[dict] = []
    selections: dict[str, dict] = {}

    def add(
        name: str,
        records: Records,
        mark: dict,
        encoding: dict,
        click: tuple[str, list[str]] | None = None,
        transform: list[dict] | None = None,
        projection: dict | None = None,
    ) -> None:
        """A layer drawing `records` (the data `name`) as `mark`, also when there are none;
        `click` (a selection's name and fields) makes a click on a mark select those of its
        fields."""
        if name not in marks:  # a dataset two layers draw is stretched once
            marks[name] = _stretched(records, width / geometry.width)
        layer = {"data": {"name": name}, "mark": mark, "encoding": encoding}
        if transform:
            layer["transform"] = transform
        if projection:
            layer["projection"] = projection
        if click is not None and click[0] not in selections:
            # one view holds a selection; a click on any layer's mark reaches it
            layer["name"] = f"view_{name}"
            selections[click[0]] = {
                "name": click[0],
                "select": _click(*click),
                "views": [layer["name"]],
            }
        layers.append(layer)

    group_click = ("group", ["group"])
    neuron_click = ("neuron", ["node", "neuron"])
    groups, headers = column_marks(view, geometry)
    headers = header_limits(headers, width / geometry.width, width)
    add(
        "groups",
        groups,
        {"type": "rect", "cornerRadius": 4, "cursor": "pointer", "fill": "#eef1f6"}
        | {"stroke": "#8a94a6"},
        box | {"tooltip": _tooltips("group:N", "layers:N")},
        click=group_click,
    )
    add(
        "headers",
        headers,
        {"type": "text", "align": "left", "cursor": "pointer", "fontSize": FONT + 1}
        | {"fontWeight": "bold", "limit": {"expr": "datum.label_limit"}},
        at() | {"text": _channel("text:N"), "tooltip": _tooltips("group:N", "layers:N")},
        click=group_click,
    )
    add(
        "headers",
        headers,
        {"type": "text", "align": "left", "color": "#555", "fontSize": FONT - 1}
        | {"limit": {"expr": "datum.label_limit"}},
        at(y="sub_y") | {"text": _channel("sub:N")},
    )
    clusters = [
        row | {"label_limit": _label_limit(row["label_room"], geometry, width)}
        for row in cluster_marks(view, geometry)
    ]
    add(
        "clusters",
        clusters,
        {"type": "rect", "cornerRadius": 3, "fill": "white", "strokeWidth": 1.5}
        # a mark property: Vega-Lite drops a strokeDash channel on rect marks (with a warning)
        | {"strokeDash": {"expr": "datum.dash ? [datum.dash, 3] : []"}},
        box
        | {
            "stroke": _channel("stroke:N", scale=None),
            "tooltip": _tooltips("node:N", "cluster:Q", "neurons:Q", "label:N"),
        },
    )
    lines, bicluster_nodes = edge_marks(view, geometry, colours, show_weak)
    colour = (
        _channel(
            "debug:Q",
            scale={"scheme": "viridis"},
            title=debug_title,
            legend={"format": ".1e", "tickCount": 4, "gradientLength": 220},
        )
        if debug_title
        else _channel("colour:N", scale=None)
    )
    add(
        "lines",
        lines,
        {"type": "geoshape", "filled": False, "strokeCap": "round"},
        {
            "shape": {"field": "path", "type": "geojson"},
            "stroke": colour,
            "strokeWidth": _channel("width:Q", scale=None),
            "opacity": _channel("opacity:Q", scale=None),
            "tooltip": _tooltips("sign:N", "strength:Q", *(["debug:Q"] if debug_title else [])),
            "description": _channel("description:N"),
        },
        transform=[{"calculate": _curve_path(width), "as": "path"}],
        projection=SCREEN,
    )
    add(
        "biclusters",
        bicluster_nodes,
        {"type": "rect", "stroke": "#333", "strokeWidth": 0.5},
        box | {"color": _channel("colour:N", scale=None), "tooltip": _tooltips("bicluster:N")},
    )
    neurons = neuron_marks(view, geometry, facet, rank, patch)
    tooltip = _tooltips("node:N", "neuron:Q", "cluster:Q", "importance:Q", "strongest class:N")
    # a matrix's pixels stay sharp squares; packed patches are smoothed as photos are
    add(
        "pictures",
        neurons.pictures,
        {"type": "image", "aria": False, "aspect": False, "smooth": not matrices},
        box | {"url": _channel("url:N")},
    )
    # a transparent, clickable mark per neuron: its square (patches) or its matrix row (rows)
    if matrices:
        row_title = f"classes 0–{max(len(view.classes) - 1, 0)} (÷ {MATRIX_TOP_PERCENTILE}th pct)"
        tooltip = [*tooltip, _channel("activations:N", title=row_title)]
    add(
        "rows" if matrices else "patches",
        neurons.rows if matrices else neurons.patches,
        {"type": "rect", "cursor": "pointer", "fill": "white", "fillOpacity": 0},
        box | {"tooltip": tooltip, "description": _channel("description:N")},
        click=neuron_click,
        transform=[NEURON_LABEL],
    )
    if matrices:
        add(
            "key",
            matrix_key_marks(view, geometry),
            {"type": "text", "align": "center", "baseline": "bottom", "color": "#555"}
            | {"fontSize": FONT - 3},
            at() | {"text": _channel("text:N"), "tooltip": _tooltips("class:N")},
        )
    add(
        "outlines",
        outline_marks(view, geometry, facet, highlight),
        {"type": "rect", "fill": None, "stroke": HIGHLIGHT, "strokeWidth": 2.5},
        box | {"tooltip": _tooltips("node:N", "neurons:N")},
    )
    add(
        "clusters",
        clusters,
        {"type": "text", "align": "left", "color": "#333", "fontSize": FONT - 1}
        | {"limit": {"expr": "datum.label_limit"}},
        at("label_x", "label_y") | {"text": _channel("label:N")},
    )
    spec: dict = {
        "$schema": alt.SCHEMA_URL,
        "config": {
            "view": {"continuousWidth": 300, "continuousHeight": 300, "stroke": None},
            "legend": {"orient": "bottom"},
        },
        "layer": layers,
        "width": width,
        "height": HEIGHT,
        "resolve": {"scale": {"color": "independent"}},
    }
    if selections:
        spec["params"] = list(selections.values())
    if matrices and view.classes:
        spec["title"] = {
            "text": matrix_key(view.classes),
            "anchor": "start",
            "fontSize": FONT - 1,
            "fontWeight": "normal",
            "limit": MATRIX_KEY_PIXELS,
            "orient": "bottom",
        }
    return Picture(spec, marks)


def patch_crops(
    load: Callable[[int], Image.Image],
    transform: Callable,
    size: int = PATCH_PIXELS,
    context: bool = False,
) -> Patch:
    """Return `patch` for `draw`: a neuron's top patch `rank` cropped from the image as the model
    sees it and magnified to `size` (memoised: a redraw crops nothing twice); with `context`, a
    small patch is shown outlined in its surroundings (`patch_in_context`). An image's view is kept
    for the other neurons whose patches it holds (a first picture of fashion_basecnn_shallow's
    default groups: 378 patches from fewer images)."""
    cut = patch_in_context if context else crop_patch

    @functools.lru_cache(maxsize=INPUT_VIEWS)
    def seen(index: int) -> Image.Image:
        return input_view(transform, load(index))

    @functools.lru_cache(maxsize=8192)
    def crop(index: int, box: tuple[int, int, int, int]) -> Image.Image:
        return cut(seen(index), box, size)

    def patch(layer: LayerView, neuron: int, rank: int) -> Image.Image:
        rank = min(rank, layer.top_images.shape[1] - 1)
        box = tuple(int(v) for v in layer.top_boxes[neuron, rank])
        return crop(int(layer.top_images[neuron, rank]), box)

    return patch


def patch_images(
    load: Callable[[int], Image.Image],
    transform: Callable,
    size: int = PATCH_PIXELS,
    context: bool = False,
) -> Callable[[LayerView, int, int], str]:
    """`patch_crops` as PNG data URIs (the neuron dialog's images)."""
    patch = patch_crops(load, transform, size, context)
    return lambda layer, neuron, rank: png_url(png_bytes(patch(layer, neuron, rank)))
