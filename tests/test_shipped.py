"""Packing a run for shipping, its card, and the models and runs shipped in assets/runs."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from convlens.cli import main
from convlens.data import FASHION_MNIST_CLASSES, fashion_mnist
from convlens.models import load_model, model_spec
from convlens.runformat import (
    list_snapshots,
    load_snapshot,
    read_card,
    read_manifest,
    shipped_names,
    shipped_run,
    snapshot_dir,
    weight_steps,
)
from convlens.runs import list_runs
from convlens.shipped import card_markdown, pack_run
from convlens.training import evaluate, evenly_kept, normalize, train

# The issue's targets: the cards may not lower them.
MINIMUM_ACCURACY = {"fashion_deepeyes": 0.89, "fashion_basecnn": 0.91}
TINY = {"conv1": 2, "conv2": 4, "fc1": 8, "probe_images": 8, "probe_patches": 10}


def test_evenly_kept_keeps_first_last_and_spreads_the_rest():
    assert evenly_kept([0, 1, 2, 3, 4, 5, 6, 7, 8], 3) == [0, 4, 8]
    assert evenly_kept([0, 1, 2, 3, 4, 5, 6, 7, 8], 5) == [0, 2, 4, 6, 8]
    assert evenly_kept([10, 20, 30], 1) == [30]
    assert evenly_kept([10, 20, 30], 5) == [10, 20, 30]
    assert evenly_kept([], 3) == []


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny run over one full epoch, and a packed copy of it."""
    root = tmp_path_factory.mktemp("shipping")
    original, packed = root / "original", root / "tiny_fashion"
    train("deepeyes", original, epochs=1, progress=False, snapshot_every=150, seed=2, **TINY)
    shutil.copytree(original, packed)
    pack_run(packed, snapshots=4, weights=2)
    return original, packed


def test_pack_keeps_few_snapshots_and_weights_in_half_precision(packed):
    original, run = packed
    steps = list_snapshots(original)
    assert steps == [150, 300, 450, 600, 750, 900, 938]
    kept = list_snapshots(run)
    assert kept == evenly_kept(steps, 4) == [150, 450, 750, 938]
    assert weight_steps(run) == [150, 938]
    first = load_file(snapshot_dir(run, 150) / "weights.safetensors")
    last = load_file(snapshot_dir(run, 938) / "weights.safetensors")
    for step, stored in ((150, first), (938, last)):
        reference = load_file(snapshot_dir(original, step) / "weights.safetensors")
        assert stored.keys() == reference.keys()
        for key, value in reference.items():
            assert stored[key].dtype == torch.float16
            assert torch.equal(stored[key], value.half())
    for step in kept:
        folder = snapshot_dir(run, step)
        assert not (folder / "state.pt").exists()
        assert (folder / "stats.safetensors").is_file() and (folder / "probe.safetensors").is_file()
    assert not any(p.name.startswith(".") for p in run.rglob("*"))


def test_a_packed_run_loads_where_it_kept_weights(packed):
    original, run = packed
    model, _ = load_snapshot(run)
    reference, _ = load_snapshot(original)
    for (name, a), (_, b) in zip(
        model.state_dict().items(), reference.state_dict().items(), strict=True
    ):
        assert a.dtype == b.dtype == torch.float32, name
        assert torch.equal(a, b.half().float()), name
    early, _ = load_snapshot(run, 150)
    assert early.features.conv1.weight.dtype == torch.float32
    with pytest.raises(
        FileNotFoundError, match="kept no weights at step 450; it has weights at steps 150, 938"
    ):
        load_snapshot(run, 450)
    with pytest.raises(FileNotFoundError, match="resume state"):
        train("deepeyes", run, epochs=2, resume=True, progress=False)


def test_card_tells_what_the_run_is_and_its_command_reproduces_it(packed, tmp_path, monkeypatch):
    original, run = packed
    card = read_card(run)
    manifest = read_manifest(original)
    assert card.name == "tiny_fashion" and card.arch == "deepeyes"
    assert card.arch_options == {"conv1": 2, "conv2": 4, "fc1": 8}
    assert (card.epochs, card.steps, card.seed, card.data) == (1, 938, 2, "fashion-mnist")
    assert card.trained_test_accuracy == manifest["summary"]["test_accuracy"]
    data = fashion_mnist("test")
    images, labels = torch.tensor(data.images), torch.tensor(data.labels).long()
    with torch.no_grad():
        assert card.test_accuracy == evaluate(load_snapshot(run)[0], images, labels)[0]
    assert abs(card.test_accuracy - card.trained_test_accuracy) < 0.01
    assert card.parameters == sum(p.numel() for p in load_snapshot(run)[0].parameters())
    assert card.training_seconds > 0
    markdown = (run / "card.md").read_text()
    assert f"{card.test_accuracy:.2%}" in markdown and card.command in markdown

    train_part, pack_part = card.command.split(" && ")
    assert (
        pack_part
        == "python -m convlens runs pack assets/runs/tiny_fashion --snapshots 4 --weights 2"
    )
    arguments = shlex.split(train_part)
    assert arguments[:4] == ["python", "-m", "convlens", "train"]
    arguments = arguments[3:]
    arguments[arguments.index("--out") + 1] = str(tmp_path / "again")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert main(arguments) == 0
    again = load_file(snapshot_dir(tmp_path / "again", 938) / "weights.safetensors")
    for key, value in load_file(snapshot_dir(original, 938) / "weights.safetensors").items():
        assert torch.equal(again[key], value), key


def test_pack_refuses_an_unfinished_run_and_leaves_it_alone(tmp_path):
    run = tmp_path / "run"
    train("deepeyes", run, epochs=1, progress=False, limit_train=64, snapshot_every=1, **TINY)
    manifest = read_manifest(run)
    manifest["finished"] = False
    (run / "manifest.json").write_text(json.dumps(manifest))
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    with pytest.raises(ValueError, match="only a finished run"):
        pack_run(run)
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    assert main(["runs", "pack", str(run)]) == 2


# --------------------------------------------------------------------------------------------
# What ships in assets/runs


def test_the_issue_s_models_and_runs_ship():
    names = set(shipped_names())
    assert {
        "fashion_deepeyes",
        "fashion_basecnn",
        "fashion_basecnn_x0.25",
        "fashion_basecnn_shallow",
        "fashion_basecnn_hinge",
        "fashion_basecnn_hinge_bn",
    } <= names
    listed = {Path(run.path).name: run for run in list_runs() if run.shipped}
    for name in names:
        assert listed[name].status == "finished"


def test_the_failure_example_says_it_is_meant_to_fail_wherever_its_model_is_named():
    """CNNVis 7.3's hinge-loss run stays at 10%: its card, the model's description (the sidebar,
    Home) and the run listing (Training) say that this is the point."""
    hinge = shipped_run("fashion_basecnn_hinge")
    role = read_card(hinge).role
    assert role.startswith("meant to fail") and "CNNVis 7.3" in role
    assert role in model_spec("fashion_basecnn_hinge").description
    assert role[1:] in (hinge / "card.md").read_text()
    listed = {Path(run.path).name: run for run in list_runs() if run.shipped}
    assert listed["fashion_basecnn_hinge"].role == role
    assert listed["fashion_basecnn"].role == ""
    assert "meant to fail" not in model_spec("fashion_basecnn").description


def test_every_shipped_card_md_is_written_from_its_card_json():
    for name in shipped_names():
        run = shipped_run(name)
        assert (run / "card.md").read_text() == card_markdown(read_card(run), read_manifest(run))


def test_everything_shipped_in_assets_stays_under_40_mb():
    from convlens.paths import ASSETS_DIR

    size = sum(p.stat().st_size for p in ASSETS_DIR.rglob("*") if p.is_file())
    assert size < 40e6, f"assets/ holds {size / 1e6:.1f} MB"


@pytest.fixture(scope="module")
def test_split() -> tuple[torch.Tensor, torch.Tensor]:
    data = fashion_mnist("test")
    return torch.tensor(np.asarray(data.images)), torch.tensor(np.asarray(data.labels)).long()


@pytest.mark.parametrize("name", shipped_names())
def test_shipped_model_reaches_its_card_s_accuracy(name, test_split):
    """Evaluate the model that load_model gives on the bundled test split; do not trust the card."""
    images, labels = test_split
    card = read_card(shipped_run(name))
    loaded = load_model(name, device="cpu")
    assert loaded.weights_status == "bundled"
    assert loaded.class_names == list(FASHION_MNIST_CLASSES)
    with torch.no_grad():
        accuracy, _ = evaluate(loaded.module, images, labels)
    assert accuracy == pytest.approx(card.test_accuracy, abs=1e-4)
    assert accuracy >= MINIMUM_ACCURACY.get(name, 0.0)
    if "hinge" in name and "bn" not in name:
        assert accuracy < 0.2, "the failing run of CNNVis 7.3 should not learn"
    assert model_spec(name).description.endswith(f"(card: assets/runs/{name}/card.md)")


def test_the_app_s_preprocessing_matches_training_for_fashion_mnist(test_split):
    images, _ = test_split
    loaded = load_model(shipped_names()[0], device="cpu")
    for index in (0, 1, 9999):
        pil = Image.fromarray(images[index].numpy(), mode="L")
        assert torch.allclose(
            loaded.transform(pil), normalize(images[index : index + 1])[0], atol=1e-6
        )
