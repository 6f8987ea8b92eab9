"""What one image does inside a network: activation maps, guided back-propagation, Grad-CAM.

All functions take the model in eval mode and one preprocessed image `x` (1, C, H, W) on the
model's device, and leave the model as they found it (no hooks, the same in-place flags). The
model is not thread-safe while they run: callers that share a model guard it with a lock.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.transforms import Normalize

from convlens.activations import Preprocess
from convlens.folding import folded_model, same_values
from convlens.graph import ChainNode, FieldGeometry, LayerGraph
from convlens.hooks import hooked_calls, parse_call_id, record_outputs

# Windows per forward pass in `guided_backprops` (at most 0.6 of the image each). On
# EfficientNet-Lite0 4 whole images held ~100 MB; from 8 on, its largest feature maps exceeded
# glibc's mmap threshold (`convlens.allocator`) and every pass faulted in fresh pages.
GUIDED_BACKPROP_ROWS = 4


@dataclass(frozen=True)
class LayerMaps:
    """A chain node's post-activation output for one image."""

    node: str
    maps: np.ndarray  # (filters, h, w); a linear layer's units are (units, 1, 1)

    @property
    def means(self) -> np.ndarray:
        """Each filter's spatial mean activation on this image."""
        return self.maps.reshape(len(self.maps), -1).mean(axis=1)

    def peak(self, channel: int) -> tuple[int, int]:
        """Return the (y, x) where filter `channel` responds most on this image."""
        flat = int(np.argmax(self.maps[channel]))
        return divmod(flat, self.maps.shape[2])


def activation_maps(model: nn.Module, x: torch.Tensor, node: ChainNode) -> LayerMaps:
    """Return the output of the chain node's activation layer for the image `x`."""
    with torch.no_grad(), record_outputs(model, {node.activation_layer}) as outputs:
        model(x)
    output = outputs[node.activation_layer][0].float().cpu()
    maps = output.reshape(output.shape[0], 1, 1) if output.dim() == 1 else output
    return LayerMaps(node.id, maps.numpy())


@contextmanager
def _out_of_place(model: nn.Module) -> Iterator[None]:
    """Turn in-place activations off for the block (backward hooks cannot wrap them)."""
    switched = [m for m in model.modules() if getattr(m, "inplace", False) is True]
    for module in switched:
        module.inplace = False
    try:
        yield
    finally:
        for module in switched:
            module.inplace = True


def readout_layer(graph: LayerGraph, node: ChainNode) -> str:
    """Return the module path whose output stands for the node in gradient methods.

    Captum hooks a module, so a module called more than once (EfficientNet's shared swish) is
    ambiguous: then the node's last layer with a single call (its norm or conv) is used, that is,
    the neuron is read just before its activation.
    """
    called = [parse_call_id(layer.id) for layer in graph.layers]
    called_again = {path for path, call in called if call > 1}
    for layer_id in (node.activation_layer, *reversed(node.layers)):
        path, _ = parse_call_id(layer_id)
        if path not in called_again:
            return path
    return parse_call_id(node.id)[0]


def readout_field(graph: LayerGraph, node: ChainNode) -> FieldGeometry | None:
    """Return where the receptive fields of the node's output positions lie in the input, or
    None when they do not bound what a position depends on (a global operation upstream)."""
    layer = graph.layer(node.id)
    return None if layer.sees_whole_image else layer.field_geometry


@dataclass(frozen=True)
class InputWindows:
    """The part of the input each neuron's guided back-propagation is computed on.

    A neuron depends only on the input inside its receptive field, so its gradient is zero
    outside, and the network can run on a window around the field instead of the whole image.
    All windows have one size (they form a batch). A window starts at a multiple of the layer's
    jump, so every layer's sampling grid falls on the same pixels as in the whole image, and its
    size is congruent to the image's modulo the jump, so size-dependent ("same") padding pads it
    alike. It reaches an image border wherever the field does (the padding there is the
    image's); elsewhere it holds the whole field plus up to one jump, and what its own padding
    changes lies outside the neuron's field.
    """

    height: int
    width: int
    origins: tuple[tuple[int, int], ...]  # (top, left) of each neuron's window
    positions: tuple[tuple[int, int], ...]  # each neuron's (y, x) in its window's output
    fraction: float  # the windows' area over the image's


def input_windows(
    field: FieldGeometry, positions: Sequence[tuple[int, int]], height: int, width: int
) -> InputWindows:
    """Return the windows around the receptive fields of the output positions `positions`."""

    def size(extent: int, jump: int, whole: int) -> int:
        least = extent + jump - 1
        return min(least + (whole - least) % jump, whole)

    window_h = size(field.height, field.jump_y, height)
    window_w = size(field.width, field.jump_x, width)

    def origin(start: int, jump: int, window: int, whole: int) -> int:
        return min(max(start, 0) // jump * jump, whole - window)

    origins = tuple(
        (
            origin(field.top + y * field.jump_y, field.jump_y, window_h, height),
            origin(field.left + x * field.jump_x, field.jump_x, window_w, width),
        )
        for y, x in positions
    )
    shifted = tuple(
        (y - top // field.jump_y, x - left // field.jump_x)
        for (y, x), (top, left) in zip(positions, origins, strict=True)
    )
    return InputWindows(
        window_h, window_w, origins, shifted, window_h * window_w / (height * width)
    )


# Windows larger than this part of the image cost more than one shared forward pass of the whole
# image (on CPU, 64 filters: AlexNet's features.8 at 0.51 of the image 2.0 -> 1.2 s; at 0.62 and
# 0.74 windows were slower; EfficientNet-Lite0's _blocks.1._depthwise_conv at 0.005, 0.8 -> 0.06 s).
MAX_WINDOW_FRACTION = 0.6


class _StopForward(Exception):
    """Raised by a forward hook once the read-out layer has run: nothing after it is needed."""


@contextmanager
def _guided_relus(model: nn.Module) -> Iterator[None]:
    """Make gradients pass each `nn.ReLU` call only where they are positive (guided rule).

    Captum's rule: the gradient reaching a ReLU's input is clipped at zero, if the ReLU's output
    received a gradient (the ReLU's own backward already zeroes it where the input was negative).
    """

    def guide(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        reached: list[bool] = []

        def mark(grad: torch.Tensor) -> None:
            reached.append(True)

        if output.requires_grad and inputs[0].requires_grad:
            output.register_hook(mark)
            inputs[0].register_hook(lambda grad: grad.clamp(min=0) if reached else None)

    handles = [
        module.register_forward_hook(guide)
        for module in model.modules()
        if isinstance(module, nn.ReLU)
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def _frozen_parameters(model: nn.Module) -> Iterator[None]:
    """Keep autograd from preparing parameter gradients nobody asked for (on EfficientNet-Lite0,
    batch norm's backward then took half of a guided back-propagation's time)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    for parameter in trainable:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in trainable:
            parameter.requires_grad_(True)


T = TypeVar("T")

# Threads that take a share of `_shared`'s tasks on CPU: guided back-propagation's backward
# passes of one forward pass, and its passes over windows, are independent (no barrier to wait at
# on busy cores, unlike torch's own threads), and a computation alone on an idle server finishes
# sooner (EfficientNet-Lite0's deepest 16 filters on two cores: 0.30 -> 0.18 s).
BACKWARD_HELPERS = min((os.cpu_count() or 1) - 1, 3)
_helpers: ThreadPoolExecutor | None = None
_helpers_lock = threading.Lock()


def _helper_pool() -> ThreadPoolExecutor:
    global _helpers
    with _helpers_lock:
        if _helpers is None:
            _helpers = ThreadPoolExecutor(BACKWARD_HELPERS, thread_name_prefix="backward")
        return _helpers


def _shared(tasks: Sequence[Callable[[], T]], on_cpu: bool) -> list[T]:
    """Return the results of `tasks`, in order, run by this thread and, `on_cpu`, by each helper
    thread that is free (a GPU's computations are queued on it one after another anyway).

    Each thread takes the next task until none is left: under load, when the helpers are busy
    with other computations, this thread runs them all, and waits only for the tasks a helper has
    started. A task sets its own grad mode (it is per thread).
    """
    results: list[T | None] = [None] * len(tasks)
    taken = iter(range(len(tasks)))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                index = next(taken, None)
            if index is None:
                return
            results[index] = tasks[index]()

    helpers = []
    if on_cpu and BACKWARD_HELPERS > 0 and len(tasks) > 1:
        pool = _helper_pool()
        helpers = [pool.submit(work) for _ in range(min(BACKWARD_HELPERS, len(tasks) - 1))]
    try:
        work()
    finally:
        for helper in helpers:
            if not helper.cancel():
                helper.result()
    return results


def _gradient(neuron: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """The gradient of `neuron`, a scalar, with respect to `inputs`, its graph kept for others."""
    (grad,) = torch.autograd.grad(neuron, inputs, retain_graph=True)
    return grad


def guided_backprops(
    model: nn.Module,
    x: torch.Tensor,
    module_path: str,
    channels: Sequence[int],
    positions: Sequence[tuple[int, int]] | None = None,
    rows: int = GUIDED_BACKPROP_ROWS,
    field: FieldGeometry | None = None,
) -> np.ndarray:
    """Return the guided back-propagation images (n, C, H, W) of n neurons of module `module_path`.

    Neuron i is channel `channels[i]` at `positions[i]` (y, x) of the layer's output (use
    `LayerMaps.peak` for where a filter fires most), or unit `channels[i]` of a linear output when
    `positions` is None. The forward pass stops at `module_path`, a module called once per
    forward pass (`readout_layer`), and is kept for one backward pass per neuron: each image is
    that neuron's own guided back-propagation. Gradients pass an `nn.ReLU` only where both its
    input and the gradient are positive; other activation kinds pass plain gradients (Captum's
    `NeuronGuidedBackprop`, which the tests compare with).

    Given the layer's receptive `field` (`readout_field`), each neuron runs instead on a window
    of the image around its field (`input_windows`), `rows` windows per pass, when the windows
    are small enough: the same images at a fraction of the cost. Each window's neuron is checked
    against the whole image's; where they differ (a field the graph could not bound), the whole
    image runs. Batch norms run folded into the convolutions before them (`folded_model`).
    """

    def readout(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run `images` up to the read-out layer; return the input it saw and that layer's output.
        Any thread may: the hook sees this thread's forward pass only."""
        nonlocal layout
        captured: list[torch.Tensor] = []

        def stop(_layer_id: str, _module: nn.Module, output: object) -> None:
            captured.append(output)
            raise _StopForward

        try:
            batch = images.contiguous(memory_format=layout).requires_grad_(True)
            with hooked_calls(net, stop, {module_path}), suppress(_StopForward):
                net(batch)
        except RuntimeError:
            if layout == torch.contiguous_format:
                raise
            layout = torch.contiguous_format
            return readout(images)
        if not captured:
            raise ValueError(f"module {module_path} was not called in the forward pass")
        return batch, captured[0]

    def neurons(
        output: torch.Tensor,
        batch_rows: torch.Tensor,
        chunk: Sequence[int],
        spots: Sequence[tuple[int, int]] | None,
    ) -> torch.Tensor:
        """Return neuron i of `chunk` and `spots` from row `batch_rows[i]` of `output`."""
        index = [batch_rows, torch.tensor(chunk)]
        if spots is not None:
            at = torch.tensor(spots).reshape(-1, 2)
            index += [at[:, 0], at[:, 1]]
        return output[tuple(index)]

    def on_the_image(chunk: Sequence[int], spots: Sequence[tuple[int, int]] | None) -> torch.Tensor:
        """Return the chunk's images: one forward pass of the image, one backward per neuron."""
        batch, output = readout(x.detach())
        chosen = [
            output[0, channel] if spots is None else output[0, channel, *spots[row]]
            for row, channel in enumerate(chunk)
        ]
        gradients = [partial(_gradient, neuron, batch) for neuron in chosen]
        grads = _shared(gradients, on_cpu)
        return torch.stack([grad[0].detach().float().cpu() for grad in grads])

    @torch.enable_grad()  # grad mode is per thread: a helper's too
    def on_windows(
        whole: torch.Tensor, chunk: Sequence[int], spots: Sequence[tuple[int, int]]
    ) -> torch.Tensor | None:
        """Return the chunk's images computed on windows of the image, or None where a window's
        neuron differs from the whole image's or cannot be computed."""
        nonlocal layout
        windows = input_windows(field, spots, *x.shape[2:])
        crops = [
            x[:, :, top : top + windows.height, left : left + windows.width]
            for top, left in windows.origins
        ]
        before = layout
        try:
            batch, output = readout(torch.cat(crops).detach())
        except RuntimeError:  # a window too small for some layer: the field was wrong
            layout = before
            return None
        found = neurons(output, torch.arange(len(chunk)), chunk, windows.positions)
        expected = neurons(whole, torch.zeros(len(chunk), dtype=torch.long), chunk, spots)
        if not same_values(found, expected):
            return None
        (grad,) = torch.autograd.grad(found.sum(), batch)  # rows do not mix (eval mode)
        images = torch.zeros((len(chunk), *x.shape[1:]))
        for row, (top, left) in enumerate(windows.origins):
            bottom, right = top + windows.height, left + windows.width
            images[row, :, top:bottom, left:right] = grad[row].detach().float().cpu()
        return images

    # Channels-last images run the convolutions ~25% faster on CPU; a model that `view`s a
    # channels-last tensor fails on it, and then gets the plain layout.
    layout = torch.channels_last if x.dim() == 4 else torch.contiguous_format
    on_cpu = x.device.type == "cpu"
    net = folded_model(model, x.detach(), {module_path})
    images = []
    with _out_of_place(net), _guided_relus(net), _frozen_parameters(net):
        done = 0
        if (
            field is not None
            and positions is not None
            and len(channels) > 0
            and input_windows(field, (), *x.shape[2:]).fraction <= MAX_WINDOW_FRACTION
        ):
            with torch.no_grad():
                whole = readout(x.detach())[1]
            passes = [
                partial(on_windows, whole, channels[at : at + rows], positions[at : at + rows])
                for at in range(0, len(channels), rows)
            ]
            for found in _shared(passes, on_cpu):
                if found is None:  # this pass and the later ones run on the whole image
                    break
                images.append(found)
                done += len(found)
        if done < len(channels):
            spots = None if positions is None else positions[done:]
            with torch.enable_grad():
                images.append(on_the_image(channels[done:], spots))
    if not images:
        return np.zeros((0, *x.shape[1:]), dtype=np.float32)
    return torch.cat(images).numpy()


def guided_backprop(
    model: nn.Module,
    x: torch.Tensor,
    module_path: str,
    channel: int,
    position: tuple[int, int] | None = None,
    field: FieldGeometry | None = None,
) -> np.ndarray:
    """Return the guided back-propagation image (C, H, W) of one neuron of module `module_path`.

    The neuron is channel `channel` at `position` (y, x) of the layer's output, or unit `channel`
    of a linear output when `position` is None (`guided_backprops` with one neuron).
    """
    positions = None if position is None else [position]
    return guided_backprops(model, x, module_path, [channel], positions, field=field)[0]


def grad_cam(model: nn.Module, x: torch.Tensor, module_path: str, target: int) -> np.ndarray:
    """Return Grad-CAM of class `target` at module `module_path`, upsampled to the input, in [0, 1].

    Captum's `LayerGradCam`: the layer's feature maps weighted by the spatially averaged
    gradient of the class score, summed, negative evidence clipped.
    """
    from captum.attr import LayerAttribution, LayerGradCam

    with _out_of_place(model):
        cam = LayerGradCam(model, model.get_submodule(module_path)).attribute(
            x.clone().requires_grad_(True), target=int(target), relu_attributions=True
        )
        cam = LayerAttribution.interpolate(cam.detach(), tuple(x.shape[2:]), "bilinear")
    heat = cam[0, 0].float().cpu().numpy()
    peak = float(heat.max())
    return np.clip(heat / peak, 0.0, 1.0) if peak > 0 else np.zeros_like(heat)


def last_conv_node(chain: tuple[ChainNode, ...]) -> ChainNode | None:
    """Return the deepest conv chain node with a spatial output (Grad-CAM's usual layer)."""
    convs = [n for n in chain if n.type == "conv" and len(n.output_shape) == 3]
    return convs[-1] if convs else None


def filter_weight_norms(model: nn.Module, node: ChainNode) -> np.ndarray:
    """Return the L2 norm of each filter's weights (the ConvLens seed's "importance")."""
    weight = model.get_submodule(parse_call_id(node.id)[0]).weight.detach().float()
    return torch.linalg.vector_norm(weight.flatten(1), dim=1).cpu().numpy()


def input_view(transform: Callable[[Image.Image], torch.Tensor], image: Image.Image) -> Image.Image:
    """Return `image` as the network sees it (resized and cropped by `transform`, not normalised).

    Activation maps, receptive-field boxes and Grad-CAM are in these pixels, not the original's.
    A transform that ends in ToTensor and Normalize needs only its image steps for them
    (`Preprocess.pictures`): the tensor's steps are undone here exactly.
    """
    finished = Preprocess(transform).pictures([image])
    if isinstance(finished, np.ndarray):
        return Image.fromarray(finished[0])
    x = finished[0]
    steps = getattr(transform, "transforms", [])
    normalize = next((t for t in steps if isinstance(t, Normalize)), None)
    if normalize is not None:
        mean = torch.as_tensor(normalize.mean, dtype=x.dtype)[:, None, None]
        std = torch.as_tensor(normalize.std, dtype=x.dtype)[:, None, None]
        x = x * std + mean
    pixels = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    array = pixels.permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
