"""Train the small CNNs on Fashion-MNIST, with a recorder that writes how they learn.

`train(arch, out, epochs=...)` trains `convlens.smallnets.build_small(arch, **arch_options)` and,
unless `record=False`, writes RUN_DIR:

- ``manifest.json``: format version, arch and its options, data, the full `TrainConfig`
  (hyper-parameters, seed), library versions, class names, input size and normalisation, probe
  layers, ``finished`` (bool) and ``summary`` (a `RunSummary` as a dict once finished). Written
  to a temporary file first, then `os.replace`.
- ``metrics.jsonl``: one flushed JSON line per record, ``{"step", "epoch", "loss",
  "batch_accuracy", "lr"}`` after every optimizer step and ``{"step", "epoch", "test_accuracy",
  "test_loss"}`` after every epoch (epochs count from 1; ``step`` counts optimizer steps from 1).
- ``probe_index.safetensors`` (written once): the probe set. ``images`` (int64, indices into the
  test split), ``labels`` (int64); and per probe layer L (a chain node of type conv or linear,
  named by its conv/linear layer id): ``L.image`` (test-split index), ``L.y``, ``L.x`` (position in
  L's output grid; 0 for linear layers) and ``L.label``. For a conv layer, `probe_patches`
  positions are drawn without replacement from (probe image, y, x); for a linear layer every probe
  image is one row. The probe is drawn with a fixed seed (`PROBE_SEED`), not the training seed, so
  runs with different seeds share it. Metadata: ``layers`` (JSON: layer -> activation layer).
- ``snapshots/step_XXXXXXXX/`` (8-digit step) every `snapshot_every` steps and after every epoch:
  - ``weights.safetensors``: the state dict (float32, CPU);
  - ``stats.safetensors``, per layer W with a weight (conv, linear, norm): ``W.grad_norm`` (float32
    scalar, L2 norm of the weight gradient of this step's batch), ``W.weight_change`` (float32
    scalar, ||W - W_prev|| / ||W_prev||, W_prev the weights at the previous snapshot, or the
    initial weights for the first), ``W.filter_weight_change`` (float16 [out], the same per output
    filter); for conv and linear layers also ``W.edge_abs_grad`` (float16 [out, in], |gradient|
    summed over the kernel, averaged over every k-th step since the previous snapshot, starting
    with the first, k = max(1, snapshot_every // 10), to keep the per-step cost low) and
    ``W.edge_weight`` (float16 [out, in], the weights summed over the kernel). A linear layer
    that reads a flattened (C, H, W) map has in = C: its values are summed per input channel
    (`convlens.weights.edge_matrix`), as CNNVis draws its edges. Metadata: ``step``,
    ``previous_step`` (it may have been thinned away since), ``steps_averaged``;
  - ``probe.safetensors``: per probe layer L, ``L`` float16 [rows, channels], the post-activation
    output (of the chain node's activation layer) at the probe rows of ``probe_index``;
  - ``state.pt`` in the LAST snapshot only: optimizer state, RNG states and the loop position, for
    `resume=True`.
  A snapshot is written into ``snapshots/.tmp-step_XXXXXXXX-PID`` and renamed into place, so a
  killed process never leaves a half snapshot under its final name; `keep_snapshots` thins old
  snapshots (first and last kept, the rest evenly spaced), deleting by rename first too.
- ``pid``: the training process, present while it runs: "PID START", its id and start time
  (`convlens.processes`), so that a stale file is never taken for a live trainer.

The readers of these files, and where runs live, are in `convlens.runformat`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib.metadata
import json
import math
import os
import platform
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from convlens.data import FASHION_MNIST_CLASSES, fashion_mnist
from convlens.graph import build_graph
from convlens.hooks import hooked_calls
from convlens.paths import write_atomic
from convlens.processes import live_trainer, pid_record
from convlens.runformat import (
    FORMAT_VERSION,
    list_snapshots,
    read_manifest,
    read_metrics,
    snapshot_dir,
    user_runs_dir,
)
from convlens.smallnets import FASHION_MNIST_MEAN, FASHION_MNIST_STD, INPUT_SIZE, build_small
from convlens.weights import edge_matrix

PROBE_SEED = 0
DATASETS = ("fashion-mnist",)
OPTIMIZERS = ("sgd", "adam")
LOSSES = ("ce", "hinge")
SCHEDULES = ("constant", "cosine")
_EVAL_BATCH = 1000
# TrainConfig fields that `convlens train` has no option for
OPTIONS_WITHOUT_FLAG = frozenset({"momentum", "limit_train", "limit_test"})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a run's result: architecture, data and hyper-parameters."""

    arch: str
    arch_options: dict[str, Any] = field(default_factory=dict)
    data: str = "fashion-mnist"
    epochs: int = 1
    lr: float | None = None  # None: 0.01 for sgd, 0.001 for adam
    batch_size: int = 64
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    loss: str = "ce"
    init: str = "default"
    schedule: str = "constant"
    seed: int = 0
    snapshot_every: int = 100
    probe_images: int = 256
    probe_patches: int = 2000
    keep_snapshots: int | None = None
    limit_train: int | None = None
    limit_test: int | None = None

    @property
    def learning_rate(self) -> float:
        """Return the learning rate, with the optimizer's default filled in."""
        if self.lr is not None:
            return float(self.lr)
        return 0.01 if self.optimizer == "sgd" else 0.001

    def lr_at(self, step: int, total_steps: int) -> float:
        """Return the learning rate of optimizer step `step` (0-based) of `total_steps`.

        A pure function of the step, so that a resumed run follows the same schedule.
        """
        if self.schedule == "cosine":
            return self.learning_rate * 0.5 * (1 + math.cos(math.pi * step / max(total_steps, 1)))
        return self.learning_rate

    def validate(self) -> None:
        """Raise ValueError with one sentence when an option is out of range."""
        if self.data not in DATASETS:
            raise ValueError(f"unknown data {self.data!r}; use one of {', '.join(DATASETS)}.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; use sgd or adam.")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; use ce or hinge.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; use constant or cosine.")
        _parse_init(self.init)
        for name in ("epochs", "batch_size", "snapshot_every", "probe_images", "probe_patches"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}.")
        if self.keep_snapshots is not None and self.keep_snapshots < 1:
            raise ValueError(f"keep_snapshots must be at least 1, not {self.keep_snapshots}.")


@dataclass(frozen=True)
class RunSummary:
    """What a call to `train` left behind."""

    path: Path
    steps: int
    epochs: int
    test_accuracy: float
    test_loss: float
    seconds: float


# --------------------------------------------------------------------------------------------
# The command line that trains a run


def train_command(
    arch: str, options: Mapping[str, object], out: str | Path | None = None, python: str = "python"
) -> list[str]:
    """Return the arguments of `PYTHON -m convlens train --arch ARCH` with `options` (architecture
    options and `TrainConfig` fields, in their order) as the CLI spells them: `batch_size` is
    `--batch-size VALUE`, True a bare flag, None and False left out; then `--out OUT`, if any."""
    command = [python, "-m", "convlens", "train", "--arch", arch]
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            command.append(flag)
        elif value is not None and value is not False:  # not `in (None, False)`: 0 == False
            command += [flag, str(value)]
    if out is not None:  # without --out, `convlens train` writes under $CONVLENS_HOME/runs
        command += ["--out", str(out)]
    return command


def retrain_command(manifest: Mapping, out: str | None = None) -> str:
    """Return the `python -m convlens train` command that records the run of `manifest` again:
    its architecture options, data, epochs, seed and every setting off its default (ValueError
    for one the command line has no option for, see `OPTIONS_WITHOUT_FLAG`)."""
    config = manifest["config"]
    defaults = dataclasses.asdict(TrainConfig(arch=manifest["arch"]))
    options: dict[str, object] = dict(sorted(manifest["arch_options"].items()))
    options |= {"data": config["data"], "epochs": config["epochs"], "seed": config["seed"]}
    for key, value in config.items():
        if key in {"arch", "arch_options", "data", "epochs", "seed"} or value == defaults.get(key):
            continue
        if key in OPTIONS_WITHOUT_FLAG:
            raise ValueError(f"the run sets {key}, which `convlens train` has no option for.")
        options[key] = value
    return " ".join(train_command(manifest["arch"], options, out))


def command_lines(command: str, width: int = 76) -> str:
    """Return a command of plain words separated by spaces (no quoted argument: those of
    `train_command` are names and numbers) as shell lines of at most `width` characters where it
    can, continued with a backslash and broken only between options, each beside its value: a
    code block that wraps a long line by itself broke `--probe-images` between its two dashes."""
    units: list[str] = []
    for word in command.split():
        if (
            units
            and not word.startswith("-")
            and units[-1].startswith("-")
            and " " not in units[-1]
        ):
            units[-1] += f" {word}"  # an option's value stays beside it
        else:
            units.append(word)
    lines = units[:1]
    for unit in units[1:]:
        if len(lines[-1]) + 1 + len(unit) > width - 2:  # room for " \\"
            lines.append(f"    {unit}")
        else:
            lines[-1] += f" {unit}"
    return " \\\n".join(lines)


# --------------------------------------------------------------------------------------------
# Small helpers


def _parse_init(init: str) -> tuple[str, float]:
    if init in ("default", "kaiming"):
        return init, 0.0
    if init.startswith("normal:"):
        try:
            std = float(init.split(":", 1)[1])
        except ValueError:
            std = -1.0
        if std > 0:
            return "normal", std
    raise ValueError(f"unknown init {init!r}; use default, kaiming or normal:STD (STD > 0).")


def _initialise(model: nn.Module, init: str) -> None:
    kind, std = _parse_init(init)
    if kind == "default":
        return
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if kind == "kaiming":
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            else:
                nn.init.normal_(module.weight, 0.0, std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def _new_model(config: TrainConfig) -> nn.Module:
    torch.manual_seed(config.seed)
    model = build_small(config.arch, **config.arch_options)
    _initialise(model, config.init)
    return model


def _loss_fn(name: str, reduction: str = "mean") -> nn.Module:
    return (
        nn.CrossEntropyLoss(reduction=reduction)
        if name == "ce"
        else nn.MultiMarginLoss(reduction=reduction)
    )


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=config.learning_rate,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
    return torch.optim.Adam(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )


def normalize(images: torch.Tensor) -> torch.Tensor:
    """Return uint8 images (N, 28, 28) as normalised float inputs (N, 1, 28, 28)."""
    x = images.float().div_(255.0).sub_(FASHION_MNIST_MEAN).div_(FASHION_MNIST_STD)
    return x.unsqueeze(1)


def _versions() -> dict[str, str]:
    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    for package in ("convlens", "safetensors", "torchvision"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "unknown"
    return versions


def _write_json_atomic(path: Path, payload: dict) -> None:
    write_atomic(path, json.dumps(payload, indent=2, default=str) + "\n")


def _weighted_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(getattr(module, "weight", None), nn.Parameter)
    ]


# --------------------------------------------------------------------------------------------
# The probe set


@dataclass(frozen=True)
class _Probe:
    images: torch.Tensor  # test-split indices of the probe images
    layers: dict[str, str]  # probe layer -> activation layer
    rows: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # layer -> (local image, y, x)


def _make_probe(
    model: nn.Module, config: TrainConfig, test_labels: torch.Tensor
) -> tuple[_Probe, dict]:
    """Draw the probe set; return it and the tensors of probe_index.safetensors."""
    graph = build_graph(model, INPUT_SIZE)
    rng = np.random.default_rng(PROBE_SEED)
    n_test = int(test_labels.shape[0])
    count = min(config.probe_images, n_test)
    images = np.sort(rng.choice(n_test, size=count, replace=False))
    index = {"images": torch.tensor(images, dtype=torch.long), "labels": test_labels[images].long()}
    layers: dict[str, str] = {}
    rows = {}
    for node in graph.chain:
        if node.type not in ("conv", "linear"):
            continue
        layers[node.id] = node.activation_layer
        if node.type == "conv" and len(node.output_shape) == 3:
            _, height, width = node.output_shape
            total = count * height * width
            flat = rng.choice(total, size=min(config.probe_patches, total), replace=False)
            flat.sort()
            local, rest = np.divmod(flat, height * width)
            y, x = np.divmod(rest, width)
        else:
            local = np.arange(count)
            y, x = np.zeros(count, dtype=np.int64), np.zeros(count, dtype=np.int64)
        local_t, y_t, x_t = (torch.tensor(np.asarray(a), dtype=torch.long) for a in (local, y, x))
        rows[node.id] = (local_t, y_t, x_t)
        index[f"{node.id}.image"] = index["images"][local_t]
        index[f"{node.id}.y"] = y_t
        index[f"{node.id}.x"] = x_t
        index[f"{node.id}.label"] = index["labels"][local_t]
    return _Probe(index["images"], layers, rows), index


def _probe_from_index(index: dict[str, torch.Tensor], layers: dict[str, str]) -> _Probe:
    position = {int(i): k for k, i in enumerate(index["images"].tolist())}
    rows = {}
    for layer in layers:
        local = torch.tensor([position[int(i)] for i in index[f"{layer}.image"].tolist()]).long()
        rows[layer] = (local, index[f"{layer}.y"].long(), index[f"{layer}.x"].long())
    return _Probe(index["images"].long(), dict(layers), rows)


@torch.no_grad()
def _probe_activations(
    model: nn.Module, probe: _Probe, test_images: torch.Tensor, batch: int = 500
) -> dict[str, torch.Tensor]:
    """Return, per probe layer, the activations at its probe rows (float16, CPU).

    Hooks on the activation layers gather the probe rows as the output is produced, so no whole
    feature map is copied; the hooks are removed on exit, also after an error.
    """
    device = test_images.device
    parts: dict[str, list[torch.Tensor]] = {layer: [] for layer in probe.layers}
    window = {"start": 0, "stop": 0}
    probe_layers_of: dict[str, list[str]] = {}  # activation layer id -> the probe layers it ends
    for layer, activation_layer in probe.layers.items():
        probe_layers_of.setdefault(activation_layer, []).append(layer)

    def gather(activation_layer: str, _module: nn.Module, output: torch.Tensor) -> None:
        for layer in probe_layers_of[activation_layer]:
            local, y, x = probe.rows[layer]
            chosen = (local >= window["start"]) & (local < window["stop"])
            idx = (local[chosen] - window["start"]).to(device)
            if output.dim() == 4:
                values = output[idx, :, y[chosen].to(device), x[chosen].to(device)]
            else:
                values = output[idx]
            parts[layer].append(values.to("cpu", torch.float16))

    with hooked_calls(model, gather, probe_layers_of):
        for start in range(0, len(probe.images), batch):
            window["start"], window["stop"] = start, min(start + batch, len(probe.images))
            model(normalize(test_images[probe.images[start : window["stop"]].to(device)]))
    return {layer: torch.cat(chunks).contiguous() for layer, chunks in parts.items()}


# --------------------------------------------------------------------------------------------
# The recorder


class Recorder:
    """Writes a run's metrics and snapshots into RUN_DIR (see the module docstring)."""

    def __init__(
        self,
        run_dir: Path,
        model: nn.Module,
        probe: _Probe,
        test_images: torch.Tensor,
        gradient_every: int = 1,
    ):
        self.run_dir = Path(run_dir)
        self.gradient_every = gradient_every
        self.model = model
        self.probe = probe
        self.test_images = test_images
        self.layers = _weighted_layers(model)
        graph = build_graph(model, INPUT_SIZE)
        self.flattened = {
            name: channels
            for name, _ in self.layers
            if name in {layer.id for layer in graph.layers}
            and (channels := graph.flattened_channels(name)) is not None
        }
        self.previous_step = 0
        self.previous: dict[str, torch.Tensor] = {}
        self.edge_sums: dict[str, torch.Tensor] = {}
        self.steps_accumulated = 0
        self.metrics = None
        self.remember_weights()

    def open_metrics(self, fresh: bool, keep_through_step: int) -> None:
        """Open metrics.jsonl for appending; keep only records up to `keep_through_step`."""
        path = self.run_dir / "metrics.jsonl"
        if fresh:
            path.write_text("")
        else:
            kept = [
                r for r in read_metrics(self.run_dir) if int(r.get("step", 0)) <= keep_through_step
            ]
            write_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))
        self.metrics = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, record: dict) -> None:
        """Append one record to metrics.jsonl and flush it."""
        self.metrics.write(json.dumps(record) + "\n")
        self.metrics.flush()

    def close(self) -> None:
        """Close metrics.jsonl."""
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None

    def remember_weights(self, step: int | None = None) -> None:
        """Keep the current weights as the reference for the next relative weight change."""
        if step is not None:
            self.previous_step = step
        self.previous = {name: m.weight.detach().clone() for name, m in self.layers}
        self.edge_sums = {}
        self.steps_accumulated = 0

    def wants_gradients(self, step: int) -> bool:
        """Return whether optimizer step `step` (1-based) adds to the |gradient| averages."""
        return (step - 1 - self.previous_step) % self.gradient_every == 0

    def after_backward(self) -> None:
        """Accumulate |gradient| summed over the kernel, per (output, input) channel pair."""
        for name, module in self.layers:
            grad = module.weight.grad
            if grad is None or grad.dim() < 2:
                continue
            summed = edge_matrix(grad.abs(), self.flattened.get(name))
            if name in self.edge_sums:
                self.edge_sums[name].add_(summed)
            else:
                self.edge_sums[name] = summed.clone()
        self.steps_accumulated += 1

    def stats(self) -> dict[str, torch.Tensor]:
        """Return the statistics of the current step (call after the optimizer step)."""
        stats: dict[str, torch.Tensor] = {}
        for name, module in self.layers:
            weight = module.weight.detach()
            grad = module.weight.grad
            previous = self.previous[name]
            stats[f"{name}.grad_norm"] = (
                torch.linalg.vector_norm(grad).float().cpu()
                if grad is not None
                else torch.tensor(0.0)
            )
            delta = (
                (weight - previous).flatten(1) if weight.dim() > 1 else (weight - previous)[:, None]
            )
            base = previous.flatten(1) if previous.dim() > 1 else previous[:, None]
            stats[f"{name}.weight_change"] = (
                (torch.linalg.vector_norm(delta) / torch.linalg.vector_norm(base).clamp_min(1e-12))
                .float()
                .cpu()
            )
            stats[f"{name}.filter_weight_change"] = (
                torch.linalg.vector_norm(delta, dim=1)
                / torch.linalg.vector_norm(base, dim=1).clamp_min(1e-12)
            ).to("cpu", torch.float16)
            if weight.dim() >= 2:
                summed = edge_matrix(weight, self.flattened.get(name))
                stats[f"{name}.edge_weight"] = summed.to("cpu", torch.float16)
                sums = self.edge_sums.get(name)
                mean = (
                    sums / max(self.steps_accumulated, 1)
                    if sums is not None
                    else torch.zeros_like(summed)
                )
                stats[f"{name}.edge_abs_grad"] = mean.to("cpu", torch.float16)
        return {k: v.contiguous() for k, v in stats.items()}

    def snapshot(self, step: int, state: dict, keep: int | None) -> None:
        """Write snapshot `step` by rename, move the resume state to it, and thin old snapshots."""
        folder = self.run_dir / "snapshots"
        folder.mkdir(exist_ok=True)
        final = snapshot_dir(self.run_dir, step)
        temp = folder / f".tmp-step_{step:08d}-{os.getpid()}"
        if temp.exists():
            shutil.rmtree(temp)
        temp.mkdir()
        weights = {k: v.detach().to("cpu").contiguous() for k, v in self.model.state_dict().items()}
        save_file(weights, temp / "weights.safetensors")
        meta = {
            "step": str(step),
            "previous_step": str(self.previous_step),
            "steps_averaged": str(self.steps_accumulated),
        }
        save_file(self.stats(), temp / "stats.safetensors", metadata=meta)
        was_training = self.model.training
        self.model.eval()
        try:
            probe = _probe_activations(self.model, self.probe, self.test_images)
        finally:
            self.model.train(was_training)
        save_file(probe, temp / "probe.safetensors", metadata={"step": str(step)})
        torch.save(state, temp / "state.pt")
        earlier = [s for s in list_snapshots(self.run_dir) if s != step]
        if final.exists():
            remove_dir(final)
        os.replace(temp, final)
        # the resume state lives in the last snapshot only
        for old in earlier:
            with contextlib.suppress(FileNotFoundError):
                (snapshot_dir(self.run_dir, old) / "state.pt").unlink()
        if keep is not None:
            _thin_snapshots(self.run_dir, keep)
        self.remember_weights(step)


def remove_dir(path: Path) -> None:
    """Delete a folder by renaming it out of the way first, so no half folder keeps its name."""
    doomed = path.with_name(f".del-{path.name}-{os.getpid()}")
    os.replace(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def evenly_kept(steps: list[int], keep: int) -> list[int]:
    """Return `keep` of the ascending `steps`: the first and last, the rest evenly spaced.

    Greedy: drop the inner step whose neighbours lie closest together until `keep` remain.
    """
    kept = list(steps)
    while len(kept) > max(keep, 0):
        if keep == 1 or len(kept) < 3:
            victim = 0
        else:
            gaps = [kept[i + 1] - kept[i - 1] for i in range(1, len(kept) - 1)]
            victim = 1 + gaps.index(min(gaps))
        kept.pop(victim)
    return kept


def _thin_snapshots(run_dir: Path, keep: int) -> None:
    """Delete snapshots until `keep` remain (see `evenly_kept`)."""
    steps = list_snapshots(run_dir)
    kept = set(evenly_kept(steps, keep))
    for step in steps:
        if step not in kept:
            remove_dir(snapshot_dir(run_dir, step))


def _clean_temporaries(run_dir: Path) -> None:
    folder = run_dir / "snapshots"
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.name.startswith((".tmp-", ".del-")):
                shutil.rmtree(entry, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Training


def _split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"arch", "arch_options", "epochs"}
    config = {k: v for k, v in options.items() if k in names}
    arch = {k: v for k, v in options.items() if k not in names}
    return config, arch


def _manifest(
    config: TrainConfig, probe_layers: dict[str, str], device: str, steps_per_epoch: int
) -> dict:
    return {
        "format": "convlens-run",
        "format_version": FORMAT_VERSION,
        "arch": config.arch,
        "arch_options": dict(config.arch_options),
        "data": config.data,
        "train_split": "train",
        "test_split": "test",
        "config": dataclasses.asdict(config),
        "learning_rate": config.learning_rate,
        "seed": config.seed,
        "classes": list(FASHION_MNIST_CLASSES),
        "input_size": list(INPUT_SIZE),
        "normalize": {"mean": [FASHION_MNIST_MEAN], "std": [FASHION_MNIST_STD]},
        "probe_layers": probe_layers,
        "steps_per_epoch": steps_per_epoch,
        "versions": _versions(),
        "device": device,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "finished": False,
        "summary": None,
    }


@torch.no_grad()
def evaluate(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, loss: str = "ce"
) -> tuple[float, float]:
    """Return (accuracy, mean loss) of `model` on uint8 images (N, 28, 28) and their labels."""
    was_training = model.training
    model.eval()
    criterion = _loss_fn(loss, reduction="sum")
    correct = 0
    total_loss = 0.0
    try:
        for start in range(0, len(labels), _EVAL_BATCH):
            x = normalize(images[start : start + _EVAL_BATCH])
            y = labels[start : start + _EVAL_BATCH]
            logits = model(x)
            total_loss += float(criterion(logits, y))
            correct += int((logits.argmax(1) == y).sum())
    finally:
        model.train(was_training)
    return correct / max(len(labels), 1), total_loss / max(len(labels), 1)


def _tensors(
    split: str, limit: int | None, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    dataset = fashion_mnist(split)
    images = torch.tensor(np.asarray(dataset.images[:limit]))
    labels = torch.tensor(np.asarray(dataset.labels[:limit]), dtype=torch.long)
    return images.to(device), labels.to(device)


def train(
    arch: str,
    out: str | Path | None = None,
    *,
    epochs: int,
    resume: bool = False,
    progress: bool = True,
    device: str | torch.device | None = None,
    record: bool = True,
    callback: Callable[[int], None] | None = None,
    **options: Any,
) -> RunSummary:
    """Train `arch` on Fashion-MNIST for `epochs`, recording into `out`; return a RunSummary.

    `options` are `TrainConfig` fields (lr, batch_size, optimizer, loss, init, seed, ...) and the
    architecture's own options (width, depth, batchnorm, conv1, ...). With `resume=True` the run
    in `out` continues from its last complete snapshot (its recorded options stand; `epochs` may
    grow). `record=False` writes nothing (for benchmarks). `callback(step)` runs after each step.
    """
    started = time.perf_counter()
    config_options, arch_options = _split_options(options)
    run_dir = Path(out) if out is not None else None
    if record and run_dir is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = user_runs_dir() / f"{arch}-{stamp}-{os.getpid()}"

    manifest = None
    if record and resume and (run_dir / "manifest.json").exists():
        manifest = read_manifest(run_dir)
        recorded = TrainConfig(**{**manifest["config"], "epochs": epochs})
        asked = {**config_options, **({"arch_options": arch_options} if arch_options else {})}
        clashes = [k for k, v in asked.items() if getattr(recorded, k) != v]
        if arch != recorded.arch or clashes:
            raise ValueError(
                f"the run in {run_dir} was recorded with other options ({', '.join(clashes) or 'arch'}); "
                "resume it without changing them."
            )
        config = recorded
    else:
        config = TrainConfig(arch=arch, arch_options=arch_options, epochs=epochs, **config_options)
    config.validate()

    if record:
        run_dir.mkdir(parents=True, exist_ok=True)
        pid_path = run_dir / "pid"
        other = live_trainer(pid_path)
        if other is not None and other != os.getpid():
            raise RuntimeError(f"the run in {run_dir} is being trained by process {other}.")
        if not resume and (run_dir / "manifest.json").exists():
            raise FileExistsError(
                f"{run_dir} already holds a run; pass resume=True or another folder."
            )
        pid_path.write_text(pid_record(os.getpid()))

    try:
        return _train(
            config, run_dir if record else None, manifest, progress, device, callback, started
        )
    finally:
        if record:
            with contextlib.suppress(FileNotFoundError):
                (run_dir / "pid").unlink()


def _train(
    config: TrainConfig,
    run_dir: Path | None,
    manifest: dict | None,
    progress: bool,
    device: str | torch.device | None,
    callback: Callable[[int], None] | None,
    started: float,
) -> RunSummary:
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    train_images, train_labels = _tensors("train", config.limit_train, device)
    test_images, test_labels = _tensors("test", config.limit_test, device)
    n_train = len(train_labels)
    steps_per_epoch = math.ceil(n_train / config.batch_size)
    total_steps = steps_per_epoch * config.epochs

    model = _new_model(config).to(device)
    optimizer = _optimizer(model, config)
    criterion = _loss_fn(config.loss)
    generator = torch.Generator().manual_seed(config.seed)
    step, epoch, batch = 0, 0, 0
    epoch_generator_state = generator.get_state()
    last_test = (float("nan"), float("nan"))

    recorder = None
    if run_dir is not None:
        _clean_temporaries(run_dir)
        snapshots = list_snapshots(run_dir)
        resuming = manifest is not None and bool(snapshots)
        if resuming:
            index = load_file(run_dir / "probe_index.safetensors")
            probe = _probe_from_index(index, manifest["probe_layers"])
            last = snapshots[-1]
            folder = snapshot_dir(run_dir, last)
            if not (folder / "state.pt").is_file():
                raise FileNotFoundError(
                    f"the last snapshot of {run_dir} (step {last}) has no resume state (state.pt)."
                )
            model.load_state_dict(load_file(folder / "weights.safetensors"))
            state = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
            optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["torch_rng"])
            if device.type == "cuda" and state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(state["cuda_rng"], device)
            epoch_generator_state = state["epoch_generator"]
            step, epoch, batch = int(state["step"]), int(state["epoch"]), int(state["batch"])
            last_test = (float(state["test_accuracy"]), float(state["test_loss"]))
        else:
            probe, index = _make_probe(model, config, test_labels.cpu())
            save_file(
                {k: v.contiguous() for k, v in index.items()},
                run_dir / ".probe_index.tmp",
                metadata={
                    "layers": json.dumps(probe.layers),
                    "split": "test",
                    "seed": str(PROBE_SEED),
                },
            )
            os.replace(run_dir / ".probe_index.tmp", run_dir / "probe_index.safetensors")
        manifest = {
            **_manifest(config, probe.layers, device.type, steps_per_epoch),
            **({"created": manifest["created"]} if manifest else {}),
        }
        _write_json_atomic(run_dir / "manifest.json", manifest)
        recorder = Recorder(run_dir, model, probe, test_images, max(1, config.snapshot_every // 10))
        if resuming:
            recorder.previous_step = step
        recorder.open_metrics(fresh=not resuming, keep_through_step=step)

    def resume_state(next_epoch: int, next_batch: int, generator_state: torch.Tensor) -> dict:
        return {
            "optimizer": optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "epoch_generator": generator_state,
            "step": step,
            "epoch": next_epoch,
            "batch": next_batch,
            "test_accuracy": last_test[0],
            "test_loss": last_test[1],
        }

    bar = tqdm(total=total_steps, initial=step, disable=not progress, unit="step", desc=config.arch)
    model.train()
    try:
        while epoch < config.epochs:
            generator.set_state(epoch_generator_state)
            order = torch.randperm(n_train, generator=generator).to(device)
            after_perm_state = generator.get_state()
            for b in range(batch, steps_per_epoch):
                idx = order[b * config.batch_size : (b + 1) * config.batch_size]
                x = normalize(train_images[idx])
                y = train_labels[idx]
                optimizer.zero_grad(set_to_none=True)
                logits = model(x)
                loss = criterion(logits, y)
                loss.backward()
                lr = config.lr_at(step, total_steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                if recorder is not None and recorder.wants_gradients(step + 1):
                    recorder.after_backward()
                optimizer.step()
                step += 1
                if recorder is not None or progress:
                    loss_value = float(loss.detach())
                    if recorder is not None:
                        accuracy = float((logits.argmax(1) == y).float().mean())
                        recorder.write(
                            {
                                "step": step,
                                "epoch": epoch + 1,
                                "loss": loss_value,
                                "batch_accuracy": accuracy,
                                "lr": lr,
                            }
                        )
                    if step % 20 == 0:
                        bar.set_postfix(loss=f"{loss_value:.3f}", refresh=False)
                bar.update(1)
                end_of_epoch = b == steps_per_epoch - 1
                if end_of_epoch:
                    last_test = evaluate(model, test_images, test_labels, config.loss)
                    if recorder is not None:
                        recorder.write(
                            {
                                "step": step,
                                "epoch": epoch + 1,
                                "test_accuracy": last_test[0],
                                "test_loss": last_test[1],
                            }
                        )
                        recorder.snapshot(
                            step,
                            resume_state(epoch + 1, 0, after_perm_state),
                            config.keep_snapshots,
                        )
                elif recorder is not None and step % config.snapshot_every == 0:
                    recorder.snapshot(
                        step,
                        resume_state(epoch, b + 1, epoch_generator_state),
                        config.keep_snapshots,
                    )
                if callback is not None:
                    callback(step)
            epoch += 1
            batch = 0
            epoch_generator_state = after_perm_state
    finally:
        bar.close()
        if recorder is not None:
            recorder.close()

    summary = RunSummary(
        path=run_dir if run_dir is not None else Path(),
        steps=step,
        epochs=config.epochs,
        test_accuracy=last_test[0],
        test_loss=last_test[1],
        seconds=time.perf_counter() - started,
    )
    if run_dir is not None:
        manifest["finished"] = True
        manifest["summary"] = {**dataclasses.asdict(summary), "path": str(run_dir)}
        _write_json_atomic(run_dir / "manifest.json", manifest)
    return summary
