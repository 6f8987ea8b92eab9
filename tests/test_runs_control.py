"""Training started from browsers is bounded and owned: a cap on live trainers, owners, and a
Stop that never signals a process that is not the run's trainer."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from convlens.paths import convlens_home
from convlens.runformat import run_status, shipped_run
from convlens.runs import (
    TrainerLimitError,
    may_manage,
    run_owner,
    running_trainers,
    start_run,
    stop_run,
)

TINY = {"conv1": 2, "conv2": 2, "fc1": 4}


def wait_until_stopped(folder: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while run_status(folder) in ("running", "starting") and time.monotonic() < deadline:
        time.sleep(0.2)


def test_rapid_starts_beyond_the_cap_start_nothing() -> None:
    """N + 3 starts at once (from several sessions' threads) leave N trainers."""
    cap = 1
    started: list[Path] = []
    refused: list[str] = []

    def start() -> None:
        try:
            started.append(start_run("deepeyes", 1, TINY, owner="a", max_running=cap))
        except TrainerLimitError as error:
            refused.append(str(error))

    threads = [threading.Thread(target=start) for _ in range(cap + 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert len(started) == cap and len(refused) == 3
        assert "1 training run is running already" in refused[0]
        assert running_trainers() == cap
        folders = [p for p in (convlens_home() / "runs").iterdir() if p.is_dir()]
        assert folders == started, "a refused start leaves no folder"
    finally:
        for folder in started:
            stop_run(str(folder))
            wait_until_stopped(folder)
    assert running_trainers() == 0


def test_stop_never_signals_a_process_that_is_not_the_runs_trainer() -> None:
    run = convlens_home() / "runs" / "planted"
    run.mkdir(parents=True)
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        (run / "pid").write_text(f"{bystander.pid}\n")
        with pytest.raises(ValueError, match="not running; its stale pid file is cleared"):
            stop_run("planted")
        time.sleep(0.2)
        assert bystander.poll() is None, "the unrelated process survives"
        assert not (run / "pid").exists()
        with pytest.raises(ValueError, match="is not running$"):
            stop_run("planted")
    finally:
        bystander.kill()
        bystander.wait()


def test_a_browser_manages_only_the_runs_it_started() -> None:
    mine = convlens_home() / "runs" / "mine"
    mine.mkdir(parents=True)
    (mine / "owner").write_text("browser-a\n")
    theirs = convlens_home() / "runs" / "cli-run"
    theirs.mkdir()
    assert run_owner(mine) == "browser-a" and run_owner(theirs) is None
    assert may_manage(mine, "browser-a")
    assert not may_manage(mine, "browser-b") and not may_manage(mine, None)
    assert not may_manage(theirs, "browser-a")
    assert may_manage(theirs, None, instructor=True)
    shipped = shipped_run("fashion_deepeyes")
    assert not may_manage(shipped, None, instructor=True), "shipped runs stay untouchable"
