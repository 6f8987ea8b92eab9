"""A page that lists recorded runs follows them without redrawing itself on a timer: a light
watch notices a run folder that appears or goes, and a page refreshes on a timer only while a run
trains (`refresh_seconds`).

A lecture room keeps many tabs open: 20 idle Training tabs redrawn every 2 s took 0.7 of a core
of the server. The watch is a timer in each browser too, and each of its ticks is a script run of
the server (~5 ms, more on a busy one): every 30 s, as TensorBoard reloads its runs, not every 5 s,
where 30 tabs opening DeepEyes at once on a busy 2-core server each ticked ~20 times before their
page settled and doubled the server's CPU time per view (docs/performance.md, "A timer in every
tab"). A click reruns the page, which lists the runs anew.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import streamlit as st

from convlens.runs import RunInfo, run_folders
from convlens.style import RUN_REFRESH_SECONDS

NEW_RUN_CHECK_SECONDS = 30
NEW_RUN_NOTICE = (
    f"A run started elsewhere (a terminal, another browser) shows here within "
    f"{NEW_RUN_CHECK_SECONDS} s, or at your next click."
)
TRAINING_STATUSES = ("running", "starting")


def run_paths(runs: Sequence[RunInfo]) -> tuple[str, ...]:
    """The folders of a listing of runs (`convlens.runs.list_runs`), as the watch compares them."""
    return tuple(run.path for run in runs)


@st.fragment(run_every=NEW_RUN_CHECK_SECONDS)
def watch_run_folders(known: tuple[str, ...]) -> None:
    """Redraw the page when a run folder appears or goes (e.g. `convlens train` in a terminal);
    `known` are the folders the page listed (`run_paths`)."""
    if tuple(str(path) for path, _ in run_folders()) != known:
        st.rerun()


def refresh_seconds(statuses: list[str]) -> float | None:
    """How often a view of runs with these statuses refreshes: while one trains, every
    `RUN_REFRESH_SECONDS`; otherwise never (the watch and the user's clicks redraw it)."""
    return RUN_REFRESH_SECONDS if any(s in TRAINING_STATUSES for s in statuses) else None


def metrics_version(run_path: str, live: bool) -> tuple[int, int] | None:
    """Return what keys the cache of a chart of the run's metrics.jsonl (None without the file):
    the file's modification time and size, or, while the run trains (`live`), the refresh period
    under way and -1.

    A training run appends to the file at every step, so keyed by the file every tab's refresh
    built the chart anew; keyed by the period, the tabs that refresh in it share one build, at
    most a period behind the file (docs/performance.md, "A live run watched by a room"). The
    run's last lines are drawn once it stops training: its key is the file's again.
    """
    try:
        status = (Path(run_path) / "metrics.jsonl").stat()
    except OSError:
        return None
    if live:
        return refresh_period(), -1
    return status.st_mtime_ns, status.st_size


def refresh_period() -> int:
    """Return the number of the refresh period under way (`RUN_REFRESH_SECONDS` long): it keys
    what the tabs that refresh in it share while a run trains."""
    return int(time.time() // RUN_REFRESH_SECONDS)
