"""Training recorder cost: steps per second of the same DeepEyes run with and without the recorder
(metrics line per step, a snapshot every 100 steps with weights, statistics and the probe), in one
process, alternating plain and recorded runs and keeping each one's best. Goal: ratio >= 0.9.

Run: .venv/bin/python bench/training.py [--steps 401] [--repeat 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from convlens.training import train


def steps_per_second(steps: int, batch_size: int, record: bool, out: Path | None) -> float:
    """Return the steps per second from the end of step 1 to the end of the step before the last
    (the last one ends the epoch: a test-set evaluation that both runs do alike)."""
    marks: dict[int, float] = {}

    def callback(step: int) -> None:
        if step in (1, steps - 1):
            marks[step] = time.perf_counter()

    train(
        "deepeyes",
        out,
        epochs=1,
        progress=False,
        record=record,
        callback=callback,
        limit_train=steps * batch_size,
        limit_test=1000,
        batch_size=batch_size,
        snapshot_every=100,
        seed=0,
    )
    return (steps - 2) / (marks[steps - 1] - marks[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=401)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(
        f"DeepEyesNet, {args.steps} steps of {args.batch_size}, device {device}, threads {args.threads}"
    )
    # warm-up: imports, allocator, data loading
    steps_per_second(20, args.batch_size, False, None)
    plain, recorded = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            plain.append(steps_per_second(args.steps, args.batch_size, False, None))
            recorded.append(
                steps_per_second(args.steps, args.batch_size, True, Path(tmp) / f"run{i}")
            )
            print(
                f"round {i + 1}: plain {plain[-1]:.1f} steps/s, recorded {recorded[-1]:.1f} steps/s"
            )
    best_plain, best_recorded = max(plain), max(recorded)
    print(f"plain_steps_per_s={best_plain:.1f}")
    print(f"recorded_steps_per_s={best_recorded:.1f}")
    ratios = sorted(r / p for r, p in zip(recorded, plain, strict=True))
    print(f"median_round_ratio={ratios[len(ratios) // 2]:.3f}")
    print(f"ratio={best_recorded / best_plain:.3f}")


if __name__ == "__main__":
    main()
