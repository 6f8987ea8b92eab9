"""Batch norms folded into the convolutions before them, where a computation reads only some
layers' outputs (guided back-propagation, the activation statistics).

In eval mode a batch norm straight after a convolution is an affine map per channel, so the
convolution can apply it itself: one layer instead of two, forward and backward. On
EfficientNet-Lite0 the batch norms' backward took a fifth of a guided back-propagation, and the
folded forward pass runs a fifth faster on CPU. The folded network is a shallow copy: it shares
every module and parameter of the model except the folded convolutions (new) and their batch
norms (identities), so it costs the folded convolutions' weights only; it shares the modules'
hooks too. A folded convolution that zero-pads evenly by a padding module first (EfficientNet's
"same" padding) pads by itself (`_padding_inside`). It is used only where the outputs read equal
the model's on an input (`folded_model`).
"""

from __future__ import annotations

import copy
import threading
import weakref
from collections.abc import Collection
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from convlens.hooks import first_tensor, parse_call_id, record_outputs


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
    return with_modules(model, _replacements(_fused(model, pairs), ()))


def _fused(model: nn.Module, pairs: list[tuple[str, str]]) -> dict[str, tuple[str, nn.Module]]:
    """conv path -> (batch norm path, the conv with the batch norm folded in)."""
    fused = {}
    for conv_path, norm_path in pairs:  # normal tensors, also when called in inference mode
        conv, norm = model.get_submodule(conv_path), model.get_submodule(norm_path)
        if not (conv.training or norm.training or norm.running_mean is None):
            with torch.inference_mode(False), torch.no_grad():
                fused[conv_path] = (norm_path, _padding_inside(fuse_conv_bn_eval(conv, norm)))
    return fused


def _padding_inside(conv: nn.Conv2d) -> nn.Conv2d:
    """Return a convolution that zero-pads its input by the same amount on every side before
    convolving (EfficientNet's "same" padding: a `static_padding` module) as a plain
    `nn.Conv2d` that pads by itself, sharing its weights: one operation instead of two, forward
    and backward (a padded copy of each input and of each gradient less). Other convolutions,
    and uneven padding, stay as they are; `_same_outputs` checks the network either way."""
    pad = getattr(conv, "static_padding", None)
    if (
        not isinstance(pad, nn.ZeroPad2d)
        or len(set(pad.padding)) != 1
        or pad.padding[0] < 0  # a crop, not a padding
        or any(conv.padding)  # a string padding ("same") is not folded either
        or conv.padding_mode != "zeros"
    ):
        return conv
    plain = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=pad.padding[0],
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    plain.weight, plain.bias = conv.weight, conv.bias
    return plain.train(conv.training)


def _replacements(
    fused: dict[str, tuple[str, nn.Module]], keep: Collection[str]
) -> dict[str, nn.Module]:
    """The modules that replace the fused pairs, all but the pairs of the convs at paths `keep`."""
    replacements: dict[str, nn.Module] = {}
    for conv_path, (norm_path, conv) in fused.items():
        if conv_path not in keep:
            replacements[conv_path] = conv
            replacements[norm_path] = nn.Identity()
    return replacements


@dataclass
class _Folds:
    """A model's folded convolutions for its current weights: none when the network with all of
    them folded computes something else than the model (`_same_outputs`)."""

    version: tuple[int, ...]
    fused: dict[str, tuple[str, nn.Module]]


_folds: weakref.WeakKeyDictionary[nn.Module, _Folds] = weakref.WeakKeyDictionary()
_folds_lock = threading.Lock()


def _weights_version(model: nn.Module) -> tuple[int, ...] | None:
    """Changes whenever a parameter or buffer of `model` is written in place (loaded weights);
    None for weights made in inference mode, which keep no version."""
    try:
        return tuple(tensor._version for tensor in (*model.parameters(), *model.buffers()))
    except RuntimeError:
        return None


def folded_model(model: nn.Module, x: torch.Tensor, reads: Collection[str]) -> nn.Module:
    """Return `model` with its conv-batch-norm pairs folded, except the pairs whose convolution is
    a layer that `reads` names (layer ids, `convlens.hooks`: their outputs stay the convs' own), or
    `model` itself when nothing folds.

    The folded convolutions are found and checked once per model on an input `x`, and kept
    until the model's weights change (one copy of their weights, whatever is read). The caller
    holds the model's lock, as for every computation on it.
    """
    if model.training or not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        return model
    version = _weights_version(model)
    if version is None:
        return model
    with _folds_lock:
        folds = _folds.get(model)
    if folds is None or folds.version != version:
        fused = _fused(model, conv_batch_norm_pairs(model, x))
        folds = _Folds(version, fused if _same_outputs(model, fused, x) else {})
        with _folds_lock:
            _folds[model] = folds
    kept = {parse_call_id(layer)[0] for layer in reads}
    return with_modules(model, _replacements(folds.fused, kept))


def _same_outputs(
    model: nn.Module, fused: dict[str, tuple[str, nn.Module]], x: torch.Tensor
) -> bool:
    """Whether the network with all of `fused` folded computes what `model` does on `x`: each
    folded conv's output the model's batch norm's, and the network's output the same.

    Then so does the network with only some of them folded (the others are the model's own
    layers, on the same inputs), whatever layers a computation reads. A conv whose output also
    goes elsewhere than its batch norm (a shortcut) changes the network's output and is caught.
    """
    if not fused:
        return True
    folded = with_modules(model, _replacements(fused, ()))
    norms = {norm: conv for conv, (norm, _) in fused.items()}
    with torch.no_grad(), record_outputs(model, set(norms)) as expected:
        expected_final = first_tensor(model(x))
    with torch.no_grad(), record_outputs(folded, set(fused)) as found:
        found_final = first_tensor(folded(x))
    pairs = [(found.get(conv), expected.get(norm)) for norm, conv in norms.items()]
    pairs.append((found_final, expected_final))
    return all(a is not None and b is not None and same_values(a, b) for a, b in pairs)


def same_values(found: torch.Tensor, expected: torch.Tensor) -> bool:
    """Whether `found` equals `expected` up to float rounding (relative to its largest value):
    the test that a cheaper way to compute a layer's output (folded, on a window) gives it."""
    if found.shape != expected.shape:
        return False
    scale = float(expected.abs().max())
    return torch.allclose(found.detach(), expected, rtol=1e-4, atol=1e-6 + 1e-4 * scale)
