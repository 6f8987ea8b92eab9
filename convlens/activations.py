"""Activations over a dataset: one forward pass per batch feeds every requested layer, and
streaming reducers keep what the views need, in memory that does not grow with the dataset.

A layer is a chain node of type conv or linear (`convlens.graph`), named by its conv / linear
layer id; its activation is the output of the chain node's activation layer (after the norm and
the non-linearity merged into it). Per neuron (an output channel of a conv layer, a unit of a
linear layer; DESIGN.md, "Definitions to share"), `analyze` returns:

- ``per_class_mean``: CNNVis eq. 1, the mean over the images of each class of the neuron's
  activation on an image, the spatial mean of its map (``reduce="mean"``) or maximum ("max");
- ``max``: the largest activation at any image and position;
- ``frequency`` (DeepEyes): the share of (image, position) patches on which the activation
  exceeds half of that neuron's ``max``;
- ``top_patches``: the k images on which the neuron responds most, each at its best position, with
  the receptive field of that position in input pixels.

The frequency needs each neuron's maximum over the whole data before it can count. The first pass
keeps the values that exceed half of the running maximum (no others can count in the end) within a
fixed budget of `CANDIDATE_BUDGET` values; when they do not fit, the shallowest layers give theirs
up and are counted exactly in a second pass that stops after the deepest of them.

Analyses are cached under ``convlens_home()/cache/activations/``: KEY.npz holds the arrays and
KEY.json the metadata (written last, each through a temporary file and `os.replace`); KEY hashes
the model name, its weights, the data, the number of images, the layers, top_k and reduce.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import uuid
import zipfile
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from convlens.data import (
    SAMPLE_NAMES,
    ImageSourceError,
    fashion_mnist,
    image_folder,
    load_image,
)
from convlens.graph import ChainNode, LayerGraph, build_graph
from convlens.models import LoadedModel, weights_source_key
from convlens.paths import convlens_home
from convlens.weights import weights_fingerprint

REDUCES = ("mean", "max")
DEFAULT_TOP_K = 9
IMAGENET_LIMIT = 1_000
SMALL_INPUT = (1, 28, 28)
SAMPLES = "samples"
FASHION_MNIST_SOURCES = ("fashion-mnist:test", "fashion-mnist:train")
DATA_FORMS = "fashion-mnist:test, fashion-mnist:train, samples or an ImageFolder directory"
# Values kept for the exact activation frequency, over all layers: 6 bytes each (value, channel).
CANDIDATE_BUDGET = 4_000_000
# Preprocessed inputs kept in the first pass for the second, which then need not read them again.
INPUT_CACHE_BYTES = 32 << 20
CACHE_FORMAT = 1

Progress = Callable[[int, int], None]


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, eq=False)
class TopPatches:
    """The image patches on which each neuron responds most: at most one per image, best first.

    Arrays are (neurons, k), k = min(top_k, images): ``image`` (index in the source's order),
    ``label`` (class index of that image, -1 when the source has no classes), ``y`` and ``x``
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
        images), "max", "frequency", "top_patches" (a list per neuron of {"image", "label" (index
        into classes, or null), "y", "x", "value", "box": [x0, y0, x1, y1]})}]}."""
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
# Data sources


@dataclass(frozen=True, eq=False)
class ImageSource:
    """Images in a fixed order, read one at a time, with their labels when the source has classes."""

    name: str
    size: int
    classes: tuple[str, ...]
    labels: np.ndarray | None
    load: Callable[[int], Image.Image]
    fingerprint: str


def open_source(data: str) -> ImageSource:
    """Return the image source `data` names: fashion-mnist:test, fashion-mnist:train, samples
    (the bundled photos, without classes) or an ImageFolder directory; ImageSourceError if none."""
    data = data.strip() if isinstance(data, str) else ""
    if not data:
        raise ImageSourceError(f"a data source is needed; use {DATA_FORMS}.")
    if data == SAMPLES:
        return ImageSource(
            SAMPLES,
            len(SAMPLE_NAMES),
            (),
            None,
            lambda index: load_image(f"sample:{SAMPLE_NAMES[index]}").image,
            ",".join(SAMPLE_NAMES),
        )
    if data.startswith("fashion-mnist"):
        if data not in FASHION_MNIST_SOURCES:
            raise ImageSourceError(
                f"'{data}' is not a Fashion-MNIST split; use fashion-mnist:test or fashion-mnist:train."
            )
        dataset = fashion_mnist(data.split(":")[1])
        images = dataset.images
        return ImageSource(
            data,
            len(dataset),
            tuple(dataset.classes),
            np.asarray(dataset.labels),
            lambda index: Image.fromarray(images[index]),
            f"{data}:{len(dataset)}",
        )
    path = Path(data).expanduser()
    if path.is_dir():
        folder = image_folder(path)
        digest = hashlib.blake2b(digest_size=16)
        for file in folder.files:
            stat = file.stat()
            digest.update(
                f"{file.relative_to(folder.root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
            )
        return ImageSource(
            str(folder.root),
            len(folder),
            tuple(folder.classes),
            np.asarray(folder.labels),
            folder.image,
            f"{','.join(folder.classes)}:{digest.hexdigest()}",
        )
    if path.is_file():
        raise ImageSourceError(
            f"'{data}' is a file; analyze reads a folder of images with one sub-folder per class."
        )
    raise ImageSourceError(f"unknown data source '{data}'; use {DATA_FORMS}.")


def default_limit(model: LoadedModel) -> int | None:
    """Return how many images `analyze` takes by default: all for a 1x28x28 model, else 1,000."""
    return None if tuple(model.input_size) == SMALL_INPUT else IMAGENET_LIMIT


def default_batch_size(input_size: Sequence[int]) -> int:
    """Return the batch size `analyze` uses by default: large for small images."""
    return 256 if input_size[1] * input_size[2] <= 64 * 64 else 32


def _batches(
    source: ImageSource,
    count: int,
    batch_size: int,
    transform: Callable,
    skip: Collection[int] = (),
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor | None]]:
    """Yield (index of the first image, preprocessed images, labels) for the first `count` images,
    leaving out the batches that start at an index in `skip`."""
    for start in range(0, count, batch_size):
        if start in skip:
            continue
        stop = min(start + batch_size, count)
        images = torch.stack([transform(source.load(index)) for index in range(start, stop)])
        labels = (
            torch.tensor(source.labels[start:stop], dtype=torch.long)
            if source.labels is not None
            else None
        )
        yield start, images, labels


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
    wanted = [layer.strip() for layer in layers if layer.strip()]
    if not wanted:
        raise ValueError("no layers given; name conv or linear layers, or leave them out for all.")
    known = {node.id for node in candidates}
    unknown = [layer for layer in wanted if layer not in known]
    if unknown:
        shown = ", ".join(node.id for node in candidates[:8])
        more = ", ..." if len(candidates) > 8 else ""
        raise ValueError(
            f"'{unknown[0]}' is not a conv or linear layer of this model; choose from {shown}{more}."
        )
    return [node for node in candidates if node.id in set(wanted)]


# --------------------------------------------------------------------------------------------
# Reducers


class _LayerReducer:
    """The running statistics of one layer; `update` sees each batch's activations once."""

    def __init__(
        self, node: ChainNode, classes: int, top_k: int, reduce: str, device: torch.device
    ):
        self.node = node
        self.neurons = node.output_shape[0]
        self.positions = math.prod(node.output_shape[1:]) if len(node.output_shape) == 3 else 1
        self.top_k = top_k
        self.reduce = reduce
        self.max = torch.full((self.neurons,), -math.inf, device=device)
        self.sums = torch.zeros(classes, self.neurons, dtype=torch.float64, device=device)
        self.top_value = torch.empty(self.neurons, 0, device=device)
        self.top_where = torch.empty(self.neurons, 0, dtype=torch.long, device=device)
        self.top_image = torch.empty(self.neurons, 0, dtype=torch.long, device=device)
        self.candidate_values: list[torch.Tensor] = []
        self.candidate_channels: list[torch.Tensor] = []
        self.candidates = 0
        self.channel_dtype = torch.int16 if self.neurons < 2**15 else torch.int32
        self.recount: torch.Tensor | None = None  # counts of the second pass, once needed

    def _maps(self, output: torch.Tensor) -> torch.Tensor:
        if output.dim() not in (2, 4) or output.shape[1] != self.neurons:
            raise ValueError(
                f"layer {self.node.id} gave an output of shape {tuple(output.shape)}, "
                f"not (batch, {self.neurons}, ...) as its graph says."
            )
        return output.detach().reshape(output.shape[0], self.neurons, -1).float()

    def update(
        self, output: torch.Tensor, labels: torch.Tensor | None, first_image: int, limit: float
    ) -> None:
        """Add one batch: `output` (batch, neurons[, H, W]) of the activation layer. `limit`: the
        most values this layer may keep for the frequency so far (see `_keep_within_budget`)."""
        maps = self._maps(output)
        best = maps.amax(dim=2)
        torch.maximum(self.max, best.amax(dim=0), out=self.max)
        if labels is not None:
            per_image = best if self.reduce == "max" else maps.mean(dim=2)
            self.sums.index_add_(0, labels, per_image.double())
        self._merge_top(maps, best, first_image)
        if self.recount is None:
            self._keep_candidates(maps, limit)

    def _merge_top(self, maps: torch.Tensor, best: torch.Tensor, first_image: int) -> None:
        kept, batch = self.top_value.shape[1], best.shape[0]
        device = best.device
        values = torch.cat([self.top_value, best.T], dim=1)
        # a stable sort keeps the earlier image first among equal values
        order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, : self.top_k]
        where = torch.cat(
            [self.top_where, torch.zeros(self.neurons, batch, dtype=torch.long, device=device)],
            dim=1,
        ).gather(1, order)
        # the best position of only the images that made it in (the first one on ties)
        channel, slot = (order >= kept).nonzero(as_tuple=True)
        where[channel, slot] = maps[order[channel, slot] - kept, channel].argmax(dim=1)
        images = torch.arange(first_image, first_image + batch, device=device)
        self.top_value = values.gather(1, order)
        self.top_where = where
        self.top_image = torch.cat(
            [self.top_image, images.expand(self.neurons, batch)], dim=1
        ).gather(1, order)

    def _above_half(self, maps: torch.Tensor) -> torch.Tensor:
        """Return the activations above half of their neuron's running maximum (bool, as maps)."""
        return maps > (self.max / 2)[None, :, None]

    def _keep_candidates(self, maps: torch.Tensor, limit: float) -> None:
        above = self._above_half(maps)
        if not self.candidate_values and int(torch.count_nonzero(above)) > limit:
            self.give_up_candidates()  # hopeless from the first batch on: spare the extraction
            return
        flat = above.reshape(-1).nonzero().squeeze(1)
        if flat.numel() == 0:
            return
        channels = (flat // self.positions) % self.neurons
        self.candidate_values.append(maps.reshape(-1)[flat])
        self.candidate_channels.append(channels.to(self.channel_dtype))
        self.candidates += flat.numel()

    def _chunks_above_half(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Take the kept chunks out one at a time, as (mask of the values above half of the
        running maximum, values, channels), so that no more than one chunk is ever copied."""
        half = self.max / 2
        while self.candidate_values:
            values, channels = self.candidate_values.pop(0), self.candidate_channels.pop(0)
            yield values > half[channels.long()], values, channels

    def prune(self) -> None:
        """Drop the kept values that no longer exceed half of their neuron's running maximum."""
        pruned = [
            (values[keep], channels[keep]) for keep, values, channels in self._chunks_above_half()
        ]
        self.candidate_values = [values for values, _ in pruned]
        self.candidate_channels = [channels for _, channels in pruned]
        self.candidates = sum(values.numel() for values in self.candidate_values)

    def give_up_candidates(self) -> None:
        """Leave this layer's frequency to the second pass."""
        self.candidate_values, self.candidate_channels, self.candidates = [], [], 0
        self.recount = torch.zeros(self.neurons, dtype=torch.long, device=self.max.device)

    def count(self, output: torch.Tensor) -> None:
        """Second pass: count the positions above half of the final maximum."""
        self.recount += _count_per_channel(self._above_half(self._maps(output)))

    def frequency(self, images: int) -> np.ndarray:
        """Return the share of (image, position) patches above half of the maximum; this takes
        the kept values out."""
        counts = self.recount
        if counts is None:
            counts = torch.zeros(self.neurons, dtype=torch.long, device=self.max.device)
            for keep, _, channels in self._chunks_above_half():
                counts += torch.bincount(channels[keep].long(), minlength=self.neurons)
        return counts.cpu().numpy().astype(np.float64) / (images * self.positions)

    def result(
        self, graph: LayerGraph, labels: np.ndarray | None, class_counts: np.ndarray, images: int
    ) -> LayerStats:
        """Return the layer's statistics; `labels` of every image of the source, or None."""
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class = self.sums.cpu().numpy() / class_counts[:, None]
        per_class[class_counts == 0] = np.nan
        image = self.top_image.cpu().numpy()
        width = self.node.output_shape[2] if len(self.node.output_shape) == 3 else 1
        y, x = np.divmod(self.top_where.cpu().numpy(), width)
        return LayerStats(
            id=self.node.id,
            activation_layer=self.node.activation_layer,
            type=self.node.type,
            neurons=self.neurons,
            per_class_mean=per_class,
            max=self.max.cpu().numpy(),
            frequency=self.frequency(images),
            top_patches=TopPatches(
                image=image,
                label=labels[image].astype(np.int64)
                if labels is not None
                else np.full_like(image, -1),
                y=y,
                x=x,
                value=self.top_value.cpu().numpy(),
                box=field_boxes(graph, self.node.activation_layer, y, x),
            ),
        )


def _count_per_channel(above: torch.Tensor) -> torch.Tensor:
    """Return the number of True values of (batch, channels, positions) per channel.

    On the CPU the fastest way depends on the shape: a full count per channel over large maps, and
    over small ones a sum of the rows as bytes into int32 (summing bools into int64 is many times
    slower); on a GPU, one sum.
    """
    if above.device.type == "cpu" and above.shape[2] >= 1024:
        return torch.stack([torch.count_nonzero(above[:, c]) for c in range(above.shape[1])])
    return above.view(torch.uint8).sum(dim=2, dtype=torch.int32).sum(dim=0)


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


def _keep_within_budget(reducers: list[_LayerReducer], budget: int, seen: int, images: int) -> None:
    """Keep the values held for the exact frequency within `budget` at the end of the data.

    Projects each layer's count to all `images` as if the rest were like the `seen` ones (an
    overestimate: the threshold only rises); when the total is over budget, prunes, and if it
    still is, the shallowest layers give theirs up (their second pass is the cheapest). A
    large network gives most of them up after its first batch, before collecting in vain.
    """

    def projected() -> float:
        return sum(r.candidates for r in reducers) * images / seen

    if projected() <= budget:
        return
    for reducer in reducers:
        reducer.prune()
    for reducer in reducers:
        if projected() <= budget:
            break
        if reducer.candidates:
            reducer.give_up_candidates()


class _EnoughLayers(Exception):
    """Raised by a hook of the second pass once the deepest layer it needs has run."""


def _first_tensor(output: object) -> torch.Tensor:
    if isinstance(output, (tuple, list)):
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise ValueError(f"a layer returned {type(output).__name__}, not a tensor.")
    return output


@contextmanager
def _hooked(
    model: nn.Module,
    targets: dict[str, _LayerReducer],
    visit: Callable[[_LayerReducer, torch.Tensor], None],
) -> Iterator[None]:
    """Call `visit(reducer, output)` for each target layer call (ids as in `convlens.hooks`)
    in the forward passes of this thread inside the block; the hooks go on exit, also after an
    error. Other threads using the same model (another app session) are left alone."""
    owner = threading.get_ident()
    calls: dict[str, int] = {}
    by_path: dict[str, dict[int, _LayerReducer]] = {}
    for layer_id, reducer in targets.items():
        path, _, call = layer_id.partition(":")
        by_path.setdefault(path, {})[int(call or 1)] = reducer

    def new_pass(module: nn.Module, inputs: object) -> None:
        if threading.get_ident() == owner:
            calls.clear()

    def make_hook(path: str, wanted: dict[int, _LayerReducer]):
        def hook(module: nn.Module, inputs: object, output: object) -> None:
            if threading.get_ident() != owner:
                return
            calls[path] = calls.get(path, 0) + 1
            reducer = wanted.get(calls[path])
            if reducer is not None:
                visit(reducer, _first_tensor(output))

        return hook

    handles = []
    try:
        handles.append(model.register_forward_pre_hook(new_pass))
        for path, wanted in by_path.items():
            module = model.get_submodule(path) if path else model
            handles.append(module.register_forward_hook(make_hook(path, wanted)))
        yield
    finally:
        for handle in handles:
            handle.remove()


# --------------------------------------------------------------------------------------------
# The passes


@dataclass(frozen=True)
class _Plan:
    model: LoadedModel
    source: ImageSource
    graph: LayerGraph
    nodes: list[ChainNode]
    images: int
    top_k: int
    reduce: str
    batch_size: int


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
    source = open_source(data)
    limit = limit if limit is not None else default_limit(model)
    images = min(source.size, limit) if limit is not None else source.size
    graph = build_graph(model.module, model.input_size)
    return _Plan(
        model=model,
        source=source,
        graph=graph,
        nodes=analysis_nodes(graph, layers),
        images=images,
        top_k=top_k,
        reduce=reduce,
        batch_size=batch_size or default_batch_size(model.input_size),
    )


def _compute(plan: _Plan, progress: Progress | None, budget: int) -> Analysis:
    module = plan.model.module
    classes = len(plan.source.classes)
    labels = plan.source.labels
    class_counts = (
        np.bincount(labels[: plan.images], minlength=classes)
        if labels is not None
        else np.zeros(0, dtype=np.int64)
    )
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            reducers = [
                _LayerReducer(node, classes, plan.top_k, plan.reduce, plan.model.device)
                for node in plan.nodes
            ]
            kept = _first_pass(plan, reducers, budget, progress)
            recount = [r for r in reducers if r.recount is not None]
            if recount:
                _second_pass(plan, recount, kept, progress)
            layers = [r.result(plan.graph, labels, class_counts, plan.images) for r in reducers]
    finally:
        module.train(was_training)
    return Analysis(
        model=plan.model.name,
        data=plan.source.name,
        images=plan.images,
        classes=list(plan.source.classes),
        class_counts=class_counts,
        layers=layers,
        reduce=plan.reduce,
        top_k=plan.top_k,
    )


def _first_pass(
    plan: _Plan, reducers: list[_LayerReducer], budget: int, progress: Progress | None
) -> dict[int, torch.Tensor]:
    """Feed every batch to the reducers. Once a second pass is certain, keep the preprocessed
    batches that fit in INPUT_CACHE_BYTES for it; return them by the index of their first image."""
    module, device = plan.model.module, plan.model.device
    batch: dict[str, object] = {}
    kept: dict[int, torch.Tensor] = {}
    kept_bytes = 0
    total = plan.images

    def visit(reducer: _LayerReducer, output: torch.Tensor) -> None:
        reducer.update(output, batch["labels"], batch["start"], batch["limit"])

    targets = {r.node.activation_layer: r for r in reducers}
    with _hooked(module, targets, visit):
        for start, images, labels in _batches(
            plan.source, plan.images, plan.batch_size, plan.model.transform
        ):
            images = images.to(device)
            batch.update(
                start=start,
                labels=labels.to(device) if labels is not None else None,
                limit=budget * (start + len(images)) / plan.images,
            )
            if total > plan.images and kept_bytes + images.nbytes <= INPUT_CACHE_BYTES:
                kept[start] = images.clone()  # a model may change its input in place
                kept_bytes += images.nbytes
            module(images)
            _keep_within_budget(reducers, budget, start + len(images), plan.images)
            if any(r.recount is not None for r in reducers):
                total = 2 * plan.images
            if progress is not None:
                progress(start + len(images), total)
    return kept


def _second_pass(
    plan: _Plan,
    reducers: list[_LayerReducer],
    kept: dict[int, torch.Tensor],
    progress: Progress | None,
) -> None:
    """Count each reducer's activations above half of its final maximum; every forward pass stops
    after the last of these layers has run."""
    module, device = plan.model.module, plan.model.device
    left: set[_LayerReducer] = set()
    done = plan.images

    def visit(reducer: _LayerReducer, output: torch.Tensor) -> None:
        reducer.count(output)
        left.discard(reducer)
        if not left:
            raise _EnoughLayers

    def count(images: torch.Tensor) -> None:
        nonlocal done
        left.update(reducers)
        with suppress(_EnoughLayers):
            module(images)
        done += len(images)
        if progress is not None:
            progress(done, 2 * plan.images)

    with _hooked(module, {r.node.activation_layer: r for r in reducers}, visit):
        starts = set(kept)
        while kept:  # each kept batch goes as soon as it is counted
            count(kept.pop(next(iter(kept))))
        for _, images, _ in _batches(
            plan.source, plan.images, plan.batch_size, plan.model.transform, skip=starts
        ):
            count(images.to(device))


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
        "data": plan.source.name,
        "data_fingerprint": plan.source.fingerprint,
        "images": plan.images,
        "layers": [node.id for node in plan.nodes],
        "top_k": plan.top_k,
        "reduce": plan.reduce,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def _write_atomic(path: Path, write: Callable) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with temp.open("wb") as fp:
            write(fp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


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
            }
            for layer in analysis.layers
        ],
    }
    _write_atomic(folder / f"{key}.npz", lambda fp: np.savez(fp, **arrays))
    path = folder / f"{key}.json"
    _write_atomic(path, lambda fp: fp.write(json.dumps(meta).encode()))
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
    conv and linear chain node. `progress(done, total)` follows the images processed; total
    doubles when the exact activation frequency turns out to need a second pass. Raises
    ValueError (ImageSourceError for the data) with one sentence for bad arguments.
    """
    plan = _plan(model, data, limit, layers, top_k, reduce, batch_size)
    key = _cache_key(plan) if cache else None
    if key is not None and (found := _load(key)) is not None:
        if progress is not None:
            progress(found.images, found.images)
        return found
    analysis = _compute(plan, progress, CANDIDATE_BUDGET)
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


def prepare_shipped(progress: Progress | None = None) -> list[str]:
    """Analyse every shipped Fashion-MNIST model on fashion-mnist:test into the cache (a cached
    one costs a moment); return their names. `progress(done, total)` counts images over all models."""
    from convlens.models import load_model
    from convlens.shipped import shipped_names

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
