"""A run's pid file names its trainer by id and start time: stale or planted ones are never
signalled (convlens.processes)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from convlens.processes import command_line, live_trainer, pid_record, start_time


def test_start_time_and_command_line_of_this_process() -> None:
    assert start_time(os.getpid()) is not None
    assert any("pytest" in part for part in command_line(os.getpid()))
    assert start_time(2**22 + 12345) is None and command_line(2**22 + 12345) is None


def test_a_pid_file_names_a_live_process_only_while_its_start_time_matches(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    pid_file.write_text(pid_record(os.getpid()))
    assert live_trainer(pid_file) == os.getpid()
    pid, start = pid_file.read_text().split()
    pid_file.write_text(f"{pid} {int(start) - 1}\n")  # the id, reused by another process
    assert live_trainer(pid_file) is None
    pid_file.write_text("garbage")
    assert live_trainer(pid_file) is None
    assert live_trainer(tmp_path / "missing") is None


def test_only_a_convlens_trainer_counts_when_a_signal_would_follow(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    trainer_like = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "convlens", "train"]
    )
    try:
        time.sleep(0.3)
        planted = tmp_path / "planted"
        planted.write_text(f"{sleeper.pid}\n")  # a bare id, as an old or a planted pid file
        assert live_trainer(planted) == sleeper.pid
        assert live_trainer(planted, strict=True) is None
        recorded = tmp_path / "recorded"
        recorded.write_text(pid_record(sleeper.pid))
        assert live_trainer(recorded, strict=True) is None
        assert command_line(trainer_like.pid)[-2:] == ["convlens", "train"]
        trainer = tmp_path / "trainer"
        trainer.write_text(pid_record(trainer_like.pid))
        assert live_trainer(trainer, strict=True) == trainer_like.pid
    finally:
        sleeper.kill()
        trainer_like.kill()
        sleeper.wait()
        trainer_like.wait()
    assert live_trainer(tmp_path / "planted") is None, "a dead process is no trainer"
