"""Biclustering-based edge bundling (CNNVis section 6.3).

The weights between two layers are aggregated per pair of neuron clusters into two edges: the
mean of the positive weights and the mean of the negative weights (step 1). Rounds then take the
strongest remaining aggregated edge, w_max, select the edges of its sign whose strength lies
within the absolute tolerance tau of it (the paper's |w - w_max| < tau), mine the closed item
sets of the selected edges (the maximal bicliques: sets of input clusters each joined to every
one of a set of output clusters) as biclusters, and remove the selected edges (step 2). The
rounds stop when w_max falls under the threshold.

Choices where the paper is open: the positive and the negative edge of a cluster pair are
separate items, so a pair can be in a positive and in a negative bicluster; the edge with
strength w_max is always selected (tau = 0 keeps exact ties); the maximal bicliques come from
networkx's maximal cliques of the selected graph with each side made a clique.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np


@dataclass(frozen=True)
class Bicluster:
    """A set of input clusters each joined to every one of a set of output clusters.

    `inputs` and `outputs` hold cluster labels; `sign` is +1 for a bundle of positive aggregated
    edges, -1 for negative ones; `strength` is the mean absolute strength of its aggregated
    edges; `n_positive` and `n_negative` count the neuron-level edges with a positive and a
    negative weight between the bicluster's input and output neurons (the green and red shares).
    """

    inputs: frozenset[int]
    outputs: frozenset[int]
    sign: int
    strength: float
    n_positive: int
    n_negative: int


@dataclass(frozen=True, eq=False)
class AggregatedEdges:
    """The weights between clusters, arrays (out clusters, in clusters) in label order.

    `positive` is the mean of the positive weights (0 where there is none), `negative` the mean
    of the negative weights (<= 0, 0 where there is none); `n_positive` / `n_negative` count them.
    """

    in_clusters: np.ndarray
    out_clusters: np.ndarray
    positive: np.ndarray
    negative: np.ndarray
    n_positive: np.ndarray
    n_negative: np.ndarray


def aggregate_edges(
    weights: np.ndarray, in_labels: np.ndarray, out_labels: np.ndarray
) -> AggregatedEdges:
    """Return the mean positive and mean negative weight between each pair of clusters.

    `weights` is (out neurons, in neurons) with kernels summed; labels give each neuron's
    cluster.
    """
    weights = np.asarray(weights, dtype=np.float64)
    in_labels, out_labels = np.asarray(in_labels), np.asarray(out_labels)
    if weights.ndim != 2 or weights.shape != (len(out_labels), len(in_labels)):
        raise ValueError(
            f"weights must be (out neurons, in neurons) = ({len(out_labels)}, {len(in_labels)}), "
            f"got {weights.shape}."
        )
    if not np.isfinite(weights).all():
        raise ValueError("weights must be finite.")
    in_clusters, in_index = np.unique(in_labels, return_inverse=True)
    out_clusters, out_index = np.unique(out_labels, return_inverse=True)
    into = np.eye(len(in_clusters))[in_index]  # (in neurons, in clusters) one-hot
    out_of = np.eye(len(out_clusters))[out_index]

    def per_pair(values: np.ndarray) -> np.ndarray:
        return out_of.T @ values @ into

    n_positive = np.rint(per_pair((weights > 0).astype(np.float64))).astype(np.int64)
    n_negative = np.rint(per_pair((weights < 0).astype(np.float64))).astype(np.int64)
    positive = per_pair(np.maximum(weights, 0.0)) / np.maximum(n_positive, 1)
    negative = per_pair(np.minimum(weights, 0.0)) / np.maximum(n_negative, 1)
    return AggregatedEdges(in_clusters, out_clusters, positive, negative, n_positive, n_negative)


def bundle_edges(
    weights: np.ndarray, in_labels: np.ndarray, out_labels: np.ndarray, tau: float, threshold: float
) -> list[Bicluster]:
    """Return the biclusters of strong, similar aggregated edges, strongest round first.

    `tau` is the absolute tolerance around each round's w_max; rounds stop when w_max is under
    `threshold`. Within a round, biclusters are sorted by size, then labels.
    """
    if not tau >= 0:
        raise ValueError(f"tau must be >= 0, got {tau}.")
    edges = aggregate_edges(weights, in_labels, out_labels)
    # strength[s] for s = 0 (positive) and 1 (negative): the aggregated edges still in E
    strength = np.stack([edges.positive, -edges.negative])
    remaining = np.stack([edges.n_positive > 0, edges.n_negative > 0])
    biclusters: list[Bicluster] = []
    while remaining.any():
        w_max = strength[remaining].max()
        if w_max < threshold:
            break
        side = 0 if (remaining[0] & (strength[0] == w_max)).any() else 1
        selected = remaining[side] & (w_max - strength[side] <= tau)
        for rows, columns in _maximal_bicliques(selected):
            biclusters.append(_bicluster(edges, strength[side], side, rows, columns))
        remaining[side] &= ~selected
    return biclusters


def _maximal_bicliques(selected: np.ndarray) -> list[tuple[list[int], list[int]]]:
    """Return every maximal biclique (rows, columns) of a boolean (rows, columns) adjacency,
    sorted by size (largest first), then indices.

    They are the maximal cliques, with nodes of both sides, of the graph where each side is made
    a clique; a clique with nodes of one side only has no selected edge and is dropped.
    """
    rows, columns = np.nonzero(selected)
    row_nodes = [("row", r) for r in np.unique(rows).tolist()]
    column_nodes = [("column", c) for c in np.unique(columns).tolist()]
    graph = nx.complete_graph(row_nodes)
    graph.add_edges_from(nx.complete_graph(column_nodes).edges)
    graph.add_nodes_from(column_nodes)
    graph.add_edges_from(
        (("row", r), ("column", c)) for r, c in zip(rows.tolist(), columns.tolist(), strict=True)
    )
    found = []
    for clique in nx.find_cliques(graph):
        clique_rows = sorted(index for kind, index in clique if kind == "row")
        clique_columns = sorted(index for kind, index in clique if kind == "column")
        if clique_rows and clique_columns:
            found.append((clique_rows, clique_columns))
    return sorted(found, key=lambda b: (-len(b[0]) * len(b[1]), b[0], b[1]))


def _bicluster(
    edges: AggregatedEdges, strength: np.ndarray, side: int, rows: list[int], columns: list[int]
) -> Bicluster:
    block = np.ix_(rows, columns)
    return Bicluster(
        inputs=frozenset(edges.in_clusters[columns].tolist()),
        outputs=frozenset(edges.out_clusters[rows].tolist()),
        sign=1 if side == 0 else -1,
        strength=float(strength[block].mean()),
        n_positive=int(edges.n_positive[block].sum()),
        n_negative=int(edges.n_negative[block].sum()),
    )
