"""The chain of layer nodes, drawn left to right with streamlit-agraph; groups collapse and expand."""

from __future__ import annotations

import streamlit as st
from streamlit_agraph import Config, Edge, Node, agraph

from convlens.graph import LayerGraph
from convlens.style import (
    CHAIN_FONT_SIZE,
    COLLAPSE_GROUPS_ABOVE,
    COLUMN_GAP,
    DARK_FILL_TYPES,
    EDGE_COLOUR,
    EDGE_FONT_SIZE,
    LAYER_COLOURS,
    LAYER_TYPE_NAMES,
    NODE_MAX_WIDTH,
    NODE_MIN_WIDTH,
    NODES_PER_ROW,
    ROW_GAP,
    SELECTED_BORDER,
)

# The height of a row of nodes with its margin, in canvas pixels.
NODE_BAND = 110

SHORT_TYPES = {
    "conv": "conv",
    "linear": "fc",
    "pool": "pool",
    "norm": "norm",
    "activation": "act",
    "dropout": "drop",
    "flatten": "flat",
    "other": "op",
}


def shape_label(shape: tuple[int, ...]) -> str:
    """Return an output shape as text for a link, e.g. `64×56×56`."""
    return "×".join(str(v) for v in shape)


def wrap_id(layer_id: str) -> str:
    """Break a module path over two lines (parent, leaf) so that chain nodes stay narrow; a
    group's span of blocks (`_blocks.11 … _conv_head`) breaks after its first block."""
    if " … " in layer_id:
        first, _, last = layer_id.partition(" … ")
        return f"{first} …\n{last}"
    parent, _, leaf = layer_id.rpartition(".")
    if not parent or leaf.split(":")[0].isdigit():
        return layer_id
    return f"{parent}\n{leaf}"


def chain_position(index: int) -> tuple[int, int]:
    """Return where the `index`-th drawn node goes: left to right, wrapping into rows like text.

    A long chain stays readable on a projector instead of shrinking to fit one line.
    """
    row, column = divmod(index, NODES_PER_ROW)
    return column * COLUMN_GAP, row * ROW_GAP


def chain_height(count: int) -> int:
    """Return the canvas height that shows `count` wrapped nodes at full size: the rows' spacing
    and one row of nodes (three lines of text), no more, since vis.js centres the chain in its
    canvas and would leave the rest blank above and below it."""
    rows = max(1, -(-count // NODES_PER_ROW))
    return (rows - 1) * ROW_GAP + NODE_BAND


def visible_nodes(graph: LayerGraph, expanded: set[str]) -> dict[str, str]:
    """Map every chain node id to the id drawn for it: itself, or its group's id when collapsed."""
    return {node.id: node.id if node.group in expanded else node.group for node in graph.chain}


def initial_expanded(graph: LayerGraph) -> set[str]:
    """Return the groups that start expanded: all of them for short chains, none for long ones."""
    if len(graph.chain) <= COLLAPSE_GROUPS_ABOVE:
        return {group.id for group in graph.groups}
    return set()


def chain_elements(
    graph: LayerGraph, expanded: set[str], selected: str | None
) -> tuple[list[Node], list[Edge]]:
    """Return the agraph nodes and edges of the chain with the given groups expanded."""
    shown = visible_nodes(graph, expanded)
    # a node keeps its number in the whole chain (as its details heading shows it), a collapsed
    # group shows the numbers of its nodes
    number = {node.id: index for index, node in enumerate(graph.chain, start=1)}
    nodes: list[Node] = []
    seen: set[str] = set()
    rank = 0
    for node in graph.chain:
        drawn = shown[node.id]
        if drawn in seen:
            continue
        seen.add(drawn)
        rank += 1
        if drawn == node.id:
            layer = graph.layer(node.id)
            label = f"{number[node.id]} · {SHORT_TYPES[node.type]}\n{wrap_id(node.id)}"
            title = (
                f"{node.id} ({layer.class_name})\n"
                f"output {shape_label(node.output_shape)}\nlayers: {', '.join(node.layers)}"
            )
            colour = LAYER_COLOURS[node.type]
        else:
            group = graph.group(drawn)
            group_id, _, name = group.label.partition(" · ")
            first, last = number[group.nodes[0]], number[group.nodes[-1]]
            label = f"{group_id} ▸ {first}–{last}\n{wrap_id(name)}\n{len(group.nodes)} nodes"
            title = f"{group.label}: {len(group.nodes)} chain nodes — click to expand"
            colour = LAYER_COLOURS["group"]
        is_selected = drawn == selected
        x, y = chain_position(rank - 1)
        nodes.append(
            Node(
                id=drawn,
                x=x,
                y=y,
                label=label,
                title=title,
                color={
                    "background": colour,
                    "border": SELECTED_BORDER if is_selected else colour,
                    "highlight": {"background": colour, "border": SELECTED_BORDER},
                },
                shape="box",
                borderWidth=5 if is_selected else 1,
                font={
                    "size": CHAIN_FONT_SIZE,
                    "color": "#FFFFFF"
                    if drawn == node.id and node.type in DARK_FILL_TYPES
                    else "#000000",
                    "face": "sans-serif",
                },
                margin=10,
                widthConstraint={"minimum": NODE_MIN_WIDTH, "maximum": NODE_MAX_WIDTH},
            )
        )
    order = {node.id: index for index, node in enumerate(nodes)}

    def straight(pair: tuple[str, str]) -> bool:
        source, target = order[pair[0]], order[pair[1]]
        return target == source + 1 and source // NODES_PER_ROW == target // NODES_PER_ROW

    edges: list[Edge] = []
    drawn_edges: set[tuple[str, str]] = set()
    for src, dst in graph.chain_edges:
        pair = (shown[src], shown[dst])
        if pair[0] == pair[1] or pair in drawn_edges:
            continue
        drawn_edges.add(pair)
        edges.append(
            Edge(
                source=pair[0],
                target=pair[1],
                label=shape_label(graph.node(src).output_shape),
                color=EDGE_COLOUR,
                font={"size": EDGE_FONT_SIZE, "align": "top", "background": "#FFFFFF"},
                width=2,
                smooth=False if straight(pair) else {"type": "curvedCW", "roundness": 0.25},
            )
        )
    return nodes, edges


def chain_config(count: int) -> Config:
    """Return a fixed layout (no physics, positions from `chain_position`) that fits the container."""
    config = Config(
        width=100,
        height=chain_height(count),
        directed=True,
        physics=False,
        hierarchical=False,
        groups={},
        interaction={"navigationButtons": False, "zoomView": False, "dragView": True},
    )
    config.width = "100%"
    return config


def render_chain(graph: LayerGraph, model_key: str) -> None:
    """Draw the chain; a click on a group expands it, a click on a node selects that layer."""
    expanded_key = f"expanded_groups:{model_key}"
    selected = st.session_state.get("layer")
    if expanded_key not in st.session_state:
        st.session_state[expanded_key] = initial_expanded(graph)
        chain_node = next(
            (layer.chain_node for layer in graph.layers if layer.id == selected), None
        )
        if chain_node is not None:
            st.session_state[expanded_key].add(graph.node(chain_node).group)
    expanded: set[str] = st.session_state[expanded_key]
    with st.container(horizontal=True):
        if st.button("Expand all", key="expand_all", help="Show every chain node"):
            expanded.update(group.id for group in graph.groups)
        if st.button("Collapse all", key="collapse_all", help="Show one node per group"):
            expanded.clear()
    shown = visible_nodes(graph, expanded)
    nodes, edges = chain_elements(graph, expanded, shown.get(selected, selected))
    st.caption(
        f"{len(graph.chain)} chain nodes in {len(graph.groups)} groups · "
        "colour = layer type · link labels = output size (channels×height×width) · click a node"
    )
    clicked = agraph(nodes=nodes, edges=edges, config=chain_config(len(nodes)))
    st.markdown(legend_html(graph, expanded), unsafe_allow_html=True)
    handle_click(graph, clicked, expanded, f"last_chain_click:{model_key}")


def legend_html(graph: LayerGraph, expanded: set[str]) -> str:
    """Return a one-line legend of the fill colours drawn in the chain."""
    kinds = list(dict.fromkeys(node.type for node in graph.chain if node.group in expanded))
    if len(expanded) < len(graph.groups):
        kinds.append("group")
    chips = [
        f'<span style="display:inline-block;width:0.9em;height:0.9em;margin:0 0.3em 0 0.9em;'
        f'vertical-align:middle;background:{LAYER_COLOURS[kind]};border-radius:2px"></span>'
        f"{LAYER_TYPE_NAMES[kind]}"
        for kind in kinds
    ]
    return f'<div style="font-size:0.95rem">{"".join(chips)}</div>'


def handle_click(graph: LayerGraph, clicked: str | None, expanded: set[str], last_key: str) -> None:
    """Act on a click in the chain: a group expands, a node becomes the selected layer.

    The chain component keeps returning its last click until it is redrawn with other
    arguments, so a click is acted on once, then the page reruns to draw the new state
    (otherwise the next click would go to a component about to be replaced, and be lost).
    """
    if clicked is None:
        st.session_state[last_key] = None
        return
    if clicked == st.session_state.get(last_key):
        return
    st.session_state[last_key] = clicked
    if any(group.id == clicked for group in graph.groups):
        expanded.add(clicked)
    else:
        st.session_state["layer"] = clicked
        st.session_state.pop("filter", None)
    st.rerun()
