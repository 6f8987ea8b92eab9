"""The recorded training runs on this machine, the shipped ones and the user's: list, start, stop,
resume and delete them (their files are read through `convlens.runformat`)."""

from __future__ import annotations

import contextlib
import datetime
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convlens.paths import ASSETS_DIR
from convlens.processes import live_trainer, pid_record
from convlens.runformat import (
    RUN_PREFIX,
    find_run,
    list_snapshots,
    parse_run_name,
    read_card,
    read_manifest,
    read_metrics,
    run_roots,
    run_status,
    user_runs_dir,
    weight_steps,
)
from convlens.training import train_command

OWNER_FILE = "owner"


@dataclass(frozen=True)
class RunInfo:
    """One run as `convlens runs` lists it."""

    path: str
    arch: str | None
    status: str
    step: int | None
    test_accuracy: float | None
    shipped: bool
    role: str = ""  # a shipped run's role from its card, e.g. that it is meant to fail


def describe_run(path: Path, shipped: bool = False) -> RunInfo:
    """Return what a listing shows of the run in `path`; never raises for a broken run.

    A shipped run's test accuracy is its card's, measured with the weights it ships (float16),
    as the card, the README and DeepEyes state it; a user's run's is the last one it recorded."""
    status = run_status(path)
    arch, step, accuracy, role = None, None, None, ""
    if status != "unreadable":
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            arch = read_manifest(path).get("arch")
        steps = list_snapshots(path)
        step = steps[-1] if steps else None
        if shipped:
            with contextlib.suppress(OSError, ValueError, TypeError):
                card = read_card(path)
                accuracy, role = float(card.test_accuracy), card.role
        if accuracy is None:
            with contextlib.suppress(OSError, ValueError):
                records = read_metrics(path)
                accuracies = [r["test_accuracy"] for r in records if "test_accuracy" in r]
                accuracy = float(accuracies[-1]) if accuracies else None
    return RunInfo(str(path), arch, status, step, accuracy, shipped, role)


def run_folders() -> list[tuple[Path, bool]]:
    """Return every run folder (with whether it is shipped), in name order; reads no run file."""
    return [
        (entry, shipped)
        for root, shipped in run_roots()
        if root.is_dir()
        for entry in sorted(root.iterdir())
        if entry.is_dir()
    ]


def list_runs() -> list[RunInfo]:
    """Return every run under the shipped and the user's run folders, described, in name order."""
    return [describe_run(path, shipped) for path, shipped in run_folders()]


def openable_runs() -> list[Path]:
    """Return the runs that have a complete snapshot to open as a model (cheap: no metrics read)."""
    return [path for path, _ in run_folders() if weight_steps(path)]


def model_run(model_name: str) -> Path | None:
    """Return the recorded run behind a model of the app, when it is one (a shipped run such as
    `fashion_basecnn`, or a `run:RUN[@STEP]` model), else None."""
    if model_name.startswith(RUN_PREFIX):
        try:
            folder = parse_run_name(model_name)[0]
        except ValueError:
            return None
        return folder if folder.is_dir() else None
    try:
        return find_run(model_name)
    except ValueError:
        return None


def run_reference(path: str | Path) -> str:
    """Name the run in `path` the way `find_run` reads it back: by its folder name when that finds
    this run (a bookmark then works on any machine with the same runs), else by its path."""
    path = Path(path)
    try:
        if find_run(path.name).resolve() == path.resolve():
            return path.name
    except ValueError:
        pass
    return str(path)


def stop_run(reference: str) -> int:
    """Ask the process training the run to stop (SIGTERM); return its pid.

    Only a live `convlens train` process that started when the run's pid file says is signalled
    (`convlens.processes`); a stale pid file (its trainer killed, its id reused or planted) is
    cleared instead, and ValueError says so. The run stays resumable from its last snapshot
    (`convlens train ... --out RUN --resume`).
    """
    path = find_run(reference)
    pid = live_trainer(path / "pid", strict=True)
    if pid is None:
        stale = (path / "pid").exists()
        with contextlib.suppress(OSError):
            (path / "pid").unlink()
        raise ValueError(
            f"the run {path.name} is not running"
            + ("; its stale pid file is cleared" if stale else "")
        )
    os.kill(pid, signal.SIGTERM)
    return pid


def run_owner(path: str | Path) -> str | None:
    """The browser that started the run in `path` from the app (`start_run(owner=...)`), if any."""
    with contextlib.suppress(OSError):
        return (Path(path) / OWNER_FILE).read_text().strip() or None
    return None


def may_manage(path: str | Path, owner: str | None, instructor: bool = False) -> bool:
    """Whether a browser (its owner id, or the instructor) may stop, resume or delete the run in
    `path`: never a shipped run; the instructor any other; a browser the runs it started."""
    if Path(path).resolve().is_relative_to(ASSETS_DIR.resolve()):
        return False
    return instructor or (owner is not None and run_owner(path) == owner)


def running_trainers() -> int:
    """How many of the user's runs ($CONVLENS_HOME/runs, shared by every app process on this
    machine) have a live trainer."""
    root = user_runs_dir()
    if not root.is_dir():
        return 0
    return sum(
        live_trainer(entry / "pid") is not None for entry in root.iterdir() if entry.is_dir()
    )


class TrainerLimitError(ValueError):
    """Starting a run would exceed the number of trainers allowed at once."""


def delete_run(reference: str) -> Path:
    """Delete a user's run folder (not a shipped one, not a running one); return its path."""
    path = find_run(reference).resolve()
    if path.is_relative_to(ASSETS_DIR.resolve()):
        raise ValueError(f"{path} is shipped with ConvLens; it is not deleted")
    if run_status(path) in ("running", "starting"):
        raise ValueError(f"the run in {path} is still training; stop it first")
    shutil.rmtree(path)
    return path


def start_run(
    arch: str,
    epochs: int,
    options: Mapping[str, object] | None = None,
    owner: str | None = None,
    max_running: int | None = None,
) -> Path:
    """Start `convlens train` in its own process (it outlives the app session); return its folder.

    Each run gets a new folder, so runs started at once from several sessions never share files.
    Its output goes to RUN_DIR/train.log; `owner` (a browser's id) is recorded with it. With
    `max_running`, TrainerLimitError when that many trainers run already; the count and the start
    happen under a lock that every process sharing $CONVLENS_HOME takes.
    """
    root = user_runs_dir()
    with _start_lock():
        if max_running is not None and running_trainers() >= max_running:
            raise TrainerLimitError(
                f"{max_running} training {'run is' if max_running == 1 else 'runs are'} running "
                "already, the most this server allows at once; try again when one has finished."
            )
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = root / f"{arch}-{stamp}-{secrets.token_hex(3)}"
        out.mkdir()  # never exist_ok: two sessions must not share a folder
        if owner is not None:
            (out / OWNER_FILE).write_text(f"{owner}\n")
        train_options = {"epochs": epochs, **(options or {})}
        _spawn(train_command(arch, train_options, out, sys.executable), out)
    return out


@contextlib.contextmanager
def _start_lock() -> Iterator[None]:
    """An exclusive lock on $CONVLENS_HOME/runs/.start.lock, which every process starting a
    trainer takes (fcntl; a no-op where there is none)."""
    root = user_runs_dir()
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".start.lock").open("a") as handle:
        try:
            import fcntl
        except ImportError:  # Windows
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def resume_run(reference: str, max_running: int | None = None) -> Path:
    """Continue a stopped or killed run in its own process, to the epochs it was started for
    (TrainerLimitError when `max_running` trainers run already)."""
    path = find_run(reference)
    with _start_lock():
        status = run_status(path)
        if status != "incomplete":
            raise ValueError(f"the run in {path} is {status}; only an incomplete run resumes")
        if max_running is not None and running_trainers() >= max_running:
            raise TrainerLimitError(
                f"{max_running} training runs are running already, the most this server allows "
                "at once; resume this one when one has finished."
            )
        manifest = read_manifest(path)
        epochs = int(manifest["config"]["epochs"])
        train_options = {"epochs": epochs, "resume": True}
        _spawn(train_command(manifest["arch"], train_options, path, sys.executable), path)
    return path


def _spawn(command: list[str], out: Path) -> subprocess.Popen:
    """Start `command` with its output in OUT/train.log; a thread waits for it, so that once it
    ends (finished, stopped, killed) it is reaped: an unreaped child is a zombie, which answers
    signals like a live process and would keep its run "running".

    OUT/pid names the process at once (the trainer writes the same pid once Python and torch
    are loaded, seconds later), so that the run reads "starting" from the start."""
    with (out / "train.log").open("a") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "TQDM_MININTERVAL": "5"},
        )
    (out / "pid").write_text(pid_record(process.pid))
    threading.Thread(target=process.wait, name=f"reap-{process.pid}", daemon=True).start()
    return process


@dataclass(frozen=True)
class Curves:
    """A run's learning curves: training loss per step and test accuracy / loss per epoch."""

    steps: np.ndarray
    loss: np.ndarray
    batch_accuracy: np.ndarray
    epoch_steps: np.ndarray
    epochs: np.ndarray
    test_accuracy: np.ndarray
    test_loss: np.ndarray


def learning_curves(run_dir: str | Path) -> Curves:
    """Return the curves of metrics.jsonl (a partial last line is skipped)."""
    records = read_metrics(run_dir)
    per_step = [r for r in records if "loss" in r]
    per_epoch = [r for r in records if "test_accuracy" in r]

    def column(rows: list[dict], key: str, dtype: type = float) -> np.ndarray:
        return np.array([row[key] for row in rows], dtype=dtype)

    return Curves(
        steps=column(per_step, "step", int),
        loss=column(per_step, "loss"),
        batch_accuracy=column(per_step, "batch_accuracy"),
        epoch_steps=column(per_epoch, "step", int),
        epochs=column(per_epoch, "epoch", int),
        test_accuracy=column(per_epoch, "test_accuracy"),
        test_loss=column(per_epoch, "test_loss"),
    )
