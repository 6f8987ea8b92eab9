"""CNNVis pipeline: clustering, importance, quality flags, edges, contribution, debugging
information and the assembled view, on hand-made arrays, a tiny net and a shipped model."""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import vl_convert
from PIL import Image
from torch import nn

from convlens.activations import SHIPPED_DATA, analyze, open_source
from convlens.cnnvis.debugging import bicluster_values, layer_average, run_layer_averages, stats_key
from convlens.cnnvis.drawing import (
    CURVE_POINTS,
    FACETS,
    FADED,
    MATRIX_KEY,
    MIN_LABEL_LIMIT,
    OUTLINE_NEURONS_NAMED,
    PICTURE_WIDTH,
    _curve,
    cluster_marks,
    draw,
    layout,
    matrix_picture,
    matrix_top,
    neuron_marks,
    outline_marks,
    packed_picture,
    patch_crops,
)
from convlens.cnnvis.pipeline import (
    activation_vectors,
    cluster_neurons,
    cluster_purity,
    clusters_from_labels,
    contribution,
    dead_neurons,
    default_cluster_count,
    layer_edges,
    move_neuron,
    neuron_importance,
    neuron_similarity,
    redundant_groups,
    relevant_neurons,
)
from convlens.cnnvis.view import (
    Options,
    build_view,
    cluster_pairs,
    covering,
    match_groups,
    matched_groups,
    quality_flags,
    with_row_orders,
)
from convlens.graph import build_graph
from convlens.models import load_model
from convlens.runformat import find_run


def blank_patch(*_) -> Image.Image:
    """A grey patch for pictures whose patches a test does not look at."""
    return Image.new("L", (8, 8), 128)


def planted(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well separated groups of 12, 8 and 5 activation vectors over 6 classes."""
    rng = np.random.default_rng(seed)
    centres = np.array([[5, 0, 0, 0, 0, 1], [0, 5, 5, 0, 0, 0], [0, 0, 0, 0, 6, 2]], dtype=float)
    truth = np.repeat([0, 1, 2], [12, 8, 5])
    rng.shuffle(truth)
    return centres[truth] + rng.normal(0, 0.1, (len(truth), 6)), truth


@pytest.mark.parametrize("method", ["kmeans", "meanshift"])
def test_clustering_recovers_planted_groups_numbered_by_size(method: str) -> None:
    vectors, truth = planted()
    clusters = cluster_neurons(vectors, method, clusters=3)
    assert clusters.count == 3
    # Same partition as the truth, and cluster 0 is the largest (12), then 8, then 5.
    for c, size in enumerate((12, 8, 5)):
        members = clusters.members(c)
        assert len(members) == size
        assert len(set(truth[members])) == 1


def test_representatives_are_ordered_by_distance_to_the_centroid() -> None:
    vectors, _ = planted(1)
    clusters = cluster_neurons(vectors, clusters=3)
    for members in clusters.representatives:
        centroid = vectors[members].mean(axis=0)
        distances = [np.linalg.norm(vectors[m] - centroid) for m in members]
        assert distances == sorted(distances)
        assert (
            sorted(members.tolist())
            == np.flatnonzero(clusters.labels == clusters.labels[members[0]]).tolist()
        )


def test_kmeans_never_asks_for_more_clusters_than_distinct_vectors() -> None:
    vectors = np.array([[1.0, 0], [1.0, 0], [0, 1.0], [0, 0]])
    assert cluster_neurons(vectors, clusters=8).count == 3
    assert cluster_neurons(np.zeros((0, 3))).count == 0


def test_default_cluster_count_stays_readable() -> None:
    assert [default_cluster_count(n) for n in (1, 3, 8, 32, 128, 512)] == [1, 1, 2, 4, 8, 8]


def test_moving_a_neuron_updates_members_and_allows_a_new_cluster() -> None:
    vectors, _ = planted(2)
    clusters = cluster_neurons(vectors, clusters=3)
    neuron = int(clusters.members(0)[0])
    moved = move_neuron(vectors, clusters, neuron, 2)
    assert len(moved.members(0)) == 11
    assert moved.labels[neuron] == moved.labels[clusters.members(2)[0]]
    alone = move_neuron(vectors, clusters, neuron, clusters.count)
    assert alone.count == 4 and len(alone.members(3)) == 1 and alone.labels[neuron] == 3
    with pytest.raises(ValueError, match="no neuron 99"):
        move_neuron(vectors, clusters, 99, 0)
    with pytest.raises(ValueError, match="no cluster 7"):
        move_neuron(vectors, clusters, 0, 7)


def test_clusters_from_labels_drops_empty_labels_and_renumbers() -> None:
    vectors = np.eye(4)
    clusters = clusters_from_labels(vectors, np.array([5, 9, 9, 5]))
    assert clusters.labels.tolist() == [
        0,
        1,
        1,
        0,
    ]  # ties in size: the first neuron's cluster first


def test_importance_and_relevance_by_hand() -> None:
    vectors = np.array([[1.0, 3.0, 2.0], [4.0, 0.0, 0.0], [-1.0, -2.0, 0.0], [0.0, 0.0, 0.0]])
    assert neuron_importance(vectors).tolist() == [2.0, 4 / 3, 0.0, 0.0]  # negative clipped
    assert neuron_importance(vectors, [1, 2], "max").tolist() == [3.0, 0.0, 0.0, 0.0]
    assert neuron_importance(vectors, [0], "mean").tolist() == [1.0, 4.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        neuron_importance(vectors, None, "contribution")
    # Selected class 1: neuron 0 responds 3 vs 1.5 (x2 >= 1.25), neuron 1 0 vs 2, dead ones never.
    assert relevant_neurons(vectors, [1]).tolist() == [True, False, False, False]
    assert relevant_neurons(vectors, []).all() and relevant_neurons(vectors, [0, 1, 2]).all()


def test_activation_vectors_transpose_and_zero_missing_classes() -> None:
    means = np.array([[1.0, 2.0], [np.nan, np.nan], [3.0, 4.0]])  # 3 classes, 2 neurons
    assert activation_vectors(means).tolist() == [[1.0, 0.0, 3.0], [2.0, 0.0, 4.0]]


def test_purity_counts_top_patch_labels_of_each_cluster() -> None:
    clusters = clusters_from_labels(np.eye(5), np.array([0, 0, 0, 1, 1]))
    top = np.array([[2, 2, 1], [2, 2, 2], [2, -1, 0], [4, 5, 6], [7, 4, 8]])
    purity = cluster_purity(top, clusters, top=3)
    assert (purity[0].majority_class, purity[0].patches) == (2, 8)
    assert purity[0].share == pytest.approx(6 / 8) and not purity[0].impure
    assert (purity[1].majority_class, purity[1].share) == (4, pytest.approx(2 / 6)) and purity[
        1
    ].impure


def test_redundant_groups_join_near_duplicates_transitively_and_skip_dead_neurons() -> None:
    base = np.array([1.0, 2.0, 3.0])
    vectors = np.array(
        [
            base,
            base * 1.02,
            base * 1.04,
            [3.0, 2.0, 1.0],
            [0.0, 0, 0],
            [0.0, 0, 0],
            [3.0, 2.0, 1.01],
        ]
    )
    assert redundant_groups(vectors, tolerance=0.025) == [(0, 1, 2), (3, 6)]
    assert dead_neurons(vectors).tolist() == [4, 5]
    assert redundant_groups(vectors, tolerance=0.001) == []


def test_redundant_groups_equal_a_brute_force_closure() -> None:
    rng = np.random.default_rng(4)
    bases = rng.normal(size=(6, 5))
    vectors = bases[rng.integers(0, 6, 40)] * rng.uniform(0.97, 1.03, (40, 1))
    vectors[[7, 21]] = 0.0  # dead
    tolerance = 0.04
    live = [i for i in range(40) if np.abs(vectors[i]).max() > 0]
    near = {
        (i, j)
        for i in live
        for j in live
        if np.linalg.norm(vectors[i] - vectors[j])
        <= tolerance * max(np.linalg.norm(vectors[i]), np.linalg.norm(vectors[j]))
    }
    group_of = {i: {i} for i in live}
    changed = True
    while changed:  # the transitive closure, one joined pair at a time
        changed = False
        for i, j in near:
            if group_of[i] is not group_of[j]:
                joined = group_of[i] | group_of[j]
                for k in joined:
                    group_of[k] = joined
                changed = True
    expected = sorted(
        {tuple(sorted(g)) for g in group_of.values() if len(g) > 1}, key=lambda g: g[0]
    )
    assert len(expected) >= 3
    assert redundant_groups(vectors, tolerance=tolerance) == expected


def test_neuron_similarity_zero_rows_are_zero() -> None:
    similarity = neuron_similarity(np.array([[1.0, 0], [1.0, 1.0], [0, 0], [-1.0, 0]]))
    assert similarity[0, 1] == pytest.approx(np.sqrt(0.5))
    assert similarity[2].tolist() == [0, 0, 0, 0] and similarity[0, 3] == 0  # clipped at 0


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(1, 3, 3, padding=1)),
                    ("relu1", nn.ReLU()),
                    ("pool1", nn.MaxPool2d(2)),
                    ("conv2", nn.Conv2d(3, 4, 3, padding=1)),
                    ("relu2", nn.ReLU()),
                    ("pool2", nn.MaxPool2d(2)),
                    ("depth", nn.Conv2d(4, 4, 3, padding=1, groups=4)),
                    ("relu3", nn.ReLU()),
                ]
            )
        )
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4 * 7 * 7, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.features(x)))


def test_layer_edges_sum_kernels_and_flattened_inputs() -> None:
    torch.manual_seed(0)
    model = Tiny().eval()
    graph = build_graph(model, (1, 28, 28))
    conv2 = layer_edges(model, graph, "features.conv2", 3)
    assert conv2.shape == (4, 3)
    assert conv2[1, 2] == pytest.approx(model.features.conv2.weight[1, 2].sum().item(), rel=1e-5)
    fc = layer_edges(model, graph, "fc", 4)
    assert fc.shape == (5, 4)
    assert fc[3, 1] == pytest.approx(model.fc.weight[3, 49:98].sum().item(), rel=1e-5)
    assert (
        layer_edges(model, graph, "features.depth", 4) is None
    )  # depthwise: not channel to channel
    assert layer_edges(model, graph, "features.conv2", 5) is None


def test_contribution_is_activation_times_gradient_of_the_predicted_class() -> None:
    torch.manual_seed(1)
    model = Tiny().eval()
    images = torch.randn(6, 1, 28, 28)
    found = contribution(model, images, "features.relu2", batch_size=4)
    expected = torch.zeros(4)
    kept: list[torch.Tensor] = []
    handle = model.features.relu2.register_forward_hook(lambda m, i, o: kept.append(o))
    for image in images:
        score = model(image[None])
        activation = kept.pop()
        (gradient,) = torch.autograd.grad(score[0, score.argmax()], activation)
        expected += (activation * gradient)[0].sum(dim=(1, 2)).detach()
    handle.remove()
    assert found == pytest.approx(np.clip((expected / 6).numpy(), 0, None), abs=1e-5)


def test_cluster_pairs_hold_means_of_positive_and_negative_weights() -> None:
    weights = np.array([[1.0, -2.0, 3.0], [-4.0, 5.0, 0.0]])  # 2 outputs x 3 inputs
    aggregated = cluster_pairs(weights, np.array([0, 0, 1]), np.array([0, 1]))
    assert aggregated[0, 0].tolist() == [1.0, -2.0]
    assert aggregated[1, 0].tolist() == [3.0, 0.0]
    assert aggregated[0, 1].tolist() == [5.0, -4.0]
    assert aggregated[1, 1].tolist() == [0.0, 0.0]


def test_covering_keeps_the_fewest_biclusters_that_cover_every_edge() -> None:
    from convlens.cnnvis.bundling import Bicluster

    def bicluster(inputs, outputs, strength=1.0, sign=-1):
        return Bicluster(frozenset(inputs), frozenset(outputs), sign, strength, 0, 0)

    big, left, right, tiny = (
        bicluster({0, 1}, {0, 1}),
        bicluster({0}, {0, 1, 2}),
        bicluster({1, 2}, {1}),
        bicluster({2}, {1}, 2.0),
    )
    kept = covering([tiny, left, big, right])
    edges = {(i, o) for b in (big, left, right, tiny) for i in b.inputs for o in b.outputs}
    assert {(i, o) for b in kept for i in b.inputs for o in b.outputs} == edges
    # big covers 4 edges; then tiny, left and right each add one: tiny is the strongest, and
    # covers right's only new edge, so right is left out.
    assert kept == [big, tiny, left]
    # A positive and a negative bundle over the same clusters are different edges.
    assert len(covering([bicluster({0}, {0}, sign=1), bicluster({0}, {0})])) == 2


@pytest.fixture(scope="module")
def small_model():
    model = load_model("fashion_basecnn_x0.25")
    graph = build_graph(model.module, model.input_size)
    return model, graph, analyze(model, SHIPPED_DATA, limit=300, cache=False)


def test_view_expands_groups_bundles_adjacent_layers_and_draws(small_model) -> None:
    model, graph, analysis = small_model
    options = Options(expanded=("g2", "g3"), clusters=3)
    view = build_view(model.name, model.module, graph, analysis, options)
    assert [g.id for g in view.groups if g.expanded] == ["g2", "g3"]
    expanded_nodes = [n for g in view.groups if g.expanded for n in g.nodes]
    assert list(view.layers) == expanded_nodes
    # Every consecutive expanded pair is bundled, and every bicluster joins real clusters.
    assert [(b.source, b.target) for b in view.bundles] == list(
        zip(expanded_nodes, expanded_nodes[1:], strict=False)
    )
    for bundles in view.bundles:
        assert bundles.biclusters
        for bicluster in bundles.biclusters:
            assert max(bicluster.inputs) < view.layers[bundles.source].clusters.count
            assert max(bicluster.outputs) < view.layers[bundles.target].clusters.count
    for layer in view.layers.values():
        # The matrix order of each cluster is a permutation of its members.
        for members, order in zip(layer.clusters.representatives, layer.orders, strict=True):
            assert sorted(order.tolist()) == sorted(members.tolist())
    geometry = layout(view)
    for (node, _), box in geometry.clusters.items():
        column = geometry.columns[node]
        assert column.x <= box.x and box.right <= column.right + 1e-6
    source = open_source(SHIPPED_DATA)
    spec = draw(view, patch_crops(source.load, model.transform)).to_dict()
    images = [layer for layer in spec["layer"] if layer["mark"]["type"] == "image"]
    assert len(images) == 1
    assert {p["name"] for p in spec["params"]} == {"neuron", "group"}  # clicks reach the page
    views = {layer.get("name"): layer for layer in spec["layer"]}
    for param in spec["params"]:  # each held by a view whose marks carry its fields
        (held,) = param["views"]
        assert set(param["select"]["fields"]) <= set(views[held]["data"]["values"][0])
    # A picture of packed patches per cluster, under a clickable square per neuron of non-zero
    # importance (a zero-size square is not drawn).
    assert len(images[0]["data"]["values"]) == sum(
        layer.clusters.count for layer in view.layers.values()
    )
    assert len(views["view_patches"]["data"]["values"]) == sum(
        int((layer.importance > 0).sum()) for layer in view.layers.values()
    )
    matrix = draw(view, patch_crops(source.load, model.transform), facet="activations").to_dict()
    views = {layer.get("name"): layer for layer in matrix["layer"]}
    # a clickable row per neuron over a picture per cluster's matrix
    assert len(views["view_rows"]["data"]["values"]) == sum(
        layer.neurons for layer in view.layers.values()
    )
    (pictures,) = [layer for layer in matrix["layer"] if layer["mark"]["type"] == "image"]
    assert len(pictures["data"]["values"]) == sum(
        layer.clusters.count for layer in view.layers.values()
    )
    # plain JSON, as the browser parses it: no NaN (a missing debugging value is null)
    json.dumps(matrix, allow_nan=False)
    json.dumps(draw(view, blank_patch, show_weak=True, debug_title="x").to_dict(), allow_nan=False)


def test_a_view_built_without_row_orders_draws_the_same_pictures(small_model) -> None:
    model, graph, analysis = small_model
    options = Options(expanded=("g2", "g3"), clusters=3)
    ordered = build_view(model.name, model.module, graph, analysis, options)
    unordered = build_view(model.name, model.module, graph, analysis, options, order_rows=False)
    assert all(layer.orders is None for layer in unordered.layers.values())
    filled = with_row_orders(unordered)
    assert with_row_orders(ordered) is ordered
    for node, layer in ordered.layers.items():
        assert all(map(np.array_equal, filled.layers[node].orders, layer.orders))
    assert unordered.to_json() == ordered.to_json()  # the JSON export orders the rows itself
    source = open_source(SHIPPED_DATA)
    patches = patch_crops(source.load, model.transform)
    node = next(iter(ordered.layers))
    for facet in FACETS:
        # the activations facet orders the rows when the view has no orders
        assert (
            draw(unordered, patches, facet=facet, highlight={(node, 1)}).spec
            == draw(ordered, patches, facet=facet, highlight={(node, 1)}).spec
        )


def test_moving_a_neuron_changes_the_picture(small_model) -> None:
    model, graph, analysis = small_model
    options = Options(expanded=("g3",), clusters=3)
    before = build_view(model.name, model.module, graph, analysis, options)
    node = next(iter(before.layers))
    neuron = int(before.layers[node].clusters.members(0)[0])
    after = build_view(
        model.name,
        model.module,
        graph,
        analysis,
        Options(expanded=("g3",), clusters=3, moves=((node, neuron, 3),)),
    )
    assert after.layers[node].clusters.count == 4
    assert after.layers[node].clusters.labels[neuron] == 3
    unchanged = [n for n in before.layers if n != node]
    for other in unchanged:
        assert (after.layers[other].clusters.labels == before.layers[other].clusters.labels).all()


def test_debugging_values_from_recorded_statistics() -> None:
    model = Tiny()
    graph = build_graph(model, (1, 28, 28))
    labels_in, labels_out = np.array([0, 0, 1]), np.array([0, 1, 1, 0])
    from convlens.cnnvis.bundling import Bicluster
    from convlens.cnnvis.pipeline import NeuronClusters
    from convlens.cnnvis.view import Bundles, LayerView

    def layer(node: str, labels: np.ndarray) -> LayerView:
        clusters = clusters_from_labels(np.eye(len(labels)), labels)
        n = len(labels)
        blank = np.zeros(n)
        return LayerView(
            node,
            "g",
            np.eye(n),
            clusters,
            blank,
            blank > -1,
            (),
            [],
            [],
            np.zeros(0, int),
            np.zeros((n, 1), int),
            np.zeros((n, 1, 4), int),
        )

    layers = {
        "features.conv1": layer("features.conv1", labels_in),
        "features.conv2": layer("features.conv2", labels_out),
    }
    grad = np.arange(12, dtype=float).reshape(4, 3)
    stats = {
        stats_key(graph, "features.conv2", "edge_abs_grad"): grad,
        stats_key(graph, "features.conv2", "filter_weight_change"): np.array([0.1, 0.2, 0.4, 0.3]),
        stats_key(graph, "features.conv2", "weight_change"): np.array(0.25),
        stats_key(graph, "features.conv2", "edge_weight"): np.array([[1.0, -1.0, 2.0]]),
    }
    bicluster = Bicluster(frozenset({0}), frozenset({1}), 1, 1.0, 1, 0)
    bundles = Bundles("features.conv1", "features.conv2", [bicluster], np.zeros((2, 2, 2)), 1.0)
    assert isinstance(layers["features.conv1"].clusters, NeuronClusters)
    # Output cluster 1 holds output neurons 1 and 2 (renumbered by size: [0,1,1,0] -> same); input cluster 0 inputs 0, 1.
    out_members = layers["features.conv2"].clusters.members(1)
    in_members = layers["features.conv1"].clusters.members(0)
    assert bicluster_values(bundles, layers, stats, graph, "gradient") == (
        pytest.approx(grad[np.ix_(out_members, in_members)].mean()),
    )
    assert bicluster_values(bundles, layers, stats, graph, "relative change") == (
        pytest.approx(
            [0.1, 0.2, 0.4, 0.3][out_members[0]] / 2 + [0.1, 0.2, 0.4, 0.3][out_members[1]] / 2
        ),
    )
    assert bicluster_values(bundles, layers, stats, graph, "weight") is None
    assert layer_average(stats, graph, "features.conv2", "relative change") == 0.25
    assert layer_average(stats, graph, "features.conv2", "weight") == pytest.approx(2 / 3)
    assert layer_average(stats, graph, "features.conv1", "gradient") is None


def test_failed_hinge_run_has_blank_rows_growing_with_depth_and_small_late_changes() -> None:
    """CNNVis 7.3 retold on the shipped failed run: dead neurons become more common with depth and
    the relative weight changes collapse below the top layers."""
    model = load_model("fashion_basecnn_hinge")
    graph = build_graph(model.module, model.input_size)
    analysis = analyze(model, SHIPPED_DATA, limit=300, cache=False)
    dead_share = {
        layer.id: len(dead_neurons(activation_vectors(layer.per_class_mean))) / layer.neurons
        for layer in analysis.layers
    }
    assert (
        dead_share["features.conv1_1"]
        < dead_share["features.conv4_3"]
        <= dead_share["classifier.fc1"]
    )
    # Fig. 15(a): below the top layers the weights hardly change any more.
    nodes = [layer.id for layer in analysis.layers]
    averages = run_layer_averages(
        find_run("fashion_basecnn_hinge"), graph, nodes, "relative change"
    )
    last = max(a.step for a in averages)
    change = {a.node: a.value for a in averages if a.step == last}
    assert set(change) == set(nodes) and len({a.step for a in averages}) >= 2
    assert change["classifier.fc2"] > 10 * max(
        v for node, v in change.items() if node.startswith("features")
    )


def test_a_clusters_packed_patches_are_one_picture_checked_by_hand() -> None:
    dark = Image.new("L", (4, 4), 0)
    red = Image.new("RGB", (4, 4), (255, 0, 0))
    squares = [(dark, (0.0, 0.0, 2.0, 2.0), 1.0), (dark, (2.0, 0.0, 1.5, 1.5), 0.5)]
    picture = np.asarray(packed_picture(squares, (4.0, 3.0), scale=2))
    assert picture.shape == (6, 8)  # 4 x 3 picture pixels at scale 2, grey
    assert (picture[:4, :4] == 0).all()  # the first square, opaque
    # the second, half faded into white: 255 / 2
    assert (np.abs(picture[:3, 4:7].astype(float) - 127.5) <= 0.5).all()
    assert (picture[4:, :] == 255).all() and (picture[:, 7] == 255).all()  # white between
    # a colour patch makes the picture colour; squares meet without a seam or an overlap, placed
    # at the scale the picture is drawn at: 3 pixels for 2.6 (x 15/13), so the second square
    # starts at 1.3 x 15/13 = 1.5, rounded to 2
    squares = [(red, (0.0, 0.0, 1.3, 1.3), 1.0), (dark, (1.3, 0.0, 1.3, 1.3), 1.0)]
    picture = np.asarray(packed_picture(squares, (2.6, 1.3), scale=1))
    assert picture.shape == (2, 3, 3)
    assert [picture[0, col].tolist() for col in range(3)] == [[255, 0, 0], [255, 0, 0], [0] * 3]
    assert (picture[1] == picture[0]).all()  # 1.3 x 2/1.3: both squares fill both rows
    # by default no finer than the patches hold (a 4-pixel patch in a 40-pixel square: one pixel
    # per picture pixel, the floor), and twice the pixels where the squares are small
    assert packed_picture([(dark, (0.0, 0.0, 40.0, 40.0), 1.0)], (40.0, 40.0)).size == (40, 40)
    assert packed_picture([(dark, (0.0, 0.0, 1.0, 1.0), 1.0)], (40.0, 40.0)).size == (80, 80)


def test_highlighted_neurons_are_framed_in_both_facets(small_model) -> None:
    model, graph, analysis = small_model
    view = build_view(
        model.name, model.module, graph, analysis, Options(expanded=("g3",), clusters=3)
    )
    geometry = layout(view)
    node = next(iter(view.layers))
    layer = view.layers[node]
    neuron = int(np.argmax(layer.importance))
    patches = pd.DataFrame(neuron_marks(view, geometry, "features", 0, blank_patch).patches)
    patch = patches[(patches.node == node) & (patches.neuron == neuron)].iloc[0]
    (outline,) = outline_marks(view, geometry, "features", {(node, neuron), ("no.such.layer", 0)})
    frame = pd.Series(outline)
    assert frame.x < patch.x < patch.x2 < frame.x2 and frame.y < patch.y < patch.y2 < frame.y2
    rows = pd.DataFrame(neuron_marks(view, geometry, "activations", 0, blank_patch).rows)
    row = rows[(rows.node == node) & (rows.neuron == neuron)]
    assert len(row) == 1
    frame = pd.Series(outline_marks(view, geometry, "activations", {(node, neuron)})[0])
    assert frame.x < row.x.min() and row.x2.max() < frame.x2
    assert frame.y < row.y.min() and row.y2.max() < frame.y2
    spec = draw(view, blank_patch, highlight={(node, neuron)}).to_dict()
    assert any(layer.get("mark", {}).get("stroke") == "#ff7f00" for layer in spec["layer"])


def test_adjacent_highlighted_rows_share_one_frame(small_model) -> None:
    """A cluster whose matrix rows are all highlighted (a quality flag of an impure cluster) gets
    one frame around its matrix, not a frame per row (rows a pixel or two high: a block of orange
    that hid the matrix); rows apart from each other get one frame each."""
    model, graph, analysis = small_model
    view = build_view(
        model.name, model.module, graph, analysis, Options(expanded=("g3",), clusters=3)
    )
    geometry = layout(view)
    node, layer = next(
        (name, view_layer)
        for name, view_layer in view.layers.items()
        if max(map(len, view_layer.orders)) >= 4
    )
    cluster = max(range(len(layer.orders)), key=lambda c: len(layer.orders[c]))
    order = [int(neuron) for neuron in layer.orders[cluster]]
    rows = pd.DataFrame(neuron_marks(view, geometry, "activations", 0, blank_patch).rows)
    matrix = rows[(rows.node == node) & rows.neuron.isin(order)]

    (whole,) = outline_marks(view, geometry, "activations", {(node, n) for n in order})
    assert whole["x"] < matrix.x.min() and matrix.x2.max() < whole["x2"]
    assert whole["y"] < matrix.y.min() and matrix.y2.max() < whole["y2"]
    assert whole["neuron"] == order[0]
    assert whole["neurons"].startswith(", ".join(map(str, order[:OUTLINE_NEURONS_NAMED])))

    apart = {(node, order[0]), (node, order[1]), (node, order[3])}
    frames = outline_marks(view, geometry, "activations", apart)
    assert [frame["neurons"] for frame in frames] == [f"{order[0]}, {order[1]}", str(order[3])]
    first = matrix[matrix.neuron.isin(order[:2])]
    assert frames[0]["y"] < first.y.min() and first.y2.max() < frames[0]["y2"]
    third = matrix[matrix.neuron == order[2]]
    assert frames[0]["y2"] <= third.y2.max() and third.y.min() <= frames[1]["y"], "2nd row apart"


def test_quality_flags_name_the_neurons_of_impure_clusters_redundant_and_dead_ones(
    small_model,
) -> None:
    model, graph, analysis = small_model
    view = build_view(model.name, model.module, graph, analysis, Options(expanded=("g2", "g3")))
    flags = quality_flags(view)
    for node, layer in view.layers.items():
        mine = [f for f in flags if f.layer == node]
        impure = [p.cluster for p in layer.purity if p.impure and p.patches]
        where = [f.where for f in mine if f.flag == "impure cluster"]
        assert [w.split(",")[0] for w in where] == [f"c{c}" for c in impure]
        labels = {
            row["cluster"]: row["label"].split(" · ")[0]
            for row in cluster_marks(view, layout(view))
            if row["node"] == node
        }
        # the cluster's label in the picture, so that a reader finds it there
        assert [f"“{labels[c]}”" in w for w, c in zip(where, impure, strict=True)] == [True] * len(
            impure
        )
        for flag, cluster in zip(
            [f for f in mine if f.flag == "impure cluster"], impure, strict=True
        ):
            assert sorted(flag.neurons) == sorted(layer.clusters.members(cluster).tolist())
        assert [f.neurons for f in mine if f.flag == "redundant neurons"] == layer.redundant
        dead = [f.neurons for f in mine if f.flag == "dead neurons"]
        assert dead == ([tuple(layer.dead.tolist())] if len(layer.dead) else [])


def test_cluster_labels_reach_the_next_column_and_shrink_with_the_picture():
    from convlens.cnnvis.drawing import Box, Geometry, _label_limit, _label_room

    columns = {"a": Box(0, 0, 100, 500), "b": Box(200, 0, 160, 500)}
    clusters = {("a", 0): Box(0, 0, 100, 50), ("b", 0): Box(200, 0, 160, 50)}
    geometry = Geometry(370, columns, clusters)
    # over its rectangle and the gap, up to the next column, or to the picture's margin
    assert _label_room(geometry, clusters[("a", 0)]) == 200 - 6
    assert _label_room(geometry, clusters[("b", 0)]) == 360 - 200 - 6
    assert _label_limit(194, geometry, 900) == 194
    assert _label_limit(194, geometry, 185) == 97  # drawn at half the layout's width
    assert _label_limit(30, geometry, 185) == 20  # never shorter than MIN_LABEL_LIMIT


def test_column_headers_end_before_the_next_column_and_name_their_group_once(small_model):
    """Many narrow columns (EfficientNet-Lite0's g4 expanded: 16 layers) drew their headers over
    each other. A header is cut where the next column begins, the expanded group's name leads
    its first column only, and the tooltip names the layers whole."""
    model, graph, analysis = small_model
    view = build_view(model.name, model.module, graph, analysis, Options(expanded=("g2", "g3")))
    for width in (PICTURE_WIDTH, 300):  # wide, and narrow enough that every header is cut
        picture = draw(view, blank_patch, facet="features", width=width)
        headers = next(
            layer for layer in picture.spec["layer"] if layer["data"]["name"] == "headers"
        )
        rows = sorted(picture.marks["headers"], key=lambda row: row["x"])
        for row, following in zip(rows, rows[1:], strict=False):
            cut = row["x"] + row["label_limit"] <= following["x"]
            assert cut or row["label_limit"] == MIN_LABEL_LIMIT, (width, row["text"])
        assert headers["mark"]["limit"] == {"expr": "datum.label_limit"}
        assert {"field": "layers", "type": "nominal"} in headers["encoding"]["tooltip"]
        expanded = [row for row in rows if row["group"] in ("g2", "g3")]
        named = [row["text"].split(" ▾ ")[0] for row in expanded if " ▾ " in row["text"]]
        assert named == ["g2", "g3"], "each expanded group named once, over its first column"
        assert {row["layers"] for row in expanded} == set(view.layers)
        if width == 300:
            svg = vl_convert.vegalite_to_svg(picture.to_dict())
            assert "…" in svg, "a header cut short ends with an ellipsis"


def test_a_biclusters_tooltip_names_its_layers_as_the_column_headers_do(small_model):
    """Layers whose names end alike (EfficientNet-Lite0's `_expand_conv` in every block) are told
    apart in a bicluster's tooltip by the ending their columns' headers show."""
    from dataclasses import replace

    from convlens.cnnvis.drawing import edge_marks

    model, graph, analysis = small_model
    view = build_view(model.name, model.module, graph, analysis, Options(expanded=("g2", "g3")))
    renamed = {node: f"block{i}.conv" for i, node in enumerate(view.layers)}
    view = replace(
        view,
        groups=[replace(g, nodes=tuple(renamed.get(n, n) for n in g.nodes)) for g in view.groups],
        layers={renamed[n]: replace(layer, node=renamed[n]) for n, layer in view.layers.items()},
        bundles=[
            replace(b, source=renamed[b.source], target=renamed[b.target]) for b in view.bundles
        ],
    )
    _, rectangles = edge_marks(view, layout(view), ("green", "red"), show_weak=False)
    assert rectangles
    for bundles in view.bundles:
        source, target = bundles.source, bundles.target
        pattern = rf"^{re.escape(source)} c[\d, c]+ → {re.escape(target)} c[\d, c]+: "
        assert any(re.match(pattern, rect["bicluster"]) for rect in rectangles), pattern


def test_short_names_are_the_shortest_endings_no_other_layer_has():
    from convlens.cnnvis.drawing import short_names

    efficientnet = [f"_blocks.{b}.{kind}" for b in (10, 11) for kind in ("_expand_conv", "_dw")]
    names = short_names([*efficientnet, "_conv_head", "features.conv3_1", "b", "a.b"])
    assert names["_blocks.11._expand_conv"] == "11._expand_conv"
    assert names["_conv_head"] == "_conv_head" and names["features.conv3_1"] == "conv3_1"
    assert names["b"] == "b" and names["a.b"] == "a.b"
    rng = np.random.default_rng(0)
    for _ in range(50):  # against brute force: every ending of each node, shortest first
        nodes = list({".".join(rng.choice(list("xyz"), rng.integers(1, 4))) for _ in range(6)})
        names = short_names(nodes)
        for node in nodes:
            parts = node.split(".")
            endings = [".".join(parts[-k:]) for k in range(1, len(parts) + 1)]
            unique = [
                e
                for e in endings
                if not any(o == e or o.endswith("." + e) for o in nodes if o != node)
            ]
            assert names[node] == (unique[0] if unique else node)


def test_activation_matrices_number_their_columns_under_the_cells(small_model) -> None:
    from convlens.cnnvis.drawing import MATRIX_KEY, matrix_key, matrix_key_marks

    model, graph, analysis = small_model
    view = build_view(
        model.name, model.module, graph, analysis, Options(expanded=("g3",), clusters=3)
    )
    geometry = layout(view, footer=MATRIX_KEY)
    marks = neuron_marks(view, geometry, "activations", 0, blank_patch)
    rows = pd.DataFrame(marks.rows)
    key = pd.DataFrame(matrix_key_marks(view, geometry))
    assert len(key) == len(view.layers) * len(view.classes)
    classes = len(view.classes)
    for node in view.layers:
        mine = rows[rows.node == node]
        pictures = [m for m in marks.pictures if m["x"] == mine.x.iloc[0]]
        assert len(pictures) == view.layers[node].clusters.count
        for index, name in enumerate(view.classes):
            # column `index` of every matrix picture of the layer (a pixel per class)
            for picture in pictures:
                width = (picture["x2"] - picture["x"]) / classes
                centre = picture["x"] + (index + 0.5) * width
                mark = key[(key.text == str(index)) & ((key.x - centre).abs() < 0.01)]
                assert len(mark) == 1 and mark["class"].iloc[0] == name
                assert mark.y.iloc[0] > mine.y2.max()  # under the matrices
    assert matrix_key(["a", "b"]) == ["Matrix columns, left to right: 0 a · 1 b"]
    spec = draw(view, blank_patch, facet="activations").to_dict()
    assert spec["title"]["text"] == matrix_key(view.classes)
    assert "title" not in draw(view, blank_patch, facet="features").to_dict()


def test_cluster_labels_name_their_majority_class(small_model) -> None:
    """The label is the share and the class (a cluster without patches: its number and size);
    the number and the size are in the tooltip, so that the label fits at 1280x720."""
    from convlens.cnnvis.drawing import cluster_marks

    model, graph, analysis = small_model
    view = build_view(
        model.name, model.module, graph, analysis, Options(expanded=("g3",), clusters=3)
    )
    marks = pd.DataFrame(cluster_marks(view, layout(view)))
    for row in marks.itertuples():
        layer = view.layers[row.node]
        purity = layer.purity[row.cluster]
        members = layer.clusters.representatives[row.cluster]
        assert row.neurons == len(members)
        dead = int(np.isin(members, layer.dead).sum())
        head = (
            f"{purity.share:.0%} {view.classes[purity.majority_class]}"
            if purity.patches
            else f"c{row.cluster} · {row.neurons}"
        )
        assert row.label == head + (f" · {dead} dead" if dead else "")


def test_the_matrix_key_wraps_so_that_it_never_widens_the_picture() -> None:
    """A key line wider than the page's column made Vega-Lite squeeze the picture to a sliver
    (issue 14): the key wraps at MATRIX_KEY_LINE characters, at most MATRIX_KEY_LINES lines."""
    from convlens.cnnvis.drawing import MATRIX_KEY_LINE, MATRIX_KEY_LINES, matrix_key

    fashion = load_model("fashion_basecnn").class_names
    lines = matrix_key(fashion)
    assert 1 < len(lines) <= MATRIX_KEY_LINES
    assert all(len(line) <= MATRIX_KEY_LINE for line in lines)
    assert " · ".join(lines).replace(": · ", ": ").count(" · ") == len(fashion) - 1
    assert lines[0].startswith("Matrix columns, left to right: 0 T-shirt/top")
    many = matrix_key([f"class {i}" for i in range(1000)])
    assert len(many) == MATRIX_KEY_LINES and many[-1].endswith(" …")
    assert matrix_key(["x" * 200]) == ["Matrix columns, left to right:", "0 " + "x" * 200]


def test_match_groups_pairs_groups_of_the_same_kind_counted_from_the_last() -> None:
    deep = [("g0", "conv"), ("g1", "conv"), ("g2", "conv"), ("g3", "conv"), ("g4", "fc")]
    shallow = [("g0", "conv"), ("g1", "conv"), ("g2", "conv"), ("g3", "fc")]
    everything = [group for group, _ in deep]
    assert match_groups(deep, shallow, everything) == {
        "g1": "g0",
        "g2": "g1",
        "g3": "g2",  # the top conv group with the top conv group
        "g4": "g3",  # fc with fc, never with a conv group of the same id
    }
    assert match_groups(deep, shallow, ["g0"]) == {}  # the shallow one has no fourth from last
    assert match_groups(shallow, deep, ["g2", "g3"]) == {"g2": "g3", "g3": "g4"}
    assert match_groups(deep, deep, ["g3", "g0"]) == {"g0": "g0", "g3": "g3"}  # network order
    assert match_groups(deep, [("g0", "fc")], everything) == {"g4": "g0"}
    assert match_groups(deep, shallow, []) == {}


def test_matched_groups_of_the_shipped_deep_and_shallow_networks() -> None:
    """fashion_basecnn_shallow has no fourth conv group: the deep one's last conv group (g3)
    expands the shallow one's last conv group (g2), not its fc layers (g3)."""

    def network(name: str):
        model = load_model(name)
        graph = build_graph(model.module, model.input_size)
        analysed = [n for n in graph.chain if n.type in ("conv", "linear")]
        return graph, SimpleNamespace(layers=[SimpleNamespace(id=n.id) for n in analysed])

    deep, shallow = network("fashion_basecnn"), network("fashion_basecnn_shallow")
    matches = matched_groups(*deep, *shallow, ["g3", "g4"])
    assert matches == {"g3": "g2", "g4": "g3"}
    for mine, theirs in matches.items():
        kinds = {deep[0].node(n).type for n in deep[0].group(mine).nodes} - {"pool", "flatten"}
        other = {shallow[0].node(n).type for n in shallow[0].group(theirs).nodes}
        assert kinds == other - {"pool", "flatten"}


def test_impure_clusters_are_drawn_with_dashed_frames(small_model) -> None:
    """The caption's "brown dashed frame" is what the browser draws: an impure cluster's frame is
    dashed, a pure one's is not (Vega-Lite dropped a strokeDash channel on rect marks)."""
    model, graph, analysis = small_model
    view = build_view(
        model.name, model.module, graph, analysis, Options(expanded=("g2", "g3"), clusters=3)
    )
    picture = draw(view, blank_patch)
    clusters = picture.marks["clusters"]
    impure = [c for c in clusters if c["dash"]]
    assert impure and len(impure) < len(clusters), "the test needs both kinds"
    svg = vl_convert.vegalite_to_svg(picture.to_dict())
    frames = re.findall(r'<path [^>]*stroke="(?:#b35806|#888888)"[^>]*>', svg)
    assert len(frames) == len(clusters)
    dashed = [frame for frame in frames if 'stroke-dasharray="4,3"' in frame]
    assert len(dashed) == len(impure) and all('stroke="#b35806"' in frame for frame in dashed)


def test_packed_patches_are_sent_as_jpeg_and_neuron_labels_are_made_from_their_fields(
    small_model,
) -> None:
    """The features facet sends each cluster's packed patches as one JPEG, and no label per
    neuron: the picture makes each neuron mark's label for screen readers from its fields."""
    model, graph, analysis = small_model
    view = build_view(model.name, model.module, graph, analysis, Options(expanded=("g2",)))
    picture = draw(view, lambda *_: Image.new("RGB", (8, 8), (200, 30, 30)), facet="features")
    urls = [p["url"] for p in picture.marks["pictures"]]
    assert urls and all(url.startswith("data:image/jpeg;base64,") for url in urls)
    patches = picture.marks["patches"]
    assert patches and not any("description" in patch for patch in patches)
    svg = vl_convert.vegalite_to_svg(picture.to_dict())
    labels = re.findall(
        r'aria-label="([^"]*)" role="graphics-symbol" aria-roledescription="rect mark"', svg
    )
    for patch in patches:
        wanted = (
            f"node: {patch['node']}; neuron: {patch['neuron']}; cluster: {patch['cluster']}; "
            f"strongest class: {patch['strongest class']}"
        )
        assert wanted in labels


def test_curves_are_sent_once_each_and_drawn_as_before_with_short_labels(small_model) -> None:
    """A curve is one record (its two ends: the browser places its points on the curve between
    them) and the matrix rows' aria-labels are made from a few fields: Vega-Lite's own labels
    formatted a dozen numbers per mark in the browser. Rendered, the picture holds the same
    curves and rows."""
    model, graph, analysis = small_model
    view = build_view(
        model.name, model.module, graph, analysis, Options(expanded=("g2", "g3"), clusters=3)
    )
    picture = draw(view, blank_patch, facet="activations")
    curves = picture.marks["lines"]
    assert curves and all({"x0", "y0", "x1", "y1"} <= set(c) and "x" not in c for c in curves)

    svg = vl_convert.vegalite_to_svg(picture.to_dict())
    marks = (
        r'aria-label="([^"]*)" role="graphics-symbol" aria-roledescription="(geoshape|rect mark)"'
    )
    labels = [(role, label) for label, role in re.findall(marks, svg)]
    lines = [label for role, label in labels if role == "geoshape"]
    assert len(lines) == len(curves)
    assert all(re.fullmatch(r"sign: (positive|negative); strength: [\d.e-]+", x) for x in lines)
    row = picture.marks["rows"][0]
    wanted = (
        f"node: {row['node']}; neuron: {row['neuron']}; cluster: {row['cluster']}; "
        f"strongest class: {row['strongest class']}"
    )
    assert wanted in [label for role, label in labels if role == "rect mark"]


@pytest.mark.parametrize("facet", FACETS)
def test_pictures_of_one_facet_share_one_spec_whatever_is_expanded(small_model, facet) -> None:
    """The page replaces a chart's data in place only when its spec is unchanged: pictures that
    differ in their expanded groups (none, one, two, all of them) differ only in their data, every
    mark within the picture's width, and stretched from the layout as the page stretched it."""
    model, graph, analysis = small_model
    expansions = [(), ("g3",), ("g2", "g3"), tuple(g.id for g in graph.groups)]
    pictures = []
    for expanded in expansions:
        view = build_view(
            model.name, model.module, graph, analysis, Options(expanded=expanded, clusters=3)
        )
        picture = draw(view, blank_patch, facet=facet)
        pictures.append(picture)
        geometry = layout(view, footer=MATRIX_KEY if facet == "activations" else 0.0)
        scale = PICTURE_WIDTH / geometry.width
        positions = [
            row[field]
            for records in picture.marks.values()
            for row in records
            for field in ("x", "x2", "x0", "x1", "label_x")
            if field in row
        ]
        assert positions and min(positions) >= 0 and max(positions) <= PICTURE_WIDTH
        laid_out = {
            (row["node"], row["cluster"]): row["x"] for row in picture.marks.get("clusters", [])
        }
        for (node, cluster), box in geometry.clusters.items():
            assert laid_out[(node, cluster)] == pytest.approx(box.x * scale, abs=0.01)
        selection = {param["name"]: param["select"] for param in picture.spec["params"]}
        assert selection["group"]["toggle"] == "true" and selection["group"]["clear"] is False
    assert all(picture.spec == pictures[0].spec for picture in pictures)
    assert len({json.dumps(picture.marks, sort_keys=True) for picture in pictures}) == 4
    assert pictures[0].with_datasets()["datasets"]["clusters"] == []  # nothing expanded


def test_a_matrix_picture_by_hand() -> None:
    """Rows in the cluster's order; over the top the darkest grey; a faded neuron's row blended
    with white; a missing value white."""
    layer = SimpleNamespace(
        vectors=np.array([[0.0, 0.5], [np.nan, 2.0]]),
        orders=[np.array([1, 0])],
        relevant=np.array([True, False]),
    )
    picture = np.asarray(matrix_picture(layer, 0, 1.0))
    faded_darkest = round(255 - FADED * (255 - 30))
    assert picture.tolist() == [[255, faded_darkest], [226, 136]]


def test_matrix_pictures_draw_each_neuron_and_class_in_vega_greys(small_model) -> None:
    """A cluster's matrix is a picture, a pixel per neuron (in the cluster's order) and class,
    in the grey Vega's "greys" scale gives the activation over the layer's 95th percentile (what
    each cell's rect was filled with), a faded neuron's row lighter."""
    model, graph, analysis = small_model
    view = build_view(
        model.name, model.module, graph, analysis, Options(expanded=("g3",), clusters=3)
    )
    layer = next(iter(view.layers.values()))
    top = matrix_top(layer)
    picture = np.asarray(matrix_picture(layer, 0, top))
    order = layer.orders[0]
    assert picture.shape == (len(order), len(view.classes))
    values = np.clip(layer.vectors[order] / top, 0.0, 1.0)
    cases = [(r, c) for r in range(len(order)) for c in range(len(view.classes))][::37]
    spec = {
        "data": {"values": [{"i": i, "v": float(values[r, c])} for i, (r, c) in enumerate(cases)]},
        "mark": "rect",
        "encoding": {
            "x": {"field": "i", "type": "ordinal"},
            "color": {
                "field": "v",
                "type": "quantitative",
                "scale": {"scheme": "greys", "domain": [0, 1]},
            },
        },
    }
    fills = re.findall(r'fill="rgb\((\d+), \1, \1\)"', vl_convert.vegalite_to_svg(spec))
    assert len(fills) == len(cases)
    for (r, c), fill in zip(cases, fills, strict=True):
        expected = int(fill) if layer.relevant[order[r]] else 255 - FADED * (255 - int(fill))
        assert abs(int(picture[r, c]) - expected) <= 1


def test_curves_as_shapes_draw_the_paths_of_a_line_per_curve_also_when_stretched(
    small_model,
) -> None:
    """The curves are GeoJSON lines that the browser places (`_curve_path`) through an identity
    projection: they draw the paths a line mark through the same points draws (each path's points,
    colour, width, opacity and label), at the layout's width and at the narrower width the page
    stretches the picture to (x scaled, y not). Rasterised, the two differ by at most 2 of 255 in
    anti-aliased pixels (Vega groups a faceted line's paths differently), so the SVG is compared."""
    model, graph, analysis = small_model
    view = build_view(
        model.name, model.module, graph, analysis, Options(expanded=("g2", "g3"), clusters=3)
    )
    spec = draw(view, blank_patch, facet="activations").to_dict()
    as_lines = json.loads(json.dumps(spec))
    (curves,) = [layer for layer in as_lines["layer"] if layer["mark"]["type"] == "geoshape"]
    for key in ("transform", "projection"):
        del curves[key]
    curves["mark"] = {"type": "line", "interpolate": "linear", "strokeCap": "round"}
    encoding = curves["encoding"]
    del encoding["shape"]
    encoding["color"] = encoding.pop("stroke")
    scale = {"nice": False, "zero": False}
    encoding["x"] = {"field": "x", "type": "quantitative", "axis": None}
    encoding["x"]["scale"] = scale | {"domain": [0, spec["width"]]}
    encoding["y"] = {"field": "y", "type": "quantitative", "axis": None}
    encoding["y"]["scale"] = scale | {"domain": [spec["height"], 0]}
    encoding["detail"] = {"field": "edge", "type": "nominal"}
    encoding["order"] = {"field": "order", "type": "quantitative"}
    curves["data"]["values"] = [  # the points of each curve, computed here
        curve | {"x": x, "y": y, "order": k}
        for curve in curves["data"]["values"]
        for k, (x, y) in enumerate(
            zip(*_curve(curve["x0"], curve["y0"], curve["x1"], curve["y1"]), strict=True)
        )
    ]

    def paths(chart: dict, width: float, role: str) -> list[tuple[str, np.ndarray]]:
        """Each path's attributes but its points, and its points (SVG's numbers differ in
        their last digit where the browser's weights and Python's round differently)."""
        svg = vl_convert.vegalite_to_svg(chart | {"width": width})
        found = re.findall(
            rf'<path (aria-label="[^"]*") [^>]*aria-roledescription="{role}"([^>]*)>', svg
        )
        drawn = []
        for label, rest in found:
            points = re.search(r' d="M([^"]*)"', rest)
            attributes = label + rest.replace(points.group(0), "")
            attributes = re.sub(r' transform="translate\(0,0\)"', "", attributes)
            numbers = np.array([float(v) for v in re.split(r"[,L]", points.group(1))])
            drawn.append((attributes, numbers))
        return sorted(drawn, key=lambda path: (path[0], path[1].round(1).tolist()))

    for width in (spec["width"], round(spec["width"] * 0.6)):
        shapes = paths(spec, width, "geoshape")
        lines = paths(as_lines, width, "line mark")
        assert len(shapes) == len(lines) == len(curves["data"]["values"]) // CURVE_POINTS
        for (shape, at), (line, wanted) in zip(shapes, lines, strict=True):
            assert shape == line and np.allclose(at, wanted, atol=0.002), width
