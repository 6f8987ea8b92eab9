"""Batch norms folded into the convolutions before them, for gradient methods on CPU.

In eval mode a batch norm straight after a convolution is an affine map per channel, so the
convolution can apply it itself: one layer instead of two, forward and backward. Guided
back-propagation runs one backward pass per neuron, and on EfficientNet-Lite0 the batch norms'
backward took a fifth of it. The folded network is a shallow copy: it shares every module and
parameter of the model except the folded convolutions (new) and their batch norms (identities),
so it costs the folded convolutions' weights only; it shares the modules' hooks too. It is used
only where its read-out layer's output equals the model's on an image (`folded_model`).
"""

from __future__ import annotations

import copy
import threading
import weakref
from contextlib import suppress
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from convlens.hooks import hooked_calls


class _Stop(Exception):
    """Raised once the read-out layer has run."""


def conv_batch_norm_pairs(model: nn.Module, x: torch.Tensor) -> list[tuple[str, str]]:
    """Return (conv path, batch norm path) of each `nn.BatchNorm2d` whose input is the output of
    an `nn.Conv2d` in a forward pass of `x`, both modules called once in the pass."""
    paths = {module: path for path, module in model.named_modules()}
    produced_by: dict[int, tuple[str, torch.Tensor]] = {}
    pairs: list[tuple[str, str]] = []
    calls: dict[str, int] = {}

    def record(module: nn.Module, inputs: tuple, output: object) -> None:
        path = paths[module]
        calls[path] = calls.get(path, 0) + 1
        if isinstance(module, nn.Conv2d) and isinstance(output, torch.Tensor):
            produced_by[id(output)] = (path, output)
        elif isinstance(module, nn.BatchNorm2d) and inputs:
            conv = produced_by.get(id(inputs[0]))
            if conv is not None and conv[1] is inputs[0]:
                pairs.append((conv[0], path))

    handles = [
        module.register_forward_hook(record)
        for module in model.modules()
        if isinstance(module, nn.Conv2d | nn.BatchNorm2d)
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return [(conv, norm) for conv, norm in pairs if calls[conv] == 1 and calls[norm] == 1]


def with_modules(model: nn.Module, replacements: dict[str, nn.Module]) -> nn.Module:
    """Return a shallow copy of `model` whose modules at the paths of `replacements` are
    replaced; every other module is shared with `model`."""
    if not replacements:
        return model
    if "" in replacements:
        return replacements[""]
    clone = copy.copy(model)
    clone._modules = dict(model._modules)
    children: dict[str, dict[str, nn.Module]] = {}
    for path, module in replacements.items():
        head, _, rest = path.partition(".")
        children.setdefault(head, {})[rest] = module
    for name, inner in children.items():
        clone._modules[name] = with_modules(model._modules[name], inner)
    return clone


def fold_batch_norms(model: nn.Module, pairs: list[tuple[str, str]]) -> nn.Module:
    """Return a shallow copy of eval-mode `model` with each pair's batch norm folded into its
    convolution (`torch.nn.utils.fusion.fuse_conv_bn_eval`) and replaced by an identity."""
    return with_modules(model, _replacements(_fused(model, pairs), ""))


def _fused(model: nn.Module, pairs: list[tuple[str, str]]) -> dict[str, tuple[str, nn.Module]]:
    """conv path -> (batch norm path, the conv with the batch norm folded in)."""
    fused = {}
    for conv_path, norm_path in pairs:
        conv, norm = model.get_submodule(conv_path), model.get_submodule(norm_path)
        if not (conv.training or norm.training or norm.running_mean is None):
            fused[conv_path] = (norm_path, fuse_conv_bn_eval(conv, norm))
    return fused


def _replacements(fused: dict[str, tuple[str, nn.Module]], keep: str) -> dict[str, nn.Module]:
    """The modules that replace the fused pairs, all but the pair of the conv at path `keep`."""
    replacements: dict[str, nn.Module] = {}
    for conv_path, (norm_path, conv) in fused.items():
        if conv_path != keep:
            replacements[conv_path] = conv
            replacements[norm_path] = nn.Identity()
    return replacements


def readout_output(model: nn.Module, x: torch.Tensor, module_path: str) -> torch.Tensor:
    """Return the output of module `module_path` when `model` runs on `x` (stopped there)."""
    captured: list[torch.Tensor] = []

    def stop(_layer_id: str, _module: nn.Module, output: object) -> None:
        captured.append(output)
        raise _Stop

    with torch.no_grad(), hooked_calls(model, stop, {module_path}), suppress(_Stop):
        model(x)
    if not captured:
        raise ValueError(f"module {module_path} was not called in the forward pass")
    return captured[0]


@dataclass
class _Folds:
    """A model's folded convolutions for its current weights, and the read-out layers whose
    output the folded copy was found to keep."""

    version: tuple[int, ...]
    fused: dict[str, tuple[str, nn.Module]]
    same_readout: dict[str, bool] = field(default_factory=dict)


_folds: weakref.WeakKeyDictionary[nn.Module, _Folds] = weakref.WeakKeyDictionary()
_folds_lock = threading.Lock()


def _weights_version(model: nn.Module) -> tuple[int, ...]:
    """Changes whenever a parameter or buffer of `model` is written in place (loaded weights)."""
    return tuple(tensor._version for tensor in (*model.parameters(), *model.buffers()))


def folded_model(model: nn.Module, x: torch.Tensor, module_path: str) -> nn.Module:
    """Return `model` with its conv-batch-norm pairs folded, except a pair whose convolution is
    the read-out module `module_path` (its output must stay the conv's own), or `model` itself
    when nothing folds or the folded read-out differs from the model's on `x`.

    The folded convolutions are kept per model (one copy of their weights, shared by all read-out
    layers) until the model's weights change. The caller holds the model's lock, as for every
    computation on it.
    """
    if model.training or not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        return model
    version = _weights_version(model)
    with _folds_lock:
        folds = _folds.get(model)
    if folds is None or folds.version != version:
        folds = _Folds(version, _fused(model, conv_batch_norm_pairs(model, x)))
        with _folds_lock:
            _folds[model] = folds
    replacements = _replacements(folds.fused, module_path)
    if not replacements:
        return model
    folded = with_modules(model, replacements)
    if module_path not in folds.same_readout:
        folds.same_readout[module_path] = _same_readout(model, folded, x, module_path)
    return folded if folds.same_readout[module_path] else model


def _same_readout(model: nn.Module, folded: nn.Module, x: torch.Tensor, module_path: str) -> bool:
    expected = readout_output(model, x, module_path)
    found = readout_output(folded, x, module_path)
    scale = float(expected.abs().max())
    return found.shape == expected.shape and torch.allclose(
        found, expected, rtol=1e-4, atol=1e-6 + 1e-4 * scale
    )
