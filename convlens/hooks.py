"""Which modules count as layers, their call ids, and the one way to hook their calls.

A *layer* is a module of a known kind (convolution, linear, pooling, ...) or one without
children; ConvLens never looks inside a layer, so a `Conv2d` subclass that pads through a child
module (EfficientNet's same-padding convolution) is one layer. A layer called more than once in a
forward pass (ResNet reuses `relu`) gets the ids `PATH`, `PATH:2`, `PATH:3` for its calls
(`call_id` builds them, `parse_call_id` reads them). Every module that hooks layers does it through
`hooked_calls`, which numbers the calls and leaves no hook behind.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator
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


def parse_call_id(layer_id: str) -> tuple[str, int]:
    """Return (module path, call number) of a layer call id: `PATH` is (PATH, 1), `PATH:N` is
    (PATH, N); ValueError for a suffix that is not a call number from 2 (`call_id`'s inverse)."""
    path, sep, number = layer_id.rpartition(":")
    if not sep:
        return layer_id, 1
    if not re.fullmatch(r"[1-9][0-9]*", number) or int(number) < 2:
        raise ValueError(
            f"'{layer_id}' is not a layer call id; use PATH, or PATH:N for the N-th call (N >= 2)."
        )
    return path, int(number)


def first_tensor(output: object) -> torch.Tensor | None:
    """Return a layer's output tensor (the first one of a tuple or list), None if it has none."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


AfterCall = Callable[[str, nn.Module, object], object]
BeforeCall = Callable[[nn.Module, tuple], None]


@contextmanager
def hooked_calls(
    model: nn.Module,
    after_call: AfterCall,
    layer_ids: Iterable[str] | None = None,
    before_call: BeforeCall | None = None,
) -> Iterator[None]:
    """Call `after_call(layer_id, module, output)` after each call of a layer in the forward
    passes of `model` run by this thread inside the block: the calls in `layer_ids`, or every
    call of every layer (`named_layers`) when None. A value it returns replaces the layer's
    output, as a forward hook's does. With every layer, `before_call(module, inputs)` runs before
    each call when given.

    Calls are numbered from 1 in each forward pass of `model` (`call_id`). Other threads' forward
    passes of the same model (another session of the app) are left alone. The hooks are removed
    on exit, also after an error.
    """
    wanted = None if layer_ids is None else set(layer_ids)
    if before_call is not None and wanted is not None:
        raise ValueError("before_call runs only when every layer is hooked (layer_ids=None).")
    if wanted is None:
        modules = dict(named_layers(model))
    else:
        paths = sorted({parse_call_id(layer_id)[0] for layer_id in wanted})
        modules = {path: model.get_submodule(path) for path in paths}
    owner = threading.get_ident()
    calls: dict[str, int] = {}

    def new_pass(_module: nn.Module, _inputs: object) -> None:
        if threading.get_ident() == owner:
            calls.clear()

    def before(module: nn.Module, inputs: tuple) -> None:
        if threading.get_ident() == owner:
            before_call(module, inputs)

    def make_hook(path: str):
        def after(module: nn.Module, _inputs: object, output: object) -> object:
            if threading.get_ident() != owner:
                return None
            calls[path] = calls.get(path, 0) + 1
            layer_id = call_id(path, calls[path])
            if wanted is not None and layer_id not in wanted:
                return None
            return after_call(layer_id, module, output)

        return after

    handles = []
    try:
        handles.append(model.register_forward_pre_hook(new_pass))
        for path, module in modules.items():
            if before_call is not None:
                handles.append(module.register_forward_pre_hook(before))
            handles.append(module.register_forward_hook(make_hook(path)))
        yield
    finally:
        for handle in handles:
            handle.remove()


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

    def record(layer_id: str, _module: nn.Module, output: object) -> None:
        tensor = first_tensor(output)
        if tensor is not None:
            outputs[layer_id] = tensor.detach().clone() if detach else tensor.clone()

    with hooked_calls(model, record, layer_ids):
        yield outputs


def count_hooks(model: nn.Module) -> int:
    """Return how many forward / pre-forward / backward hooks remain on `model`'s modules."""
    return sum(
        len(module._forward_hooks)
        + len(module._forward_pre_hooks)
        + len(module._backward_hooks)
        + len(getattr(module, "_backward_pre_hooks", {}))
        for module in model.modules()
    )
