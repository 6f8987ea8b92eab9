"""2-D maps of high-dimensional points that later points can be placed into (DeepEyes' maps).

`embed` lays points out once; `place` puts new points with the same features (the same probe
patches at a later snapshot, say) into that layout without moving the first ones, so a map does
not jump between snapshots.

Two methods, chosen by the number of points:

- t-SNE (openTSNE, Poličar et al.) from `TSNE_MIN_POINTS` points on: PCA initialisation and a
  fixed seed (the same data gives the same map), perplexity `min(perplexity, (n - 1) / 3)` so that
  every point has the 3 x perplexity neighbours t-SNE's affinities need, and openTSNE's schedule
  (`EARLY_EXAGGERATION_ITERATIONS` with early exaggeration 12, then `DEFAULT_ITERATIONS`). Two
  choices differ from openTSNE's defaults, for speed on a small CPU at the same quality (10-NN
  preservation 0.518-0.524 over seeds for both on 10,000 conv2 patches, `bench/deepeyes.py`):

  - the nearest neighbours are exact (scikit-learn's brute-force search, a matrix product) up to
    `EXACT_NEIGHBOURS_MAX` points, where openTSNE switches to Annoy at 1,000: for 10,000 points
    of 50 features that is 1.2 instead of 5-6 CPU-seconds;
  - from `GRID_MIN_POINTS` points on, the gradient is computed here (`kl_divergence_gradient`):
    the repulsive forces by FIt-SNE's interpolation on a grid (Linderman et al.) with
    openTSNE's grid, but with scipy's FFT in single precision (`repulsion`), and at the same time
    openTSNE's attractive forces (its compiled loop, which releases the GIL), each on half of
    the `n_jobs` threads. openTSNE's pip wheels compute the grid's convolutions with numpy's
    single-threaded FFT, then the attractive forces: on 10,000 points that took most of the time
    and left the second thread of two mostly idle. The kernels' spectra come from a type-1 DCT of
    one quadrant, and t-SNE's normalisation Z from the spread charges' spectrum and the Cauchy
    kernel's (Parseval) rather than from the squared kernel's terms, which cancel in single
    precision: three transforms each way instead of four. Forces and Z are as close to the exact
    sums as openTSNE's (tested). Below `GRID_MIN_POINTS` the grid's fixed cost loses to
    openTSNE's Barnes-Hut, used there as before.

  New points are placed with `TSNEEmbedding.transform` (openTSNE's own gradients): each starts at
  the median of its nearest reference points and moves a little under the reference map's forces
  while the reference points stay fixed.
- PCA below that: with a handful of points t-SNE's layout mostly reflects its random start and
  its perplexity cannot be calibrated. The first two principal axes (signs fixed so that each
  axis' largest loading is positive) are exact and deterministic, and new points are projected on
  the same axes.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import scipy.fft
import scipy.sparse

TSNE_MIN_POINTS = 30
DEFAULT_PERPLEXITY = 30.0
DEFAULT_ITERATIONS = 500
EARLY_EXAGGERATION_ITERATIONS = 250
# openTSNE's default is 250; placed points have settled by 100 (a shipped run's 1,000 conv2 patches
# of step 900 placed into step 5628's map: median move between 100 and 250 iterations 0 of the
# map's extent, 10-NN preservation 0.363 against 0.369), in 0.43 s instead of 0.93 s.
PLACEMENT_ITERATIONS = 100
EMBEDDING_SEED = 0
EXACT_NEIGHBOURS_MAX = 20_000  # brute force costs n^2: beyond this Annoy is faster
GRID_MIN_POINTS = 5_000  # below, Barnes-Hut is faster than the grid's fixed cost
# FIt-SNE's grid, as openTSNE's defaults: 3 interpolation nodes per box of unit width, at least
# 50 and (as openTSNE's later versions) at most 1,000 boxes a side
GRID_NODES = 3
GRID_MIN_BOXES = 50
GRID_MAX_BOXES = 1_000


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
    tsne, used = _tsne(len(values), perplexity, iterations, n_jobs, seed)
    # TSNE.fit's two phases, with the threaded repulsion on many points; `place` keeps openTSNE's
    # own gradients
    gradient = kl_divergence_gradient if len(values) >= GRID_MIN_POINTS else "bh"
    model = tsne.prepare_initial(values)
    for n_iter, exaggeration, momentum in (
        (tsne.early_exaggeration_iter, tsne.early_exaggeration, tsne.initial_momentum),
        (tsne.n_iter, tsne.exaggeration, tsne.final_momentum),
    ):
        model.optimize(
            n_iter=n_iter,
            exaggeration=exaggeration,
            momentum=momentum,
            inplace=True,
            negative_gradient_method=gradient,
        )
    # openTSNE's `transform` centres the reference map in place (on the middle of its bounding
    # box) before placing points; centring it now keeps the returned map and the placed points
    # in one frame.
    model -= (np.max(model, axis=0) + np.min(model, axis=0)) / 2
    return _tsne_embedding(model, used, mean)


def restore(
    features: np.ndarray,
    coordinates: np.ndarray,
    *,
    perplexity: float = DEFAULT_PERPLEXITY,
    n_jobs: int = 1,
    seed: int = EMBEDDING_SEED,
    min_tsne_points: int = TSNE_MIN_POINTS,
) -> Embedding:
    """Return the embedding that `embed(features, ...)` returned with these `coordinates` (kept in
    a file, say), without laying the points out again: a t-SNE map gets back what `place` needs
    (the features' affinities, openTSNE's settings), a moment's work; a PCA map is recomputed."""
    values = _features(features)
    points = np.asarray(coordinates, dtype=np.float64)
    if points.shape != (len(values), 2):
        raise ValueError(f"{len(values)} points need coordinates (points, 2), got {points.shape}")
    if len(values) < max(min_tsne_points, 4):
        return embed(values, perplexity=perplexity, min_tsne_points=min_tsne_points)
    tsne, used = _tsne(len(values), perplexity, DEFAULT_ITERATIONS, n_jobs, seed)
    model = tsne.prepare_initial(values)  # the affinities and settings `embed` had
    model[:] = points
    return _tsne_embedding(model, used, values.mean(axis=0))


def _tsne(points: int, perplexity: float, iterations: int, n_jobs: int, seed: int) -> tuple:
    """Return openTSNE's TSNE with this module's settings for `points` points, and its perplexity."""
    from openTSNE import TSNE

    used = tsne_perplexity(points, perplexity)
    tsne = TSNE(
        perplexity=used,
        n_iter=iterations,
        early_exaggeration_iter=EARLY_EXAGGERATION_ITERATIONS,
        initialization="pca",
        neighbors="exact" if points <= EXACT_NEIGHBOURS_MAX else "auto",
        n_jobs=n_jobs,
        random_state=seed,
    )
    return tsne, used


def _tsne_embedding(model: Any, perplexity: float, mean: np.ndarray) -> Embedding:
    return Embedding(
        np.asarray(model, dtype=np.float64).copy(),
        "t-SNE",
        perplexity,
        mean,
        np.zeros((0, len(mean))),
        model,
    )


def _lagrange_weights(offsets: np.ndarray) -> np.ndarray:
    """Return the (..., GRID_NODES) weights of the Lagrange polynomials through a box's nodes (at
    (k + 1/2) / GRID_NODES of its width) at `offsets` in [0, 1] inside the box."""
    nodes = (np.arange(GRID_NODES) + 0.5) / GRID_NODES
    weights = np.ones((*offsets.shape, GRID_NODES))
    for k in range(GRID_NODES):
        for m in range(GRID_NODES):
            if m != k:
                weights[..., k] *= (offsets - nodes[m]) / (nodes[k] - nodes[m])
    return weights


def _kernel_spectra(length: int, spacing: float, n_jobs: int) -> np.ndarray:
    """Return the real spectra (`rfft2`'s layout, (2, length, length // 2 + 1)) of the squared
    Cauchy kernel and of the Cauchy kernel between grid nodes `spacing` apart, laid out
    circularly on an even `length` of nodes.

    Every position holds the kernel at its shorter circular lag: a convolution of charges on the
    first `side` nodes, `length >= 2 * side - 1`, reads only lags up to `side - 1`. The layout is
    then even in both axes, so its spectrum is the type-1 DCT of one quadrant, a quarter of the
    work of `rfft2`."""
    half = length // 2
    lag = (np.arange(half + 1, dtype=np.float32) * np.float32(spacing)) ** 2
    cauchy = 1 / (1 + lag[:, None] + lag[None, :])
    quadrant = scipy.fft.dctn(
        np.stack([cauchy * cauchy, cauchy]), type=1, axes=(1, 2), workers=n_jobs
    )
    return np.concatenate([quadrant, quadrant[:, half - 1 : 0 : -1]], axis=1)


def repulsion(points: np.ndarray, n_jobs: int = 1) -> tuple[np.ndarray, float]:
    """Return t-SNE's repulsive forces on the 2-D `points` (the negative part of the gradient of
    the KL divergence, as openTSNE adds it) and the normalisation Z = sum over i != j of
    1 / (1 + |y_i - y_j|^2), by FIt-SNE's interpolation on a grid, its convolutions on `n_jobs`
    threads."""
    n = len(points)
    low = float(points.min())
    extent = float(points.max()) - low
    # openTSNE's grid: boxes of about unit width (GRID_MIN_BOXES to GRID_MAX_BOXES a side) from
    # the smallest coordinate to the largest. (Boxes of exactly unit width, whose kernels could be
    # reused between iterations, spread the same 3,000 points 9% less than openTSNE's grid, which
    # spreads them 23% less than exact forces do, at the same neighbour preservation.)
    boxes = min(max(GRID_MIN_BOXES, int(extent)), GRID_MAX_BOXES)
    width = max(extent, 1e-12) / boxes
    side = GRID_NODES * boxes  # interpolation nodes along each axis

    # each point spreads its charges (1, x, y) onto the 3 x 3 nodes of its box, and later reads
    # the potentials back from them with the same weights: one sparse matrix each way
    position = (points - low) / width
    box = np.minimum(position.astype(np.int32), boxes - 1)
    weights = _lagrange_weights(position - box)  # (n, 2, nodes)
    node = GRID_NODES * box[:, :, None] + np.arange(GRID_NODES, dtype=np.int32)  # (n, 2, nodes)
    weight = (weights[:, 1, :, None] * weights[:, 0, None, :]).ravel()  # (n * nodes^2,)
    rows = np.arange(0, len(weight) + 1, GRID_NODES**2)
    spreading = scipy.sparse.csr_matrix(
        (weight, (node[:, 1, :, None] * side + node[:, 0, None, :]).ravel(), rows),
        shape=(n, side * side),
    )
    charges = np.stack([np.ones(n), points[:, 0], points[:, 1]], axis=1)  # (n, 3)
    grid = np.ascontiguousarray((spreading.T @ charges).T, dtype=np.float32)  # (3, side^2)

    # convolve with the squared kernel: the charges fill one corner of the padded grid, so
    # transform their rows, then the columns
    length = 2 * scipy.fft.next_fast_len(side, real=True)  # even, for _kernel_spectra
    squared, cauchy = _kernel_spectra(length, width / GRID_NODES, n_jobs)
    spectra = scipy.fft.rfft(grid.reshape(3, side, side), n=length, axis=2, workers=n_jobs)
    spectra = scipy.fft.fft(spectra, n=length, axis=1, workers=n_jobs, overwrite_x=True)
    # Z = sum over nodes p, q of w(p) K(p - q) w(q), w the spread ones: by Parseval, the mean of
    # |w's spectrum|^2 times K's spectrum (rfft's middle columns stand for two), less the n
    # self-terms
    power = np.square(spectra[0].real) + np.square(spectra[0].imag)
    power[:, 1:-1] *= 2
    # (summed by numpy, not BLAS: a threaded BLAS call each iteration left OpenBLAS' worker
    # spinning on a core between them)
    z = float(np.multiply(power, cauchy).sum(dtype=np.float64)) / length**2 - n
    # the squared kernel's spectrum is real: scale real and imaginary parts alike
    spectra.view(np.float32)[:] *= np.repeat(squared, 2, axis=1)
    spectra = scipy.fft.ifft(spectra, axis=1, workers=n_jobs, overwrite_x=True)[:, :side]
    potentials = scipy.fft.irfft(spectra, n=length, axis=2, workers=n_jobs)  # (3, side, length)

    # and read them back at each point: sum_j q_ij^2 (1, y_j)
    reading = scipy.sparse.csr_matrix(
        (
            weight.astype(np.float32),
            (node[:, 1, :, None] * length + node[:, 0, None, :]).ravel(),
            rows,
        ),
        shape=(n, side * length),
    )
    phi = np.stack([reading @ potential for potential in potentials.reshape(3, -1)])
    phi = phi.astype(np.float64)
    forces = (points * phi[0][:, None] - phi[1:].T) / z
    return forces, z


def kl_divergence_gradient(
    embedding: np.ndarray,
    P: Any,  # noqa: N803 (openTSNE's name)
    dof: float,
    reference_embedding: Any = None,
    should_eval_error: bool = False,
    n_jobs: int = 1,
    **params: Any,
) -> tuple[float, np.ndarray]:
    """Return (the KL divergence, or 0 when not asked, and its gradient) for openTSNE's optimizer,
    as its `kl_divergence_fft` with the threaded `repulsion` for a 2-D t-SNE map of its own; any
    other case (placing points, dof != 1, 1-D) goes to openTSNE's.

    With two threads or more, the attractive forces (openTSNE's compiled loop, which releases the
    GIL) run on half of them beside the repulsion on the other half: the repulsion's numpy steps
    leave a second core mostly idle, and its FFTs gain little from it."""
    from openTSNE import _tsne
    from openTSNE.tsne import kl_divergence_fft

    if reference_embedding is not None or dof != 1 or embedding.shape[1] != 2:
        return kl_divergence_fft(
            embedding,
            P,
            dof,
            reference_embedding=reference_embedding,
            should_eval_error=should_eval_error,
            n_jobs=n_jobs,
            **params,
        )
    attraction = np.zeros_like(embedding, dtype=np.float64, order="C")
    beside = max(1, n_jobs // 2) if n_jobs >= 2 else 0

    def attract() -> tuple[float, float]:
        return _tsne.estimate_positive_gradient_nn(
            P.indices,
            P.indptr,
            P.data,
            embedding,
            embedding,
            attraction,
            dof,
            num_threads=max(beside, 1),
            should_eval_error=should_eval_error,
        )

    if beside:
        attracted = _attraction_thread().submit(attract)
        forces, z = repulsion(embedding, n_jobs - beside)
        sum_p, divergence = attracted.result()
    else:
        forces, z = repulsion(embedding, 1)
        sum_p, divergence = attract()
    if should_eval_error:
        divergence += sum_p * np.log(z + np.finfo(np.float64).eps)
    return divergence, attraction - forces


@lru_cache(maxsize=1)
def _attraction_thread() -> ThreadPoolExecutor:
    """Return the one thread (per process) that computes t-SNE's attractive forces beside the
    repulsion; concurrent maps queue on it."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="convlens-attraction")


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
