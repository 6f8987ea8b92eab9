"""The chain as drawn by streamlit-agraph: rows, labels, pictures, skip connections."""

from __future__ import annotations

import pytest

from convlens.graph import build_graph
from convlens.models import load_model
from convlens.overview import INPUT_SIZE, NodePreview
from convlens.style import CHAIN_BOX_WIDTH
from convlens.ui.chain import (
    INPUT_ID,
    NO_SELECTION,
    OUTPUT_ID,
    WAYPOINT_PREFIX,
    ChainSelection,
    canvas_height,
    chain_elements,
    chain_rows,
    group_label,
    map_id,
    next_selection,
    parse_map_id,
    row_links,
    scroll_offset,
    skip_lanes,
    tooltip_groups,
)


@pytest.fixture(scope="module")
def efficientnet():
    model = load_model("efficientnet_lite0")
    return build_graph(model.module, model.input_size)


@pytest.fixture(scope="module")
def resnet():
    model = load_model("resnet18")
    return build_graph(model.module, model.input_size)


def test_collapsed_groups_are_one_row_each_named_for_people(efficientnet):
    rows = chain_rows(efficientnet, set())
    assert [row.kind for row in rows] == ["input"] + ["group"] * 6 + ["output"]
    assert [row.y for row in rows] == sorted(row.y for row in rows), "top to bottom"
    second = efficientnet.groups[1]
    assert group_label(efficientnet, second) == "Group g1 · 6 layers · 24×56×56"
    nodes, edges = chain_elements(efficientnet, set(), None)
    labels = {node.id: node.label for node in nodes}
    assert "Group g1" in labels[second.id] and "24×56×56" in labels[second.id]
    assert "▸" in labels[second.id] and "_blocks" not in labels[second.id]
    # a straight chain: input, 6 groups, output, one link between each pair of neighbours
    assert [(e.source, e.to) for e in edges] == list(
        zip([r.id for r in rows], [r.id for r in rows[1:]], strict=False)
    )


def test_an_open_group_has_a_header_that_closes_it_and_numbers_its_layers(efficientnet):
    group = efficientnet.groups[1]
    rows = chain_rows(efficientnet, {group.id})
    header = next(row for row in rows if row.kind == "header")
    assert header.group == group.id and header.id == group.id
    nodes, _ = chain_elements(efficientnet, {group.id}, None)
    drawn = {node.id: node for node in nodes}
    for node_id in group.nodes:
        number = [n.id for n in efficientnet.chain].index(node_id) + 1
        assert drawn[node_id].label.startswith(f"<b>{number} · ")
        assert node_id in drawn[node_id].label
    assert "▾" in drawn[group.id].label


def preview(node: str, channels: tuple[int, ...]) -> NodePreview:
    return NodePreview(
        node, channels, tuple(1.0 for _ in channels), 1.0, tuple(b"png" for _ in channels)
    )


def test_pictures_beside_each_row_are_nodes_that_name_their_filter(efficientnet):
    from convlens.overview import ForwardPass

    last = efficientnet.groups[0].nodes[-1]
    forward = ForwardPass(b"png", {last: preview(last, (5, 2, 9))})
    nodes, _ = chain_elements(efficientnet, set(), None, forward)
    pictures = [node for node in nodes if parse_map_id(node.id)]
    assert [parse_map_id(node.id) for node in pictures] == [(last, 5), (last, 2), (last, 9)]
    assert all(
        node.shape == "image" and node.image.startswith("data:image/png;base64,")
        for node in pictures
    )
    row_y = next(n.y for n in nodes if n.id == efficientnet.groups[0].id)
    assert all(node.y == row_y and node.x > CHAIN_BOX_WIDTH / 2 for node in pictures)
    assert any(node.id == f"{INPUT_ID} picture" for node in nodes)
    assert map_id("layer1.0.relu:2", 7) == "@map layer1.0.relu:2#7"
    assert parse_map_id(map_id("layer1.0.relu:2", 7)) == ("layer1.0.relu:2", 7)
    assert parse_map_id("layer1.0.conv1") is None


def test_skip_connections_run_in_lanes_left_of_the_boxes(resnet):
    everything = {group.id for group in resnet.groups}
    rows = chain_rows(resnet, everything)
    straight, skips = row_links(resnet, rows)
    index = {row.id: i for i, row in enumerate(rows)}
    # neighbours only: a straight link never jumps over a row other than a group's header
    for start, end, _ in straight:
        assert all(row.kind == "header" for row in rows[index[start] + 1 : index[end]])
    assert skips, "ResNet's residual connections are drawn"
    lanes = skip_lanes(rows, skips)
    spans = {source: (index[source], index[targets[-1]]) for source, targets in skips.items()}
    for a in spans:
        for b in spans:
            overlap = not (spans[a][1] < spans[b][0] or spans[b][1] < spans[a][0])
            if a != b and overlap:
                assert lanes[a] != lanes[b], "spans that share a row never share a lane"
    nodes, edges = chain_elements(resnet, everything, None)
    layout = {f"{WAYPOINT_PREFIX}left", f"{WAYPOINT_PREFIX}right"}  # invisible, span the width
    corners = [n for n in nodes if n.id.startswith(WAYPOINT_PREFIX) and n.id not in layout]
    assert corners and all(node.x < -CHAIN_BOX_WIDTH / 2 for node in corners)
    assert {e.source for e in edges} | {e.to for e in edges} <= {node.id for node in nodes}
    assert (INPUT_ID, rows[1].id) in {(e.source, e.to) for e in edges}
    assert any(e.to == OUTPUT_ID for e in edges)


def test_the_output_row_names_the_top_classes_with_percentages(efficientnet):
    from convlens.predict import Prediction

    top = [Prediction("tabby", 281, 0.4711), Prediction("tiger cat", 282, 0.2)]
    nodes, _ = chain_elements(efficientnet, set(), None, predictions=top)
    label = next(node.label for node in nodes if node.id == f"{OUTPUT_ID} classes")
    assert "tabby  <b>47.1%</b>" in label and "tiger cat  <b>20.0%</b>" in label


def test_tooltips_travel_in_groups_named_for_their_text(efficientnet):
    everything = {group.id for group in efficientnet.groups}
    nodes, _ = chain_elements(efficientnet, everything, efficientnet.chain[3].id)
    dicts = [node.to_dict() for node in nodes]
    drawn, groups = tooltip_groups(dicts)
    assert [node["id"] for node in drawn] == [node["id"] for node in dicts]
    assert all("title" not in node for node in drawn)
    for before, after in zip(dicts, drawn, strict=True):
        assert {k: v for k, v in after.items() if k not in ("group", "div")} == {
            k: v for k, v in before.items() if k != "title"
        }
        if before["title"].strip():
            assert groups[after["group"]] == {"title": before["title"]}
        else:  # the corners of the skip connections: no tooltip at all
            assert "group" not in after
    # one group per text: equal texts share one, different texts never do
    texts = {node["title"] for node in dicts if node["title"].strip()}
    assert len(groups) == len(texts)
    # drawn again, an unchanged node is equal to its last drawing (streamlit-agraph sets again
    # only the nodes that differ); the selected layer's box is not
    again, _ = tooltip_groups(
        [n.to_dict() for n in chain_elements(efficientnet, everything, efficientnet.chain[4].id)[0]]
    )
    changed = [a["id"] for a, b in zip(drawn, again, strict=True) if a != b]
    assert changed == [efficientnet.chain[3].id, efficientnet.chain[4].id]
    assert tooltip_groups([{"id": "a", "title": "same"}, {"id": "b", "title": "same"}])[1] == {
        tooltip_groups([{"id": "c", "title": "same"}])[0][0]["group"]: {"title": "same"}
    }


def test_the_scroll_offset_puts_a_row_in_the_middle_of_the_chains_box(efficientnet):
    """Scale 1, the drawing centred on its canvas: the first row needs no scrolling, a row further
    down is scrolled to the box's middle, the last one as far as the canvas lets it, and a row
    that is not drawn (a collapsed group's layer) none."""
    every = {group.id for group in efficientnet.groups}
    rows = chain_rows(efficientnet, every)
    height = canvas_height(rows)
    margin = (height - (rows[-1].y - rows[0].y + INPUT_SIZE)) / 2
    assert scroll_offset(rows, rows[0].id, 470) == 0
    middle = rows[len(rows) // 2]
    centre = margin + INPUT_SIZE / 2 + middle.y - rows[0].y
    assert abs(scroll_offset(rows, middle.id, 470) - (centre - 235)) <= 1
    assert scroll_offset(rows, rows[-1].id, 470) == height - 470, "as far as the box scrolls"
    collapsed = chain_rows(efficientnet, set())
    assert scroll_offset(collapsed, efficientnet.groups[1].nodes[0], 470) == 0


def test_a_click_in_the_chain_leaves_its_data_and_anything_else_draws_the_selection():
    bookmarked = ChainSelection(("a", None), ("a", None))
    # a fresh frame (first drawing, new height, page shown again) draws what the page selects
    assert next_selection(None, ("a", ("a", 3)), False, None) == (
        ChainSelection(("a", ("a", 3)), ("a", ("a", 3))),
        False,
    )
    clicked = ChainSelection(NO_SELECTION, ("b", None))
    assert next_selection(clicked, ("a", None), True, None) == (bookmarked, False)
    # a click: vis-network shows it; a selection the data draws elsewhere is dropped
    assert next_selection(bookmarked, ("b", None), False, "b") == (clicked, False)
    assert next_selection(bookmarked, ("a", None), False, "a") == (bookmarked, False)
    assert next_selection(clicked, ("a", None), False, "a") == (
        ChainSelection(NO_SELECTION, ("a", None)),
        False,
    )
    # a click on the input or the output: vis-network's selection there shows nothing
    assert next_selection(clicked, ("b", None), False, "@input") == (
        ChainSelection(("b", None), ("b", None)),
        False,
    )
    # a run without a click that keeps the selection keeps the drawing
    assert next_selection(clicked, ("b", None), False, None) == (clicked, False)
    # the selection changed by something else: a fresh frame that draws it
    assert next_selection(clicked, ("c", None), False, None) == (
        ChainSelection(("c", None), ("c", None)),
        True,
    )
    # a click after which the page selects more than the node (a filter): the data draws it
    assert next_selection(clicked, ("c", ("c", 1)), False, "c") == (
        ChainSelection(("c", ("c", 1)), ("c", ("c", 1))),
        False,
    )
