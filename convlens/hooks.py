"""Which modules count as layers, and hooks that record their outputs and leave no trace.

A *layer* is a module of a known kind (convolution, linear, pooling, ...) or one without
children; ConvLens never looks inside a layer, so a `Conv2d` subclass that pads through a child
module (EfficientNet's same-padding convolution) is one layer. A layer called more than once in a
forward pass (ResNet reuses `relu`) gets the ids `PATH`, `PATH:2`, `PATH:3` for its calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

LAYER_KINDS: tuple[tuple[str, tuple[type[nn.Module], ...]], ...] = (
    ("conv", (nn.modules.conv._ConvNd,)),
    ("linear", (nn.Linear, nn.Bilinear)),
    (
        "pool",
        (
            nn.modules.pooling._MaxPoolNd,
            nn.modules.pooling._AvgPoolNd,
            nn.modules.pooling._AdaptiveAvgPoolNd,
            nn.modules.pooling._AdaptiveMaxPoolNd,
            nn.modules.pooling._LPPoolNd,
        ),
    ),
    (
        "norm",
        (
            nn.modules.batchnorm._NormBase,
            nn.GroupNorm,
            nn.LayerNorm,
            nn.LocalResponseNorm,
        ),
    ),
    (
        "activation",
        (
            nn.ReLU,
            nn.ReLU6,
            nn.LeakyReLU,
            nn.PReLU,
            nn.ELU,
            nn.SELU,
            nn.CELU,
            nn.GELU,
            nn.SiLU,
            nn.Mish,
            nn.Hardswish,
            nn.Hardsigmoid,
            nn.Hardtanh,
            nn.Sigmoid,
            nn.Tanh,
            nn.Softplus,
            nn.Softmax,
            nn.LogSoftmax,
        ),
    ),
    ("dropout", (nn.modules.dropout._DropoutNd,)),
    ("flatten", (nn.Flatten, nn.Unflatten)),
)
PADDING_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.padding._ConstantPadNd,
    nn.modules.padding._ReflectionPadNd,
    nn.modules.padding._ReplicationPadNd,
    nn.Identity,
)


def layer_type(module: nn.Module) -> str:
    """Return the kind of a layer: conv, linear, pool, norm, activation, dropout, flatten or other."""
    for kind, classes in LAYER_KINDS:
        if isinstance(module, classes):
            return kind
    if "swish" in type(module).__name__.lower():
        return "activation"
    return "other"


def is_layer(module: nn.Module) -> bool:
    """Return whether ConvLens treats `module` as one layer (a known kind, or no children)."""
    return layer_type(module) != "other" or next(module.children(), None) is None


def named_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Yield (path, module) for every layer of `model`, without descending into layers."""

    def walk(prefix: str, module: nn.Module) -> Iterator[tuple[str, nn.Module]]:
        for name, child in module.named_children():
            path = f"{prefix}.{name}" if prefix else name
            if is_layer(child):
                yield path, child
            else:
                yield from walk(path, child)

    if is_layer(model):
        yield "", model
    else:
        yield from walk("", model)


def call_id(path: str, call: int) -> str:
    """Return the id of the `call`-th call (1-based) of the layer at `path`."""
    return path if call == 1 else f"{path}:{call}"


def _first_tensor(output: object) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


@contextmanager
def record_outputs(
    model: nn.Module, layer_ids: set[str] | None = None, detach: bool = True
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the output of every layer call (or those in `layer_ids`) during the forward passes
    run inside the block, keyed by call id; the hooks are removed on exit, also after an error.

    Outputs are cloned at once, so a later in-place activation cannot change them. With several
    forward passes in the block, each layer's entry holds its output of the last pass.
    """
    outputs: dict[str, torch.Tensor] = {}
    calls: dict[str, int] = {}
    handles = []

    def make_hook(path: str):
        def hook(module: nn.Module, inputs: object, output: object) -> None:
            calls[path] = calls.get(path, 0) + 1
            identifier = call_id(path, calls[path])
            tensor = _first_tensor(output)
            if tensor is not None and (layer_ids is None or identifier in layer_ids):
                outputs[identifier] = tensor.detach().clone() if detach else tensor.clone()

        return hook

    def new_pass(module: nn.Module, inputs: object) -> None:
        calls.clear()

    try:
        handles.append(model.register_forward_pre_hook(new_pass))
        for path, module in named_layers(model):
            handles.append(module.register_forward_hook(make_hook(path)))
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def count_hooks(model: nn.Module) -> int:
    """Return how many forward / pre-forward / backward hooks remain on `model`'s modules."""
    return sum(
        len(module._forward_hooks)
        + len(module._forward_pre_hooks)
        + len(module._backward_hooks)
        + len(getattr(module, "_backward_pre_hooks", {}))
        for module in model.modules()
    )
