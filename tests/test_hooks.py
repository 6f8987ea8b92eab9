"""Layer hooks and call ids: what they record (also through in-place ReLUs and reused modules), and that they
leave no hook and no changed flag behind, also after an error."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from convlens import models
from convlens.graph import build_graph
from convlens.hooks import (
    call_id,
    count_hooks,
    hooked_calls,
    layer_type,
    named_layers,
    parse_call_id,
    record_outputs,
)

# small inputs each net accepts: AlexNet's stem needs at least 63 pixels
INPUT_SIZES = {
    "alexnet": (3, 64, 64),
    "vgg11": (3, 32, 32),
    "resnet18": (3, 64, 64),
    "efficientnet_lite0": (3, 64, 64),
}
LAST_LAYER = {
    "alexnet": "classifier.6",
    "vgg11": "classifier.6",
    "resnet18": "fc",
    "efficientnet_lite0": "_fc",
}
NETS = list(INPUT_SIZES)


@pytest.fixture(scope="module")
def nets() -> dict[str, nn.Module]:
    """Untrained networks in eval mode, built once for the module; tests restore what they change."""
    return {name: models.build_untrained(models.model_spec(name)).eval() for name in INPUT_SIZES}


def example(name: str, batch: int = 2, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *INPUT_SIZES[name], generator=generator)


@pytest.mark.parametrize("name", NETS)
def test_last_recorded_output_is_the_model_output(name: str, nets):
    model = nets[name]
    x = example(name)
    with torch.no_grad(), record_outputs(model) as outputs:
        logits = model(x)
    assert list(outputs)[-1] == LAST_LAYER[name]
    assert torch.equal(outputs[LAST_LAYER[name]], logits)
    # one entry per layer call: every layer module is called at least once by these nets
    paths = {parse_call_id(identifier)[0] for identifier in outputs}
    assert paths == {path for path, _ in named_layers(model)}


def test_outputs_are_detached_unless_asked(nets):
    model = nets["resnet18"]
    x = example("resnet18")
    with record_outputs(model) as detached:
        model(x)
    with record_outputs(model, detach=False) as attached:
        model(x)
    assert not detached["fc"].requires_grad
    assert attached["fc"].requires_grad
    assert torch.equal(detached["fc"], attached["fc"].detach())


# (net, a layer whose output an in-place ReLU (or `+=`) overwrites, the id of its input, the ReLU)
IN_PLACE_CASES = [
    ("alexnet", "features.0", "input", "features.1"),
    ("alexnet", "features.3", "features.2", "features.4"),
    ("alexnet", "classifier.1", "classifier.0", "classifier.2"),
    ("vgg11", "features.0", "input", "features.1"),
    ("vgg11", "features.8", "features.7", "features.9"),
    ("resnet18", "bn1", "conv1", "relu"),
    ("resnet18", "layer1.0.bn1", "layer1.0.conv1", "layer1.0.relu"),
    # bn2's output is first changed by `out += identity`, then by the ReLU
    ("resnet18", "layer2.1.bn2", "layer2.1.conv2", "layer2.1.relu"),
]


@pytest.mark.parametrize(("name", "layer", "source", "relu"), IN_PLACE_CASES)
def test_outputs_survive_in_place_activations(name, layer, source, relu, nets):
    model = nets[name]
    assert model.get_submodule(relu).inplace, "the case needs an in-place ReLU"
    x = example(name)
    with torch.no_grad(), record_outputs(model) as outputs:
        model(x)
    recorded = outputs[layer]
    assert (recorded < 0).any(), "a clone taken before the ReLU keeps negative values"
    layer_input = x if source == "input" else outputs[source]
    with torch.no_grad():
        recomputed = model.get_submodule(layer)(layer_input)
    torch.testing.assert_close(recorded, recomputed)


def test_a_hook_without_clone_would_see_the_relu(nets):
    # guards the test above: the net really overwrites the conv output in place
    model = nets["alexnet"]
    seen = {}
    handle = model.features[0].register_forward_hook(
        lambda module, inputs, output: seen.setdefault("out", output)
    )
    try:
        with torch.no_grad():
            model(example("alexnet"))
    finally:
        handle.remove()
    assert (seen["out"] >= 0).all()


def test_a_reused_module_gets_one_id_per_call(nets):
    model = nets["resnet18"]
    x = example("resnet18")
    with torch.no_grad(), record_outputs(model) as outputs:
        model(x)
    assert {"layer1.0.relu", "layer1.0.relu:2"} <= set(outputs)
    assert "layer1.0.relu:3" not in outputs
    relu = torch.relu
    torch.testing.assert_close(outputs["layer1.0.relu"], relu(outputs["layer1.0.bn1"]))
    # the second call is the block's output: ReLU of the residual sum
    torch.testing.assert_close(
        outputs["layer1.0.relu:2"], relu(outputs["layer1.0.bn2"] + outputs["maxpool"])
    )
    torch.testing.assert_close(
        outputs["layer2.0.relu:2"],
        relu(outputs["layer2.0.bn2"] + outputs["layer2.0.downsample.1"]),
    )


def test_ids_restart_with_every_forward_pass(nets):
    model = nets["resnet18"]
    with torch.no_grad(), record_outputs(model) as outputs:
        model(example("resnet18", seed=1))
        second = model(example("resnet18", seed=2))
    assert "layer1.0.relu:3" not in outputs
    assert sum(1 for identifier in outputs if identifier.startswith("relu")) == 1
    assert torch.equal(outputs["fc"], second)


def test_only_the_asked_layers_are_recorded(nets):
    model = nets["resnet18"]
    wanted = {"conv1", "layer1.0.relu:2", "layer4.1.bn2"}
    with torch.no_grad(), record_outputs(model, layer_ids=wanted) as outputs:
        model(example("resnet18"))
    assert set(outputs) == wanted


def test_layers_are_not_split_into_their_children(nets):
    # EfficientNet's same-padding convolution pads through a child: it is still one layer
    layers = dict(named_layers(nets["efficientnet_lite0"]))
    assert "_conv_stem" in layers
    assert not any("static_padding" in path for path in layers)
    assert layer_type(layers["_conv_stem"]) == "conv"
    assert layer_type(layers["_swish"]) == "activation"
    assert layer_type(nets["resnet18"].maxpool) == "pool"
    assert layer_type(nets["vgg11"].classifier[2]) == "dropout"


@pytest.mark.parametrize("name", NETS)
def test_no_hooks_are_left_after_the_block(name: str, nets):
    model = nets[name]
    assert count_hooks(model) == 0
    with torch.no_grad(), record_outputs(model):
        # the count is able to see hooks: one per layer and one for the pass
        assert count_hooks(model) == len(list(named_layers(model))) + 1
        model(example(name))
    assert count_hooks(model) == 0


@pytest.mark.parametrize("name", NETS)
def test_no_hooks_are_left_after_an_error(name: str, nets):
    model = nets[name]
    wrong = torch.zeros(1, 5, *INPUT_SIZES[name][1:])
    with pytest.raises(RuntimeError), torch.no_grad(), record_outputs(model) as outputs:
        model(wrong)
    assert outputs == {}
    assert count_hooks(model) == 0


@pytest.mark.parametrize("method", ["fx", "hooks", "auto"])
@pytest.mark.parametrize("name", NETS)
def test_build_graph_leaves_no_hooks_and_keeps_the_training_flags(name, method, nets):
    model = nets[name]
    state = {key: value.clone() for key, value in model.state_dict().items()}
    try:
        model.train()
        build_graph(model, INPUT_SIZES[name], method=method)
        assert count_hooks(model) == 0
        assert all(module.training for module in model.modules())
        # the graph's forward pass ran in eval mode: running statistics are untouched
        for key, value in model.state_dict().items():
            assert torch.equal(value, state[key]), key

        # a common fine-tuning set-up: training, with frozen batch norms
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        flags = {path: module.training for path, module in model.named_modules()}
        build_graph(model, INPUT_SIZES[name], method=method)
        assert count_hooks(model) == 0
        assert {path: module.training for path, module in model.named_modules()} == flags

        model.eval()
        build_graph(model, INPUT_SIZES[name], method=method)
        assert count_hooks(model) == 0
        assert not any(module.training for module in model.modules())
    finally:
        model.eval()


@pytest.mark.parametrize("method", ["fx", "hooks"])
def test_build_graph_leaves_no_hooks_after_an_error(method: str, nets):
    model = nets["resnet18"]
    model.train()
    try:
        with pytest.raises(RuntimeError):
            build_graph(model, (5, 64, 64), method=method)
        assert count_hooks(model) == 0
        assert model.training
    finally:
        model.eval()


# --------------------------------------------------------------------------------------------
# Call ids and the hook primitive


@pytest.mark.parametrize("path", ["relu", "layer1.0.relu", "features.0", ""])
@pytest.mark.parametrize("call", [1, 2, 3, 12])
def test_a_call_id_parses_back_to_its_path_and_call(path: str, call: int):
    assert parse_call_id(call_id(path, call)) == (path, call)


def test_every_call_id_of_a_graph_round_trips(nets):
    graph = build_graph(nets["resnet18"], INPUT_SIZES["resnet18"])
    reused = {layer.id for layer in graph.layers if parse_call_id(layer.id)[1] > 1}
    assert "layer1.0.relu:2" in reused
    for layer in graph.layers:
        assert call_id(*parse_call_id(layer.id)) == layer.id


@pytest.mark.parametrize(
    "bad", ["relu:", "relu:x", "relu:0", "relu:1", "relu:02", "relu:-2", "a:2b"]
)
def test_a_malformed_call_id_is_refused(bad: str):
    with pytest.raises(ValueError, match="not a layer call id"):
        parse_call_id(bad)


class TwiceReLU(nn.Module):
    """One ReLU module called twice per forward pass, around a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.fc(self.relu(x)))


def test_hooked_calls_number_the_calls_of_a_module_used_twice():
    model = TwiceReLU()
    seen: list[str] = []
    with (
        torch.no_grad(),
        hooked_calls(model, lambda layer_id, module, output: seen.append(layer_id)),
    ):
        model(torch.randn(2, 3))
        model(torch.randn(2, 3))
    assert seen == ["relu", "fc", "relu:2"] * 2, "numbered from 1 again in every pass"


def test_hooked_calls_only_the_asked_calls_and_replace_their_outputs():
    model = TwiceReLU()
    seen: list[tuple[str, nn.Module]] = []

    def negate(layer_id: str, module: nn.Module, output: object) -> torch.Tensor:
        seen.append((layer_id, module))
        return -output

    x = torch.randn(2, 3)
    with torch.no_grad():
        expected = -model(x)
        with hooked_calls(model, negate, {"relu:2"}):
            assert count_hooks(model) == 2, "the pass and the one module asked for"
            replaced = model(x)
    assert seen == [("relu:2", model.relu)]
    torch.testing.assert_close(replaced, expected)
    assert count_hooks(model) == 0


def test_hooked_calls_leave_no_hook_after_an_error():
    model = TwiceReLU()

    def fail(layer_id: str, module: nn.Module, output: object) -> None:
        raise KeyError(layer_id)

    with pytest.raises(KeyError, match="fc"), hooked_calls(model, fail, {"fc"}):
        model(torch.randn(2, 3))
    assert count_hooks(model) == 0
    with pytest.raises(RuntimeError), hooked_calls(model, lambda *call: None):
        model(torch.randn(2, 5))
    assert count_hooks(model) == 0
    with (
        pytest.raises(ValueError, match="before_call"),
        hooked_calls(model, lambda *call: None, {"fc"}, before_call=lambda *call: None),
    ):
        pass
    with pytest.raises(AttributeError), hooked_calls(model, print, {"relu", "missing:2"}):
        pass
    assert count_hooks(model) == 0


def test_hooked_calls_run_before_each_call_when_asked():
    model = TwiceReLU()
    order: list[str] = []
    with (
        torch.no_grad(),
        hooked_calls(
            model,
            lambda layer_id, module, output: order.append(f"after {layer_id}"),
            before_call=lambda module, inputs: order.append(f"before {type(module).__name__}"),
        ),
    ):
        model(torch.randn(2, 3))
    assert order == [
        "before ReLU",
        "after relu",
        "before Linear",
        "after fc",
        "before ReLU",
        "after relu:2",
    ]


def test_hooked_calls_leave_other_threads_forward_passes_alone():
    model = TwiceReLU()
    seen: list[str] = []
    with (
        torch.no_grad(),
        hooked_calls(model, lambda layer_id, module, output: seen.append(layer_id)),
    ):
        other = threading.Thread(target=model, args=(torch.randn(2, 3),))
        other.start()
        other.join()
        assert seen == [], "another session's pass is not counted"
        model(torch.randn(2, 3))
    assert seen == ["relu", "fc", "relu:2"]
