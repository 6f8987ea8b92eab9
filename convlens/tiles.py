"""Arrays as pictures: colour maps for activations and gradients, labelled tiles, overlays.

Activation maps use a diverging map centred on zero (blue below, white at 0, red above) with one
scale for the whole layer, so tiles compare; guided back-propagation images use a sequential map
of the gradient's magnitude. Both palettes read with the common colour-vision deficiencies.
"""

from __future__ import annotations

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


def overlay(image: Image.Image, rgb: np.ndarray, alpha: float = 0.55) -> Image.Image:
    """Return `image` (as grey) with the colour map `rgb` stretched over it, `alpha` opaque."""
    base = image.convert("L").convert("RGB")
    heat = Image.fromarray(rgb).resize(base.size, Image.Resampling.BILINEAR)
    return Image.blend(base, heat, alpha)


def crop_patch(image: Image.Image, box: tuple[int, int, int, int], size: int) -> Image.Image:
    """Return the `box` (x0, y0, x1, y1, in `image` pixels) of `image`, magnified to `size`."""
    return image.crop(box).resize((size, size), Image.Resampling.NEAREST)
