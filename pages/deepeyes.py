"""DeepEyes: how each layer of a recorded run settles during training, which filters idle or repeat
each other, where the patches and the filters lie, and a smaller network that does as well.

The page has three sections, one shown at a time so that each fits a projector's screen or two:
Training (every layer at a glance), Layer (one layer in depth) and Diagnosis (what to change).
Their pieces are in `convlens.ui.deepeyes`."""

from pathlib import Path

import streamlit as st

from convlens.deepeyes import run_phase
from convlens.runformat import list_snapshots, read_manifest
from convlens.runs import list_runs
from convlens.ui.cache import cached_run_histograms
from convlens.ui.deepeyes.caches import cached_diagnosis
from convlens.ui.deepeyes.controls import current_thresholds, section_picker, step_picker
from convlens.ui.deepeyes.diagnosis import diagnosis_section
from convlens.ui.deepeyes.layer import layer_section
from convlens.ui.deepeyes.run_picker import pick_run, run_line
from convlens.ui.deepeyes.training import training_section
from convlens.ui.run_watch import refresh_seconds, run_paths, watch_run_folders
from convlens.ui.sidebar import page_setup
from convlens.ui.state import stop_page, url_fragment


def deepeyes_view(run_path: str, phase: str, shipped: bool, section: str) -> None:
    """The snapshot slider and the section `section` of one run."""
    if run_phase(run_path) != phase:
        st.rerun()  # the run started or ended: redraw the page, and start or stop refreshing
    live = phase in ("running", "starting")
    steps = list_snapshots(run_path)
    if not steps:
        st.info(
            f"{Path(run_path).name} has no snapshot yet: DeepEyes needs at least one."
            + (" This view updates itself when one lands." if live else "")
        )
        return
    step = step_picker(steps)
    limits = current_thresholds()
    try:
        manifest = read_manifest(run_path)
        histograms = cached_run_histograms(run_path, tuple(steps))
        diagnosis = cached_diagnosis(
            run_path,
            tuple(steps),
            step,
            limits.stability,
            limits.dead_maximum,
            limits.always_on,
        )
    except (OSError, ValueError, KeyError) as error:
        st.warning(f"DeepEyes cannot read {Path(run_path).name}: {error}")
        return
    if not diagnosis.layers:
        st.info(f"{Path(run_path).name} recorded no probe layer that DeepEyes analyses.")
        return
    classes = [str(name) for name in manifest.get("classes", [])] or [str(k) for k in range(10)]
    st.markdown(
        f"**Snapshot at step {step}**"
        + (" · the run is still training: this view follows its newest snapshot" if live else "")
    )
    if section == "layer":
        layer_section(run_path, steps, diagnosis, histograms, classes, limits.dead_maximum)
    elif section == "diagnosis":
        diagnosis_section(run_path, shipped, steps, manifest, diagnosis, limits)
    else:
        training_section(run_path, diagnosis, histograms, limits.stability)


selection = page_setup("deepeyes")
st.title("DeepEyes")
st.caption(
    "DeepEyes' progressive analysis of a recorded run (Pezzotti et al., 2018): when each layer "
    "settles during training, which filters are dead, always on or duplicates, how the layer sees "
    "the sampled patches and its filters, and what a smaller network would look like."
)

runs = list_runs()
watch_run_folders(run_paths(runs))
if not runs:
    st.info("No runs yet: start one on the Training page.")
    stop_page()
run, phase = pick_run(runs, selection.model_name)
if phase == "unreadable":
    st.warning(
        f"{Path(run.path).name} cannot be read: its manifest.json is missing or broken. "
        "Pick another run."
    )
    stop_page()
run_line(run, phase)
view = url_fragment("deepeyes", deepeyes_view, refresh_seconds([phase]))
view(run.path, phase, run.shipped, section_picker())
