"""Hierarchical rectangle packing of neurons' learned features (CNNVis section 6.2.1).

Each neuron's patch is a square whose area is proportional to its importance, the same factor
for all. The neurons are split recursively by modularity on their similarity graph until the
parts are small (step 1), a squarified treemap gives every part a cell (step 2) and a skyline
bottom-left packer places each part's squares in its cell (step 3), in place of the exact but
exponential packer of Huang and Korf that the paper cites.

One scale must fit every cell, so a part whose cell is roomy leaves space unused. The treemap is
therefore drawn again a few times with each part's cell weighted by the area it needed in the
last round, and the best round is kept. Finally the whole picture is scaled up until it touches
the bounds.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from dataclasses import dataclass

import numpy as np

from convlens.cnnvis.ordering import split_by_modularity
from convlens.lru import LRU

# Parts of at most this many neurons are packed directly. The paper's threshold is small because
# its exact packer is exponential; the skyline heuristic is not, and it packs 64 squares denser
# than 16 (coverage about 0.8 against 0.7 for 512 neurons).
PART_SIZE = 64
MAX_PARTS = 10  # children of one split, each a treemap cell
TREEMAP_ROUNDS = 4
STRIP_RANGE = (0.6, 1.7)  # strip widths tried, relative to the side of a perfect square fill
STRIP_TRIALS = 7  # in a first pass over the range, then as many around the best
# The strips tried lie on one geometric lattice per part (this many steps between neighbours of
# the first pass), so that a later treemap round, whose cell has a similar shape, finds most of
# its skylines packed already.
STRIP_STEPS = 4
STRIP_STEP = math.log(STRIP_RANGE[1] / STRIP_RANGE[0]) / ((STRIP_TRIALS - 1) * STRIP_STEPS)
EPS = 1e-9
# Packings and hierarchies remembered per process (`_PACKINGS`, `_HIERARCHIES`): a picture of
# EfficientNet-Lite0's default groups packs 128 clusters, whose hierarchies take ~2.5 s and
# skylines ~1.2 s on two cores, at every redraw until remembered (docs/performance.md, CNNVis).
REMEMBERED = 2048


def pack_rectangles(
    importance: np.ndarray, width: float, height: float, similarity: np.ndarray | None = None
) -> np.ndarray:
    """Return (n, 4) squares x, y, w, h (w == h) inside [0, width] x [0, height], one per neuron
    in input order, with areas proportional to `importance`.

    `similarity` (symmetric, non-negative, (n, n)) groups similar neurons in the same treemap
    cell; None packs all neurons as one part. A neuron of importance 0 gets a square of size 0.
    """
    importance = _checked_importance(importance)
    if not (width > 0 and height > 0 and math.isfinite(width) and math.isfinite(height)):
        raise ValueError(f"pack_rectangles needs a finite positive size, got {width} x {height}.")
    n = len(importance)
    if similarity is not None:
        similarity = np.asarray(similarity, dtype=np.float64)
        if similarity.shape != (n, n) or not np.isfinite(similarity).all():
            raise ValueError(f"similarity must be finite and ({n}, {n}), got {similarity.shape}.")
    if n == 0:
        return np.zeros((0, 4))
    key = _digest(importance, similarity, np.array([width, height]))
    return _PACKINGS.get(key, lambda: _packed(importance, width, height, similarity)).copy()


def _packed(
    importance: np.ndarray, width: float, height: float, similarity: np.ndarray | None
) -> np.ndarray:
    """`pack_rectangles` of checked, non-empty arguments."""
    n = len(importance)
    rects = np.zeros((n, 4))
    tree, parts = (
        _hierarchy(n, None)
        if similarity is None
        else _HIERARCHIES.get(_digest(similarity), lambda: _hierarchy(n, similarity))
    )
    # relative sides, the largest 1: the packer's tolerances are absolute
    sides = np.sqrt(importance / importance.max()) if importance.max() > 0 else importance
    demand = np.array([importance[part].sum() for part in parts])
    packers = [_PartPacker(sides[part]) for part in parts]
    best: tuple[float, list[_Cell], list[_Packing]] | None = None
    for _ in range(TREEMAP_ROUNDS):
        cells = _place(tree, demand, _Cell(0.0, 0.0, float(width), float(height)))
        packings = [packer.pack(cells[p]) for p, packer in enumerate(packers)]
        scales = np.array([packing.scale for packing in packings])
        positive = scales[scales > 0]  # a part of zero importance fits at any scale
        scale = float(positive.min()) if len(positive) else 0.0
        if best is None or scale > best[0]:
            best = (scale, cells, packings)
        if scale == 0 or len(parts) == 1:
            break
        # the area each part needs at the common scale, as next round's treemap weight
        areas = np.array([cell.area for cell in cells])
        demand = np.where(scales > 0, areas * (scale / np.maximum(scales, EPS)) ** 2, 0.0)
    scale, cells, packings = best
    for p, part in enumerate(parts):
        rects[part] = packings[p].placed(cells[p], scale)
    return _fill_bounds(rects, width, height)


def coverage(rects: np.ndarray, width: float, height: float) -> float:
    """Return the share of the bounds [0, width] x [0, height] that the rectangles cover.

    The bounds, not the rectangles' own bounding box, are the enclosing area: they are the space
    the view gives the neuron cluster. Assumes the rectangles do not overlap.
    """
    rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
    return float((rects[:, 2] * rects[:, 3]).sum() / (width * height))


def _checked_importance(importance: np.ndarray) -> np.ndarray:
    importance = np.asarray(importance, dtype=np.float64)
    if importance.ndim != 1:
        raise ValueError(f"importance must be 1-D, got shape {importance.shape}.")
    if not np.isfinite(importance).all() or (importance < 0).any():
        raise ValueError("importance must be finite and non-negative.")
    return importance


# --------------------------------------------------------------------------------------------
# Step 1: the hierarchy


Tree = int | list["Tree"]  # a part's number, or the subtrees of a split


def _hierarchy(n: int, similarity: np.ndarray | None) -> tuple[Tree, list[np.ndarray]]:
    """The tree of n neurons split by modularity on `similarity`, and its parts (leaves)."""
    parts: list[np.ndarray] = []
    return _split(np.arange(n), similarity, parts), parts


def _split(indices: np.ndarray, similarity: np.ndarray | None, parts: list[np.ndarray]) -> Tree:
    """Return the tree of `indices` split by modularity, appending its parts to `parts`."""
    if similarity is not None and len(indices) > PART_SIZE:
        split = split_by_modularity(similarity[np.ix_(indices, indices)], MAX_PARTS)
        if len(split) > 1:
            return [_split(indices[part], similarity, parts) for part in split]
    parts.append(indices)
    return len(parts) - 1


def _total_demand(tree: Tree, demand: np.ndarray) -> float:
    if isinstance(tree, int):
        return float(demand[tree])
    return sum(_total_demand(child, demand) for child in tree)


# --------------------------------------------------------------------------------------------
# Step 2: squarified treemap


@dataclass(frozen=True)
class _Cell:
    x: float
    y: float
    w: float
    h: float

    @property
    def area(self) -> float:
        return self.w * self.h

    @property
    def box(self) -> tuple[float, float, float, float]:
        return self.x, self.y, self.w, self.h


def _place(tree: Tree, demand: np.ndarray, cell: _Cell) -> list[_Cell]:
    """Return a cell per part, nested as the tree: each split's children share its cell."""
    cells = [cell] * len(demand)

    def place(subtree: Tree, within: _Cell) -> None:
        if isinstance(subtree, int):
            cells[subtree] = within
            return
        weights = np.array([_total_demand(child, demand) for child in subtree])
        for child, child_cell in zip(subtree, squarify(weights, *within.box), strict=True):
            place(child, _Cell(*child_cell))

    place(tree, cell)
    return cells


def squarify(
    weights: np.ndarray, x: float, y: float, w: float, h: float
) -> list[tuple[float, float, float, float]]:
    """Return a cell (x, y, w, h) per weight, in input order, tiling the rectangle with areas
    proportional to the weights and aspect ratios near 1 (Bruls et al.'s squarified treemap).

    A zero weight gets an empty cell at the rectangle's corner.
    """
    weights = np.asarray(weights, dtype=np.float64)
    cells = [(x, y, 0.0, 0.0)] * len(weights)
    total = weights.sum()
    if total <= 0:
        return cells
    order = [int(i) for i in np.argsort(-weights, kind="stable") if weights[i] > 0]
    areas = {i: weights[i] / total * w * h for i in order}
    while order:
        short = min(w, h)
        row = [order.pop(0)]
        while order and _worst(row + order[:1], areas, short) <= _worst(row, areas, short):
            row.append(order.pop(0))
        thickness = sum(areas[i] for i in row) / short if short > 0 else 0.0
        offset = 0.0
        for i in row:
            length = areas[i] / thickness if thickness > 0 else 0.0
            if w >= h:  # the row is a column along the left side
                cells[i] = (x, y + offset, thickness, length)
            else:  # the row runs along the top
                cells[i] = (x + offset, y, length, thickness)
            offset += length
        if w >= h:
            x, w = x + thickness, max(w - thickness, 0.0)
        else:
            y, h = y + thickness, max(h - thickness, 0.0)
    return cells


def _worst(row: list[int], areas: dict[int, float], short: float) -> float:
    """The largest aspect ratio of the row's cells when laid along a side of length `short`."""
    total = sum(areas[i] for i in row)
    if total <= 0 or short <= 0:
        return math.inf
    return max(max(short**2 * areas[i] / total**2, total**2 / (short**2 * areas[i])) for i in row)


# --------------------------------------------------------------------------------------------
# Step 3: packing a cell


@dataclass(frozen=True)
class _Packing:
    """Squares of side `sides` packed at scale 1 with their smallest x, y at `corners`, in a box
    of `extent` (w, h); `scale` is the largest factor at which the box fits the cell."""

    sides: np.ndarray
    corners: np.ndarray
    extent: tuple[float, float]
    scale: float

    def placed(self, cell: _Cell, scale: float) -> np.ndarray:
        """Return the squares at `scale`, their box centred in `cell`."""
        rects = np.zeros((len(self.sides), 4))
        left = cell.x + (cell.w - self.extent[0] * scale) / 2
        top = cell.y + (cell.h - self.extent[1] * scale) / 2
        rects[:, 0] = left + self.corners[:, 0] * scale
        rects[:, 1] = top + self.corners[:, 1] * scale
        rects[:, 2] = rects[:, 3] = self.sides * scale
        return rects


class _PartPacker:
    """Packs one part's squares of relative `sides` into a cell at the largest scale the strip
    widths tried allow; zero sides sit at the corner of the box. Its skylines are kept by their
    place on the strip lattice, for the treemap's later rounds."""

    def __init__(self, sides: np.ndarray) -> None:
        self.sides = sides
        self.order = [int(i) for i in np.argsort(-sides, kind="stable") if sides[i] > 0]
        self.ordered_sides = [float(sides[i]) for i in self.order]
        self.total = float((sides**2).sum())
        self.skylines: dict[int, tuple[np.ndarray, tuple[float, float]]] = {}

    def pack(self, cell: _Cell) -> _Packing:
        corners = np.zeros((len(self.sides), 2))
        if self.total <= 0 or cell.w <= 0 or cell.h <= 0:
            return _Packing(self.sides, corners, (0.0, 0.0), 0.0)
        # strip widths e^(k * STRIP_STEP); a perfect fill's is sqrt(total * w / h)
        ideal = 0.5 * math.log(self.total * cell.w / cell.h)
        low = round((ideal + math.log(STRIP_RANGE[0])) / STRIP_STEP)
        coarse = [low + STRIP_STEPS * i for i in range(STRIP_TRIALS)]

        def scale(k: int) -> float:
            extent = self._skyline(k)[1]
            return min(cell.w / extent[0], cell.h / extent[1])

        at = max(coarse, key=scale)
        fine = range(at - STRIP_STEPS + 1, at + STRIP_STEPS)
        best = max([*coarse, *fine], key=lambda k: (scale(k), -abs(k - at)))
        placed, extent = self._skyline(best)
        corners[self.order] = placed
        return _Packing(self.sides, corners, extent, scale(best))

    def _skyline(self, k: int) -> tuple[np.ndarray, tuple[float, float]]:
        """The squares packed in the strip of lattice place `k` (at least the widest square)."""
        if k not in self.skylines:
            strip = max(math.exp(k * STRIP_STEP), self.ordered_sides[0])
            self.skylines[k] = _skyline(self.ordered_sides, strip)
        return self.skylines[k]


def _skyline(sides: list[float], strip: float) -> tuple[np.ndarray, tuple[float, float]]:
    """Place squares (largest first) in a strip of width `strip`, each at the lowest, then
    leftmost, spot on the skyline; return their corners and the used (width, height)."""
    starts, heights = [0.0], [0.0]  # skyline segment i spans starts[i] .. starts[i + 1]
    corners = np.zeros((len(sides), 2))
    for index, side in enumerate(sides):
        best_x, best_y = 0.0, math.inf
        for i, x in enumerate(starts):
            if x + side > strip + EPS:
                break
            y = heights[i]
            if y >= best_y - EPS:  # cannot be lower than the best spot so far
                continue
            j = i + 1
            while j < len(starts) and starts[j] < x + side - EPS and y < best_y - EPS:
                y = max(y, heights[j])
                j += 1
            if y < best_y - EPS:
                best_x, best_y = x, y
        corners[index] = best_x, best_y
        _raise_skyline(starts, heights, best_x, side, best_y + side)
    ends = corners[:, 0] + np.asarray(sides)
    tops = corners[:, 1] + np.asarray(sides)
    return corners, (float(ends.max()), float(tops.max()))


def _raise_skyline(
    starts: list[float], heights: list[float], x: float, side: float, top: float
) -> None:
    """Set the skyline to `top` over [x, x + side] (x starts a segment), merging level
    neighbours."""
    end = x + side
    first = bisect.bisect_left(starts, x - EPS)
    after = bisect.bisect_left(starts, end - EPS, lo=first)  # first segment not covered
    new_starts, new_heights = [x], [top]
    if (starts[after] if after < len(starts) else math.inf) > end + EPS:
        new_starts.append(end)  # the last covered segment goes on past the square
        new_heights.append(heights[after - 1])
    starts[first:after] = new_starts
    heights[first:after] = new_heights
    if first > 0 and abs(heights[first - 1] - top) <= EPS:
        del starts[first], heights[first]
        first -= 1
    if first + 1 < len(starts) and abs(heights[first + 1] - top) <= EPS:
        del starts[first + 1], heights[first + 1]


# --------------------------------------------------------------------------------------------
# Remembered results


def _digest(*arrays: np.ndarray | None) -> bytes:
    """The key of a pure function's result: a digest of its arrays' shapes and bytes (not the
    bytes themselves: a 1,152-neuron similarity is 10 MB)."""
    digest = hashlib.blake2b(digest_size=20)
    for array in arrays:
        if array is None:
            digest.update(b"none")
            continue
        array = np.ascontiguousarray(array, dtype=np.float64)
        digest.update(repr(array.shape).encode())
        digest.update(array.tobytes())
    return digest.digest()


# Shared by the threads of a server: a redraw of the same clusters (another patch rank or palette,
# a highlighted neuron, another group expanded beside them) neither splits nor packs them again.
_HIERARCHIES: LRU[tuple[Tree, list[np.ndarray]]] = LRU(REMEMBERED)
_PACKINGS: LRU[np.ndarray] = LRU(REMEMBERED)


def forget_remembered() -> None:
    """Drop the remembered packings and hierarchies (a benchmark times their computation)."""
    _HIERARCHIES.clear()
    _PACKINGS.clear()


# --------------------------------------------------------------------------------------------


def _fill_bounds(rects: np.ndarray, width: float, height: float) -> np.ndarray:
    """Scale the squares uniformly (and centre them) so that their bounding box touches the
    bounds; keeps them disjoint and their areas proportional. Empty squares stay in the bounds."""
    sized = rects[:, 2] > 0
    if not sized.any():
        return rects
    low = rects[sized, :2].min(axis=0)
    high = (rects[sized, :2] + rects[sized, 2:]).max(axis=0)
    factor = min(width / (high[0] - low[0]), height / (high[1] - low[1]))
    margin = (np.array([width, height]) - (high - low) * factor) / 2
    out = rects.copy()
    out[:, :2] = (rects[:, :2] - low) * factor + margin
    out[:, 2:] = rects[:, 2:] * factor
    out[:, 0] = np.clip(out[:, 0], 0.0, width - out[:, 2])
    out[:, 1] = np.clip(out[:, 1], 0.0, height - out[:, 3])
    return out
