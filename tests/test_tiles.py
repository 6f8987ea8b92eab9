"""Colour maps and tiles."""

import base64
import io

import numpy as np
from PIL import Image

from convlens.tiles import (
    DIVERGING,
    IMAGE_UNDER_GRADIENT,
    SEQUENTIAL,
    block_max,
    diverging,
    empty_tile,
    gradient_magnitude,
    gradient_magnitudes,
    gradient_picture,
    has_gradient,
    overlay,
    photo_url,
    robust_range,
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


def test_a_small_receptive_field_is_shown_over_the_whole_image_not_shrunk_away():
    """A stem neuron of a 224-pixel model sees 3 x 3 pixels: its tile is the whole image, reduced
    by block maxima so that its few pixels stay bright, its strongest pixel at the map's top."""
    gradient = np.zeros((3, 224, 224))
    gradient[:, 100:103, 50:53] = 0.1
    gradient[0, 101, 51] = -5.0
    whole = gradient_picture(gradient)
    assert whole.shape == (224, 224, 3)
    assert tuple(whole[101, 51]) == tuple(SEQUENTIAL[-1].astype(np.uint8))
    assert (whole[:90] == SEQUENTIAL[0]).all(), "the image around the field is dark"
    small = gradient_picture(gradient, size=96)
    assert small.shape == (75, 75, 3)  # 224 pixels in blocks of 3
    assert tuple(small[101 // 3, 51 // 3]) == tuple(SEQUENTIAL[-1].astype(np.uint8))
    assert (small != SEQUENTIAL[0]).any(axis=2).sum() >= 1
    np.testing.assert_array_equal(block_max(np.arange(16.0).reshape(4, 4), 2), [[5, 7], [13, 15]])
    assert gradient_picture(np.zeros((1, 28, 28))).shape == (28, 28, 3)


def test_block_max_is_the_maximum_of_each_block_by_brute_force():
    rng = np.random.default_rng(3)
    for height, width, size in [(224, 224, 64), (227, 225, 64), (30, 17, 8), (9, 9, 9), (5, 12, 4)]:
        values = rng.random((height, width))
        factor = max(1, -(-max(height, width) // size))
        rows, columns = -(-height // factor), -(-width // factor)
        expected = np.array(
            [
                [
                    values[r * factor : (r + 1) * factor, c * factor : (c + 1) * factor].max()
                    for c in range(columns)
                ]
                for r in range(rows)
            ]
        )
        np.testing.assert_array_equal(block_max(values, size), expected)


def test_a_gradient_over_the_image_shows_the_image_where_there_is_no_gradient():
    gradient = np.zeros((3, 64, 64))
    gradient[:, 30:34, 10:14] = 1.0
    image = Image.new("RGB", (64, 64), (0, 0, 0))
    picture = gradient_picture(gradient, image=image)
    assert picture.shape == (64, 64, 3)
    faded_black = round(255 * (1 - IMAGE_UNDER_GRADIENT))
    assert (picture[:20] == faded_black).all(), "the image, faded, around the field"
    assert tuple(picture[31, 11]) == tuple(SEQUENTIAL[-1].astype(np.uint8)), "the field opaque"
    white = gradient_picture(gradient, size=32, image=Image.new("RGB", (64, 64), "white"))
    assert white.shape == (32, 32, 3) and (white[:10] == 255).all()


def test_robust_percentiles_saturate_a_few_extreme_pixels_instead_of_darkening_the_rest():
    values = np.concatenate([np.zeros(5000), np.linspace(1.0, 2.0, 1000), [500.0]])
    low, high = robust_range(values)
    assert 1.0 <= low < 1.05 and 1.95 < high <= 2.0, "zeros and the one extreme pixel do not count"
    picture = gradient_picture(values.reshape(1, 1, -1))
    assert tuple(picture[0, -1]) == tuple(picture[0, -2]) == tuple(SEQUENTIAL[-1].astype(np.uint8))
    assert tuple(picture[0, 5500]) != tuple(SEQUENTIAL[0].astype(np.uint8)), "the rest shows"
    assert robust_range(np.zeros(4)) == (0.0, 0.0)


def test_a_tile_without_gradient_says_so():
    assert not has_gradient(np.zeros((3, 8, 8))) and has_gradient(np.eye(3)[None])
    empty = np.asarray(empty_tile(96, "8", "no gradient"))
    assert empty.shape == (96, 96, 3)
    middle = empty[48:70, 10:86]
    assert len(np.unique(middle.reshape(-1, 3), axis=0)) > 1, "the note is written on the tile"


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


def test_magnitudes_draw_the_same_tiles_as_the_gradients_in_a_third_of_the_memory():
    """The Filters grid caches each filter's magnitude, not its RGB gradient."""
    rng = np.random.default_rng(4)
    gradients = rng.normal(size=(3, 3, 40, 40)) * (rng.random((3, 1, 40, 40)) < 0.3)
    gradients[2] = 0.0
    magnitudes = gradient_magnitudes(gradients)
    assert magnitudes.shape == (3, 1, 40, 40) and magnitudes.dtype == np.float32
    assert magnitudes.nbytes * 3 <= gradients.astype(np.float32).nbytes
    image = Image.new("RGB", (40, 40), "white")
    for gradient, magnitude in zip(gradients, magnitudes, strict=True):
        assert has_gradient(magnitude) == has_gradient(gradient)
        assert np.array_equal(
            gradient_picture(magnitude, 24, image), gradient_picture(gradient, 24, image)
        )
    assert gradient_magnitudes(np.zeros((0, 3, 8, 8))).shape == (0, 1, 8, 8)
    reduced = gradient_magnitudes(gradients, size=24)
    assert reduced.shape == (3, 1, 20, 20), "40 pixels in blocks of 2"
    for gradient, magnitude in zip(gradients, reduced, strict=True):
        assert has_gradient(magnitude) == has_gradient(gradient)
        assert np.array_equal(
            gradient_picture(magnitude, 24, image), gradient_picture(gradient, 24, image)
        )
    assert gradient_magnitudes(np.zeros((0, 3, 8, 8)), size=4).shape == (0, 1, 8, 8)


def test_a_picture_of_photos_is_a_jpeg_close_to_it_whose_white_lines_stay_white():
    rng = np.random.default_rng(0)
    photo = np.kron(rng.integers(0, 256, (12, 12, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    photo[:, 48] = photo[40] = 255  # the white lines between packed patches, one pixel wide
    url = photo_url(Image.fromarray(photo))
    assert url.startswith("data:image/jpeg;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.format == "JPEG" and decoded.size == (96, 96)
    error = np.asarray(decoded, dtype=float) - photo
    assert 10 * np.log10(255**2 / np.mean(error**2)) > 30
    assert np.asarray(decoded)[:, 48].min() > 210 and np.asarray(decoded)[40].min() > 210
    grey = photo_url(Image.fromarray(photo[..., 0]))
    assert Image.open(io.BytesIO(base64.b64decode(grey.split(",", 1)[1]))).mode == "L"
