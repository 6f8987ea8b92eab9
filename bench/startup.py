"""Start-up: seconds from starting the app until the Network page is fully drawn in Chromium,
against the bare work in a fresh process (import torch, load the default model, one forward pass
on the default image). Both `streamlit run app.py` and the README's `python -m convlens app`
are measured; the last line, ratio=<bare/app>, is for the README's command. Goal: >= 0.5.

Run: .venv/bin/python bench/startup.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import app_server, browser_page, chain_canvas_ink, wait_for_app  # noqa: E402

BARE = """
import torch
from convlens.data import DEFAULT_IMAGE, load_image
from convlens.models import DEFAULT_MODEL, load_model
from convlens.predict import predict
model = load_model(DEFAULT_MODEL)
predict(model, load_image(DEFAULT_IMAGE).image)
"""


def bare_seconds() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", BARE], check=True, cwd=ROOT)
    return time.perf_counter() - start


def app_seconds(launcher: str) -> tuple[float, dict[str, float]]:
    """Return the seconds to a drawn Network page, and when each phase ended."""
    phases: dict[str, float] = {}
    with browser_page() as (page, log):
        start = time.perf_counter()
        with app_server(launcher=launcher) as url:
            phases["server up"] = time.perf_counter() - start
            page.goto(f"{url}/network", timeout=120_000)
            page.wait_for_selector('[data-testid="stSidebar"]', timeout=120_000)
            phases["page shell"] = time.perf_counter() - start
            wait_for_app(page)
            phases["script done"] = time.perf_counter() - start
            page.wait_for_selector(
                '[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg',
                timeout=120_000,
            )
            assert chain_canvas_ink(page) > 500
            elapsed = time.perf_counter() - start
    return elapsed, phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bare = [bare_seconds() for _ in range(args.repeat)]
    bare_median = statistics.median(bare)
    print("bare work (s):", " ".join(f"{v:.2f}" for v in bare), f"median {bare_median:.2f}")
    medians = {}
    for launcher, label in (
        ("streamlit", "streamlit run app.py"),
        ("convlens", "python -m convlens app (the README's command)"),
    ):
        runs = [app_seconds(launcher) for _ in range(args.repeat)]
        seconds = [value for value, _ in runs]
        medians[launcher] = statistics.median(seconds)
        print(
            f"{label} to a drawn Network page (s):",
            " ".join(f"{v:.2f}" for v in seconds),
            f"median {medians[launcher]:.2f}",
        )
        for _, phases in runs:
            print(
                "  phases (s):", ", ".join(f"{name} {value:.2f}" for name, value in phases.items())
            )
    print(f"plain streamlit run: ratio {bare_median / medians['streamlit']:.2f}")
    print(f"ratio={bare_median / medians['convlens']:.2f}")


if __name__ == "__main__":
    main()
