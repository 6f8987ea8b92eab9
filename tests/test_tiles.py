"""Colour maps and tiles."""

import numpy as np
from PIL import Image

from convlens.tiles import (
    DIVERGING,
    SEQUENTIAL,
    diverging,
    gradient_magnitude,
    overlay,
    sequential,
    tile,
)


def test_diverging_is_white_at_zero_and_saturates_at_the_scale():
    rgb = diverging(np.array([[-2.0, -1.0, 0.0, 1.0, 2.0]]), scale=1.0)
    assert rgb.shape == (1, 5, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 2]) == (247, 247, 247)
    assert tuple(rgb[0, 0]) == tuple(rgb[0, 1]) == tuple(DIVERGING[0].astype(int))
    assert tuple(rgb[0, 3]) == tuple(rgb[0, 4]) == tuple(DIVERGING[-1].astype(int))
    # halfway between two palette colours
    half = diverging(np.array([[0.1]]), scale=1.0)[0, 0]
    assert tuple(half) == tuple(np.round((DIVERGING[5] + DIVERGING[6]) / 2).astype(int))


def test_sequential_grows_brighter_and_an_all_zero_map_is_the_first_colour():
    rgb = sequential(np.linspace(0, 3, 9)[None, :])
    assert [tuple(c) for c in rgb[0]] == [tuple(c) for c in SEQUENTIAL.astype(np.uint8)]
    assert (sequential(np.zeros((2, 2))) == SEQUENTIAL[0]).all()


def test_gradient_magnitude_and_tiles():
    gradient = np.array([[[1.0, -2.0]], [[-3.0, 0.5]]])
    assert np.allclose(gradient_magnitude(gradient), [[4.0, 2.5]])
    image = tile(np.zeros((3, 3, 3), dtype=np.uint8), 48, label="17")
    assert image.size == (48, 48)
    assert np.asarray(image)[2:8, 2:8].max() > 0  # the label's white box
    assert np.asarray(image)[40:, 40:].max() == 0
    blended = overlay(Image.new("RGB", (20, 10), "white"), np.zeros((2, 2, 3), np.uint8), 0.5)
    assert blended.size == (20, 10) and np.asarray(blended)[0, 0, 0] in (127, 128)
