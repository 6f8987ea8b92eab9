"""DeepEyes: how each layer of a recorded run settles during training, and which filters idle."""

from pathlib import Path

import streamlit as st

from convlens.charts import (
    curves_chart,
    filter_cells_chart,
    perplexity_bars_chart,
    perplexity_heatmap_chart,
    with_step_rule,
)
from convlens.deepeyes import (
    ALWAYS_ON_FREQUENCY,
    DEAD_MAXIMUM,
    STABILITY_THRESHOLD,
    LayerDiagnosis,
    RunDiagnosis,
    diagnose_run,
)
from convlens.runs import RunInfo, find_run, learning_curves, list_runs
from convlens.style import RUN_REFRESH_SECONDS
from convlens.training import list_snapshots, run_status
from convlens.ui.cache import cached_run_histograms
from convlens.ui.sidebar import page_setup
from convlens.ui.state import persisted

DEFAULT_RUN = "fashion_deepeyes"
LISTED_FILTERS = 30


def default_run_path(runs: list[RunInfo]) -> str:
    """Return the run the bookmark or the session names, else the shipped DeepEyes run."""
    paths = [run.path for run in runs]
    wanted = st.session_state.get("run")
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
    names = [Path(path).name for path in paths]
    return paths[names.index(DEFAULT_RUN)] if DEFAULT_RUN in names else paths[-1]


def stability_sentence(part: LayerDiagnosis) -> str:
    """Return when a layer's perplexity histogram stopped changing, in words."""
    stability = part.stability
    if stability.stable_from_step is None:
        return f"{part.layer}: not stable yet at threshold {stability.threshold:g}"
    return f"{part.layer}: stable from step {stability.stable_from_step} (threshold {stability.threshold:g})"


def filter_list(indices) -> str:
    """Return filter indices as a short comma-separated list."""
    shown = ", ".join(str(int(index)) for index in indices[:LISTED_FILTERS])
    more = len(indices) - LISTED_FILTERS
    return shown + (f" and {more} more" if more > 0 else "")


def activity_sentence(part: LayerDiagnosis, step: int) -> str:
    """Return how many of a layer's filters are dead or always on at `step`, and which."""
    heatmap = part.heatmap
    filters = len(heatmap.maximum)
    if not len(heatmap.dead) and not len(heatmap.always_on):
        return f"{part.layer}: no dead or always-on filters at step {step}."
    parts = []
    if len(heatmap.dead):
        parts.append(f"{len(heatmap.dead)} of {filters} dead ({filter_list(heatmap.dead)})")
    if len(heatmap.always_on):
        parts.append(
            f"{len(heatmap.always_on)} of {filters} always on ({filter_list(heatmap.always_on)})"
        )
    return f"{part.layer} at step {step}: " + "; ".join(parts) + "."


def diagnosis_sentences(diagnosis: RunDiagnosis) -> list[str]:
    """Return one sentence per layer: dead and always-on filters, and whether it has settled."""
    sentences = []
    for part in diagnosis.layers:
        heatmap, step = part.heatmap, diagnosis.step
        filters = len(heatmap.maximum)
        findings = []
        if len(heatmap.dead):
            findings.append(
                f"{len(heatmap.dead)} of {filters} filters dead at step {step}; "
                "the layer may be oversized"
            )
        if len(heatmap.always_on):
            findings.append(
                f"{len(heatmap.always_on)} of {filters} filters always on at step {step}; "
                "they respond to almost every patch and tell little apart"
            )
        if not findings:
            findings.append(f"no dead or always-on filters at step {step}")
        stable = part.stability.stable_from_step
        findings.append(
            f"stable from step {stable}"
            if stable is not None
            else "still changing: more training may help"
        )
        sentences.append(f"{part.layer}: " + "; ".join(findings) + ".")
    return sentences


def step_picker(steps: list[int]) -> int:
    """Return the snapshot step chosen on a slider (the last one by default)."""
    if st.session_state.get("deepeyes_step") not in steps:
        st.session_state["deepeyes_step"] = steps[-1]
    if len(steps) == 1:
        return steps[0]
    return st.select_slider("Snapshot step", options=steps, key="deepeyes_step")


def thresholds() -> tuple[float, float, float]:
    """Return the stability threshold, dead maximum and always-on frequency the user set."""
    stability_column, dead_column, always_on_column = st.columns(3)
    threshold = stability_column.number_input(
        "Stability threshold",
        0.0,
        2.0,
        STABILITY_THRESHOLD,
        step=0.01,
        key="deepeyes_threshold",
        help="A layer is stable from the step after which its perplexity histogram changes "
        "(L1 distance of shares between snapshots) by less than this.",
    )
    dead_maximum = dead_column.number_input(
        "Dead: maximum activation at most",
        0.0,
        100.0,
        DEAD_MAXIMUM,
        format="%.6f",
        key="deepeyes_dead_maximum",
    )
    always_on = always_on_column.number_input(
        "Always on: frequency at least",
        0.0,
        1.0,
        ALWAYS_ON_FREQUENCY,
        step=0.05,
        key="deepeyes_always_on",
        help="Share of probe patches on which a filter responds above half its maximum.",
    )
    return float(threshold), float(dead_maximum), float(always_on)


def deepeyes_view(run_path: str) -> None:
    """The curves, perplexity histograms, filter activity and diagnosis of one run."""
    steps = list_snapshots(run_path)
    if not steps:
        st.info(f"{Path(run_path).name} has no snapshot yet: DeepEyes needs at least one.")
        return
    step = step_picker(steps)
    threshold, dead_maximum, always_on = thresholds()
    try:
        histograms = cached_run_histograms(run_path, tuple(steps))
        diagnosis = diagnose_run(
            run_path,
            step,
            threshold=threshold,
            dead_maximum=dead_maximum,
            always_on_frequency=always_on,
            histograms=histograms,
        )
    except (OSError, ValueError, KeyError) as error:
        st.warning(f"DeepEyes cannot read {Path(run_path).name}: {error}")
        return
    if not diagnosis.layers:
        st.info(f"{Path(run_path).name} recorded no probe layer that DeepEyes analyses.")
        return
    st.markdown(f"**Snapshot at step {step}**")

    st.subheader("Learning curves")
    curves = learning_curves(run_path)
    if len(curves.steps):
        st.altair_chart(with_step_rule(curves_chart(curves), step), width="stretch")
        st.caption(
            "blue: training loss (smoothed) · orange: test accuracy after each epoch · "
            f"dashed: the snapshot at step {step}"
        )
    else:
        st.caption("No training step recorded.")

    st.subheader("Perplexity over training")
    st.caption(
        "A patch's perplexity is how many filters share its response: 1 when one filter singles "
        "it out, the layer's width when all respond alike. A layer has settled when its histogram "
        "stops changing."
    )
    for part in diagnosis.layers:
        over_time, selected = st.columns([3, 2])
        over_time.altair_chart(
            perplexity_heatmap_chart(
                histograms[part.layer], step, f"{part.layer}: perplexity over training"
            ),
            width="stretch",
        )
        selected.altair_chart(
            perplexity_bars_chart(part.histogram, f"{part.layer} at step {step}"),
            width="stretch",
        )
        st.markdown(stability_sentence(part))

    st.subheader(f"Filter activity at step {step}")
    st.caption(
        "Each cell is a filter: its maximum activation over the probe patches, and how often it "
        "responds above half that maximum. Outlined: dead or always-on filters."
    )
    for part in diagnosis.layers:
        maximum_column, frequency_column = st.columns(2)
        maximum_column.altair_chart(
            filter_cells_chart(part.heatmap, "maximum", f"{part.layer}: maximum activation"),
            width="stretch",
        )
        frequency_column.altair_chart(
            filter_cells_chart(part.heatmap, "frequency", f"{part.layer}: activation frequency"),
            width="stretch",
        )
        st.markdown(activity_sentence(part, step))

    st.subheader("Diagnosis")
    st.markdown("\n".join(f"- {sentence}" for sentence in diagnosis_sentences(diagnosis)))


page_setup()
st.title("DeepEyes")
st.caption(
    "DeepEyes' progressive analysis of a recorded run: when each layer's perplexity histogram "
    "settles during training, and which filters are dead or always on, snapshot by snapshot."
)

runs = list_runs()
if not runs:
    st.info("No runs yet: start one on the Training page.")
    st.stop()
st.session_state["run"] = default_run_path(runs)
paths = [run.path for run in runs]
chosen = st.selectbox(
    "Run",
    paths,
    format_func=lambda path: (
        f"{Path(path).name} ({'shipped' if runs[paths.index(path)].shipped else 'yours'})"
    ),
    **persisted("run"),
)
status = run_status(chosen)
if status == "unreadable":
    st.warning(
        f"{Path(chosen).name} cannot be read: its manifest.json is missing or broken. "
        "Pick another run."
    )
    st.stop()
st.caption(f"{status} · `{chosen}`")
refresh = RUN_REFRESH_SECONDS if status == "running" else None
st.fragment(run_every=refresh)(deepeyes_view)(chosen)
