"""The details panel of one chain node: its layers' attributes, weights and first-layer filters."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from convlens.graph import ChainNode, LayerGraph, field_note, first_conv
from convlens.models import ModelKey
from convlens.style import FILTER_TILE_SIZE, LAYER_TYPE_NAMES, TILE_COLUMNS, TILE_GAP
from convlens.ui.cache import cached_model, cached_weight_histogram_spec
from convlens.ui.chain import group_label, shape_label
from convlens.weights import filter_tiles, layer_weight


def layer_table(graph: LayerGraph, node: ChainNode) -> pd.DataFrame:
    """Return the node's attributes as one column of text that fits beside the chain: those of
    its conv or linear layer, then a row per layer merged into it (its norm, its activation)."""
    main = graph.layer(node.id)
    rows = {
        "type": main.class_name,
        "output": shape_label(main.output_shape),
        "parameters": f"{main.params:,}",
        "neurons": f"{main.neurons:,}",
        "kernel": _pair_text(main.kernel),
        "stride": _pair_text(main.stride),
        "padding": main.padding if isinstance(main.padding, str) else _pair_text(main.padding),
        "receptive field": "whole image"
        if main.receptive_field is None
        else f"{main.receptive_field} px",
        "jump": "" if main.jump is None else f"{main.jump} px",
    }
    for layer_id in node.layers[1:]:
        layer = graph.layer(layer_id)
        weights = f", {layer.params:,} parameters" if layer.params else ""
        rows[f"then {LAYER_TYPE_NAMES[layer.type]}"] = f"{layer.class_name}{weights} ({layer.id})"
    return pd.DataFrame({"": {key: value for key, value in rows.items() if value}})


def _pair_text(value: tuple[int, ...] | None) -> str:
    if value is None:
        return ""
    return str(value[0]) if len(set(value)) == 1 else "×".join(str(v) for v in value)


def tile_grid(tiles: np.ndarray, size: int = FILTER_TILE_SIZE) -> Image.Image:
    """Return the filters as one image: a grid of magnified tiles on white."""
    rows = -(-len(tiles) // TILE_COLUMNS)
    step = size + TILE_GAP
    sheet = Image.new("RGB", (TILE_COLUMNS * step, rows * step), "white")
    for index, tile in enumerate(tiles):
        image = Image.fromarray(tile).resize((size, size), Image.Resampling.NEAREST)
        sheet.paste(image, ((index % TILE_COLUMNS) * step, (index // TILE_COLUMNS) * step))
    return sheet


def layer_heading(text: str) -> None:
    """A subheading that names a layer by its id, which a narrow column may break after a dot
    (`<wbr>`): with no break opportunity the browser broke "_blocks.2._depthwise_conv" mid-word.
    A zero-width space would do as well but would go along when the id is copied into a command."""
    st.markdown(f"### {html.escape(text).replace('.', '.<wbr>')}", unsafe_allow_html=True)


def render_details(graph: LayerGraph, node: ChainNode, model_key: ModelKey) -> None:
    """Draw the details of `node`: attributes, receptive field, weight histogram, filters."""
    main = graph.layer(node.id)
    position = [n.id for n in graph.chain].index(node.id) + 1
    block = group_label(graph, graph.group(node.group)).partition(" · ")[0]
    layer_heading(node.id)
    st.markdown(
        f"Layer {position} · **{LAYER_TYPE_NAMES[main.type]}** in {block} · "
        f"output **{shape_label(node.output_shape)}**"
    )
    st.markdown(f"Receptive field: {field_note(graph.layer(node.activation_layer))}.")
    if node.type in ("conv", "linear"):
        st.page_link(
            "pages/filters.py",
            label=f"Its {'filters' if node.type == 'conv' else 'units'} on the image",
            icon=":material/grid_view:",
        )
    st.table(layer_table(graph, node), hide_header=True)  # one column of values, no heading
    histogram = cached_weight_histogram_spec(model_key, main.path)
    if histogram is None:
        st.caption("This layer has no weights.")
        return
    st.vega_lite_chart(histogram, width="stretch")
    first = first_conv(graph)
    if first is None or first.id != main.id:
        return
    module = dict(cached_model(model_key).module.named_modules())[main.path]
    weight = layer_weight(module)
    if weight is not None and weight.ndim == 4 and weight.shape[1] in (1, 3):
        st.markdown(f"**The {weight.shape[0]} filters of the first layer** (grey = 0)")
        st.image(tile_grid(filter_tiles(weight)), width="stretch")
