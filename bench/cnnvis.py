"""CNNVis algorithms' cost on real activations: for 128, 256 and 512 rows of per-class mean
activation vectors (fashion_basecnn layers concatenated; EfficientNet-Lite0's head cut to the
rows), the adjacent cosine similarity and time of `reorder_rows` against scipy's optimal leaf
ordering of an average-linkage tree on cosine distances; the coverage and time of
`pack_rectangles` for 512 squares; the time of `bundle_edges` on EfficientNet-Lite0's head
weights (512 x 320) with K-Means clusters. Goal: ratio (our objective over scipy's at 512 rows,
the smaller of the two models') >= 1.0, in comparable time.

The analyses come from the disk cache when they are there (fashion_basecnn's is the one the app
prepares); a first run computes them (a few minutes on two cores, EfficientNet-Lite0 most).

Run: .venv/bin/python bench/cnnvis.py [--repeat 3] [--imagenet-images 500]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from scipy.cluster.hierarchy import leaves_list, linkage, optimal_leaf_ordering
from scipy.spatial.distance import squareform
from sklearn.cluster import KMeans

from convlens.activations import SHIPPED_DATA, Analysis, analyze, cached_analysis
from convlens.cnnvis import bundle_edges, pack_rectangles, reorder_rows
from convlens.cnnvis.ordering import adjacent_similarity, cosine_similarity
from convlens.cnnvis.packing import coverage, forget_remembered
from convlens.models import LoadedModel, load_model
from convlens.weights import edge_matrix

ROWS = (128, 256, 512)
BASECNN_LAYERS = ["features.conv4_3", "features.conv4_2", "classifier.fc1"]  # 128 + 128 + 256
HEAD, BEFORE_HEAD = "_conv_head", "_blocks.15._project_conv"
PACKING_SIZE = (400.0, 300.0)


def best_time(run: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Return the shortest of `repeat` runs' seconds and the last run's result."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return min(times), result


def analysis(model: LoadedModel, **options) -> Analysis:
    """Return the analysis of `model` on Fashion-MNIST's test set, computed once and cached."""
    cached = cached_analysis(model, SHIPPED_DATA, **options)
    if cached is not None:
        return cached
    start = time.perf_counter()
    computed = analyze(model, SHIPPED_DATA, **options)
    print(f"{model.name}: analysed {computed.images} images in {time.perf_counter() - start:.0f} s")
    return computed


def neuron_rows(result: Analysis, layers: list[str]) -> np.ndarray:
    """Per-class mean activation vectors, one row per neuron, layers concatenated."""
    return np.concatenate([result.layer(layer).per_class_mean.T for layer in layers])


def scipy_order(matrix: np.ndarray) -> np.ndarray:
    """scipy's optimal leaf ordering of the average-linkage tree on cosine distances (a zero row
    at distance 1 from every row, as in our objective; scipy's own metric gives NaN there)."""
    distances = np.clip(1.0 - cosine_similarity(matrix), 0.0, 2.0)
    np.fill_diagonal(distances, 0.0)
    condensed = squareform(distances, checks=False)
    return leaves_list(optimal_leaf_ordering(linkage(condensed, "average"), condensed))


def compare_ordering(name: str, matrix: np.ndarray, repeat: int) -> float:
    """Print both orderings' objective and time; return ours over scipy's."""
    ours_time, ours = best_time(lambda: reorder_rows(matrix), repeat)
    scipy_time, theirs = best_time(lambda: scipy_order(matrix), repeat)
    ours_value = adjacent_similarity(matrix, ours)
    scipy_value = adjacent_similarity(matrix, theirs)
    print(
        f"{name}, {len(matrix)} rows: reorder_rows {ours_value:.3f} in {ours_time * 1e3:.0f} ms, "
        f"scipy {scipy_value:.3f} in {scipy_time * 1e3:.0f} ms; "
        f"objective ratio {ours_value / scipy_value:.4f}, time ratio {ours_time / scipy_time:.2f}",
        flush=True,
    )
    return ours_value / scipy_value


def measure_packing(name: str, matrix: np.ndarray, repeat: int) -> None:
    """Print coverage and time of packing one square per row, area the mean activation."""
    importance = np.clip(np.nan_to_num(matrix).mean(axis=1), 0.0, None)
    similarity = np.clip(cosine_similarity(matrix), 0.0, None)
    for label, given in (("one part", None), ("by modularity", similarity)):
        seconds, rects = best_time(lambda given=given: forget_and_pack(importance, given), repeat)
        print(
            f"{name}, {len(matrix)} squares {label}: coverage {coverage(rects, *PACKING_SIZE):.3f} "
            f"of {PACKING_SIZE[0]:.0f} x {PACKING_SIZE[1]:.0f}, {seconds * 1e3:.0f} ms",
            flush=True,
        )


def forget_and_pack(importance: np.ndarray, similarity: np.ndarray | None) -> np.ndarray:
    """`pack_rectangles` computed anew: the process remembers what it packed before."""
    forget_remembered()
    return pack_rectangles(importance, *PACKING_SIZE, similarity)


def measure_bundling(model: LoadedModel, result: Analysis, repeat: int) -> None:
    """Print the time of bundling the head's weights between K-Means clusters of its neurons."""
    module = dict(model.module.named_modules())[HEAD]
    weights = edge_matrix(module.weight.detach().cpu()).numpy()[:512]
    outputs = result.layer(HEAD).per_class_mean.T[:512]
    inputs = result.layer(BEFORE_HEAD).per_class_mean.T
    out_labels = KMeans(16, n_init=4, random_state=0).fit_predict(outputs)
    in_labels = KMeans(10, n_init=4, random_state=0).fit_predict(inputs)
    strongest = np.abs(weights).max()
    tau, threshold = 0.02 * strongest, 0.1 * strongest
    seconds, found = best_time(
        lambda: bundle_edges(weights, in_labels, out_labels, tau, threshold), repeat
    )
    print(
        f"{model.name} {HEAD}, weights {weights.shape[0]} x {weights.shape[1]}, 16 x 10 clusters: "
        f"bundle_edges {len(found)} biclusters in {seconds * 1e3:.1f} ms",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--imagenet-images", type=int, default=500)
    args = parser.parse_args()
    basecnn = load_model("fashion_basecnn")
    efficientnet = load_model("efficientnet_lite0")
    head = analysis(efficientnet, limit=args.imagenet_images, layers=[BEFORE_HEAD, HEAD])
    sources = {
        "fashion_basecnn": neuron_rows(analysis(basecnn), BASECNN_LAYERS),
        "efficientnet_lite0": neuron_rows(head, [HEAD]),
    }
    ratios = {}
    for name, matrix in sources.items():
        for rows in ROWS:
            ratios[name, rows] = compare_ordering(name, matrix[:rows], args.repeat)
    for name, matrix in sources.items():
        measure_packing(name, matrix[:512], args.repeat)
    measure_bundling(efficientnet, head, args.repeat)
    print(f"ratio={min(ratios[name, 512] for name in sources):.4f}")


if __name__ == "__main__":
    main()
