"""The chain's node labels and layout (drawn by streamlit-agraph)."""

from __future__ import annotations

from convlens.graph import build_graph
from convlens.models import load_model
from convlens.style import COLUMN_GAP, NODES_PER_ROW, ROW_GAP
from convlens.ui.chain import chain_elements, chain_position, wrap_id


def test_module_paths_break_between_parent_and_leaf():
    assert wrap_id("features.conv1") == "features\nconv1"
    assert wrap_id("features.0") == "features.0"
    assert wrap_id("fc") == "fc"
    assert wrap_id("_blocks.11 … _conv_head") == "_blocks.11 …\n_conv_head"


def test_collapsed_groups_wrap_in_rows_and_name_their_span_and_node_numbers():
    model = load_model("efficientnet_lite0")
    graph = build_graph(model.module, model.input_size)
    nodes, edges = chain_elements(graph, set(), None)
    assert [node.id for node in nodes] == [group.id for group in graph.groups]
    first = 1
    for rank, (node, group) in enumerate(zip(nodes, graph.groups, strict=True)):
        last = first + len(group.nodes) - 1
        assert node.label.startswith(f"{node.id} ▸ {first}–{last}\n")
        assert (node.x, node.y) == chain_position(rank)
        first = last + 1
    assert first == len(graph.chain) + 1
    assert "_blocks.11 …\n_conv_head" in "".join(node.label for node in nodes)
    assert len(edges) == len(nodes) - 1


def test_a_node_keeps_its_chain_number_whatever_is_collapsed_before_it():
    """The number a node shows is the one its details heading shows: its place in the chain."""
    model = load_model("efficientnet_lite0")
    graph = build_graph(model.module, model.input_size)
    group = graph.groups[1]
    nodes, _ = chain_elements(graph, {group.id}, None)  # g0 collapsed before it
    drawn = {node.id: node for node in nodes}
    for node_id in group.nodes:
        number = [n.id for n in graph.chain].index(node_id) + 1
        assert drawn[node_id].label.startswith(f"{number} · ")


def test_nodes_wrap_into_rows_like_text():
    assert chain_position(0) == (0, 0)
    assert chain_position(1) == (COLUMN_GAP, 0)
    assert chain_position(NODES_PER_ROW) == (0, ROW_GAP)
