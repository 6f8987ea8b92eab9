"""One convolution explained: the arithmetic behind one value of a conv layer's feature map.

CNN Explainer's elementary view, for any 2-D convolution of any model: the input window that the
filter sees at one output position (padding included, dilation applied, the filter's own group of
input channels), the kernel, their element-wise products summed per input channel, the bias, and
then the norm and activation merged into the chain node, ending in the value its map shows.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from convlens.access import whole_number
from convlens.graph import ChainNode, Layer, LayerGraph, build_graph
from convlens.hooks import PADDING_TYPES, first_tensor, hooked_calls, parse_call_id
from convlens.models import LoadedModel
from convlens.predict import input_batch

# How far sum(window × kernel) + bias may lie from the conv module's own output, as a share of
# sum(|window × kernel|) + |bias|: float32 rounding stays far below it; a conv whose forward does
# more than pad and convolve (a standardised weight, say) lands far above.
AGREEMENT = 1e-3


class ExplainError(ValueError):
    """The layer, filter or position cannot be explained; the message is one sentence for the user."""


@dataclass(frozen=True)
class ConvolutionStep:
    """How filter `filter` of the conv `layer` computes its output at (y, x), step by step."""

    layer: str
    node: str
    filter: int
    y: int
    x: int
    stride: tuple[int, int]
    dilation: tuple[int, int]
    # where window[:, 0, 0] lies in the conv's (unpadded) input; negative inside the padding
    origin: tuple[int, int]
    # the (height, width) of the conv's input, unpadded: window cells outside it read padding
    input_size: tuple[int, int]
    # the conv's input channels first_input_channel, first_input_channel + 1, ... (its group's)
    first_input_channel: int
    window: np.ndarray  # (in_channels / groups, kh, kw), the input as the conv sees it
    kernel: np.ndarray  # (in_channels / groups, kh, kw)
    channel_sums: np.ndarray  # (in_channels / groups,): sum of window × kernel per channel
    bias: float
    pre_activation: float  # the conv module's output there
    norm: str | None  # the class of the norm merged into the chain node, if any
    norm_scale: float | None  # a batch norm in eval mode: normalised = pre × scale + shift
    norm_shift: float | None
    normalised: float
    activation_name: str | None  # the class of the activation merged into the chain node
    activation: float  # the chain node's value there: what its activation map shows

    @property
    def products(self) -> np.ndarray:
        """The element-wise products window × kernel, (in_channels / groups, kh, kw)."""
        return self.window.astype(np.float64) * self.kernel.astype(np.float64)

    @property
    def padding_mask(self) -> np.ndarray:
        """Whether each window cell (kh, kw) lies outside the conv's input, in its padding."""
        kh, kw = self.kernel.shape[1:]
        rows = self.origin[0] + self.dilation[0] * np.arange(kh)
        columns = self.origin[1] + self.dilation[1] * np.arange(kw)
        inside_rows = (rows >= 0) & (rows < self.input_size[0])
        inside_columns = (columns >= 0) & (columns < self.input_size[1])
        return ~(inside_rows[:, None] & inside_columns[None, :])

    @property
    def total(self) -> float:
        """sum(window × kernel) + bias, in float64: the conv's output up to float32 rounding."""
        return float(self.channel_sums.sum()) + self.bias


def convolution_step(
    model: LoadedModel,
    image: Image.Image,
    layer_id: str,
    filter: int,
    y: int,
    x: int,
    *,
    graph: LayerGraph | None = None,
) -> ConvolutionStep:
    """Return how filter `filter` of the conv layer `layer_id` computes its value at (y, x), 0-based
    coordinates in the conv's output, for `image` preprocessed as the model does.

    `graph` (the model's `build_graph`) saves tracing the model again. One forward pass runs, up
    to the chain node's last layer, through `hooks.hooked_calls` (no hook is left behind).
    The model is expected in eval mode (batch norms then use their running statistics).
    """
    graph = graph or build_graph(model.module, model.input_size)
    conv, node = _conv_of(graph, layer_id)
    module = model.module.get_submodule(conv.path)
    if not isinstance(module, nn.Conv2d):
        raise ExplainError(
            f"{layer_id} is a {type(module).__name__}; only 2-D convolutions can be explained"
        )
    channels, height, width = conv.output_shape
    filter, y, x = int(filter), int(y), int(x)
    if not 0 <= filter < channels:
        raise ExplainError(f"{layer_id} has filters 0 to {channels - 1}, not {filter}")
    if not (0 <= y < height and 0 <= x < width):
        raise ExplainError(
            f"{layer_id}'s output is {height}×{width}: a position is 0 ≤ y < {height}, "
            f"0 ≤ x < {width}, not ({y}, {x})"
        )
    conv_input, values = _forward(model.module, input_batch(model, image), node, filter, y, x)
    padded, leading = _padded_input(module, conv_input, (height, width))
    per_group = module.in_channels // module.groups
    first_channel = filter // (module.out_channels // module.groups) * per_group
    (kh, kw), (sh, sw), (dh, dw) = module.kernel_size, module.stride, module.dilation
    window = padded[
        first_channel : first_channel + per_group,
        y * sh : y * sh + dh * (kh - 1) + 1 : dh,
        x * sw : x * sw + dw * (kw - 1) + 1 : dw,
    ]
    kernel = module.weight.detach()[filter].float().cpu().numpy()
    if window.shape != kernel.shape:
        raise ExplainError(
            f"the input of {layer_id} does not fit its output size; cannot explain it"
        )
    bias = float(module.bias.detach()[filter]) if module.bias is not None else 0.0
    products = window.astype(np.float64) * kernel.astype(np.float64)
    channel_sums = products.sum(axis=(1, 2))
    pre_activation = values[conv.id]
    error = abs(float(channel_sums.sum()) + bias - pre_activation)
    if error > AGREEMENT * (float(np.abs(products).sum()) + abs(bias)) + 1e-6:
        raise ExplainError(
            f"{layer_id} ({type(module).__name__}) computes more than padding and a convolution "
            "with its weight; its arithmetic cannot be shown"
        )
    norm_layer = _member(model.module, graph, node, "norm")
    activation_layer = _member(model.module, graph, node, "activation")
    scale, shift = _norm_affine(norm_layer[1]) if norm_layer else (None, None)
    return ConvolutionStep(
        layer=conv.id,
        node=node.id,
        filter=filter,
        y=y,
        x=x,
        stride=(sh, sw),
        dilation=(dh, dw),
        origin=(y * sh - leading[0], x * sw - leading[1]),
        input_size=(int(conv_input.shape[1]), int(conv_input.shape[2])),
        first_input_channel=first_channel,
        window=window,
        kernel=kernel,
        channel_sums=channel_sums,
        bias=bias,
        pre_activation=pre_activation,
        norm=type(norm_layer[1]).__name__ if norm_layer else None,
        norm_scale=None if scale is None else float(scale[filter]),
        norm_shift=None if shift is None else float(shift[filter]),
        normalised=values[norm_layer[0]] if norm_layer else pre_activation,
        activation_name=type(activation_layer[1]).__name__ if activation_layer else None,
        activation=values[node.activation_layer],
    )


def parse_position(text: str) -> tuple[int, int]:
    """Return the (y, x) of "Y,X" (two whole numbers); ExplainError otherwise."""
    numbers = [whole_number(part) for part in str(text).split(",")]
    if len(numbers) != 2 or None in numbers:
        raise ExplainError(f"a position is Y,X (two whole numbers), not '{str(text)[:40]}'")
    return numbers[0], numbers[1]


def _conv_of(graph: LayerGraph, layer_id: str) -> tuple[Layer, ChainNode]:
    """Return the conv layer `layer_id` and its chain node, or say why it cannot be explained."""
    try:
        layer = graph.layer(layer_id)
    except KeyError:
        raise ExplainError(
            f"the model has no layer '{layer_id}'; `convlens graph` lists them"
        ) from None
    if layer.type != "conv":
        raise ExplainError(f"{layer_id} is not a convolution ({layer.type} layer)")
    node = graph.node(layer.chain_node)
    if node.layers[0] != layer.id or len(layer.output_shape) != 3:
        raise ExplainError(f"{layer_id} has no 2-D feature map to explain")
    return layer, node


def _member(
    model: nn.Module, graph: LayerGraph, node: ChainNode, kind: str
) -> tuple[str, nn.Module] | None:
    """Return the id and module of the chain node's first layer of `kind` after its conv."""
    for layer_id in node.layers[1:]:
        layer = graph.layer(layer_id)
        if layer.type == kind:
            return layer_id, model.get_submodule(layer.path)
    return None


def _norm_affine(norm: nn.Module) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Return the per-channel (scale, shift) of a batch norm in eval mode, else (None, None)."""
    if (
        not isinstance(norm, nn.modules.batchnorm._BatchNorm)
        or norm.training
        or norm.running_mean is None
        or norm.running_var is None
    ):
        return None, None
    scale = 1.0 / torch.sqrt(norm.running_var.detach().double() + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight.detach().double()
    shift = -norm.running_mean.detach().double() * scale
    if norm.bias is not None:
        shift = shift + norm.bias.detach().double()
    return scale.cpu().numpy(), shift.cpu().numpy()


class _Done(Exception):
    """Raised by a hook once the chain node's last layer has run: nothing after it is needed."""


def _forward(
    model: nn.Module, batch: torch.Tensor, node: ChainNode, channel: int, y: int, x: int
) -> tuple[torch.Tensor, dict[str, float]]:
    """Run `batch` up to the end of chain node `node`; return the conv's input (C, H, W) and each
    node layer's output at (channel, y, x), by layer id."""
    conv_id, last = node.layers[0], node.layers[-1]
    conv = model.get_submodule(parse_call_id(conv_id)[0])
    wanted = set(node.layers)
    inputs_of_call: list[torch.Tensor] = []
    conv_input: list[torch.Tensor] = []
    values: dict[str, float] = {}

    def before(module: nn.Module, inputs: tuple) -> None:
        if module is conv:  # the input of the conv's call that `after` is told of next
            inputs_of_call[:] = [inputs[0]]

    def after(layer_id: str, module: nn.Module, output: object) -> None:
        if layer_id not in wanted:
            return
        if layer_id == conv_id:
            conv_input.append(inputs_of_call[0][0].detach().float().cpu().clone())
        values[layer_id] = float(first_tensor(output)[0, channel, y, x])
        if layer_id == last:
            raise _Done

    with suppress(_Done), torch.no_grad(), hooked_calls(model, after, before_call=before):
        model(batch)
    if not conv_input or set(values) != wanted:
        raise ExplainError(f"{node.id} did not run in the model's forward pass")
    return conv_input[0], values


def _padded_input(
    module: nn.Conv2d, x: torch.Tensor, output_size: tuple[int, int]
) -> tuple[np.ndarray, tuple[int, int]]:
    """Return the conv's input (C, H, W) padded as the conv pads it, and the rows and columns
    added above and left.

    The padding comes from padding children run before the convolution (EfficientNet's static
    same padding), then `padding` with `padding_mode`; an output still larger than that explains
    was padded inside `forward` as TensorFlow's "SAME" does, the smaller half first.
    """
    batch = x.unsqueeze(0)
    top = left = 0
    for child in module.children():
        if isinstance(child, PADDING_TYPES) and not isinstance(child, nn.Identity):
            pad = child.padding
            pad_left, _, pad_top, _ = (pad,) * 4 if isinstance(pad, int) else tuple(pad)
            batch = child(batch)
            top, left = top + int(pad_top), left + int(pad_left)
    (kh, kw), (sh, sw), (dh, dw) = module.kernel_size, module.stride, module.dilation
    if module.padding == "valid":
        rows, columns = (0, 0), (0, 0)
    elif module.padding == "same":  # torch puts the smaller half first
        rows = (dh * (kh - 1) // 2, dh * (kh - 1) - dh * (kh - 1) // 2)
        columns = (dw * (kw - 1) // 2, dw * (kw - 1) - dw * (kw - 1) // 2)
    else:
        rows, columns = (module.padding[0],) * 2, (module.padding[1],) * 2
    mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
    batch = F.pad(batch, (*columns, *rows), mode=mode)
    top, left = top + rows[0], left + columns[0]
    extra = []
    for axis, (k, s, d) in enumerate(((kh, sh, dh), (kw, sw, dw))):
        size, wanted = batch.shape[2 + axis], output_size[axis]
        missing = max((wanted - 1) * s + d * (k - 1) + 1 - size, 0)
        extra.append((missing // 2, missing - missing // 2))
    if any(sum(pair) for pair in extra):
        batch = F.pad(batch, (*extra[1], *extra[0]))
        top, left = top + extra[0][0], left + extra[1][0]
    return batch[0].numpy(), (top, left)
