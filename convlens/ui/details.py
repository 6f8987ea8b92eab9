"""The details panel of one chain node: its layers' attributes, weights and first-layer filters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from convlens.charts import histogram_chart
from convlens.graph import ChainNode, LayerGraph, field_note, first_conv
from convlens.models import LoadedModel
from convlens.style import FILTER_TILE_SIZE, LAYER_TYPE_NAMES
from convlens.ui.chain import shape_label
from convlens.weights import filter_tiles, layer_weight


def layer_table(graph: LayerGraph, node: ChainNode) -> pd.DataFrame:
    """Return one row per layer of the node, with the attributes the graph knows."""
    rows = []
    for layer_id in node.layers:
        layer = graph.layer(layer_id)
        rows.append(
            {
                "layer": layer.id,
                "type": f"{layer.type} ({layer.class_name})",
                "output": shape_label(layer.output_shape),
                "params": f"{layer.params:,}",
                "neurons": layer.neurons,
                "kernel": _pair(layer.kernel),
                "stride": _pair(layer.stride),
                "padding": layer.padding
                if isinstance(layer.padding, str)
                else _pair(layer.padding),
                "receptive field": "whole image"
                if layer.receptive_field is None
                else f"{layer.receptive_field} px",
                "jump": "" if layer.jump is None else f"{layer.jump} px",
            }
        )
    return pd.DataFrame(rows)


def _pair(value: tuple[int, ...] | None) -> str:
    if value is None:
        return ""
    return str(value[0]) if len(set(value)) == 1 else "×".join(str(v) for v in value)


def tile_grid(tiles: np.ndarray, size: int = FILTER_TILE_SIZE, columns: int = 16) -> Image.Image:
    """Return the filters as one image: a grid of magnified tiles on white."""
    count = len(tiles)
    rows = -(-count // columns)
    gap = 4
    sheet = Image.new("RGB", (columns * (size + gap), rows * (size + gap)), "white")
    for index, tile in enumerate(tiles):
        image = Image.fromarray(tile).resize((size, size), Image.Resampling.NEAREST)
        sheet.paste(image, ((index % columns) * (size + gap), (index // columns) * (size + gap)))
    return sheet


def render_details(graph: LayerGraph, model: LoadedModel, node: ChainNode) -> None:
    """Draw the details of `node`: attributes, receptive field, weight histogram, filters."""
    main = graph.layer(node.id)
    position = [n.id for n in graph.chain].index(node.id) + 1
    st.subheader(f"{position}. {node.id}")
    st.markdown(
        f"**{LAYER_TYPE_NAMES[main.type]}** · group **{node.group}** · "
        f"output **{shape_label(node.output_shape)}** · "
        f"activation read at `{node.activation_layer}`"
    )
    st.markdown(f"Receptive field: {field_note(graph.layer(node.activation_layer))}.")
    st.table(layer_table(graph, node).set_index("layer").T)
    modules = dict(model.module.named_modules())
    weight = layer_weight(modules[main.path])
    if weight is None:
        st.caption("This layer has no weights.")
        return
    st.altair_chart(
        histogram_chart(weight, f"weights of {main.id} ({weight.size:,} values)"), width="stretch"
    )
    first = first_conv(graph)
    if first is not None and first.id == main.id and weight.ndim == 4 and weight.shape[1] in (1, 3):
        st.markdown(f"**The {weight.shape[0]} filters of the first layer** (grey = 0)")
        st.image(tile_grid(filter_tiles(weight)), width="stretch")
