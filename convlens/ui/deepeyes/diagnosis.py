"""The Diagnosis section of DeepEyes: what to change in the network, marking idle filters useless,
the smaller network it suggests (and training it), and DeepEyes' own example."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
import torch

from convlens.access import max_trainers
from convlens.annotations import AnnotationStore
from convlens.data import ImageSourceError
from convlens.deepeyes import (
    CASE_STUDY_RUNS,
    ArchitectureSuggestion,
    Finding,
    RunDiagnosis,
    compare_sizes,
    diagnosis_findings,
    filter_list,
    suggested_command,
    suggested_train_options,
    width_options,
)
from convlens.models import list_models
from convlens.runformat import RUN_PREFIX, read_card, run_status, shipped_run, weight_steps
from convlens.runs import TrainerLimitError, run_reference, start_run
from convlens.style import TABLE_ROW_HEIGHT
from convlens.training import command_lines
from convlens.ui.annotations import browser_author
from convlens.ui.deepeyes.caches import (
    TIMED_IMAGES,
    TIMED_PASSES,
    cached_filter_maxima,
    cached_forward_ms,
    cached_near_duplicates,
    cached_snapshot_fingerprint,
    cached_suggestion,
)
from convlens.ui.deepeyes.controls import Thresholds
from convlens.ui.owner import browser_owner

FULL_RUN, SMALL_RUN = CASE_STUDY_RUNS


def annotation_target(run_path: str, step: int, shipped: bool) -> tuple[str, str] | str:
    """Return the (model name, weights fingerprint) that marks of this snapshot are stored
    under, as the Filters page names that model; or why there is none."""
    kept = weight_steps(run_path)
    if step not in kept:
        where = f"step {', '.join(map(str, kept))}" if kept else "no step yet"
        return f"this snapshot kept no weights (the run has them at {where})"
    name, last = Path(run_path).name, step == kept[-1]
    if shipped and last and name in list_models():
        model = name
    elif not shipped and last and run_status(run_path) == "finished":
        model = f"{RUN_PREFIX}{run_reference(run_path)}"
    else:
        model = f"{RUN_PREFIX}{run_reference(run_path)}@{step}"
    return model, cached_snapshot_fingerprint(run_path, step)


def mark_useless(model: str, fingerprint: str, finding: Finding, step: int) -> None:
    """Store the finding's filters as useless (a button's callback)."""
    store = AnnotationStore()
    note = f"DeepEyes: {finding.kind.replace('_', '-')} at step {step}"
    for index in finding.filters:
        store.set_annotation(
            model, fingerprint, finding.layer, int(index), "useless", note, browser_author()
        )
    st.toast(f"Marked {len(finding.filters)} filters of {finding.layer} useless.")


def mark_button(
    finding: Finding,
    target: tuple[str, str] | str,
    labels: dict[tuple[str, int], str],
    step: int,
) -> None:
    """Draw the button that marks a finding's filters useless, or says they are marked."""
    marked = all(labels.get((finding.layer, int(f))) == "useless" for f in finding.filters)
    st.button(
        "Marked useless" if marked else f"Mark {len(finding.filters)} useless",
        key=f"deepeyes_mark_{finding.layer}_{finding.kind}",
        disabled=marked or not isinstance(target, tuple),
        on_click=mark_useless,
        args=(*target, finding, step) if isinstance(target, tuple) else None,
        help=(
            f"Stores {finding.layer}'s {finding.kind.replace('_', '-')} filters "
            f"({filter_list(finding.filters)}) as useless for {target[0]} in the "
            "annotation store; the Annotations page checks what zeroing them costs."
            if isinstance(target, tuple)
            else f"Not here: {target}."
        ),
    )


def diagnosis_panel(
    run_path: str, shipped: bool, step: int, findings: list[Finding], suggestion_text: str
) -> None:
    """Draw the diagnosis sentences, a layer's together, with a button beside them for each
    sentence whose filters can be marked useless (in the sentences' order)."""
    target = annotation_target(run_path, step, shipped)
    labels = AnnotationStore().latest_labels(*target) if isinstance(target, tuple) else {}
    for _, layer_findings in itertools.groupby(findings, key=lambda finding: finding.layer):
        group = list(layer_findings)
        sentences = "\n".join(f"- {finding.sentence}" for finding in group)
        markable = [finding for finding in group if finding.filters]
        if not markable:
            st.markdown(sentences)
            continue
        text_column, button_column = st.columns([4, 1], vertical_alignment="center")
        text_column.markdown(sentences)
        with button_column:
            for finding in markable:
                mark_button(finding, target, labels, step)
    if isinstance(target, tuple):
        st.caption(f"Marks are stored for the model `{target[0]}` (weights {target[1]}).")
    else:
        st.caption(f"Filters cannot be marked at this step: {target}.")
    st.markdown(suggestion_text)


def train_suggestion(manifest: dict, options: dict[str, object]) -> None:
    """Start training the suggested network in its own process and show its run (a callback)."""
    try:
        folder = start_run(
            manifest["arch"],
            int(manifest["config"]["epochs"]),
            options,
            owner=browser_owner(),
            max_running=max_trainers(),
        )
    except TrainerLimitError as error:
        st.toast(str(error))
        return
    st.session_state["run"] = run_reference(folder)
    st.session_state.pop("de_step", None)
    st.toast(f"Started {folder.name}: it appears here as it trains.")


def suggestion_panel(run_path: str, manifest: dict, suggestion: ArchitectureSuggestion) -> None:
    """Draw the suggested smaller architecture and the command that trains it."""
    rows = [
        {
            "layer": part.layer,
            "filters": part.filters,
            "dead, always on or redundant": part.removable,
            f"directions for {suggestion.variance:.0%} of the variance": part.effective,
            "suggested": part.suggested,
        }
        for part in suggestion.layers
    ]
    st.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        width="stretch",
        height="content",
        row_height=TABLE_ROW_HEIGHT,
    )
    if not suggestion.changed:
        return
    try:
        # no --out: the run goes under $CONVLENS_HOME/runs, where the app lists it (and the page
        # shows no server path)
        command = suggested_command(manifest, suggestion.arch_options)
    except (KeyError, ValueError, TypeError) as error:
        st.caption(f"No command for it: {error}")
        return
    st.code(command_lines(command), language="bash")
    st.button(
        "Train it now",
        key="deepeyes_train_suggestion",
        on_click=train_suggestion,
        args=(manifest, suggested_train_options(manifest, suggestion.arch_options)),
        help="Starts `convlens train` with these widths in its own process; this page then "
        "follows the new run as it trains.",
    )
    st.caption(
        "Train it here, from a terminal or on the Training page, then compare the runs: "
        "DeepEyes' own example, 20 → 10 conv1 filters and 500 → 100 fc1 units, is shipped as "
        "fashion_deepeyes_small (below)."
    )


def diagnosis_section(
    run_path: str,
    shipped: bool,
    steps: tuple[int, ...],
    manifest: dict,
    diagnosis: RunDiagnosis,
    limits: Thresholds,
) -> None:
    """The diagnosis with its marks, the smaller network it suggests, and DeepEyes' example;
    `diagnosis` is `cached_diagnosis` of the run's `steps` at its step with these `limits`."""
    step = diagnosis.step
    try:
        maxima = cached_filter_maxima(run_path, steps)
        suggestion = cached_suggestion(
            run_path, steps, step, limits.stability, limits.dead_maximum, limits.always_on
        )
    except (OSError, ValueError, KeyError) as error:
        st.warning(f"DeepEyes cannot read {Path(run_path).name}: {error}")
        return
    st.subheader("Diagnosis")
    st.caption(
        f"Thresholds: stable below a change of {limits.stability:g} (set in Training); dead at a "
        # written as the Layer section's input shows it (0.000001, not 1e-06)
        "maximum activation of at most "
        f"{np.format_float_positional(limits.dead_maximum, trim='-')}, always on at a frequency of at "
        f"least {limits.always_on:g} (set in Layer)."
    )
    duplicates = cached_near_duplicates(run_path, step, limits.dead_maximum)
    findings = diagnosis_findings(diagnosis, duplicates, maxima, limits.dead_maximum)
    diagnosis_panel(
        run_path,
        shipped,
        step,
        findings,
        f"**A smaller network to try:** {suggestion.describe()}."
        if suggestion.changed
        else "**No layer looks oversized** at this snapshot.",
    )
    suggestion_panel(run_path, manifest, suggestion)
    size_comparison()


def size_comparison() -> None:
    """Show that the shipped smaller DeepEyes network is smaller and faster, and as accurate."""
    st.subheader("DeepEyes' example: a smaller network")
    try:
        full, small = (read_card(shipped_run(name)) for name in (FULL_RUN, SMALL_RUN))
        forward = cached_forward_ms(str(shipped_run(FULL_RUN)), str(shipped_run(SMALL_RUN)))
    except (OSError, ValueError, TypeError, KeyError, ImageSourceError) as error:
        st.info(f"The shipped runs {FULL_RUN} and {SMALL_RUN} cannot be compared here: {error}")
        return
    comparison = compare_sizes(dataclasses.asdict(full), dataclasses.asdict(small), forward)
    defaults = width_options("deepeyes")
    rows = []
    for card, milliseconds in zip((full, small), forward, strict=True):
        widths = {**defaults, **card.arch_options}
        rows.append(
            {
                "run": card.name,
                "conv1": widths.get("conv1"),
                "conv2": widths.get("conv2"),
                "fc1": widths.get("fc1"),
                "parameters": f"{card.parameters:,}",
                "training (s, from the card)": round(card.training_seconds),
                "forward (ms per image, measured here)": round(milliseconds, 4),
                "test accuracy": f"{card.test_accuracy:.2%}",
            }
        )
    # a static table wraps its cells: the grid of st.dataframe cut the accuracies off at the right
    st.table(pd.DataFrame(rows), hide_index=True, border="horizontal")
    st.markdown(comparison.sentence())
    st.caption(
        f"Both trained with the same options and seed for {full.epochs} epochs; the forward time "
        f"is the best of {TIMED_PASSES} passes over {TIMED_IMAGES} test images on this machine's "
        f"{'GPU' if torch.cuda.is_available() else 'CPU'}. Pick either run above to see its views."
    )
