"""The three algorithms of CNNVis section 6: row reordering (brute force and planted blocks),
hierarchical rectangle packing (geometry and planted communities) and biclustering-based edge
bundling (planted biclusters and a brute-force reference)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.cluster.hierarchy import leaves_list, linkage, optimal_leaf_ordering

from convlens.cnnvis import Bicluster, bundle_edges, pack_rectangles, packing, reorder_rows
from convlens.cnnvis.bundling import aggregate_edges
from convlens.cnnvis.ordering import adjacent_similarity, cosine_similarity, split_by_modularity
from convlens.cnnvis.packing import coverage, squarify
from convlens.lru import LRU

# --------------------------------------------------------------------------------------------
# Row reordering


def brute_force_best(matrix: np.ndarray) -> float:
    """The best adjacent similarity over all permutations of the rows."""
    n = len(matrix)
    if n < 2:
        return 0.0
    similarity = cosine_similarity(matrix)
    orders = np.array(list(itertools.permutations(range(n))))
    return float(similarity[orders[:, :-1], orders[:, 1:]].sum(axis=1).max())


def planted_blocks(
    seed: int, sizes: tuple[int, ...], columns: int = 10, noise: float = 0.15
) -> tuple[np.ndarray, np.ndarray]:
    """Rows drawn around one non-negative prototype per block, shuffled; returns (rows, block)."""
    rng = np.random.default_rng(seed)
    prototypes = rng.random((len(sizes), columns)) ** 4
    block = np.repeat(np.arange(len(sizes)), sizes)
    rows = prototypes[block] + noise * rng.random((len(block), columns)) * prototypes.mean()
    shuffle = rng.permutation(len(block))
    return rows[shuffle], block[shuffle]


def test_adjacent_similarity_by_hand() -> None:
    matrix = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    assert adjacent_similarity(matrix, [0, 1, 2]) == pytest.approx(math.sqrt(2))
    assert adjacent_similarity(matrix, [0, 2, 1]) == pytest.approx(1 / math.sqrt(2))
    assert adjacent_similarity(matrix, [0, 3, 2]) == 0.0  # a zero row is 0 with every row
    assert adjacent_similarity(matrix, [2]) == 0.0


def test_reorder_rows_by_hand() -> None:
    # a chain of 30-degree steps (0, 30, 60, 90 degrees), given shuffled
    angles = np.radians([90, 0, 60, 30])
    matrix = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    order = reorder_rows(matrix)
    assert order.tolist() in ([1, 3, 2, 0], [0, 2, 3, 1])
    assert adjacent_similarity(matrix, order) == pytest.approx(3 * math.cos(math.radians(30)))


@pytest.mark.parametrize("n", range(1, 9))
@pytest.mark.parametrize("seed", range(3))
def test_held_karp_equals_brute_force(n: int, seed: int) -> None:
    rng = np.random.default_rng(100 * n + seed)
    matrix = rng.normal(size=(n, 5))
    if n >= 3:
        matrix[rng.choice(n, size=n // 3, replace=False)] = 0.0  # zero rows
    order = reorder_rows(matrix)
    assert sorted(order.tolist()) == list(range(n))
    assert adjacent_similarity(matrix, order) == pytest.approx(brute_force_best(matrix), abs=1e-9)


def test_reorder_rows_edge_cases() -> None:
    assert reorder_rows(np.zeros((0, 3))).tolist() == []
    assert reorder_rows(np.ones((1, 3))).tolist() == [0]
    for n in (11, 40):  # all rows zero, and NaN columns: a permutation all the same
        assert sorted(reorder_rows(np.zeros((n, 4))).tolist()) == list(range(n))
        matrix = np.random.default_rng(n).random((n, 4))
        matrix[:, 1] = np.nan
        assert sorted(reorder_rows(matrix).tolist()) == list(range(n))
    with pytest.raises(ValueError):
        reorder_rows(np.zeros(5))


def test_reorder_rows_is_deterministic() -> None:
    rows, _ = planted_blocks(7, (30, 25, 40, 12, 20))
    assert np.array_equal(reorder_rows(rows), reorder_rows(rows))


@pytest.mark.parametrize("seed", range(4))
def test_divide_and_conquer_beats_scipy_and_recovers_blocks(seed: int) -> None:
    sizes = tuple(np.random.default_rng(seed).integers(8, 40, size=6).tolist())
    rows, block = planted_blocks(seed, sizes)
    order = reorder_rows(rows)
    assert sorted(order.tolist()) == list(range(len(rows)))
    scipy_order = leaves_list(
        optimal_leaf_ordering(linkage(rows, "average", metric="cosine"), rows, metric="cosine")
    )
    assert adjacent_similarity(rows, order) >= adjacent_similarity(rows, scipy_order) - 1e-9
    # each block is one run of the order
    runs = 1 + np.count_nonzero(np.diff(block[order]))
    assert runs == len(sizes)


def test_divide_and_conquer_ends_in_a_two_opt_optimum() -> None:
    rows = np.random.default_rng(3).random((40, 6)) ** 3
    order = reorder_rows(rows, exact_limit=6)
    best = adjacent_similarity(rows, order)
    for first, last in itertools.combinations(range(len(order)), 2):
        reversed_order = order.copy()
        reversed_order[first : last + 1] = order[first : last + 1][::-1]
        assert adjacent_similarity(rows, reversed_order) <= best + 1e-9


def test_divide_and_conquer_finds_the_optimum_of_clear_blocks() -> None:
    rows, _ = planted_blocks(11, (3, 3, 2), noise=0.01)
    order = reorder_rows(rows, exact_limit=3)
    assert adjacent_similarity(rows, order) == pytest.approx(brute_force_best(rows), abs=1e-6)


# --------------------------------------------------------------------------------------------
# Rectangle packing


def assert_valid_packing(
    rects: np.ndarray, importance: np.ndarray, width: float, height: float
) -> None:
    """Squares, inside the bounds, pairwise disjoint, areas proportional to importance."""
    assert rects.shape == (len(importance), 4)
    assert np.isfinite(rects).all()
    x, y, w, h = rects.T
    assert np.array_equal(w, h)
    tolerance = 1e-9 * max(width, height)
    assert (x >= -tolerance).all() and (y >= -tolerance).all()
    assert (x + w <= width + tolerance).all() and (y + h <= height + tolerance).all()
    overlap_x = np.minimum((x + w)[:, None], (x + w)[None]) - np.maximum(x[:, None], x[None])
    overlap_y = np.minimum((y + h)[:, None], (y + h)[None]) - np.maximum(y[:, None], y[None])
    overlap = np.clip(overlap_x, 0, None) * np.clip(overlap_y, 0, None)
    np.fill_diagonal(overlap, 0.0)
    assert overlap.max(initial=0.0) <= 1e-9 * width * height
    positive = importance > 0
    assert (w[~positive] == 0).all()
    if positive.any():
        ratio = w[positive] ** 2 / importance[positive]
        assert ratio == pytest.approx(np.full(positive.sum(), ratio[0]), rel=1e-9)


def community_similarity(labels: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.random((len(labels), len(labels))) * 0.05
    similarity = (labels[:, None] == labels[None, :]) * 0.9 + (noise + noise.T) / 2
    return similarity


def test_packing_by_hand() -> None:
    # one square fills the short side; two equal squares fill a 2:1 box exactly
    one = pack_rectangles(np.array([3.0]), 4.0, 2.0)
    assert one[0, 2] == pytest.approx(2.0)
    assert coverage(one, 4.0, 2.0) == pytest.approx(0.5)
    two = pack_rectangles(np.array([1.0, 1.0]), 4.0, 2.0)
    assert two[:, 2] == pytest.approx([2.0, 2.0])
    assert coverage(two, 4.0, 2.0) == pytest.approx(1.0)
    # four equal squares tile a square
    four = pack_rectangles(np.ones(4), 10.0, 10.0)
    assert four[:, 2] == pytest.approx(np.full(4, 5.0))
    assert coverage(four, 10.0, 10.0) == pytest.approx(1.0)


def test_coverage_by_hand() -> None:
    rects = np.array([[0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 2.0, 2.0]])
    assert coverage(rects, 4.0, 2.0) == pytest.approx(5 / 8)
    assert coverage(np.zeros((0, 4)), 4.0, 2.0) == 0.0


@pytest.mark.parametrize("n", [1, 2, 7, 60, 200])
@pytest.mark.parametrize("bounds", [(400.0, 300.0), (90.0, 600.0)])
@pytest.mark.parametrize("with_similarity", [False, True])
def test_packing_geometry(n: int, bounds: tuple[float, float], with_similarity: bool) -> None:
    rng = np.random.default_rng(n)
    importance = rng.gamma(2.0, size=n)
    importance[rng.random(n) < 0.1] = 0.0
    similarity = community_similarity(rng.integers(0, 4, n), n) if with_similarity else None
    rects = pack_rectangles(importance, *bounds, similarity)
    assert_valid_packing(rects, importance, *bounds)
    if n > 2:
        assert coverage(rects, *bounds) > 0.6


def test_packing_zero_importance() -> None:
    rects = pack_rectangles(np.zeros(5), 10.0, 20.0)
    assert_valid_packing(rects, np.zeros(5), 10.0, 20.0)
    assert coverage(rects, 10.0, 20.0) == 0.0
    assert pack_rectangles(np.zeros(0), 10.0, 20.0).shape == (0, 4)


def test_packing_keeps_planted_communities_together() -> None:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 5, 300)
    importance = rng.gamma(2.0, size=300)
    rects = pack_rectangles(importance, 400.0, 300.0, community_similarity(labels, 5))
    assert_valid_packing(rects, importance, 400.0, 300.0)
    assert coverage(rects, 400.0, 300.0) > 0.65
    centres = rects[:, :2] + rects[:, 2:] / 2
    for label in range(5):
        inside = labels == label
        low = rects[inside, :2].min(axis=0)
        high = (rects[inside, :2] + rects[inside, 2:]).max(axis=0)
        others = centres[~inside]
        within = ((others > low) & (others < high)).all(axis=1)
        assert not within.any(), f"community {label} shares its region"


def test_packing_is_remembered_by_its_arguments_and_equals_a_fresh_one(monkeypatch) -> None:
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 3, 150)
    importance = rng.gamma(2.0, size=150)
    similarity = community_similarity(labels, 150)
    fresh = packing._packed(importance, 300.0, 200.0, similarity)
    monkeypatch.setattr(packing, "_HIERARCHIES", LRU(packing.REMEMBERED))  # nothing remembered yet
    monkeypatch.setattr(packing, "_PACKINGS", LRU(packing.REMEMBERED))
    splits, cells = [], []
    monkeypatch.setattr(packing, "_hierarchy", counted(packing._hierarchy, splits))
    monkeypatch.setattr(packing, "_skyline", counted(packing._skyline, cells))

    first = pack_rectangles(importance, 300.0, 200.0, similarity)
    assert first == pytest.approx(fresh)
    assert len(splits) == 1 and cells
    first[:] = -1.0  # a caller's change does not reach the remembered packing
    packed_cells = len(cells)
    again = pack_rectangles(importance.copy(), 300.0, 200.0, similarity.copy())
    assert again == pytest.approx(fresh)
    assert len(splits) == 1 and len(cells) == packed_cells  # neither split nor packed again

    # another size packs again on the same hierarchy; other neurons split anew
    wider = pack_rectangles(importance, 450.0, 200.0, similarity)
    assert len(splits) == 1 and len(cells) > packed_cells
    assert wider == pytest.approx(packing._packed(importance, 450.0, 200.0, similarity))
    other = community_similarity(rng.integers(0, 3, 150), 150)
    pack_rectangles(importance, 300.0, 200.0, other)
    assert len(splits) == 2
    heavier = importance * np.linspace(1.0, 2.0, 150)
    assert pack_rectangles(heavier, 300.0, 200.0, similarity) == pytest.approx(
        packing._packed(heavier, 300.0, 200.0, similarity)
    )


def counted(function, calls: list):
    def wrapper(*args, **kwargs):
        calls.append(args)
        return function(*args, **kwargs)

    return wrapper


def test_a_part_packs_each_strip_once_and_as_a_fresh_packer_would(monkeypatch) -> None:
    sides = np.sqrt(np.random.default_rng(3).gamma(2.0, size=50))
    packer = packing._PartPacker(sides)
    cells = [packing._Cell(0.0, 0.0, 100.0, 60.0), packing._Cell(5.0, 0.0, 96.0, 64.0)]
    packed_strips = []
    for cell in cells:
        packed = packer.pack(cell)
        fresh = packing._PartPacker(sides).pack(cell)
        assert packed.scale == fresh.scale and packed.extent == fresh.extent
        assert np.array_equal(packed.corners, fresh.corners)
        packed_strips.append(len(packer.skylines))
    # a first pass and a finer one around its best; a cell of nearly the same shape reuses most
    assert packed_strips[0] == 2 * packing.STRIP_TRIALS - 1
    assert packed_strips[1] - packed_strips[0] < packed_strips[0] / 2
    skylines: list = []
    monkeypatch.setattr(packing, "_skyline", counted(packing._skyline, skylines))
    packer.pack(cells[0])
    assert skylines == []


def with_dead_rows(similarity: np.ndarray, dead: np.ndarray) -> np.ndarray:
    """`similarity` with rows `dead` similar to no row (a dead neuron's zero vector)."""
    similarity = similarity.copy()
    similarity[dead, :] = 0.0
    similarity[:, dead] = 0.0
    return similarity


def test_rows_similar_to_none_are_one_part_of_a_modularity_split() -> None:
    rng = np.random.default_rng(8)
    labels = rng.integers(0, 4, 200)
    dead = np.sort(rng.choice(200, 30, replace=False))
    parts = split_by_modularity(with_dead_rows(community_similarity(labels, 8), dead), 10)
    assert len(parts) <= 10
    assert sorted(np.concatenate(parts).tolist()) == list(range(200))
    assert any(np.array_equal(part, dead) for part in parts)
    for part in parts:
        if not np.array_equal(part, dead):  # the planted communities are not cut
            assert len(set(labels[part])) == 1 and not set(part) & set(dead)
    assert [len(part) for part in split_by_modularity(np.zeros((5, 5)), 3)] == [5]


def test_a_hierarchy_splits_off_dead_neurons_once(monkeypatch) -> None:
    """800 neurons, 90 of them dead: a split that made each dead neuron a part of one took off a
    few at a time, and the next split ran on the ~790 rows left."""
    rng = np.random.default_rng(9)
    labels = rng.integers(0, 6, 800)
    dead = rng.choice(800, 90, replace=False)
    similarity = with_dead_rows(community_similarity(labels, 9), dead)
    splits: list = []
    monkeypatch.setattr(packing, "split_by_modularity", counted(split_by_modularity, splits))
    _, parts = packing._hierarchy(800, similarity)
    assert sorted(np.concatenate(parts).tolist()) == list(range(800))
    assert max(len(args[0]) for args in splits[1:]) < 400  # no chain of splits of ~800 rows
    assert len(splits) < 30


def test_packing_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        pack_rectangles(np.array([1.0, -1.0]), 10.0, 10.0)
    with pytest.raises(ValueError):
        pack_rectangles(np.array([1.0, np.nan]), 10.0, 10.0)
    with pytest.raises(ValueError):
        pack_rectangles(np.ones(3), 10.0, 10.0, np.ones((2, 2)))
    with pytest.raises(ValueError):
        pack_rectangles(np.ones(3), 0.0, 10.0)


def test_squarify_tiles_the_rectangle() -> None:
    weights = np.array([6.0, 6.0, 4.0, 3.0, 2.0, 2.0, 1.0, 0.0])
    cells = np.array(squarify(weights, 1.0, 2.0, 6.0, 4.0))
    areas = cells[:, 2] * cells[:, 3]
    assert areas == pytest.approx(weights / weights.sum() * 24.0)
    assert (cells[:, 0] >= 1.0 - 1e-9).all() and (cells[:, 0] + cells[:, 2] <= 7.0 + 1e-9).all()
    assert (cells[:, 1] >= 2.0 - 1e-9).all() and (cells[:, 1] + cells[:, 3] <= 6.0 + 1e-9).all()
    # the first two cells of Bruls et al.'s example: two 3 x 2 halves of the left column
    assert cells[0] == pytest.approx([1.0, 2.0, 3.0, 2.0])
    assert cells[1] == pytest.approx([1.0, 4.0, 3.0, 2.0])


# --------------------------------------------------------------------------------------------
# Edge bundling


def reference_rounds(
    weights: np.ndarray, in_labels: np.ndarray, out_labels: np.ndarray, tau: float, threshold: float
) -> list[tuple[int, np.ndarray, list[tuple[frozenset, frozenset]]]]:
    """Section 6.3 by brute force: per round (sign, selected (out, in) matrix, closed sets)."""
    ins, outs = np.unique(in_labels), np.unique(out_labels)
    strength = np.zeros((2, len(outs), len(ins)))
    present = np.zeros((2, len(outs), len(ins)), dtype=bool)
    for row, out in enumerate(outs):
        for column, label in enumerate(ins):
            block = weights[np.ix_(out_labels == out, in_labels == label)]
            for side, values in enumerate((block[block > 0], -block[block < 0])):
                if len(values):
                    strength[side, row, column] = values.mean()
                    present[side, row, column] = True
    rounds = []
    while present.any():
        w_max = strength[present].max()
        if w_max < threshold:
            break
        side = 0 if (present[0] & (strength[0] == w_max)).any() else 1
        selected = present[side] & (w_max - strength[side] <= tau)
        closed = set()
        for size in range(1, len(outs) + 1):
            for rows in itertools.combinations(range(len(outs)), size):
                columns = np.flatnonzero(selected[list(rows)].all(axis=0))
                if len(columns) == 0:
                    continue
                closure = np.flatnonzero(selected[:, columns].all(axis=1))
                if list(closure) == list(rows):
                    closed.add(
                        (frozenset(ins[columns].tolist()), frozenset(outs[closure].tolist()))
                    )
        rounds.append((1 if side == 0 else -1, selected, sorted(closed, key=str)))
        present[side] &= ~selected
    return rounds


def planted_weights(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """8 neurons per cluster, 6 input and 5 output clusters, weak noise everywhere; returns
    (weights, in_labels, out_labels)."""
    rng = np.random.default_rng(seed)
    in_labels = np.repeat(np.arange(6), 8)
    out_labels = np.repeat(np.arange(5), 8)
    weights = rng.normal(scale=0.03, size=(len(out_labels), len(in_labels)))
    return weights, in_labels, out_labels


def set_block(weights, in_labels, out_labels, inputs, outputs, value) -> None:
    rows = np.isin(out_labels, outputs)
    columns = np.isin(in_labels, inputs)
    weights[np.ix_(rows, columns)] = value


def test_aggregate_edges_by_hand() -> None:
    weights = np.array([[1.0, -2.0, 3.0], [0.0, 4.0, -6.0]])
    edges = aggregate_edges(weights, np.array([7, 7, 9]), np.array([0, 1]))
    assert edges.in_clusters.tolist() == [7, 9] and edges.out_clusters.tolist() == [0, 1]
    assert edges.positive.tolist() == [[1.0, 3.0], [4.0, 0.0]]
    assert edges.negative.tolist() == [[-2.0, 0.0], [0.0, -6.0]]
    assert edges.n_positive.tolist() == [[1, 1], [1, 0]]
    assert edges.n_negative.tolist() == [[1, 0], [0, 1]]


def test_bundle_edges_by_hand() -> None:
    # input clusters 7, 9; output clusters 0, 1 (one neuron each but cluster 7 with two)
    weights = np.array([[1.0, -2.0, 3.0], [0.0, 4.0, -6.0]])
    found = bundle_edges(weights, np.array([7, 7, 9]), np.array([0, 1]), tau=0.5, threshold=2.5)
    # round 1: w_max = 6 (negative 1 <- 9); round 2: w_max = 4 (positive 1 <- 7);
    # round 3: w_max = 3 (positive 0 <- 9); then 2 and 1 are under the threshold
    assert found == [
        Bicluster(frozenset({9}), frozenset({1}), -1, 6.0, 0, 1),
        Bicluster(frozenset({7}), frozenset({1}), 1, 4.0, 1, 0),
        Bicluster(frozenset({9}), frozenset({0}), 1, 3.0, 1, 0),
    ]
    # a wider tau selects 1 <- 7 and 0 <- 9 in one round: two bicliques, not one
    wide = bundle_edges(weights, np.array([7, 7, 9]), np.array([0, 1]), tau=1.5, threshold=2.5)
    assert [(b.inputs, b.outputs, b.sign) for b in wide] == [
        (frozenset({9}), frozenset({1}), -1),
        (frozenset({9}), frozenset({0}), 1),
        (frozenset({7}), frozenset({1}), 1),
    ]


def test_bundle_edges_recovers_planted_biclusters() -> None:
    weights, in_labels, out_labels = planted_weights(1)
    set_block(weights, in_labels, out_labels, [0, 1, 2], [0, 1], 1.0)
    set_block(weights, in_labels, out_labels, [3, 4], [2, 3, 4], -0.8)
    set_block(weights, in_labels, out_labels, [5], [0, 4], 0.5)
    found = bundle_edges(weights, in_labels, out_labels, tau=0.1, threshold=0.3)
    assert [(b.inputs, b.outputs, b.sign) for b in found] == [
        (frozenset({0, 1, 2}), frozenset({0, 1}), 1),
        (frozenset({3, 4}), frozenset({2, 3, 4}), -1),
        (frozenset({5}), frozenset({0, 4}), 1),
    ]
    assert [b.strength for b in found] == pytest.approx([1.0, 0.8, 0.5])
    assert found[0].n_positive == 3 * 2 * 64 and found[0].n_negative == 0


@pytest.mark.parametrize("seed", range(6))
def test_bundle_edges_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    in_labels = rng.integers(0, 5, 40)
    out_labels = rng.integers(0, 4, 30)
    weights = rng.normal(size=(30, 40)) * rng.random((30, 1)) * rng.random((1, 40))
    weights[rng.random(weights.shape) < 0.2] = 0.0
    tau, threshold = 0.1, 0.15
    found = bundle_edges(weights, in_labels, out_labels, tau, threshold)
    rounds = reference_rounds(weights, in_labels, out_labels, tau, threshold)
    expected = [(inputs, outputs, sign) for sign, _, closed in rounds for inputs, outputs in closed]
    assert sorted(((b.inputs, b.outputs, b.sign) for b in found), key=str) == sorted(
        expected, key=str
    )
    ins, outs = np.unique(in_labels), np.unique(out_labels)
    for bicluster in found:
        rows = np.isin(out_labels, list(bicluster.outputs))
        columns = np.isin(in_labels, list(bicluster.inputs))
        block = weights[np.ix_(rows, columns)]
        assert bicluster.n_positive == np.count_nonzero(block > 0)
        assert bicluster.n_negative == np.count_nonzero(block < 0)
        assert bicluster.strength >= threshold - tau
    first = 0
    for sign, selected, closed in rounds:  # bundle_edges returns the biclusters round by round
        ours = found[first : first + len(closed)]
        first += len(closed)
        assert all(b.sign == sign for b in ours)
        for row, column in zip(*np.nonzero(selected), strict=True):  # every selected edge covered
            assert any(ins[column] in b.inputs and outs[row] in b.outputs for b in ours)
        for bicluster in ours:
            rows = np.isin(outs, list(bicluster.outputs))
            columns = np.isin(ins, list(bicluster.inputs))
            assert selected[np.ix_(rows, columns)].all()
            # closed: no cluster can join either side with all its edges selected
            assert not (selected[:, columns].all(axis=1) & ~rows).any()
            assert not (selected[rows].all(axis=0) & ~columns).any()
    assert first == len(found)


def test_bundle_edges_threshold_stops_it() -> None:
    weights, in_labels, out_labels = planted_weights(2)
    set_block(weights, in_labels, out_labels, [0], [0], 1.0)
    set_block(weights, in_labels, out_labels, [1], [1], -0.6)
    assert bundle_edges(weights, in_labels, out_labels, tau=0.05, threshold=1.5) == []
    strong = bundle_edges(weights, in_labels, out_labels, tau=0.05, threshold=0.7)
    assert [(b.inputs, b.outputs, b.sign) for b in strong] == [(frozenset({0}), frozenset({0}), 1)]
    everything = bundle_edges(weights, in_labels, out_labels, tau=0.05, threshold=0.0)
    covered = {(i, o, b.sign) for b in everything for i in b.inputs for o in b.outputs}
    # every cluster pair, positive and negative, but the planted blocks have one sign only
    assert len(covered) == 2 * 6 * 5 - 2
    assert bundle_edges(np.zeros((3, 4)), np.arange(4), np.arange(3), 0.1, 0.0) == []


def test_bundle_edges_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        bundle_edges(np.zeros((3, 4)), np.arange(3), np.arange(3), 0.1, 0.1)
    with pytest.raises(ValueError):
        bundle_edges(np.zeros((3, 4)), np.arange(4), np.arange(3), -0.1, 0.1)
