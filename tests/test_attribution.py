"""Activation maps, guided back-propagation and Grad-CAM of one image, against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from convlens.attribution import (
    activation_maps,
    filter_weight_norms,
    grad_cam,
    guided_backprop,
    last_conv_node,
    readout_layer,
)
from convlens.graph import build_graph
from convlens.hooks import count_hooks


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(3, 4, 3)
        self.relu2 = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(self.flatten(self.pool(x)))


@pytest.fixture
def tiny() -> tuple[nn.Module, torch.Tensor, dict]:
    torch.manual_seed(0)
    model = TinyNet().eval()
    x = torch.randn(1, 1, 9, 9)
    nodes = {node.id: node for node in build_graph(model, (1, 9, 9)).chain}
    return model, x, nodes


def test_activation_maps_are_the_post_relu_outputs(tiny):
    model, x, nodes = tiny
    maps = activation_maps(model, x, nodes["conv2"])
    expected = torch.relu(model.conv2(torch.relu(model.conv1(x))))[0]
    assert maps.maps.shape == (4, 5, 5)
    assert np.allclose(maps.maps, expected.detach().numpy(), atol=1e-6)
    assert np.allclose(maps.means, expected.mean(dim=(1, 2)).detach().numpy(), atol=1e-6)
    k = int(np.argmax(maps.means))
    y, x_ = maps.peak(k)
    assert maps.maps[k, y, x_] == maps.maps[k].max()
    units = activation_maps(model, x, nodes["fc"])
    assert units.maps.shape == (2, 1, 1)


def hand_guided_backprop(model: TinyNet, x: torch.Tensor, k: int, y: int, x_: int) -> torch.Tensor:
    """Guided back-propagation written out: at each ReLU, pass only positive gradients where the
    ReLU's input was positive."""
    x = x.clone().requires_grad_(True)
    pre1 = model.conv1(x)
    a1 = torch.relu(pre1)
    pre2 = model.conv2(a1)
    seed = torch.zeros_like(pre2)
    seed[0, k, y, x_] = 1.0
    g_pre2 = seed.clamp(min=0) * (pre2 > 0)
    (g_a1,) = torch.autograd.grad(pre2, a1, g_pre2, retain_graph=True)
    g_pre1 = g_a1.clamp(min=0) * (pre1 > 0)
    (g_x,) = torch.autograd.grad(pre1, x, g_pre1)
    return g_x[0]


def test_guided_backprop_equals_the_hand_written_rule_and_leaves_no_trace(tiny):
    model, x, nodes = tiny
    maps = activation_maps(model, x, nodes["conv2"])
    checked = 0
    for k in range(4):
        y, x_ = maps.peak(k)
        if maps.maps[k, y, x_] <= 0:
            continue
        image = guided_backprop(model, x, "relu2", k, (y, x_))
        expected = hand_guided_backprop(model, x, k, y, x_)
        assert image.shape == (1, 9, 9)
        assert np.abs(image).max() > 0
        assert np.allclose(image, expected.numpy(), atol=1e-6)
        checked += 1
    assert checked >= 2
    assert count_hooks(model) == 0
    assert model.relu1.inplace and model.relu2.inplace


def test_grad_cam_matches_its_definition(tiny):
    model, x, nodes = tiny
    node = last_conv_node(tuple(nodes.values()))
    assert node.id == "conv2"
    for target in (0, 1):
        heat = grad_cam(model, x, "relu2", target)
        assert heat.shape == (9, 9) and heat.min() >= 0 and heat.max() <= 1
        # by hand: A = relu2's output, weights = mean gradient of the class score over positions
        a = torch.relu(model.conv2(torch.relu(model.conv1(x)))).detach().requires_grad_(True)
        score = model.fc(model.flatten(model.pool(a)))[0, target]
        (grad,) = torch.autograd.grad(score, a)
        cam = torch.relu((grad.mean(dim=(2, 3), keepdim=True) * a).sum(1, keepdim=True))
        cam = nn.functional.interpolate(cam, size=(9, 9), mode="bilinear").detach()[0, 0]
        expected = (cam / cam.max()).numpy() if cam.max() > 0 else np.zeros((9, 9))
        assert np.allclose(heat, expected, atol=1e-5)
    assert count_hooks(model) == 0


def test_filter_weight_norms(tiny):
    model, _, nodes = tiny
    norms = filter_weight_norms(model, nodes["conv1"])
    assert np.allclose(norms, model.conv1.weight.detach().flatten(1).norm(dim=1).numpy())


def test_the_readout_layer_avoids_a_module_called_twice():
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 2, 3)
            self.bn1 = nn.BatchNorm2d(2)
            self.conv2 = nn.Conv2d(2, 2, 3)
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(self.conv2(self.act(self.bn1(self.conv1(x)))))

    graph = build_graph(Shared().eval(), (1, 9, 9))
    nodes = {node.id: node for node in graph.chain}
    assert readout_layer(graph, nodes["conv1"]) == "bn1"
    assert readout_layer(graph, nodes["conv2"]) == "conv2"
    tiny = build_graph(TinyNet(), (1, 9, 9))
    assert readout_layer(tiny, tiny.chain[0]) == "relu1"


def test_input_view_undoes_the_normalisation_but_keeps_the_crop():
    from PIL import Image

    from convlens.attribution import input_view
    from convlens.models import make_transform

    pixels = np.arange(40 * 20, dtype=np.uint8).reshape(20, 40) % 251
    transform = make_transform((1, 20, 20), 20, (0.3,), (0.2,))
    view = np.asarray(input_view(transform, Image.fromarray(pixels)))
    assert view.shape == (20, 20)
    assert np.abs(view.astype(int) - pixels[:, 10:30].astype(int)).max() <= 1  # the centre crop
