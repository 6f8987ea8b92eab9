"""DeepEyes over a recorded run: perplexity histograms, layer stability, activation heatmaps,
input and filter maps, near-duplicate filters, a diagnosis in sentences and a smaller architecture.

Pure functions over numpy arrays: a run's probe activations, read by `convlens.runformat`. The
analysed layers (`deepeyes_layers`) are the probe layers whose activation layer differs from the
layer itself: the conv layers and hidden linear layers, read after their ReLU. The output layer is
recorded as its own activation layer (logits, which may be negative and are not a filter's
response), so perplexity and activation frequency mean nothing there and it is left out.

A filter's *response* is its column of probe activations (one value per sampled receptive field);
two filters are near-duplicates when the cosine similarity of their responses is at least
`DUPLICATE_COSINE`. A filter *fires* on a patch where its activation exceeds half its maximum
over the probe (the threshold of the activation frequency).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from convlens.cnnvis.ordering import cosine_similarity
from convlens.embedding import (
    DEFAULT_ITERATIONS,
    DEFAULT_PERPLEXITY,
    EARLY_EXAGGERATION_ITERATIONS,
    EMBEDDING_SEED,
    PLACEMENT_ITERATIONS,
    Embedding,
    embed,
    place,
    restore,
)
from convlens.graph import build_graph
from convlens.paths import convlens_home, write_atomic
from convlens.processes import live_trainer
from convlens.runformat import (
    ProbeRows,
    deepeyes_layers,
    list_snapshots,
    read_manifest,
    read_probe,
    run_status,
    snapshot_dir,
)
from convlens.smallnets import BaseCNN, DeepEyesNet, build_small
from convlens.training import OPTIONS_WITHOUT_FLAG, TrainConfig, retrain_command

DEFAULT_BINS = 20
STABILITY_THRESHOLD = 0.05
DEAD_MAXIMUM = 1e-6
ALWAYS_ON_FREQUENCY = 0.9
FIRING_SHARE = 0.5  # of a filter's maximum, as for the activation frequency
DUPLICATE_COSINE = 0.99
# Below this label specificity a filter has no favourite label worth naming.
LABEL_AGNOSTIC_BELOW = 0.25
FILTER_MAP_PERPLEXITY = 10.0
EFFECTIVE_VARIANCE = 0.99
OVERSIZED_SHARE = 0.5
# Bumped when `embed` lays the same points out differently: older layout files are not read.
LAYOUT_FORMAT = 1
# The shipped runs of DeepEyes' case study (section 6.1): the full network and the smaller one.
CASE_STUDY_RUNS = ("fashion_deepeyes", "fashion_deepeyes_small")


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
    activations: np.ndarray, layer_id: str = "", step: int = 0, bins: int = DEFAULT_BINS
) -> PerplexityHistogram:
    """Return the histogram of the patches' perplexities over `histogram_edges`."""
    values = _as_matrix(activations)
    edges = histogram_edges(values.shape[1], bins)
    # Clipping keeps a rounding error past `filters` inside the last bin.
    perplexities = np.clip(perplexity(values), edges[0], edges[-1])
    counts, _ = np.histogram(perplexities, bins=edges)
    return PerplexityHistogram(
        layer_id, int(step), edges, counts.astype(np.int64), int(undetected(values).sum())
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
    layer_id: str = "",
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
        layer_id, maximum, frequency, np.flatnonzero(dead), np.flatnonzero(always_on)
    )


# --------------------------------------------------------------------------------------------
# Over a recorded run


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


# --------------------------------------------------------------------------------------------
# Filters: what fires where, near-duplicates, per-label specificity


@dataclass(frozen=True)
class NearDuplicates:
    """Filters whose responses over the probe are nearly the same (DeepEyes T4)."""

    threshold: float
    pairs: tuple[tuple[int, int, float], ...]  # (i, j, cosine) with i < j, cosine >= threshold
    groups: tuple[tuple[int, ...], ...]  # connected pairs, each ascending, ordered by first filter

    @property
    def redundant(self) -> tuple[int, ...]:
        """Return every filter of a group but its first: the ones a smaller layer can drop."""
        return tuple(sorted(f for group in self.groups for f in group[1:]))

    def partners(self, index: int) -> tuple[int, ...]:
        """Return the other filters of `index`'s group (empty when it has none)."""
        for group in self.groups:
            if index in group:
                return tuple(f for f in group if f != index)
        return ()


def response_similarity(activations: np.ndarray) -> np.ndarray:
    """Return the (filters, filters) cosine similarity of the filters' responses (negatives
    clipped to 0); a filter that never responds has similarity 0 with every filter, itself too."""
    values = np.clip(_as_matrix(activations), 0.0, None)
    similarity = np.clip(cosine_similarity(values.T), 0.0, 1.0)
    np.fill_diagonal(similarity, (values > 0).any(axis=0).astype(np.float64))
    return similarity


def near_duplicates(
    activations: np.ndarray,
    threshold: float = DUPLICATE_COSINE,
    dead_maximum: float = DEAD_MAXIMUM,
) -> NearDuplicates:
    """Return the pairs of filters whose responses have cosine similarity >= threshold, and the
    groups they chain into. Dead filters are left out: they are reported as dead."""
    values = np.clip(_as_matrix(activations), 0.0, None)
    similarity = response_similarity(values)
    live = values.max(axis=0) > dead_maximum if len(values) else np.zeros(values.shape[1], bool)
    first, second = np.nonzero(np.triu(similarity >= threshold, k=1))
    pairs = tuple(
        (int(i), int(j), float(similarity[i, j]))
        for i, j in zip(first, second, strict=True)
        if live[i] and live[j]
    )
    parent = list(range(values.shape[1]))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    for i, j, _ in pairs:
        parent[root(j)] = root(i)
    members: dict[int, list[int]] = {}
    for index in sorted({f for pair in pairs for f in pair[:2]}):
        members.setdefault(root(index), []).append(index)
    groups = tuple(sorted(tuple(group) for group in members.values()))
    return NearDuplicates(float(threshold), pairs, groups)


def firing(activations: np.ndarray, index: int, dead_maximum: float = DEAD_MAXIMUM) -> np.ndarray:
    """Return a (patches,) mask of the patches on which filter `index` fires (above half its
    maximum); all False for a dead filter."""
    column = np.clip(_as_matrix(activations)[:, index], 0.0, None)
    top = column.max() if len(column) else 0.0
    if top <= dead_maximum:
        return np.zeros(len(column), dtype=bool)
    return column > FIRING_SHARE * top


def strongest(activations: np.ndarray, index: int, count: int) -> np.ndarray:
    """Return the indices of the `count` patches on which filter `index` responds most, strongest
    first (ties by patch order); patches where it does not respond are left out."""
    column = _as_matrix(activations)[:, index]
    order = np.argsort(-column, kind="stable")
    return order[column[order] > 0][:count]


def per_label_mean(activations: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """Return the (filters, classes) mean activation of each filter over the patches of each label
    (negatives clipped to 0); a label with no patch has mean 0."""
    values = np.clip(_as_matrix(activations), 0.0, None)
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(values),):
        raise ValueError(f"labels must be ({len(values)},), got shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"labels must lie in 0..{classes - 1}")
    sums = np.zeros((classes, values.shape[1]))
    np.add.at(sums, labels, values)
    counts = np.bincount(labels, minlength=classes)[:, None]
    return (sums / np.maximum(counts, 1)).T


def label_specificity(means: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return each filter's top label (-1 when it never responds), the perplexity of its per-label
    means (1: one label only, `classes`: all alike) and its specificity, 1 - (perplexity - 1) /
    (classes - 1), from 0 (no preference) to 1 (one label)."""
    means = _as_matrix(means)
    classes = means.shape[1]
    label_perplexity = perplexity(means)
    top = np.where(means.max(axis=1) > 0, means.argmax(axis=1), -1)
    specificity = 1.0 - (label_perplexity - 1.0) / max(classes - 1, 1)
    return top.astype(np.int64), label_perplexity, np.clip(specificity, 0.0, 1.0)


def specificity_phrase(top: int, specificity: float, classes: Sequence[str]) -> str:
    """What a filter's label specificity says, without naming a favourite label that is not one
    (its strongest patches may then show other labels)."""
    if top < 0:
        return "it never responds"
    if specificity < LABEL_AGNOSTIC_BELOW:
        return (
            f"it responds to every label about alike (specificity {specificity:.2f}; on average "
            f"a little more to *{classes[top]}*)"
        )
    return f"on average it responds most to *{classes[top]}* (specificity {specificity:.2f})"


# --------------------------------------------------------------------------------------------
# Input map and filter map


@dataclass(frozen=True)
class InputMap:
    """The probe patches of a layer at one snapshot, laid out by their filter activations."""

    layer: str
    reference_step: int  # the snapshot the map was embedded at
    step: int  # the snapshot these positions show (placed into the reference map)
    coordinates: np.ndarray  # (patches, 2)
    labels: np.ndarray  # (patches,) the label of each patch's image
    method: str


@dataclass(frozen=True)
class FilterMap:
    """A layer's filters laid out by their responses over the probe (DeepEyes' filter map)."""

    layer: str
    step: int
    coordinates: np.ndarray  # (filters, 2)
    method: str
    top_label: np.ndarray  # (filters,) the label that activates each filter most; -1 if dead
    label_perplexity: np.ndarray  # (filters,) perplexity of its per-label mean activations
    specificity: np.ndarray  # (filters,) 0..1, larger for a lower label perplexity
    dead: np.ndarray  # indices of dead filters
    duplicates: NearDuplicates


def embed_patches(
    activations: np.ndarray, n_jobs: int = 1, layouts: Path | None = None
) -> Embedding:
    """Return the input map's embedding of the patches (rows) by their filter activations.

    With a folder `layouts`, the map's layout is read from the file that these activations name
    (their bytes hashed with the layout's settings), or laid out and written there: t-SNE takes
    seconds, reading it back a moment, so a published run's maps are laid out once per machine
    (`prepare_maps`) and not once per server or per first visit.
    """
    values = np.asarray(activations, dtype=np.float64)
    return _embed_laid_out(values, DEFAULT_PERPLEXITY, n_jobs, layouts)


def _embed_laid_out(
    values: np.ndarray, perplexity: float, n_jobs: int, layouts: Path | None
) -> Embedding:
    """`embed` the rows of `values`, the layout kept in a file of `layouts` (see `embed_patches`)."""
    if layouts is None:
        return embed(values, perplexity=perplexity, n_jobs=n_jobs)
    path = _layout_path(values, perplexity, layouts)
    coordinates = _read_positions(path, len(values))
    if coordinates is not None:
        return restore(values, coordinates, perplexity=perplexity, n_jobs=n_jobs)
    embedding = embed(values, perplexity=perplexity, n_jobs=n_jobs)
    _write_positions(path, embedding.coordinates)
    return embedding


def _placed(
    map_coordinates: np.ndarray,
    embedding: Callable[[], Embedding],
    values: np.ndarray,
    layouts: Path | None,
) -> np.ndarray:
    """`place` the rows of `values` in the map laid out at `map_coordinates`, whose `embedding()`
    is asked for only when they must be placed; with a folder `layouts`, their positions are kept
    in a file of it named by the map's layout and these values, as `_embed_laid_out` keeps layouts
    (placing a snapshot takes most of a second, reading it back a moment)."""
    if layouts is None:
        return place(embedding(), values)
    path = _placement_path(map_coordinates, values, layouts)
    coordinates = _read_positions(path, len(values))
    if coordinates is None:
        coordinates = place(embedding(), values)
        _write_positions(path, coordinates)
    return coordinates


def _layout_path(values: np.ndarray, perplexity: float, layouts: Path) -> Path:
    return layouts / f"{_layout_name(values, perplexity)}.npy"


def _placement_path(coordinates: np.ndarray, values: np.ndarray, layouts: Path) -> Path:
    digest = hashlib.sha256(f"{LAYOUT_FORMAT} {values.shape} {PLACEMENT_ITERATIONS}".encode())
    digest.update(np.ascontiguousarray(coordinates, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
    return layouts / f"placed-{digest.hexdigest()[:32]}.npy"


def _read_positions(path: Path, points: int) -> np.ndarray | None:
    """The (points, 2) positions kept in `path`, or None: none yet, or a broken file."""
    with contextlib.suppress(OSError, ValueError, EOFError):
        positions = np.load(path, allow_pickle=False)
        if positions.shape == (points, 2) and np.isfinite(positions).all():
            return positions.astype(np.float64, copy=False)
    return None


def _write_positions(path: Path, positions: np.ndarray) -> None:
    with contextlib.suppress(OSError):  # a full or read-only disk loses only the file
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda fp: np.save(fp, positions))


def _layout_name(values: np.ndarray, perplexity: float) -> str:
    digest = hashlib.sha256(
        f"{LAYOUT_FORMAT} {values.shape} {perplexity} {DEFAULT_ITERATIONS} "
        f"{EARLY_EXAGGERATION_ITERATIONS} {EMBEDDING_SEED}".encode()
    )
    digest.update(np.ascontiguousarray(values).tobytes())
    return digest.hexdigest()[:32]


def patch_layouts_dir() -> Path:
    """Where the input maps' layouts of published runs are kept (`embed_patches`' files)."""
    return convlens_home() / "cache" / "patch_maps"


def prepare_maps(
    run_dirs: Sequence[Path], progress: Callable[[int, int], None] | None = None
) -> int:
    """Lay out the input map and the filter map of every snapshot and layer of `run_dirs`, and
    place every snapshot's patches into the input map of the run's last snapshot (where a link
    without a step opens, and the map a student who moves the snapshot slider back keeps), into
    `patch_layouts_dir` (those done already take a moment); return how many maps and placements
    there are."""
    layouts = patch_layouts_dir()
    snapshots = {run_dir: list_snapshots(run_dir) for run_dir in run_dirs}
    layers = {run_dir: deepeyes_layers(read_manifest(run_dir)) for run_dir in run_dirs}
    total = sum(
        (2 * len(steps) - 1) * len(layers[run]) for run, steps in snapshots.items() if steps
    )
    done = 0

    def advance() -> None:
        nonlocal done
        if progress is not None:
            progress(done, total)
        done += 1

    for run_dir, steps in snapshots.items():
        for step in steps:
            for values in read_probe(run_dir, step, layers[run_dir]).values():
                advance()
                _lay_out_unless_kept(_as_matrix(values), DEFAULT_PERPLEXITY, layouts)
                _lay_out_unless_kept(_filter_units(values), FILTER_MAP_PERPLEXITY, layouts)
        if not steps:
            continue
        last = {
            layer: _as_matrix(values)
            for layer, values in read_probe(run_dir, steps[-1], layers[run_dir]).items()
        }
        # the last maps' embeddings, restored only where a placement is missing
        maps = {
            layer: cache(partial(embed_patches, last[layer], layouts=layouts)) for layer in last
        }
        for step in steps[:-1]:
            for layer, values in read_probe(run_dir, step, layers[run_dir]).items():
                advance()
                laid_out = _read_positions(
                    _layout_path(last[layer], DEFAULT_PERPLEXITY, layouts), len(last[layer])
                )
                if laid_out is None:  # a disk that kept no file
                    laid_out = maps[layer]().coordinates
                _placed(laid_out, maps[layer], _as_matrix(values), layouts)
    if progress is not None:
        progress(total, total)
    return total


def _lay_out_unless_kept(values: np.ndarray, perplexity: float, layouts: Path) -> None:
    """Lay out the rows of `values` into `layouts` unless their layout is kept there: reading it
    back would restore the embedding (its affinities), most of a start's preparation when every
    map is on disk already."""
    if _read_positions(_layout_path(values, perplexity, layouts), len(values)) is None:
        _embed_laid_out(values, perplexity, 1, layouts)


def input_map(
    embedding: Embedding,
    activations: np.ndarray,
    labels: np.ndarray,
    layer_id: str,
    reference_step: int,
    step: int,
    layouts: Path | None = None,
) -> InputMap:
    """Return the input map at `step`: the reference layout itself at the reference step, else
    the patches' activations at `step` placed into it (the reference points do not move; with a
    folder `layouts`, the placement is kept there, `_placed`)."""
    values = _as_matrix(activations)
    if len(values) != embedding.points:
        raise ValueError(f"the map holds {embedding.points} patches; these are {len(values)}")
    coordinates = (
        embedding.coordinates
        if step == reference_step
        else _placed(embedding.coordinates, lambda: embedding, values, layouts)
    )
    return InputMap(
        layer_id,
        int(reference_step),
        int(step),
        np.asarray(coordinates, dtype=np.float64),
        np.asarray(labels, dtype=np.int64),
        embedding.describe(),
    )


def _embed_filters(values: np.ndarray, n_jobs: int, layouts: Path | None) -> Embedding:
    """The filter map's embedding of the non-negative responses `values` (patches x filters)."""
    return _embed_laid_out(_filter_units(values), FILTER_MAP_PERPLEXITY, n_jobs, layouts)


def _filter_units(values: np.ndarray) -> np.ndarray:
    """Each filter's non-negative responses over the patches as a unit vector (filters x
    patches): what the filter map lays out."""
    values = np.clip(_as_matrix(values), 0.0, None)
    norms = np.linalg.norm(values, axis=0)
    return np.where(norms > 0, values / np.where(norms > 0, norms, 1.0), 0.0).T


def filter_map(
    activations: np.ndarray,
    labels: np.ndarray,
    classes: int,
    layer_id: str = "",
    step: int = 0,
    *,
    dead_maximum: float = DEAD_MAXIMUM,
    duplicate_cosine: float = DUPLICATE_COSINE,
    n_jobs: int = 1,
    layouts: Path | None = None,
) -> FilterMap:
    """Return the filter map: filters embedded by their L2-normalised responses, so that
    near-duplicates (cosine ~ 1) coincide; t-SNE with perplexity `FILTER_MAP_PERPLEXITY`, or PCA
    for fewer than `convlens.embedding.TSNE_MIN_POINTS` filters. With a folder `layouts`, the
    layout is kept there as the input map's is (`embed_patches`)."""
    values = np.clip(_as_matrix(activations), 0.0, None)
    embedding = _embed_filters(values, n_jobs, layouts)
    top, label_perplexity, specificity = label_specificity(per_label_mean(values, labels, classes))
    dead = np.flatnonzero(values.max(axis=0) <= dead_maximum) if len(values) else np.arange(0)
    return FilterMap(
        layer_id,
        int(step),
        embedding.coordinates,
        embedding.describe(),
        top,
        label_perplexity,
        specificity,
        dead,
        near_duplicates(values, duplicate_cosine, dead_maximum),
    )


# --------------------------------------------------------------------------------------------
# The probe's rows and their image patches


def patch_boxes(manifest: Mapping, layer_id: str, rows: ProbeRows) -> np.ndarray:
    """Return the (rows, 4) receptive fields (x0, y0, x1, y1; ends exclusive) of the probe rows in
    the input image, from the run's architecture."""
    size = tuple(int(v) for v in manifest["input_size"])
    graph = build_graph(build_small(manifest["arch"], **manifest["arch_options"]), size)
    return np.array(
        [
            graph.receptive_field_box(layer_id, int(y), int(x))
            for y, x in zip(rows.y, rows.x, strict=True)
        ],
        dtype=np.int64,
    ).reshape(-1, 4)


def crop_patches(
    images: np.ndarray, image_indices: Sequence[int], boxes: np.ndarray
) -> list[Image.Image]:
    """Return the boxes (x0, y0, x1, y1) of uint8 greyscale images (N, H, W), at their own size
    (the page magnifies them)."""
    return [
        Image.fromarray(np.asarray(images[int(i)], dtype=np.uint8)).crop(tuple(box))
        for i, box in zip(image_indices, boxes, strict=True)
    ]


# --------------------------------------------------------------------------------------------
# Filters dead over the run, and the diagnosis in sentences


@dataclass(frozen=True)
class FilterMaxima:
    """Each filter's maximum probe activation at every snapshot of a run."""

    layer: str
    steps: tuple[int, ...]
    maxima: np.ndarray  # (snapshots, filters)


def run_filter_maxima(
    run_dir: str | Path, layers: Sequence[str] | None = None
) -> dict[str, FilterMaxima]:
    """Return each layer's filter maxima at every snapshot with a probe, in step order."""
    run_dir = Path(run_dir)
    if layers is None:
        layers = deepeyes_layers(read_manifest(run_dir))
    steps: list[int] = []
    rows: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
    for step in list_snapshots(run_dir):
        if not (snapshot_dir(run_dir, step) / "probe.safetensors").is_file():
            continue
        steps.append(step)
        for layer, values in read_probe(run_dir, step, layers).items():
            rows[layer].append(np.clip(values, 0.0, None).max(axis=0) if len(values) else values[0])
    return {
        layer: FilterMaxima(
            layer, tuple(steps), np.array(rows[layer]).reshape(len(steps), -1).astype(np.float64)
        )
        for layer in layers
    }


def dead_since(
    maxima: FilterMaxima, filters: Sequence[int], step: int, dead_maximum: float = DEAD_MAXIMUM
) -> int | None:
    """Return the first snapshot from which every one of `filters` stays dead through `step`,
    or None when one of them is alive at `step` (or `step` is not a snapshot)."""
    if step not in maxima.steps or not len(filters):
        return None
    position = maxima.steps.index(step)
    dead = (maxima.maxima[: position + 1, list(filters)] <= dead_maximum).all(axis=1)
    if not dead[position]:
        return None
    first = position
    while first > 0 and dead[first - 1]:
        first -= 1
    return maxima.steps[first]


@dataclass(frozen=True)
class Finding:
    """One sentence of the diagnosis, with the filters that marking it "useless" acts on."""

    layer: str
    kind: str  # "dead", "always_on", "redundant", "clean" or "stability"
    filters: tuple[int, ...]
    sentence: str


FINDING_KINDS = ("dead", "always_on", "redundant", "clean", "stability")
LISTED_FILTERS = 30


def filter_list(indices: Sequence[int], limit: int = LISTED_FILTERS) -> str:
    """Return filter indices as a short comma-separated list."""
    shown = ", ".join(str(int(index)) for index in list(indices)[:limit])
    more = len(indices) - limit
    return shown + (f" and {more} more" if more > 0 else "")


def _group_text(groups: Sequence[tuple[int, ...]], limit: int = 8) -> str:
    shown = ", ".join(" ≈ ".join(map(str, group)) for group in groups[:limit])
    return shown + (f" and {len(groups) - limit} more" if len(groups) > limit else "")


def unit_noun(layer: str) -> str:
    """What a layer's units are called: units for a recorded fully connected layer (`fc...`),
    filters for a convolution."""
    return "units" if layer.rsplit(".", 1)[-1].startswith("fc") else "filters"


def diagnosis_findings(
    diagnosis: RunDiagnosis,
    duplicates: Mapping[str, NearDuplicates] | None = None,
    maxima: Mapping[str, FilterMaxima] | None = None,
    dead_maximum: float = DEAD_MAXIMUM,
) -> list[Finding]:
    """Return the diagnosis of a snapshot as sentences, per layer: dead, always-on and
    near-duplicate filters (each with the filters to mark useless), or none, then stability.

    With the run's `maxima` (and the `dead_maximum` the diagnosis used) a dead sentence says
    since which snapshot the filters have been dead."""
    findings = []
    step = diagnosis.step
    for part in diagnosis.layers:
        layer, heatmap = part.layer, part.heatmap
        total = len(heatmap.maximum)
        noun = unit_noun(layer)
        found = []
        if len(heatmap.dead):
            since = (
                dead_since(maxima[layer], heatmap.dead, step, dead_maximum)
                if maxima and layer in maxima
                else None
            )
            when = (
                f"since step {since}" if since is not None and since < step else f"at step {step}"
            )
            found.append(
                Finding(
                    layer,
                    "dead",
                    tuple(int(f) for f in heatmap.dead),
                    f"{layer}: {len(heatmap.dead)} of {total} {noun} dead {when} "
                    f"({filter_list(heatmap.dead)}); the layer may be oversized.",
                )
            )
        if len(heatmap.always_on):
            found.append(
                Finding(
                    layer,
                    "always_on",
                    tuple(int(f) for f in heatmap.always_on),
                    f"{layer}: {len(heatmap.always_on)} of {total} {noun} always on at step {step} "
                    f"({filter_list(heatmap.always_on)}); they respond to almost every patch and "
                    "tell little apart.",
                )
            )
        twins = (duplicates or {}).get(layer)
        if twins is not None and twins.groups:
            found.append(
                Finding(
                    layer,
                    "redundant",
                    twins.redundant,
                    f"{layer}: {len(twins.groups)} group{'s' if len(twins.groups) > 1 else ''} of "
                    f"near-duplicate {noun} at step {step} ({_group_text(twins.groups)}; cosine "
                    f"≥ {twins.threshold:g}); one of each group is enough, so "
                    f"{len(twins.redundant)} are redundant.",
                )
            )
        if not found:
            checked = (
                "dead, always-on or near-duplicate" if twins is not None else "dead or always-on"
            )
            found.append(
                Finding(layer, "clean", (), f"{layer}: no {checked} {noun} at step {step}.")
            )
        findings += found
        stability = part.stability
        if stability.stable_from_step is not None:
            sentence = f"{layer}: stable from step {stability.stable_from_step}."
        elif len(stability.distances):
            sentence = (
                f"{layer}: still changing (last change {stability.distances[-1]:.2f}, threshold "
                f"{stability.threshold:g}); more training may help."
            )
        else:
            sentence = f"{layer}: one snapshot so far; stability needs two."
        findings.append(Finding(layer, "stability", (), sentence))
    return findings


# --------------------------------------------------------------------------------------------
# A smaller architecture


@dataclass(frozen=True)
class LayerSuggestion:
    """How wide one layer could be, and why."""

    layer: str
    option: str | None  # the architecture option that sets its width (e.g. "conv1"), if any
    filters: int
    removable: int  # dead, always-on and redundant near-duplicate filters (each counted once)
    effective: int  # principal components for `variance` of its kept filters' responses
    suggested: int


@dataclass(frozen=True)
class ArchitectureSuggestion:
    """A smaller architecture for a run, from what its probe shows at one snapshot."""

    arch: str
    layers: tuple[LayerSuggestion, ...]
    arch_options: dict[str, object]  # the run's options with the suggested widths
    variance: float

    @property
    def changed(self) -> tuple[LayerSuggestion, ...]:
        """Return the layers whose width the suggestion changes (and that can be set)."""
        return tuple(
            part
            for part in self.layers
            if part.option is not None and part.suggested != part.filters
        )

    def describe(self) -> str:
        """Return the change in words, e.g. "features.conv1 at 12 filters (not 20)"."""
        parts = [
            f"{part.layer} at {part.suggested} "
            f"{'units' if part.option and part.option.startswith('fc') else 'filters'} "
            f"(not {part.filters})"
            for part in self.changed
        ]
        return ", ".join(parts) if parts else "no change"


def effective_width(activations: np.ndarray, variance: float = EFFECTIVE_VARIANCE) -> int:
    """Return how many principal components explain `variance` of the filters' centred responses
    (at least 1): the number of independent directions the layer really uses."""
    values = np.clip(_as_matrix(activations), 0.0, None)
    if not 0 < variance <= 1:
        raise ValueError("variance must lie in (0, 1]")
    centred = values - values.mean(axis=0)
    # The squared singular values are the eigenvalues of the smaller Gram matrix, which is much
    # quicker to get than an SVD of a wide layer's responses.
    gram = centred @ centred.T if len(centred) < centred.shape[1] else centred.T @ centred
    spectrum = np.clip(np.linalg.eigvalsh(gram)[::-1], 0.0, None)
    total = spectrum.sum()
    if total <= 0:
        return 1
    explained = np.cumsum(spectrum) / total
    return int(min(np.searchsorted(explained, variance - 1e-12) + 1, values.shape[1]))


def width_options(arch: str) -> dict[str, int]:
    """Return the integer width options of a small architecture with their defaults."""
    builder = {"deepeyes": DeepEyesNet, "basecnn": BaseCNN}.get(arch)
    if builder is None:
        return {}
    return {
        name: parameter.default
        for name, parameter in inspect.signature(builder).parameters.items()
        if isinstance(parameter.default, int)
        and not isinstance(parameter.default, bool)
        and name != "num_classes"
    }


def suggest_architecture(
    arch: str,
    arch_options: Mapping[str, object],
    probe: Mapping[str, np.ndarray],
    diagnosis: RunDiagnosis,
    duplicates: Mapping[str, NearDuplicates] | None = None,
    variance: float = EFFECTIVE_VARIANCE,
    oversized_share: float = OVERSIZED_SHARE,
) -> ArchitectureSuggestion:
    """Return a width for each layer: without its dead, always-on and redundant near-duplicate
    filters, and, when the responses of the rest over the probe span at most `oversized_share`
    of the layer's width (`effective_width` at `variance`), only that many.

    Only layers the architecture has an option for (DeepEyes' conv1, conv2 and fc1) are resized.
    """
    options = width_options(arch)
    suggested_options: dict[str, object] = dict(arch_options)
    parts = []
    for part in diagnosis.layers:
        layer, heatmap = part.layer, part.heatmap
        filters = len(heatmap.maximum)
        twins = (duplicates or {}).get(layer)
        removable = set(map(int, heatmap.dead)) | set(map(int, heatmap.always_on))
        removable |= set(twins.redundant if twins is not None else ())
        kept = [f for f in range(filters) if f not in removable]
        values = np.asarray(probe[layer])
        effective = effective_width(values[:, kept], variance) if kept and len(values) else 1
        suggested = max(1, len(kept))
        if effective <= oversized_share * filters:
            suggested = min(suggested, effective)
        name = layer.rsplit(".", 1)[-1]
        option = name if name in options else None
        if option is None:
            suggested = filters
        elif suggested != filters:
            suggested_options[option] = suggested
        parts.append(LayerSuggestion(layer, option, filters, len(removable), effective, suggested))
    return ArchitectureSuggestion(arch, tuple(parts), suggested_options, float(variance))


def suggested_train_options(
    manifest: Mapping, arch_options: Mapping[str, object]
) -> dict[str, object]:
    """Return the options of `convlens.runs.start_run` that train the run of `manifest` again
    with `arch_options`: those options and every recorded setting off its default that the
    command line can set."""
    defaults = dataclasses.asdict(TrainConfig(arch=manifest["arch"]))
    skipped = {"arch", "arch_options", "data", "epochs", *OPTIONS_WITHOUT_FLAG}
    options: dict[str, object] = {
        key: value
        for key, value in manifest["config"].items()
        if key not in skipped and value != defaults.get(key)
    }
    return {**options, **dict(arch_options)}


def suggested_command(
    manifest: Mapping, arch_options: Mapping[str, object], out: str | None = None
) -> str:
    """Return the `python -m convlens train` command that trains the run of `manifest` again with
    `arch_options`; options the command line cannot set (e.g. a data limit) fall back to their
    defaults."""
    defaults = dataclasses.asdict(TrainConfig(arch=manifest["arch"]))
    config = {
        key: (defaults[key] if key in OPTIONS_WITHOUT_FLAG else value)
        for key, value in manifest["config"].items()
    }
    return retrain_command({**manifest, "arch_options": dict(arch_options), "config": config}, out)


# --------------------------------------------------------------------------------------------
# The smaller network against the full one


@dataclass(frozen=True)
class SizeComparison:
    """Two runs of one architecture at different widths: size, speed and accuracy."""

    names: tuple[str, str]  # (full, smaller)
    parameters: tuple[int, int]
    training_seconds: tuple[float, float]
    forward_ms: tuple[float, float]  # per image, measured here
    test_accuracy: tuple[float, float]

    @property
    def points_lost(self) -> float:
        """Return the test accuracy the smaller run loses, in percentage points."""
        return 100.0 * (self.test_accuracy[0] - self.test_accuracy[1])

    def ratio(self, measure: str) -> float:
        """Return full / smaller for "parameters", "training_seconds" or "forward_ms"."""
        full, small = getattr(self, measure)
        return float(full) / float(small) if small else float("inf")

    def sentence(self, max_points: float = 1.0) -> str:
        """Return the comparison in one sentence."""
        full, small = self.names
        verdict = "at most" if self.points_lost <= max_points else "more than"
        return (
            f"{small} has {self.ratio('parameters'):.1f}× fewer parameters than {full} "
            f"({self.parameters[1]:,} against {self.parameters[0]:,}), trained "
            f"{self.ratio('training_seconds'):.1f}× faster ({self.training_seconds[1]:.0f} s against "
            f"{self.training_seconds[0]:.0f} s), runs {self.ratio('forward_ms'):.1f}× faster "
            f"({self.forward_ms[1]:.3f} ms against {self.forward_ms[0]:.3f} ms per image) and "
            f"loses {self.points_lost:.2f} points of test accuracy ({self.test_accuracy[1]:.2%} "
            f"against {self.test_accuracy[0]:.2%}): {verdict} {max_points:g} point."
        )


def forward_ms_per_image(module: torch.nn.Module, inputs: torch.Tensor, repeats: int = 5) -> float:
    """Return the fastest of `repeats` timed forward passes over `inputs`, in ms per image."""
    best = float("inf")
    module.eval()
    with torch.no_grad():
        module(inputs[:1])  # warm-up
        for _ in range(max(repeats, 1)):
            start = time.perf_counter()
            module(inputs)
            best = min(best, time.perf_counter() - start)
    return 1000.0 * best / max(len(inputs), 1)


def compare_sizes(
    full: Mapping[str, object],
    small: Mapping[str, object],
    forward_ms: tuple[float, float],
) -> SizeComparison:
    """Return the comparison of two runs' cards (`convlens.shipped.Card` fields as a mapping)."""
    return SizeComparison(
        (str(full["name"]), str(small["name"])),
        (int(full["parameters"]), int(small["parameters"])),
        (float(full["training_seconds"]), float(small["training_seconds"])),
        (float(forward_ms[0]), float(forward_ms[1])),
        (float(full["test_accuracy"]), float(small["test_accuracy"])),
    )


# --------------------------------------------------------------------------------------------
# A run being written


def run_phase(run_dir: str | Path) -> str:
    """Return `run_status`, or "starting" for a folder whose training process is alive but whose
    manifest is not written yet."""
    status = run_status(run_dir)
    if status != "unreadable":
        return status
    return "starting" if live_trainer(Path(run_dir) / "pid") is not None else status
