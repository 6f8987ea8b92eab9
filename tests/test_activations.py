"""The activation engine: reducers against brute force, receptive-field crops, hooks, the cache,
data sources, and the `analyze` / `prepare` commands."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from convlens import activations
from convlens.activations import (
    Analysis,
    analyze,
    cache_path,
    default_limit,
    open_source,
    prepare_shipped,
)
from convlens.cli import main
from convlens.data import FASHION_MNIST_CLASSES, ImageSourceError, fashion_mnist
from convlens.hooks import count_hooks
from convlens.models import LoadedModel, make_transform

BATCH = 64
IMAGES = 300
# chain node -> activation layer of TinyNet
LAYERS = {
    "features.conv1": "features.relu1",
    "features.conv2": "features.relu2",
    "classifier.fc1": "classifier.relu3",
    "classifier.fc2": "classifier.fc2",
}
SILENT_FILTER = 2  # conv1's filter with a very negative bias: it never fires


class TinyNet(nn.Module):
    """Unpadded convs and pools (no global operation): 28 -conv5-> 24 -pool-> 12 -conv3-> 10."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(1, 4, 5)),
                    ("relu1", nn.ReLU(inplace=inplace)),
                    ("pool1", nn.MaxPool2d(2)),
                    ("conv2", nn.Conv2d(4, 6, 3)),
                    ("relu2", nn.ReLU(inplace=inplace)),
                    ("pool2", nn.MaxPool2d(2)),
                ]
            )
        )
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            OrderedDict(
                [
                    ("fc1", nn.Linear(6 * 5 * 5, 8)),
                    ("relu3", nn.ReLU(inplace=inplace)),
                    ("fc2", nn.Linear(8, 10)),
                ]
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))


def tiny_model(name: str = "tiny", inplace: bool = False, channels: int = 1) -> LoadedModel:
    torch.manual_seed(0)
    module = TinyNet(inplace=inplace)
    if channels != 1:
        module.features.conv1 = nn.Conv2d(channels, 4, 5)
    with torch.no_grad():
        module.features.conv1.bias[SILENT_FILTER] = -1e4
    size = (channels, 28, 28)
    return LoadedModel(
        name=name,
        module=module.eval(),
        transform=make_transform(size, 28, (0.5,) * channels, (0.25,) * channels),
        input_size=size,
        class_names=list(FASHION_MNIST_CLASSES),
        weights_status="untrained",
    )


# --- brute force --------------------------------------------------------------------------------


def all_activations(
    model: LoadedModel, inputs: torch.Tensor, batch: int = BATCH
) -> dict[str, np.ndarray]:
    """Every activation of every chain node at once, (images, neurons, H, W), in batches of
    `batch` (a convolution's last bits can depend on the batch size)."""
    found: dict[str, list[np.ndarray]] = {layer: [] for layer in LAYERS}
    handles = []
    for layer, activation in LAYERS.items():

        def keep(module, args, output, layer=layer):
            found[layer].append(output.detach().clone().numpy())

        handles.append(model.module.get_submodule(activation).register_forward_hook(keep))
    try:
        with torch.no_grad():
            for start in range(0, len(inputs), batch):
                model.module(inputs[start : start + batch])
    finally:
        for handle in handles:
            handle.remove()
    result = {}
    for layer, parts in found.items():
        stacked = np.concatenate(parts)
        result[layer] = stacked if stacked.ndim == 4 else stacked[:, :, None, None]
    return result


def brute_force(
    layer_id: str,
    acts: np.ndarray,
    labels: np.ndarray | None,
    classes: int,
    top_k: int,
    reduce: str = "mean",
) -> dict:
    images, neurons, height, width = acts.shape
    per_image = acts.mean(axis=(2, 3)) if reduce == "mean" else acts.max(axis=(2, 3))
    per_class = np.full((classes, neurons), np.nan)
    for c in range(classes):
        if labels is not None and (labels == c).any():
            per_class[c] = per_image[labels == c].astype(np.float64).mean(axis=0)
    maximum = acts.max(axis=(0, 2, 3))
    # the sampled patches, as flat indices image * positions + position
    sample = activations.frequency_sample(
        layer_id, images, height * width, activations.FREQUENCY_PATCHES
    )
    frequency = np.array(
        [(acts[:, n].reshape(-1)[sample] > maximum[n] / 2).mean() for n in range(neurons)]
    )
    top = []
    for n in range(neurons):
        flat = acts[:, n].reshape(images, -1)
        best = [(float(flat[i].max()), i, int(np.argmax(flat[i]))) for i in range(images)]
        ranked = sorted(best, key=lambda entry: (-entry[0], entry[1]))[:top_k]
        top.append([(i, value, divmod(where, width)) for value, i, where in ranked])
    return {
        "per_class": per_class,
        "max": maximum,
        "frequency": frequency,
        "patches": len(sample),
        "top": top,
    }


def assert_matches(analysis: Analysis, acts: dict, labels, classes: int, top_k: int, reduce="mean"):
    assert [layer.id for layer in analysis.layers] == list(LAYERS)
    for layer in analysis.layers:
        expected = brute_force(layer.id, acts[layer.id], labels, classes, top_k, reduce)
        np.testing.assert_allclose(
            layer.per_class_mean, expected["per_class"], rtol=1e-5, atol=1e-6, equal_nan=True
        )
        np.testing.assert_array_equal(layer.max, expected["max"])
        np.testing.assert_array_equal(layer.frequency, expected["frequency"])
        assert layer.frequency_patches == expected["patches"]
        top = layer.top_patches
        for n, ranked in enumerate(expected["top"]):
            assert top.image[n].tolist() == [i for i, _, _ in ranked], (layer.id, n)
            assert top.value[n].tolist() == [value for _, value, _ in ranked]
            assert list(zip(top.y[n].tolist(), top.x[n].tolist(), strict=True)) == [
                yx for _, _, yx in ranked
            ]
            expected_labels = [int(labels[i]) if labels is not None else -1 for i, _, _ in ranked]
            assert top.label[n].tolist() == expected_labels


@pytest.fixture(scope="module")
def fashion_inputs() -> tuple[torch.Tensor, np.ndarray]:
    data = fashion_mnist("test")
    transform = tiny_model().transform
    inputs = torch.stack([transform(Image.fromarray(data.images[i])) for i in range(IMAGES)])
    return inputs, np.asarray(data.labels[:IMAGES])


# --- reducers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("reduce", ["mean", "max"])
def test_reducers_equal_brute_force_on_fashion_mnist(reduce, fashion_inputs):
    model = tiny_model()
    inputs, labels = fashion_inputs
    analysis = analyze(
        model,
        "fashion-mnist:test",
        limit=IMAGES,
        top_k=5,
        reduce=reduce,
        batch_size=BATCH,
        cache=False,
    )
    assert analysis.images == IMAGES and analysis.classes == list(FASHION_MNIST_CLASSES)
    np.testing.assert_array_equal(analysis.class_counts, np.bincount(labels, minlength=10))
    acts = all_activations(model, inputs)
    assert_matches(analysis, acts, labels, 10, 5, reduce)
    conv1 = analysis.layer("features.conv1")
    assert conv1.max[SILENT_FILTER] == 0 and conv1.frequency[SILENT_FILTER] == 0
    assert (conv1.frequency[np.arange(4) != SILENT_FILTER] > 0).all()


def test_one_forward_pass_per_batch(fashion_inputs):
    """Every reducer sees each batch once: the model runs once per batch, and the progress
    counts the images up to their number."""
    model = tiny_model()
    calls: list[tuple[int, int]] = []
    forwards, handle = count_forwards(model)
    try:
        analyze(
            model,
            "fashion-mnist:test",
            limit=IMAGES,
            batch_size=BATCH,
            cache=False,
            progress=lambda done, total: calls.append((done, total)),
        )
    finally:
        handle.remove()
    assert len(forwards) == -(-IMAGES // BATCH)
    assert calls[-1] == (IMAGES, IMAGES)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_the_frequency_counts_every_patch_when_the_sample_holds_them(monkeypatch, fashion_inputs):
    """With room for all (image, position) pairs the frequency is the share of all patches above
    half of the maximum; the linear layers (one patch per image) have fewer than the default."""
    model = tiny_model()
    inputs, _ = fashion_inputs
    acts = all_activations(model, inputs)
    default = analyze(model, "fashion-mnist:test", limit=IMAGES, batch_size=BATCH, cache=False)
    sample_size = activations.FREQUENCY_PATCHES
    monkeypatch.setattr(activations, "FREQUENCY_PATCHES", 10**9)
    every = analyze(model, "fashion-mnist:test", limit=IMAGES, batch_size=BATCH, cache=False)
    for layer_id, layer_acts in acts.items():
        images, _, height, width = layer_acts.shape
        maximum = layer_acts.max(axis=(0, 2, 3))
        share = (layer_acts > maximum[None, :, None, None] / 2).mean(axis=(0, 2, 3))
        np.testing.assert_array_equal(every.layer(layer_id).frequency, share)
        assert every.layer(layer_id).frequency_patches == images * height * width
        if height * width == 1:
            np.testing.assert_array_equal(default.layer(layer_id).frequency, share)
    # on conv1 (300 x 24 x 24 patches) the sample of 2,000 is near the share of all of them
    sampled, exact = default.layer("features.conv1"), every.layer("features.conv1")
    assert sampled.frequency_patches == sample_size == 2000
    assert np.abs(sampled.frequency - exact.frequency).max() < 0.04


def test_the_frequency_sample_is_fixed_uniform_and_without_repeats():
    sample = activations.frequency_sample("features.conv1", 1000, 100, 2000)
    assert np.array_equal(sample, activations.frequency_sample("features.conv1", 1000, 100, 2000))
    assert not np.array_equal(sample, activations.frequency_sample("features.conv2", 1000, 100))
    assert len(np.unique(sample)) == 2000 and (np.diff(sample) > 0).all()
    assert sample.min() >= 0 and sample.max() < 1000 * 100
    # each tenth of the images and each tenth of the positions holds about a tenth of the sample
    # (binomial, 2000 draws: standard deviation 13.4)
    for part in (sample // 100 // 100, sample % 100 // 10):
        assert (np.abs(np.bincount(part, minlength=10) - 200) < 60).all()
    assert np.array_equal(activations.frequency_sample("x", 3, 5, 2000), np.arange(15))


@pytest.mark.parametrize("batch_size", [1, 7])
def test_any_batch_size_and_more_patches_than_images(batch_size, fashion_inputs):
    """Merges of the top patches every few batches, with a stale entry bar, and the sampled
    patches cut across batches give what brute force gives, also when top_k exceeds the images."""
    model = tiny_model()
    inputs, labels = fashion_inputs
    images = 40
    analysis = analyze(
        model,
        "fashion-mnist:test",
        limit=images,
        top_k=50,
        reduce="max",
        batch_size=batch_size,
        cache=False,
    )
    acts = all_activations(model, inputs[:images], batch_size)
    assert_matches(analysis, acts, labels[:images], 10, 50, "max")
    assert analysis.layer("features.conv1").top_patches.image.shape == (4, images)


def test_patch_keys_rank_by_value_then_earlier_image():
    values = torch.tensor([[0.0, -0.0, 2.5, -1.0, 2.5, float("inf"), -3.0, 1e-30]])
    images = torch.tensor([4, 1, 7, 2, 3, 5, 0, 6])
    keys = activations._patch_keys(values, images)
    order = torch.topk(keys, 8, dim=1).indices[0].tolist()
    ranked = sorted(range(8), key=lambda i: (-float(values[0, i]), int(images[i])))
    assert order == ranked
    assert torch.equal(activations._key_values(keys), values + 0.0)
    assert torch.equal(activations._key_images(keys), images[None])


def test_batched_preprocessing_equals_the_transform_of_each_image(tmp_path: Path):
    """The registry's transforms run once on a stacked batch give the same tensors to the last
    bit, for grey and colour models, images of the model's size and of others."""
    data = fashion_mnist("test")
    fashion = [Image.fromarray(data.images[i]) for i in range(50)]
    photos = [
        Image.fromarray(np.asarray(data.images[i])).convert("RGB").resize(size)
        for i, size in enumerate([(40, 30)] * 3 + [(30, 40)] * 2)
    ]
    for model, images in (
        (tiny_model(), fashion),
        (tiny_model(channels=3), fashion),
        (tiny_model(channels=3), photos),
        (tiny_model(channels=3), photos[:3]),
    ):
        per_image = torch.stack([model.transform(image) for image in images])
        batched = activations.Preprocess(model.transform)(images)
        assert batched.dtype == per_image.dtype and torch.equal(batched, per_image)
    plain = activations.Preprocess(lambda image: torch.zeros(2))(fashion[:3])
    assert torch.equal(plain, torch.zeros(3, 2))


def test_default_batch_sizes():
    assert activations.default_batch_size((1, 28, 28)) == 128
    assert activations.default_batch_size((3, 224, 224)) == 4
    assert activations.default_batch_size((3, 224, 224), "cuda") == 32
    assert activations.default_batch_size((1, 28, 28), torch.device("cuda")) == 256


def test_a_class_without_images_is_nan(tmp_path: Path):
    """An ImageFolder whose middle class folder is empty."""
    files = fashion_folder(tmp_path, {"a_top": 0, "b_empty": None, "c_bag": 8}, 40)
    model = tiny_model()
    analysis = analyze(model, str(tmp_path), top_k=4, batch_size=BATCH, cache=False)
    assert analysis.classes == ["a_top", "b_empty", "c_bag"]
    assert analysis.images == 80 and analysis.class_counts.tolist() == [40, 0, 40]
    inputs = torch.stack([model.transform(Image.open(path).convert("RGB")) for path in files])
    labels = np.array([0] * 40 + [2] * 40)
    assert_matches(analysis, all_activations(model, inputs), labels, 3, 4)
    assert np.isnan(analysis.layer("features.conv2").per_class_mean[1]).all()
    payload = analysis.to_json()
    assert all(value is None for value in payload["layers"][0]["per_class_mean"][1])
    assert payload["layers"][0]["per_class_mean"][0][0] is not None


def test_inplace_relu_gives_the_same_statistics():
    plain = analyze(tiny_model(), "fashion-mnist:test", limit=100, cache=False)
    inplace = analyze(tiny_model(inplace=True), "fashion-mnist:test", limit=100, cache=False)
    for a, b in zip(plain.layers, inplace.layers, strict=True):
        np.testing.assert_array_equal(a.max, b.max)
        np.testing.assert_array_equal(a.frequency, b.frequency)
        np.testing.assert_array_equal(a.per_class_mean, b.per_class_mean)


# --- top patches --------------------------------------------------------------------------------


def test_a_patch_crop_fed_alone_reproduces_its_activation(fashion_inputs):
    model = tiny_model()
    inputs, _ = fashion_inputs
    analysis = analyze(model, "fashion-mnist:test", limit=IMAGES, top_k=6, cache=False)
    features = model.module.features
    # conv1 sees 5x5 pixels (jump 1); conv2 5 + 1 + 2 x 2 = 10 (jump 2); without padding no
    # field of this net is clipped
    for layer_id, stop, field, jump in (("features.conv1", 2, 5, 1), ("features.conv2", 5, 10, 2)):
        top = analysis.layer(layer_id).top_patches
        for n in range(top.image.shape[0]):
            assert len(set(top.image[n].tolist())) == len(top.image[n])  # one patch per image
            for j in range(top.image.shape[1]):
                x0, y0, x1, y1 = top.box[n, j].tolist()
                assert (x0, y0) == (jump * top.x[n, j], jump * top.y[n, j])
                assert (x1 - x0, y1 - y0) == (field, field)
                crop = inputs[top.image[n, j], :, y0:y1, x0:x1][None]
                with torch.no_grad():
                    alone = features[:stop](crop)
                assert alone.shape[-2:] == (1, 1)
                assert alone[0, n, 0, 0].item() == pytest.approx(
                    top.value[n, j], rel=1e-5, abs=1e-6
                )
    fc = analysis.layer("classifier.fc1").top_patches
    assert (fc.y == 0).all() and (fc.x == 0).all()
    assert (fc.box == np.array([0, 0, 28, 28])).all()


# --- hooks --------------------------------------------------------------------------------------


class Boom(Exception):
    pass


def test_no_hooks_are_left_behind(monkeypatch):
    model = tiny_model()
    analyze(model, "fashion-mnist:test", limit=80, cache=False)
    assert count_hooks(model.module) == 0

    def explode(done: int, total: int) -> None:
        raise Boom

    with pytest.raises(Boom):
        analyze(model, "fashion-mnist:test", limit=80, cache=False, progress=explode)
    assert count_hooks(model.module) == 0

    def broken_forward(x):
        raise Boom

    monkeypatch.setattr(model.module.classifier, "forward", broken_forward)
    with pytest.raises(Boom):
        analyze(model, "fashion-mnist:test", limit=80, cache=False)
    assert count_hooks(model.module) == 0


def test_forward_passes_of_other_threads_are_not_counted(fashion_inputs):
    """The app shares a model between sessions: another thread's forward pass that runs while
    the hooks are on (here: from the progress callback, between two batches) is left alone."""
    import threading

    model = tiny_model()
    inputs, labels = fashion_inputs

    def other_session(done: int, total: int) -> None:
        worker = threading.Thread(target=lambda: model.module(inputs[:7] * 3))
        worker.start()
        worker.join()

    with torch.no_grad():
        analysis = analyze(
            model,
            "fashion-mnist:test",
            limit=IMAGES,
            batch_size=BATCH,
            cache=False,
            progress=other_session,
        )
    assert_matches(analysis, all_activations(model, inputs), labels, 10, 9)


# --- the cache ----------------------------------------------------------------------------------


def count_forwards(model: LoadedModel):
    calls = []
    handle = model.module.register_forward_pre_hook(lambda module, args: calls.append(1))
    return calls, handle


def test_a_second_call_comes_from_the_cache():
    model = tiny_model()
    options = dict(limit=120, layers=["features.conv2", "classifier.fc1"], top_k=4)
    first = analyze(model, "fashion-mnist:test", **options)
    assert cache_path(model, "fashion-mnist:test", **options).is_file()
    calls, handle = count_forwards(model)
    try:
        second = analyze(model, "fashion-mnist:test", **options)
        assert calls == []
        assert second.to_json() == first.to_json()
        assert json.dumps(second.to_json())  # plain JSON values only
        for a, b in zip(first.layers, second.layers, strict=True):
            np.testing.assert_array_equal(a.top_patches.box, b.top_patches.box)
            np.testing.assert_array_equal(a.per_class_mean, b.per_class_mean)
        analyze(model, "fashion-mnist:test", **{**options, "top_k": 3})
        assert calls, "another top_k is another analysis"
        calls.clear()
        analyze(model, "fashion-mnist:test", **{**options, "reduce": "max"})
        assert calls
        calls.clear()
        with torch.no_grad():
            model.module.features.conv2.weight.mul_(2)
        analyze(model, "fashion-mnist:test", **options)
        assert calls, "other weights are another analysis"
    finally:
        handle.remove()


def test_a_damaged_cache_entry_is_computed_again():
    model = tiny_model()
    first = analyze(model, "fashion-mnist:test", limit=50)
    path = cache_path(model, "fashion-mnist:test", limit=50)
    path.with_suffix(".npz").write_bytes(b"not an archive")
    again = analyze(model, "fashion-mnist:test", limit=50)
    assert again.to_json() == first.to_json()


def fashion_folder(root: Path, per_class: dict[str, int | None], count: int) -> list[Path]:
    """Write an ImageFolder of Fashion-MNIST test images: class folder -> Fashion class (None:
    an empty folder); return the files in ImageFolder order."""
    data = fashion_mnist("test")
    files = []
    for folder, fashion_class in sorted(per_class.items()):
        (root / folder).mkdir(parents=True)
        if fashion_class is None:
            continue
        for number, index in enumerate(np.flatnonzero(data.labels == fashion_class)[:count]):
            files.append(root / folder / f"{number:03d}.png")
            Image.fromarray(data.images[index]).save(files[-1])
    return files


def test_prepare_shipped_fills_the_cache(monkeypatch, tmp_path: Path):
    import convlens.runformat
    from convlens.models import load_model

    monkeypatch.setattr(convlens.runformat, "shipped_names", lambda: ["deepeyes", "basecnn"])
    fashion_folder(tmp_path, {"bag": 8, "boot": 9}, 10)
    monkeypatch.setattr(activations, "SHIPPED_DATA", str(tmp_path))
    seen: list[tuple[int, int]] = []
    names = prepare_shipped(progress=lambda done, total: seen.append((done, total)))
    assert names == ["deepeyes", "basecnn"]
    assert seen[-1] == (40, 40) and (20, 40) in seen
    for name in names:
        assert cache_path(load_model(name), str(tmp_path)).is_file()


# --- data sources and arguments -----------------------------------------------------------------


def test_samples_have_no_classes():
    model = tiny_model(channels=3)
    assert default_limit(model) == activations.IMAGENET_LIMIT
    assert default_limit(tiny_model()) is None
    analysis = analyze(model, "samples", top_k=2, cache=False)
    payload = analysis.to_json()
    assert payload["images"] == 15 and payload["classes"] == []
    for layer in payload["layers"]:
        assert layer["per_class_mean"] == []
        assert all(p["label"] is None for patches in layer["top_patches"] for p in patches)


@pytest.mark.parametrize(
    "data",
    ["", "nowhere/at/all", "fashion-mnist:validation", "fashion-mnist:test:3", "file"],
)
def test_bad_sources_say_so_in_one_sentence(data, tmp_path: Path):
    if data == "file":
        data = str(tmp_path / "image.png")
        Image.new("RGB", (4, 4)).save(data)
    with pytest.raises(ImageSourceError) as error:
        open_source(data)
    assert "\n" not in str(error.value) and str(error.value).endswith(".")


def test_bad_arguments_raise_value_errors():
    model = tiny_model()
    for options, words in (
        ({"layers": ["features.pool1"]}, "not a conv or linear layer"),
        ({"layers": ["nope"]}, "choose from features.conv1"),
        ({"top_k": 0}, "top_k"),
        ({"limit": 0}, "limit"),
        ({"reduce": "median"}, "reduce"),
    ):
        with pytest.raises(ValueError, match=words):
            analyze(model, "fashion-mnist:test", cache=False, **options)
    assert count_hooks(model.module) == 0


# --- the command line ---------------------------------------------------------------------------

PATCH_KEYS = {"image", "label", "y", "x", "value", "box"}


def test_analyze_json_schema_and_out_file(tmp_path: Path, capsys):
    out = tmp_path / "analysis.json"
    argv = ["analyze", "--model", "deepeyes", "--data", "fashion-mnist:test", "--limit", "40"]
    argv += ["--layers", "features.conv2,classifier.fc2", "--top-k", "3"]
    assert main([*argv, "--json", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == printed
    assert set(printed) == {"model", "data", "images", "classes", "layers"}
    assert printed["model"] == "deepeyes" and printed["data"] == "fashion-mnist:test"
    assert printed["images"] == 40 and printed["classes"] == list(FASHION_MNIST_CLASSES)
    assert [layer["id"] for layer in printed["layers"]] == ["features.conv2", "classifier.fc2"]
    for layer, neurons in zip(printed["layers"], (50, 10), strict=True):
        assert set(layer) == {
            "id",
            "neurons",
            "per_class_mean",
            "max",
            "frequency",
            "frequency_patches",
            "top_patches",
        }
        assert layer["neurons"] == neurons
        assert len(layer["per_class_mean"]) == 10
        assert all(len(row) == neurons for row in layer["per_class_mean"])
        assert len(layer["max"]) == len(layer["frequency"]) == len(layer["top_patches"]) == neurons
        for patches in layer["top_patches"]:
            assert len(patches) == 3
            for patch in patches:
                assert set(patch) == PATCH_KEYS
                assert isinstance(patch["label"], int) and len(patch["box"]) == 4
    assert main(argv) == 0
    summary = capsys.readouterr().out
    assert "40 images" in summary and "features.conv2" in summary and "classifier.fc2" in summary


@pytest.mark.parametrize(
    "extra",
    [
        ["--data", "no/such/folder"],
        ["--data", "fashion-mnist:test", "--layers", "features.pool1"],
        ["--data", "fashion-mnist:test", "--limit", "0"],
    ],
)
def test_analyze_bad_input_exits_2_with_one_line(extra, capsys):
    assert main(["analyze", "--model", "deepeyes", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("convlens: ") and err.count("\n") == 1


def test_prepare_fills_the_cache_once(capsys):
    argv = ["prepare", "--model", "deepeyes", "--data", "fashion-mnist:test", "--limit", "30"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "30 images" in first and "cached" in first
    assert main(argv) == 0
    assert "already cached" in capsys.readouterr().out


def test_argmax_through_numpy_matches_torch_on_ties_and_nan():
    """The first position of the maximum, or of the first NaN, on contiguous and strided maps."""
    maps = torch.tensor(
        [
            [[1.0, 3.0, 3.0, 0.0], [float("nan"), 2.0, float("nan"), 9.0]],
            [[-1.0, -1.0, -2.0, -1.0], [0.0, -0.0, 0.0, -5.0]],
        ]
    )
    for values in (maps, maps.transpose(0, 1), maps.reshape(-1, 4)[[3, 0, 2]]):
        assert torch.equal(activations._argmax(values), values.argmax(dim=-1))
    assert activations._argmax(maps).tolist() == [[1, 0], [0, 0]]


def test_batch_norms_folded_into_their_convs_give_the_same_statistics(monkeypatch):
    """`analyze` runs a model with its batch norms folded into the convs before them (fewer
    layers per pass); its statistics are those of the model as it is."""
    model = tiny_model("tiny_bn")
    torch.manual_seed(1)
    norm = nn.BatchNorm2d(6)
    norm.running_mean.uniform_(-0.5, 0.5)
    norm.running_var.uniform_(0.5, 2)
    norm.weight.data.uniform_(0.5, 2)
    norm.bias.data.uniform_(-0.5, 0.5)
    features = model.module.features
    features.relu2 = nn.Sequential(norm.eval(), nn.ReLU())  # conv2 -> batch norm -> ReLU
    norm_calls = []
    norm.register_forward_pre_hook(lambda module, args: norm_calls.append(1))

    def statistics():
        return analyze(model, "fashion-mnist:test", limit=IMAGES, batch_size=BATCH, cache=False)

    folded = statistics()
    assert len(norm_calls) < -(-IMAGES // BATCH), "the batches ran without the batch norm"
    monkeypatch.setattr(activations, "folded_model", lambda module, probe, reads: module)
    plain = statistics()
    for mine, theirs in zip(folded.layers, plain.layers, strict=True):
        np.testing.assert_allclose(mine.per_class_mean, theirs.per_class_mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(mine.max, theirs.max, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(mine.top_patches.image, theirs.top_patches.image)
