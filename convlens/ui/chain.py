"""The chain of layer nodes with the forward pass of the current image (CNN Explainer's overview).

One row per node, top to bottom: the input image, each conv and linear node with its most active
channels on the image beside it (a click opens that filter in the Filters view), the top classes.
Groups collapse into one row that shows their last conv or linear node's channels. Skip
connections run in lanes left of the nodes, so no line crosses a node or a label.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import streamlit as st
from streamlit_agraph import Config, Edge, Node, _agraph

from convlens.access import whole_number
from convlens.graph import ChainNode, LayerGraph, LayerGroup
from convlens.overview import INPUT_SIZE, PREVIEW_CHANNELS, PREVIEW_SIZE, ForwardPass, NodePreview
from convlens.predict import Prediction
from convlens.style import (
    CHAIN_BOX_WIDTH,
    CHAIN_FONT_SIZE,
    CHAIN_HEADER_PITCH,
    CHAIN_LANE_GAP,
    CHAIN_ROW_PITCH,
    CHAIN_THUMB_GAP,
    CHAIN_VIEW_HEIGHT,
    COLLAPSE_GROUPS_ABOVE,
    DARK_FILL_TYPES,
    EDGE_COLOUR,
    FILTERS_PER_PAGE,
    LAYER_COLOURS,
    LAYER_TYPE_NAMES,
    SELECTED_BORDER,
    SKIP_COLOUR,
)
from convlens.tiles import png_url

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
# Drawn ids that no module path can take (paths are letters, digits, `_`, `.` and `:`).
INPUT_ID = "@input"
OUTPUT_ID = "@output"
MAP_PREFIX = "@map "
WAYPOINT_PREFIX = "@via "
# How many top classes the output row names.
OUTPUT_CLASSES = 3
FILTER_ORDER_BY_NUMBER = "filter number"
# The input and output rows' boxes, an expanded group's header, and the fills that take white text.
END_FILL = "#EEEEEE"
HEADER_FILL = "#F7F0A6"
DARK_FILLS = {LAYER_COLOURS[kind] for kind in DARK_FILL_TYPES}
# The border widths of a selected box and picture, drawn by the data or by vis-network's own
# selection of the node last clicked (`ChainSelection`); the colour is SELECTED_BORDER.
SELECTED_BOX_BORDER = 5
SELECTED_PICTURE_BORDER = 3

# A selection in the chain: the row of the selected layer, and a picture's (layer, channel).
Selection = tuple[str | None, tuple[str, int] | None]
NO_SELECTION: Selection = (None, None)


def shape_label(shape: tuple[int, ...]) -> str:
    """Return an output shape as text, e.g. `64×56×56`."""
    return "×".join(str(v) for v in shape)


def group_label(graph: LayerGraph, group: LayerGroup) -> str:
    """Return a group's name for people: `Group g1 · 6 layers · 24×56×56` (its output). Its id is
    the one CNNVis shows; "Block 2" collided with the modules' own names (EfficientNet's group g1
    holds `_blocks.1` and `_blocks.2`)."""
    count = len(group.nodes)
    output = graph.node(group.nodes[-1]).output_shape
    return f"Group {group.id} · {count} layer{'s' * (count != 1)} · {shape_label(output)}"


def map_id(node_id: str, channel: int) -> str:
    """Return the drawn id of channel `channel`'s picture beside chain node `node_id`."""
    return f"{MAP_PREFIX}{node_id}#{channel}"


def parse_map_id(drawn: str) -> tuple[str, int] | None:
    """Return (chain node id, channel) of a picture's drawn id, or None for any other id."""
    if not drawn.startswith(MAP_PREFIX):
        return None
    node_id, _, channel = drawn[len(MAP_PREFIX) :].rpartition("#")
    number = whole_number(channel)
    return (node_id, number) if number is not None and number >= 0 else None


def preview_node(graph: LayerGraph, nodes: Sequence[str]) -> str | None:
    """Return the node whose channels a row of `nodes` shows: the last conv or linear one."""
    kinds = {"conv", "linear"}
    return next((n for n in reversed(nodes) if graph.node(n).type in kinds), None)


def initial_expanded(graph: LayerGraph) -> set[str]:
    """Return the groups that start expanded: all of them for short chains, none for long ones."""
    if len(graph.chain) <= COLLAPSE_GROUPS_ABOVE:
        return {group.id for group in graph.groups}
    return set()


def visible_nodes(graph: LayerGraph, expanded: set[str]) -> dict[str, str]:
    """Map every chain node id to the id drawn for it: itself, or its group's id when collapsed."""
    return {node.id: node.id if node.group in expanded else node.group for node in graph.chain}


@dataclass(frozen=True)
class Row:
    """One row of the drawn chain: the id drawn there, what it is, its height on the canvas and,
    for a group or its header, the group's id."""

    id: str
    kind: str  # input, node, group (collapsed), header (of an expanded group), output
    y: int
    group: str = ""


def chain_rows(graph: LayerGraph, expanded: set[str]) -> list[Row]:
    """Return the rows top to bottom: the input, each group (collapsed: one row; expanded: a
    header row and its nodes), the output."""
    rows: list[Row] = []
    y = 0

    def add(drawn: str, kind: str, group: str = "") -> None:
        nonlocal y
        pitch = CHAIN_HEADER_PITCH if kind == "header" else CHAIN_ROW_PITCH
        rows.append(Row(drawn, kind, y + pitch // 2, group))
        y += pitch

    add(INPUT_ID, "input")
    for group in graph.groups:
        if group.id in expanded:
            add(group.id, "header", group.id)
            for node_id in group.nodes:
                add(node_id, "node")
        else:
            add(group.id, "group", group.id)
    add(OUTPUT_ID, "output")
    return rows


def canvas_height(rows: Sequence[Row]) -> int:
    """Return the canvas height that shows the rows at full size: vis.js fits the drawing with a
    10% margin and never zooms in, so a canvas 10% taller than the drawing (which ends half a
    picture beyond the first and last rows' centres) draws it at scale 1."""
    drawing = rows[-1].y - rows[0].y + INPUT_SIZE
    return int(drawing * 1.1) + 4


def scroll_offset(rows: Sequence[Row], row_id: str, view_height: int = CHAIN_VIEW_HEIGHT) -> int:
    """Return how far to scroll the chain's box (of `view_height` pixels) to show row `row_id` in
    its middle (0 when that needs no scrolling or the row is not drawn). The drawing is centred
    on the canvas at scale 1 (`canvas_height`)."""
    row = next((row for row in rows if row.id == row_id), None)
    if row is None:
        return 0
    height = canvas_height(rows)
    centre = height / 2 + row.y - (rows[0].y + rows[-1].y) / 2
    return max(min(int(centre - view_height / 2), height - view_height), 0)


def scroll_script(offset: int) -> str:
    """Return the script that scrolls the chain's box by `offset` pixels once the box can scroll
    that far (its height is set by `chain_view_style`), trying for two seconds."""
    return (
        "<script>(() => { const start = Date.now(); const scroll = () => {"
        " const box = document.querySelector('.st-key-chain_view');"
        f" if (box && box.scrollHeight - box.clientHeight >= {offset}) box.scrollTop = {offset};"
        " else if (Date.now() - start < 2000) setTimeout(scroll, 50); }; scroll(); })();</script>"
    )


def _font(colour: str, size: int = CHAIN_FONT_SIZE) -> dict[str, object]:
    # labels mark bold with <b>; module paths hold no `<`, and vis.js draws labels as canvas
    # text, never as HTML
    # <i> marks a module path: smaller, upright
    path = {"size": size - 2, "color": colour, "face": "sans-serif", "mod": ""}
    return {"size": size, "color": colour, "face": "sans-serif", "multi": "html", "ital": path}


def _box(
    drawn: str,
    y: int,
    label: str,
    title: str,
    fill: str,
    selected: bool = False,
    x: int = 0,
    width: int = CHAIN_BOX_WIDTH,
    border: str | None = None,
    align: str = "center",
    selectable: bool = True,
) -> Node:
    """A box; one not `selectable` (the input, the output) draws no selection nor hover look:
    a click on it selects no layer (vis-network's own selection moves there, unseen)."""
    text = "#FFFFFF" if fill in DARK_FILLS else "#000000"
    edge = SELECTED_BORDER if selected else border or fill
    look = {"borderWidthSelected": SELECTED_BOX_BORDER} if selectable else {"chosen": False}
    return Node(
        id=drawn,
        x=x,
        y=y,
        label=label,
        title=title,
        shape="box",
        color={
            "background": fill,
            "border": edge,
            "highlight": {"background": fill, "border": SELECTED_BORDER},
            "hover": {"background": fill, "border": SELECTED_BORDER},
        },
        borderWidth=SELECTED_BOX_BORDER if selected else 1,
        font={**_font(text), "align": align},
        margin=8,
        widthConstraint={"minimum": width, "maximum": width},
        **look,
    )


def _picture(drawn: str, x: int, y: int, png: bytes, size: int, title: str, **style) -> Node:
    return Node(
        id=drawn,
        x=x,
        y=y,
        title=title,
        shape="image",
        image=png_url(png),
        size=size // 2,
        shapeProperties={"useBorderWithImage": True, "interpolation": False},
        font={"size": 11, "color": "#444444", "face": "sans-serif", "vadjust": -4},
        **style,
    )


def _picture_x(index: int) -> int:
    """Return the centre of the `index`-th picture right of the boxes."""
    return CHAIN_BOX_WIDTH // 2 + 16 + PREVIEW_SIZE // 2 + index * (PREVIEW_SIZE + CHAIN_THUMB_GAP)


# The pictures' strip right of the boxes: its width and its centre.
PICTURES_WIDTH = PREVIEW_CHANNELS * PREVIEW_SIZE + (PREVIEW_CHANNELS - 1) * CHAIN_THUMB_GAP
PICTURES_CENTRE = _picture_x(0) - PREVIEW_SIZE // 2 + PICTURES_WIDTH // 2


def _channel_title(node: ChainNode, channel: int, value: float, class_names: Sequence[str]) -> str:
    if node.type == "linear":
        name = f" ({class_names[channel]})" if channel < len(class_names) else ""
        what = f"unit {channel}{name}: {value:.2f}"
    else:
        what = f"filter {channel}: mean activation {value:.2f}"
    return f"{node.id} · {what}\nClick to open it in Filters"


def channel_pictures(
    graph: LayerGraph,
    preview: NodePreview,
    y: int,
    class_names: Sequence[str],
    selected_filter: tuple[str, int] | None,
) -> list[Node]:
    """Return a row's pictures of its node's most active channels, each clickable."""
    node = graph.node(preview.node)
    pictures = []
    for index, (channel, value, png) in enumerate(
        zip(preview.channels, preview.values, preview.pictures, strict=True)
    ):
        chosen = selected_filter == (node.id, channel)
        pictures.append(
            _picture(
                map_id(node.id, channel),
                _picture_x(index),
                y,
                png,
                PREVIEW_SIZE,
                _channel_title(node, channel, value, class_names),
                label=str(channel),
                color={
                    "border": SELECTED_BORDER if chosen else LAYER_COLOURS[node.type],
                    "highlight": {"border": SELECTED_BORDER},
                    "hover": {"border": SELECTED_BORDER},
                },
                borderWidth=SELECTED_PICTURE_BORDER if chosen else 1,
                borderWidthSelected=SELECTED_PICTURE_BORDER,
            )
        )
    return pictures


def row_box(graph: LayerGraph, row: Row, number: dict[str, int], selected: str | None) -> Node:
    """Return the box of a layer, group or group header row."""
    if row.kind == "node":
        node = graph.node(row.id)
        kind = SHORT_TYPES[node.type]
        label = f"<b>{number[node.id]} · {kind}</b> · {shape_label(node.output_shape)}\n<i>{node.id}</i>"
        title = (
            f"{node.id} ({graph.layer(node.id).class_name})\n"
            f"output {shape_label(node.output_shape)}\nlayers: {', '.join(node.layers)}"
        )
        return _box(row.id, row.y, label, title, LAYER_COLOURS[node.type], row.id == selected)
    group = graph.group(row.group)
    head, _, shape = group_label(graph, group).rpartition(" · ")
    span = group.label.partition(" · ")[2]
    if row.kind == "header":
        return _box(row.id, row.y, f"▾ {head}", f"{span}: click to close", HEADER_FILL)
    title = f"{span}: click to see its {len(group.nodes)} layers"
    block, _, count = head.partition(" · ")
    label = f"<b>▸ {block}</b> · {count}\n{shape}"
    return _box(row.id, row.y, label, title, LAYER_COLOURS["group"], row.id == selected)


@dataclass(frozen=True)
class ChainSelection:
    """What the chain in the browser shows selected, and how: `drawn`, the selection its data
    draws (bordered boxes and pictures), and `shown`, what the browser is taken to show: `drawn`,
    or the layer clicked in this frame since, which vis-network highlights itself (until a click
    on the chain's background, which vis-network does not report, clears its selection)."""

    drawn: Selection
    shown: Selection


def next_selection(
    last: ChainSelection | None, wanted: Selection, fresh_frame: bool, clicked: str | None
) -> tuple[ChainSelection, bool]:
    """Return what the chain draws selected for the page's selection `wanted`, and whether the
    browser needs a fresh frame of the chain for it.

    `clicked` is the node just clicked in the chain's frame, if any. A click on a layer is drawn
    by vis-network at once, as a selection of its own: the run that follows leaves the chain's
    data as it was, so the browser does not redraw the chain (its wrapper compares every node
    with every other, ~0.2 s for the expanded chain of EfficientNet-Lite0 on two cores); only a
    selection the data draws elsewhere is dropped, once. A click on a node that selects nothing
    (the input, the output: drawn without a selection look) moves vis-network's selection there,
    and the data draws the page's. A frame drawn fresh (a new component, or the page shown
    again) draws `wanted` from its data. A selection changed by anything but a click in the chain
    needs a fresh frame, or vis-network would keep its own beside it.
    """
    if fresh_frame or last is None:
        return ChainSelection(wanted, wanted), False
    if clicked is not None and wanted == (clicked, None):
        drawn = last.drawn if last.drawn == wanted else NO_SELECTION
        return ChainSelection(drawn, wanted), False
    if clicked is not None:
        return ChainSelection(wanted, wanted), False
    if last.shown == wanted:
        return last, False
    return ChainSelection(wanted, wanted), True


def chain_elements(
    graph: LayerGraph,
    expanded: set[str],
    selected: str | None,
    forward: ForwardPass | None = None,
    predictions: Sequence[Prediction] = (),
    class_names: Sequence[str] = (),
    selected_filter: tuple[str, int] | None = None,
) -> tuple[list[Node], list[Edge]]:
    """Return the agraph nodes and edges of the chain with the given groups expanded: a box per
    row, the pictures of `forward` beside the boxes, skip connections in lanes left of them."""
    rows = chain_rows(graph, expanded)
    number = {node.id: index for index, node in enumerate(graph.chain, start=1)}
    nodes: list[Node] = []
    for row in rows:
        if row.kind == "input":
            size = "×".join(str(v) for v in graph.input_size)
            label = f"<b>Input</b> · {size}"
            nodes.append(_box(row.id, row.y, label, "The image", END_FILL, selectable=False))
            if forward is not None:
                nodes.append(
                    _picture(
                        f"{INPUT_ID} picture",
                        _picture_x(0) + (INPUT_SIZE - PREVIEW_SIZE) // 2,
                        row.y,
                        forward.input_picture,
                        INPUT_SIZE,
                        "The image as the network sees it (resized and cropped)",
                        color={"border": "#999999"},
                        borderWidth=1,
                        chosen=False,
                    )
                )
        elif row.kind == "output":
            count = len(class_names) or graph.chain[-1].output_shape[0]
            title = "The most probable classes"
            label = f"<b>Output</b> · {count} classes"
            nodes.append(_box(row.id, row.y, label, title, END_FILL, selectable=False))
            if predictions:
                lines = "\n".join(
                    f"{p.label.replace('<', '‹')}  <b>{p.probability:.1%}</b>"
                    for p in predictions[:OUTPUT_CLASSES]
                )
                nodes.append(
                    _box(
                        f"{OUTPUT_ID} classes",
                        row.y,
                        lines,
                        title,
                        "#FFFFFF",
                        x=PICTURES_CENTRE,
                        width=PICTURES_WIDTH,
                        align="left",
                        selectable=False,
                    )
                )
        else:
            nodes.append(row_box(graph, row, number, selected))
            shown = (
                row.id if row.kind == "node" else preview_node(graph, graph.group(row.group).nodes)
            )
            if row.kind != "header" and forward is not None and shown in forward.previews:
                preview = forward.previews[shown]
                nodes += channel_pictures(graph, preview, row.y, class_names, selected_filter)
    edges, waypoints = chain_edges(graph, rows)
    return nodes + waypoints + layout_corners(graph), edges


def row_links(
    graph: LayerGraph, rows: Sequence[Row]
) -> tuple[list[tuple[str, str, bool]], dict[str, list[str]]]:
    """Return the straight links (start, end, with an arrow) between neighbouring rows, also
    through the header of an expanded group, and the skip connections: each source row's
    targets further down, in order."""
    index = {row.id: i for i, row in enumerate(rows)}
    collapsed = {row.group: row.id for row in rows if row.kind == "group"}
    shown = {
        node.id: node.id if node.id in index else collapsed[node.group] for node in graph.chain
    }
    pairs = {(shown[src], shown[dst]) for src, dst in graph.chain_edges}
    fed = {dst for _, dst in graph.chain_edges}
    feeding = {src for src, _ in graph.chain_edges}
    pairs |= {(INPUT_ID, shown[n.id]) for n in graph.chain if n.id not in fed}
    pairs |= {(shown[n.id], OUTPUT_ID) for n in graph.chain if n.id not in feeding}
    straight: list[tuple[str, str, bool]] = []
    skips: dict[str, list[str]] = {}
    for source, target in sorted(pairs, key=lambda pair: (index[pair[0]], index[pair[1]])):
        if index[target] <= index[source]:
            continue
        between = rows[index[source] + 1 : index[target]]
        if any(row.kind != "header" for row in between):
            skips.setdefault(source, []).append(target)
            continue
        path = [source, *(row.id for row in between), target]
        for start, end in zip(path, path[1:], strict=False):
            if not any(link[:2] == (start, end) for link in straight):
                straight.append((start, end, end == target))
    return straight, skips


def skip_lanes(rows: Sequence[Row], skips: dict[str, list[str]]) -> dict[str, int]:
    """Return the lane of each source's skip connections (0 next to the boxes): the shortest
    spans take the inner lanes, and spans that share a row never share a lane."""
    index = {row.id: i for i, row in enumerate(rows)}
    spans = {source: (index[source], index[targets[-1]]) for source, targets in skips.items()}
    lanes: dict[str, int] = {}
    taken: list[list[tuple[int, int]]] = []
    for source in sorted(spans, key=lambda s: (spans[s][1] - spans[s][0], spans[s][0])):
        start, end = spans[source]
        lane = next(
            (i for i, used in enumerate(taken) if all(end < a or start > b for a, b in used)),
            len(taken),
        )
        if lane == len(taken):
            taken.append([])
        taken[lane].append((start, end))
        lanes[source] = lane
    return lanes


def lane_x(lane: int) -> int:
    """Return the x of a skip connections' lane, left of the boxes."""
    return -(CHAIN_BOX_WIDTH // 2 + 12 + lane * CHAIN_LANE_GAP)


def chain_edges(graph: LayerGraph, rows: Sequence[Row]) -> tuple[list[Edge], list[Node]]:
    """Return the links between rows and the corners of the skip connections: straight down
    between neighbours, and each source's skip connections as one bracket in its lane left of the
    boxes, so that no link crosses a box or a picture."""
    straight, skips = row_links(graph, rows)
    edges = [_link(start, end, arrow) for start, end, arrow in straight]
    y = {row.id: row.y for row in rows}
    corners: list[Node] = []
    for source, lane in skip_lanes(rows, skips).items():
        previous = f"{WAYPOINT_PREFIX}{source}"
        corners.append(_waypoint(previous, lane_x(lane), y[source]))
        edges.append(_link(source, previous, arrow=False, skip=True))
        for target in skips[source]:
            turn = f"{WAYPOINT_PREFIX}{source}>{target}"
            corners.append(_waypoint(turn, lane_x(lane), y[target]))
            edges.append(_link(previous, turn, arrow=False, skip=True))
            edges.append(_link(turn, target, arrow=True, skip=True))
            previous = turn
    return edges, corners


def layout_corners(graph: LayerGraph) -> list[Node]:
    """Return two invisible points that span every layout's width (its lanes when every group
    is open, its pictures): vis.js fits the drawing to the canvas when it is drawn anew, and
    with them a group opened or closed moves nothing sideways nor changes the scale."""
    every = chain_rows(graph, {group.id for group in graph.groups})
    lanes = skip_lanes(every, row_links(graph, every)[1])
    left = lane_x(max(lanes.values(), default=0)) - 2
    right = _picture_x(PREVIEW_CHANNELS - 1) + PREVIEW_SIZE // 2 + 2
    return [
        _waypoint(f"{WAYPOINT_PREFIX}{side}", x, CHAIN_ROW_PITCH // 2, colour="rgba(255,255,255,0)")
        for side, x in (("left", left), ("right", right))
    ]


def _link(source: str, target: str, arrow: bool, skip: bool = False) -> Edge:
    return Edge(
        source=source,
        target=target,
        color=SKIP_COLOUR if skip else EDGE_COLOUR,
        width=1.5 if skip else 2,
        smooth=False,
        arrows={"to": {"enabled": arrow, "scaleFactor": 0.6}},
    )


def _waypoint(drawn: str, x: int, y: int, colour: str = SKIP_COLOUR) -> Node:
    return Node(
        id=drawn,
        x=x,
        y=y,
        label="",
        title=" ",
        shape="dot",
        size=1,
        borderWidth=0,
        color=colour,
        chosen=False,
    )


def chain_config(height: int) -> Config:
    """Return a fixed layout (no physics, positions from the rows) that fits the container."""
    config = Config(
        width=100,
        height=height,
        directed=True,
        physics=False,
        hierarchical=False,
        groups={},
        interaction={
            "navigationButtons": False,
            "zoomView": False,
            "dragView": False,
            "dragNodes": False,
            "hover": True,
            "tooltipDelay": 150,
            # a selection drawn by vis-network looks as one drawn by the data: the box alone
            "selectConnectedEdges": False,
        },
    )
    config.width = "100%"
    return config


def render_chain(
    graph: LayerGraph,
    model_name: str,
    forward: ForwardPass | None,
    predictions: Sequence[Prediction],
    class_names: Sequence[str],
) -> None:
    """Draw the chain in a box of the page's height; a click on a group expands or collapses it,
    on a node selects that layer, on a channel's picture opens that filter in the Filters view.

    A click is acted on before the chain is drawn, so that one run draws its result. The chain
    keeps its component (and its browser frame) while its height stays, and a node's click leaves
    its data as it was: vis-network shows the node selected, and the browser draws nothing anew
    (`next_selection`). A group opened or closed changes the height, and a fresh component (under
    a key never used before, so with no click yet) fits the taller or shorter drawing.
    """
    expanded_key = f"expanded_groups:{model_name}"
    bookmarked = None  # a layer the link names, shown in the chain's box when it is first drawn
    if expanded_key not in st.session_state:
        st.session_state[expanded_key] = initial_expanded(graph)
        requested = st.session_state.get("layer")
        chain_node = graph.chain_node_of(requested) if requested else None
        if chain_node is not None:
            st.session_state[expanded_key].add(graph.node(chain_node).group)
            bookmarked = chain_node
    expanded: set[str] = st.session_state[expanded_key]
    drawn_key = f"chain_drawn:{model_name}"
    drawn: tuple[str, int] | None = st.session_state.get(drawn_key)  # its key and height
    # Streamlit forgets a component's state once a run leaves it out: the page was left, and the
    # browser draws the chain in a new frame
    frame_kept = drawn is not None and drawn[0] in st.session_state
    clicked = None
    if drawn is not None:
        clicked = handle_click(
            chain_rows(graph, expanded),
            drawn[0],
            st.session_state.get(drawn[0]),
            expanded,
            model_name,
        )
    with st.container(horizontal=True, vertical_alignment="center"):
        if st.button("Expand all", key="expand_all", help="Show every layer of every group"):
            expanded.update(group.id for group in graph.groups)
        if st.button("Collapse all", key="collapse_all", help="Show one row per group"):
            expanded.clear()
    layer = st.session_state.get("layer")  # a link may name a layer inside a chain node
    selected = graph.chain_node_of(str(layer)) if layer else None
    rows = chain_rows(graph, expanded)
    shown = visible_nodes(graph, expanded).get(selected) if selected else None
    selected_filter = None
    number = whole_number(str(st.session_state.get("filter", "")))
    if shown == selected and number is not None and number >= 0:
        selected_filter = (shown, number)
    height = canvas_height(rows)
    resized = drawn is None or drawn[1] != height
    selection_key = f"chain_selection:{model_name}"
    selection, needs_frame = next_selection(
        st.session_state.get(selection_key),
        (shown, selected_filter),
        resized or not frame_kept,
        clicked,
    )
    st.session_state[selection_key] = selection
    if drawn is None or resized or needs_frame:
        generation = st.session_state.get(f"chain_generation:{model_name}", 0) + 1
        st.session_state[f"chain_generation:{model_name}"] = generation
        drawn = (f"chain:{model_name}:{generation}", height)
        st.session_state[drawn_key] = drawn
    drawn_layer, drawn_filter = selection.drawn
    nodes, edges = chain_elements(
        graph, expanded, drawn_layer, forward, predictions, class_names, drawn_filter
    )
    key = drawn[0]
    with st.container(height=CHAIN_VIEW_HEIGHT, border=False, key="chain_view"):
        chain_component(nodes, edges, chain_config(height), key)
    st.markdown(chain_view_style(height) + legend_html(graph, expanded), unsafe_allow_html=True)
    offset = scroll_offset(rows, bookmarked) if bookmarked else 0
    if offset:
        st.html(scroll_script(offset), unsafe_allow_javascript=True)


def chain_component(nodes: Sequence[Node], edges: Sequence[Edge], config: Config, key: str) -> None:
    """Draw streamlit-agraph's component under `key`, which its `agraph` function lacks: with a
    key the browser keeps the component's frame when the drawing changes, instead of loading a
    new one (~0.5 s for the expanded chain of EfficientNet-Lite0); its click is read from the
    session state under `key` by the next run. The nodes' tooltips travel in groups
    (`tooltip_groups`)."""
    drawn, groups = tooltip_groups([node.to_dict() for node in nodes])
    data = {"nodes": drawn, "edges": [edge.to_dict() for edge in edges]}
    options = {**config.__dict__, "groups": groups}
    _agraph(data=json.dumps(data), config=json.dumps(options), key=key)


def tooltip_groups(nodes: Sequence[dict]) -> tuple[list[dict], dict[str, dict[str, str]]]:
    """Return the nodes without their tooltips (`title`), each in the vis-network group that
    holds its tooltip, and those groups (named for their text; blank tooltips are left out).

    streamlit-agraph makes each node's title into a new page element every time it draws, so
    that no node ever equals its last drawing: its wrapper then compares every node with every
    other to find the changed ones and sets all of them again (in the expanded chain of
    EfficientNet-Lite0, 286 nodes, ~0.05 s of a click's 0.30). vis-network gives a node the
    options of its group that the node lacks, its title among them; without a title of its own
    an unchanged node stays equal, and only the changed ones are set again. (On a double-click
    streamlit-agraph opens the text of that element as an address: each node carries an empty
    one instead, so that a double-click opens nothing.)
    """
    drawn: list[dict] = []
    groups: dict[str, dict[str, str]] = {}
    for node in nodes:
        plain = {name: value for name, value in node.items() if name != "title"}
        plain["div"] = {"innerHTML": ""}
        title = str(node.get("title") or "")
        if title.strip():
            group = "tooltip " + hashlib.blake2b(title.encode(), digest_size=8).hexdigest()
            groups[group] = {"title": title}
            plain["group"] = group
        drawn.append(plain)
    return drawn, groups


def chain_view_style(height: int) -> str:
    """Return the style of the chain's scrolling box: a border without the padding of a bordered
    container (the chain needs the width), and the height of the chain, kept while a click
    redraws it, so that the box keeps its scroll position instead of jumping to its top."""
    return (
        "<style>.st-key-chain_view { border: 1px solid rgba(49, 51, 63, 0.2); "
        "border-radius: 0.5rem; } "
        f".st-key-chain_view > div {{ min-height: {height}px; }}</style>"
    )


def legend_html(graph: LayerGraph, expanded: set[str]) -> str:
    """Return a one-line legend of the box colours drawn and of the maps' colour map."""
    kinds = list(dict.fromkeys(node.type for node in graph.chain if node.group in expanded))
    if len(expanded) < len(graph.groups):
        kinds.append("group")
    chips = [
        f'<span style="display:inline-block;width:0.9em;height:0.9em;margin:0 0.3em 0 0.9em;'
        f'vertical-align:middle;background:{LAYER_COLOURS[kind]};border-radius:2px"></span>'
        f"{LAYER_TYPE_NAMES[kind]}"
        for kind in kinds
    ]
    maps = (
        '<span style="margin-left:0.9em">maps: <span style="color:#2166AC">■</span> below 0 · '
        '<span style="color:#B2182B">■</span> above 0, one scale per row</span>'
    )
    return f'<div style="font-size:0.9rem;line-height:1.8">{"".join(chips)}{maps}</div>'


def handle_click(
    rows: Sequence[Row], key: str, clicked: str | None, expanded: set[str], model_name: str
) -> str | None:
    """Act on a click in the chain drawn as `rows` by the component `key`, and return the node
    clicked (None when there is no new click): a group opens or closes, a node becomes the
    selected layer, a channel's picture opens that filter in the Filters view.

    The component keeps returning its last click, so a click is acted on once: when it differs
    from the last one acted on. (A second click on the node just clicked changes nothing: the
    layer is selected already; a block's click changes the height, so a fresh component
    takes the next one.)
    """
    last_key = f"last_chain_click:{model_name}"
    # no click yet, the page was left (its components forget theirs), or no node's id (a value
    # the browser sent that the component never does)
    if not isinstance(clicked, str):
        st.session_state[last_key] = None
        return None
    if (key, clicked) == st.session_state.get(last_key):
        return None
    st.session_state[last_key] = (key, clicked)
    row = next((row for row in rows if row.id == clicked), None)
    picture = parse_map_id(clicked)
    if picture is not None:
        open_filter(*picture)
    elif row is not None and row.kind in ("group", "header"):
        expanded.symmetric_difference_update({row.group})
    elif row is not None and row.kind == "node":
        st.session_state["layer"] = clicked
        st.session_state.pop("filter", None)
    return clicked


def open_filter(node_id: str, channel: int) -> None:
    """Switch to the Filters view of filter (or unit) `channel` of chain node `node_id`, on the
    page of its grid that holds it when the grid is in filter-number order."""
    st.session_state["layer"] = node_id
    st.session_state["filter"] = str(channel)
    by_number = st.session_state.get("sort") in (None, FILTER_ORDER_BY_NUMBER)
    st.session_state["page"] = channel // FILTERS_PER_PAGE + 1 if by_number else 1
    st.switch_page("pages/filters.py")
