"""Activation maps, guided back-propagation and Grad-CAM of one image, against hand computations."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
import pytest
import torch
from torch import nn
from torchvision import transforms as T

from convlens import attribution
from convlens.attribution import (
    MAX_WINDOW_FRACTION,
    activation_maps,
    filter_weight_norms,
    grad_cam,
    guided_backprop,
    guided_backprops,
    input_windows,
    last_conv_node,
    readout_field,
    readout_layer,
)
from convlens.graph import FieldGeometry, build_graph
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


def captum_guided_backprop(
    model: nn.Module, x: torch.Tensor, layer: str, channel: int, position: tuple[int, int] | None
) -> np.ndarray:
    """The reference: Captum's `NeuronGuidedBackprop` for one neuron, one backward pass."""
    from captum.attr import NeuronGuidedBackprop

    switched = [m for m in model.modules() if getattr(m, "inplace", False) is True]
    for module in switched:
        module.inplace = False  # Captum's backward hooks cannot wrap in-place activations
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Setting backward hooks on ReLU", UserWarning)
            selector = (channel,) if position is None else (channel, *position)
            attribution = NeuronGuidedBackprop(model, model.get_submodule(layer)).attribute(
                x.clone().requires_grad_(True), neuron_selector=selector
            )
    finally:
        for module in switched:
            module.inplace = True
    return attribution[0].detach().numpy()


def assert_equals_one_neuron_at_a_time(
    model: nn.Module,
    x: torch.Tensor,
    layer: str,
    channels: list[int],
    positions: list[tuple[int, int]] | None,
    rows: int,
) -> np.ndarray:
    batched = guided_backprops(model, x, layer, channels, positions, rows=rows)
    assert batched.shape == (len(channels), *x.shape[1:])
    for row, channel in enumerate(channels):
        position = None if positions is None else positions[row]
        expected = captum_guided_backprop(model, x, layer, channel, position)
        assert torch.allclose(
            torch.from_numpy(batched[row]), torch.from_numpy(expected), rtol=1e-5, atol=1e-6
        ), (layer, channel)
        single = guided_backprop(model, x, layer, channel, position)  # the magnified view's
        assert np.allclose(single, batched[row], rtol=1e-5, atol=1e-6)
    return batched


def test_batched_guided_backprop_equals_one_backward_per_filter(tiny):
    model, x, nodes = tiny
    maps = activation_maps(model, x, nodes["conv2"])
    channels = [3, 0, 2, 1, 0]  # any order, a filter twice, chunks of 2 rows
    positions = [maps.peak(k) for k in channels]
    for layer in ("relu2", "conv2"):  # after the ReLU and before it
        batched = assert_equals_one_neuron_at_a_time(model, x, layer, channels, positions, 2)
        assert np.abs(batched).max() > 0
    assert_equals_one_neuron_at_a_time(model, x, "fc", [1, 0], None, 16)
    assert guided_backprops(model, x, "relu2", [], []).shape == (0, 1, 9, 9)
    assert count_hooks(model) == 0
    assert model.relu1.inplace and model.relu2.inplace


class InPlaceNet(nn.Module):
    """In-place ReLU6 and ReLU (called twice), batch norm, a residual sum and a flattening `view`
    (which fails on a channels-last tensor)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.relu6 = nn.ReLU6(inplace=True)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1, groups=3)
        self.bn2 = nn.BatchNorm2d(6)
        self.relu = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(6, 5, 3, stride=2)
        self.fc = nn.Linear(5 * 4 * 4, 3)

    def forward(self, x):
        a = self.relu6(self.bn1(self.conv1(x)))
        b = self.relu(self.bn2(self.conv2(a)) + a)
        c = self.relu(self.conv3(b))
        return self.fc(c.view(c.shape[0], -1))


def test_batched_guided_backprop_with_in_place_relu6_and_relu():
    torch.manual_seed(1)
    model = InPlaceNet()
    with torch.no_grad():
        for bn in (model.bn1, model.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
    model.eval()
    x = torch.randn(1, 2, 10, 10) * 3  # large enough that some ReLU6 saturate
    with torch.no_grad():
        a = model.relu6(model.bn1(model.conv1(x)))
        b = model.bn2(model.conv2(a))
        outputs = {"relu6": a, "bn2": b, "conv3": model.conv3(torch.relu(b + a))}
    # `relu` is called twice, so it is no read-out layer (`readout_layer`), but its guided rule
    # applies at both calls
    for layer, output in outputs.items():
        channels = list(range(output.shape[1]))
        positions = [divmod(int(output[0, k].argmax()), output.shape[3]) for k in channels]
        assert_equals_one_neuron_at_a_time(model, x, layer, channels, positions, 4)
    assert_equals_one_neuron_at_a_time(model, x, "fc", [0, 1, 2], None, 2)
    assert count_hooks(model) == 0
    assert model.relu6.inplace and model.relu.inplace


@pytest.mark.slow  # Captum's reference runs the whole network once per filter
def test_batched_guided_backprop_on_efficientnet_lite0():
    from convlens.data import load_image
    from convlens.models import load_model

    loaded = load_model("efficientnet_lite0")
    model = loaded.module
    inplace = [getattr(m, "inplace", None) for m in model.modules()]
    x = loaded.transform(load_image("sample:chelsea").image).unsqueeze(0)
    graph = build_graph(model, loaded.input_size)
    node = graph.node("_blocks.1._depthwise_conv")
    layer = readout_layer(graph, node)  # _bn1: the block's ReLU6 module is called twice
    maps = activation_maps(model, x, node)
    channels = [0, 5, 30, 77]
    positions = [maps.peak(k) for k in channels]
    batched = assert_equals_one_neuron_at_a_time(model, x, layer, channels, positions, 3)
    assert np.abs(batched).max() > 0
    field = readout_field(graph, node)
    windowed, passes = whole_image_passes(
        model, partial(guided_backprops, model, x, layer, channels, positions, 3, field)
    )
    assert passes == [1]  # 4 windows of 16 x 16 pixels (the neuron sees 11 x 11, 4 apart)
    assert np.allclose(windowed, batched, rtol=1e-5, atol=1e-6)
    assert count_hooks(model) == 0
    assert [getattr(m, "inplace", None) for m in model.modules()] == inplace


def test_guided_backprop_leaves_no_hooks_after_an_error(tiny):
    model, x, _ = tiny
    model.unused = nn.ReLU(inplace=True)  # a module the forward pass never calls
    with pytest.raises(ValueError, match="was not called"):
        guided_backprops(model, x, "unused", [0], [(0, 0)])
    assert model.unused.inplace
    del model.unused
    with pytest.raises(IndexError):
        guided_backprops(model, x, "relu2", [0, 9], [(0, 0), (0, 0)])
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


def undone_by_hand(transform, image) -> np.ndarray:
    """The whole transform, then Normalize undone and the values scaled back to 0..255."""
    normalize = transform.transforms[-1]
    x = transform(image)
    mean = torch.tensor(normalize.mean)[:, None, None]
    x = x * torch.tensor(normalize.std)[:, None, None] + mean
    pixels = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return pixels[:, :, 0] if pixels.shape[2] == 1 else pixels


@pytest.mark.parametrize(
    ("size", "resize", "mode"), [((1, 28, 28), 28, "L"), ((3, 224, 224), 256, "RGB")]
)
def test_input_view_equals_the_transform_undone(size, resize, mode):
    from PIL import Image

    from convlens.attribution import input_view
    from convlens.models import make_transform

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (300, 340, 3), dtype=np.uint8))
    transform = make_transform(size, resize, (0.485,) * size[0], (0.229,) * size[0])
    view = input_view(transform, image)
    assert view.mode == mode
    assert np.array_equal(np.asarray(view), undone_by_hand(transform, image))
    grey = T.Compose([T.Lambda(lambda picture: picture.convert("L")), T.ToTensor()])
    assert np.array_equal(np.asarray(input_view(grey, image)), np.asarray(image.convert("L")))


def test_input_windows_by_hand():
    # fields of 5 x 5 pixels, 2 apart, the first starting one pixel into the padding
    field = FieldGeometry(top=-1, left=-1, height=5, width=5, jump_y=2, jump_x=2)
    windows = input_windows(field, [(0, 0), (3, 4), (7, 7)], 16, 17)
    # 5 + 2 - 1 = 6 rows; 6 = 16 mod 2 already; 6 columns + 1 to be 17 mod 2
    assert (windows.height, windows.width) == (6, 7)
    # (0, 0) sees rows -1..3: the window starts at the border; (3, 4) sees rows 5..9 and
    # columns 7..11: it starts at 4 and 6 (multiples of 2); (7, 7) sees rows 13..17: clamped to
    # end at the image's last row (16 - 6 = 10) and column (17 - 7 = 10)
    assert windows.origins == ((0, 0), (4, 6), (10, 10))
    assert windows.positions == ((0, 0), (1, 1), (2, 2))
    assert windows.fraction == pytest.approx(6 * 7 / (16 * 17))
    # a field larger than the image: the whole image
    wide = FieldGeometry(top=-8, left=-8, height=40, width=40, jump_y=8, jump_x=8)
    assert input_windows(wide, [(1, 1)], 16, 17).origins == ((0, 0),)
    assert input_windows(wide, [], 16, 17).fraction == 1.0


class WindowNet(nn.Module):
    """Every kind of window the crop must line up with: padding, EfficientNet's static and
    dynamic same padding, batch norm, a max pool in ceil mode, dilation and a residual sum."""

    def __init__(self) -> None:
        super().__init__()
        from efficientnet_lite_pytorch.utils import (
            Conv2dDynamicSamePadding,
            Conv2dStaticSamePadding,
        )

        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=True)
        self.static = Conv2dStaticSamePadding(4, 4, 3, stride=2, image_size=[30, 35])
        self.bn = nn.BatchNorm2d(4)
        self.relu2 = nn.ReLU()
        self.dynamic = Conv2dDynamicSamePadding(4, 5, 4, stride=2)
        self.relu3 = nn.ReLU6()
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.dilated = nn.Conv2d(5, 5, 3, padding=2, dilation=2)
        self.relu4 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu1(self.conv1(x))
        b = self.relu2(self.bn(self.static(a)))
        c = self.pool(self.relu3(self.dynamic(b)))
        return self.relu4(self.dilated(c) + c)


def whole_image_passes(model: nn.Module, run: Callable[[], np.ndarray]) -> tuple[np.ndarray, list]:
    """Return what `run` returns and the batch sizes of its forward passes on the whole image
    (a pass of the model or of its folded copy, which shares the model's own hooks)."""
    shapes = []
    handle = model.register_forward_pre_hook(lambda _m, inputs: shapes.append(inputs[0].shape))
    try:
        found = run()
    finally:
        handle.remove()
    return found, [shape[0] for shape in shapes if shape[2:] == shapes[0][2:]]


def test_guided_backprop_on_windows_equals_the_whole_image_at_every_position():
    torch.manual_seed(3)
    model = WindowNet()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    model.eval()
    x = torch.randn(1, 2, 30, 35)
    graph = build_graph(model, (2, 30, 35))
    windowed_layers = 0
    for node in graph.chain:
        layer, field = readout_layer(graph, node), readout_field(graph, node)
        output = graph.layer(node.id).output_shape
        spots = [(y, x_) for y in range(output[1]) for x_ in range(output[2])]
        channels = [k % output[0] for k in range(len(spots))]
        whole = guided_backprops(model, x, layer, channels, spots, rows=64)
        windowed, passes = whole_image_passes(
            model, partial(guided_backprops, model, x, layer, channels, spots, 64, field)
        )
        assert np.allclose(windowed, whole, rtol=1e-5, atol=1e-6), layer
        if input_windows(field, (), 30, 35).fraction <= MAX_WINDOW_FRACTION:
            assert passes == [1], layer  # the image's own neurons, to check the windows' against
            windowed_layers += 1
    assert windowed_layers >= 3
    assert not x.requires_grad  # the caller's image is left as it was
    assert count_hooks(model) == 0
    assert all(p.requires_grad for p in model.parameters())
    assert model.relu1.inplace


def test_a_field_too_small_falls_back_to_the_whole_image(tiny):
    model, x, nodes = tiny
    maps = activation_maps(model, x, nodes["conv2"])
    channels = [0, 1, 2, 3]
    positions = [maps.peak(k) for k in channels]
    whole = guided_backprops(model, x, "relu2", channels, positions)
    # conv2's outputs see 5 x 5 pixels: windows of 1 pixel cannot be computed, and fields that
    # start a pixel too far down and right hold other pixels than the neurons see
    for wrong in (
        FieldGeometry(top=0, left=0, height=1, width=1, jump_y=1, jump_x=1),
        FieldGeometry(top=1, left=1, height=5, width=5, jump_y=1, jump_x=1),
    ):
        found, passes = whole_image_passes(
            model, partial(guided_backprops, model, x, "relu2", channels, positions, field=wrong)
        )
        assert np.allclose(found, whole, rtol=1e-6, atol=1e-7)
        assert passes == [1, 1]  # the image's neurons, then the whole image once for all 4 rows


@pytest.mark.parametrize("windows", [False, True])
def test_passes_shared_with_helper_threads_give_the_same_images(windows, monkeypatch):
    """The backward passes of one forward pass, or the passes over windows, shared between the
    calling thread and helper threads."""
    torch.manual_seed(3)
    model, x = WindowNet().eval(), torch.randn(1, 2, 30, 35)
    graph = build_graph(model, (2, 30, 35))
    node = graph.node("dynamic" if windows else "dilated")  # 0.2 of the image, or all of it
    layer = readout_layer(graph, node)
    field = readout_field(graph, node) if windows else None
    maps = activation_maps(model, x, node)
    channels = [3, 0, 2, 1, 0, 3, 2, 1, 1]
    positions = [maps.peak(k) for k in channels]
    run = partial(guided_backprops, model, x, layer, channels, positions, 2, field)
    run()  # the batch norm folded once, with its forward passes to check it
    monkeypatch.setattr(attribution, "BACKWARD_HELPERS", 0)
    alone, passes_alone = whole_image_passes(model, run)
    monkeypatch.setattr(attribution, "BACKWARD_HELPERS", 3)
    monkeypatch.setattr(attribution, "_helpers", ThreadPoolExecutor(3))
    shared, passes_shared = whole_image_passes(model, run)
    assert passes_shared == passes_alone == [1]  # the image's own neurons, or the one shared pass
    assert np.array_equal(alone, shared)
    assert np.abs(shared).max() > 0
    assert_equals_one_neuron_at_a_time(model, x, layer, channels, positions, 2)
    assert count_hooks(model) == 0


def test_shared_tasks_do_not_wait_for_helpers_busy_elsewhere(monkeypatch):
    """Under load the helpers run other sessions' work: the caller runs every task itself."""
    pool = ThreadPoolExecutor(2)
    monkeypatch.setattr(attribution, "BACKWARD_HELPERS", 2)
    monkeypatch.setattr(attribution, "_helpers", pool)
    release = threading.Event()
    busy = [pool.submit(release.wait, 30) for _ in range(2)]
    try:
        squares = [lambda k=k: k * k for k in range(5)]
        assert attribution._shared(squares, on_cpu=True) == [0, 1, 4, 9, 16]
        assert not any(task.done() for task in busy), "finished while the helpers were busy"
    finally:
        release.set()
        pool.shutdown()
