"""2-D maps of high-dimensional points that later points can be placed into (DeepEyes' maps).

`embed` lays points out once; `place` puts new points with the same features (the same probe
patches at a later snapshot, say) into that layout without moving the first ones, so a map does
not jump between snapshots.

Two methods, chosen by the number of points:

- t-SNE (openTSNE, Poličar et al.) from `TSNE_MIN_POINTS` points on: PCA initialisation and a
  fixed seed (the same data gives the same map), perplexity `min(perplexity, (n - 1) / 3)` so that
  every point has the 3 x perplexity neighbours t-SNE's affinities need. New points are placed
  with `TSNEEmbedding.transform`: each starts at the median of its nearest reference points and
  moves a little under the reference map's forces while the reference points stay fixed.
- PCA below that: with a handful of points t-SNE's layout mostly reflects its random start and
  its perplexity cannot be calibrated. The first two principal axes (signs fixed so that each
  axis' largest loading is positive) are exact and deterministic, and new points are projected on
  the same axes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

TSNE_MIN_POINTS = 30
DEFAULT_PERPLEXITY = 30.0
DEFAULT_ITERATIONS = 500
EARLY_EXAGGERATION_ITERATIONS = 250
PLACEMENT_ITERATIONS = 250
EMBEDDING_SEED = 0


@dataclass(frozen=True)
class Embedding:
    """A 2-D layout of reference points, with what `place` needs to add points to it."""

    coordinates: np.ndarray  # (points, 2) float64
    method: str  # "t-SNE" or "PCA"
    perplexity: float | None  # t-SNE's perplexity; None for PCA
    mean: np.ndarray  # (features,) the reference points' mean (PCA's centre)
    axes: np.ndarray  # (2, features) PCA's axes; empty for t-SNE
    model: Any = field(default=None, repr=False, compare=False)  # openTSNE's TSNEEmbedding

    @property
    def points(self) -> int:
        """Return the number of reference points."""
        return len(self.coordinates)

    def describe(self) -> str:
        """Return the method in words, for a caption."""
        if self.method == "PCA":
            return f"PCA (first two principal axes of {self.points} points)"
        return f"t-SNE (openTSNE, perplexity {self.perplexity:.3g}, {self.points} points)"


def _features(features: np.ndarray) -> np.ndarray:
    values = np.asarray(features, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] == 0:
        raise ValueError(f"features must be (points, features), got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("features hold NaN or infinite values")
    return values


def tsne_perplexity(points: int, wanted: float = DEFAULT_PERPLEXITY) -> float:
    """Return the perplexity t-SNE can use on `points` points: at most (points - 1) / 3."""
    return float(max(1.0, min(wanted, (points - 1) / 3)))


def principal_axes(values: np.ndarray, count: int = 2) -> np.ndarray:
    """Return the first `count` principal axes of the centred rows (count, features), padded
    with zero axes when the data has fewer; each axis' largest-magnitude loading is positive."""
    centred = values - values.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    axes = np.zeros((count, values.shape[1]))
    axes[: min(count, len(vt))] = vt[:count]
    for axis in axes:
        if axis.any() and axis[np.argmax(np.abs(axis))] < 0:
            axis *= -1
    return axes


def embed(
    features: np.ndarray,
    *,
    perplexity: float = DEFAULT_PERPLEXITY,
    iterations: int = DEFAULT_ITERATIONS,
    n_jobs: int = 1,
    seed: int = EMBEDDING_SEED,
    min_tsne_points: int = TSNE_MIN_POINTS,
) -> Embedding:
    """Return a 2-D embedding of the rows of `features`: t-SNE, or PCA below `min_tsne_points`."""
    values = _features(features)
    if len(values) == 0:
        raise ValueError("there are no points to embed")
    mean = values.mean(axis=0)
    if len(values) < max(min_tsne_points, 4):
        axes = principal_axes(values)
        return Embedding((values - mean) @ axes.T, "PCA", None, mean, axes)
    from openTSNE import TSNE

    used = tsne_perplexity(len(values), perplexity)
    model = TSNE(
        perplexity=used,
        n_iter=iterations,
        early_exaggeration_iter=EARLY_EXAGGERATION_ITERATIONS,
        initialization="pca",
        n_jobs=n_jobs,
        random_state=seed,
    ).fit(values)
    # openTSNE's `transform` centres the reference map in place (on the middle of its bounding
    # box) before placing points; centring it now keeps the returned map and the placed points
    # in one frame.
    model -= (np.max(model, axis=0) + np.min(model, axis=0)) / 2
    return Embedding(
        np.asarray(model, dtype=np.float64).copy(),
        "t-SNE",
        used,
        mean,
        np.zeros((0, values.shape[1])),
        model,
    )


def place(
    embedding: Embedding, features: np.ndarray, *, iterations: int = PLACEMENT_ITERATIONS
) -> np.ndarray:
    """Return the (points, 2) positions of new points in `embedding`; the reference stays put.

    The new points need the reference's features (e.g. the same layer's filters at another
    snapshot).
    """
    values = _features(features)
    if values.shape[1] != embedding.mean.shape[0]:
        raise ValueError(
            f"the map was made from {embedding.mean.shape[0]} features; these points have "
            f"{values.shape[1]}"
        )
    if len(values) == 0:
        return np.zeros((0, 2))
    if embedding.method == "PCA":
        return (values - embedding.mean) @ embedding.axes.T
    placed = embedding.model.transform(values, n_iter=iterations)
    return np.asarray(placed, dtype=np.float64).copy()


def points_in_box(
    coordinates: np.ndarray, x_range: tuple[float, float], y_range: tuple[float, float]
) -> np.ndarray:
    """Return the indices of the points inside the box (edges included), ascending."""
    points = np.asarray(coordinates, dtype=np.float64).reshape(-1, 2)
    x0, x1 = sorted(map(float, x_range))
    y0, y1 = sorted(map(float, y_range))
    inside = (
        (points[:, 0] >= x0) & (points[:, 0] <= x1) & (points[:, 1] >= y0) & (points[:, 1] <= y1)
    )
    return np.flatnonzero(inside)
