"""The recorded run on disk: where runs live, how a model names one, and readers of its files.

`convlens.training` writes a run (its docstring lists every file and field); everything else
reads it through this module, so that the model zoo, DeepEyes, CNNVis and the run controls share
one reader and none of them depends on the trainer. A run folder holds ``manifest.json``,
``metrics.jsonl``, ``probe_index.safetensors``, ``snapshots/step_XXXXXXXX/`` (weights, stats,
probe activations) and ``pid`` while it trains. Shipped runs live in assets/runs, each with a
card (`convlens.shipped`); the user's in $CONVLENS_HOME/runs. A model named `run:RUN[@STEP]` is
a snapshot of the run RUN.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file as load_arrays
from safetensors.torch import load_file
from torch import nn

from convlens.access import whole_number
from convlens.paths import ASSETS_DIR, convlens_home
from convlens.processes import live_trainer
from convlens.smallnets import build_small

FORMAT_VERSION = 2
RUN_PREFIX = "run:"
RUN_STATUSES = ("finished", "running", "starting", "incomplete", "unreadable")
SHIPPED_RUNS_DIR = ASSETS_DIR / "runs"
_SNAPSHOT_RE = re.compile(r"^step_(\d{8})$")


# --------------------------------------------------------------------------------------------
# Where runs live and how they are named


def user_runs_dir() -> Path:
    """Where the user's runs go: $CONVLENS_HOME/runs (created by the writers)."""
    return convlens_home() / "runs"


def run_roots() -> list[tuple[Path, bool]]:
    """Return the folders that hold runs, each with whether it is the shipped one."""
    return [(SHIPPED_RUNS_DIR, True), (user_runs_dir(), False)]


def shipped_names() -> list[str]:
    """Return the names of the shipped runs (packed folders of assets/runs: with a card), sorted."""
    return sorted(card.parent.name for card in SHIPPED_RUNS_DIR.glob("*/card.json"))


def shipped_run(name: str) -> Path:
    """Return the folder of the shipped run `name`."""
    return SHIPPED_RUNS_DIR / name


def is_shipped(run_dir: str | Path) -> bool:
    """Return whether `run_dir` is a shipped run (published with the app, never changed)."""
    return Path(run_dir).resolve().parent == SHIPPED_RUNS_DIR.resolve()


def find_run(reference: str) -> Path:
    """Return the run folder named by a path or by a folder name under the run folders."""
    path = Path(reference)
    try:
        if (path / "manifest.json").exists() or (path / "pid").exists():
            return path
        for root, _ in run_roots():
            if (root / reference).is_dir():
                return root / reference
    except OSError:  # a name too long for the file system, say
        pass
    raise ValueError(f"no run '{reference[:80]}'; `convlens runs` lists them")


def parse_run_name(name: str) -> tuple[Path, int | None]:
    """Split `run:RUN[@STEP]` into the run folder and the step (None: the last snapshot); RUN is
    a folder, or the name of one under the run folders (`find_run`). ValueError when STEP is not
    a number."""
    reference = name.removeprefix(RUN_PREFIX)
    folder, at, step_text = reference.rpartition("@")
    step = whole_number(step_text) if at else None
    if not at:
        folder = reference
    elif step is None or step < 0:
        raise ValueError(f"'{name[:200]}' should look like run:RUN_DIR or run:RUN_DIR@STEP")
    try:
        path = find_run(folder)
    except ValueError:
        path = Path(folder)  # loading it says what is missing
    return path, step


# --------------------------------------------------------------------------------------------
# Readers


def snapshot_dir(run_dir: str | Path, step: int) -> Path:
    """Return the folder of the run's snapshot at `step` (whether or not it exists)."""
    return Path(run_dir) / "snapshots" / f"step_{step:08d}"


def read_manifest(run_dir: str | Path) -> dict:
    """Return the run's manifest as a dict (raises OSError / ValueError when unreadable)."""
    return json.loads((Path(run_dir) / "manifest.json").read_text())


def read_metrics(run_dir: str | Path) -> list[dict]:
    """Return every complete record of metrics.jsonl, skipping a trailing partial line."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    records = []
    for line in path.read_bytes().split(b"\n"):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a killed process
        if isinstance(record, dict):
            records.append(record)
    return records


def list_snapshots(run_dir: str | Path) -> list[int]:
    """Return the steps of the run's complete snapshots, ascending (temporary folders ignored).

    A snapshot folder gets its final name only once complete. A packed run (`convlens.shipped`)
    may keep the weights of only some snapshots: `weight_steps` lists those.
    """
    folder = Path(run_dir) / "snapshots"
    if not folder.is_dir():
        return []
    steps = []
    for entry in folder.iterdir():
        match = _SNAPSHOT_RE.match(entry.name)
        if match and entry.is_dir():
            steps.append(int(match.group(1)))
    return sorted(steps)


def weight_steps(run_dir: str | Path) -> list[int]:
    """Return the steps of the complete snapshots that hold weights, ascending."""
    return [
        step
        for step in list_snapshots(run_dir)
        if (snapshot_dir(run_dir, step) / "weights.safetensors").is_file()
    ]


def load_snapshot(run_dir: str | Path, step: int | None = None) -> tuple[nn.Module, dict]:
    """Return the model of snapshot `step` (the last one when None), in eval mode, and the manifest."""
    manifest = read_manifest(run_dir)
    steps = weight_steps(run_dir)
    if not steps:
        raise FileNotFoundError(f"the run {run_dir} has no complete snapshot yet.")
    if step is None:
        step = steps[-1]
    if step not in steps:
        what = "kept no weights" if step in list_snapshots(run_dir) else "has no snapshot"
        raise FileNotFoundError(
            f"the run {run_dir} {what} at step {step}; "
            f"it has weights at steps {', '.join(map(str, steps))}."
        )
    model = build_small(manifest["arch"], **manifest["arch_options"])
    model.load_state_dict(load_file(snapshot_dir(run_dir, step) / "weights.safetensors"))
    return model.eval(), manifest


def read_stats(run_dir: str | Path, step: int) -> dict[str, np.ndarray]:
    """Return the debugging statistics of snapshot `step` (see `convlens.training`), as float64
    arrays by name; FileNotFoundError when the snapshot has none."""
    path = snapshot_dir(run_dir, step) / "stats.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"the run {run_dir} has no statistics at step {step}.")
    return {name: value.float().double().numpy() for name, value in load_file(path).items()}


def deepeyes_layers(manifest: dict) -> list[str]:
    """Return the probe layers DeepEyes analyses: those read after an activation (not the logits)."""
    return [
        layer
        for layer, activation in manifest.get("probe_layers", {}).items()
        if activation != layer
    ]


def read_probe(
    run_dir: str | Path, step: int, layers: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Return the probe activations (float32 [rows, channels]) of snapshot `step` per layer.

    `layers` defaults to `deepeyes_layers` of the run's manifest.
    """
    run_dir = Path(run_dir)
    if layers is None:
        layers = deepeyes_layers(read_manifest(run_dir))
    path = snapshot_dir(run_dir, step) / "probe.safetensors"
    if not path.is_file():
        raise ValueError(f"the run {run_dir} has no probe at step {step}")
    tensors = load_arrays(path)
    missing = [layer for layer in layers if layer not in tensors]
    if missing:
        raise ValueError(f"{path} lacks the probe layers {', '.join(missing)}")
    return {layer: tensors[layer].astype(np.float32) for layer in layers}


@dataclass(frozen=True)
class ProbeRows:
    """Where each probe row of a layer comes from: test image, output position and label."""

    layer: str
    images: np.ndarray  # (rows,) indices into the test split
    y: np.ndarray  # (rows,) position in the layer's output grid (0 for linear layers)
    x: np.ndarray
    labels: np.ndarray


def read_probe_rows(run_dir: str | Path, layer_id: str) -> ProbeRows:
    """Return the probe rows of `layer_id` from the run's probe_index.safetensors."""
    path = Path(run_dir) / "probe_index.safetensors"
    if not path.is_file():
        raise ValueError(f"the run {run_dir} has no probe index yet")
    index = load_arrays(path)
    keys = [f"{layer_id}.{name}" for name in ("image", "y", "x", "label")]
    missing = [key for key in keys if key not in index]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}")
    image, y, x, label = (index[key].astype(np.int64) for key in keys)
    return ProbeRows(layer_id, image, y, x, label)


# --------------------------------------------------------------------------------------------
# Whether a run is training


@dataclass(frozen=True)
class Card:
    """What a shipped run is, how well it does and how to make it again."""

    name: str
    title: str
    arch: str
    arch_options: dict
    data: str
    epochs: int
    steps: int
    seed: int
    test_accuracy: float  # of the shipped (float16) weights, measured when packed
    trained_test_accuracy: float  # at the end of training, in float32
    training_seconds: float
    parameters: int
    command: str
    storage: str
    note: str = ""  # a paragraph on the card: what the run shows, why it was made
    role: str = ""  # one line shown with the model in the app, e.g. that it is meant to fail


def read_card(run_dir: str | Path) -> Card:
    """Return the card of a packed run (raises OSError / ValueError when it has none)."""
    fields = json.loads((Path(run_dir) / "card.json").read_text())
    return Card(**fields)


def run_status(run_dir: str | Path) -> str:
    """Return "finished", "running", "starting", "incomplete" or "unreadable".

    "starting": a live process holds RUN_DIR/pid but has recorded no training step yet (it may
    not have written its manifest either); "running": it has recorded one. A folder without a
    live process reads from its manifest: "finished", "incomplete", or "unreadable" when it has
    no readable manifest."""
    run_dir = Path(run_dir)
    live = live_trainer(run_dir / "pid") is not None
    if live and not _recorded_a_step(run_dir):
        return "starting"
    try:
        manifest = read_manifest(run_dir)
        if not isinstance(manifest, dict) or "arch" not in manifest:
            return "unreadable"
    except (OSError, ValueError):
        return "unreadable"
    if live:
        return "running"
    return "finished" if manifest.get("finished") else "incomplete"


def _recorded_a_step(run_dir: Path) -> bool:
    """Return whether metrics.jsonl holds a complete first record (the trainer writes one per
    step, a line at a time); reads only that line."""
    try:
        with (run_dir / "metrics.jsonl").open("rb") as metrics:
            return metrics.readline().endswith(b"\n")
    except OSError:
        return False
