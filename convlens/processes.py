"""Which process trains a run: a pid file that names the process by its id AND its start time.

A bare process id outlives its process: after a trainer is killed with SIGKILL its `pid` file
stays, and the id may be reused by any other process, which a "Stop" would then signal. So a run's
`pid` file holds "PID START" (START: the process's start time in clock ticks since boot, from
/proc), and a process counts as the run's trainer only while it is alive, started at START, and
runs `convlens train`. Where /proc is missing (macOS, Windows) only the id is checked.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PROC = Path("/proc")


def start_time(pid: int) -> int | None:
    """The start time of process `pid` in clock ticks since boot, or None (no such process, or
    no /proc)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 of proc(5), counted from field 3
    except (IndexError, ValueError):
        return None


def command_line(pid: int) -> list[str] | None:
    """The arguments of process `pid`, or None."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def pid_record(pid: int) -> str:
    """The text of a run's `pid` file for process `pid`: "PID START\\n" ("PID\\n" without /proc)."""
    start = start_time(pid)
    return f"{pid}\n" if start is None else f"{pid} {start}\n"


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def _is_trainer_command(arguments: list[str]) -> bool:
    return "convlens" in " ".join(arguments[:4]) and "train" in arguments


def live_trainer(pid_file: Path, strict: bool = False) -> int | None:
    """The id of the live process that `pid_file` names, or None: the file is missing or
    unreadable, the process is gone, or the id now belongs to a process with another start time.

    `strict` (before signalling it) also asks that the process run `convlens train`; without it, a
    library caller training in its own process (a notebook, a test) counts as alive too.
    """
    with contextlib.suppress(OSError, ValueError):
        parts = pid_file.read_text().split()
        pid = int(parts[0])
        recorded = int(parts[1]) if len(parts) > 1 else None
        if not _alive(pid):
            return None
        if not PROC.is_dir():
            return pid
        if recorded is not None and start_time(pid) != recorded:
            return None
        if strict:
            arguments = command_line(pid)
            if arguments is None or not _is_trainer_command(arguments):
                return None
        return pid
    return None
