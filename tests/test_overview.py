"""The forward pass at a glance: the most active channels of each node and their pictures."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torch import nn

from convlens.graph import build_graph
from convlens.hooks import count_hooks
from convlens.overview import (
    INPUT_SIZE,
    PREVIEW_SIZE,
    forward_pass,
    most_active,
    node_preview,
    thumbnail,
)
from convlens.tiles import DIVERGING


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_most_active_orders_by_mean_and_breaks_ties_by_channel():
    assert most_active(np.array([0.5, 2.0, -1.0, 2.0, 1.0]), 3) == (1, 3, 4)
    assert most_active(np.array([1.0, 2.0]), 4) == (1, 0)


def test_preview_picks_the_planted_strongest_channels_with_their_means():
    maps = np.zeros((6, 8, 8))
    maps[4] = 3.0  # strongest everywhere
    maps[1, :4] = 4.0  # mean 2.0
    maps[5, 0, 0] = 64.0  # one extreme position: mean 1.0
    maps[2] = -5.0
    preview = node_preview("conv", maps, count=3, size=16)
    assert preview.channels == (4, 1, 5)
    assert preview.values == (3.0, 2.0, 1.0)
    assert len(preview.pictures) == 3
    assert all(pixels(p).shape == (16, 16, 3) for p in preview.pictures)
    # the scale is robust: the one extreme position does not turn the others white
    assert preview.scale < 64.0
    assert tuple(pixels(preview.pictures[0])[0, 0]) != (247, 247, 247)


def test_thumbnail_colours_zero_white_and_the_scale_dark_red_and_magnifies_without_blur():
    values = np.array([[0.0, 2.0], [-2.0, 0.0]])
    picture = pixels(thumbnail(values, scale=2.0, size=40))
    assert picture.shape == (40, 40, 3)
    assert tuple(picture[0, 0]) == tuple(DIVERGING[5])  # zero: white-ish centre of RdBu
    assert tuple(picture[0, 39]) == tuple(DIVERGING[-1])  # +scale: the dark red end
    assert tuple(picture[39, 0]) == tuple(DIVERGING[0])  # -scale: the dark blue end
    # each of the 2 x 2 positions is a flat 20 x 20 cell
    assert len(np.unique(picture[:20, 20:].reshape(-1, 3), axis=0)) == 1


def test_thumbnail_of_a_large_map_averages_it_down():
    values = np.zeros((80, 80))
    values[:, ::2] = 2.0  # stripes finer than a pixel of the picture average to 1.0
    picture = pixels(thumbnail(values, scale=2.0, size=40))
    middle = pixels(thumbnail(np.full((1, 1), 1.0), scale=2.0, size=1))[0, 0]
    assert np.abs(picture.astype(int) - middle.astype(int)).max() <= 3


def test_a_linear_node_shows_its_strongest_units():
    units = np.array([0.1, 5.0, -3.0, 2.0]).reshape(4, 1, 1)
    preview = node_preview("fc", units, count=2, size=8)
    assert preview.channels == (1, 3)
    assert all(len(np.unique(pixels(p).reshape(-1, 3), axis=0)) == 1 for p in preview.pictures)


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, 2)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0, 1, 1] = 1.0  # copies the input
            self.conv.weight[1, 0, 1, 1] = -1.0  # the negated input: all zero after ReLU
            self.conv.weight[2, 0, 1, 1] = 2.0  # twice the input
            self.fc.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


def test_forward_pass_reads_every_conv_and_linear_node_once_and_leaves_no_hooks():
    model = TinyNet().eval()
    graph = build_graph(model, (1, 8, 8))
    image = Image.fromarray((np.arange(64).reshape(8, 8) * 4).astype(np.uint8))

    def transform(picture: Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255)[None]

    result = forward_pass(model, transform, image, graph.chain, count=2)
    assert set(result.previews) == {"conv", "fc"}
    conv = result.previews["conv"]
    assert conv.channels == (2, 0)  # twice the input, then the input; never the negated one
    mean = float(np.arange(64).mean() * 4 / 255)
    assert np.allclose(conv.values, (2 * mean, mean), rtol=1e-5)
    assert result.previews["fc"].channels == (1, 0)  # reads channel 2, twice channel 0's
    assert pixels(result.input_picture).shape == (INPUT_SIZE, INPUT_SIZE, 3)
    assert pixels(conv.pictures[0]).shape == (PREVIEW_SIZE, PREVIEW_SIZE, 3)
    assert count_hooks(model) == 0
