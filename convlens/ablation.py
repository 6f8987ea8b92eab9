"""The ablation check: zero the filters marked useless and compare the accuracy before and after.

A filter is zeroed on the output of its chain node's activation layer (the last layer of
conv -> norm -> activation, see `ChainNode.activation_layer`), so what the next layers read from
it is exactly zero. Zeroing the convolution's own output would not do that when a batch norm
follows, which adds its shift back. A linear layer's unit is zeroed the same way: channel k is
index k of dimension 1 in both cases.

The accuracy is measured once with nothing zeroed, once per layer with only that layer's filters
zeroed, and once with all of them zeroed together.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from convlens.access import FULL_ACCESS, Access
from convlens.activations import Progress, default_limit
from convlens.annotations import annotatable_layers
from convlens.data import (
    FASHION_MNIST_SOURCES,
    ArrayDataset,
    ImageSourceError,
    LabelledDataset,
    labelled_images,
    parse_dataset,
)
from convlens.graph import LayerGraph, build_graph
from convlens.hooks import hooked_calls
from convlens.models import LoadedModel

DEFAULT_BATCH_SIZE = 64


class AblationError(ValueError):
    """The ablation cannot run (wrong classes, unknown layer or filter, no images); one sentence."""


@dataclass(frozen=True)
class LayerAblation:
    """The accuracy with only one layer's listed filters zeroed."""

    filters: tuple[int, ...]
    accuracy: float


@dataclass(frozen=True)
class AblationResult:
    """Accuracy before and after zeroing filters, all together and layer by layer (in chain order)."""

    baseline_accuracy: float
    ablated_accuracy: float
    ablated_filters: int
    per_layer: dict[str, LayerAblation]
    images: int

    def to_dict(self) -> dict[str, object]:
        """Return the JSON contract: baseline_accuracy, ablated_accuracy, ablated_filters, per_layer."""
        return {
            "baseline_accuracy": self.baseline_accuracy,
            "ablated_accuracy": self.ablated_accuracy,
            "ablated_filters": self.ablated_filters,
            "per_layer": {
                layer_id: {"filters": list(result.filters), "accuracy": result.accuracy}
                for layer_id, result in self.per_layer.items()
            },
        }

    def to_json(self) -> str:
        """Return `to_dict()` as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2)


def labelled_dataset(source: str, access: Access = FULL_ACCESS) -> LabelledDataset:
    """Return the labelled images of `fashion-mnist:test`, `fashion-mnist:train` or an ImageFolder
    that `access` may read (`convlens.data.parse_dataset`); AblationError for `samples`."""
    refusal = AblationError(
        f"'{source.strip()}' is not a labelled image source; use "
        f"{' or '.join(FASHION_MNIST_SOURCES)} or an ImageFolder directory (one sub-folder per class)"
    )
    try:
        name = parse_dataset(source, access)
    except ImageSourceError:
        if access.restricted:
            raise  # the same sentence for every path a browser may not read
        raise refusal from None
    if name.kind == "samples":
        raise refusal
    return labelled_images(name)


def _name_key(name: str) -> str:
    """A class name as a folder could spell it: "T-shirt/top" and "t_shirt_top" give one key."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


def _listed(names: Sequence[str], most: int = 5) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def class_targets(dataset: LabelledDataset, model: LoadedModel) -> np.ndarray:
    """Return, for each class index of `dataset`, the index of the model's class of that name.

    Fashion-MNIST must have exactly the model's classes. An ImageFolder's folders are mapped by
    name and may be a subset of the model's classes; a folder name matches a class exactly or,
    failing that, up to case and punctuation ("T-shirt_top" for "T-shirt/top") when only one
    class matches. Raises AblationError when a class of the data is not one of the model's.
    """
    names = list(model.class_names)
    if isinstance(dataset, ArrayDataset):
        if list(dataset.classes) != names:
            raise AblationError(
                f"the classes of {dataset.name} ({_listed(list(dataset.classes))}) are not those "
                f"of {model.name} ({_listed(names)})"
            )
        return np.arange(len(names), dtype=np.int64)
    exact = {name: index for index, name in enumerate(names)}
    by_key: dict[str, list[int]] = {}
    for index, name in enumerate(names):
        by_key.setdefault(_name_key(name), []).append(index)
    targets, unknown = [], []
    for folder in dataset.classes:
        matches = [exact[folder]] if folder in exact else by_key.get(_name_key(folder), [])
        if len(matches) == 1:
            targets.append(matches[0])
        else:
            unknown.append(folder)
    if unknown:
        raise AblationError(
            f"the folder(s) {_listed([repr(name) for name in unknown])} of {dataset.name} are not classes of {model.name} "
            f"({_listed(names)}); name each class folder after one of the model's classes"
        )
    return np.asarray(targets, dtype=np.int64)


def ablate(
    model: LoadedModel,
    data: str,
    filters: Mapping[str, Sequence[int]],
    *,
    limit: int | None = None,
    progress: Progress | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    access: Access = FULL_ACCESS,
) -> AblationResult:
    """Return the accuracy on the first `limit` images of `data` before and after zeroing `filters`.

    `filters` maps conv / linear chain node ids to filter (unit) indices. `limit` None means
    `default_limit(model)`. `progress(done, total)` is called after each batch of images. `data`
    is read as `access` allows (`labelled_dataset`): a browser's access in the app.
    """
    if limit is not None and limit < 1:
        raise AblationError(f"the limit must be at least 1 image, not {limit}")
    dataset = labelled_dataset(data, access)
    targets = class_targets(dataset, model)
    limit = limit if limit is not None else default_limit(model)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    return ablate_batches(
        model.module,
        model.input_size,
        _batches(model, dataset, targets, count, batch_size),
        filters,
        total=count,
        progress=progress,
    )


def _batches(
    model: LoadedModel, dataset: LabelledDataset, targets: np.ndarray, count: int, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (preprocessed images, model class indices) for the first `count` images."""
    for start in range(0, count, batch_size):
        stop = min(start + batch_size, count)
        images = torch.stack(
            [model.transform(dataset.image(index)) for index in range(start, stop)]
        )
        labels = torch.as_tensor(targets[np.asarray(dataset.labels[start:stop])])
        yield images, labels


def ablate_batches(
    module: nn.Module,
    input_size: tuple[int, int, int],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    filters: Mapping[str, Sequence[int]],
    *,
    total: int | None = None,
    progress: Progress | None = None,
) -> AblationResult:
    """Return the accuracy over (inputs, class indices) batches before and after zeroing `filters`.

    Runs the module in eval mode (and restores its flags after) without gradients; the hooks
    are gone afterwards, also after an error.
    """
    graph = build_graph(module, input_size)
    chosen = checked_filters(graph, filters)
    activation_of = {layer_id: graph.node(layer_id).activation_layer for layer_id in chosen}
    passes: list[tuple[str, set[str]]] = [("baseline", set())]
    passes += [(layer_id, {activation_of[layer_id]}) for layer_id in chosen]
    if len(chosen) > 1:
        passes.append(("all", set(activation_of.values())))
    correct: Counter[str] = Counter()
    seen = 0
    device = _device(module)
    was_training = [(part, part.training) for part in module.modules()]
    module.eval()
    try:
        with (
            torch.no_grad(),
            zeroed_channels(
                module, {activation_of[layer_id]: chosen[layer_id] for layer_id in chosen}
            ) as enabled,
        ):
            for inputs, labels in batches:
                inputs, labels = inputs.to(device), labels.to(device)
                for name, zeroed in passes:
                    enabled.clear()
                    enabled.update(zeroed)
                    predicted = module(inputs).argmax(dim=1)
                    correct[name] += int((predicted == labels).sum())
                seen += len(labels)
                if progress is not None:
                    progress(seen, total if total is not None else seen)
    finally:
        for part, training in was_training:
            part.training = training
    if seen == 0:
        raise AblationError("there are no images to measure the accuracy on")
    per_layer = {
        layer_id: LayerAblation(tuple(indices), correct[layer_id] / seen)
        for layer_id, indices in chosen.items()
    }
    everything = "all" if len(chosen) > 1 else next(iter(chosen), "baseline")
    return AblationResult(
        baseline_accuracy=correct["baseline"] / seen,
        ablated_accuracy=correct[everything] / seen,
        ablated_filters=sum(len(indices) for indices in chosen.values()),
        per_layer=per_layer,
        images=seen,
    )


def checked_filters(
    graph: LayerGraph, filters: Mapping[str, Sequence[int]]
) -> dict[str, tuple[int, ...]]:
    """Return `filters` in chain order, sorted, without duplicates or empty layers.

    Raises AblationError for a layer that is not a conv / linear chain node or a filter it lacks.
    """
    layers = annotatable_layers(graph)
    unknown = [
        layer_id for layer_id, indices in filters.items() if indices and layer_id not in layers
    ]
    if unknown:
        raise AblationError(
            f"{_listed(unknown)}: not a conv or linear layer of this model "
            f"(those are {_listed(list(layers))})"
        )
    chosen = {}
    for layer_id, count in layers.items():
        indices = tuple(sorted({int(index) for index in filters.get(layer_id, ())}))
        wrong = [index for index in indices if not 0 <= index < count]
        if wrong:
            raise AblationError(
                f"{layer_id} has {count} filters (0 to {count - 1}); it has no filter {wrong[0]}"
            )
        if indices:
            chosen[layer_id] = indices
    return chosen


@contextmanager
def zeroed_channels(module: nn.Module, channels: Mapping[str, Sequence[int]]) -> Iterator[set[str]]:
    """Zero channels (index k of dimension 1) of the outputs of layer calls while the block runs.

    `channels` maps layer call ids (as in `convlens.hooks`, e.g. `layer1.0.relu:2`) to channel
    indices. Yields the set of call ids being zeroed, all of them at first: change it between
    forward passes to zero fewer. The outputs are replaced, not changed in place, in this thread's
    forward passes only. The hooks are removed on exit, also after an error.
    """
    enabled = set(channels)
    indices = {
        layer_id: torch.tensor(sorted(set(ks)), dtype=torch.long)
        for layer_id, ks in channels.items()
    }

    def zero(layer_id: str, _module: nn.Module, output: object) -> torch.Tensor | None:
        if layer_id not in enabled or not isinstance(output, torch.Tensor):
            return None
        return output.index_fill(1, indices[layer_id].to(output.device), 0.0)

    with hooked_calls(module, zero, channels):
        yield enabled


def _device(module: nn.Module) -> torch.device:
    try:
        return next(module.parameters()).device
    except StopIteration:
        return torch.device("cpu")
