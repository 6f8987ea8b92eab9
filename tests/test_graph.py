"""The layer graph: layers and edges (fx and hooks agree), chain, groups, and receptive fields
checked by brute force: the gradient footprint of one output position on a linearised copy."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from convlens import models
from convlens.graph import build_graph, total_params
from convlens.hooks import call_id, layer_type, named_layers

NETS = ["alexnet", "vgg16", "resnet18", "efficientnet_lite0"]

# Leaf layer calls per network, counted by hand from the architectures:
#   alexnet: features 13 (5 conv, 5 relu, 3 maxpool) + avgpool + classifier 7
#            (dropout, linear, relu, dropout, linear, relu, linear) = 21
#   vgg16: features 31 (13 conv, 13 relu, 5 maxpool) + avgpool + classifier 7 = 39
#   resnet18: conv1, bn1, relu, maxpool (4) + 8 basic blocks x 6 calls (conv1, bn1, relu, conv2,
#             bn2, relu again) + 3 downsamples x 2 (conv, bn) + avgpool + fc = 4 + 48 + 6 + 2 = 60
#   efficientnet_lite0: stem conv, bn, relu6 (3) + block 0 without expansion, 5 calls (depthwise,
#             bn, relu6, project, bn) + 15 blocks x 8 (expand, bn, relu6, depthwise, bn, relu6,
#             project, bn) + head conv, bn, relu6 (3) + avgpool, dropout, fc (3) = 134
LAYER_CALLS = {"alexnet": 21, "vgg16": 39, "resnet18": 60, "efficientnet_lite0": 134}


@pytest.fixture(scope="module")
def zoo() -> dict[str, tuple[nn.Module, tuple[int, int, int]]]:
    """Untrained networks in eval mode with their input sizes, built lazily once per module."""

    class Lazy(dict):
        def __missing__(self, name: str):
            spec = models.model_spec(name)
            self[name] = (models.build_untrained(spec).eval(), spec.input_size)
            return self[name]

    return Lazy()


@pytest.fixture(scope="module")
def graphs(zoo):
    class Lazy(dict):
        def __missing__(self, name: str):
            model, size = zoo[name]
            self[name] = build_graph(model, size)
            return self[name]

    return Lazy()


def ids(graph) -> list[str]:
    return [layer.id for layer in graph.layers]


# --- layers and edges -------------------------------------------------------------------------


@pytest.mark.parametrize("name", NETS)
def test_one_layer_per_layer_call(name: str, zoo, graphs):
    model, size = zoo[name]
    graph = graphs[name]
    assert len(graph.layers) == LAYER_CALLS[name]
    # the same count from the calls a forward pass makes to the layer modules
    calls = []
    handles = [
        module.register_forward_hook(lambda *args, path=path: calls.append(path))
        for path, module in named_layers(model)
    ]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *size))
    finally:
        for handle in handles:
            handle.remove()
    assert len(calls) == len(graph.layers)
    assert [layer.path for layer in graph.layers] == calls
    assert len(set(ids(graph))) == len(graph.layers)
    assert total_params(graph) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", NETS)
def test_fx_and_hooks_give_the_same_graph(name: str, zoo, graphs):
    model, size = zoo[name]
    assert graphs[name].traced_with == "fx"
    fx = build_graph(model, size, method="fx")
    hooks = build_graph(model, size, method="hooks")
    assert (fx.traced_with, hooks.traced_with) == ("fx", "hooks")
    assert fx.layers == hooks.layers
    assert fx.edges == hooks.edges
    assert fx.chain == hooks.chain
    assert fx.groups == hooks.groups


@pytest.mark.parametrize("name", NETS)
def test_edges_form_a_dag_in_topological_order(name: str, graphs):
    graph = graphs[name]
    position = {identifier: index for index, identifier in enumerate(ids(graph))}
    assert len(set(graph.edges)) == len(graph.edges)
    for src, dst in graph.edges:
        assert position[src] < position[dst], (src, dst)
    # only the first layer reads the input; every other layer is fed by an earlier one
    fed = {dst for _, dst in graph.edges}
    assert set(ids(graph)) - fed == {graph.layers[0].id}


@pytest.mark.parametrize("name", ["alexnet", "vgg16"])
def test_a_plain_stack_is_a_path(name: str, graphs):
    graph = graphs[name]
    assert list(graph.edges) == list(zip(ids(graph), ids(graph)[1:], strict=False))


def test_resnet_blocks_merge_their_branches(graphs):
    graph = graphs["resnet18"]
    assert set(graph.predecessors("layer2.0.relu:2")) == {"layer2.0.downsample.1", "layer2.0.bn2"}
    assert graph.predecessors("layer2.0.downsample.0") == ["layer1.1.relu:2"]
    assert graph.predecessors("layer2.0.conv1") == ["layer1.1.relu:2"]
    # without downsample, the shortcut comes straight from the block's input
    assert set(graph.predecessors("layer1.0.relu:2")) == {"layer1.0.bn2", "maxpool"}
    assert graph.predecessors("layer1.0.relu") == ["layer1.0.bn1"]
    assert graph.predecessors("fc") == ["avgpool"]
    assert graph.layer("layer1.0.relu:2").path == "layer1.0.relu"


def test_efficientnet_skip_connections_are_edges(graphs):
    graph = graphs["efficientnet_lite0"]
    # block 2 repeats block 1 (stride 1, same width), so it adds its input to its output
    assert set(graph.predecessors("_blocks.3._expand_conv")) == {"_blocks.1._bn2", "_blocks.2._bn2"}
    # block 1 changes width and stride: no skip
    assert graph.predecessors("_blocks.2._expand_conv") == ["_blocks.1._bn2"]
    assert graph.predecessors("_swish:2") == ["_bn1"]


# --- layer attributes, chain and groups -------------------------------------------------------


def test_vgg16_layer_attributes(graphs):
    first = graphs["vgg16"].layer("features.0")
    assert (first.type, first.class_name) == ("conv", "Conv2d")
    assert first.output_shape == (64, 224, 224)
    assert first.params == 3 * 64 * 3 * 3 + 64
    assert (first.kernel, first.stride, first.padding) == ((3, 3), (1, 1), (1, 1))
    assert (first.receptive_field, first.jump) == (3, 1)
    assert graphs["vgg16"].layer("features.4").output_shape == (64, 112, 112)
    classifier = graphs["vgg16"].layer("classifier.6")
    assert classifier.output_shape == (1000,)
    assert classifier.receptive_field is None
    assert classifier.sees_whole_image


def test_vgg16_chain_merges_activations_into_their_layers(graphs):
    graph = graphs["vgg16"]
    first = graph.chain[0]
    assert first.id == "features.0"
    assert first.layers == ("features.0", "features.1")
    assert first.activation_layer == "features.1"
    assert graph.layer("features.1").chain_node == "features.0"
    # linear, ReLU, dropout: the node's activation is the ReLU's, not the dropout's
    head = graph.node("classifier.0")
    assert head.layers == ("classifier.0", "classifier.1", "classifier.2")
    assert head.activation_layer == "classifier.1"
    # 13 convolutions, 5 max pools, the adaptive pool and 3 linear layers
    assert len(graph.chain) == 22
    chain_ids = [node.id for node in graph.chain]
    assert list(graph.chain_edges) == list(zip(chain_ids, chain_ids[1:], strict=False))
    members = [member for node in graph.chain for member in node.layers]
    assert members == ids(graph)


def test_resnet_chain_keeps_the_merge_as_its_own_node(graphs):
    graph = graphs["resnet18"]
    node = graph.node("layer1.0.conv1")
    assert node.layers == ("layer1.0.conv1", "layer1.0.bn1", "layer1.0.relu")
    assert node.activation_layer == "layer1.0.relu"
    # the ReLU after the residual sum has two inputs, so it starts a node
    assert graph.layer("layer1.0.relu:2").chain_node == "layer1.0.relu:2"
    assert ("layer1.0.conv2", "layer1.0.relu:2") in graph.chain_edges
    assert ("maxpool", "layer1.0.relu:2") in graph.chain_edges


@pytest.mark.parametrize("name", NETS)
def test_groups_split_the_chain_in_order(name: str, graphs):
    graph = graphs[name]
    in_groups = [node for group in graph.groups for node in group.nodes]
    assert in_groups == [node.id for node in graph.chain]
    assert [group.id for group in graph.groups] == [f"g{i}" for i in range(len(graph.groups))]
    for group in graph.groups:
        assert group.label.startswith(f"{group.id} · ")
        assert all(graph.node(node).group == group.id for node in group.nodes)


def test_vgg16_groups_end_at_max_pools(graphs):
    graph = graphs["vgg16"]
    assert len(graph.groups) == 6
    for group in graph.groups[:5]:
        assert graph.layer(group.nodes[-1]).class_name == "MaxPool2d", group
        pools = [node for node in group.nodes if graph.layer(node).class_name == "MaxPool2d"]
        assert pools == [group.nodes[-1]]
    assert graph.groups[5].nodes[0] == "avgpool"


def test_resnet18_groups_are_its_stages(graphs):
    graph = graphs["resnet18"]
    labels = [group.label for group in graph.groups]
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        assert sum(stage in label for label in labels) == 1, labels
    stage_two = next(group for group in graph.groups if "layer2" in group.label)
    assert stage_two.nodes[0] == "layer2.0.conv1"
    assert all(node.startswith("layer2.") for node in stage_two.nodes)


# --- receptive fields by brute force ----------------------------------------------------------


def linearised(model: nn.Module) -> nn.Module:
    """A copy in which every output is a positive combination of the inputs it depends on.

    Activations become identities, max pools average pools (a max passes the gradient of one
    input only), weights positive, biases zero, batch norms identities. Module paths are kept.
    Weights are 1 / input channels, so that gradients stay near 1 across depth.
    """
    copied = copy.deepcopy(model).eval()
    for path, module in list(copied.named_modules()):
        if not path:
            continue
        parent_path, _, attribute = path.rpartition(".")
        parent = copied.get_submodule(parent_path)
        if layer_type(module) == "activation":
            setattr(parent, attribute, nn.Identity())
        elif isinstance(module, nn.MaxPool2d):
            pool = nn.AvgPool2d(module.kernel_size, module.stride, module.padding, module.ceil_mode)
            setattr(parent, attribute, pool)
    with torch.no_grad():
        for module in copied.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.weight.fill_(1.0 / module.weight.shape[1])
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.fill_(1.0)
                module.bias.zero_()
                module.running_mean.zero_()
                module.running_var.fill_(1.0)
    return copied


def footprint(gradient: torch.Tensor) -> tuple[int, int, int, int]:
    """The bounding box (top, bottom, left, right) of the pixels with a non-zero gradient."""
    rows, cols = (gradient[0].abs().sum(dim=0) != 0).nonzero(as_tuple=True)
    return int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())


def measure_fields(
    model: nn.Module, paths: list[str], layer_ids: list[str], size: int, channels: int = 3
) -> dict[str, tuple[int, int, int, int]]:
    """Measure (field height, field width, jump down, jump right) of each layer call by brute force.

    One forward pass of the linearised copy on a size x size input records the outputs of the
    layer calls (counted per module path as in `convlens.hooks`, but without its code); then
    the gradient of all channels at a central position and at the next one down and right.
    """
    copied = linearised(model)
    outputs: dict[str, torch.Tensor] = {}
    calls: dict[str, int] = {}

    def hook_for(path: str):
        def hook(module, inputs, output):
            calls[path] = calls.get(path, 0) + 1
            outputs[call_id(path, calls[path])] = output

        return hook

    handles = [copied.get_submodule(path).register_forward_hook(hook_for(path)) for path in paths]
    x = torch.zeros(1, channels, size, size, requires_grad=True)
    try:
        copied(x)
    finally:
        for handle in handles:
            handle.remove()
    fields = {}
    for identifier in layer_ids:
        out = outputs[identifier]
        centre = out.shape[-1] // 2 - 1
        here = footprint(
            torch.autograd.grad(out[0, :, centre, centre].sum(), x, retain_graph=True)[0]
        )
        there = footprint(
            torch.autograd.grad(out[0, :, centre + 1, centre + 1].sum(), x, retain_graph=True)[0]
        )
        # a box that touches the border may be cut: the input is too small to measure it
        for top, bottom, left, right in (here, there):
            assert min(top, left) > 0 and max(bottom, right) < size - 1, identifier
        height, width = here[1] - here[0] + 1, here[3] - here[2] + 1
        assert (there[1] - there[0] + 1, there[3] - there[2] + 1) == (height, width)
        fields[identifier] = (height, width, there[0] - here[0], there[2] - here[2])
    return fields


# layers spread over depth, ending at the deepest layer before the adaptive pooling
FIELD_LAYERS = {
    "alexnet": [
        "features.0",
        "features.2",
        "features.3",
        "features.5",
        "features.8",
        "features.12",
    ],
    "vgg16": [
        "features.0",
        "features.4",
        "features.7",
        "features.14",
        "features.21",
        "features.28",
        "features.30",
    ],
    "resnet18": [
        "conv1",
        "maxpool",
        "layer1.0.relu:2",
        "layer2.0.downsample.0",
        "layer2.0.relu:2",
        "layer3.1.conv2",
        "layer4.0.downsample.1",
        "layer4.1.relu:2",
    ],
    "efficientnet_lite0": [
        "_conv_stem",
        "_blocks.1._depthwise_conv",
        "_blocks.4._project_conv",
        "_blocks.6._bn2",
        "_blocks.10._expand_conv",
        "_blocks.14._depthwise_conv",
        "_conv_head",
        "_swish:2",
    ],
}


@pytest.mark.parametrize(
    "name",
    [
        "alexnet",
        "vgg16",
        "resnet18",
        pytest.param("efficientnet_lite0", marks=pytest.mark.slow),
    ],
)
def test_receptive_fields_match_brute_force(name: str, zoo, graphs):
    model, _ = zoo[name]
    graph = graphs[name]
    chosen = FIELD_LAYERS[name]
    spatial = []
    for layer in graph.layers:
        if layer.class_name.startswith("Adaptive"):
            break
        spatial.append(layer.id)
    assert chosen[-1] == spatial[-1], "the deepest spatial layer is tested"
    assert set(chosen) <= set(spatial)
    expected = {
        identifier: (
            graph.layer(identifier).receptive_field,
            graph.layer(identifier).receptive_field,
            graph.layer(identifier).jump,
            graph.layer(identifier).jump,
        )
        for identifier in chosen
    }
    field = max(values[0] for values in expected.values())
    jump = max(values[2] for values in expected.values())
    size = 32 * math.ceil((field + 2 * jump + 32) / 32)  # room for both boxes and a margin
    paths = sorted({graph.layer(identifier).path for identifier in chosen})
    assert measure_fields(model, paths, chosen, size) == expected


# Conv 3x3 s1 -> Conv 3x3 s2 -> MaxPool 2 -> Conv 3x3 dilation 2. A layer adds
# (span - 1) x (jump of its input) to the field, span = dilation x (kernel - 1) + 1, and
# multiplies the jump by its stride:
#   conv1: 1 + (3 - 1) x 1 = 3, jump 1
#   conv2: 3 + (3 - 1) x 1 = 5, jump 1 x 2 = 2
#   pool:  5 + (2 - 1) x 2 = 7, jump 2 x 2 = 4
#   conv3: span 2 x (3 - 1) + 1 = 5, so 7 + (5 - 1) x 4 = 23, jump 4
TINY_FIELDS = {"conv1": (3, 1), "conv2": (5, 2), "pool": (7, 4), "conv3": (23, 4)}


class TinyStack(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(4, 4, 3, dilation=2, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.pool(self.conv2(self.conv1(x))))


def test_tiny_stack_fields_by_hand_and_by_brute_force():
    model = TinyStack().eval()
    graph = build_graph(model, (3, 32, 32))
    assert ids(graph) == list(TINY_FIELDS)
    assert {layer.id: (layer.receptive_field, layer.jump) for layer in graph.layers} == TINY_FIELDS
    assert graph.layer("conv3").output_shape == (4, 8, 8)
    measured = measure_fields(model, list(TINY_FIELDS), list(TINY_FIELDS), 64)
    assert measured == {key: (rf, rf, jump, jump) for key, (rf, jump) in TINY_FIELDS.items()}


class Branchy(nn.Module):
    """A stem feeding two branches that are added, then concatenated with the stem's output."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.left = nn.Conv2d(4, 4, 3, padding=1)
        self.right = nn.Conv2d(4, 4, 5, padding=2)
        self.mix = nn.Conv2d(8, 4, 1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)

    def body(self, h: torch.Tensor) -> torch.Tensor:
        y = self.left(h) + self.right(h)
        z = self.relu(self.mix(torch.cat([y, h], dim=1)))
        return self.fc(torch.flatten(self.pool(z), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.stem(x))


class BranchyWithControlFlow(Branchy):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent: fx cannot trace this; the graph's input is zeros
            return self.fc(torch.zeros(x.shape[0], 4))
        return self.body(self.stem(x))


BRANCHY_EDGES = {
    ("stem", "left"),
    ("stem", "right"),
    ("left", "mix"),
    ("right", "mix"),
    ("stem", "mix"),
    ("mix", "relu"),
    ("relu", "pool"),
    ("pool", "fc"),
}


def test_functional_add_and_cat_become_edges():
    model = Branchy().eval()
    fx = build_graph(model, (3, 16, 16))
    hooks = build_graph(model, (3, 16, 16), method="hooks")
    assert fx.traced_with == "fx"
    assert set(fx.edges) == BRANCHY_EDGES
    assert fx.edges == hooks.edges
    assert fx.layers == hooks.layers
    # stem 3, left 3 + 2 = 5, right 3 + 4 = 7: the mix sees the widest branch
    assert [fx.layer(i).receptive_field for i in ("stem", "left", "right", "mix")] == [3, 5, 7, 7]
    assert fx.layer("mix").output_shape == (4, 16, 16)
    assert fx.layer("fc").receptive_field is None
    assert fx.layer("fc").sees_whole_image
    measured = measure_fields(model, ["stem", "left", "right", "mix"], ["mix"], 32)
    assert measured == {"mix": (7, 7, 1, 1)}


def test_data_dependent_control_flow_falls_back_to_hooks():
    model = BranchyWithControlFlow().eval()
    with pytest.raises(torch.fx.proxy.TraceError):
        build_graph(model, (3, 16, 16), method="fx")
    graph = build_graph(model, (3, 16, 16), method="auto")
    assert graph.traced_with == "hooks"
    assert set(graph.edges) == BRANCHY_EDGES
    assert ids(graph) == ["stem", "left", "right", "mix", "relu", "pool", "fc"]
    assert graph.layer("mix").receptive_field == 7


def test_flattened_channels_names_the_channels_a_linear_layer_reads():
    from convlens.smallnets import build_small

    graph = build_graph(build_small("deepeyes", conv2=6), (1, 28, 28))
    assert graph.flattened_channels("classifier.fc1") == 6  # reads pool2's (6, 4, 4), flattened
    assert graph.flattened_channels("classifier.fc2") is None  # reads fc1's units
    assert graph.flattened_channels("features.conv2") is None
    assert (
        build_graph(
            models.build_untrained(models.model_spec("alexnet")), (3, 224, 224)
        ).flattened_channels("classifier.1")
        == 256
    )  # through a dropout
    vgg = build_graph(models.build_untrained(models.model_spec("vgg11")), (3, 224, 224))
    assert vgg.flattened_channels("classifier.0") == 512  # torch.flatten leaves no layer
    assert vgg.flattened_channels("classifier.3") is None


# --- receptive-field boxes by brute force -------------------------------------------------------


class Padded(nn.Module):
    """Every way of padding a window: asymmetric pad layer, "same" with an even kernel, "valid",
    a padded max pool in ceil mode, and EfficientNet's static and dynamic same padding."""

    def __init__(self) -> None:
        super().__init__()
        from efficientnet_lite_pytorch.utils import (
            Conv2dDynamicSamePadding,
            Conv2dStaticSamePadding,
        )

        self.pad = nn.ZeroPad2d((2, 0, 1, 3))  # left, right, top, bottom
        self.same = nn.Conv2d(3, 4, 4, padding="same")
        self.valid = nn.Conv2d(4, 4, 3, padding="valid")
        self.pool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.static = Conv2dStaticSamePadding(4, 4, 3, stride=2, image_size=14)
        self.dynamic = Conv2dDynamicSamePadding(4, 4, 4, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.valid(self.same(self.pad(x))))
        return self.dynamic(self.static(x))


def brute_force_box(
    copied: nn.Module, path: str, call: int, size: tuple[int, int, int], y: int, x: int
) -> tuple[int, int, int, int] | None:
    """The (x0, y0, x1, y1) box of input pixels on which output (y, x) of a layer call depends,
    measured as the non-zero gradient of a linearised copy (see `linearised`); None when the
    position sees padding only."""
    outputs: list[torch.Tensor] = []
    handle = copied.get_submodule(path).register_forward_hook(
        lambda module, inputs, output: outputs.append(output)
    )
    image = torch.zeros(1, *size, requires_grad=True)
    try:
        copied(image)
    finally:
        handle.remove()
    gradient = torch.autograd.grad(outputs[call - 1][0, :, y, x].sum(), image)[0]
    if not gradient.any():
        return None
    top, bottom, left, right = footprint(gradient)
    return (left, top, right + 1, bottom + 1)


BOX_CASES = [
    ("tiny", lambda: TinyStack(), (3, 32, 32), ["conv1", "conv2", "pool", "conv3"]),
    ("branchy", lambda: Branchy(), (3, 16, 16), ["stem", "right", "mix", "relu"]),
    ("padded", lambda: Padded(), (3, 21, 23), ["same", "valid", "pool", "static", "dynamic"]),
    (
        "alexnet",
        lambda: models.build_untrained(models.model_spec("alexnet")),
        (3, 96, 96),
        ["features.0", "features.2", "features.6", "features.12"],
    ),
    (
        "resnet18",
        lambda: models.build_untrained(models.model_spec("resnet18")),
        (3, 64, 64),
        ["maxpool", "layer1.0.relu:2", "layer2.0.relu:2", "layer3.0.downsample.0"],
    ),
]


@pytest.mark.parametrize("case", BOX_CASES, ids=[case[0] for case in BOX_CASES])
def test_receptive_field_boxes_match_brute_force(case):
    _, build, size, layer_ids = case
    model = build().eval()
    graph = build_graph(model, size)
    copied = linearised(model)
    seen = 0
    for identifier in layer_ids:
        path, _, call = identifier.partition(":")
        _, height, width = graph.layer(identifier).output_shape
        # the corners (clipped fields), the centre and a position next to it
        for y, x in ((0, 0), (height - 1, width - 1), (0, width - 1), (height // 2, width // 2)):
            x0, y0, x1, y1 = graph.receptive_field_box(identifier, y, x)
            measured = brute_force_box(copied, path, int(call or 1), size, y, x)
            if measured is None:  # a position that sees padding only has an empty box
                assert x0 == x1 or y0 == y1, (identifier, y, x)
            else:
                assert (x0, y0, x1, y1) == measured, (identifier, y, x)
            seen += measured is not None
    assert seen >= 3 * len(layer_ids)


def test_field_geometry_by_hand():
    graph = build_graph(TinyStack().eval(), (3, 32, 32))
    # conv1 pads 1: field of (0, 0) starts at -1; conv2 pads 1 at jump 1: -2; the pool adds
    # nothing; conv3 pads 2 at jump 4: -2 - 8 = -10
    assert [graph.layer(i).field_geometry.top for i in TINY_FIELDS] == [-1, -2, -2, -10]
    assert graph.receptive_field_box("conv3", 3, 4) == (-10 + 16, -10 + 12, 6 + 23, 2 + 23)
    assert graph.receptive_field_box("conv3", 0, 0) == (0, 0, 13, 13)
    linear = build_graph(Branchy().eval(), (3, 16, 16))
    assert linear.receptive_field_box("fc", 0, 0) == (0, 0, 16, 16)


def test_a_conv_that_pads_through_a_child_shows_that_padding(graphs):
    """EfficientNet's static same padding: the conv's own padding is 0, its ZeroPad2d child pads
    (left, right, top, bottom); TensorFlow's SAME puts the odd row below, the odd column right."""
    layers = {layer.id: layer for layer in graphs["efficientnet_lite0"].layers}
    stem = layers["_conv_stem"]  # 3x3, stride 2 on 224: one row and column more is needed
    assert stem.kernel == (3, 3) and stem.stride == (2, 2)
    assert stem.padding == "0 top, 1 bottom, 0 left, 1 right"
    assert layers["_blocks.0._depthwise_conv"].padding == (1, 1)  # 3x3, stride 1: both sides
    assert layers["_blocks.0._project_conv"].padding == (0, 0)  # 1x1: an Identity child

    class PaddedConv(nn.Conv2d):
        def __init__(self) -> None:
            super().__init__(1, 1, 3, padding=1)
            self.pad = nn.ZeroPad2d((2, 2, 0, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(self.pad(x))

    net = nn.Sequential(PaddedConv())
    (layer,) = build_graph(net, (1, 8, 8)).layers
    assert layer.padding == "1 top, 2 bottom, 3 left, 3 right"  # the child's and its own


def test_tracing_leaves_other_threads_forward_passes_alone():
    """torch.fx patches nn.Module for every thread while it traces: a page's forward pass (with
    hooks, as the views run them) beside the first start's preparation must neither fail nor be
    traced, and two traces at once must not leave nn.Module patched."""
    import threading

    from convlens.hooks import record_outputs

    traced = models.build_untrained(models.model_spec("resnet18"))
    expected = build_graph(traced, (3, 64, 64), method="fx")
    original_call = nn.Module.__call__
    errors: list[BaseException] = []
    stop = threading.Event()

    def page_work() -> None:
        # each page its own model: hooks on a shared model are the per-model lock's business
        running = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3)).eval()
        x = torch.randn(1, 3, 16, 16)
        reference = running(x)
        try:
            while not stop.is_set():
                with torch.no_grad(), record_outputs(running, {"0"}) as outputs:
                    assert torch.equal(running(x), reference)
                assert outputs["0"].shape == (1, 4, 14, 14)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    def tracing() -> None:
        try:
            for _ in range(3):
                graph = build_graph(traced, (3, 64, 64), method="fx")
                assert [layer.id for layer in graph.layers] == [
                    layer.id for layer in expected.layers
                ]
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    workers = [threading.Thread(target=page_work) for _ in range(2)]
    tracers = [threading.Thread(target=tracing) for _ in range(2)]
    for thread in workers + tracers:
        thread.start()
    for thread in tracers:
        thread.join()
    stop.set()
    for thread in workers:
        thread.join()
    assert not errors, errors
    assert nn.Module.__call__ is original_call
