"""The ablation check on a hand-weighted net whose accuracy before and after is known exactly.

The net reads a 2x2 grey image. Conv filter 0 takes the mean brightness m; filter 1 gives 0 and
the batch norm after it adds 0.5, so only zeroing after the activation removes it. The linear
layer scores "dark" 0.01 + (filter 1) and "bright" m. On the ImageFolder below (folders sorted
bright, dark: the opposite of the model's class order) that gives:

    image (value, label)  255 B  255 B  50 B  0 D  0 D  200 D   accuracy
    nothing zeroed          B      B     D     D    D    B       4/6
    conv filter 1           B      B     B     D    D    B       5/6
    fc unit 1 (bright)      D      D     D     D    D    D       3/6
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T

from convlens.ablation import (
    AblationError,
    LayerAblation,
    ablate,
    class_targets,
    zeroed_channels,
)
from convlens.cli import main
from convlens.data import FASHION_MNIST_CLASSES, image_folder
from convlens.hooks import count_hooks
from convlens.models import LoadedModel

IMAGES = {"bright": (255, 255, 50), "dark": (0, 0, 200)}


def hand_weighted_model() -> LoadedModel:
    conv = nn.Conv2d(1, 2, 2)
    norm = nn.BatchNorm2d(2, eps=0.0)
    fc = nn.Linear(2, 2)
    with torch.no_grad():
        conv.weight.copy_(torch.stack([torch.full((1, 2, 2), 0.25), torch.zeros(1, 2, 2)]))
        conv.bias.zero_()
        norm.bias.copy_(torch.tensor([0.0, 0.5]))
        fc.weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
        fc.bias.copy_(torch.tensor([0.01, 0.0]))
    layers = [("conv", conv), ("norm", norm), ("relu", nn.ReLU(inplace=True))]
    layers += [("flatten", nn.Flatten()), ("fc", fc)]
    return LoadedModel(
        name="hand",
        module=nn.Sequential(OrderedDict(layers)).eval(),
        transform=T.Compose([T.Grayscale(), T.ToTensor()]),
        input_size=(1, 2, 2),
        class_names=["dark", "bright"],
        weights_status="file",
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "brightness"
    for label, values in IMAGES.items():
        (root / label).mkdir(parents=True)
        for index, value in enumerate(values):
            Image.new("L", (2, 2), value).save(root / label / f"{index}.png")
    return root


def test_zeroing_a_filter_changes_the_accuracy_as_computed_by_hand(folder: Path) -> None:
    model = hand_weighted_model()
    result = ablate(model, str(folder), {"conv": [1]})
    assert result.baseline_accuracy == pytest.approx(4 / 6)
    assert result.ablated_accuracy == pytest.approx(5 / 6)
    assert result.ablated_filters == 1 and result.images == 6
    assert result.per_layer == {"conv": LayerAblation((1,), pytest.approx(5 / 6))}


def test_each_layer_alone_and_all_together(folder: Path) -> None:
    model = hand_weighted_model()
    result = ablate(model, str(folder), {"fc": [1, 1], "conv": [1], "flatten": []})
    assert list(result.per_layer) == ["conv", "fc"]  # chain order, empty layers dropped
    assert result.per_layer["conv"].accuracy == pytest.approx(5 / 6)
    assert result.per_layer["fc"] == LayerAblation((1,), pytest.approx(3 / 6))
    assert result.ablated_accuracy == pytest.approx(3 / 6)
    assert result.ablated_filters == 2
    payload = json.loads(result.to_json())
    assert set(payload) == {"baseline_accuracy", "ablated_accuracy", "ablated_filters", "per_layer"}
    assert payload["per_layer"]["fc"] == {"filters": [1], "accuracy": pytest.approx(0.5)}


def test_no_useless_filters_means_the_same_accuracy(folder: Path) -> None:
    result = ablate(hand_weighted_model(), str(folder), {})
    assert result.ablated_filters == 0 and result.per_layer == {}
    assert result.ablated_accuracy == result.baseline_accuracy == pytest.approx(4 / 6)


def test_limit_and_progress(folder: Path) -> None:
    calls: list[tuple[int, int]] = []
    result = ablate(hand_weighted_model(), str(folder), {}, limit=3)
    assert result.images == 3 and result.baseline_accuracy == pytest.approx(2 / 3)
    ablate(
        hand_weighted_model(), str(folder), {}, batch_size=4, progress=lambda *c: calls.append(c)
    )
    assert calls == [(4, 6), (6, 6)]


def test_hooks_are_gone_afterwards_also_after_an_error(folder: Path) -> None:
    model = hand_weighted_model()
    probe = torch.rand(3, 1, 2, 2)
    expected = model.module(probe)
    ablate(model, str(folder), {"conv": [0, 1], "fc": [0]})
    assert count_hooks(model.module) == 0

    def fail(done: int, total: int) -> None:
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        ablate(model, str(folder), {"conv": [1]}, progress=fail)
    assert count_hooks(model.module) == 0
    assert torch.equal(model.module(probe), expected)
    assert not model.module.training


def test_unknown_layers_and_filters_are_refused(folder: Path) -> None:
    model = hand_weighted_model()
    with pytest.raises(AblationError, match="not a conv or linear layer"):
        ablate(model, str(folder), {"relu": [0]})
    with pytest.raises(AblationError, match="no filter 2"):
        ablate(model, str(folder), {"conv": [2]})
    assert count_hooks(model.module) == 0


def test_a_reused_layer_is_zeroed_only_in_the_call_named() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.swap = nn.Conv2d(2, 2, 1, bias=False)
            self.relu = nn.ReLU()
            with torch.no_grad():
                self.swap.weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]).view(2, 2, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.relu(self.swap(self.relu(x)))

    net, x = Twice(), torch.ones(1, 2, 1, 1)
    with zeroed_channels(net, {"relu:2": [0]}):
        assert net(x).flatten().tolist() == [0.0, 1.0]
    with zeroed_channels(net, {"relu": [0]}) as enabled:
        assert net(x).flatten().tolist() == [1.0, 0.0]
        enabled.clear()
        assert net(x).flatten().tolist() == [1.0, 1.0]
    assert count_hooks(net) == 0


def test_mismatched_classes_are_refused(folder: Path, tmp_path: Path) -> None:
    pets = tmp_path / "pets"
    for name in ("cat", "dark"):
        (pets / name).mkdir(parents=True)
        Image.new("L", (2, 2), 0).save(pets / name / "0.png")
    with pytest.raises(AblationError, match="'cat'"):
        ablate(hand_weighted_model(), str(pets), {})
    with pytest.raises(AblationError, match="not those of hand"):
        ablate(hand_weighted_model(), "fashion-mnist:test", {})
    with pytest.raises(AblationError, match="not a labelled image source"):
        ablate(hand_weighted_model(), "sample:chelsea", {})


def test_folders_map_to_classes_by_name(tmp_path: Path) -> None:
    for name in ("Trouser", "t-shirt_top"):
        (tmp_path / name).mkdir()
        Image.new("L", (2, 2), 0).save(tmp_path / name / "0.png")
    fashion = LoadedModel(
        "fashion", nn.Linear(1, 1), T.ToTensor(), (1, 28, 28), list(FASHION_MNIST_CLASSES), "file"
    )
    assert class_targets(image_folder(tmp_path), fashion).tolist() == [1, 0]


def test_cli_ablate(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["annotations", "set", "--model", "deepeyes", "--label", "useless"]
    assert main([*base, "--layer", "features.conv1", "--filter", "4"]) == 0
    assert main([*base, "--layer", "classifier.fc2", "--filter", "0", "--author", "bob"]) == 0
    capsys.readouterr()
    command = ["annotations", "ablate", "--model", "deepeyes", "--data", "fashion-mnist:test"]
    assert main([*command, "--limit", "40", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload) == {"baseline_accuracy", "ablated_accuracy", "ablated_filters", "per_layer"}
    assert payload["ablated_filters"] == 2
    assert payload["per_layer"]["features.conv1"]["filters"] == [4]
    assert list(payload["per_layer"]) == ["features.conv1", "classifier.fc2"]

    assert main([*command, "--limit", "40", "--author", "nobody"]) == 0
    assert "no filter of deepeyes" in capsys.readouterr().out
    capsys.readouterr()
    assert main(["annotations", "ablate", "--model", "deepeyes", "--data", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "are not classes of deepeyes" in err and err.count("\n") == 1
