"""The DeepEyes page's run: which one opens, its picker and its line."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from convlens.access import NOT_A_RUN_NAME, is_plain_name
from convlens.deepeyes import run_phase
from convlens.runformat import find_run
from convlens.runs import RunInfo, model_run, run_reference
from convlens.ui.run_watch import NEW_RUN_NOTICE
from convlens.ui.state import persisted, warn_reset

DEFAULT_RUN = "fashion_deepeyes"


def default_run_path(runs: list[RunInfo], model_name: str) -> str:
    """Return the run the bookmark or the session names, else the sidebar model's when it is a
    recorded run, else the shipped DeepEyes run."""
    paths = [run.path for run in runs]
    asked = st.session_state.get("run")
    if asked and asked not in paths and not is_plain_name(str(asked)):
        st.warning(f"The link's run=: {NOT_A_RUN_NAME}")  # a browser names no folder on the server
        asked = None
    wanted = asked
    if not wanted:
        folder = model_run(model_name)
        wanted = str(folder) if folder is not None else None
    if wanted in paths:
        return wanted
    if wanted:
        try:
            found = find_run(str(wanted)).resolve()
        except ValueError:
            found = None
        for path in paths:
            if Path(path).resolve() == found:
                return path
    if asked:
        warn_reset("run")  # a name no run has (mistyped, or a run deleted since)
    names = [Path(path).name for path in paths]
    return paths[names.index(DEFAULT_RUN)] if DEFAULT_RUN in names else paths[-1]


def run_label(run: RunInfo) -> str:
    """Return how the run picker names a run."""
    origin = "shipped" if run.shipped else "yours"
    state = {"running": ", training", "starting": ", starting"}.get(run.status, "")
    return f"{Path(run.path).name} ({origin}{state})"


def pick_run(runs: list[RunInfo], model_name: str) -> tuple[RunInfo, str]:
    """Draw the run picker, set to `default_run_path`, and return the run picked and its phase."""
    st.session_state["run"] = run_reference(default_run_path(runs, model_name))
    references = [run_reference(run.path) for run in runs]
    chosen = st.selectbox(
        "Run",
        references,
        format_func=lambda reference: run_label(runs[references.index(reference)]),
        help=NEW_RUN_NOTICE,
        **persisted("run"),
    )
    run = runs[references.index(chosen)]
    return run, run_phase(run.path)


def run_line(run: RunInfo, phase: str) -> None:
    """Name the chosen run, whose it is and its phase; its folder is in the tooltip."""
    owner = "shipped run" if run.shipped else "your run"
    role = f" · **{run.role}**" if run.role else ""
    st.caption(f"{owner} {Path(run.path).name} · {phase}{role}")
