"""Activation engine cost: images per second of `analyze` (every conv layer, every reducer, no
cache) against what a user's own loop over the same images must do at least: read and preprocess
them (the model's transform on each image, stacked) and run the forward pass, in batches of
`default_batch_size` for the model and device (both), in the same process, alternating the two and
keeping each one's best; then the peak memory of `analyze` over 2,000 and 8,000 images, each in a
fresh process, which must agree within 10%. Goal: ratio >= 0.85, the smaller of fashion_basecnn's
(2,000 images) and efficientnet_lite0's (1,000 images, analyze's default for an ImageNet model).

`analyze` makes one forward pass per batch: the activation frequency is counted on a fixed sample
of patches per layer (see `convlens.activations`), so it needs no second pass over the images.

Each model's line also gives a floor measured in the same run: the same loop with hooks that only
take each neuron's maximum and spatial mean per image, the least any analysis does (no top
patches, no class sums, no frequency). Its ratio bounds what `analyze` can reach on this machine.
The ratios against the forward pass alone (the benchmark's measure before issue 17) follow in
brackets.

Run: .venv/bin/python bench/activations.py [--images 2000] [--imagenet-images 1000] [--repeat 3]
[--only fashion|imagenet]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from PIL import Image

from convlens.activations import analysis_nodes, analyze, default_batch_size
from convlens.data import fashion_mnist
from convlens.graph import build_graph
from convlens.hooks import hooked_calls
from convlens.models import LoadedModel, ModelError, load_model

DATA = "fashion-mnist:test"
MEMORY_IMAGES = (2_000, 8_000)


def small_model() -> LoadedModel:
    """The shipped BaseCNN, or the untrained one when it is not shipped yet."""
    try:
        return load_model("fashion_basecnn")
    except ModelError:
        return load_model("basecnn")


def load_average() -> str:
    """Return the machine's 1-minute load average in words, for beside a figure (Linux)."""
    loadavg = Path("/proc/loadavg")
    return f"load {loadavg.read_text().split()[0]}" if loadavg.is_file() else "load unknown"


def conv_layers(model: LoadedModel) -> list[str]:
    graph = build_graph(model.module, model.input_size)
    return [node.id for node in analysis_nodes(graph) if node.type == "conv"]


def preprocessed(model: LoadedModel, images: int) -> torch.Tensor:
    data = fashion_mnist("test")
    return torch.stack([model.transform(Image.fromarray(data.images[i])) for i in range(images)])


def forward_seconds(model: LoadedModel, inputs: torch.Tensor, batch_size: int) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, len(inputs), batch_size):
            model.module(inputs[first : first + batch_size].to(model.device))
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def least_work_seconds(model: LoadedModel, inputs: torch.Tensor, batch_size: int) -> float:
    """Seconds of the forward pass with every analysed layer reduced to its per-image maximum and
    spatial mean per neuron: the part of `analyze` that no choice of algorithm removes."""
    graph = build_graph(model.module, model.input_size)
    nodes = [node for node in analysis_nodes(graph) if node.type == "conv"]

    def reduce(_layer_id: str, _module: object, output: torch.Tensor) -> None:
        maps = output.reshape(output.shape[0], output.shape[1], -1)
        maps.amax(dim=2)
        maps.mean(dim=2)

    with hooked_calls(model.module, reduce, {node.activation_layer for node in nodes}):
        return forward_seconds(model, inputs, batch_size)


def analyze_seconds(model: LoadedModel, images: int, layers: list[str]) -> float:
    start = time.perf_counter()
    analyze(model, DATA, limit=images, layers=layers, cache=False)
    return time.perf_counter() - start


def compare(model: LoadedModel, images: int, repeat: int) -> float:
    """Print the rates for `model`; return analyze's over preprocessing + forward's."""
    layers = conv_layers(model)
    batch_size = default_batch_size(model.input_size, model.device)
    forward_seconds(model, preprocessed(model, batch_size), batch_size)  # warm-up
    plain, preprocessing, least, analysed = [], [], [], []
    for _ in range(repeat):
        start = time.perf_counter()
        inputs = preprocessed(model, images)
        preprocessing.append(time.perf_counter() - start)
        plain.append(forward_seconds(model, inputs, batch_size))
        least.append(least_work_seconds(model, inputs, batch_size))
        del inputs
        analysed.append(analyze_seconds(model, images, layers))
    forward, least_work, reading = min(plain), min(least), min(preprocessing)
    analyze_rate = images / min(analysed)
    user_rate = images / (reading + forward)
    ratio = analyze_rate / user_rate
    floor = (reading + forward) / (reading + least_work)
    print(
        f"{model.name}: {images} images, {len(layers)} conv layers, batch {batch_size}: "
        f"preprocessing + forward {user_rate:.1f} img/s (forward alone {images / forward:.1f}), "
        f"analyze {analyze_rate:.1f} img/s: ratio {ratio:.3f}, "
        f"floor (maximum and mean only) {floor:.3f} "
        f"[against the forward pass alone: ratio {analyze_rate * forward / images:.3f}, "
        f"floor {forward / least_work:.3f}]; {load_average()}",
        flush=True,
    )
    return ratio


def measure_memory(images: int) -> None:
    """In this (fresh) process: analyze `images` images; print the seconds and peak RSS in MB."""
    model = small_model()
    seconds = analyze_seconds(model, images, conv_layers(model))
    print(f"{seconds:.3f} {peak_rss_mb():.1f}")


def peak_rss_mb() -> float:
    """Return this process's peak resident memory in MB.

    Linux's VmHWM, when there is one: ru_maxrss of a child also counts the parent's memory that
    the fork shared with it before the exec.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def peak_memory(images: int, threads: int) -> tuple[float, float]:
    """Return (seconds, peak RSS in MB) of analyze over `images` images in a fresh process."""
    # glibc raises its mmap threshold as large blocks are freed, after which freed feature maps
    # stay in the heap: the peak of the same run then varies by +-60 MB. A fixed threshold
    # measures what analyze holds.
    result = subprocess.run(
        [sys.executable, __file__, "--memory", str(images), "--threads", str(threads)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)},
    )
    seconds, peak = result.stdout.split()
    return float(seconds), float(peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2_000, help="for fashion_basecnn")
    parser.add_argument("--imagenet-images", type=int, default=1_000, help="for efficientnet_lite0")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--only",
        choices=("fashion", "imagenet"),
        help="measure only this model's ratio (fashion_basecnn or efficientnet_lite0), "
        "without the memory check",
    )
    parser.add_argument("--memory", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory is not None:
        measure_memory(args.memory)
        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device {device}, threads {args.threads}, data {DATA}, {load_average()}", flush=True)
    ratios = []
    if args.only != "imagenet":
        ratios.append(compare(small_model(), args.images, args.repeat))
    if args.only != "fashion":
        ratios.append(compare(load_model("efficientnet_lite0"), args.imagenet_images, args.repeat))
    if args.only is not None:
        print(f"ratio={min(ratios):.3f}")
        return
    peaks = []
    for images in MEMORY_IMAGES:
        seconds, peak = peak_memory(images, args.threads)
        peaks.append(peak)
        print(
            f"{small_model().name}, {images} images in a fresh process: peak RSS {peak:.0f} MB, "
            f"{images / seconds:.1f} img/s (slower than above: every large block is mmapped)"
        )
    spread = (max(peaks) - min(peaks)) / min(peaks)
    print(f"peak memory spread {spread:.1%} (goal: within 10%; glibc mmap threshold fixed)")
    print(f"ratio={min(ratios):.3f}")


if __name__ == "__main__":
    main()
