"""The CNNVis picture of a network as data: layer groups, clustered layers and bundled edges.

`build_view` composes the pipeline, the reordering, the packing and the bundling for the layers
the user expanded; `convlens.cnnvis.drawing` turns the result into a picture.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from torch import nn

from convlens.activations import Analysis
from convlens.cnnvis.bundling import Bicluster, aggregate_edges, bundle_edges
from convlens.cnnvis.ordering import reorder_rows
from convlens.cnnvis.pipeline import (
    ClusterPurity,
    NeuronClusters,
    activation_vectors,
    cluster_neurons,
    cluster_purity,
    dead_neurons,
    layer_edges,
    move_neuron,
    neuron_importance,
    redundant_groups,
    relevant_neurons,
)
from convlens.graph import LayerGraph

# Bundling runs until the strongest remaining aggregated edge is below THRESHOLD_SHARE of the
# layer pair's strongest; edges within TAU_SHARE of the strongest are bundled together.
THRESHOLD_SHARE = 0.85
TAU_SHARE = 0.1

# A neuron moved to another cluster: (node, neuron, cluster).
Move = tuple[str, int, int]


@dataclass(frozen=True)
class Options:
    """What the user chose; the defaults are the picture a bookmark without parameters shows."""

    expanded: tuple[str, ...] = ()
    method: str = "kmeans"
    clusters: int | None = None
    classes: tuple[int, ...] = ()
    importance: str = "mean"
    moves: tuple[Move, ...] = ()
    threshold_share: float = THRESHOLD_SHARE
    tau_share: float = TAU_SHARE


def parse_moves(text: str) -> tuple[Move, ...]:
    """The neuron moves of the `moves` URL parameter, "NODE:NEURON>CLUSTER" items separated by
    commas (or semicolons); an item that does not read so, from an edited link, is left out."""
    moves = []
    for item in text.replace(";", ",").split(","):
        where, arrow, target = item.partition(">")
        node, colon, neuron = where.rpartition(":")
        if not (arrow and colon):
            continue
        try:
            moves.append((node, int(neuron), int(target)))
        except ValueError:
            continue
    return tuple(moves)


def format_moves(moves: Sequence[Move]) -> str:
    """The `moves` URL parameter that `parse_moves` reads back as `moves`."""
    return ",".join(f"{node}:{neuron}>{target}" for node, neuron, target in moves)


def with_move(moves: Sequence[Move], node: str, neuron: int, target: int) -> tuple[Move, ...]:
    """`moves` with neuron `neuron` of `node` moved to cluster `target` (its earlier move
    replaced)."""
    kept = [move for move in moves if move[:2] != (node, neuron)]
    return (*kept, (node, neuron, target))


@dataclass(frozen=True)
class LayerView:
    """One expanded layer: its clusters and, per cluster, the matrix order of its neurons.

    `orders` is None until `with_row_orders` fills it in: only the activations facet shows it,
    and it is most of the cost of building a view (the default features facet need not wait).
    """

    node: str
    group: str
    vectors: np.ndarray
    clusters: NeuronClusters
    importance: np.ndarray
    relevant: np.ndarray
    orders: tuple[np.ndarray, ...] | None
    purity: list[ClusterPurity]
    redundant: list[tuple[int, ...]]
    dead: np.ndarray
    top_images: np.ndarray
    top_boxes: np.ndarray

    @property
    def neurons(self) -> int:
        return len(self.vectors)


@dataclass(frozen=True)
class Bundles:
    """The bundled edges from the clusters of layer `source` to those of layer `target`.

    `aggregated[i, o]` holds [mean positive, mean negative] weight between input cluster i and
    output cluster o (0 where there is none); `debug` holds, when a recorded run gives it, the
    per-bicluster value of the chosen debugging colouring.
    """

    source: str
    target: str
    biclusters: list[Bicluster]
    aggregated: np.ndarray
    strongest: float
    debug: tuple[float, ...] | None = None


@dataclass(frozen=True)
class GroupView:
    id: str
    label: str
    nodes: tuple[str, ...]
    expanded: bool


@dataclass(frozen=True)
class CnnvisView:
    model: str
    classes: list[str]
    groups: list[GroupView]
    layers: dict[str, LayerView]
    bundles: list[Bundles]
    options: Options

    def to_json(self) -> dict:
        """The picture's data: groups, expanded layers with their clusters, and the biclusters."""
        return {
            "model": self.model,
            "classes": self.classes,
            "groups": [
                {"id": g.id, "label": g.label, "layers": list(g.nodes), "expanded": g.expanded}
                for g in self.groups
            ],
            "layers": [_layer_json(layer) for layer in with_row_orders(self).layers.values()],
            "bundles": [
                {
                    "source": b.source,
                    "target": b.target,
                    "biclusters": [
                        {
                            "inputs": sorted(c.inputs),
                            "outputs": sorted(c.outputs),
                            "sign": c.sign,
                            "strength": c.strength,
                            "n_positive": c.n_positive,
                            "n_negative": c.n_negative,
                        }
                        for c in b.biclusters
                    ],
                }
                for b in self.bundles
            ],
        }


def _layer_json(layer: LayerView) -> dict:
    return {
        "id": layer.node,
        "group": layer.group,
        "neurons": layer.neurons,
        "clusters": [
            {
                "index": cluster,
                "neurons": sorted(int(n) for n in members),
                "representatives": [int(n) for n in members[:5]],
                "matrix_order": [int(n) for n in layer.orders[cluster]],
                "majority_class": layer.purity[cluster].majority_class,
                "purity": layer.purity[cluster].share,
                "impure": layer.purity[cluster].impure,
            }
            for cluster, members in enumerate(layer.clusters.representatives)
        ],
        "importance": [float(v) for v in layer.importance],
        "redundant": [list(group) for group in layer.redundant],
        "dead": [int(n) for n in layer.dead],
    }


@dataclass(frozen=True)
class QualityFlag:
    """Something the paper's experts judged by eye, found in one layer: an impure cluster,
    redundant neurons or dead neurons, with the neurons it stands for."""

    layer: str
    flag: str
    where: str
    detail: str
    neurons: tuple[int, ...]


def quality_flags(view: CnnvisView, listed: int = 20) -> list[QualityFlag]:
    """Impure clusters, redundant and dead neurons of the expanded layers, layer by layer."""
    flags = []
    for node, layer in view.layers.items():
        for purity in layer.purity:
            if purity.impure and purity.patches:
                members = layer.clusters.representatives[purity.cluster]
                majority = view.classes[purity.majority_class]
                flags.append(
                    QualityFlag(
                        node,
                        "impure cluster",
                        # the picture labels a cluster by its purity, not its number
                        f"c{purity.cluster}, labelled “{purity.share:.0%} {majority}”",
                        f"{purity.share:.0%} of its top patches are {majority}",
                        tuple(int(n) for n in members),
                    )
                )
        for group in layer.redundant:
            where = ", ".join(map(str, group))
            flags.append(
                QualityFlag(
                    node, "redundant neurons", where, "near-identical activation vectors", group
                )
            )
        if len(layer.dead):
            where = ", ".join(map(str, layer.dead[:listed])) + (
                " …" if len(layer.dead) > listed else ""
            )
            detail = f"{len(layer.dead)} of {layer.neurons} never activate on any class"
            flags.append(
                QualityFlag(node, "dead neurons", where, detail, tuple(int(n) for n in layer.dead))
            )
    return flags


def analysed_groups(
    graph: LayerGraph, analysis: Analysis, expanded: Sequence[str]
) -> list[GroupView]:
    """The graph's layer groups that hold analysed conv or linear nodes, in network order."""
    analysed = {layer.id for layer in analysis.layers}
    groups = []
    for group in graph.groups:
        nodes = tuple(node for node in group.nodes if node in analysed)
        if nodes:
            groups.append(GroupView(group.id, group.label, nodes, group.id in expanded))
    return groups


def default_groups(graph: LayerGraph, analysis: Analysis) -> tuple[str, ...]:
    """The group expanded when the user has chosen none: the last one before the classifier
    (the highest conv layers, where purity tells most), or the only one."""
    ids = [group.id for group in analysed_groups(graph, analysis, ())]
    return tuple(ids[-2:-1] or ids[:1])


def group_kind(graph: LayerGraph, group: GroupView) -> str:
    """ "conv" for a group with a convolution among its analysed nodes, else "fc"."""
    return "conv" if any(graph.node(node).type == "conv" for node in group.nodes) else "fc"


def match_groups(
    mine: Sequence[tuple[str, str]], theirs: Sequence[tuple[str, str]], expanded: Sequence[str]
) -> dict[str, str]:
    """For each expanded group of `mine`, the group of `theirs` that compares with it.

    Both are (group id, kind) pairs in network order. A group matches the group of the same
    kind at the same place counted from the end: the last conv group with the last conv group
    (the highest conv layers, which the page expands by default and where purity tells most),
    the one before with the one before, fc with fc. Counted from the end, a shallower network's
    top conv group, not a conv group of the deeper one's middle, answers the deeper one's top
    one; a group with no counterpart (the deeper network's lowest groups) is left out.
    """
    counted: dict[tuple[str, int], str] = {}
    for kind in {kind for _, kind in theirs}:
        same = [group for group, k in theirs if k == kind]
        counted.update({(kind, len(same) - i): group for i, group in enumerate(same)})
    matches = {}
    for kind in {kind for _, kind in mine}:
        same = [group for group, k in mine if k == kind]
        for i, group in enumerate(same):
            other = counted.get((kind, len(same) - i))
            if group in expanded and other is not None:
                matches[group] = other
    return {group: matches[group] for group, _ in mine if group in matches}


def matched_groups(
    graph: LayerGraph,
    analysis: Analysis,
    other_graph: LayerGraph,
    other_analysis: Analysis,
    expanded: Sequence[str],
) -> dict[str, str]:
    """`match_groups` for two analysed networks: each expanded group of the first (in network
    order) with the group of the second that compares with it."""
    kinds = [(g.id, group_kind(graph, g)) for g in analysed_groups(graph, analysis, ())]
    other = analysed_groups(other_graph, other_analysis, ())
    return match_groups(kinds, [(g.id, group_kind(other_graph, g)) for g in other], expanded)


def cluster_pairs(weights: np.ndarray, in_labels: np.ndarray, out_labels: np.ndarray) -> np.ndarray:
    """[mean positive, mean negative] weight for every (input cluster, output cluster) pair, as
    an (input clusters, output clusters, 2) array; labels are 0..k-1."""
    aggregated = aggregate_edges(weights, in_labels, out_labels)
    result = np.zeros((int(in_labels.max()) + 1, int(out_labels.max()) + 1, 2))
    rows, columns = np.ix_(aggregated.in_clusters, aggregated.out_clusters)
    result[rows, columns, 0] = aggregated.positive.T
    result[rows, columns, 1] = aggregated.negative.T
    return result


def covering(biclusters: Sequence[Bicluster]) -> list[Bicluster]:
    """The fewest biclusters, greedily, that still cover every cluster-level edge of `biclusters`.

    Maximal bicliques of one round overlap; drawing each would bundle the same edge several
    times. Largest first (ties: the stronger), each kept when it covers an edge not yet covered.
    """
    kept, covered = [], set()
    remaining = list(biclusters)
    while remaining:
        best = max(
            remaining,
            key=lambda b: (len(_edges(b) - covered), b.strength),
        )
        new = _edges(best) - covered
        if not new:
            break
        kept.append(best)
        covered |= new
        remaining.remove(best)
    return kept


def _edges(bicluster: Bicluster) -> set[tuple[int, int, int]]:
    return {(i, o, bicluster.sign) for i in bicluster.inputs for o in bicluster.outputs}


def bundle_layer_pair(
    weights: np.ndarray, in_labels: np.ndarray, out_labels: np.ndarray, options: Options
) -> tuple[list[Bicluster], np.ndarray, float]:
    """Bundle one layer pair's edges with tau and threshold relative to its strongest edge."""
    aggregated = cluster_pairs(weights, in_labels, out_labels)
    strongest = float(np.abs(aggregated).max()) if aggregated.size else 0.0
    if strongest <= 0:
        return [], aggregated, 0.0
    biclusters = bundle_edges(
        weights,
        in_labels,
        out_labels,
        options.tau_share * strongest,
        options.threshold_share * strongest,
    )
    return biclusters, aggregated, strongest


def build_layer(
    analysis: Analysis,
    node: str,
    group: str,
    options: Options,
    importance: np.ndarray | None = None,
    order_rows: bool = True,
) -> LayerView:
    """Cluster, weigh and (with `order_rows`) order the neurons of one analysed layer as
    `options` say."""
    stats = analysis.layer(node)
    vectors = activation_vectors(stats.per_class_mean)
    clusters = cluster_neurons(vectors, options.method, options.clusters)
    for layer, neuron, cluster in options.moves:
        if layer == node:
            clusters = move_neuron(vectors, clusters, neuron, cluster)
    if importance is None:
        importance = neuron_importance(vectors, options.classes, options.importance)
    return LayerView(
        node=node,
        group=group,
        vectors=vectors,
        clusters=clusters,
        importance=importance,
        relevant=relevant_neurons(vectors, options.classes),
        orders=row_orders(vectors, clusters.representatives) if order_rows else None,
        purity=cluster_purity(stats.top_patches.label, clusters),
        redundant=redundant_groups(vectors),
        dead=dead_neurons(vectors),
        top_images=stats.top_patches.image,
        top_boxes=stats.top_patches.box,
    )


def row_orders(vectors: np.ndarray, clusters: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
    """Each cluster's neurons (`clusters`: their indices, `NeuronClusters.representatives`) in the
    order that makes adjacent matrix rows alike."""
    return tuple(members[reorder_rows(vectors[members])] for members in clusters)


def with_row_orders(
    view: CnnvisView, orders: Callable[[LayerView], tuple[np.ndarray, ...]] | None = None
) -> CnnvisView:
    """`view` with the matrix order of every layer's clusters (itself when it has them);
    `orders(layer)` gives them (default: `row_orders` of the layer's vectors and clusters)."""
    if all(layer.orders is not None for layer in view.layers.values()):
        return view
    orders = orders or (lambda layer: row_orders(layer.vectors, layer.clusters.representatives))
    layers = {
        node: layer if layer.orders is not None else replace(layer, orders=orders(layer))
        for node, layer in view.layers.items()
    }
    return replace(view, layers=layers)


def build_view(
    model_name: str,
    module: nn.Module,
    graph: LayerGraph,
    analysis: Analysis,
    options: Options,
    contributions: Mapping[str, np.ndarray] | None = None,
    edge_weights: Mapping[str, np.ndarray] | None = None,
    order_rows: bool = True,
) -> CnnvisView:
    """Assemble the picture's data for the expanded groups of `options`.

    Without `order_rows` the layers' matrix orders are left for `with_row_orders` (a view that
    shows the features facet first).

    `contributions` (node -> per-neuron importance) is used when the importance measure is
    "contribution"; `edge_weights` (node -> (out, in) summed weights, e.g. of a recorded run's
    snapshot) replaces the model's own weights for the edges into that node.
    """
    groups = analysed_groups(graph, analysis, options.expanded)
    layers: dict[str, LayerView] = {}
    for group in groups:
        if not group.expanded:
            continue
        for node in group.nodes:
            given = (
                (contributions or {}).get(node) if options.importance == "contribution" else None
            )
            layers[node] = build_layer(analysis, node, group.id, options, given, order_rows)
    bundles = []
    shown = [node for group in groups if group.expanded for node in group.nodes]
    ordered = [node for group in groups for node in group.nodes]
    for source, target in zip(shown, shown[1:], strict=False):
        if ordered.index(target) != ordered.index(source) + 1:
            continue  # a collapsed group lies between them
        weights = (edge_weights or {}).get(target)
        if weights is None:
            weights = layer_edges(module, graph, target, layers[source].neurons)
        if weights is None or weights.shape != (layers[target].neurons, layers[source].neurons):
            continue
        biclusters, aggregated, strongest = bundle_layer_pair(
            weights, layers[source].clusters.labels, layers[target].clusters.labels, options
        )
        bundles.append(Bundles(source, target, biclusters, aggregated, strongest))
    return CnnvisView(model_name, list(analysis.classes), groups, layers, bundles, options)
