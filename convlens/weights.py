"""What the weights of one layer look like: their values and the first layer's filters as images."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

FINGERPRINT_DIGITS = 16


def weights_fingerprint(module: nn.Module) -> str:
    """Return the first 16 hex digits of a SHA-256 over the state dict's names, dtypes, shapes and bytes.

    The same weights give the same fingerprint on any device; changing any one value changes it.
    It reads every weight once: cache it for large models.
    """
    digest = hashlib.sha256()
    state = module.state_dict()
    for name in sorted(state):
        value = state[name]
        if not isinstance(value, torch.Tensor):
            digest.update(f"{name}\0{value!r}\0".encode())
            continue
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:FINGERPRINT_DIGITS]


def layer_weight(module: nn.Module) -> np.ndarray | None:
    """Return the layer's weight tensor as a float array on the CPU, or None if it has none."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        return None
    return weight.detach().float().cpu().numpy()


@dataclass(frozen=True)
class Histogram:
    """Counts of values in bins; `edges` has one more entry than `counts`."""

    counts: np.ndarray
    edges: np.ndarray
    total: int


def weight_histogram(weight: np.ndarray, bins: int = 60) -> Histogram:
    """Return the histogram of all values of `weight` (kept in float32: layers can be huge)."""
    values = np.asarray(weight, dtype=np.float32).ravel()
    counts, edges = np.histogram(values, bins=bins)
    return Histogram(counts=counts, edges=edges, total=int(values.size))


def edge_matrix(weight: torch.Tensor, in_channels: int | None = None) -> torch.Tensor:
    """Sum a conv or linear weight (or its gradient) to one value per (output, input channel).

    A conv kernel is summed over its spatial extent; a linear layer that reads a flattened
    (C, H, W) map is summed per input channel when `in_channels` = C is given, so that its edges
    join the same channels as the conv layers' (CNNVis, section 6.3).
    """
    if weight.dim() > 2:
        return weight.sum(dim=tuple(range(2, weight.dim())))
    if weight.dim() == 2 and in_channels and weight.shape[1] % in_channels == 0:
        return weight.reshape(weight.shape[0], in_channels, -1).sum(dim=2)
    return weight


def filter_tiles(weight: np.ndarray) -> np.ndarray:
    """Return a conv weight (out, in, k, k) with 1 or 3 input channels as uint8 images (out, k, k, 3).

    Each filter is scaled on its own, symmetrically around zero, so that grey means 0 and the
    colours show what the filter responds to (the usual way of showing AlexNet's conv1).
    """
    if weight.ndim != 4 or weight.shape[1] not in (1, 3):
        raise ValueError("filter tiles need a conv weight with 1 or 3 input channels")
    tiles = np.transpose(weight, (0, 2, 3, 1)).astype(np.float64)
    if tiles.shape[-1] == 1:
        tiles = np.repeat(tiles, 3, axis=-1)
    scale = np.abs(tiles).reshape(len(tiles), -1).max(axis=1)
    scale[scale == 0] = 1.0
    tiles = 0.5 + 0.5 * tiles / scale[:, None, None, None]
    return np.clip(np.round(tiles * 255), 0, 255).astype(np.uint8)
