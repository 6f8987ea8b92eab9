"""`python -m convlens app`: `streamlit run serve.py` (`app.py` with the HTTP caching of
`convlens.ui.http_cache`), with the heavy imports warmed up meanwhile.

The page script runs in the server's process, so modules that a background thread has imported
while the browser loads Streamlit's front end need not be imported again by the first run.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from convlens.access import DATA_ROOTS_ENV, INSTRUCTOR_KEY_ENV, MAX_TRAINERS_ENV, whole_number

if TYPE_CHECKING:
    from convlens.models import ModelKey

APP = Path(__file__).resolve().parent.parent.parent / "app.py"
# The app with the HTTP caching a room of browsers needs (`convlens.ui.http_cache`).
SERVED_APP = APP.parent / "serve.py"
TORCH_THREADS_ENV = "CONVLENS_TORCH_THREADS"


def use_serving_threads() -> None:
    """Give each computation of the server one CPU thread (`$CONVLENS_TORCH_THREADS` to change).

    A server's parallelism is its sessions: each script run is its own thread. Torch's default
    of one OpenMP thread per core makes every run's operations wait at barriers for threads that
    other runs (or other processes) keep off the cores: measured here on 2 busy cores, one
    EfficientNet-Lite0 forward pass took 0.35-2.1 s with two threads and 0.05 s with one. Set
    once per process, before any computation; threads started later take it over, the first
    start's preparation too (it runs beside the first students). A setting that is not a
    positive whole number counts as 1: the variable is the instructor's, the pages must run.
    """
    import torch

    threads = max(whole_number(os.environ.get(TORCH_THREADS_ENV, "1")) or 1, 1)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def keep_out_of_collections() -> None:
    """Collect the garbage, then leave every object alive now out of Python's later full
    collections (`gc.freeze`).

    A server's heap is mostly what it loaded at its start (the libraries' modules, the models):
    ~550,000 objects after the warm-up, which every full collection walked again, holding the GIL
    so that every browser's run waited: with 30 browsers a view (`bench/serving.py`), one every
    25-70 s, 0.25-0.31 CPU-seconds each; with those objects left out, 0.004-0.05 s. They live as
    long as the process; the objects created later are collected as before.
    """
    import gc

    gc.collect()
    gc.freeze()


def warm_up() -> None:
    """Import the library the pages need and run the default model once (kernels set up once);
    let the allocator keep freed feature maps for the next forward pass (`convlens.allocator`).

    Nothing Streamlit-aware is imported here: components must be declared by the page runs,
    once the server's runtime exists.
    """
    from convlens import charts, graph, weights  # noqa: F401
    from convlens.allocator import reuse_freed_memory
    from convlens.data import DEFAULT_IMAGE, load_image
    from convlens.models import DEFAULT_MODEL, load_model
    from convlens.predict import predict

    reuse_freed_memory()
    predict(load_model(DEFAULT_MODEL), load_image(DEFAULT_IMAGE).image)


@dataclass
class Preparation:
    """How far the first start's analysis of the shipped models has come (read by the pages)."""

    done: int = 0
    total: int = 0
    running: bool = False
    error: str | None = None
    task: str = "activation statistics on Fashion-MNIST"

    def progress(self) -> str:
        """How far it has come, for a page: "starting" until it has counted its images."""
        if not self.total:
            return "starting"
        return f"{self.done:,}/{self.total:,} image" + ("s" if self.total != 1 else "")


PREPARATION = Preparation()


def prepares(model: ModelKey, data: str) -> bool:
    """Whether the preparation under way will analyse `model` over `data`."""
    from convlens.activations import prepared_shipped

    return PREPARATION.running and prepared_shipped(model, data)


def prepare_shipped_models() -> None:
    """Fill the activation cache for the shipped models on the bundled test split, then lay out
    the input and filter maps of DeepEyes' case-study runs and place every snapshot into the last
    one's input map (60 layers' maps, about 2 CPU-minutes here, and 54 placements, half a minute
    more), once; the other shipped runs' maps are laid out when first shown, and kept too.

    What is cached already takes a moment; `CONVLENS_PREPARE=0` skips it (tests do).
    """
    if not preparation_wanted():
        return
    from convlens.activations import prepare_shipped
    from convlens.deepeyes import CASE_STUDY_RUNS, prepare_maps
    from convlens.runformat import shipped_run

    def report(done: int, total: int) -> None:
        PREPARATION.done, PREPARATION.total = done, total

    PREPARATION.running = True
    try:
        prepare_shipped(progress=report)
        PREPARATION.task = "DeepEyes maps"
        prepare_maps([shipped_run(name) for name in CASE_STUDY_RUNS], progress=report)
    except Exception as error:  # noqa: BLE001 - shown on the Home page, the app goes on
        PREPARATION.error = f"{type(error).__name__}: {error}"
    finally:
        PREPARATION.running = False


def preparation_wanted() -> bool:
    return os.environ.get("CONVLENS_PREPARE", "1").strip() != "0"


PREPARE_AFTER_SECONDS = 15


def start_up() -> None:
    """Warm up, then prepare the shipped models' analyses (in the launcher's thread).

    The preparation waits a little, so that the first page a browser opens is drawn first; it
    counts as running from the start, so that the Home page follows it from the first visit.
    """
    PREPARATION.running = preparation_wanted()
    try:
        warm_up()
        keep_out_of_collections()
        time.sleep(PREPARE_AFTER_SECONDS)
        prepare_shipped_models()
        keep_out_of_collections()
    finally:
        PREPARATION.running = False


def add_serving_options(parser: argparse.ArgumentParser) -> None:
    """The options of `convlens app` that are ConvLens' own (the rest go to Streamlit)."""
    parser.add_argument(
        "--data-root",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder whose images and ImageFolders browsers may open (repeatable); "
        "without one, browsers see only samples, Fashion-MNIST and their own uploads",
    )
    parser.add_argument(
        "--max-trainers",
        type=int,
        metavar="N",
        help="how many training runs browsers may have running at once (default 2)",
    )
    parser.add_argument(
        "--instructor-key",
        metavar="KEY",
        help="a key that, typed once in the Training page, lets that browser manage every run",
    )


class AppOptionError(ValueError):
    """A bad ConvLens option of `convlens app`, in one sentence."""


def serving_environment(argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Split `convlens app ARGS` into the environment that ConvLens' own options set
    (`convlens.access` reads it) and the arguments left for Streamlit."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    add_serving_options(parser)
    try:
        options, rest = parser.parse_known_args(list(argv))
    except SystemExit as error:  # argparse's own exit on a missing value
        raise AppOptionError(
            "--data-root, --max-trainers and --instructor-key need a value"
        ) from error
    environment: dict[str, str] = {}
    roots = []
    for root in options.data_root:
        path = Path(root).expanduser().resolve()
        if not path.is_dir():
            raise AppOptionError(f"--data-root {root} is not a folder")
        roots.append(str(path))
    if roots:
        environment[DATA_ROOTS_ENV] = os.pathsep.join(roots)
    if options.max_trainers is not None:
        if options.max_trainers < 0:
            raise AppOptionError("--max-trainers must be 0 or more")
        environment[MAX_TRAINERS_ENV] = str(options.max_trainers)
    if options.instructor_key is not None:
        if not options.instructor_key.strip():
            raise AppOptionError("--instructor-key must not be empty")
        environment[INSTRUCTOR_KEY_ENV] = options.instructor_key.strip()
    return environment, rest


def run_app(argv: Sequence[str] = ()) -> None:
    """Start the app like `streamlit run serve.py ARGS`, after taking ConvLens' own options out of
    `argv` into the environment; does not return."""
    from streamlit.web import cli

    environment, streamlit_args = serving_environment(argv)
    os.environ.update(environment)
    # Streamlit reads `.streamlit/config.toml` from the working directory: the project's holds
    # the room's safety settings (no tracebacks in browsers, the upload limit), whichever folder
    # the command was started from. --data-root folders are already absolute.
    os.chdir(APP.parent)
    use_serving_threads()
    threading.Thread(target=start_up, name="convlens-start-up", daemon=True).start()
    cli.main(["run", str(SERVED_APP), *streamlit_args], prog_name="streamlit")
