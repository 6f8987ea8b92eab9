"""The forward pass at a glance (CNN Explainer's overview): what one image becomes, layer by layer.

For each conv or linear chain node, its most active channels on the image (by spatial mean, the
summary `LayerMaps.means` and the Filters view's "mean activation" order use) as small pictures on
the diverging colour map of the Filters view, one scale for the node's pictures so that they
compare; a linear node's channels are its strongest units, each a square of its value's colour.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from convlens.attribution import input_view
from convlens.graph import ChainNode
from convlens.hooks import record_outputs
from convlens.tiles import diverging, png_bytes

PREVIEW_CHANNELS = 4
PREVIEW_SIZE = 40
# The colour map's scale: this quantile of the shown channels' |activation|, so that a few
# extreme positions (common after a linear bottleneck) do not leave every picture pale.
SCALE_QUANTILE = 0.99
# The input image's picture: larger than a channel's, as the chain's first row.
INPUT_SIZE = 56


@dataclass(frozen=True)
class NodePreview:
    """A chain node's most active channels on one image, strongest first."""

    node: str
    channels: tuple[int, ...]
    values: tuple[float, ...]  # each channel's spatial mean activation (a unit's value)
    scale: float  # the colour map's ends: ±`SCALE_QUANTILE` of the shown channels' |activation|
    pictures: tuple[bytes, ...]  # PNG, size x size pixels, one per channel


def most_active(means: np.ndarray, count: int) -> tuple[int, ...]:
    """Return the `count` channels with the highest `means`, highest first (ties: the lower
    channel first)."""
    return tuple(int(c) for c in np.argsort(-np.asarray(means), kind="stable")[:count])


def thumbnail(values: np.ndarray, scale: float, size: int) -> bytes:
    """Return the 2-D `values` on the diverging map (±`scale` at its ends) as a PNG of a
    `size`-pixel square: larger maps averaged down (every position counts), smaller ones
    magnified without blurring (each position stays a visible cell). PNG because the chain
    draws it in the browser, and a cached PNG costs a page view nothing to encode."""
    values = np.asarray(values, dtype=np.float32)
    if max(values.shape) > size:  # average the values, not their colours
        values = np.asarray(Image.fromarray(values).resize((size, size), Image.Resampling.BOX))
    return square_png(Image.fromarray(diverging(values, scale)), size)


def square_png(image: Image.Image, size: int) -> bytes:
    """Return `image` resized to a `size`-pixel square as PNG: averaged down when larger,
    magnified without blurring when smaller."""
    shrinking = max(image.size) > size
    resample = Image.Resampling.BOX if shrinking else Image.Resampling.NEAREST
    return png_bytes(image.convert("RGB").resize((size, size), resample))


def node_preview(
    node: str, maps: np.ndarray, count: int = PREVIEW_CHANNELS, size: int = PREVIEW_SIZE
) -> NodePreview:
    """Return the preview of one node from its output `maps` (channels, h, w); a linear node's
    units are (units, 1, 1)."""
    maps = np.asarray(maps, dtype=np.float64)
    means = maps.reshape(len(maps), -1).mean(axis=1)
    channels = most_active(means, count)
    shown = np.abs(maps[list(channels)])
    scale = float(np.quantile(shown, SCALE_QUANTILE)) if shown.size else 0.0
    return NodePreview(
        node=node,
        channels=channels,
        values=tuple(float(means[c]) for c in channels),
        scale=scale,
        pictures=tuple(thumbnail(maps[c], scale, size) for c in channels),
    )


@dataclass(frozen=True)
class ForwardPass:
    """One image through the network: the input as the model sees it, each node's preview."""

    input_picture: bytes  # PNG, `INPUT_SIZE` pixels square
    previews: dict[str, NodePreview]  # by chain node id: the conv and linear nodes


def forward_pass(
    model: nn.Module,
    transform: Callable[[Image.Image], torch.Tensor],
    image: Image.Image,
    nodes: Iterable[ChainNode],
    count: int = PREVIEW_CHANNELS,
    size: int = PREVIEW_SIZE,
) -> ForwardPass:
    """Return the previews of the conv and linear `nodes` for `image`, preprocessed by
    `transform`: one forward pass on the model's device, read at each node's activation layer;
    the model keeps no hooks."""
    wanted = [node for node in nodes if node.type in ("conv", "linear")]
    device = next(model.parameters()).device
    x = transform(image).unsqueeze(0).to(device)
    with torch.no_grad(), record_outputs(model, {n.activation_layer for n in wanted}) as outputs:
        model(x)
    previews = {}
    for node in wanted:
        output = outputs[node.activation_layer][0].float().cpu().numpy()
        maps = output.reshape(len(output), 1, 1) if output.ndim == 1 else output
        previews[node.id] = node_preview(node.id, maps, count, size)
    return ForwardPass(square_png(input_view(transform, image), INPUT_SIZE), previews)
