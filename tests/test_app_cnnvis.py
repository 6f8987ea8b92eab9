"""AppTest of the CNNVis page on the shipped default: the picture, expanding groups, facets,
moving a neuron, the quality flags, a recorded run's debugging information and a model without
classes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pytest
from test_app import all_text, start

from convlens.activations import SHIPPED_DATA, analyze
from convlens.cli import main
from convlens.cnnvis.drawing import HEIGHT, HIGHLIGHT, MATRIX_KEY_LINE, PICTURE_WIDTH
from convlens.models import load_model
from convlens.ui.cnnvis.export import EXPORTED
from convlens.ui.cnnvis.flags import FLAGS_SECTION

FASHION = {"model": "fashion_basecnn_x0.25", "image": "fashion-mnist:test:0"}


@pytest.fixture(scope="module")
def prepared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ConvLens home whose activation cache holds what the shipped models' first start
    prepares, for the models these tests open (analysed once for the module)."""
    home = tmp_path_factory.mktemp("cnnvis_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONVLENS_HOME", str(home))
        for name in ("fashion_basecnn_x0.25", "fashion_deepeyes_small"):
            analyze(load_model(name), SHIPPED_DATA)
    return home


@pytest.fixture(autouse=True)
def analysed(isolated_home: Path, prepared_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVLENS_HOME", str(prepared_home))


def open_cnnvis(query: dict[str, str]):
    at = start(query)
    at.switch_page("pages/cnnvis.py").run(timeout=120)
    assert not at.exception, at.exception
    return at


def chart_spec(chart) -> dict:
    """A chart's Vega-Lite spec as the browser gets it, each layer's named dataset (Arrow bytes
    beside the spec) put back in the layer as its values."""
    spec = json.loads(chart.proto.spec)
    rows = {
        dataset.name: pa.ipc.open_stream(dataset.data.data).read_all().to_pylist()
        for dataset in chart.proto.datasets
    }
    for layer in spec.get("layer", ()):
        if "name" in layer.get("data", {}):
            layer["data"] = {"values": rows[layer["data"]["name"]]}
    return spec


def picture(at) -> dict:
    charts = at.get("vega_lite_chart")
    assert charts, "the page draws the CNNVis picture"
    return chart_spec(charts[0])


def layer_values(spec: dict, mark: str) -> list[dict]:
    return [
        row
        for layer in spec["layer"]
        if layer["mark"]["type"] == mark
        for row in layer["data"]["values"]
    ]


def neuron_squares(spec: dict) -> list[dict]:
    """The features facet's clickable square per neuron (over its cluster's picture)."""
    return [
        row
        for layer in spec["layer"]
        if layer.get("name") == "view_patches"
        for row in layer["data"]["values"]
    ]


def test_default_view_expands_the_last_conv_group_and_packs_patches():
    at = open_cnnvis(FASHION)
    spec = picture(at)
    nodes = {row["node"] for row in layer_values(spec, "image")}
    assert nodes == {"features.conv4_1", "features.conv4_2", "features.conv4_3"}
    assert at.query_params.get("groups") == ["g3"] or at.session_state["groups"] == "g3"
    assert "Quality flags" in all_text(at) or at.expander


def test_expanding_a_group_and_switching_facet_change_the_picture():
    at = open_cnnvis({**FASHION, "groups": "g2,g3"})
    nodes = {row["node"] for row in layer_values(picture(at), "image")}
    assert "features.conv3_1" in nodes and "features.conv4_3" in nodes
    at.segmented_control(key="cnnvis_facet").set_value("activations").run(timeout=120)
    assert not at.exception
    spec = picture(at)
    assert not neuron_squares(spec)  # no patches
    rows = [row for row in layer_values(spec, "rect") if "activations" in row]
    assert {row["node"] for row in rows} == nodes
    classes = load_model("fashion_basecnn_x0.25").class_names
    assert {len(row["activations"].split()) for row in rows} == {len(classes)}
    assert at.session_state["facet"] == "activations"


def test_a_group_a_link_names_twice_is_expanded_once():
    """`groups=g3,g2,g3,...` (a hand-edited or hostile link) expands each group once, and the
    address keeps each once, in the link's order."""
    at = open_cnnvis({**FASHION, "groups": ",".join(["g3", "g2"] * 500)})
    assert at.query_params["groups"] == "g3,g2"
    assert at.multiselect(key="cnnvis_groups").value == ["g3", "g2"]
    nodes = {row["node"] for row in layer_values(picture(at), "image")}
    assert "features.conv3_1" in nodes and "features.conv4_3" in nodes
    assert not at.warning


def test_classes_a_link_asks_for_that_the_model_lacks_are_named_and_left_out():
    at = open_cnnvis({**FASHION, "classes": "3,42,x"})
    assert at.multiselect(key="cnnvis_classes").value == [3]
    assert any("2 of the classes= asked for are not a class number" in w.value for w in at.warning)
    assert at.query_params["classes"] == "3", "the link keeps the classes shown"
    at.run()
    assert not at.warning, "said once"
    fine = open_cnnvis({**FASHION, "classes": "3,7"})
    assert fine.multiselect(key="cnnvis_classes").value == [3, 7] and not fine.warning


def test_moving_a_neuron_by_url_changes_its_cluster_and_can_be_undone():
    at = open_cnnvis({**FASHION, "groups": "g3"})
    before = {(r["node"], r["neuron"]): r["cluster"] for r in neuron_squares(picture(at))}
    node, neuron = (
        "features.conv4_3",
        next(n for (layer, n), c in before.items() if layer == "features.conv4_3" and c == 0),
    )
    clusters = max(c for (layer, _), c in before.items() if layer == node) + 1
    at = open_cnnvis({**FASHION, "groups": "g3", "moves": f"{node}:{neuron}>{clusters}"})
    after = {(r["node"], r["neuron"]): r["cluster"] for r in neuron_squares(picture(at))}
    assert after[(node, neuron)] == clusters  # a cluster of its own
    assert all(after[k] == v for k, v in before.items() if k[0] != node)
    undo = [b for b in at.button if b.label == "Undo the moves (1)"]
    undo[0].click().run(timeout=120)
    assert not at.exception and not at.session_state["moves"]


def test_recorded_run_colours_edges_and_shows_the_layer_averages():
    at = open_cnnvis(
        {"model": "fashion_deepeyes_small", "groups": "g1,g2", "edges": "relative change"}
    )
    spec = picture(at)
    lines = layer_values(spec, "geoshape")
    assert lines and any(row.get("debug") is not None for row in lines)
    charts = at.get("vega_lite_chart")
    assert len(charts) >= 2, "the per-layer average line chart follows the picture"
    assert "relative change" in all_text(at) or "relative change" in charts[1].proto.spec


def test_the_folded_layer_averages_send_no_chart_until_opened():
    at = open_cnnvis({"model": "fashion_deepeyes_small", "groups": "g1,g2"})  # plain weights
    [section] = [e for e in at.expander if e.label == "Recorded run: average weight per layer"]
    assert len(at.get("vega_lite_chart")) == 1, "folded: the picture alone"
    at.session_state["cnnvis_layer_averages"] = True  # the user opens it
    at.run(timeout=120)
    charts = at.get("vega_lite_chart")
    assert len(charts) == 2 and "weight" in charts[1].proto.spec
    at.session_state["groups"] = "g1"  # another view keeps it open
    at.run(timeout=120)
    assert len(at.get("vega_lite_chart")) == 2


def test_a_model_without_labelled_images_explains_and_offers_the_fashion_model():
    at = open_cnnvis({"model": "efficientnet_lite0"})
    assert at.text_input(key="cnnvis_data").value == SHIPPED_DATA  # labelled, offline
    [mismatch] = [i.value for i in at.info if "not trained on" in i.value]
    assert "efficientnet_lite0 was not trained on fashion-mnist:test" in mismatch
    at.text_input(key="cnnvis_data").set_value("samples").run(timeout=120)
    assert not [i for i in at.info if "not trained on" in i.value]
    assert any("no classes" in w.value for w in at.warning)
    [button] = [b for b in at.button if b.label.startswith("Open fashion_basecnn")]
    button.click().run(timeout=120)
    assert at.session_state["model"] == "fashion_basecnn"


def cnnvis_cli(out, *options: str) -> int:
    model = ["--model", "fashion_basecnn_x0.25", "--data", SHIPPED_DATA]
    return main(["cnnvis", *model, "--out", str(out), *options])


def test_cli_writes_json_svg_and_png(tmp_path):
    out = tmp_path / "view.json"
    assert cnnvis_cli(out, "--layers", "features.conv4_3", "--clusters", "3") == 0
    data = json.loads(out.read_text())
    assert [g["id"] for g in data["groups"] if g["expanded"]] == ["g3"]
    assert all(len(layer["clusters"]) == 3 for layer in data["layers"])
    fields = {"inputs", "outputs", "sign", "strength", "n_positive", "n_negative"}
    assert data["bundles"] and fields <= set(data["bundles"][0]["biclusters"][0])
    svg = tmp_path / "view.svg"
    assert cnnvis_cli(svg) == 0
    assert svg.read_text().startswith("<svg") and "<image" in svg.read_text()
    png = tmp_path / "view.png"
    assert cnnvis_cli(png, "--facet", "activations") == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cnnvis_cli(tmp_path / "x.gif") == 2
    for unreadable in ("lots", "²", "0", "-3"):
        assert cnnvis_cli(out, "--clusters", unreadable) == 2
    assert cnnvis_cli(out, "--layers", "features.nope") == 2


def main_sequence(at) -> list:
    """The page's elements in the order they are drawn, each with the types of the blocks that
    hold it under the main area (a column: "column")."""

    def walk(node, blocks: tuple[str, ...]):
        yield node, blocks
        for child in getattr(node, "children", {}).values():
            yield from walk(child, (*blocks, node.type))

    return list(walk(at.main, ()))


def test_comparison_draws_the_other_model_below_with_groups_matched_by_kind():
    """Issue 14: side by side, the activations facet squeezed the first picture to a sliver and
    the second to half the page; now each keeps the page's width, the second below the first,
    and its groups match the expanded ones by kind (conv with conv, fc with fc, from the last)."""
    compare = {**FASHION, "groups": "g3,g4", "compare": "fashion_deepeyes_small"}
    at = open_cnnvis({**compare, "facet": "activations"})
    sequence = main_sequence(at)
    charts = [(i, n) for i, (n, _) in enumerate(sequence) if n.type == "vega_lite_chart"]
    assert len(charts) >= 2
    (first, mine), (second, theirs) = charts[:2]
    # below, not beside: both in the same block, no column, the other model's heading between them
    assert sequence[first][1] == sequence[second][1]
    assert "column" not in sequence[first][1]
    [heading] = [
        i
        for i, (n, _) in enumerate(sequence)
        if n.type == "markdown" and n.value.startswith("**fashion_deepeyes_small**")
    ]
    assert first < heading < second
    assert sequence[heading][0].value.endswith(
        "(conv with conv, fc with fc, counted from the last): g3 → g1, g4 → g2"
    )
    specs = [chart_spec(chart) for chart in (mine, theirs)]
    cells = [
        {row["node"] for row in layer_values(spec, "rect") if "activations" in row}
        for spec in specs
    ]
    assert cells[0] == {
        *(f"features.conv4_{i}" for i in (1, 2, 3)),
        "classifier.fc1",
        "classifier.fc2",
    }
    assert cells[1] == {"features.conv2", "classifier.fc1", "classifier.fc2"}
    for spec in specs:  # each laid out for the page's whole width, not half of it
        assert spec["width"] >= PICTURE_WIDTH * 0.8
        assert spec["height"] == HEIGHT
        # the key under the matrices wraps: a line wider than the page squeezed the picture
        title = spec["title"]
        assert isinstance(title["text"], list) and title["limit"] < spec["width"] * 0.7
        assert all(len(line) <= MATRIX_KEY_LINE for line in title["text"])
    # features facet: the same place, the same groups, patches instead of matrices
    at = open_cnnvis({**compare, "facet": "features"})
    charts = [n for n, _ in main_sequence(at) if n.type == "vega_lite_chart"]
    patches = [{row["node"] for row in layer_values(chart_spec(c), "image")} for c in charts[:2]]
    assert "features.conv2" in patches[1] and "features.conv1" not in patches[1]
    widths = [chart_spec(c)["width"] for c in charts[:2]]
    assert all(width >= PICTURE_WIDTH * 0.8 for width in widths)
    # a lower group with no counterpart in the shallower network expands nothing there
    at = open_cnnvis({**FASHION, "groups": "g1", "compare": "fashion_deepeyes_small"})
    charts = [chart_spec(chart) for chart in at.get("vega_lite_chart")]
    assert {row["node"] for row in layer_values(charts[1], "image")} == set()
    assert any(m.value.endswith("counted from the last): none") for m in at.markdown)
    help_text = at.selectbox(key="cnnvis_compare").help
    assert "below this one" in help_text and "beside" not in help_text


def send_state(at, element, state: dict):
    """Run the page as if the browser sent `state` as the selection state of `element` (a chart
    or a table)."""
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    states = at._tree.get_widget_states()
    states.widgets.append(WidgetState(id=element.proto.id, string_value=json.dumps(state)))
    at._run(states)
    assert not at.exception, at.exception
    return at


def send_picture_state(at, selection: dict):
    """Run the page as if the browser sent `selection` as the picture's state."""
    return send_state(at, at.get("vega_lite_chart")[0], selection)


def test_a_group_click_toggles_it_each_time_and_crafted_points_change_nothing():
    """The picture's group selection toggles: it holds the groups clicked an odd number of times
    since the chart was drawn, and the page flips the group that entered or left it."""
    at = open_cnnvis({"model": "fashion_basecnn_x0.25"})
    groups = at.query_params.get("groups")

    def clicked(*selected: str) -> list[str]:
        points = [{"group": group} for group in selected]
        send_picture_state(at, {"selection": {"group": points, "neuron": []}})
        return at.query_params["groups"].split(",")

    opened = clicked("g2")
    assert "g2" in opened and ",".join(opened) != groups
    assert "g2" not in clicked()  # the same group again: it left the selection, it closes
    closed = at.query_params["groups"]
    assert "g2" in clicked("g2")  # and a third time
    both = clicked("g2", "g1")  # another group joins the selection: it opens, g2 stays
    assert {"g1", "g2"} <= set(both)
    assert clicked("g2", "g1") == both  # a rerun without a click changes nothing
    assert "g1" not in clicked("g2") and "g2" in clicked("g2")
    assert ",".join(clicked()) == closed
    for points in (["group"], ["x"], [[]], "group", [{"group": ["g2"]}], [{"group": None}]):
        send_picture_state(at, {"selection": {"group": points, "neuron": points}})
        assert at.query_params["groups"] == closed


def test_the_last_expanded_group_collapses_and_the_view_without_groups_is_bookmarkable():
    """A click on the only expanded group collapses it (the page once fell back to the default
    group, so that the click seemed to do nothing); `groups=none` keeps every group collapsed in
    a bookmark, and emptying the toolbar's groups does the same."""
    at = open_cnnvis({"model": "fashion_basecnn_x0.25"})
    assert at.query_params["groups"] == "g3"
    send_picture_state(at, {"selection": {"group": [{"group": "g3"}], "neuron": []}})
    assert at.query_params["groups"] == "none"
    assert not layer_values(picture(at), "image"), "no expanded layer: no cluster pictures"
    assert at.multiselect(key="cnnvis_groups").value == []
    send_picture_state(at, {"selection": {"group": [], "neuron": []}})  # g3 clicked again
    assert at.query_params["groups"] == "g3"

    bookmarked = open_cnnvis({"model": "fashion_basecnn_x0.25", "groups": "none"})
    assert not layer_values(picture(bookmarked), "image")
    assert not bookmarked.warning
    bookmarked.multiselect(key="cnnvis_groups").set_value(["g2"]).run(timeout=120)
    assert bookmarked.query_params["groups"] == "g2"
    bookmarked.multiselect(key="cnnvis_groups").set_value([]).run(timeout=120)
    assert bookmarked.query_params["groups"] == "none"
    assert not bookmarked.exception


def framed(spec: dict) -> list[dict]:
    """The neurons framed in the picture (the quality flag selected in the table)."""
    return [
        row
        for layer in spec["layer"]
        if layer["mark"].get("stroke") == HIGHLIGHT
        for row in layer["data"]["values"]
    ]


def flags_label(at) -> str:
    [section] = [e for e in at.expander if e.label.startswith("Quality flags")]
    return section.label


def test_the_flags_table_is_drawn_while_open_and_its_selection_outlines_neurons():
    """The quality flags' table is drawn only while its section is open; its selected row frames
    the flag's neurons in the picture; the section stays open when a group's click changes the
    counts in its label, and folded again it frames nothing."""
    at = open_cnnvis({**FASHION, "groups": "g3"})
    assert not at.dataframe, "folded: no table"
    at.session_state[FLAGS_SECTION] = True  # the user opens it
    at.run(timeout=120)
    [table] = at.dataframe
    assert len(table.value) > 0, "the x0.25 model's conv4 group has flags"
    flagged = table.value.iloc[0]
    send_state(at, table, {"selection": {"rows": [0], "columns": [], "cells": []}})
    outlines = framed(picture(at))
    assert outlines and {row["node"] for row in outlines} == {flagged["layer"]}

    before = flags_label(at)
    at.session_state["groups"] = "g2,g3"
    at.run(timeout=120)
    assert flags_label(at) != before, "the counts of two groups"
    assert len(at.dataframe) == 1, "still open"

    at.session_state[FLAGS_SECTION] = False  # folded
    at.run(timeout=120)
    assert not at.dataframe
    assert not framed(picture(at))


def test_the_export_renders_the_picture_with_its_data_inline():
    """The page sends the picture's data beside its spec; the export for slides renders the same
    picture with its data inline (vl-convert), only when asked."""
    at = open_cnnvis({**FASHION, "groups": "g2,g3"})
    assert EXPORTED not in at.session_state
    assert "Prepare SVG and PNG" not in [button.label for button in at.button], "folded"
    at.session_state["cnnvis_export"] = True  # the user opens the section
    at.run(timeout=120)
    [prepare] = [button for button in at.button if button.label == "Prepare SVG and PNG"]
    prepare.click().run(timeout=120)
    assert not at.exception, at.exception
    _, svg, png = at.session_state[EXPORTED]
    assert png.startswith(b"\x89PNG")
    headers = re.findall(r"<text[^>]*>(g\d ▾ [^<]*)</text>", svg)
    assert {header.split(" ▾ ")[0] for header in headers} == {"g2", "g3"}
    patches = chart_spec(at.get("vega_lite_chart")[0])
    drawn = re.findall(r'aria-roledescription="rect mark"', svg)
    assert len(drawn) >= len(neuron_squares(patches)) > 0


def test_a_view_waiting_for_the_first_start_says_how_far_it_has_come(monkeypatch):
    """fashion_basecnn on the shipped images is not analysed in this home: while the first
    start's preparation runs, the page says how far it has come ("starting" before it has
    counted its images, not "0/0 images"). EfficientNet-Lite0 is not among what it prepares:
    its page offers the analysis instead of promising that it fills in."""
    from convlens.ui.launch import PREPARATION

    monkeypatch.setattr(PREPARATION, "running", True)
    at = open_cnnvis({"model": "fashion_basecnn"})
    [waiting] = [i.value for i in at.info if "prepared in the background" in i.value]
    assert "(starting)" in waiting
    monkeypatch.setattr(PREPARATION, "done", 25_000)
    monkeypatch.setattr(PREPARATION, "total", 70_000)
    at = open_cnnvis({"model": "fashion_basecnn"})
    assert any("(25,000/70,000 images)" in i.value for i in at.info)
    at = open_cnnvis({"model": "efficientnet_lite0"})
    assert not [i for i in at.info if "prepared in the background" in i.value]
    assert [b for b in at.button if b.key == "cnnvis_analyze"]
