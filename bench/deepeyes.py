"""DeepEyes input map: ConvLens' embedding (`convlens.embedding.embed`, openTSNE) against
scikit-learn's `TSNE` on the same 10,000 patches with the same threads, and placing a later
snapshot's patches into the map (`convlens.embedding.place`). Goal: ratio >= 2.

The patches are receptive fields of Fashion-MNIST test images (a fixed random sample of positions
of conv2's 8x8 output), described by conv2's 50 activations after its ReLU, under two snapshots of
a DeepEyes network trained here (400 steps, snapshots at steps 200 and 400): the map is embedded
at step 200 and the patches at step 400 are placed into it. Both t-SNEs start from PCA with
perplexity 30 and run their default iterations (ConvLens/openTSNE 250 with early exaggeration +
500, scikit-learn 1,000 in all); each map's quality is its 10-nearest-neighbour preservation (the
share of each point's 10 nearest neighbours in activation space that are among its 10 nearest in
the map, over 1,000 points) and the share of points whose 10 nearest map neighbours mostly share
its label.

Both sides get the same threads (`--threads`): ConvLens `n_jobs` (openTSNE's attractive forces,
the grid convolutions of `convlens.embedding.repulsion`), scikit-learn `n_jobs` (its neighbour
search) and OpenMP (its Barnes-Hut gradient), BLAS for both through threadpoolctl. Beside each
side's wall time the bench prints its process CPU time and how many threads did a tenth of the work
or more (Linux), and the machine's load; the library versions come first.

Run: .venv/bin/python bench/deepeyes.py [--patches 10000] [--threads 2] [--repeat 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from functools import partial
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from convlens.data import fashion_mnist
from convlens.embedding import embed, place
from convlens.runformat import load_snapshot
from convlens.training import normalize, train

LAYER = "features.relu2"  # conv2 after its ReLU
SEED = 0


def activations_at(run: Path, step: int, images: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Return conv2's activations (rows, 50) at the sampled (image, y, x) rows under snapshot
    `step` of the run."""
    model, _ = load_snapshot(run, step)
    captured: list[torch.Tensor] = []
    handle = model.get_submodule(LAYER).register_forward_hook(
        lambda module, inputs, output: captured.append(output.detach())
    )
    try:
        with torch.no_grad():
            model(normalize(torch.from_numpy(images)))
    finally:
        handle.remove()
    maps = captured[0].numpy()  # (images, 50, 8, 8)
    return maps[rows[:, 0], :, rows[:, 1], rows[:, 2]].astype(np.float64)


def load_average() -> str:
    """Return the machine's 1-minute load average in words (Linux)."""
    loadavg = Path("/proc/loadavg")
    return f"load {loadavg.read_text().split()[0]}" if loadavg.is_file() else "load unknown"


def thread_ticks() -> dict[str, int]:
    """Return the CPU clock ticks (user + system) of each thread of this process (Linux; empty
    elsewhere)."""
    ticks = {}
    for stat in Path("/proc/self/task").glob("*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        ticks[stat.parent.name] = int(fields[11]) + int(fields[12])
    return ticks


def timed(work: Callable[[], object]) -> tuple[object, float, float, int]:
    """Return (work's result, wall seconds, process CPU seconds, threads that did at least a tenth
    of the CPU time; 0 where that cannot be read)."""
    before = thread_ticks()
    started, cpu = time.perf_counter(), time.process_time()
    result = work()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    spent = [ticks - before.get(thread, 0) for thread, ticks in thread_ticks().items()]
    busy = sum(1 for ticks in spent if ticks >= 0.1 * max(sum(spent), 1)) if spent else 0
    return result, wall, cpu, busy


def neighbour_preservation(
    high: np.ndarray, low: np.ndarray, sample: np.ndarray, k: int = 10
) -> float:
    """Return the mean share of each sampled point's k nearest neighbours in `high` that are
    among its k nearest in `low` (exact search)."""
    shares = []
    for index in sample:
        near_high = np.argsort(np.linalg.norm(high - high[index], axis=1))[1 : k + 1]
        near_low = np.argsort(np.linalg.norm(low - low[index], axis=1))[1 : k + 1]
        shares.append(len(set(near_high) & set(near_low)) / k)
    return float(np.mean(shares))


def label_agreement(low: np.ndarray, labels: np.ndarray, sample: np.ndarray, k: int = 10) -> float:
    """Return the share of sampled points whose k nearest map neighbours mostly share its label."""
    hits = 0
    for index in sample:
        near = np.argsort(np.linalg.norm(low - low[index], axis=1))[1 : k + 1]
        hits += np.bincount(labels[near], minlength=10).argmax() == labels[index]
    return hits / len(sample)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2, help="alternating runs; best kept")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(SEED)

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        started = time.perf_counter()
        train(
            "deepeyes",
            run,
            epochs=1,
            progress=False,
            limit_train=400 * 64,
            limit_test=1000,
            snapshot_every=200,
            probe_images=16,
            probe_patches=100,
            seed=SEED,
        )
        print(f"trained 400 steps in {time.perf_counter() - started:.1f} s")
        test = fashion_mnist("test")
        picked = np.sort(
            rng.choice(len(test.labels), size=min(2000, len(test.labels)), replace=False)
        )
        images = np.asarray(test.images)[picked]
        flat = rng.choice(len(picked) * 64, size=args.patches, replace=False)
        image, rest = np.divmod(flat, 64)
        rows = np.column_stack([image, *np.divmod(rest, 8)])
        labels = np.asarray(test.labels)[picked][image].astype(np.int64)
        earlier = activations_at(run, 200, images, rows)
        later = activations_at(run, 400, images, rows)
    print(f"{args.patches} patches x {earlier.shape[1]} conv2 activations, threads {args.threads}")
    libraries = ("openTSNE", "scikit-learn", "numpy", "scipy", "threadpoolctl")
    print("versions: " + ", ".join(f"{name} {version(name)}" for name in libraries))

    from sklearn.manifold import TSNE

    ours_times, sklearn_times, place_times = [], [], []
    with threadpool_limits(args.threads):
        # alternate the two, keeping each one's best: a busy machine slows both alike
        for round_ in range(1, args.repeat + 1):
            load = load_average()
            ours, seconds, cpu, threads = timed(lambda: embed(earlier, n_jobs=args.threads))
            ours_times.append(seconds)
            ours_line = f"convlens {seconds:.1f} s (CPU {cpu:.1f} s, {threads} threads busy)"

            placed, seconds, cpu, _ = timed(partial(place, ours, later))
            place_times.append(seconds)
            place_line = f"placing the later snapshot {seconds:.1f} s (CPU {cpu:.1f} s)"

            theirs, seconds, cpu, threads = timed(
                lambda: TSNE(
                    n_components=2,
                    perplexity=30,
                    init="pca",
                    random_state=SEED,
                    n_jobs=args.threads,
                ).fit_transform(earlier)
            )
            sklearn_times.append(seconds)
            print(
                f"round {round_} ({load} before, {load_average()} after): {ours_line}, "
                f"{place_line}, scikit-learn {seconds:.1f} s (CPU {cpu:.1f} s, {threads} threads "
                "busy)",
                flush=True,
            )
    ours_seconds, place_seconds = min(ours_times), min(place_times)
    sklearn_seconds = min(sklearn_times)
    print(f"convlens: {ours.describe()}")

    sample = rng.choice(len(earlier), size=min(1000, len(earlier)), replace=False)
    for name, coordinates in (("convlens", ours.coordinates), ("scikit-learn", theirs)):
        print(
            f"{name}: 10-NN preservation {neighbour_preservation(earlier, coordinates, sample):.3f}, "
            f"10-NN label agreement {label_agreement(coordinates, labels, sample):.3f}"
        )
    moved = np.linalg.norm(placed - ours.coordinates, axis=1)
    extent = float(np.ptp(ours.coordinates, axis=0).max())
    print(
        f"placed points: median move {np.median(moved) / extent:.2%} of the map's extent, "
        f"10-NN preservation {neighbour_preservation(later, placed, sample):.3f}"
    )
    print(f"ours_seconds={ours_seconds:.2f}")
    print(f"place_seconds={place_seconds:.2f}")
    print(f"sklearn_seconds={sklearn_seconds:.2f}")
    print(f"ratio={sklearn_seconds / ours_seconds:.2f}")


if __name__ == "__main__":
    main()
