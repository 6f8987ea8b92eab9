"""Hierarchical rectangle packing of neurons' learned features (CNNVis section 6.2.1)."""

from __future__ import annotations

import numpy as np


def pack_rectangles(
    importance: np.ndarray, width: float, height: float, similarity: np.ndarray | None = None
) -> np.ndarray:
    raise NotImplementedError
