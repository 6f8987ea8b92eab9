"""DeepEyes: how each layer of a recorded run settles during training, which filters idle or repeat
each other, where the patches and the filters lie, and a smaller network that does as well.

The page has three sections, one shown at a time so that each fits a projector's screen or two:
Training (every layer at a glance), Layer (one layer in depth) and Diagnosis (what to change).
All three are drawn and the picked one is shown (`convlens.ui.deepeyes.sections`); their pieces
are in `convlens.ui.deepeyes`."""

from pathlib import Path

import streamlit as st

from convlens.deepeyes import PerplexityHistogram, RunDiagnosis, run_phase
from convlens.runformat import list_snapshots, read_manifest
from convlens.runs import list_runs
from convlens.ui.cache import cached_run_histograms
from convlens.ui.deepeyes.caches import cached_diagnosis
from convlens.ui.deepeyes.controls import current_step, current_thresholds, step_slider
from convlens.ui.deepeyes.diagnosis import diagnosis_section
from convlens.ui.deepeyes.layer import layer_section
from convlens.ui.deepeyes.run_picker import pick_run, run_line
from convlens.ui.deepeyes.sections import (
    SectionArguments,
    container_key,
    section_arguments,
    section_switch,
)
from convlens.ui.deepeyes.training import training_section
from convlens.ui.run_watch import (
    TRAINING_STATUSES,
    refresh_seconds,
    run_paths,
    watch_run_folders,
)
from convlens.ui.sidebar import page_setup
from convlens.ui.state import DEEPEYES_SECTIONS, stop_page, url_fragment


def deepeyes_view(section: str, run_path: str, phase: str, shipped: bool) -> None:
    """The snapshot slider and the section `section` of one run: as last shown while another
    section is shown (`section_arguments`)."""
    if run_phase(run_path) != phase:
        st.rerun()  # the run started or ended: redraw the page, and start or stop refreshing
    live = phase in TRAINING_STATUSES
    steps = list_snapshots(run_path)
    if not steps:
        st.info(
            f"{Path(run_path).name} has no snapshot yet: DeepEyes needs at least one."
            + (" This view updates itself when one lands." if live else "")
        )
        return
    current = SectionArguments(run_path, tuple(steps), current_step(steps), current_thresholds())
    arguments = section_arguments(section, st.session_state["de_view"], current)
    step_slider(steps, section, arguments.step)
    try:
        manifest = read_manifest(run_path)
        histograms, diagnosis = section_data(arguments)
    except (OSError, ValueError, KeyError) as error:
        st.warning(f"DeepEyes cannot read {Path(run_path).name}: {error}")
        return
    if not diagnosis.layers:
        st.info(f"{Path(run_path).name} recorded no probe layer that DeepEyes analyses.")
        return
    classes = [str(name) for name in manifest.get("classes", [])] or [str(k) for k in range(10)]
    st.markdown(
        f"**Snapshot at step {arguments.step}**"
        + (" · the run is still training: this view follows its newest snapshot" if live else "")
    )
    limits = arguments.limits
    if section == "layer":
        layer_section(run_path, steps, diagnosis, histograms, classes, limits.dead_maximum)
    elif section == "diagnosis":
        diagnosis_section(run_path, shipped, arguments.steps, manifest, diagnosis, limits)
    else:
        training_section(run_path, diagnosis, histograms, limits.stability, live)


def section_data(
    arguments: SectionArguments,
) -> tuple[dict[str, list[PerplexityHistogram]], RunDiagnosis]:
    """Return the perplexity histograms and the diagnosis that a section drawn with `arguments`
    shows."""
    limits = arguments.limits
    histograms = cached_run_histograms(arguments.run_path, arguments.steps)
    diagnosis = cached_diagnosis(
        arguments.run_path,
        arguments.steps,
        arguments.step,
        limits.stability,
        limits.dead_maximum,
        limits.always_on,
    )
    return histograms, diagnosis


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
live = phase in TRAINING_STATUSES
url_fragment("deepeyes", section_switch, None)(live)
for name in DEEPEYES_SECTIONS:  # each a fragment: a click in one reruns that one only
    with st.container(key=container_key(name)):
        refresh = refresh_seconds([phase]) if name == st.session_state["de_view"] else None
        url_fragment("deepeyes", deepeyes_view, refresh)(name, run.path, phase, run.shipped)
