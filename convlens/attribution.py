"""What one image does inside a network: activation maps, guided back-propagation, Grad-CAM.

All functions take the model in eval mode and one preprocessed image `x` (1, C, H, W) on the
model's device, and leave the model as they found it (no hooks, the same in-place flags). The
model is not thread-safe while they run: callers that share a model guard it with a lock.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.transforms import Normalize

from convlens.graph import ChainNode, LayerGraph
from convlens.hooks import record_outputs


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


def module_path(layer_id: str) -> str:
    """Return the module path of a layer id (`PATH` or `PATH:N` for the N-th call)."""
    return layer_id.split(":", 1)[0]


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
    called_again = {module_path(layer.id) for layer in graph.layers if ":" in layer.id}
    for layer_id in (node.activation_layer, *reversed(node.layers)):
        if module_path(layer_id) not in called_again:
            return module_path(layer_id)
    return module_path(node.id)


def guided_backprop(
    model: nn.Module,
    x: torch.Tensor,
    layer: str,
    channel: int,
    position: tuple[int, int] | None = None,
) -> np.ndarray:
    """Return the guided back-propagation image (C, H, W) of one neuron of module `layer`.

    The neuron is channel `channel` at `position` (y, x) of the layer's output (use
    `LayerMaps.peak` for where the filter fires most), or unit `channel` of a linear output when
    `position` is None. Captum's `NeuronGuidedBackprop`: gradients pass a ReLU module only where
    both its input and the gradient are positive (other activation kinds pass plain gradients).
    """
    from captum.attr import NeuronGuidedBackprop

    selector = (channel,) if position is None else (channel, *position)
    with _out_of_place(model), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Setting backward hooks on ReLU", UserWarning)
        attribution = NeuronGuidedBackprop(model, model.get_submodule(layer)).attribute(
            x.clone().requires_grad_(True), neuron_selector=selector
        )
    return attribution[0].detach().float().cpu().numpy()


def grad_cam(model: nn.Module, x: torch.Tensor, layer: str, target: int) -> np.ndarray:
    """Return Grad-CAM of class `target` at module `layer`, upsampled to the input, in [0, 1].

    Captum's `LayerGradCam`: the layer's feature maps weighted by the spatially averaged
    gradient of the class score, summed, negative evidence clipped.
    """
    from captum.attr import LayerAttribution, LayerGradCam

    with _out_of_place(model):
        cam = LayerGradCam(model, model.get_submodule(layer)).attribute(
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
    weight = model.get_submodule(module_path(node.id)).weight.detach().float()
    return torch.linalg.vector_norm(weight.flatten(1), dim=1).cpu().numpy()


def input_view(transform: Callable[[Image.Image], torch.Tensor], image: Image.Image) -> Image.Image:
    """Return `image` as the network sees it (resized and cropped by `transform`, not normalised).

    Activation maps, receptive-field boxes and Grad-CAM are in these pixels, not the original's.
    """
    x = transform(image)
    steps = getattr(transform, "transforms", [])
    normalize = next((t for t in steps if isinstance(t, Normalize)), None)
    if normalize is not None:
        mean = torch.as_tensor(normalize.mean, dtype=x.dtype)[:, None, None]
        std = torch.as_tensor(normalize.std, dtype=x.dtype)[:, None, None]
        x = x * std + mean
    pixels = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    array = pixels.permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
