"""The models and runs that ship in assets/runs: packing a finished run for shipping, and its card.

A shipped run is a recorded run (see `convlens.runformat`) made small by `pack_run`: it keeps a
few evenly spaced snapshots (stats and probe activations, float16 already), the weights of only
some of them (the last always), in float16, and no resume state. Its card,
``card.json`` and ``card.md``, says what it is and the exact commands that reproduce it. Every
folder under assets/runs with a card is also a model of the zoo, named by the folder
(`convlens.models`); `convlens.runformat.shipped_names` lists them.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save

from convlens.data import fashion_mnist
from convlens.paths import write_atomic
from convlens.runformat import (
    Card,
    list_snapshots,
    load_snapshot,
    read_manifest,
    read_metrics,
    run_status,
    snapshot_dir,
    weight_steps,
)
from convlens.training import TrainConfig, evaluate, evenly_kept, remove_dir, retrain_command

ARCH_TITLES = {"deepeyes": "DeepEyes' MNIST network", "basecnn": "CNNVis' BaseCNN"}


def pack_run(
    run_dir: str | Path, *, snapshots: int = 10, weights: int = 1, note: str = "", role: str = ""
) -> Card:
    """Shrink the finished run in `run_dir` for shipping, in place, and write its card.

    Keeps `snapshots` snapshots (first and last, the rest evenly spaced) and the weights of
    `weights` of them (the last always), stored in float16; removes the resume state. The card's
    test accuracy is measured again with the stored weights, on the whole test split. `note` goes
    on the card as it is (what the run shows, why it was made), `role` as one line shown with the
    model in the app (e.g. that it is meant to fail); the card's command leaves both out.
    """
    run_dir = Path(run_dir)
    if run_status(run_dir) != "finished":
        raise ValueError(f"only a finished run is packed; the run in {run_dir} is not.")
    if snapshots < 1 or weights < 1:
        raise ValueError("keep at least one snapshot and one set of weights.")
    manifest = read_manifest(run_dir)
    steps = list_snapshots(run_dir)
    kept = evenly_kept(steps, snapshots)
    for step in steps:
        if step not in kept:
            remove_dir(snapshot_dir(run_dir, step))
    with_weights = set(evenly_kept([s for s in kept if s in weight_steps(run_dir)], weights))
    for step in kept:
        folder = snapshot_dir(run_dir, step)
        (folder / "state.pt").unlink(missing_ok=True)
        weights_file = folder / "weights.safetensors"
        if step not in with_weights:
            weights_file.unlink(missing_ok=True)
        else:
            _rewrite_half(weights_file)
    name = run_dir.name
    metrics = read_metrics(run_dir)
    trained_accuracy = [r["test_accuracy"] for r in metrics if "test_accuracy" in r][-1]
    accuracy = _test_accuracy(run_dir, manifest["config"]["loss"])
    summary = manifest.get("summary") or {}
    model_weights = load_file(snapshot_dir(run_dir, kept[-1]) / "weights.safetensors")
    parameters = sum(
        v.numel() for k, v in model_weights.items() if v.is_floating_point() and "running_" not in k
    )
    size = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file())
    storage = (
        f"{len(kept)} snapshots (steps {', '.join(map(str, kept))}) with statistics and probe "
        f"activations in float16 ({manifest['config']['probe_images']} probe images, "
        f"{manifest['config']['probe_patches']} receptive fields per conv layer); weights at "
        f"steps {', '.join(map(str, sorted(with_weights)))} in float16; no resume state; "
        f"{size / 1e6:.1f} MB on disk."
    )
    out = f"assets/runs/{name}"
    command = (
        f"{retrain_command(manifest, out)} && "
        f"python -m convlens runs pack {out} --snapshots {snapshots} --weights {weights}"
    )
    card = Card(
        name=name,
        title=f"{ARCH_TITLES.get(manifest['arch'], manifest['arch'])} on Fashion-MNIST",
        arch=manifest["arch"],
        arch_options=dict(manifest["arch_options"]),
        data=manifest["config"]["data"],
        epochs=int(manifest["config"]["epochs"]),
        steps=int(summary.get("steps", kept[-1])),
        seed=int(manifest["config"]["seed"]),
        test_accuracy=float(accuracy),
        trained_test_accuracy=float(trained_accuracy),
        training_seconds=float(summary.get("seconds", float("nan"))),
        parameters=int(parameters),
        command=command,
        storage=storage,
        note=note,
        role=role,
    )
    write_atomic(run_dir / "card.json", json.dumps(dataclasses.asdict(card), indent=2) + "\n")
    write_atomic(run_dir / "card.md", card_markdown(card, manifest))
    return card


def card_markdown(card: Card, manifest: dict) -> str:
    """Return the card as Markdown, for people reading assets/ (and the app)."""
    config = manifest["config"]
    options = ", ".join(f"{k}={v}" for k, v in sorted(card.arch_options.items())) or "defaults"
    minutes = card.training_seconds / 60
    versions = ", ".join(f"{k} {v}" for k, v in sorted(manifest.get("versions", {}).items()))
    return "\n".join(
        [
            f"# {card.name}: {card.title}",
            "",
            *([f"**{card.role[0].upper()}{card.role[1:]}.**", ""] if card.role else []),
            f"- Architecture: `{card.arch}` ({options}), {card.parameters:,} parameters",
            f"- Data: {card.data} (trained on the 60,000 training images, tested on the 10,000 "
            "test images)",
            f"- Training: {card.epochs} epochs ({card.steps:,} steps), seed {card.seed}, "
            f"{config['optimizer']} lr {TrainConfig(**config).learning_rate} "
            f"({config.get('schedule', 'constant')}), batch {config['batch_size']}, "
            f"loss {config['loss']}, init {config['init']}",
            f"- Test accuracy: {card.test_accuracy:.2%} with the shipped float16 weights "
            f"({card.trained_test_accuracy:.2%} at the end of training, in float32)",
            f"- Training time: {minutes:.1f} minutes on {manifest.get('device', 'cpu')}",
            f"- Stored: {card.storage}",
            f"- Versions: {versions}",
            "",
            *([card.note, ""] if card.note else []),
            "Reproduce it (from the repository root):",
            "",
            "```",
            card.command,
            "```",
            "",
        ]
    )


def _test_accuracy(run_dir: Path, loss: str) -> float:
    """Return the accuracy of the run's last stored weights on the whole test split."""
    data = fashion_mnist("test")
    images = torch.tensor(np.asarray(data.images))
    labels = torch.tensor(np.asarray(data.labels)).long()
    model, _ = load_snapshot(run_dir)
    with torch.no_grad():
        return evaluate(model, images, labels, loss)[0]


def _rewrite_half(path: Path) -> None:
    """Store a weights file's floating-point tensors in float16 (written by rename)."""
    tensors = load_file(path)
    if all(v.dtype == torch.float16 for v in tensors.values() if v.is_floating_point()):
        return
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    write_atomic(path, save(half))
