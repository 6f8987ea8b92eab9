"""Biclustering-based edge bundling (CNNVis section 6.3)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Bicluster:
    inputs: frozenset[int]
    outputs: frozenset[int]
    sign: int
    strength: float
    n_positive: int
    n_negative: int


def bundle_edges(
    weights: np.ndarray, in_labels: np.ndarray, out_labels: np.ndarray, tau: float, threshold: float
) -> list[Bicluster]:
    raise NotImplementedError
