"""From an activation analysis to what CNNVis draws: neuron clusters, importance, quality flags.

A neuron's *activation vector* is its per-class average activation (CNNVis eq. 1, docs/architecture.md);
neurons are clustered on these vectors (section 5). Everything here is a pure function over
arrays; `convlens.cnnvis.view` assembles them for a whole network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse import csr_array
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import pdist, squareform
from sklearn.cluster import KMeans, MeanShift, estimate_bandwidth
from torch import nn

from convlens.cnnvis.ordering import cosine_similarity
from convlens.graph import LayerGraph
from convlens.weights import edge_matrix

CLUSTER_METHODS = ("kmeans", "meanshift")
IMPORTANCE_MEASURES = ("mean", "max", "contribution")
# A neuron is "relevant" to the selected classes when it responds to them this many times as
# much as to the others (CNNVis 6.2.3: the others are drawn translucent).
RELEVANCE_RATIO = 1.25
# A cluster is "impure" when fewer than this share of its neurons' top patches come from its
# majority class (CNNVis 7.2, Fig. 11).
IMPURE_BELOW = 0.5
# Two neurons are redundant when their activation vectors differ by at most this share of the
# larger one's length (CNNVis 7.2: "many neurons have very similar activations").
REDUNDANCY_TOLERANCE = 0.05
# A neuron whose largest per-class average is at most this is dead (CNNVis 7.3: blank rows).
DEAD_ACTIVATION = 1e-6


@dataclass(frozen=True)
class NeuronClusters:
    """A layer's neurons grouped by activation vector; `labels[i]` is neuron i's cluster.

    `representatives[c]` lists cluster c's neurons, nearest to its centroid first.
    """

    labels: np.ndarray
    representatives: tuple[np.ndarray, ...]

    @property
    def count(self) -> int:
        return len(self.representatives)

    def members(self, cluster: int) -> np.ndarray:
        return np.flatnonzero(self.labels == cluster)


@dataclass(frozen=True)
class ClusterPurity:
    """How many of a cluster's top patches come from its most frequent class."""

    cluster: int
    majority_class: int
    share: float
    patches: int

    @property
    def impure(self) -> bool:
        return self.share < IMPURE_BELOW


def activation_vectors(per_class_mean: np.ndarray) -> np.ndarray:
    """Return (neurons, classes) activation vectors from an analysis' (classes, neurons) means;
    a class without images (NaN) counts as 0."""
    return np.nan_to_num(np.asarray(per_class_mean, dtype=np.float64).T, nan=0.0)


def default_cluster_count(neurons: int) -> int:
    """A number of clusters that keeps a layer readable: about sqrt(n / 2), 2 to 8."""
    return int(np.clip(round(np.sqrt(neurons / 2)), 1 if neurons < 4 else 2, 8))


def cluster_neurons(
    vectors: np.ndarray, method: str = "kmeans", clusters: int | None = None, seed: int = 0
) -> NeuronClusters:
    """Cluster neurons on their activation vectors with K-Means (`clusters`, default
    `default_cluster_count`) or MeanShift (no count needed); clusters are numbered by size,
    largest first, so that the picture does not depend on the algorithm's numbering."""
    vectors = np.asarray(vectors, dtype=np.float64)
    count = len(vectors)
    if method not in CLUSTER_METHODS:
        raise ValueError(
            f"Unknown clustering method '{method}'; choose one of {', '.join(CLUSTER_METHODS)}."
        )
    distinct = len(np.unique(vectors, axis=0))
    if count == 0:
        return NeuronClusters(np.zeros(0, dtype=int), ())
    if method == "kmeans":
        k = min(clusters or default_cluster_count(count), distinct)
        labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(vectors)
    else:
        bandwidth = estimate_bandwidth(vectors, quantile=0.3, random_state=seed) if count > 1 else 0
        labels = (
            MeanShift(bandwidth=bandwidth, bin_seeding=True).fit_predict(vectors)
            if bandwidth > 0
            else np.zeros(count, dtype=int)
        )
    return clusters_from_labels(vectors, labels)


def clusters_from_labels(vectors: np.ndarray, labels: np.ndarray) -> NeuronClusters:
    """Renumber `labels` by cluster size (largest first, ties by first neuron) and find each
    cluster's representatives; empty clusters are dropped."""
    labels = np.asarray(labels)
    found = [label for label in dict.fromkeys(labels.tolist())]
    found.sort(key=lambda label: (-int(np.sum(labels == label)), int(np.argmax(labels == label))))
    renumbered = np.empty(len(labels), dtype=int)
    representatives = []
    for new, old in enumerate(found):
        members = np.flatnonzero(labels == old)
        renumbered[members] = new
        centroid = vectors[members].mean(axis=0)
        distance = np.linalg.norm(vectors[members] - centroid, axis=1)
        representatives.append(members[np.argsort(distance, kind="stable")])
    return NeuronClusters(renumbered, tuple(representatives))


def move_neuron(
    vectors: np.ndarray, clusters: NeuronClusters, neuron: int, cluster: int
) -> NeuronClusters:
    """Return the clusters with `neuron` moved to `cluster` (== clusters.count: a new cluster)."""
    if not 0 <= neuron < len(clusters.labels):
        raise ValueError(f"This layer has no neuron {neuron}.")
    if not 0 <= cluster <= clusters.count:
        raise ValueError(f"There is no cluster {cluster} to move neuron {neuron} to.")
    labels = clusters.labels.copy()
    labels[neuron] = cluster
    return clusters_from_labels(vectors, labels)


def neuron_importance(
    vectors: np.ndarray, classes: Sequence[int] | None = None, measure: str = "mean"
) -> np.ndarray:
    """Each neuron's mean or maximum average activation over `classes` (None: all), >= 0."""
    chosen = vectors if classes is None or not len(classes) else vectors[:, list(classes)]
    if measure == "mean":
        values = chosen.mean(axis=1)
    elif measure == "max":
        values = chosen.max(axis=1)
    else:
        raise ValueError(
            f"Importance '{measure}' is computed by `contribution`, not from activation vectors."
        )
    return np.clip(values, 0.0, None)


def relevant_neurons(vectors: np.ndarray, classes: Sequence[int] | None) -> np.ndarray:
    """True for the neurons that respond to `classes` RELEVANCE_RATIO times as much as to the
    other classes (all True when no classes, or all of them, are selected)."""
    neurons, total = vectors.shape
    chosen = sorted(set(classes or ()))
    if not chosen or len(chosen) == total:
        return np.ones(neurons, dtype=bool)
    others = [c for c in range(total) if c not in chosen]
    selected_mean = vectors[:, chosen].mean(axis=1)
    other_mean = vectors[:, others].mean(axis=1)
    return (selected_mean > DEAD_ACTIVATION) & (selected_mean >= RELEVANCE_RATIO * other_mean)


def dead_neurons(vectors: np.ndarray) -> np.ndarray:
    """Indices of the neurons with (near) zero average activation on every class."""
    return np.flatnonzero(np.abs(vectors).max(axis=1) <= DEAD_ACTIVATION)


def cluster_purity(
    top_labels: np.ndarray, clusters: NeuronClusters, top: int = 5
) -> list[ClusterPurity]:
    """Per cluster, the share of its neurons' top-`top` patches that come from its majority class
    (patches of images without a class, label -1, are left out)."""
    result = []
    for cluster, members in enumerate(clusters.representatives):
        labels = np.asarray(top_labels)[members, :top].ravel()
        labels = labels[labels >= 0]
        if not len(labels):
            result.append(ClusterPurity(cluster, -1, 0.0, 0))
            continue
        counts = np.bincount(labels)
        majority = int(np.argmax(counts))
        result.append(
            ClusterPurity(cluster, majority, float(counts[majority] / len(labels)), len(labels))
        )
    return result


def redundant_groups(
    vectors: np.ndarray, tolerance: float = REDUNDANCY_TOLERANCE
) -> list[tuple[int, ...]]:
    """Groups (>= 2 neurons, ascending, ordered by first neuron) of live neurons whose activation
    vectors lie within `tolerance` x the longer vector's length of each other, joined transitively."""
    live = np.setdiff1d(np.arange(len(vectors)), dead_neurons(vectors))
    if len(live) < 2:
        return []
    chosen = vectors[live]
    lengths = np.linalg.norm(chosen, axis=1)
    close = squareform(pdist(chosen)) <= tolerance * np.maximum(lengths[:, None], lengths[None, :])
    _, components = connected_components(csr_array(close), directed=False)
    groups: dict[int, list[int]] = {}
    for component, neuron in zip(components.tolist(), live.tolist(), strict=True):
        groups.setdefault(component, []).append(neuron)
    return sorted((tuple(g) for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def neuron_similarity(vectors: np.ndarray) -> np.ndarray:
    """The (n, n) similarity of neurons' activation vectors (rows) for clustering: their cosine
    similarity clipped at 0 (a graph's edge weights); a zero row is 0 with every row."""
    return np.clip(cosine_similarity(vectors), 0.0, None)


def layer_edges(
    module: nn.Module, graph: LayerGraph, layer_id: str, in_neurons: int
) -> np.ndarray | None:
    """The (out, in) weights of chain node `layer_id` summed per input channel, or None when the
    node does not read `in_neurons` channels straight from the previous node (e.g. depthwise)."""
    layer = graph.layer(graph.node(layer_id).layers[0])
    weight = getattr(module.get_submodule(layer.path), "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() < 2:
        return None
    summed = edge_matrix(weight.detach().float().cpu(), graph.flattened_channels(layer.id)).numpy()
    return summed.astype(np.float64) if summed.shape[1] == in_neurons else None


def contribution(
    model: nn.Module, images: torch.Tensor, layer_id: str, batch_size: int = 64
) -> np.ndarray:
    """Each neuron's mean contribution to the predicted class over `images`: activation x gradient
    of the predicted class's score (Captum's LayerGradientXActivation), summed over positions,
    clipped at 0 (size encodes how much a neuron pushes towards the prediction)."""
    from captum.attr import LayerGradientXActivation

    layer = model.get_submodule(layer_id)
    attribution = LayerGradientXActivation(model, layer)
    device = next(model.parameters()).device
    total: torch.Tensor | None = None
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device)
        with torch.no_grad():
            predicted = model(batch).argmax(dim=1)
        values = attribution.attribute(batch, target=predicted)
        summed = values.sum(dim=tuple(range(2, values.dim()))) if values.dim() > 2 else values
        summed = summed.sum(dim=0).detach().cpu()
        total = summed if total is None else total + summed
    if total is None:
        raise ValueError("Contribution needs at least one image.")
    return np.clip(total.double().numpy() / len(images), 0.0, None)
