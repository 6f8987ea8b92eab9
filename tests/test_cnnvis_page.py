"""What the CNNVis page relies on beside its AppTest: the `moves` text of its URL, its caches
(a cached view or picture equals a fresh one, and is computed once), and the charts it shows
without validating them again."""

from __future__ import annotations

import altair as alt
import numpy as np
import pytest

from convlens.activations import SHIPPED_DATA, analyze, open_source
from convlens.charts import layer_averages_chart
from convlens.cnnvis.debugging import LayerAverage
from convlens.cnnvis.drawing import draw, patch_crops, selection_names
from convlens.cnnvis.view import (
    Options,
    build_view,
    format_moves,
    parse_moves,
    row_orders,
    with_move,
)
from convlens.graph import build_graph
from convlens.models import ModelKey, load_model
from convlens.ui.cnnvis import caches
from convlens.ui.cnnvis.caches import (
    Look,
    ViewKey,
    cached_ordered_view,
    cached_picture,
    cached_row_orders,
    cached_view,
)
from convlens.ui.vega import with_arrow_datasets

MODEL = "fashion_basecnn_x0.25"


def test_moves_are_read_back_as_written() -> None:
    moves = (("features.conv4_3", 7, 2), ("classifier.fc1", 0, 11), ("features.conv4_3", 12, 0))
    text = format_moves(moves)
    assert text == "features.conv4_3:7>2,classifier.fc1:0>11,features.conv4_3:12>0"
    assert parse_moves(text) == moves
    assert format_moves(parse_moves(text)) == text
    assert parse_moves("") == () and format_moves(()) == ""
    assert parse_moves("a.b:1>2;c:3>4") == (("a.b", 1, 2), ("c", 3, 4))  # older links


@pytest.mark.parametrize(
    "text",
    ["garbage", "features.conv4_3>2", "features.conv4_3:7", "x:seven>2", "x:7>two", "x:7>2>3", ","],
)
def test_a_move_that_does_not_read_is_left_out(text: str) -> None:
    assert parse_moves(text) == ()
    assert parse_moves(f"{text},x:1>2") == (("x", 1, 2),)


def test_a_new_move_of_a_neuron_replaces_its_earlier_one() -> None:
    moves = (("a", 1, 2), ("b", 1, 0))
    assert with_move(moves, "a", 1, 3) == (("b", 1, 0), ("a", 1, 3))
    assert with_move(moves, "a", 2, 0) == (*moves, ("a", 2, 0))


@pytest.fixture(scope="module")
def small_view():
    model = load_model(MODEL)
    graph = build_graph(model.module, model.input_size)
    return model, graph, analyze(model, SHIPPED_DATA, limit=200, cache=False)


def test_the_cached_view_and_picture_equal_fresh_ones_and_are_computed_once(
    small_view, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, graph, analysis = small_view
    for cache in (cached_view, cached_row_orders, cached_picture):
        cache.clear()
    builds, drawings = [], []
    monkeypatch.setattr(
        caches, "build_view", lambda *a, **k: builds.append(a) or build_view(*a, **k)
    )
    monkeypatch.setattr(caches, "draw", lambda *a, **k: drawings.append(a) or draw(*a, **k))
    options = Options(expanded=("g2", "g3"), moves=(("features.conv3_1", 0, 0),))
    key = ViewKey(ModelKey.of(MODEL), SHIPPED_DATA, options)
    views = [cached_view(key, analysis) for _ in range(3)]
    look = Look(facet="activations", palette="blue / orange")
    pictures = [cached_picture(key, look, (("features.conv3_1", 0),), analysis) for _ in range(3)]
    ordered = [cached_ordered_view(key, analysis) for _ in range(2)]
    assert len(builds) == 1 and len(drawings) == 1  # identical requests compute once

    fresh = build_view(MODEL, model.module, graph, analysis, options)
    for view in views:
        assert view.to_json() == fresh.to_json()
        for node, layer in fresh.layers.items():
            assert np.array_equal(view.layers[node].vectors, layer.vectors)
            assert np.array_equal(view.layers[node].clusters.labels, layer.clusters.labels)
            assert view.layers[node].orders is None  # left for the activations facet
        assert [b.aggregated.tolist() for b in view.bundles] == [
            b.aggregated.tolist() for b in fresh.bundles
        ]
    for view in ordered:
        for node, layer in fresh.layers.items():
            assert all(map(np.array_equal, view.layers[node].orders, layer.orders))
    source = open_source(SHIPPED_DATA)
    with alt.theme.enable("none"):  # as Streamlit draws a chart
        fresh_picture = draw(
            fresh,
            patch_crops(source.load, model.transform),
            facet="activations",
            palette="blue / orange",
            highlight={("features.conv3_1", 0)},
        )
    drawn = fresh_picture.to_dict()  # validated against Vega-Lite's schema here, not on the page
    # as the page sends it: the layers' data as named Arrow datasets beside the spec
    assert all(p == with_arrow_datasets(fresh_picture.with_datasets()) for p in pictures)
    assert selection_names(drawn) == ["group", "neuron"]

    other = ViewKey(key.model, SHIPPED_DATA, Options(expanded=("g3",)))
    assert cached_view(other, analysis).to_json() != fresh.to_json()
    assert len(builds) == 2


def test_the_layer_averages_chart_is_valid_and_logarithmic_for_gradients() -> None:
    averages = [
        LayerAverage(step, node, value)
        for step, values in ((0, (0.0, 2e-3)), (10, (1e-4, 5e-5)))
        for node, value in zip(("features.conv1", "classifier.fc1"), values, strict=True)
    ]
    nodes = ("features.conv1", "classifier.fc1")
    spec = layer_averages_chart(averages, nodes, 10, "gradient").to_dict()  # validated
    assert spec["encoding"]["y"]["scale"]["type"] == "log"
    assert spec["encoding"]["x"]["sort"] == ["conv1", "fc1"]
    rows = next(iter(spec["datasets"].values()))
    assert len(rows) == 3  # the zero is left out of a log scale
    assert [r["current"] for r in rows] == [False, True, True]
    weights = layer_averages_chart(averages, nodes, 0, "weight").to_dict()
    assert weights["encoding"]["y"]["scale"]["type"] == "linear"
    assert len(next(iter(weights["datasets"].values()))) == 4


def test_the_folded_flags_say_how_many_of_each_there_are() -> None:
    from convlens.cnnvis.view import QualityFlag
    from convlens.ui.cnnvis.flags import flags_summary

    flags = [
        QualityFlag("a", "impure cluster", "c0", "", (1, 2, 3)),
        QualityFlag("a", "redundant neurons", "4, 5", "", (4, 5)),
        QualityFlag("a", "dead neurons", "6, 7", "", (6, 7)),
        QualityFlag("b", "impure cluster", "c2", "", (0,)),
        QualityFlag("b", "dead neurons", "9", "", (9,)),
    ]
    assert flags_summary(flags) == (
        "Quality flags: 2 impure clusters, 1 group of redundant neurons, 3 dead neurons"
    )
    assert flags_summary([]) == (
        "Quality flags: 0 impure clusters, 0 groups of redundant neurons, 0 dead neurons"
    )
    assert flags_summary(flags[3:], "m").startswith(
        "Quality flags of m: 1 impure cluster, 0 groups"
    )


def test_a_layer_is_ordered_once_for_the_views_that_cluster_it_alike(
    small_view, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, graph, analysis = small_view
    for cache in (cached_view, cached_row_orders):
        cache.clear()
    ordered = []
    monkeypatch.setattr(
        caches,
        "row_orders",
        lambda vectors, clusters: ordered.append(1) or row_orders(vectors, clusters),
    )
    views = {}
    for groups in (("g3",), ("g2", "g3"), ("g2", "g3")):
        options = Options(expanded=groups, clusters=4)
        key = ViewKey(ModelKey.of(MODEL), SHIPPED_DATA, options)
        views[groups] = cached_ordered_view(key, analysis)
    g2, g3 = (graph.group(g).nodes for g in ("g2", "g3"))
    shown = {
        group: [n for n in nodes if n in views[("g2", "g3")].layers]
        for group, nodes in (("g2", g2), ("g3", g3))
    }
    # g3's layers once for both views, then g2's; the repeated view orders nothing
    assert len(ordered) == len(shown["g3"]) + len(shown["g2"])
    for groups, view in views.items():
        fresh = build_view(
            MODEL, model.module, graph, analysis, Options(expanded=groups, clusters=4)
        )
        for node, layer in fresh.layers.items():
            assert all(map(np.array_equal, view.layers[node].orders, layer.orders))
    # another clustering of the same layer is ordered again
    other = ViewKey(ModelKey.of(MODEL), SHIPPED_DATA, Options(expanded=("g3",), clusters=3))
    cached_ordered_view(other, analysis)
    assert len(ordered) == 2 * len(shown["g3"]) + len(shown["g2"])
