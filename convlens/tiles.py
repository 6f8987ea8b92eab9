"""Arrays as pictures: colour maps for activations and gradients, labelled tiles, overlays.

Activation maps use a diverging map centred on zero (blue below, white at 0, red above) with one
scale for the whole layer, so tiles compare; guided back-propagation images use a sequential map
of the gradient's magnitude over the whole image, each scaled by its own robust percentiles. Both
palettes read with the common colour-vision deficiencies.
"""

from __future__ import annotations

import base64
import functools
import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# ColorBrewer RdBu (reversed): blue for negative, white for zero, red for positive.
DIVERGING = np.array(
    [
        [5, 48, 97],
        [33, 102, 172],
        [67, 147, 195],
        [146, 197, 222],
        [209, 229, 240],
        [247, 247, 247],
        [253, 219, 199],
        [244, 165, 130],
        [214, 96, 77],
        [178, 24, 43],
        [103, 0, 31],
    ],
    dtype=np.float64,
)
# The percentiles of a guided back-propagation image's non-zero magnitudes at the ends of its
# colour map: a few extreme pixels saturate instead of leaving all the others dark.
GRADIENT_PERCENTILES = (1.0, 99.0)
# viridis, sampled at 9 points: dark blue (0) to yellow (1).
SEQUENTIAL = np.array(
    [
        [68, 1, 84],
        [71, 45, 123],
        [59, 82, 139],
        [44, 114, 142],
        [33, 145, 140],
        [40, 174, 128],
        [94, 201, 98],
        [173, 220, 48],
        [253, 231, 37],
    ],
    dtype=np.float64,
)


# A receptive field narrower than this share of the image is shown with its surroundings.
CONTEXT_SHARE = 0.5
CONTEXT_OUTLINE = (255, 127, 0)


def _apply(palette: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to RGB by linear interpolation between the palette's colours."""
    scaled = np.clip(positions, 0.0, 1.0) * (len(palette) - 1)
    low = np.floor(scaled).astype(int)
    high = np.minimum(low + 1, len(palette) - 1)
    fraction = (scaled - low)[..., None]
    return np.round(palette[low] * (1 - fraction) + palette[high] * fraction).astype(np.uint8)


def diverging(values: np.ndarray, scale: float) -> np.ndarray:
    """Return RGB (h, w, 3) of `values` on the diverging map, with ±`scale` at the ends."""
    scale = float(scale) if scale > 0 else 1.0
    return _apply(DIVERGING, 0.5 + 0.5 * np.asarray(values, dtype=np.float64) / scale)


def sequential(values: np.ndarray, top: float | None = None) -> np.ndarray:
    """Return RGB (h, w, 3) of non-negative `values` on the sequential map, `top` at the end."""
    values = np.asarray(values, dtype=np.float64)
    top = float(values.max()) if top is None else float(top)
    return _apply(SEQUENTIAL, values / top if top > 0 else np.zeros_like(values))


def gradient_magnitude(gradient: np.ndarray) -> np.ndarray:
    """Return the per-pixel magnitude (h, w) of a (channels, h, w) gradient image."""
    return np.abs(np.asarray(gradient, dtype=np.float64)).sum(axis=0)


def gradient_magnitudes(gradients: np.ndarray, size: int | None = None) -> np.ndarray:
    """Return the magnitudes (n, 1, h, w) of n (channels, h, w) gradient images in float32: what
    `gradient_picture` draws of each, in a third of an RGB image's memory. With `size`, each is
    reduced by `block_max` as `gradient_picture(..., size)` reduces it: the same tile from a
    sixteenth of the memory for a 224-pixel image and 64-pixel tiles."""
    # summed in float64 without a float64 copy of the images (the same sums, ~8x sooner)
    magnitudes = np.add.reduce(np.abs(gradients), axis=1, dtype=np.float64, keepdims=True)
    magnitudes = magnitudes.astype(np.float32)
    if size is None or len(magnitudes) == 0:
        return magnitudes
    return np.stack([block_max(magnitude[0], size)[None] for magnitude in magnitudes])


def robust_range(values: np.ndarray) -> tuple[float, float]:
    """Return the `GRADIENT_PERCENTILES` of the non-zero entries of non-negative `values`
    ((0, 0) when all are zero): the zeros of a small receptive field's surroundings do not count."""
    nonzero = np.asarray(values, dtype=np.float64)
    nonzero = nonzero[nonzero > 0]
    if nonzero.size == 0:
        return 0.0, 0.0
    low, high = np.percentile(nonzero, GRADIENT_PERCENTILES)
    return float(low), float(high)


# How much of the image shows under a guided back-propagation picture (1: as it is, 0: white).
IMAGE_UNDER_GRADIENT = 0.45


def block_max(values: np.ndarray, size: int) -> np.ndarray:
    """Return 2-D `values` reduced to at most `size` entries a side by the maximum over square
    blocks, so that a few strong pixels stay visible when a large image is drawn small. Blocks at
    the edges that the image does not fill are filled with zeros (the values are magnitudes)."""
    height, width = values.shape
    factor = max(1, -(-max(height, width) // size))
    if factor == 1:
        return values
    if height % factor or width % factor:
        values = np.pad(values, ((0, -height % factor), (0, -width % factor)))
    rows, columns = values.shape[0] // factor, values.shape[1] // factor
    blocks = values.reshape(rows, factor, columns, factor)
    # the maximum of the blocks' entries one offset at a time: ~10x sooner than numpy's maximum
    # over two strided axes (64 guided tiles of 224 pixels: 30 ms -> 3 ms)
    return functools.reduce(
        np.maximum, (blocks[:, i, :, j] for i in range(factor) for j in range(factor))
    )


def gradient_picture(
    gradient: np.ndarray, size: int | None = None, image: Image.Image | None = None
) -> np.ndarray:
    """Return the RGB picture (h, w, 3) of a (channels, h, w) guided back-propagation image: its
    magnitude over the whole image on the sequential map, from its low to its high robust
    percentile (`robust_range`); with `size`, reduced by `block_max` to at most `size` pixels a
    side, so that an early layer's field of a few pixels is not shrunk away in a small tile.

    With `image` (as the network sees it), the picture is drawn over it in faded grey, each
    pixel's opacity growing with its magnitude: a deep layer's small field is then seen where it
    lies on the image rather than as a dot on a dark square."""
    magnitude = gradient_magnitude(gradient)
    if size is not None:
        magnitude = block_max(magnitude, size)
    low, high = robust_range(magnitude)
    if image is None:
        if high <= low:
            return sequential(magnitude)
        return sequential(np.clip(magnitude - low, 0.0, None), top=high - low)
    if high > low:
        strength = np.clip((magnitude - low) / (high - low), 0.0, 1.0)
    else:
        strength = (magnitude > 0).astype(np.float64)
    rows, columns = strength.shape
    grey = np.asarray(
        image.convert("L").resize((columns, rows), Image.Resampling.BILINEAR), dtype=np.float64
    )
    faded = 255.0 - IMAGE_UNDER_GRADIENT * (255.0 - grey)
    opacity = np.sqrt(strength)[..., None]  # a weak but real gradient stays visible
    colour = sequential(strength, top=1.0).astype(np.float64)
    return np.rint(faded[..., None] * (1 - opacity) + colour * opacity).astype(np.uint8)


def has_gradient(gradient: np.ndarray) -> bool:
    """Return whether a guided back-propagation image has any non-zero pixel (none when the
    neuron does not fire or its activation saturates, as ReLU6 does at 6)."""
    return bool(np.any(np.asarray(gradient) != 0))


def tile(rgb: np.ndarray, size: int, label: str | None = None) -> Image.Image:
    """Return `rgb` magnified to `size` pixels (nearest neighbour), with `label` in a corner."""
    image = Image.fromarray(rgb).resize((size, size), Image.Resampling.NEAREST)
    if label:
        draw = ImageDraw.Draw(image)
        font = ImageFont.load_default(size=max(10, size // 6))
        box = draw.textbbox((2, 1), label, font=font)
        draw.rectangle((0, 0, box[2] + 2, box[3] + 2), fill=(255, 255, 255))
        draw.text((2, 1), label, fill=(0, 0, 0), font=font)
    return image


EMPTY_TILE = (224, 224, 224)


def empty_tile(size: int, label: str, note: str) -> Image.Image:
    """Return a grey tile with `label` in a corner and `note` (its lines) in the middle: a picture
    that has nothing to show says why instead of being a silent flat square."""
    image = tile(np.full((1, 1, 3), EMPTY_TILE, dtype=np.uint8), size, label=label)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(10, size // 6))
    draw.multiline_text(
        (size / 2, size * 0.6), note, fill=(60, 60, 60), font=font, anchor="mm", align="center"
    )
    return image


def overlay(image: Image.Image, rgb: np.ndarray, alpha: float = 0.55) -> Image.Image:
    """Return `image` (as grey) with the colour map `rgb` stretched over it, `alpha` opaque."""
    base = image.convert("L").convert("RGB")
    heat = Image.fromarray(rgb).resize(base.size, Image.Resampling.BILINEAR)
    return Image.blend(base, heat, alpha)


def crop_patch(image: Image.Image, box: tuple[int, int, int, int], size: int) -> Image.Image:
    """Return the `box` (x0, y0, x1, y1, in `image` pixels) of `image`, magnified to `size`."""
    return image.crop(box).resize((size, size), Image.Resampling.NEAREST)


def patch_in_context(
    image: Image.Image,
    box: tuple[int, int, int, int],
    size: int,
    share: float = CONTEXT_SHARE,
    colour: tuple[int, int, int] = CONTEXT_OUTLINE,
) -> Image.Image:
    """Return the `box` of `image` magnified to `size`, with its surroundings when it is small.

    An early layer's field (3x3 pixels of a 28x28 image) says little alone: a box narrower than
    `share` of the image's shorter side is shown inside a square of that side around it, clamped
    to the image, and outlined in `colour`; a larger box is cropped as `crop_patch` does.
    """
    x0, y0, x1, y1 = box
    width, height = image.size
    side = round(share * min(width, height))
    if max(x1 - x0, y1 - y0) >= side:
        return crop_patch(image, box, size)
    left = round(min(max((x0 + x1 - side) / 2, 0), width - side))
    top = round(min(max((y0 + y1 - side) / 2, 0), height - side))
    context = crop_patch(image.convert("RGB"), (left, top, left + side, top + side), size)
    scale = size / side
    outline = (
        (x0 - left) * scale,
        (y0 - top) * scale,
        (x1 - left) * scale - 1,
        (y1 - top) * scale - 1,
    )
    ImageDraw.Draw(context).rectangle(outline, outline=colour, width=max(1, size // 48))
    return context


# zlib's fastest level: the app's pictures are small (tiles, patches, previews), and it encodes
# them in about half the time of Pillow's default level for a few per cent more bytes.
PNG_COMPRESSION = 1


def png_bytes(image: Image.Image) -> bytes:
    """Return `image` encoded as PNG."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESSION)
    return buffer.getvalue()


def png_url(png: bytes) -> str:
    """Return PNG bytes as a data URL, as charts and the chain take pictures."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# JPEG quality of pictures made of photos: CNNVis' packed patches of Fashion-MNIST come within
# 37 dB (PSNR) of their PNG, in two thirds of its bytes; pictures of photos in a fraction.
PHOTO_QUALITY = 90


def photo_url(image: Image.Image) -> str:
    """Return a picture made of photos as a JPEG data URL, its colours at full resolution (4:4:4)
    so that the white lines between patches stay sharp. Pictures of few flat colours (matrices,
    tiles, maps) stay PNG."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=PHOTO_QUALITY, subsampling=0)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
