"""Colour maps and tiles."""

import numpy as np
from PIL import Image

from convlens.tiles import (
    DIVERGING,
    SEQUENTIAL,
    diverging,
    gradient_magnitude,
    gradient_picture,
    overlay,
    saturation,
    sequential,
    support_box,
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


def test_a_small_receptive_field_is_cropped_not_shrunk_away():
    """A stem neuron of a 224-pixel model sees 3 x 3 pixels: its picture is a square of 8 (the
    smallest crop) around them, with the strongest pixel at the top of the map."""
    gradient = np.zeros((3, 224, 224))
    gradient[:, 100:103, 50:53] = 0.1
    gradient[0, 101, 51] = -5.0
    assert support_box(gradient_magnitude(gradient)) == (98, 106, 48, 56)
    picture = gradient_picture(gradient)
    assert picture.shape == (8, 8, 3)
    assert tuple(picture[3, 3]) == tuple(SEQUENTIAL[-1].astype(np.uint8))
    # a field of 40 pixels gets a quarter of its side around it; one near the edge stays inside
    assert support_box(np.pad(np.ones((40, 40)), ((0, 184), (100, 84)))) == (0, 60, 90, 150)
    # no pixel, or pixels all over the image: the whole image
    assert gradient_picture(np.zeros((1, 28, 28))).shape == (28, 28, 3)
    assert support_box(np.eye(28)) == (0, 28, 0, 28)


def test_a_few_extreme_pixels_saturate_instead_of_darkening_the_rest():
    # 1,000 pixels of 1 and one of 5: 98% of the total mass (985 of 1,005) lies in values of 1
    assert saturation(np.array([1.0] * 1000 + [5.0])) == 1.0
    # one pixel that holds most of the mass stays the top
    assert saturation(np.array([1.0] * 10 + [100.0])) == 100.0
    assert saturation(np.zeros(4)) == 0.0


def test_a_small_patch_is_shown_outlined_in_its_surroundings():
    from convlens.tiles import CONTEXT_OUTLINE, crop_patch, patch_in_context

    pixels = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)
    image = Image.fromarray(pixels)
    # a 3x3 field at (10, 10): shown in a 14x14 square centred on it, magnified 4 times
    shown = np.asarray(patch_in_context(image, (10, 10, 13, 13), 56))
    assert shown.shape == (56, 56, 3)
    left = top = round((10 + 13 - 14) / 2)  # 4.5 rounds to 4
    inside = shown[
        4 * (10 - top) + 1 : 4 * (13 - top) - 1, 4 * (10 - left) + 1 : 4 * (13 - left) - 1
    ]
    expected = np.kron(pixels[top : top + 14, left : left + 14], np.ones((4, 4), np.uint8))
    assert (inside[..., 0] == expected[25:35, 25:35]).all()  # the field's pixels, grey
    outline = shown[4 * (10 - top), 4 * (10 - left) : 4 * (13 - left)]
    assert (outline == CONTEXT_OUTLINE).all()
    corner = shown[0, 0]
    assert (corner == pixels[top, left]).all()  # the surroundings are the image's own pixels
    # in a corner the square stays inside the image: columns 0-13, rows 14-27
    edge = np.asarray(patch_in_context(image, (0, 25, 3, 28), 56))
    assert (edge[0, 0] == pixels[14, 0]).all() and (edge[0, 55] == pixels[14, 13]).all()
    assert (edge[4 * 11, 0:12] == CONTEXT_OUTLINE).all()  # the field's top edge, row 25
    assert (edge[55, 0:12] == CONTEXT_OUTLINE).all()  # its bottom edge, the image's last row
    # a field of half the image or more is cropped as it is
    assert np.array_equal(
        np.asarray(patch_in_context(image, (0, 0, 14, 14), 28)),
        np.asarray(crop_patch(image, (0, 0, 14, 14), 28)),
    )
