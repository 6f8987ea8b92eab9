"""Activations over a dataset: one forward pass per batch feeds every requested layer, and
streaming reducers keep what the views need, in memory that does not grow with the dataset.

A layer is a chain node of type conv or linear (`convlens.graph`), named by its conv / linear
layer id; its activation is the output of the chain node's activation layer (after the norm and
the non-linearity merged into it). Per neuron (an output channel of a conv layer, a unit of a
linear layer; docs/architecture.md, "Definitions"), `analyze` returns:

- ``per_class_mean``: CNNVis eq. 1, the mean over the images of each class of the neuron's
  activation on an image, the spatial mean of its map (``reduce="mean"``) or maximum ("max");
- ``max``: the largest activation at any image and position;
- ``frequency`` (DeepEyes, docs/architecture.md): the share of the layer's sampled patches on which the
  activation exceeds half of that neuron's ``max``; ``frequency_patches`` says how many;
- ``top_patches``: the k images on which the neuron responds most, each at its best position, with
  the receptive field of that position in input pixels.

The frequency needs each neuron's maximum over the whole data before it can count, and no single
pass can count exactly over all patches in bounded memory: the last image may raise a maximum, and
then every value between the old and the new half counts no more, so all of them must be at hand.
A network whose activations often come near their maximum (EfficientNet-Lite0 on Fashion-MNIST:
10 to 40% of the values of its early layers are above half) would need a second forward pass over
all the data. The frequency is therefore counted, as docs/architecture.md defines it, on sampled patches: up
to `FREQUENCY_PATCHES` (image, position) pairs per layer drawn in advance without replacement, as
the training probe samples them (`frequency_sample`; all of them when the layer has no more). The
single pass keeps every neuron's activation at those patches and counts them against half of the
final, exact maximum at the end: the count is exact, the sample is fixed, and the memory is
`FREQUENCY_PATCHES` values per neuron whatever the number of images.

Analyses are cached under ``convlens_home()/cache/activations/``: KEY.npz holds the arrays and
KEY.json the metadata (written last, each through a temporary file and `os.replace`); KEY hashes
the model name, its weights, the data, the number of images, the layers, top_k and reduce.
"""

from __future__ import annotations

import hashlib
import json
import math
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T

from convlens.access import FULL_ACCESS, Access
from convlens.allocator import reuse_freed_memory
from convlens.data import (
    SAMPLE_NAMES,
    SAMPLES,
    fashion_mnist,
    image_folder,
    load_image,
    parse_dataset,
)
from convlens.folding import folded_model
from convlens.graph import ChainNode, LayerGraph, shared_graph
from convlens.hooks import first_tensor, hooked_calls
from convlens.models import LoadedModel, ModelKey, weights_source_key
from convlens.paths import convlens_home, write_atomic
from convlens.weights import weights_fingerprint

REDUCES = ("mean", "max")
DEFAULT_TOP_K = 9
IMAGENET_LIMIT = 1_000
# Patches per layer on which the activation frequency is counted, as many as the training probe
# samples (`convlens.training`); the standard error of a share is then at most 1.1 points.
FREQUENCY_PATCHES = 2_000
FREQUENCY_SEED = 0
# Per-image results (maximum, mean term, best position per neuron) waiting to be merged.
PENDING_BYTES = 8 << 20
CACHE_FORMAT = 2

Progress = Callable[[int, int], None]


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, eq=False)
class TopPatches:
    """The image patches on which each neuron responds most: at most one per image, best first.

    Arrays are (neurons, k), k = min(top_k, images): ``image`` (index in the dataset's order),
    ``label`` (class index of that image, -1 when the dataset has no classes), ``y`` and ``x``
    (position in the layer's output grid; 0 for a linear layer), ``value`` (the activation there),
    and ``box`` (neurons, k, 4): its receptive field [x0, y0, x1, y1] in input pixels, ends
    exclusive, clipped to the image (the whole image for a linear layer).
    """

    image: np.ndarray
    label: np.ndarray
    y: np.ndarray
    x: np.ndarray
    value: np.ndarray
    box: np.ndarray


@dataclass(frozen=True, eq=False)
class LayerStats:
    """What the reducers kept of one layer (see the module docstring for each statistic)."""

    id: str
    activation_layer: str
    type: str
    neurons: int
    per_class_mean: np.ndarray  # (classes, neurons) float64, NaN for a class without images
    max: np.ndarray  # (neurons,) float32
    frequency: np.ndarray  # (neurons,) float64
    frequency_patches: int  # how many sampled patches the frequency counts
    top_patches: TopPatches


@dataclass(frozen=True, eq=False)
class Analysis:
    """The activations of `model`'s layers over the first `images` images of `data`."""

    model: str
    data: str
    images: int
    classes: list[str]
    class_counts: np.ndarray  # (classes,) images per class
    layers: list[LayerStats]
    reduce: str
    top_k: int

    def layer(self, layer_id: str) -> LayerStats:
        """Return the statistics of the layer `layer_id` (KeyError if it was not analysed)."""
        for layer in self.layers:
            if layer.id == layer_id:
                return layer
        raise KeyError(layer_id)

    def to_json(self) -> dict:
        """Return the analysis as plain JSON values: {"model", "data", "images", "classes",
        "layers": [{"id", "neurons", "per_class_mean" (a row per class; null for a class without
        images), "max", "frequency", "frequency_patches", "top_patches" (a list per neuron of
        {"image", "label" (index into classes, or null), "y", "x", "value",
        "box": [x0, y0, x1, y1]})}]}."""
        return {
            "model": self.model,
            "data": self.data,
            "images": self.images,
            "classes": list(self.classes),
            "layers": [_layer_json(layer) for layer in self.layers],
        }


def _number(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _layer_json(layer: LayerStats) -> dict:
    top = layer.top_patches
    patches = [
        [
            {
                "image": int(top.image[n, j]),
                "label": int(top.label[n, j]) if top.label[n, j] >= 0 else None,
                "y": int(top.y[n, j]),
                "x": int(top.x[n, j]),
                "value": _number(top.value[n, j]),
                "box": [int(v) for v in top.box[n, j]],
            }
            for j in range(top.image.shape[1])
        ]
        for n in range(layer.neurons)
    ]
    return {
        "id": layer.id,
        "neurons": layer.neurons,
        "per_class_mean": [[_number(v) for v in row] for row in layer.per_class_mean],
        "max": [_number(v) for v in layer.max],
        "frequency": [_number(v) for v in layer.frequency],
        "frequency_patches": layer.frequency_patches,
        "top_patches": patches,
    }


def describe(analysis: Analysis) -> str:
    """Return a short human summary: one line per layer."""
    what = "spatial mean" if analysis.reduce == "mean" else "spatial max"
    classes = f"{len(analysis.classes)} classes" if analysis.classes else "no classes"
    lines = [
        f"{analysis.model} on {analysis.data}: {analysis.images} images, {classes}, "
        f"{len(analysis.layers)} layer{'s' if len(analysis.layers) != 1 else ''} "
        f"(activation of an image: {what} of the map)"
    ]
    width = max((len(layer.id) for layer in analysis.layers), default=0) + 2
    for layer in analysis.layers:
        silent = int((layer.max <= 0).sum())
        line = (
            f"  {layer.id:<{width}}{layer.neurons:>5} neurons  max {np.nanmax(layer.max):8.3f}  "
            f"frequency {np.nanmean(layer.frequency):6.2%}  never fire {silent}"
        )
        if analysis.classes and np.isfinite(layer.per_class_mean).any():
            strongest = np.nanargmax(np.nanmean(layer.per_class_mean, axis=1))
            line += f"  strongest class {analysis.classes[strongest]}"
        lines.append(line)
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Datasets


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """Images in a fixed order, read one at a time, with their labels when the dataset has classes."""

    name: str
    size: int
    classes: tuple[str, ...]
    labels: np.ndarray | None
    load: Callable[[int], Image.Image]
    fingerprint: str


def open_source(data: str, access: Access = FULL_ACCESS) -> ImageDataset:
    """Return the dataset `data` names: fashion-mnist:test, fashion-mnist:train, samples
    (the bundled photos, without classes) or an ImageFolder directory that `access` may read
    (`convlens.data.parse_dataset`); ImageSourceError if none."""
    name = parse_dataset(data, access)
    if name.kind == "samples":
        return ImageDataset(
            SAMPLES,
            len(SAMPLE_NAMES),
            (),
            None,
            lambda index: load_image(f"sample:{SAMPLE_NAMES[index]}").image,
            ",".join(SAMPLE_NAMES),
        )
    if name.kind == "fashion-mnist":
        dataset = fashion_mnist(name.split)
        images = dataset.images
        return ImageDataset(
            name.text,
            len(dataset),
            tuple(dataset.classes),
            np.asarray(dataset.labels),
            lambda index: Image.fromarray(images[index]),
            f"{name.text}:{len(dataset)}",
        )
    folder = image_folder(name.folder)
    digest = hashlib.blake2b(digest_size=16)
    for file in folder.files:
        stat = file.stat()
        digest.update(
            f"{file.relative_to(folder.root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
        )
    return ImageDataset(
        str(folder.root),
        len(folder),
        tuple(folder.classes),
        np.asarray(folder.labels),
        folder.image,
        f"{','.join(folder.classes)}:{digest.hexdigest()}",
    )


def default_limit(model: LoadedModel) -> int | None:
    """Return how many images `analyze` takes by default: all for a 1x28x28 model, else 1,000."""
    return None if model.reads_fashion_mnist else IMAGENET_LIMIT


def default_batch_size(input_size: Sequence[int], device: torch.device | str | None = None) -> int:
    """Return the batch size `analyze` uses by default on `device` (the CPU when None): large for
    small images; on the CPU smaller, as its speed falls once a layer's output outgrows the
    caches and the allocator hands out fresh pages for every batch (EfficientNet-Lite0: 120
    images a second in batches of 4, 35 in batches of 32)."""
    small = input_size[1] * input_size[2] <= 64 * 64
    if device is not None and torch.device(device).type != "cpu":
        return 256 if small else 32
    return 128 if small else 4


class Preprocess:
    """A model's transform applied to a list of images at once, giving exactly the tensors that
    applying it to each image and stacking would give.

    A torchvision Compose that ends in ToTensor and Normalize (the registry's transforms) runs its
    image steps per image and those two once on the stacked batch: on small images their few tensor
    operations cost more per call than the work. With the steps that leave an image unchanged
    skipped (`_leaves_unchanged`), Fashion-MNIST takes 8 instead of 41 us an image.
    """

    def __init__(self, transform: Callable):
        self.transform = transform
        self.head: Callable | None = None
        steps = transform.transforms if isinstance(transform, T.Compose) else []
        if len(steps) >= 2 and type(steps[-2]) is T.ToTensor and type(steps[-1]) is T.Normalize:
            dtype = torch.get_default_dtype()
            mean = torch.as_tensor(steps[-1].mean, dtype=dtype)
            std = torch.as_tensor(steps[-1].std, dtype=dtype)
            if mean.ndim <= 1 and std.ndim <= 1 and not (std == 0).any():
                self.head = T.Compose(steps[:-2])
                self.tail = T.Compose(steps[-2:])
                self.mean = mean.view(-1, 1, 1) if mean.ndim == 1 else mean
                self.std = std.view(-1, 1, 1) if std.ndim == 1 else std

    def pictures(self, images: Sequence[Image.Image]) -> np.ndarray | torch.Tensor:
        """Return the images after the image steps: stacked uint8 pixels (batch, H, W[, 3]) when
        `tensor` can finish them, else the finished tensor."""
        if self.head is None:
            return torch.stack([self.transform(image) for image in images])
        pictures = []
        for picture in images:
            for step in self.head.transforms:
                if not _leaves_unchanged(step, picture):
                    picture = step(picture)
            pictures.append(picture)
        kinds = {(p.mode, p.size) if isinstance(p, Image.Image) else None for p in pictures}
        if len(kinds) != 1 or next(iter(kinds)) is None or next(iter(kinds))[0] not in ("L", "RGB"):
            return torch.stack([self.tail(picture) for picture in pictures])
        mode, (width, height) = next(iter(kinds))
        shape = (len(pictures), height, width) + ((3,) if mode == "RGB" else ())
        pixels = bytearray(b"".join([p.tobytes() for p in pictures]))  # writable, for torch
        return np.frombuffer(pixels, np.uint8).reshape(shape)

    def tensor(self, pictures: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Return the preprocessed batch from what `pictures` returned."""
        if isinstance(pictures, torch.Tensor):
            return pictures
        # what ToTensor and Normalize do to one uint8 image, done to the stack: the same
        # element-wise operations, so the same values to the last bit
        batch = torch.from_numpy(pictures)
        batch = batch[:, None] if batch.dim() == 3 else batch.permute(0, 3, 1, 2)
        batch = batch.contiguous().to(torch.get_default_dtype()).div(255)
        return batch.sub_(self.mean).div_(self.std)

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Return the preprocessed images, stacked."""
        return self.tensor(self.pictures(images))


def _leaves_unchanged(step: Callable, picture: object) -> bool:
    """Whether the torchvision step `step` would return `picture` with the same pixels: a resize
    or centre crop to the size the image already has (torchvision then returns the image, or a
    crop of all of it). Skipping those saves most of the preprocessing of small images."""
    if not isinstance(picture, Image.Image):
        return False
    width, height = picture.size
    if type(step) is T.CenterCrop:
        return tuple(step.size) == (height, width)
    if type(step) is T.Resize and step.max_size is None:
        size = step.size
        if isinstance(size, int) or len(size) == 1:
            return min(width, height) == (size if isinstance(size, int) else size[0])
        return tuple(size) == (height, width)
    return False


def _batches(
    dataset: ImageDataset,
    count: int,
    batch_size: int,
    preprocess: Preprocess,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor | None]]:
    """Yield (index of the first image, the preprocessed images, labels) for the first `count`
    images."""
    for start in range(0, count, batch_size):
        stop = min(start + batch_size, count)
        inputs = preprocess([dataset.load(index) for index in range(start, stop)])
        labels = (
            torch.tensor(dataset.labels[start:stop], dtype=torch.long)
            if dataset.labels is not None
            else None
        )
        yield start, inputs, labels


# --------------------------------------------------------------------------------------------
# Layers


def analysis_nodes(graph: LayerGraph, layers: Sequence[str] | None = None) -> list[ChainNode]:
    """Return the chain nodes to analyse, in network order: `layers` (conv or linear chain node
    ids), or every conv and linear node with a (C, H, W) or (units,) output when None."""
    candidates = [
        node
        for node in graph.chain
        if node.type in ("conv", "linear") and len(node.output_shape) in (1, 3)
    ]
    if layers is None:
        return candidates
    wanted = [layer_id.strip() for layer_id in layers if layer_id.strip()]
    if not wanted:
        raise ValueError("no layers given; name conv or linear layers, or leave them out for all.")
    known = {node.id for node in candidates}
    unknown = [layer_id for layer_id in wanted if layer_id not in known]
    if unknown:
        shown = ", ".join(node.id for node in candidates[:8])
        more = ", ..." if len(candidates) > 8 else ""
        raise ValueError(
            f"'{unknown[0]}' is not a conv or linear layer of this model; choose from {shown}{more}."
        )
    return [node for node in candidates if node.id in set(wanted)]


# --------------------------------------------------------------------------------------------
# Reducers


class _Summaries:
    """What the reducers keep per neuron that is merged over images (the running maximum, the top
    patches, the class sums), for the neurons of all layers side by side.

    Each batch's per-image results of every layer (maximum and spatial mean per neuron, and the
    best position of the rows that can still enter the top patches) wait in `pending` and are
    merged every few batches, for all layers at once: one `topk` and one `index_add_` instead of
    a dozen small operations per layer and batch.
    """

    def __init__(self, neurons: int, classes: int, top_k: int, device: torch.device):
        self.neurons = neurons
        self.top_k = top_k
        self.device = device
        self.max = torch.full((neurons,), -math.inf, device=device)
        self.sums = torch.zeros(classes, neurons, dtype=torch.float64, device=device)
        # the top patches as keys that order them by value, then by image (see _patch_keys)
        self.top_key = torch.empty(neurons, 0, dtype=torch.long, device=device)
        self.top_where = torch.empty(neurons, 0, dtype=torch.long, device=device)
        # a row (image, neuron) enters the top patches only above its neuron's k-th best value
        self.entry = torch.full((neurons,), -math.inf, device=device)
        self.pending: list[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]] = []
        self.pending_labels: list[torch.Tensor] = []
        self.pending_images = 0
        self.merged_images = 0
        self.first_image = 0
        self.batch: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self.where = torch.empty(0, neurons, dtype=torch.long, device=device)

    def begin_batch(self, images: int) -> None:
        """Start a batch of `images` images, to which every layer then `add`s its results."""
        self.batch = {}
        self.where = torch.zeros(images, self.neurons, dtype=torch.long, device=self.device)

    def add(self, offset: int, best: torch.Tensor, per_image: torch.Tensor | None) -> None:
        """Add a layer's (batch, neurons) maxima and class-mean terms of this batch; `offset`: the
        index of its first neuron among all."""
        self.batch[offset] = (best, per_image)

    def end_batch(self, labels: torch.Tensor | None) -> None:
        """Close the batch; merge when enough images wait."""
        parts = [self.batch[offset] for offset in sorted(self.batch)]
        best = torch.cat([best for best, _ in parts], dim=1)
        if best.shape[1] != self.neurons:
            raise ValueError("a layer to analyse did not run in the forward pass.")
        per_image = None
        if labels is not None:
            per_image = torch.cat([terms for _, terms in parts], dim=1)
            self.pending_labels.append(labels)
        self.pending.append((best, per_image, self.where))
        self.pending_images += best.shape[0]
        self.batch = {}
        # merge often while the entry bar is low, then seldom: a stale bar only lets a few more
        # rows through, whose best position costs a pass over their maps
        most = max(1, PENDING_BYTES // (16 * self.neurons))
        if self.pending_images >= min(max(self.top_k, self.merged_images // 4), most):
            self.flush()

    def flush(self) -> None:
        """Merge the pending batches into the maximum, the top patches and the class sums."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        best = torch.cat([entry[0] for entry in pending])
        where = torch.cat([entry[2] for entry in pending])
        images = best.shape[0]
        index = torch.arange(self.first_image, self.first_image + images, device=self.device)
        torch.maximum(self.max, best.amax(dim=0), out=self.max)
        # a row below the entry bar never makes it: the k kept values are at least the bar, and
        # on ties the earlier image (kept) goes first, so its placeholder position is never used
        keys = torch.cat([self.top_key, _patch_keys(best.T, index)], dim=1)
        self.top_key, order = torch.topk(keys, min(self.top_k, keys.shape[1]), dim=1)
        self.top_where = torch.cat([self.top_where, where.T], dim=1).gather(1, order)
        if self.top_key.shape[1] == self.top_k:
            self.entry = _key_values(self.top_key[:, -1])
        if self.pending_labels:
            labels = torch.cat(self.pending_labels)
            per_image = torch.cat([entry[1] for entry in pending])
            self.sums.index_add_(0, labels, per_image.double())
            self.pending_labels = []
        self.first_image += images
        self.merged_images += images
        self.pending_images = 0


def frequency_sample(
    layer_id: str, images: int, positions: int, size: int = FREQUENCY_PATCHES
) -> np.ndarray:
    """Return the patches on which the activation frequency of `layer_id` is counted over the first
    `images` images, as sorted flat indices ``image * positions + position``: `size` of them drawn
    without replacement (the same for every run and batch size), or all when there are no more.
    `positions` is the size of the layer's output grid (1 for a linear layer)."""
    total = images * positions
    if total <= size:
        return np.arange(total, dtype=np.int64)
    generator = np.random.default_rng([FREQUENCY_SEED, zlib.crc32(layer_id.encode())])
    return np.sort(generator.choice(total, size=size, replace=False)).astype(np.int64)


class _LayerReducer:
    """The running statistics of one layer; `update` sees each batch's activations once.

    Per batch it reduces the maps to one value per image and neuron (maximum, and spatial mean for
    the class means), finds the best position only for the rows that can still enter the top
    patches, and copies the activations at the layer's sampled patches (`frequency_sample`), which
    are counted against half of the final maximum at the end; `_Summaries` merges the rest.
    """

    def __init__(
        self,
        node: ChainNode,
        summaries: _Summaries,
        offset: int,
        reduce: str,
        images: int,
        batch_size: int,
        frequency_patches: int,
    ):
        self.node = node
        self.neurons = node.output_shape[0]
        self.positions = math.prod(node.output_shape[1:]) if len(node.output_shape) == 3 else 1
        self.summaries = summaries
        self.span = slice(offset, offset + self.neurons)
        self.reduce = reduce
        self.max = summaries.max[self.span]  # a view: the summaries' merges update it
        self.sample = frequency_sample(node.id, images, self.positions, frequency_patches)
        self.sampled = torch.empty(len(self.sample), self.neurons, device=summaries.device)
        self.sampled_count = 0
        self.picks = self._sampled_per_batch(batch_size, summaries.device)

    def _sampled_per_batch(
        self, batch_size: int, device: torch.device
    ) -> dict[int, tuple[slice, torch.Tensor, torch.Tensor]]:
        """Return, by the first image of each batch that holds sampled patches, their rows in
        `sampled` and their (image in the batch, position): looked up, not computed, per batch."""
        batch_of = self.sample // (batch_size * self.positions)
        bounds = np.flatnonzero(np.diff(batch_of, prepend=-1, append=-1))
        picks = {}
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            first_image = int(batch_of[lo]) * batch_size
            local = torch.from_numpy(self.sample[lo:hi] - first_image * self.positions).to(device)
            picks[first_image] = (slice(lo, hi), local // self.positions, local % self.positions)
        return picks

    def _maps(self, output: torch.Tensor) -> torch.Tensor:
        if output.dim() not in (2, 4) or output.shape[1] != self.neurons:
            raise ValueError(
                f"layer {self.node.id} gave an output of shape {tuple(output.shape)}, "
                f"not (batch, {self.neurons}, ...) as its graph says."
            )
        return output.detach().reshape(output.shape[0], self.neurons, -1).float()

    def update(self, output: torch.Tensor, labels: torch.Tensor | None, first_image: int) -> None:
        """Add one batch: `output` (batch, neurons[, H, W]) of the activation layer, for the
        images from `first_image` on."""
        maps = self._maps(output)
        best = maps.amax(dim=2)
        per_image = None
        if labels is not None:
            per_image = best if self.reduce == "max" else maps.mean(dim=2)
        self.summaries.add(self.span.start, best, per_image)
        self._best_positions(maps, best)
        self._keep_sampled(maps, first_image)

    def _best_positions(self, maps: torch.Tensor, best: torch.Tensor) -> None:
        """Write the best position of the rows above the entry bar into the summaries."""
        image, neuron = torch.where(best > self.summaries.entry[self.span])
        if image.numel() == 0:
            return
        where = self.summaries.where[:, self.span]
        if 2 * image.numel() >= best.numel():
            where.copy_(_argmax(maps))
            return
        rows = maps.reshape(-1, maps.shape[2]).index_select(0, image * self.neurons + neuron)
        where.index_put_((image, neuron), _argmax(rows))

    def _keep_sampled(self, maps: torch.Tensor, first_image: int) -> None:
        """Copy every neuron's activations at the sampled patches that lie in this batch."""
        picks = self.picks.get(first_image)
        if picks is None:
            return
        rows, image, position = picks
        self.sampled[rows] = maps[image, :, position]
        self.sampled_count += rows.stop - rows.start

    def frequency(self) -> np.ndarray:
        """Return the share of the sampled patches on which each neuron's activation exceeds half
        of its maximum (after `_Summaries.flush`)."""
        if self.sampled_count != len(self.sample):
            raise RuntimeError(f"layer {self.node.id} did not see all of its sampled patches.")
        above = (self.sampled > self.max / 2).sum(dim=0)
        return above.cpu().numpy().astype(np.float64) / max(len(self.sample), 1)

    def result(
        self, graph: LayerGraph, labels: np.ndarray | None, class_counts: np.ndarray
    ) -> LayerStats:
        """Return the layer's statistics (after `_Summaries.flush`); `labels` of every image of
        the dataset, or None."""
        summaries = self.summaries
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class = summaries.sums[:, self.span].cpu().numpy() / class_counts[:, None]
        per_class[class_counts == 0] = np.nan
        keys = summaries.top_key[self.span]
        image = _key_images(keys).cpu().numpy()
        width = self.node.output_shape[2] if len(self.node.output_shape) == 3 else 1
        y, x = np.divmod(summaries.top_where[self.span].cpu().numpy(), width)
        return LayerStats(
            id=self.node.id,
            activation_layer=self.node.activation_layer,
            type=self.node.type,
            neurons=self.neurons,
            per_class_mean=per_class,
            max=self.max.cpu().numpy().copy(),
            frequency=self.frequency(),
            frequency_patches=len(self.sample),
            top_patches=TopPatches(
                image=image,
                label=labels[image].astype(np.int64)
                if labels is not None
                else np.full_like(image, -1),
                y=y,
                x=x,
                value=_key_values(keys).cpu().numpy(),
                box=field_boxes(graph, self.node.activation_layer, y, x),
            ),
        )


_IMAGE_BITS = 32


def _argmax(values: torch.Tensor) -> torch.Tensor:
    """Return `values.argmax(dim=-1)`; on the CPU through numpy, whose vectorised argmax is ten
    times faster than torch's on feature maps (and as fast as torch's `amax`), with the same
    answer: the first position of the maximum, or of the first NaN."""
    if values.device.type != "cpu":
        return values.argmax(dim=-1)
    return torch.from_numpy(values.numpy().argmax(axis=-1))


def _patch_keys(values: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Return int64 keys that order (value, image) pairs as the top patches rank them: by value,
    larger first, then by image, earlier first. `values` float32 (..., n), `images` (n,).

    The float's bits, flipped for negative numbers, order like the floats; -0.0 becomes 0.0 first
    so that the two zeros tie, as they compare. `torch.topk` on these keys is then exact and
    deterministic, where a sort of the values would need to be stable and is several times slower.
    """
    bits = (values + 0.0).view(torch.int32)
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).long()
    return (ordered << _IMAGE_BITS) + ((1 << _IMAGE_BITS) - 1 - images)


def _key_values(keys: torch.Tensor) -> torch.Tensor:
    """Return the float32 values of `_patch_keys` keys."""
    ordered = (keys >> _IMAGE_BITS).int()
    return torch.where(ordered < 0, ordered ^ 0x7FFFFFFF, ordered).view(torch.float32)


def _key_images(keys: torch.Tensor) -> torch.Tensor:
    """Return the image indices of `_patch_keys` keys."""
    return (1 << _IMAGE_BITS) - 1 - (keys & ((1 << _IMAGE_BITS) - 1))


def field_boxes(graph: LayerGraph, layer_id: str, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Return `graph.receptive_field_box` for arrays of positions: shape (*y.shape, 4)."""
    layer = graph.layer(layer_id)
    _, height, width = graph.input_size
    geometry = layer.field_geometry
    if geometry is None or layer.sees_whole_image:
        return np.broadcast_to(np.array([0, 0, width, height]), (*y.shape, 4)).copy()
    y0 = geometry.top + y * geometry.jump_y
    x0 = geometry.left + x * geometry.jump_x
    return np.stack(
        [
            np.clip(x0, 0, width),
            np.clip(y0, 0, height),
            np.clip(x0 + geometry.width, 0, width),
            np.clip(y0 + geometry.height, 0, height),
        ],
        axis=-1,
    ).astype(np.int64)


def _layer_output(output: object) -> torch.Tensor:
    tensor = first_tensor(output)
    if tensor is None:
        raise ValueError(f"a layer returned {type(output).__name__}, not a tensor.")
    return tensor


# --------------------------------------------------------------------------------------------
# The passes


@dataclass(frozen=True)
class _Plan:
    model: LoadedModel
    dataset: ImageDataset
    graph: LayerGraph
    nodes: list[ChainNode]
    images: int
    top_k: int
    reduce: str
    batch_size: int
    frequency_patches: int


def _plan(
    model: LoadedModel,
    data: str,
    limit: int | None,
    layers: Sequence[str] | None,
    top_k: int,
    reduce: str,
    batch_size: int | None,
) -> _Plan:
    if reduce not in REDUCES:
        raise ValueError(f"unknown reduce '{reduce}'; use mean or max.")
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, not {top_k}.")
    if limit is not None and limit < 1:
        raise ValueError(f"the limit must be at least 1 image, not {limit}.")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"the batch size must be at least 1, not {batch_size}.")
    dataset = open_source(data)
    limit = limit if limit is not None else default_limit(model)
    images = min(dataset.size, limit) if limit is not None else dataset.size
    graph = shared_graph(model.module, model.input_size)
    return _Plan(
        model=model,
        dataset=dataset,
        graph=graph,
        nodes=analysis_nodes(graph, layers),
        images=images,
        top_k=top_k,
        reduce=reduce,
        batch_size=batch_size or default_batch_size(model.input_size, model.device),
        frequency_patches=FREQUENCY_PATCHES,
    )


def _compute(plan: _Plan, progress: Progress | None) -> Analysis:
    module = plan.model.module
    classes = len(plan.dataset.classes)
    labels = plan.dataset.labels
    class_counts = (
        np.bincount(labels[: plan.images], minlength=classes)
        if labels is not None
        else np.zeros(0, dtype=np.int64)
    )
    if plan.model.device.type == "cpu":
        reuse_freed_memory()
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            neurons = [node.output_shape[0] for node in plan.nodes]
            summaries = _Summaries(sum(neurons), classes, plan.top_k, plan.model.device)
            offsets = np.cumsum([0, *neurons])
            reducers = [
                _LayerReducer(
                    node,
                    summaries,
                    int(offset),
                    plan.reduce,
                    plan.images,
                    plan.batch_size,
                    plan.frequency_patches,
                )
                for node, offset in zip(plan.nodes, offsets[:-1], strict=True)
            ]
            _feed(plan, summaries, reducers, progress)
            summaries.flush()
            layers = [r.result(plan.graph, labels, class_counts) for r in reducers]
    finally:
        module.train(was_training)
    return Analysis(
        model=plan.model.name,
        data=plan.dataset.name,
        images=plan.images,
        classes=list(plan.dataset.classes),
        class_counts=class_counts,
        layers=layers,
        reduce=plan.reduce,
        top_k=plan.top_k,
    )


def _feed(
    plan: _Plan,
    summaries: _Summaries,
    reducers: list[_LayerReducer],
    progress: Progress | None,
) -> None:
    """Run the model once over every batch of images, each analysed layer feeding its reducer;
    its batch norms folded into the convolutions before them where no analysed layer lies
    between (`convlens.folding`)."""
    device = plan.model.device
    preprocess = Preprocess(plan.model.transform)
    batch: dict[str, object] = {}

    reducer_of = {r.node.activation_layer: r for r in reducers}
    probe = torch.randn(1, *plan.model.input_size, device=device)
    module = folded_model(plan.model.module, probe, reducer_of)

    def reduce(layer_id: str, _module: nn.Module, output: object) -> None:
        reducer_of[layer_id].update(_layer_output(output), batch["labels"], batch["start"])

    with hooked_calls(module, reduce, reducer_of):
        for start, inputs, labels in _batches(
            plan.dataset, plan.images, plan.batch_size, preprocess
        ):
            images = inputs.to(device)
            batch.update(start=start, labels=labels.to(device) if labels is not None else None)
            summaries.begin_batch(len(images))
            module(images)
            summaries.end_batch(batch["labels"])
            if progress is not None:
                progress(start + len(images), plan.images)


# --------------------------------------------------------------------------------------------
# The cache


def cache_dir() -> Path:
    """Return the folder of the analysis cache."""
    return convlens_home() / "cache" / "activations"


def _cache_key(plan: _Plan) -> str:
    try:
        weights = weights_source_key(plan.model.name)
    except Exception:  # a name the registry does not know is its own key
        weights = plan.model.name
    payload = {
        "format": CACHE_FORMAT,
        "model": plan.model.name,
        "weights": weights,
        "state": weights_fingerprint(plan.model.module),
        "data": plan.dataset.name,
        "data_fingerprint": plan.dataset.fingerprint,
        "images": plan.images,
        "layers": [node.id for node in plan.nodes],
        "top_k": plan.top_k,
        "reduce": plan.reduce,
        "frequency_patches": plan.frequency_patches,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


_ARRAYS = ("per_class_mean", "max", "frequency")
_PATCH_ARRAYS = ("image", "label", "y", "x", "value", "box")


def _save(analysis: Analysis, key: str) -> Path:
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"class_counts": analysis.class_counts}
    for index, layer in enumerate(analysis.layers):
        for name in _ARRAYS:
            arrays[f"{index}.{name}"] = getattr(layer, name)
        for name in _PATCH_ARRAYS:
            arrays[f"{index}.top_{name}"] = getattr(layer.top_patches, name)
    meta = {
        "format": CACHE_FORMAT,
        "model": analysis.model,
        "data": analysis.data,
        "images": analysis.images,
        "classes": analysis.classes,
        "reduce": analysis.reduce,
        "top_k": analysis.top_k,
        "layers": [
            {
                "id": layer.id,
                "activation_layer": layer.activation_layer,
                "type": layer.type,
                "neurons": layer.neurons,
                "frequency_patches": layer.frequency_patches,
            }
            for layer in analysis.layers
        ],
    }
    write_atomic(folder / f"{key}.npz", lambda fp: np.savez(fp, **arrays))
    path = folder / f"{key}.json"
    write_atomic(path, json.dumps(meta))
    return path


def _load(key: str) -> Analysis | None:
    """Return the cached analysis `key`, or None when it is missing or unreadable."""
    folder = cache_dir()
    try:
        meta = json.loads((folder / f"{key}.json").read_text())
        if meta.get("format") != CACHE_FORMAT:
            return None
        with np.load(folder / f"{key}.npz", allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
        layers = [
            LayerStats(
                id=entry["id"],
                activation_layer=entry["activation_layer"],
                type=entry["type"],
                neurons=int(entry["neurons"]),
                frequency_patches=int(entry["frequency_patches"]),
                **{name: arrays[f"{index}.{name}"] for name in _ARRAYS},
                top_patches=TopPatches(
                    **{name: arrays[f"{index}.top_{name}"] for name in _PATCH_ARRAYS}
                ),
            )
            for index, entry in enumerate(meta["layers"])
        ]
        return Analysis(
            model=meta["model"],
            data=meta["data"],
            images=int(meta["images"]),
            classes=list(meta["classes"]),
            class_counts=arrays["class_counts"],
            layers=layers,
            reduce=meta["reduce"],
            top_k=int(meta["top_k"]),
        )
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile):
        return None


# --------------------------------------------------------------------------------------------
# Entry points


def cached_analysis(
    model: LoadedModel,
    data: str,
    *,
    limit: int | None = None,
    layers: Sequence[str] | None = None,
    top_k: int = DEFAULT_TOP_K,
    reduce: str = "mean",
) -> Analysis | None:
    """Return what `analyze` with these options would return if it is in the disk cache, else
    None; computes nothing (a view shows it at once, or offers to compute it)."""
    options = {"limit": limit, "layers": layers, "top_k": top_k, "reduce": reduce}
    return _load(cache_path(model, data, **options).stem)


def analyze(
    model: LoadedModel,
    data: str,
    *,
    limit: int | None = None,
    layers: Sequence[str] | None = None,
    top_k: int = DEFAULT_TOP_K,
    reduce: str = "mean",
    batch_size: int | None = None,
    progress: Progress | None = None,
    cache: bool = True,
) -> Analysis:
    """Return the activation statistics of `model`'s layers over the first `limit` images of
    `data` (see the module docstring), from the disk cache when `cache` and it has them.

    `limit` defaults to all images for a 1x28x28 model and to 1,000 otherwise; `layers` to every
    conv and linear chain node. `progress(done, total)` follows the images processed. Raises
    ValueError (ImageSourceError for the data) with one sentence for bad arguments.
    """
    plan = _plan(model, data, limit, layers, top_k, reduce, batch_size)
    key = _cache_key(plan) if cache else None
    if key is not None and (found := _load(key)) is not None:
        if progress is not None:
            progress(found.images, found.images)
        return found
    analysis = _compute(plan, progress)
    if key is not None:
        with suppress(OSError):  # a read-only home still gets its analysis, uncached
            _save(analysis, key)
    return analysis


def cache_path(
    model: LoadedModel,
    data: str,
    *,
    limit: int | None = None,
    layers: Sequence[str] | None = None,
    top_k: int = DEFAULT_TOP_K,
    reduce: str = "mean",
) -> Path:
    """Return the metadata file under which `analyze` caches this analysis (it may not exist)."""
    plan = _plan(model, data, limit, layers, top_k, reduce, None)
    return cache_dir() / f"{_cache_key(plan)}.json"


SHIPPED_DATA = "fashion-mnist:test"


def prepared_shipped(model: ModelKey, data: str) -> bool:
    """Whether `prepare_shipped` analyses `model` over `data`: a shipped model, with its own
    weights, over the bundled test split."""
    from convlens.runformat import shipped_names

    return data == SHIPPED_DATA and model.weights is None and model.name in shipped_names()


def prepare_shipped(progress: Progress | None = None) -> list[str]:
    """Analyse every shipped Fashion-MNIST model on fashion-mnist:test into the cache (a cached
    one costs a moment); return their names. `progress(done, total)` counts images over all models."""
    from convlens.models import load_model
    from convlens.runformat import shipped_names

    names = shipped_names()
    per_model = open_source(SHIPPED_DATA).size

    def scaled(index: int) -> Progress | None:
        if progress is None:
            return None
        return lambda done, total: progress(
            index * per_model + round(done / total * per_model), len(names) * per_model
        )

    for index, name in enumerate(names):
        analyze(load_model(name), SHIPPED_DATA, progress=scaled(index))
    return names
