"""DeepEyes over a recorded run: perplexity histograms, layer stability and activation heatmaps.

Pure functions over numpy arrays, plus readers of a run's probe activations
(`convlens.training`). The analysed layers are the probe layers whose activation layer differs
from the layer itself: the conv layers and hidden linear layers, read after their ReLU. The
output layer is recorded as its own activation layer (logits, which may be negative and are not
a filter's response), so perplexity and activation frequency mean nothing there and it is left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from convlens.training import list_snapshots, read_manifest, snapshot_dir

DEFAULT_BINS = 20
STABILITY_THRESHOLD = 0.05
DEAD_MAXIMUM = 1e-6
ALWAYS_ON_FREQUENCY = 0.9


@dataclass(frozen=True)
class PerplexityHistogram:
    """The perplexities of one layer's probe patches at one step, binned from 1 to its filters."""

    layer: str
    step: int
    edges: np.ndarray  # (bins + 1,) float64, from 1 to the number of filters
    counts: np.ndarray  # (bins,) int64; sums to the probe rows
    undetected: int  # patches on which no filter responds (counted in the last bin)


@dataclass(frozen=True)
class LayerStability:
    """When a layer's perplexity histogram stops changing (DeepEyes T1)."""

    layer: str
    steps: tuple[int, ...]
    distances: np.ndarray  # (len(steps) - 1,) L1 distance of consecutive normalised histograms
    threshold: float
    stable_from_step: int | None


@dataclass(frozen=True)
class ActivationHeatmap:
    """Each filter's maximum activation and activation frequency over the probe (DeepEyes T2)."""

    layer: str
    maximum: np.ndarray  # (filters,)
    frequency: np.ndarray  # (filters,) share of patches above half the filter's maximum
    dead: np.ndarray  # int indices of filters whose maximum <= dead_maximum
    always_on: np.ndarray  # int indices of live filters with frequency >= always_on_frequency


@dataclass(frozen=True)
class LayerDiagnosis:
    """One layer of a snapshot: its histogram, heatmap and stability over the whole run."""

    histogram: PerplexityHistogram
    heatmap: ActivationHeatmap
    stability: LayerStability

    @property
    def layer(self) -> str:
        return self.histogram.layer


@dataclass(frozen=True)
class RunDiagnosis:
    """DeepEyes' view of one snapshot of a run."""

    run: str
    step: int
    layers: tuple[LayerDiagnosis, ...]

    def to_json(self) -> dict:
        """Return the JSON of `convlens deepeyes --json`."""
        return {
            "run": self.run,
            "step": self.step,
            "layers": [
                {
                    "id": part.layer,
                    "histogram": {
                        "edges": [float(v) for v in part.histogram.edges],
                        "counts": [int(v) for v in part.histogram.counts],
                    },
                    "undetected": part.histogram.undetected,
                    "dead": [int(v) for v in part.heatmap.dead],
                    "always_on": [int(v) for v in part.heatmap.always_on],
                    "stable_from_step": part.stability.stable_from_step,
                }
                for part in self.layers
            ],
        }


# --------------------------------------------------------------------------------------------
# Pure functions


def _as_matrix(activations: np.ndarray) -> np.ndarray:
    values = np.asarray(activations, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] == 0:
        raise ValueError(f"activations must be (patches, filters), got shape {values.shape}")
    return values


def undetected(activations: np.ndarray) -> np.ndarray:
    """Return a (patches,) boolean mask of the patches on which no filter responds (all <= 0)."""
    return ~(_as_matrix(activations) > 0).any(axis=1)


def perplexity(activations: np.ndarray) -> np.ndarray:
    """Return 2^H (H in bits) of each patch's L1-normalised filter activations, shape (patches,).

    Negative values are clipped to 0. An undetected patch counts as the number of filters: no
    filter singles it out, as when all respond alike.
    """
    values = np.clip(_as_matrix(activations), 0.0, None)
    totals = values.sum(axis=1, keepdims=True)
    missed = totals[:, 0] <= 0
    p = values / np.where(missed[:, None], 1.0, totals)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0)
    result = np.exp2(-terms.sum(axis=1))
    result[missed] = values.shape[1]
    return result


def histogram_edges(filters: int, bins: int = DEFAULT_BINS) -> np.ndarray:
    """Return fixed bin edges from 1 to `filters`, shared by every snapshot of a layer."""
    if bins < 1:
        raise ValueError("bins must be at least 1")
    return np.linspace(1.0, float(max(filters, 2)), bins + 1)


def perplexity_histogram(
    activations: np.ndarray, layer: str = "", step: int = 0, bins: int = DEFAULT_BINS
) -> PerplexityHistogram:
    """Return the histogram of the patches' perplexities over `histogram_edges`."""
    values = _as_matrix(activations)
    edges = histogram_edges(values.shape[1], bins)
    # Clipping keeps a rounding error past `filters` inside the last bin.
    perplexities = np.clip(perplexity(values), edges[0], edges[-1])
    counts, _ = np.histogram(perplexities, bins=edges)
    return PerplexityHistogram(
        layer, int(step), edges, counts.astype(np.int64), int(undetected(values).sum())
    )


def layer_stability(
    histograms: Sequence[PerplexityHistogram], threshold: float = STABILITY_THRESHOLD
) -> LayerStability:
    """Return the first step after which consecutive normalised histograms differ (L1) < threshold.

    `histograms` are one layer's, in step order. The step is None when the last change is still
    at or above the threshold, or when there are fewer than two histograms to compare.
    """
    if not histograms:
        raise ValueError("no histograms")
    layer = histograms[0].layer
    steps = tuple(h.step for h in histograms)
    shares = [h.counts / max(int(h.counts.sum()), 1) for h in histograms]
    distances = np.array(
        [np.abs(b - a).sum() for a, b in zip(shares, shares[1:], strict=False)], dtype=np.float64
    )
    stable_from = None
    for index in range(len(distances), 0, -1):
        if distances[index - 1] >= threshold:
            break
        stable_from = steps[index - 1]
    return LayerStability(layer, steps, distances, float(threshold), stable_from)


def activation_heatmap(
    activations: np.ndarray,
    layer: str = "",
    dead_maximum: float = DEAD_MAXIMUM,
    always_on_frequency: float = ALWAYS_ON_FREQUENCY,
) -> ActivationHeatmap:
    """Return each filter's maximum and activation frequency, with dead and always-on filters.

    Negative values are clipped to 0, as for `perplexity`: a filter responds only above 0.
    """
    values = np.clip(_as_matrix(activations), 0.0, None)
    if values.shape[0] == 0:
        raise ValueError("activations have no patches")
    maximum = values.max(axis=0)
    frequency = (values > 0.5 * maximum).mean(axis=0)
    dead = maximum <= dead_maximum
    always_on = ~dead & (frequency >= always_on_frequency)
    return ActivationHeatmap(
        layer, maximum, frequency, np.flatnonzero(dead), np.flatnonzero(always_on)
    )


# --------------------------------------------------------------------------------------------
# Readers over a recorded run


def deepeyes_layers(manifest: dict) -> list[str]:
    """Return the probe layers DeepEyes analyses: those read after an activation (not the logits)."""
    return [
        layer
        for layer, activation in manifest.get("probe_layers", {}).items()
        if activation != layer
    ]


def read_probe(
    run_dir: str | Path, step: int, layers: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Return the probe activations (float32 [rows, channels]) of snapshot `step` per layer.

    `layers` defaults to `deepeyes_layers` of the run's manifest.
    """
    run_dir = Path(run_dir)
    if layers is None:
        layers = deepeyes_layers(read_manifest(run_dir))
    path = snapshot_dir(run_dir, step) / "probe.safetensors"
    if not path.is_file():
        raise ValueError(f"the run {run_dir} has no probe at step {step}")
    tensors = load_file(path)
    missing = [layer for layer in layers if layer not in tensors]
    if missing:
        raise ValueError(f"{path} lacks the probe layers {', '.join(missing)}")
    return {layer: tensors[layer].astype(np.float32) for layer in layers}


def run_histograms(
    run_dir: str | Path, bins: int = DEFAULT_BINS, layers: Sequence[str] | None = None
) -> dict[str, list[PerplexityHistogram]]:
    """Return each layer's perplexity histograms at every snapshot with a probe, in step order."""
    run_dir = Path(run_dir)
    if layers is None:
        layers = deepeyes_layers(read_manifest(run_dir))
    histograms: dict[str, list[PerplexityHistogram]] = {layer: [] for layer in layers}
    for step in list_snapshots(run_dir):
        if not (snapshot_dir(run_dir, step) / "probe.safetensors").is_file():
            continue
        for layer, values in read_probe(run_dir, step, layers).items():
            histograms[layer].append(perplexity_histogram(values, layer, step, bins))
    return histograms


def diagnose_run(
    run_dir: str | Path,
    step: int | None = None,
    bins: int = DEFAULT_BINS,
    threshold: float = STABILITY_THRESHOLD,
    dead_maximum: float = DEAD_MAXIMUM,
    always_on_frequency: float = ALWAYS_ON_FREQUENCY,
    histograms: Mapping[str, list[PerplexityHistogram]] | None = None,
) -> RunDiagnosis:
    """Return DeepEyes' per-layer view of snapshot `step` (default: the last) of a run.

    Stability is judged over every snapshot of the run, not only up to `step`; pass the run's
    `run_histograms` (with the same `bins`) when you have them, to spare reading every probe again.
    """
    run_dir = Path(run_dir)
    try:
        manifest = read_manifest(run_dir)
    except (OSError, ValueError) as error:
        raise ValueError(f"{run_dir} holds no readable run") from error
    steps = list_snapshots(run_dir)
    if not steps:
        raise ValueError(f"the run {run_dir} has no complete snapshot yet")
    if step is None:
        step = steps[-1]
    if step not in steps:
        raise ValueError(
            f"the run {run_dir} has no snapshot at step {step}; "
            f"its steps are {', '.join(map(str, steps))}"
        )
    layers = deepeyes_layers(manifest)
    probe = read_probe(run_dir, step, layers)
    if histograms is None:
        histograms = run_histograms(run_dir, bins, layers)
    parts = tuple(
        LayerDiagnosis(
            histogram=perplexity_histogram(probe[layer], layer, step, bins),
            heatmap=activation_heatmap(probe[layer], layer, dead_maximum, always_on_frequency),
            stability=layer_stability(histograms[layer], threshold),
        )
        for layer in layers
    )
    return RunDiagnosis(str(run_dir), int(step), parts)


def describe(diagnosis: RunDiagnosis) -> str:
    """Return the text of `convlens deepeyes`: one line per layer."""
    lines = [f"{diagnosis.run} at step {diagnosis.step}:"]
    width = max((len(part.layer) for part in diagnosis.layers), default=0) + 2
    for part in diagnosis.layers:
        histogram, heatmap = part.histogram, part.heatmap
        rows = int(histogram.counts.sum())
        perplexities = 0.5 * (histogram.edges[:-1] + histogram.edges[1:])
        mean = float((perplexities * histogram.counts).sum() / max(rows, 1))
        stable = part.stability.stable_from_step
        lines.append(
            f"  {part.layer:<{width}}{len(heatmap.maximum)} filters, mean perplexity ~{mean:.1f} "
            f"over {rows} patches, {histogram.undetected} undetected; "
            f"dead {list(map(int, heatmap.dead))}, always on {list(map(int, heatmap.always_on))}; "
            f"{'stable from step ' + str(stable) if stable is not None else 'not stable yet'}"
        )
    return "\n".join(lines)
