"""The model zoo: registry, preprocessing, reproducible untrained networks and weights resolution.

Every weights file here is a stand-in written by the test into a temporary folder (the autouse
fixture in conftest.py points TORCH_HOME there); nothing is downloaded.
"""

from __future__ import annotations

import builtins
import dataclasses
from pathlib import Path

import pytest
import skimage.data
import torch
from PIL import Image
from safetensors.torch import save_file

from convlens import models
from convlens.models import WEIGHTS_STATUSES, LoadedModel, ModelError

ZOO = ("efficientnet_lite0", "efficientnet_lite1", "alexnet", "vgg11", "vgg16", "resnet18")
ODD_IMAGES = {
    "37x300": Image.new("RGB", (37, 300), (200, 30, 90)),
    "300x37": Image.new("RGB", (300, 37), (10, 200, 30)),
    "1x4000": Image.new("RGB", (1, 4000), (255, 255, 0)),
    "4000x1": Image.new("RGB", (4000, 1), (0, 0, 255)),
    "grey": Image.new("L", (64, 48), 128),
    "rgba": Image.new("RGBA", (50, 70), (1, 2, 3, 4)),
}


def state_of(name: str, **fills: float) -> dict[str, torch.Tensor]:
    """The untrained state dict of `name`, with the named entries filled with a value."""
    state = {
        key: value.clone()
        for key, value in models.build_untrained(models.model_spec(name)).state_dict().items()
    }
    for key, value in fills.items():
        state[key.replace("__", ".")].fill_(value)
    return state


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for key in a:
        assert torch.equal(a[key].cpu(), b[key].cpu()), key


def without_bundled_weights(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    spec = models.model_spec(name)
    monkeypatch.setitem(
        models._REGISTRY, name, dataclasses.replace(spec, bundled_weights=lambda: None)
    )


# --- registry ---------------------------------------------------------------------------------


def test_list_models_holds_the_zoo_with_the_offline_default_first():
    names = models.list_models()
    assert names[0] == "efficientnet_lite0" == models.DEFAULT_MODEL
    assert set(ZOO) <= set(names)
    assert len(names) == len(set(names))


def test_unknown_model_names_the_valid_ones():
    with pytest.raises(ModelError, match="unknown model 'lenet'.*efficientnet_lite0"):
        models.load_model("lenet")


@pytest.mark.parametrize("name", models.list_models())
def test_load_model_is_ready_for_inference(name: str):
    loaded = models.load_model(name)
    assert isinstance(loaded, LoadedModel)
    assert loaded.name == name
    assert not any(module.training for module in loaded.module.modules())
    assert loaded.weights_status in WEIGHTS_STATUSES
    # the efficientnet weights are pip dependencies, the fashion_* runs ship in assets/runs;
    # the torch hub cache is an empty tmp folder
    expected = "bundled" if name.startswith(("efficientnet", "fashion_")) else "untrained"
    assert loaded.weights_status == expected
    assert loaded.pretrained == (expected != "untrained")
    assert loaded.input_size == models.model_spec(name).input_size
    # ImageNet models have 1000 classes; the small Fashion-MNIST CNNs have 10
    assert len(loaded.class_names) == (10 if loaded.input_size[0] == 1 else 1000)

    batch = torch.stack([loaded.transform(image) for image in ODD_IMAGES.values()])
    assert batch.shape == (len(ODD_IMAGES), *loaded.input_size)
    assert torch.isfinite(batch).all()
    with torch.no_grad():
        logits = loaded.module(batch.to(loaded.device))
    assert logits.shape == (len(ODD_IMAGES), len(loaded.class_names))


def test_transform_keeps_the_centre_of_an_elongated_image():
    # a 1x4000 strip, red in its central 4 pixels and blue elsewhere: only red may be left
    image = Image.new("RGB", (1, 4000), (0, 0, 255))
    image.paste((255, 0, 0), (0, 1998, 1, 2002))
    loaded_transform = models.make_transform(
        (3, 8, 8), 8, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)
    )
    tensor = loaded_transform(image)
    assert tensor.shape == (3, 8, 8)
    assert torch.allclose(tensor[0], torch.ones(8, 8))
    assert torch.allclose(tensor[2], torch.zeros(8, 8))


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1, 4000), (1, 4)),
        ((4000, 1), (4, 1)),
        ((37, 300), (37, 148)),
        ((300, 37), (148, 37)),
        ((100, 400), (100, 400)),
    ],
)
def test_limit_aspect_crops_only_very_elongated_images(size, expected):
    # the crop happens before resizing, so a 1x4000 strip never becomes a 224x896000 image
    assert models.limit_aspect(Image.new("RGB", size)).size == expected


@pytest.mark.parametrize("name", models.list_models())
def test_untrained_networks_are_reproducible_and_keep_the_global_rng(
    name: str, monkeypatch: pytest.MonkeyPatch
):
    without_bundled_weights(monkeypatch, name)
    torch.manual_seed(1234)
    rng_before = torch.get_rng_state()
    first = models.load_model(name, device="cpu")
    assert torch.equal(torch.get_rng_state(), rng_before)
    second = models.load_model(name, device="cpu")
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert first.weights_status == second.weights_status == "untrained"
    assert_same_state(first.module.state_dict(), second.module.state_dict())
    # the seed is fixed inside ConvLens, not inherited: another global seed builds the same net
    torch.manual_seed(99)
    assert_same_state(
        first.module.state_dict(), models.load_model(name, device="cpu").module.state_dict()
    )


def test_untrained_networks_differ_from_pretrained_ones():
    # guards the test above: with bundled weights, lite0 is not the seeded untrained net
    pretrained = models.load_model("efficientnet_lite0", device="cpu").module.state_dict()
    untrained = models.build_untrained(models.model_spec("efficientnet_lite0")).state_dict()
    assert not torch.equal(pretrained["_fc.weight"], untrained["_fc.weight"])


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (skimage.data.chelsea, {"Egyptian cat", "tabby", "tiger cat"}),
        (skimage.data.coffee, {"espresso"}),
    ],
    ids=["chelsea", "coffee"],
)
def test_bundled_efficientnet_lite0_recognises_sample_images(image, expected: set[str]):
    loaded = models.load_model("efficientnet_lite0")
    assert loaded.weights_status == "bundled"
    x = loaded.transform(Image.fromarray(image())).unsqueeze(0).to(loaded.device)
    with torch.no_grad():
        probabilities = loaded.module(x).softmax(dim=1)[0]
    top = int(probabilities.argmax())
    assert loaded.class_names[top] in expected
    assert probabilities[top] > 0.2


# --- weights resolution -----------------------------------------------------------------------


def test_weights_in_the_hub_cache_are_used(isolated_home: Path):
    path = models.hub_cache_path("resnet18")
    assert path is not None and isolated_home in path.parents
    assert not models.weights_available("resnet18")
    path.parent.mkdir(parents=True)
    state = state_of("resnet18", fc__bias=0.5)
    torch.save(state, path)
    assert models.weights_available("resnet18")

    loaded = models.load_model("resnet18", device="cpu")
    assert loaded.weights_status == "cache"
    assert loaded.pretrained
    assert str(path) in loaded.weights_note
    assert torch.equal(loaded.module.fc.bias, torch.full((1000,), 0.5))
    assert torch.equal(loaded.module.conv1.weight, state["conv1.weight"])


def test_a_model_key_changes_when_weights_land_in_the_hub_cache(isolated_home: Path):
    before = models.ModelKey.of("resnet18")
    assert before == models.ModelKey("resnet18", None, "untrained")
    again = models.ModelKey.of("resnet18")
    assert again == before and hash(again) == hash(before)
    path = models.hub_cache_path("resnet18")
    assert path is not None
    path.parent.mkdir(parents=True)
    torch.save(state_of("resnet18"), path)
    after = models.ModelKey.of("resnet18")
    assert after.name == "resnet18" and after.weights is None
    assert after.source.startswith("cache:") and after != before
    with_file = models.ModelKey.of("resnet18", "my.pt")
    assert with_file == models.ModelKey("resnet18", "my.pt", after.source)


def test_lite0_has_no_hub_cache_path_but_is_available():
    assert models.hub_cache_path("efficientnet_lite0") is None
    assert models.weights_available("efficientnet_lite0")


def _save_pth(state: dict, path: Path) -> Path:
    torch.save(state, path.with_suffix(".pth"))
    return path.with_suffix(".pth")


def _save_safetensors(state: dict, path: Path) -> Path:
    save_file(state, str(path.with_suffix(".safetensors")))
    return path.with_suffix(".safetensors")


def _save_wrapped(state: dict, path: Path) -> Path:
    torch.save({"state_dict": state, "epoch": 3}, path.with_suffix(".pt"))
    return path.with_suffix(".pt")


def _save_data_parallel(state: dict, path: Path) -> Path:
    torch.save({"model_state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    return path


@pytest.mark.parametrize("save", [_save_pth, _save_safetensors, _save_wrapped, _save_data_parallel])
def test_a_weights_file_given_by_the_user_is_used(save, tmp_path: Path):
    state = state_of("resnet18", fc__bias=0.5)
    path = save(state, tmp_path / "my-weights")
    loaded = models.load_model("resnet18", weights=path, device="cpu")
    assert loaded.weights_status == "file"
    assert path.name in loaded.weights_note
    assert torch.equal(loaded.module.fc.bias, torch.full((1000,), 0.5))
    assert_same_state(loaded.module.state_dict(), state)


def test_a_user_file_wins_over_the_hub_cache(tmp_path: Path):
    cache = models.hub_cache_path("resnet18")
    cache.parent.mkdir(parents=True)
    torch.save(state_of("resnet18", fc__bias=0.5), cache)
    path = _save_pth(state_of("resnet18", fc__bias=-2.0), tmp_path / "mine")
    loaded = models.load_model("resnet18", weights=path, device="cpu")
    assert loaded.weights_status == "file"
    assert torch.equal(loaded.module.fc.bias, torch.full((1000,), -2.0))


def _drop_fc_bias(state: dict) -> None:
    del state["fc.bias"]


def _drop_layer4(state: dict) -> None:
    for key in [key for key in state if key.startswith("layer4.")]:
        del state[key]


def _add_extra(state: dict) -> None:
    state["head.extra.weight"] = torch.zeros(3)


def _wrong_fc_shape(state: dict) -> None:
    state["fc.weight"] = torch.zeros(10, 512)
    state["fc.bias"] = torch.zeros(10)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_drop_fc_bias, "missing fc.bias"),
        (
            _drop_layer4,
            "missing layer4.0.conv1.weight, layer4.0.bn1.weight, layer4.0.bn1.bias",
        ),
        (_add_extra, "unexpected head.extra.weight"),
        (_wrong_fc_shape, "shape of fc.weight (10, 512) instead of (1000, 512)"),
    ],
    ids=["missing", "missing-many", "unexpected", "shape"],
)
def test_a_mismatching_state_dict_is_refused_with_its_first_names(damage, message, tmp_path):
    state = state_of("resnet18")
    damage(state)
    path = _save_pth(state, tmp_path / "bad")
    with pytest.raises(ModelError) as error:
        models.load_model("resnet18", weights=path, device="cpu")
    assert "resnet18" in str(error.value)
    assert message in str(error.value)


def test_no_weights_gives_the_untrained_network_and_says_how_to_fetch():
    loaded = models.load_model("resnet18", device="cpu")
    assert loaded.weights_status == "untrained"
    assert not loaded.pretrained
    assert "python -m convlens weights fetch resnet18" in loaded.weights_note


class _WritesAFile:
    """Unpickling this object opens (so creates) a file: a stand-in for arbitrary code."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (builtins.open, (str(self.target), "w"))


@pytest.mark.parametrize("wrap", ["bare", "state_dict"])
def test_a_hostile_pickle_is_refused_without_running_it(wrap: str, tmp_path: Path):
    marker = tmp_path / "pwned"
    payload = _WritesAFile(marker)
    if wrap == "state_dict":
        payload = {"state_dict": {"fc.bias": payload}}
    path = tmp_path / "weights.pth"
    torch.save(payload, path)
    assert not marker.exists()
    with pytest.raises(ModelError, match="weights.pth"):
        models.load_model("resnet18", weights=path, device="cpu")
    assert not marker.exists()
    # the file really is hostile: an unsafe load runs the payload (and opens the marker)
    opened = torch.load(path, weights_only=False)
    (opened if wrap == "bare" else opened["state_dict"]["fc.bias"]).close()
    assert marker.exists()


@pytest.mark.parametrize(
    ("file_name", "content"),
    [
        ("garbage.pth", b"\x00\x01not a checkpoint at all\xff" * 50),
        ("empty.pth", b""),
        ("garbage.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json" + bytes(64)),
        ("empty.safetensors", b""),
    ],
)
def test_unreadable_weights_files_are_refused(file_name: str, content: bytes, tmp_path: Path):
    path = tmp_path / file_name
    path.write_bytes(content)
    with pytest.raises(ModelError, match=file_name):
        models.load_model("resnet18", weights=path, device="cpu")


def test_a_file_of_something_else_than_tensors_is_refused(tmp_path: Path):
    path = tmp_path / "numbers.pth"
    torch.save({"fc.bias": 3, "fc.weight": [1.0, 2.0]}, path)
    with pytest.raises(ModelError, match="state dict of tensors"):
        models.load_model("resnet18", weights=path, device="cpu")


def test_a_missing_weights_file_is_refused(tmp_path: Path):
    with pytest.raises(ModelError, match="no such weights file"):
        models.load_model("resnet18", weights=tmp_path / "nowhere.pth", device="cpu")


def test_import_weights_copies_a_matching_file_into_the_hub_cache(tmp_path: Path):
    source = _save_pth(state_of("alexnet", classifier__6__bias=0.5), tmp_path / "alex")
    assert not models.weights_available("alexnet")
    target = models.import_weights("alexnet", source)
    assert target == models.hub_cache_path("alexnet")
    assert target.read_bytes() == source.read_bytes()
    assert models.weights_available("alexnet")
    loaded = models.load_model("alexnet", device="cpu")
    assert loaded.weights_status == "cache"
    assert torch.equal(loaded.module.classifier[6].bias, torch.full((1000,), 0.5))


def test_import_weights_converts_safetensors(tmp_path: Path):
    source = _save_safetensors(state_of("resnet18", fc__bias=0.5), tmp_path / "res")
    target = models.import_weights("resnet18", source)
    assert target == models.hub_cache_path("resnet18")
    loaded = models.load_model("resnet18", device="cpu")
    assert loaded.weights_status == "cache"
    assert torch.equal(loaded.module.fc.bias, torch.full((1000,), 0.5))


@pytest.mark.parametrize("name", ["alexnet", "resnet18"])
def test_import_weights_refuses_a_mismatching_file_and_writes_nothing(
    name, tmp_path, isolated_home
):
    source = _save_pth({"features.0.weight": torch.zeros(1)}, tmp_path / "wrong")
    with pytest.raises(ModelError, match="do not fit"):
        models.import_weights(name, source)
    assert not models.hub_cache_path(name).exists()
    assert not models.weights_available(name)
    written = [path for path in isolated_home.rglob("*") if path.is_file()]
    assert written == []


def test_import_weights_refuses_a_model_whose_weights_ship(tmp_path: Path):
    source = _save_pth({"x": torch.zeros(1)}, tmp_path / "w")
    with pytest.raises(ModelError, match="ship"):
        models.import_weights("efficientnet_lite0", source)


# --- the user's own model ---------------------------------------------------------------------

USER_MODULE = """
import torch
from torch import nn


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.dropout = nn.Dropout(0.5)
        self.classifier = nn.Linear(4 * 14 * 14, 5)

    def forward(self, x):
        return self.classifier(self.dropout(torch.flatten(self.features(x), 1)))


class NamedNet(TinyNet):
    input_size = (1, 28, 28)
    class_names = ["a", "b", "c", "d", "e"]


class NotAModule:
    pass


class Broken(nn.Module):
    def __init__(self):
        raise RuntimeError("boom")
"""


@pytest.fixture
def user_module(tmp_path: Path) -> Path:
    path = tmp_path / "my_net.py"
    path.write_text(USER_MODULE)
    return path


def test_load_user_model_builds_the_class(user_module: Path):
    loaded = models.load_user_model(f"{user_module}:TinyNet")
    assert loaded.name == f"file:{user_module}:TinyNet"
    assert loaded.weights_status == "untrained"
    assert not any(module.training for module in loaded.module.modules())
    assert loaded.input_size == (1, 28, 28)
    assert loaded.class_names == ["class 0", "class 1", "class 2", "class 3", "class 4"]
    x = loaded.transform(Image.new("RGB", (37, 300), (1, 2, 3)))
    assert x.shape == (1, 28, 28)
    with torch.no_grad():
        assert loaded.module(x.unsqueeze(0).to(loaded.device)).shape == (1, 5)
    again = models.load_user_model(f"{user_module}:TinyNet")
    assert_same_state(loaded.module.state_dict(), again.module.state_dict())


def test_load_user_model_uses_class_attributes(user_module: Path):
    loaded = models.load_user_model(f"{user_module}:NamedNet")
    assert loaded.class_names == ["a", "b", "c", "d", "e"]


def test_load_user_model_with_weights(user_module: Path, tmp_path: Path):
    state = {
        key: value.clone()
        for key, value in models.load_user_model(f"{user_module}:TinyNet")
        .module.state_dict()
        .items()
    }
    state["classifier.bias"].fill_(0.5)
    path = _save_safetensors({k: v.cpu() for k, v in state.items()}, tmp_path / "tiny")
    loaded = models.resolve_model(f"file:{user_module}:TinyNet", weights=path)
    assert loaded.weights_status == "file"
    assert torch.equal(loaded.module.classifier.bias.cpu(), torch.full((5,), 0.5))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{file}:Nope", "has no class Nope"),
        ("{file}:NotAModule", "is not a torch.nn.Module"),
        ("{file}:Broken", "could not build Broken.*boom"),
        ("{missing}:TinyNet", "no such model file"),
        ("{file}", "should look like"),
    ],
    ids=["bad-class", "not-a-module", "broken", "missing-file", "no-class"],
)
def test_load_user_model_errors(spec: str, message: str, user_module: Path, tmp_path: Path):
    model_file = spec.format(file=user_module, missing=tmp_path / "absent.py")
    with pytest.raises(ModelError, match=message):
        models.load_user_model(model_file)


def test_load_user_model_refuses_mismatching_weights(user_module: Path, tmp_path: Path):
    path = _save_pth({"classifier.bias": torch.zeros(7)}, tmp_path / "w")
    with pytest.raises(ModelError, match="do not fit TinyNet"):
        models.load_user_model(f"{user_module}:TinyNet", weights=path)


def test_a_shipped_run_is_named_by_its_folder_so_that_bookmarks_travel(tmp_path: Path):
    """`run:fashion_deepeyes` opens the shipped run on any machine; a run of the same name
    elsewhere is named by its path, which is the only way to reach it."""
    import shutil

    from convlens.paths import ASSETS_DIR
    from convlens.runformat import parse_run_name
    from convlens.runs import run_reference

    shipped = ASSETS_DIR / "runs" / "fashion_deepeyes"
    assert run_reference(shipped) == "fashion_deepeyes"
    by_name = models.load_model("run:fashion_deepeyes", device="cpu")
    by_path = models.load_model(f"run:{shipped}", device="cpu")
    assert by_name.class_names == by_path.class_names
    for a, b in zip(
        by_name.module.state_dict().values(), by_path.module.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    assert parse_run_name("run:fashion_deepeyes@100") == (shipped, 100)
    copy = tmp_path / "fashion_deepeyes"
    shutil.copytree(shipped, copy)
    assert run_reference(copy) == str(copy)


def test_the_run_behind_a_model():
    from convlens.paths import ASSETS_DIR
    from convlens.runs import model_run

    shipped = ASSETS_DIR / "runs" / "fashion_deepeyes"
    assert model_run("fashion_deepeyes") == shipped
    assert model_run("run:fashion_deepeyes") == shipped
    assert model_run("run:fashion_deepeyes@100") == shipped
    assert model_run(f"run:{shipped}@100") == shipped
    for name in ("efficientnet_lite0", "run:nowhere", "run:fashion_deepeyes@last"):
        assert model_run(name) is None
