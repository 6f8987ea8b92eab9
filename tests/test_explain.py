"""One convolution explained: windows, kernels and sums against hand computations and against the
hooked outputs of real models (strided, padded, static-same-padded, depthwise, grouped, dilated).

The torchvision models are their seeded untrained networks (no weights offline); EfficientNet-Lite0
has its shipped pretrained weights. Their batch norms get planted running statistics, so that the
normalisation step is not the identity.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from convlens.attribution import activation_maps
from convlens.cli import main
from convlens.explain import ExplainError, convolution_step
from convlens.graph import build_graph
from convlens.hooks import count_hooks, record_outputs
from convlens.models import LoadedModel, load_model
from convlens.predict import input_batch


def photo() -> Image.Image:
    """A photo-like test image: smooth gradients and a bright square, so windows differ."""
    rows, columns = np.mgrid[0:180, 0:240]
    red = (rows * 255 // 179).astype(np.uint8)
    green = (columns * 255 // 239).astype(np.uint8)
    blue = np.where((rows > 60) & (rows < 120) & (columns > 80) & (columns < 160), 250, 30)
    return Image.fromarray(np.stack([red, green, blue.astype(np.uint8)], axis=2))


def planted_norms(module: nn.Module) -> None:
    """Give every batch norm running statistics and an affine map that are not the identity."""
    generator = torch.Generator().manual_seed(7)
    for norm in module.modules():
        if isinstance(norm, nn.BatchNorm2d):
            size = norm.num_features
            norm.running_mean.copy_(torch.randn(size, generator=generator) * 0.3)
            norm.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
            norm.weight.data.copy_(torch.rand(size, generator=generator) + 0.5)
            norm.bias.data.copy_(torch.randn(size, generator=generator) * 0.2)


def tiny_model(module: nn.Module, input_size: tuple[int, int, int]) -> LoadedModel:
    """A hand-built network fed by images whose pixel values are its inputs, unscaled."""

    def transform(image: Image.Image) -> torch.Tensor:
        array = np.asarray(image, dtype=np.float32)
        return torch.from_numpy(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))

    return LoadedModel("tiny", module.eval(), transform, input_size, [], "file")


def hooked(
    model: LoadedModel, image: Image.Image, layer: str, node
) -> tuple[np.ndarray, np.ndarray]:
    """The conv layer's output and the chain node's map, recorded by the project's own hooks."""
    batch = input_batch(model, image)
    with torch.no_grad(), record_outputs(model.module, {layer}) as outputs:
        model.module(batch)
    maps = activation_maps(model.module, batch, node).maps
    return outputs[layer][0].numpy(), maps


def corners_and_centre(channels: int, height: int, width: int) -> list[tuple[int, int, int]]:
    return [
        (0, 0, 0),
        (channels - 1, 0, width - 1),
        (channels // 2, height - 1, 0),
        (1, height - 1, width - 1),
        (channels // 3, height // 2, width // 2),
    ]


def check_against_hooks(model: LoadedModel, layer: str, image: Image.Image) -> list:
    graph = build_graph(model.module, model.input_size)
    node = graph.node(graph.chain_node_of(layer))
    conv_output, maps = hooked(model, image, layer, node)
    steps = []
    for filter_, y, x in corners_and_centre(*conv_output.shape):
        step = convolution_step(model, image, layer, filter_, y, x, graph=graph)
        assert step.window.shape == step.kernel.shape
        assert step.pre_activation == conv_output[filter_, y, x]
        assert step.total == pytest.approx(conv_output[filter_, y, x], abs=1e-4)
        products = step.window.astype(np.float64) * step.kernel.astype(np.float64)
        assert step.channel_sums == pytest.approx(products.sum(axis=(1, 2)))
        assert step.activation == maps[filter_, y, x]
        if step.norm_scale is not None:
            expected = step.pre_activation * step.norm_scale + step.norm_shift
            assert step.normalised == pytest.approx(expected, abs=1e-4)
        steps.append(step)
    assert count_hooks(model.module) == 0
    return steps


@pytest.fixture(scope="module")
def alexnet() -> LoadedModel:
    return load_model("alexnet", device="cpu")


@pytest.fixture(scope="module")
def resnet18() -> LoadedModel:
    model = load_model("resnet18", device="cpu")
    planted_norms(model.module)
    return model


@pytest.fixture(scope="module")
def efficientnet() -> LoadedModel:
    return load_model("efficientnet_lite0", device="cpu")


def test_alexnet_first_layer_stride_4_reads_its_padding_as_zeros(alexnet):
    steps = check_against_hooks(alexnet, "features.0", photo())
    corner = steps[0]
    assert corner.window.shape == (3, 11, 11) and corner.stride == (4, 4)
    assert corner.origin == (-2, -2)  # padding 2
    assert not corner.window[:, :2, :].any() and not corner.window[:, :, :2].any()
    padding = np.zeros((11, 11), bool)
    padding[:2, :] = padding[:, :2] = True
    assert np.array_equal(corner.padding_mask, padding) and corner.input_size == (224, 224)
    assert corner.window[:, 2:, 2:].all()
    bottom_right = steps[3]
    assert bottom_right.origin == (54 * 4 - 2, 54 * 4 - 2)
    assert not bottom_right.window[:, -1, :].any()  # row 224: padding
    assert bottom_right.window[:, -2, :-1].all()
    assert corner.norm is None and corner.normalised == corner.pre_activation
    assert corner.activation_name == "ReLU"
    assert corner.activation == max(corner.pre_activation, 0.0)


def test_alexnet_window_is_the_preprocessed_image(alexnet):
    image = photo()
    step = convolution_step(alexnet, image, "features.0", 5, 10, 20)
    x = input_batch(alexnet, image)[0].numpy()
    rows, columns = 10 * 4 - 2, 20 * 4 - 2
    assert np.array_equal(step.window, x[:, rows : rows + 11, columns : columns + 11])


def test_resnet18_layer1_conv_with_padding_and_batch_norm(resnet18):
    steps = check_against_hooks(resnet18, "layer1.0.conv1", photo())
    corner = steps[0]
    assert corner.window.shape == (64, 3, 3) and corner.origin == (-1, -1)
    assert not corner.window[:, 0, :].any() and not corner.window[:, :, 0].any()
    assert corner.bias == 0.0  # ResNet's convolutions have no bias
    assert corner.norm == "BatchNorm2d" and corner.activation_name == "ReLU"
    assert any(step.normalised != pytest.approx(step.pre_activation) for step in steps)
    assert all(step.activation == max(step.normalised, 0.0) for step in steps)


def test_efficientnet_depthwise_conv_with_static_same_padding(efficientnet):
    layer = "_blocks.1._depthwise_conv"
    module = efficientnet.module.get_submodule(layer)
    assert isinstance(module.static_padding, nn.ZeroPad2d)
    assert module.groups == module.in_channels == module.out_channels
    steps = check_against_hooks(efficientnet, layer, photo())
    for step in steps:
        assert step.window.shape == (1, 3, 3)
        assert step.first_input_channel == step.filter  # depthwise: its own channel
        assert step.stride == (2, 2)
    corner, bottom_right = steps[0], steps[3]
    # TensorFlow's SAME at stride 2 on 112: no padding above or left, one row and column below
    assert corner.origin == (0, 0)
    assert bottom_right.origin == (110, 110)
    assert not bottom_right.window[0, 2, :].any() and not bottom_right.window[0, :, 2].any()
    assert bottom_right.padding_mask.tolist() == [[False, False, True]] * 2 + [[True] * 3]
    assert not corner.padding_mask.any()
    assert corner.norm == "BatchNorm2d" and corner.activation_name == "ReLU6"


def test_efficientnet_stem_and_a_node_without_activation(efficientnet):
    check_against_hooks(efficientnet, "_conv_stem", photo())
    steps = check_against_hooks(efficientnet, "_blocks.0._project_conv", photo())
    assert all(step.activation_name is None for step in steps)
    assert all(step.activation == step.normalised for step in steps)


def test_a_hand_computed_one_channel_convolution():
    conv = nn.Conv2d(1, 1, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]]]))
        conv.bias.fill_(0.5)
    model = tiny_model(nn.Sequential(conv, nn.ReLU()), (1, 4, 4))
    pixels = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]], np.uint8)
    image = Image.fromarray(pixels)
    corner = convolution_step(model, image, "0", 0, 0, 0)
    assert corner.window.tolist() == [[[0, 0, 0], [0, 1, 2], [0, 5, 6]]]
    # row by row: 0, then 1·0 + 2·(-2) = -4, then 5·0 + 6·(-1) = -6
    assert corner.channel_sums.tolist() == [-10.0]
    assert corner.bias == 0.5
    assert corner.pre_activation == -9.5
    assert corner.normalised == -9.5 and corner.norm is None
    assert corner.activation == 0.0 and corner.activation_name == "ReLU"
    right = convolution_step(model, image, "0", 0, 1, 3)
    # window rows 0-2, columns 2-4 (4 is padding): 3+2·7+11 = 28 on the left column, 0 on the right
    assert right.window.tolist() == [[[3, 4, 0], [7, 8, 0], [11, 12, 0]]]
    assert right.total == right.pre_activation == right.activation == 28.5


def test_a_dilated_strided_convolution_on_a_tiny_net():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=2, dilation=2)
    pixels = np.random.default_rng(1).integers(0, 255, (2, 9, 9)).astype(np.float32)
    # PIL has no 2-channel mode: the transform ignores the image and returns the planted pixels
    model = LoadedModel(
        "tiny",
        nn.Sequential(conv, nn.Tanh()).eval(),
        lambda _: torch.from_numpy(pixels),
        (2, 9, 9),
        [],
        "file",
    )
    image = Image.new("L", (9, 9))
    padded = F.pad(torch.from_numpy(pixels), (2, 2, 2, 2))
    with torch.no_grad():
        output = conv(torch.from_numpy(pixels)[None])[0]
    assert output.shape == (3, 5, 5)
    for filter_ in range(3):
        for y in range(5):
            for x in range(5):
                step = convolution_step(model, image, "0", filter_, y, x)
                expected = padded[:, 2 * y : 2 * y + 5 : 2, 2 * x : 2 * x + 5 : 2].numpy()
                assert np.array_equal(step.window, expected)
                assert step.dilation == (2, 2) and step.origin == (2 * y - 2, 2 * x - 2)
                assert step.pre_activation == pytest.approx(float(output[filter_, y, x]), abs=1e-4)
                assert step.activation == pytest.approx(np.tanh(step.pre_activation), abs=1e-6)


def test_a_grouped_convolution_reads_its_own_group_of_channels():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, groups=2), nn.BatchNorm2d(6), nn.ReLU())
    planted_norms(net)
    pixels = np.random.default_rng(2).integers(0, 255, (6, 6, 4), dtype=np.uint8)
    image = Image.fromarray(pixels, mode="RGBA")
    model = tiny_model(net, (4, 6, 6))
    x = model.transform(image)
    for filter_ in range(6):
        step = convolution_step(model, image, "0", filter_, 2, 3)
        group = filter_ // 3
        assert step.first_input_channel == 2 * group
        assert np.array_equal(step.window, x[2 * group : 2 * group + 2, 1:4, 2:5].numpy())
        assert np.array_equal(step.kernel, net[0].weight[filter_].detach().numpy())
        norm = net[1]
        scale = float(
            norm.weight[filter_].detach() / torch.sqrt(norm.running_var[filter_] + norm.eps)
        )
        assert step.norm_scale == pytest.approx(scale)
        assert step.normalised == pytest.approx(step.pre_activation * scale + step.norm_shift)
        assert step.activation == pytest.approx(max(step.normalised, 0.0))


@pytest.mark.parametrize(
    ("layer", "filter_", "at", "message"),
    [
        ("1", 0, (0, 0), r"1 is not a convolution \(activation layer\)"),
        ("nowhere", 0, (0, 0), "no layer 'nowhere'"),
        ("0", 2, (0, 0), "filters 0 to 1, not 2"),
        ("0", -1, (0, 0), "filters 0 to 1, not -1"),
        ("0", 0, (4, 0), r"output is 4×4: a position is 0 ≤ y < 4, 0 ≤ x < 4, not \(4, 0\)"),
        ("0", 0, (0, -1), r"not \(0, -1\)"),
    ],
)
def test_bad_layers_filters_and_positions_are_one_sentence(layer, filter_, at, message):
    model = tiny_model(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU()), (1, 4, 4))
    with pytest.raises(ExplainError, match=message):
        convolution_step(model, Image.new("L", (4, 4)), layer, filter_, *at)
    assert count_hooks(model.module) == 0


def test_hooks_are_removed_when_the_forward_pass_fails():
    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("broken on purpose")

    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), Broken(), nn.ReLU())
    model = tiny_model(net, (1, 4, 4))
    graph = build_graph(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU()), (1, 4, 4))
    with pytest.raises(RuntimeError, match="broken on purpose"):
        convolution_step(model, Image.new("L", (4, 4)), "0", 0, 0, 0, graph=graph)
    assert count_hooks(model.module) == 0


def test_a_conv_that_changes_its_weight_in_forward_is_refused():
    class Standardised(nn.Conv2d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            weight = (self.weight - self.weight.mean()) / (self.weight.std() + 1e-5)
            return F.conv2d(x, weight, self.bias, self.stride, self.padding)

    torch.manual_seed(0)
    model = tiny_model(nn.Sequential(Standardised(1, 2, 3, padding=1)), (1, 4, 4))
    image = Image.fromarray(np.arange(16, dtype=np.uint8).reshape(4, 4) * 10)
    with pytest.raises(ExplainError, match="more than padding and a convolution"):
        convolution_step(model, image, "0", 0, 1, 1)


# --- the command line ---------------------------------------------------------------------------

FASHION = ["--model", "fashion_basecnn", "--image", "fashion-mnist:test:0"]


def test_cli_explain_json_holds_every_step(capsys):
    args = ["explain", *FASHION, "--layer", "features.conv2_1", "--filter", "7", "--at", "0,13"]
    assert main([*args, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert {
        "model",
        "layer",
        "filter",
        "at",
        "window",
        "kernel",
        "channel_sums",
        "bias",
        "pre_activation",
        "norm",
        "normalised",
        "activation_name",
        "activation",
    } <= set(payload)
    assert payload["at"] == [0, 13] and payload["filter"] == 7
    window, kernel = np.array(payload["window"]), np.array(payload["kernel"])
    assert window.shape == kernel.shape == (32, 3, 3)
    assert not window[:, 0, :].any() and not window[:, :, 2].any()  # padding at the top right
    assert np.sum(window * kernel) + payload["bias"] == pytest.approx(
        payload["pre_activation"], abs=1e-4
    )
    assert payload["activation"] == pytest.approx(max(payload["pre_activation"], 0.0))
    model = load_model("fashion_basecnn", device="cpu")
    from convlens.data import load_image

    graph = build_graph(model.module, model.input_size)
    batch = input_batch(model, load_image("fashion-mnist:test:0").image)
    maps = activation_maps(model.module, batch, graph.node("features.conv2_1")).maps
    assert payload["activation"] == pytest.approx(float(maps[7, 0, 13]), abs=1e-6)
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "filter 7 at (y 0, x 13)" in text
    assert f"{payload['activation']:.4f}" in text.splitlines()[-1]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--layer", "features.relu2_1", "--filter", "0", "--at", "0,0"], "not a convolution"),
        (["--layer", "features.conv2_1", "--filter", "64", "--at", "0,0"], "filters 0 to 63"),
        (["--layer", "features.conv2_1", "--filter", "0", "--at", "14,0"], "output is 14×14"),
        (["--layer", "features.conv2_1", "--filter", "0", "--at", "3"], "--at: a position is Y,X"),
        (["--layer", "features.conv2_1", "--filter", "0", "--at", "a,b"], "--at: a position"),
    ],
)
def test_cli_explain_bad_input_exits_2_with_one_line(capsys, extra, message):
    assert main(["explain", *FASHION, *extra]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1 and message in captured.err


def test_a_map_click_that_is_not_a_position_is_ignored() -> None:
    from convlens.ui.explain import selected_position

    assert selected_position([{"y": 3, "x": 7.0}]) == "3,7"
    for crafted in (
        [],
        [{"y": "a", "x": 1}],
        [{"y": 1}],
        ["text"],
        [None],
        None,
        [{"y": 1e400, "x": 0}],
    ):
        assert selected_position(crafted) is None, crafted
