"""Training with a recorder: small CNNs, the files of a run, resume, statistics, readers."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from convlens.data import fashion_mnist
from convlens.hooks import count_hooks, record_outputs
from convlens.paths import convlens_home
from convlens.runformat import (
    list_snapshots,
    load_snapshot,
    read_manifest,
    read_metrics,
    run_status,
    shipped_names,
    shipped_run,
)
from convlens.smallnets import SMALL_ARCHS, BaseCNN, DeepEyesNet, build_small
from convlens.training import (
    RunSummary,
    TrainConfig,
    _probe_activations,
    _probe_from_index,
    command_lines,
    normalize,
    retrain_command,
    train,
    train_command,
)

# 512 images in batches of 64: 8 steps an epoch.
TINY = dict(
    conv1=4,
    conv2=8,
    fc1=16,
    limit_train=512,
    limit_test=200,
    probe_images=40,
    probe_patches=60,
    snapshot_every=3,
    progress=False,
)
STEPS_PER_EPOCH = 8


class Killed(Exception):
    """Stands for the process being killed."""


def kill_at(step: int):
    def callback(current: int) -> None:
        if current == step:
            raise Killed

    return callback


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    step = list_snapshots(run_dir)[-1]
    return load_file(run_dir / "snapshots" / f"step_{step:08d}" / "weights.safetensors")


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted two-epoch tiny run (16 steps, snapshots at 3, 6, 8, 9, 12, 15, 16)."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    summary = train("deepeyes", run_dir, epochs=2, seed=7, **TINY)
    assert isinstance(summary, RunSummary)
    assert summary.steps == 2 * STEPS_PER_EPOCH
    return run_dir


# --------------------------------------------------------------------------------------------
# Small CNNs


def test_train_command_spells_options_as_the_cli_does():
    options = {"epochs": 3, "batch_size": 32, "batchnorm": True, "depth": None, "seed": 0}
    assert " ".join(train_command("basecnn", {**options, "resume": False}, "runs/x")) == (
        "python -m convlens train --arch basecnn --epochs 3 --batch-size 32 --batchnorm --seed 0 "
        "--out runs/x"
    )
    assert train_command("deepeyes", {"epochs": 1}, python="/venv/python")[:1] == ["/venv/python"]
    assert "--out" not in train_command("deepeyes", {"epochs": 1})


SUGGESTED = (
    "python -m convlens train --arch deepeyes --fc1 124 --data fashion-mnist --epochs 6 "
    "--seed 0 --probe-images 200 --probe-patches 1000 --keep-snapshots 10"
)


@pytest.mark.parametrize("width", [30, 40, 76, 200])
def test_a_long_command_is_shown_on_lines_the_shell_reads_as_the_same_command(width: int):
    """`command_lines` breaks a command between options (each beside its value) with a
    backslash: bash reads the same words, the lines fit `width`, and no line starts with a value."""
    shown = command_lines(SUGGESTED, width)
    words = subprocess.run(
        ["bash", "-c", f"printf '%s\\n' {shown}"], capture_output=True, text=True, check=True
    ).stdout.split("\n")[:-1]
    assert words == SUGGESTED.split()
    lines = shown.split("\n")
    assert all(len(line) <= width for line in lines)
    assert all(line.startswith("    --") for line in lines[1:])
    assert (len(lines) == 1) == (len(SUGGESTED) <= width)
    assert "--probe-images 200" in shown and "--fc1 124" in shown


@pytest.mark.parametrize("name", shipped_names())
def test_a_shipped_cards_command_is_the_retrain_command_of_its_manifest(name: str):
    """The card's command was written by `retrain_command` when the run was packed."""
    card = json.loads((shipped_run(name) / "card.json").read_text())
    manifest = read_manifest(shipped_run(name))
    train_part = card["command"].split(" && ")[0]
    assert train_part == retrain_command(manifest, f"assets/runs/{name}")
    assert " --seed " in train_part  # seed 0 is a value, not a missing option
    limited = {**manifest, "config": {**manifest["config"], "limit_train": 64}}
    with pytest.raises(ValueError, match="limit_train, which `convlens train` has no option"):
        retrain_command(limited)


def test_basecnn_has_about_0_9m_parameters():
    model = BaseCNN()
    params = sum(p.numel() for p in model.parameters())
    assert params == 912_362
    assert 0.85e6 < params < 0.95e6


@pytest.mark.parametrize(
    ("options", "convs", "pools", "first_width"),
    [
        ({}, 10, 4, 32),
        ({"depth": "shallow"}, 7, 3, 32),
        ({"depth": "deep"}, 20, 4, 32),
        ({"width": 0.25}, 10, 4, 8),
        ({"width": 4}, 10, 4, 128),
        ({"width": 0.01}, 10, 4, 1),
        ({"batchnorm": True}, 10, 4, 32),
    ],
)
def test_basecnn_variants(options, convs, pools, first_width):
    model = BaseCNN(**options)
    layers = list(model.features)
    conv_layers = [m for m in layers if isinstance(m, nn.Conv2d)]
    assert len(conv_layers) == convs
    assert sum(isinstance(m, nn.MaxPool2d) for m in layers) == pools
    assert conv_layers[0].out_channels == first_width
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in conv_layers)
    names = [name for name, _ in model.features.named_children()]
    if options.get("batchnorm"):
        assert names[:3] == ["conv1_1", "bn1_1", "relu1_1"]
    else:
        assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        assert names[:2] == ["conv1_1", "relu1_1"]
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_deepeyes_net_shapes():
    model = DeepEyesNet()
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert model.classifier.fc1.in_features == 50 * 4 * 4
    assert DeepEyesNet(conv1=4, conv2=8, fc1=16)(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_build_small_names_and_errors():
    assert set(SMALL_ARCHS) == {"deepeyes", "basecnn"}
    assert isinstance(build_small("basecnn", width=0.5), BaseCNN)
    with pytest.raises(ValueError, match="unknown small architecture"):
        build_small("lenet")
    with pytest.raises(ValueError, match="does not take"):
        build_small("deepeyes", width=2)
    with pytest.raises(ValueError, match="depth"):
        build_small("basecnn", depth="huge")


# --------------------------------------------------------------------------------------------
# The files of a run


def test_recorder_files_follow_their_schema(reference: Path):
    manifest = read_manifest(reference)
    assert manifest["arch"] == "deepeyes"
    assert manifest["arch_options"] == {"conv1": 4, "conv2": 8, "fc1": 16}
    assert manifest["data"] == "fashion-mnist"
    assert manifest["seed"] == 7 and manifest["config"]["seed"] == 7
    assert manifest["config"]["batch_size"] == 64 and manifest["learning_rate"] == 0.01
    assert manifest["classes"][0] == "T-shirt/top" and len(manifest["classes"]) == 10
    assert {"torch", "numpy", "safetensors", "python"} <= manifest["versions"].keys()
    assert manifest["finished"] is True and manifest["summary"]["steps"] == 16
    assert run_status(reference) == "finished"
    assert not (reference / "pid").exists()

    records = read_metrics(reference)
    steps = [r for r in records if "loss" in r]
    epochs = [r for r in records if "test_accuracy" in r]
    assert [r["step"] for r in steps] == list(range(1, 17))
    assert all(set(r) == {"step", "epoch", "loss", "batch_accuracy", "lr"} for r in steps)
    assert [r["epoch"] for r in steps] == [1] * 8 + [2] * 8
    assert [(r["step"], r["epoch"]) for r in epochs] == [(8, 1), (16, 2)]
    assert all(set(r) == {"step", "epoch", "test_accuracy", "test_loss"} for r in epochs)
    assert 0 <= epochs[-1]["test_accuracy"] <= 1

    assert list_snapshots(reference) == [3, 6, 8, 9, 12, 15, 16]
    names = {p.name for p in (reference / "snapshots").iterdir()}
    assert names == {f"step_{s:08d}" for s in (3, 6, 8, 9, 12, 15, 16)}
    for step in list_snapshots(reference):
        files = {p.name for p in (reference / "snapshots" / f"step_{step:08d}").iterdir()}
        expected = {"weights.safetensors", "stats.safetensors", "probe.safetensors"}
        assert files == (expected | {"state.pt"} if step == 16 else expected)

    index = load_file(reference / "probe_index.safetensors")
    layers = manifest["probe_layers"]
    assert layers == {
        "features.conv1": "features.relu1",
        "features.conv2": "features.relu2",
        "classifier.fc1": "classifier.relu3",
        "classifier.fc2": "classifier.fc2",
    }
    assert index["images"].shape == (40,) and index["labels"].shape == (40,)
    assert index["features.conv1.image"].shape == (60,)
    assert int(index["features.conv1.y"].max()) < 24 and int(index["features.conv2.x"].max()) < 8
    assert torch.equal(index["classifier.fc1.image"], index["images"])

    folder = reference / "snapshots" / "step_00000016"
    stats = load_file(folder / "stats.safetensors")
    for layer, (out, inp) in {
        "features.conv1": (4, 1),
        "features.conv2": (8, 4),
        "classifier.fc1": (16, 8),  # fc1 reads conv2's 8 channels (flattened): summed per channel
        "classifier.fc2": (10, 16),
    }.items():
        assert stats[f"{layer}.grad_norm"].shape == () and stats[f"{layer}.grad_norm"] > 0
        assert stats[f"{layer}.weight_change"].dtype == torch.float32
        assert stats[f"{layer}.filter_weight_change"].shape == (out,)
        assert stats[f"{layer}.filter_weight_change"].dtype == torch.float16
        assert stats[f"{layer}.edge_abs_grad"].shape == (out, inp)
        assert stats[f"{layer}.edge_weight"].dtype == torch.float16
    with safe_open(folder / "stats.safetensors", "pt") as handle:
        assert handle.metadata() == {"step": "16", "previous_step": "15", "steps_averaged": "1"}

    # the probe holds the activation layer's output at the sampled positions
    probe = load_file(folder / "probe.safetensors")
    assert (
        probe["features.conv2"].shape == (60, 8) and probe["features.conv2"].dtype == torch.float16
    )
    assert probe["classifier.fc2"].shape == (40, 10)
    model, _ = load_snapshot(reference)
    test = fashion_mnist("test")
    row = 5
    image = int(index["features.conv2.image"][row])
    with record_outputs(model, {"features.relu2", "classifier.fc2"}) as outputs:
        model(normalize(torch.tensor(test.images[image : image + 1])))
    y, x = int(index["features.conv2.y"][row]), int(index["features.conv2.x"][row])
    expected = outputs["features.relu2"][0, :, y, x].half()
    assert torch.allclose(probe["features.conv2"][row].float(), expected.float(), atol=1e-2)


def test_load_snapshot_returns_the_recorded_weights(reference: Path):
    model, manifest = load_snapshot(reference, 8)
    weights = load_file(reference / "snapshots" / "step_00000008" / "weights.safetensors")
    assert not model.training and manifest["arch"] == "deepeyes"
    assert_same_weights({k: v for k, v in model.state_dict().items()}, weights)
    with pytest.raises(FileNotFoundError, match="no snapshot at step 5"):
        load_snapshot(reference, 5)


def test_read_metrics_skips_a_trailing_partial_line(tmp_path: Path):
    lines = [{"step": 1, "epoch": 1, "loss": 2.3, "batch_accuracy": 0.1, "lr": 0.01}]
    (tmp_path / "metrics.jsonl").write_text(json.dumps(lines[0]) + '\n{"step": 2, "epo')
    assert read_metrics(tmp_path) == lines
    assert read_metrics(tmp_path / "missing") == []


# --------------------------------------------------------------------------------------------
# Determinism and resume


def test_same_seed_gives_identical_weights(reference: Path, tmp_path: Path):
    train("deepeyes", tmp_path / "again", epochs=2, seed=7, **TINY)
    assert_same_weights(final_weights(reference), final_weights(tmp_path / "again"))
    assert read_metrics(reference) == read_metrics(tmp_path / "again")
    train("deepeyes", tmp_path / "other", epochs=1, seed=8, **TINY)
    first = load_file(reference / "snapshots" / "step_00000008" / "weights.safetensors")
    other = final_weights(tmp_path / "other")
    assert not torch.equal(first["features.conv1.weight"], other["features.conv1.weight"])


def test_resume_equals_an_uninterrupted_run(reference: Path, tmp_path: Path):
    run_dir = tmp_path / "run"
    with pytest.raises(Killed):
        train("deepeyes", run_dir, epochs=2, seed=7, callback=kill_at(11), **TINY)
    assert list_snapshots(run_dir) == [3, 6, 8, 9]
    assert run_status(run_dir) == "incomplete"
    summary = train("deepeyes", run_dir, epochs=2, resume=True, **TINY)
    assert summary.steps == 16
    assert run_status(run_dir) == "finished"
    assert list_snapshots(run_dir) == list_snapshots(reference)
    assert_same_weights(final_weights(reference), final_weights(run_dir))
    assert read_metrics(run_dir) == read_metrics(reference)
    for step in (12, 16):
        name = f"snapshots/step_{step:08d}/stats.safetensors"
        assert_same_weights(load_file(reference / name), load_file(run_dir / name))
    # only the last snapshot keeps the optimizer and RNG state
    assert [
        s
        for s in list_snapshots(run_dir)
        if (run_dir / f"snapshots/step_{s:08d}/state.pt").exists()
    ] == [16]


def test_a_run_killed_mid_write_opens_and_resumes(reference: Path, tmp_path: Path):
    run_dir = tmp_path / "run"
    with pytest.raises(Killed):
        train("deepeyes", run_dir, epochs=2, seed=7, callback=kill_at(7), **TINY)
    # what a kill during the next snapshot and metrics line leaves behind
    half = run_dir / "snapshots" / ".tmp-step_00000008-99999"
    half.mkdir()
    (half / "weights.safetensors").write_bytes(b"\x00\x01")
    with open(run_dir / "metrics.jsonl", "a") as metrics:
        metrics.write('{"step": 8, "epoch": 1, "lo')
    (run_dir / "pid").write_text("999999999\n")

    assert run_status(run_dir) == "incomplete"
    assert list_snapshots(run_dir) == [3, 6]
    assert [r["step"] for r in read_metrics(run_dir)] == list(range(1, 8))
    model, manifest = load_snapshot(run_dir)
    assert manifest["finished"] is False and isinstance(model, DeepEyesNet)

    train("deepeyes", run_dir, epochs=2, resume=True, **TINY)
    assert not half.exists()
    assert_same_weights(final_weights(reference), final_weights(run_dir))
    assert read_metrics(run_dir) == read_metrics(reference)


def test_resume_refuses_other_options_and_train_refuses_an_existing_run(reference: Path):
    with pytest.raises(ValueError, match="other options"):
        train("deepeyes", reference, epochs=2, resume=True, **{**TINY, "lr": 0.5})
    with pytest.raises(FileExistsError):
        train("deepeyes", reference, epochs=2, **TINY)


def test_resuming_a_finished_run_with_more_epochs_continues_it(reference: Path, tmp_path: Path):
    run_dir = tmp_path / "run"
    train("deepeyes", run_dir, epochs=1, seed=7, **TINY)
    assert read_manifest(run_dir)["summary"]["steps"] == 8
    summary = train("deepeyes", run_dir, epochs=2, resume=True, **TINY)
    assert summary.steps == 16 and read_manifest(run_dir)["config"]["epochs"] == 2
    assert_same_weights(final_weights(reference), final_weights(run_dir))


# --------------------------------------------------------------------------------------------
# Statistics against a hand computation


def test_gradient_norm_and_relative_weight_change_match_a_hand_computation(tmp_path: Path):
    lr, seed = 0.1, 3
    run_dir = tmp_path / "run"
    options = {**TINY, "limit_train": 64, "snapshot_every": 1}
    train("deepeyes", run_dir, epochs=1, seed=seed, lr=lr, **options)
    assert list_snapshots(run_dir) == [1]

    torch.manual_seed(seed)
    model = DeepEyesNet(conv1=4, conv2=8, fc1=16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = fashion_mnist("train")
    # one batch holds the whole (limited) train set, so the batch order does not matter
    x = normalize(torch.tensor(data.images[:64]))
    y = torch.tensor(data.labels[:64]).long()
    nn.functional.cross_entropy(model(x), y).backward()

    folder = run_dir / "snapshots" / "step_00000001"
    stats = load_file(folder / "stats.safetensors")
    weights = load_file(folder / "weights.safetensors")
    for name in ("features.conv1", "features.conv2", "classifier.fc1", "classifier.fc2"):
        module = model.get_submodule(name)
        grad = module.weight.grad
        w0 = before[f"{name}.weight"]
        w1 = w0 - lr * grad  # SGD's first step: the momentum buffer is the gradient itself
        assert torch.allclose(weights[f"{name}.weight"], w1, atol=1e-6)
        assert torch.allclose(stats[f"{name}.grad_norm"], grad.norm(), rtol=1e-4)
        change = (w1 - w0).norm() / w0.norm()
        assert torch.allclose(stats[f"{name}.weight_change"], change, rtol=1e-4)
        per_filter = (w1 - w0).flatten(1).norm(dim=1) / w0.flatten(1).norm(dim=1)
        assert torch.allclose(stats[f"{name}.filter_weight_change"].float(), per_filter, rtol=1e-2)
        if name == "classifier.fc1":  # reads the flattened (8, 4, 4) output of conv2's pool
            abs_grad = grad.abs().reshape(16, 8, 16).sum(2)
            summed = w1.reshape(16, 8, 16).sum(2)
        else:
            kernel = tuple(range(2, grad.dim()))
            abs_grad = grad.abs().sum(kernel) if kernel else grad.abs()
            summed = w1.sum(kernel) if kernel else w1
        assert torch.allclose(
            stats[f"{name}.edge_abs_grad"].float(), abs_grad, rtol=1e-2, atol=1e-4
        )
        assert torch.allclose(stats[f"{name}.edge_weight"].float(), summed, rtol=1e-2, atol=1e-3)


# --------------------------------------------------------------------------------------------
# Options


@pytest.mark.parametrize(
    ("arch", "options"),
    [
        ("deepeyes", {"loss": "hinge"}),
        ("deepeyes", {"optimizer": "adam", "init": "kaiming"}),
        ("deepeyes", {"init": "normal:0.05"}),
        ("basecnn", {"width": 0.125, "depth": "shallow", "batchnorm": True, "loss": "hinge"}),
    ],
)
def test_training_options(arch: str, options: dict, tmp_path: Path):
    base = {k: v for k, v in TINY.items() if k not in ("conv1", "conv2", "fc1")}
    if arch == "deepeyes":
        base.update(conv1=4, conv2=8, fc1=16)
    summary = train(arch, tmp_path / "run", epochs=1, **{**base, "limit_train": 128}, **options)
    assert summary.steps == 2
    records = read_metrics(tmp_path / "run")
    assert all(torch.isfinite(torch.tensor(r.get("loss", 0.0))) for r in records)
    config = read_manifest(tmp_path / "run")["config"]
    assert all(config[k] == v for k, v in options.items() if k in config)
    model, _ = load_snapshot(tmp_path / "run")
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_bad_options_raise_one_sentence(tmp_path: Path):
    for options, message in [
        ({"loss": "mse"}, "unknown loss"),
        ({"optimizer": "rmsprop"}, "unknown optimizer"),
        ({"init": "normal:-1"}, "unknown init"),
        ({"data": "mnist"}, "unknown data"),
    ]:
        with pytest.raises(ValueError, match=message):
            train("deepeyes", tmp_path / "run", epochs=1, **{**TINY, **options})
    assert TrainConfig(arch="deepeyes", optimizer="adam").learning_rate == 0.001


def test_keep_snapshots_thins_evenly_and_keeps_first_and_last(tmp_path: Path):
    run_dir = tmp_path / "run"
    seen = []

    def watch(step: int) -> None:
        seen.append(run_status(run_dir))

    train(
        "deepeyes",
        run_dir,
        epochs=2,
        seed=7,
        keep_snapshots=4,
        callback=watch,
        **{**TINY, "snapshot_every": 1},
    )
    assert seen == ["running"] * 16
    steps = list_snapshots(run_dir)
    assert len(steps) == 4 and steps[0] == 1 and steps[-1] == 16
    assert not [p for p in (run_dir / "snapshots").iterdir() if p.name.startswith(".")]
    assert (run_dir / f"snapshots/step_{steps[-1]:08d}/state.pt").exists()


def test_run_status(tmp_path: Path, reference: Path):
    assert run_status(tmp_path / "missing") == "unreadable"
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    assert run_status(tmp_path / "bad") == "unreadable"
    live = tmp_path / "live"
    live.mkdir()
    manifest = read_manifest(reference)
    (live / "manifest.json").write_text(json.dumps({**manifest, "finished": False}))
    assert run_status(live) == "incomplete"
    (live / "pid").write_text(f"{os.getpid()}\n")
    assert run_status(live) == "starting", "no step recorded yet"
    (live / "metrics.jsonl").write_text('{"step": 1, "loss"')  # a first line being written
    assert run_status(live) == "starting"
    (live / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 2.3}) + "\n")
    assert run_status(live) == "running"
    with pytest.raises(RuntimeError, match="being trained"):
        # another live process holds the run
        (live / "pid").write_text(f"{os.getppid()}\n")
        train("deepeyes", live, epochs=1, resume=True, **TINY)


def test_a_stopped_trainer_started_by_the_app_no_longer_counts_as_running(
    tmp_path: Path, reference: Path
):
    """The app's process starts trainers: one that ended (stopped by SIGTERM, before it could
    remove its pid file) is reaped, so its run reads incomplete, not running forever."""
    import signal
    import sys
    import time

    from convlens.processes import start_time
    from convlens.runs import _spawn

    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({**read_manifest(reference), "finished": False}))
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 2.3}) + "\n")
    trainer = _spawn([sys.executable, "-c", "import time; time.sleep(60)"], run)
    pid, start = (run / "pid").read_text().split()
    assert int(pid) == trainer.pid, "the app names its trainer, with its start time"
    assert int(start) == start_time(trainer.pid)
    assert run_status(run) == "running"
    os.kill(trainer.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while run_status(run) == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run_status(run) == "incomplete"
    assert (run / "pid").exists(), "the pid file is still there: only the reaping tells"


def test_a_run_reads_starting_until_its_first_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The folder as the trainer leaves it just before its first step (pid, manifest, probe
    index, an empty metrics.jsonl) is listed as starting, with its architecture."""
    from convlens import training
    from convlens.runs import describe_run

    run_dir = tmp_path / "run"
    seen = []
    write = training.Recorder.write

    def first_write(recorder, record: dict) -> None:
        if not seen:
            assert sorted(path.name for path in run_dir.iterdir()) == [
                "manifest.json",
                "metrics.jsonl",
                "pid",
                "probe_index.safetensors",
            ]
            seen.append(describe_run(run_dir))
        write(recorder, record)
        seen.append(run_status(run_dir))

    monkeypatch.setattr(training.Recorder, "write", first_write)
    train("deepeyes", run_dir, epochs=1, **TINY)
    info = seen[0]
    assert (info.status, info.arch, info.step, info.test_accuracy) == (
        "starting",
        "deepeyes",
        None,
        None,
    )
    assert seen[1:] == ["running"] * (len(seen) - 1), "from the first step on"
    assert run_status(run_dir) == "finished"


def test_a_run_the_app_just_started_reads_starting_and_stops(tmp_path: Path):
    """The folder as `start_run` leaves it, before the trainer has loaded Python and torch:
    starting, no architecture yet; Stop ends it."""
    import signal
    import sys
    import time

    from convlens.runs import _spawn, describe_run, stop_run

    run = tmp_path / "run"
    run.mkdir()
    # the real command: Stop signals only a process that is the run's `convlens train`
    trainer = _spawn(train_command("deepeyes", {"epochs": 1, **TINY}, run, sys.executable), run)
    info = describe_run(run)
    assert (info.status, info.arch, info.step) == ("starting", None, None)
    assert stop_run(str(run)) == trainer.pid
    deadline = time.monotonic() + 20
    while run_status(run) == "starting" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert trainer.poll() == -signal.SIGTERM
    assert run_status(run) == "unreadable", "it ended before writing its manifest"


def test_default_out_is_under_convlens_home(tmp_path: Path):
    summary = train("deepeyes", epochs=1, **{**TINY, "limit_train": 64})
    assert summary.path.parent == convlens_home() / "runs"
    assert run_status(summary.path) == "finished"


def test_resume_without_resume_state_says_so(reference: Path, tmp_path: Path):
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    (run_dir / "snapshots" / "step_00000016" / "state.pt").unlink()
    with pytest.raises(FileNotFoundError, match="no resume state"):
        train("deepeyes", run_dir, epochs=3, resume=True, **TINY)


def test_the_probe_leaves_no_hooks_behind_also_after_an_error(reference: Path):
    model, manifest = load_snapshot(reference)
    probe = _probe_from_index(
        load_file(reference / "probe_index.safetensors"), manifest["probe_layers"]
    )
    images = torch.tensor(fashion_mnist("test").images[:200])
    values = _probe_activations(model, probe, images)
    recorded = load_file(reference / "snapshots" / "step_00000016" / "probe.safetensors")
    assert_same_weights(values, recorded)
    assert count_hooks(model) == 0

    def broken(*args):
        raise RuntimeError("boom")

    model.classifier.fc1.register_forward_pre_hook(broken)
    with pytest.raises(RuntimeError, match="boom"):
        _probe_activations(model, probe, images)
    assert count_hooks(model) == 1  # only the test's own hook


def test_gradient_averages_sample_every_tenth_of_the_snapshot_interval(tmp_path: Path):
    run_dir = tmp_path / "run"
    train("deepeyes", run_dir, epochs=1, **{**TINY, "limit_train": 64 * 20, "snapshot_every": 20})
    assert list_snapshots(run_dir) == [20]
    with safe_open(run_dir / "snapshots/step_00000020/stats.safetensors", "pt") as handle:
        assert handle.metadata() == {"step": "20", "previous_step": "0", "steps_averaged": "10"}


def test_cosine_schedule_decays_to_zero_and_a_resumed_run_follows_it(tmp_path: Path):
    config = TrainConfig(arch="deepeyes", lr=0.2, schedule="cosine")
    assert config.lr_at(0, 16) == pytest.approx(0.2)
    assert config.lr_at(8, 16) == pytest.approx(0.1)
    assert config.lr_at(4, 16) == pytest.approx(0.1 * (1 + math.cos(math.pi / 4)))
    assert TrainConfig(arch="deepeyes", lr=0.2).lr_at(15, 16) == 0.2

    options = {**TINY, "schedule": "cosine", "lr": 0.2, "seed": 7}
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    train("deepeyes", whole, epochs=2, **options)
    with pytest.raises(Killed):
        train("deepeyes", resumed, epochs=2, callback=kill_at(11), **options)
    train("deepeyes", resumed, epochs=2, resume=True, **options)
    recorded = [r["lr"] for r in read_metrics(whole) if "lr" in r]
    assert recorded == pytest.approx([config.lr_at(step, 16) for step in range(16)])
    assert read_metrics(resumed) == read_metrics(whole)
    assert_same_weights(final_weights(whole), final_weights(resumed))
