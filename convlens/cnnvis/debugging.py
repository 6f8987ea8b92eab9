"""Debugging information of a recorded training run for the CNNVis picture (paper 6.3, 7.3).

The recorder (`convlens.training`) keeps, per snapshot and per conv/linear layer, the weights
summed per (output, input channel), the mean |gradient| likewise, and the relative change of
each filter's weights since the previous snapshot. Here they colour the bundled edges and give
the per-layer averages of the line chart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from convlens.cnnvis.view import Bundles, CnnvisView, LayerView
from convlens.graph import LayerGraph
from convlens.runformat import list_snapshots, read_stats

MEASURES = ("weight", "gradient", "relative change")
_EDGE_KEYS = {"weight": "edge_weight", "gradient": "edge_abs_grad"}


@dataclass(frozen=True)
class LayerAverage:
    step: int
    node: str
    value: float


def stats_key(graph: LayerGraph, node: str, name: str) -> str:
    """The recorder's key of statistic `name` for chain node `node` (named by its conv/linear layer)."""
    return f"{graph.node(node).layers[0]}.{name}"


def snapshot_edge_weights(
    stats: Mapping[str, np.ndarray], graph: LayerGraph, nodes: Sequence[str]
) -> dict[str, np.ndarray]:
    """The recorded (out, in) summed weights of each node that has them."""
    found = {}
    for node in nodes:
        key = stats_key(graph, node, "edge_weight")
        if key in stats:
            found[node] = stats[key]
    return found


def bicluster_values(
    bundles: Bundles,
    layers: Mapping[str, LayerView],
    stats: Mapping[str, np.ndarray],
    graph: LayerGraph,
    measure: str,
) -> tuple[float, ...] | None:
    """Per bicluster: the mean |gradient| of its neuron-level edges ("gradient") or the mean
    relative weight change of its output filters ("relative change"); None for "weight" or when
    the snapshot lacks the statistic."""
    if measure == "weight":
        return None
    source, target = layers[bundles.source], layers[bundles.target]
    values = []
    for bicluster in bundles.biclusters:
        outputs = np.isin(target.clusters.labels, list(bicluster.outputs))
        inputs = np.isin(source.clusters.labels, list(bicluster.inputs))
        if measure == "gradient":
            matrix = stats.get(stats_key(graph, bundles.target, "edge_abs_grad"))
            if matrix is None or matrix.shape != (target.neurons, source.neurons):
                return None
            values.append(float(matrix[np.ix_(outputs, inputs)].mean()))
        elif measure == "relative change":
            change = stats.get(stats_key(graph, bundles.target, "filter_weight_change"))
            if change is None or len(change) != target.neurons:
                return None
            values.append(float(change[outputs].mean()))
        else:
            raise ValueError(
                f"Unknown edge colouring '{measure}'; choose one of {', '.join(MEASURES)}."
            )
    return tuple(values)


def layer_average(
    stats: Mapping[str, np.ndarray], graph: LayerGraph, node: str, measure: str
) -> float | None:
    """A layer's average of `measure` in one snapshot: mean summed weight, mean |gradient| per
    edge, or the relative change of all its weights (||W - W_prev|| / ||W_prev||)."""
    if measure == "relative change":
        value = stats.get(stats_key(graph, node, "weight_change"))
    else:
        value = stats.get(stats_key(graph, node, _EDGE_KEYS[measure]))
    return None if value is None else float(np.mean(value))


def run_layer_averages(
    run_dir: str | Path, graph: LayerGraph, nodes: Sequence[str], measure: str
) -> list[LayerAverage]:
    """`layer_average` of every node at every snapshot of a run that recorded it."""
    rows = []
    for step in list_snapshots(run_dir):
        try:
            stats = read_stats(run_dir, step)
        except FileNotFoundError:
            continue
        for node in nodes:
            value = layer_average(stats, graph, node, measure)
            if value is not None and np.isfinite(value):
                rows.append(LayerAverage(step, node, value))
    return rows


def with_debug(
    view: CnnvisView, stats: Mapping[str, np.ndarray], graph: LayerGraph, measure: str
) -> CnnvisView:
    """Return `view` with each layer pair's bicluster values of `measure` (see `bicluster_values`)."""
    bundles = [
        replace(b, debug=bicluster_values(b, view.layers, stats, graph, measure))
        for b in view.bundles
    ]
    return replace(view, bundles=bundles)
