"""The Training page's sections (pages/training.py composes them): the architecture and the settings
of a new run, its start, and the runs with the selected one's curves, card and controls."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from convlens.access import max_trainers
from convlens.charts import curves_chart
from convlens.runs import (
    RunInfo,
    TrainerLimitError,
    delete_run,
    learning_curves,
    list_runs,
    may_manage,
    resume_run,
    run_reference,
    start_run,
    stop_run,
)
from convlens.ui.owner import browser_owner, is_instructor
from convlens.ui.run_watch import (
    NEW_RUN_NOTICE,
    metrics_version,
    refresh_period,
    refresh_seconds,
    run_paths,
    watch_run_folders,
)
from convlens.ui.state import persisted, url_fragment, warn_reset
from convlens.ui.vega import vega_lite_spec

LOSSES = {"ce": "cross-entropy", "hinge": "multi-class hinge"}


def architecture_picker() -> str:
    """Return the architecture of the next run: DeepEyes' network or CNNVis' BaseCNN."""
    arch = st.segmented_control(
        "Architecture",
        ["deepeyes", "basecnn"],
        default="deepeyes",
        key="train_arch",
        help="deepeyes: DeepEyes' MNIST network (2 conv, 2 fc); basecnn: CNNVis' BaseCNN (10 conv)",
    )
    return arch or "deepeyes"


def run_settings(arch: str) -> tuple[int, dict[str, object]] | None:
    """Draw the settings of a run of `arch`; return its epochs and options when Start training
    is pressed, else None."""
    # Only the button starts a run: Enter in a number field would start one with the settings typed
    # so far, and a user who types them one by one would start several runs at once.
    with st.form("start_run", border=True, enter_to_submit=False):
        epochs_column, seed_column = st.columns(2)
        epochs = epochs_column.number_input("Epochs", 1, 200, 3, key="train_epochs")
        seed = seed_column.number_input("Seed", 0, 2**31 - 1, 0, key="train_seed")
        options = {"seed": seed, **optimisation_settings()}
        if arch == "deepeyes":
            options.update(layer_widths())
        else:
            options.update(basecnn_variant())
        started = st.form_submit_button("Start training", type="primary")
    return (int(epochs), options) if started else None


def optimisation_settings() -> dict[str, object]:
    """The optimizer, learning rate and its schedule, loss and initialisation of a run."""
    optimizer_column, lr_column, schedule_column, loss_column, init_column = st.columns(5)
    optimizer = optimizer_column.selectbox("Optimizer", ["sgd", "adam"], key="train_optimizer")
    lr = lr_column.number_input(
        "Learning rate (0: default)", 0.0, 10.0, 0.0, format="%.4f", key="train_lr"
    )
    schedule = schedule_column.selectbox(
        "Learning rate schedule",
        ["constant", "cosine"],
        key="train_schedule",
        help="cosine: decays the learning rate to 0 over the run's epochs",
    )
    loss = loss_column.selectbox(
        "Loss", list(LOSSES), format_func=LOSSES.__getitem__, key="train_loss"
    )
    init = init_column.selectbox(
        "Initialisation",
        ["kaiming", "default", "normal:0.01"],
        key="train_init",
        help="BaseCNN without batch norm does not learn from PyTorch's default initialisation.",
    )
    return {
        "optimizer": optimizer,
        "schedule": schedule,
        "loss": loss,
        "init": init,
        "lr": lr or None,
    }


def layer_widths() -> dict[str, object]:
    """The widths of DeepEyes' network: its two convolutions and its first fully connected layer."""
    st.markdown("Layer widths")
    conv1_column, conv2_column, fc1_column = st.columns(3)
    return {
        "conv1": conv1_column.number_input("conv1", 1, 512, 20, key="train_conv1"),
        "conv2": conv2_column.number_input("conv2", 1, 512, 50, key="train_conv2"),
        "fc1": fc1_column.number_input("fc1", 1, 4096, 500, key="train_fc1"),
    }


def basecnn_variant() -> dict[str, object]:
    """BaseCNN's width multiplier, depth and batch norm."""
    st.markdown("BaseCNN variant")
    width_column, depth_column, norm_column = st.columns(3)
    return {
        "width": width_column.selectbox(
            "width ×", [0.25, 0.5, 1.0, 2.0, 4.0], index=2, key="train_width"
        ),
        "depth": depth_column.selectbox("depth", ["base", "shallow", "deep"], key="train_depth"),
        "batchnorm": norm_column.checkbox("batch norm", key="train_batchnorm"),
    }


def start_training(arch: str, epochs: int, options: dict[str, object]) -> None:
    """Start a run in its own process, owned by this browser, and select it; or say why the
    server refused it (its cap of trainers reached)."""
    try:
        folder = start_run(arch, epochs, options, owner=browser_owner(), max_running=max_trainers())
    except TrainerLimitError as error:
        st.warning(str(error))
    else:
        listing_changed()
        st.session_state["run"] = run_reference(folder)
        st.success(f"Started {folder.name}; *Runs* lists it as starting until its first step.")


def runs_section() -> None:
    """The selected run (its role, curves, card and controls), then every run; refreshed while
    a run trains, and redrawn when a run folder appears or goes (`convlens.ui.run_watch`)."""
    runs = list_runs()
    watch_run_folders(run_paths(runs))
    live = refresh_seconds([run.status for run in runs])
    url_fragment("training", runs_view, live)(live is not None)


@st.cache_data(show_spinner=False, max_entries=2)
def runs_of_period(period: int) -> list[RunInfo]:
    """Every run, listed once a refresh period (`refresh_period`) for all the tabs that refresh in
    it while a run trains: `list_runs` reads each run's status, manifest and metrics, the live
    run's longer at every step. This page's Start, Stop, Resume and Delete clear it in this
    process (`listing_changed`); a run started elsewhere is listed in the next period."""
    return list_runs()


def trains(runs: list[RunInfo]) -> bool:
    """Whether one of `runs` trains (and the view of them refreshes on a timer)."""
    return refresh_seconds([run.status for run in runs]) is not None


def listing_changed() -> None:
    """Forget the listings of the refresh periods: a run started, stopped, resumed or deleted."""
    runs_of_period.clear()


def runs_view(live: bool) -> None:
    """`runs_section`'s view, which a fragment refreshes on its own while a run trains; when a
    run starts or ends training, the whole page reruns to start or stop the refreshes."""
    runs = runs_of_period(refresh_period()) if live else list_runs()
    if trains(runs) != live:
        runs = list_runs()  # a run started since the period's listing: read them now
    if trains(runs) != live:
        st.rerun()
    if not runs:
        st.info(
            "No runs yet: start one under *Start a run*, or run "
            "`python -m convlens train --arch deepeyes`."
        )
        return
    # the run picked, with its role ("meant to fail"), within a projector's first screen
    run = run_picker(runs)
    if run.role:
        st.info(sentence(run.role), icon=":material/info:")
    learning_curves_chart(run)
    model_card(run)
    if not run.shipped:
        run_controls(run)
    st.markdown("**All runs**")
    runs_table(runs)


def sentence(text: str) -> str:
    """`text` (a card's role) as a sentence: capitalised, with a full stop."""
    return f"{text[:1].upper()}{text[1:]}."


def runs_table(runs: list[RunInfo]) -> None:
    """Every run: its architecture, status, last snapshot, test accuracy, origin and role."""
    table = pd.DataFrame(
        {
            "run": [Path(run.path).name for run in runs],
            # a run starting may not have written its manifest, where its architecture is
            "architecture": [run.arch or ("" if run.status == "starting" else "?") for run in runs],
            "status": [run.status for run in runs],
            "last snapshot": [run.step or 0 for run in runs],
            "test accuracy": [
                "" if run.test_accuracy is None else f"{run.test_accuracy:.2%}" for run in runs
            ],
            "origin": ["shipped" if run.shipped else "yours" for run in runs],
            "about": [run.role for run in runs],
        }
    )
    # a static table wraps its cells: the grid of st.dataframe cut the roles off at the right
    st.table(table, hide_index=True, border="horizontal")


def run_picker(runs: list[RunInfo]) -> RunInfo:
    """Return the run picked (state `run`): the session's, else the newest."""
    references = [run_reference(run.path) for run in runs]
    if st.session_state.get("run") not in references:
        if st.session_state.get("run"):
            warn_reset("run")  # a name no run has (mistyped, or a run deleted since)
        st.session_state["run"] = references[-1]
    chosen = st.selectbox(
        "Run",
        references,
        format_func=lambda ref: Path(ref).name,
        help=NEW_RUN_NOTICE,
        **persisted("run"),
    )
    return runs[references.index(chosen)]


@st.cache_data(show_spinner=False, max_entries=32)
def curves_spec(run_path: str, version: tuple[int, int] | None) -> tuple[dict, int] | None:
    """Return the spec of the run's learning curves and its last step recorded (None before its
    first); `version` (`metrics_version`) keys it: while the run trains, one build a refresh
    period for every tab that shows it."""
    curves = learning_curves(run_path)
    if not len(curves.steps):
        return None
    return vega_lite_spec(curves_chart(curves)), int(curves.steps[-1])


def learning_curves_chart(run: RunInfo) -> None:
    """The run's training loss and test accuracy, and the name that opens it as a model."""
    drawn = curves_spec(run.path, metrics_version(run.path, trains([run])))
    if drawn is None:
        st.caption(f"{run.status}: no step recorded yet.")
        return
    spec, last_step = drawn
    reference = run_reference(run.path)
    st.vega_lite_chart(spec, width="stretch")
    st.caption(
        f"{run.status} · step {last_step} · blue: training loss (smoothed) · "
        "orange: test accuracy after each epoch · open it as a model: "
        + (f"`{Path(reference).name}`" if run.shipped else f"`run:{reference}`")
    )


def model_card(run: RunInfo) -> None:
    """A shipped run's card, folded: what it is and how to train it again."""
    card = Path(run.path) / "card.md"
    if run.shipped and card.is_file():
        with st.expander("Model card: what this shipped run is and how to train it again"):
            st.markdown(card.read_text())


def run_controls(run: RunInfo) -> None:
    """Stop, Resume and Delete for a run this browser may manage; for another, why not."""
    if not may_manage(run.path, browser_owner(), is_instructor()):
        st.caption(
            "Only the browser that started this run, or the instructor, can stop or delete it."
        )
        return
    stop_column, delete_column, _ = st.columns([1, 1, 4])
    name = Path(run.path).name
    try:
        if run.status in ("running", "starting") and stop_column.button("Stop", key="run_stop"):
            stop_run(run.path)
            listing_changed()
            st.toast(
                f"Stopped {name}; it resumes from its last snapshot."
                if run.status == "running"
                else f"Stopped {name} before its first step."
            )
        if run.status == "incomplete" and stop_column.button(
            "Resume",
            key="run_resume",
            help="Continue from the last snapshot, to the planned epochs",
        ):
            resume_run(run.path, max_running=max_trainers())
            listing_changed()
            st.toast(f"Resuming {name}.")
    except ValueError as error:  # not running any more, or the cap reached
        st.warning(f"{str(error)[:1].upper()}{str(error)[1:]}.")
    if run.status not in ("running", "starting"):
        confirm = delete_column.popover("Delete", help="Delete this run's folder")
        confirm.markdown(f"Delete **{name}** and all its snapshots? This cannot be undone.")
        if confirm.button("Delete for good", key="run_delete", type="primary"):
            delete_run(run.path)
            listing_changed()
            st.session_state.pop("run", None)
            st.rerun()
