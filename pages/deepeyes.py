"""DeepEyes: how each layer of a recorded run settles during training, which filters idle or repeat
each other, where the patches and the filters lie, and a smaller network that does as well.

The page has three sections, one shown at a time so that each fits a projector's screen or two:
Training (every layer at a glance), Layer (one layer in depth) and Diagnosis (what to change)."""

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
import torch

from convlens.access import NOT_A_RUN_NAME, is_plain_name, max_trainers
from convlens.annotations import AnnotationStore
from convlens.charts import (
    curves_chart,
    filter_activity_chart,
    filter_map_chart,
    input_map_chart,
    perplexity_bars_chart,
    perplexity_heatmap_chart,
    stability_chart,
    with_step_rule,
)
from convlens.data import ImageSourceError
from convlens.deepeyes import (
    ALWAYS_ON_FREQUENCY,
    DEAD_MAXIMUM,
    STABILITY_THRESHOLD,
    ArchitectureSuggestion,
    Finding,
    LayerDiagnosis,
    LayerStability,
    PerplexityHistogram,
    RunDiagnosis,
    compare_sizes,
    crop_patches,
    diagnose_run,
    diagnosis_findings,
    filter_list,
    firing,
    near_duplicates,
    run_phase,
    specificity_phrase,
    strongest,
    suggest_architecture,
    suggested_command,
    suggested_train_options,
    width_options,
)
from convlens.embedding import points_in_box
from convlens.models import list_models
from convlens.runformat import (
    find_run,
    list_snapshots,
    read_manifest,
    run_status,
    shipped_run,
    weight_steps,
)
from convlens.runs import (
    RunInfo,
    TrainerLimitError,
    learning_curves,
    list_runs,
    model_run,
    run_folders,
    run_reference,
    start_run,
)
from convlens.shipped import read_card
from convlens.style import (
    OVERVIEW_COLUMNS,
    PATCH_SIZE,
    RUN_REFRESH_SECONDS,
    STABILITY_LEGEND_COLUMNS,
    TABLE_ROW_HEIGHT,
)
from convlens.ui.cache import cached_run_histograms
from convlens.ui.deepeyes import (
    TIMED_IMAGES,
    TIMED_PASSES,
    cached_filter_map,
    cached_filter_maxima,
    cached_forward_ms,
    cached_input_map,
    cached_mean_perplexities,
    cached_patch_boxes,
    cached_probe,
    cached_probe_rows,
    cached_snapshot_fingerprint,
    cached_test_images,
)
from convlens.ui.owner import browser_owner
from convlens.ui.sidebar import page_setup
from convlens.ui.state import DEEPEYES_SECTIONS, NO_FILTER, keep_valid, persisted, write_to_url

DEFAULT_RUN = "fashion_deepeyes"
FULL_RUN, SMALL_RUN = "fashion_deepeyes", "fashion_deepeyes_small"
PATCHES_SHOWN = 40
NEW_RUN_CHECK_SECONDS = 5
SECTIONS = {name: name.capitalize() for name in DEEPEYES_SECTIONS}
SECTIONS_CAPTION = (
    "Training: when the layers settle · Layer: what one layer's filters and patches do · "
    "Diagnosis: what to change in the network."
)
# Session keys of the thresholds, with their defaults: each input is drawn in one section, and
# every section uses them.
THRESHOLD_DEFAULTS = {
    "deepeyes_threshold": STABILITY_THRESHOLD,
    "deepeyes_dead_maximum": DEAD_MAXIMUM,
    "deepeyes_always_on": ALWAYS_ON_FREQUENCY,
}


# --------------------------------------------------------------------------------------------
# Pieces of the page


def default_run_path(runs: list[RunInfo], model_name: str) -> str:
    """Return the run the bookmark or the session names, else the sidebar model's when it is a
    recorded run, else the shipped DeepEyes run."""
    paths = [run.path for run in runs]
    wanted = st.session_state.get("run")
    if wanted and wanted not in paths and not is_plain_name(str(wanted)):
        st.warning(f"The link's run=: {NOT_A_RUN_NAME}")  # a browser names no folder on the server
        wanted = None
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
    names = [Path(path).name for path in paths]
    return paths[names.index(DEFAULT_RUN)] if DEFAULT_RUN in names else paths[-1]


def run_label(run: RunInfo) -> str:
    """Return how the run picker names a run."""
    origin = "shipped" if run.shipped else "yours"
    state = {"running": ", training", "starting": ", starting"}.get(run.status, "")
    return f"{Path(run.path).name} ({origin}{state})"


def run_line(run: RunInfo, phase: str) -> None:
    """Name the chosen run, whose it is and its phase; its folder is in the tooltip."""
    owner = "shipped run" if run.shipped else "your run"
    st.caption(f"{owner} {Path(run.path).name} · {phase}", help=f"Folder: `{run.path}`")


def stable_phrase(stability: LayerStability) -> str:
    """Return "stable from step N" or "not stable yet"."""
    if stability.stable_from_step is None:
        return "not stable yet"
    return f"stable from step {stability.stable_from_step}"


def stability_sentence(part: LayerDiagnosis) -> str:
    """Return when a layer's perplexity histogram stopped changing, in words."""
    stability = part.stability
    if stability.stable_from_step is None:
        return f"{part.layer}: not stable yet at threshold {stability.threshold:g}"
    return f"{part.layer}: {stable_phrase(stability)} (threshold {stability.threshold:g})"


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


def step_picker(steps: list[int]) -> int:
    """Return the snapshot step chosen on a slider: the last one by default, and the newest one
    of a run still training as long as the slider stays on its newest snapshot."""
    current = st.session_state.get("de_step")
    newest_seen = st.session_state.get("_deepeyes_newest_step")
    if current not in steps or (current == newest_seen and current != steps[-1]):
        st.session_state["de_step"] = steps[-1]
    st.session_state["_deepeyes_newest_step"] = steps[-1]
    if len(steps) == 1:
        return steps[0]
    return st.select_slider("Snapshot step", options=steps, key="de_step")


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """What the diagnosis counts as stable, dead and always on."""

    stability: float
    dead_maximum: float
    always_on: float


def current_thresholds() -> Thresholds:
    """Return the thresholds the user set, the defaults until then.

    They live under plain session keys (the inputs edit them through `persisted`), so that a
    section that does not draw an input still uses its value."""
    for key, default in THRESHOLD_DEFAULTS.items():
        st.session_state.setdefault(key, default)
    return Thresholds(
        stability=float(st.session_state["deepeyes_threshold"]),
        dead_maximum=float(st.session_state["deepeyes_dead_maximum"]),
        always_on=float(st.session_state["deepeyes_always_on"]),
    )


def stability_threshold_input() -> None:
    """Draw the input of the stability threshold."""
    st.number_input(
        "Stability threshold",
        0.0,
        2.0,
        step=0.01,
        help="A layer is stable from the step after which its perplexity histogram changes "
        "(L1 distance of shares between snapshots, 0 to 2) by less than this.",
        **persisted("deepeyes_threshold"),
    )


def activity_threshold_inputs() -> None:
    """Draw the inputs of the dead and always-on thresholds, above the heatmaps they outline."""
    dead_column, always_on_column = st.columns(2)
    dead_column.number_input(
        "Dead: maximum activation at most",
        0.0,
        100.0,
        format="%.6f",
        **persisted("deepeyes_dead_maximum"),
    )
    always_on_column.number_input(
        "Always on: frequency at least",
        0.0,
        1.0,
        step=0.05,
        help="Share of probe patches on which a filter responds above half its maximum.",
        **persisted("deepeyes_always_on"),
    )


def section_picker() -> str:
    """Return the section the user picked: Training unless the session or the URL names
    another. A switch redraws the whole page."""
    if "de_view" not in st.session_state and st.session_state.get("de_filter") is not None:
        st.session_state["de_view"] = "layer"  # a bookmark from before the sections names a filter
    keep_valid("de_view")
    st.segmented_control(
        "Section",
        list(SECTIONS),
        required=True,
        format_func=SECTIONS.__getitem__,
        label_visibility="collapsed",
        **persisted("de_view"),
    )
    st.caption(SECTIONS_CAPTION)
    section = st.session_state["de_view"]
    drawn = st.session_state.get("_deepeyes_drawn_view")
    st.session_state["_deepeyes_drawn_view"] = section
    if drawn is not None and drawn != section:
        # After a fragment run the browser sometimes kept a chart of the last section beside the
        # new one (one Chromium run in three); a whole run clears what it did not draw.
        st.rerun()
    return section


def forget_filter() -> None:
    """A filter number means nothing in another layer."""
    st.session_state["de_filter"] = NO_FILTER


def latest(key: str) -> object:
    """Return the state `key` as the user last set it: its widget's value when the widget is on
    the page, which a callback sees before the widget's own callback copies it to `key`."""
    return st.session_state.get(f"{key}_widget", st.session_state.get(key))


def pick_filter(chart_key: str, run: str, layer: str):
    """Return the callback that makes a click on a filter in one of `layer`'s charts of `run` the
    selected filter.

    The browser may send a chart's last selection again after the page stopped drawing the
    chart (another layer or run shown since): such a selection is ignored, so that it never
    brings back its filter, nor its layer over the one the user picked since."""

    def callback() -> None:
        if latest("run") != run or latest("de_layer") != layer:
            return
        state = st.session_state.get(chart_key) or {}
        picked = (state.get("selection") or {}).get("filter_pick") or []
        if picked and "filter" in picked[0]:
            st.session_state["de_filter"] = int(picked[0]["filter"])

    return callback


def inspect_controls(run: str, filters: dict[str, int]) -> tuple[str, int | None]:
    """Return the layer whose maps are shown and the selected filter (None: none).

    The layer and the filter stay when the user picks another run that has them; a layer this
    run lacks gives way to its first layer, with a line that says so, and the filter goes."""
    layers = list(filters)
    wanted = st.session_state.get("de_layer")
    if wanted not in layers:
        if wanted is not None:
            st.info(f"{Path(run).name} has no layer {wanted}: it shows {layers[0]}.")
            forget_filter()
        st.session_state["de_layer"] = layers[0]
    layer = st.session_state["de_layer"]
    chosen = st.session_state.get("de_filter", NO_FILTER)
    if not isinstance(chosen, int) or not 0 <= chosen < filters[layer]:
        st.session_state["de_filter"] = NO_FILTER
    layer_column, filter_column = st.columns(2)
    layer = layer_column.selectbox(
        "Layer to inspect",
        layers,
        format_func=lambda name: f"{name} ({filters[name]} neurons)",
        **persisted("de_layer", on_change=forget_filter),
    )
    chosen = filter_column.selectbox(
        "Filter (or click one in a chart)",
        [NO_FILTER, *range(filters[layer])],
        format_func=lambda f: "none" if f == NO_FILTER else f"filter {f}",
        **persisted("de_filter"),
    )
    return layer, None if chosen == NO_FILTER else int(chosen)


def brushed(event: object, coordinates: np.ndarray) -> np.ndarray | None:
    """Return the points inside the box dragged on the input map, or None without a box."""
    try:
        box = event["selection"]["patch_brush"]  # type: ignore[index]
    except (KeyError, TypeError):
        return None
    if not box or "x" not in box or "y" not in box:
        return None
    return points_in_box(coordinates, box["x"], box["y"])


def show_patches(
    run_path: str, layer: str, indices: np.ndarray, classes: list[str], caption: str
) -> None:
    """Draw the image patches (receptive fields) of some probe rows, with their labels."""
    st.markdown(caption)
    if not len(indices):
        return
    rows = cached_probe_rows(run_path, layer)
    shown = np.asarray(indices[:PATCHES_SHOWN], dtype=np.int64)
    try:
        images = cached_test_images()
    except ImageSourceError as error:
        st.info(f"The patches cannot be shown: {error}")
        return
    crops = crop_patches(
        images, rows.images[shown], cached_patch_boxes(run_path, layer)[shown], PATCH_SIZE
    )
    st.image(
        crops,
        caption=[f"{classes[int(rows.labels[i])]} · #{int(i)}" for i in shown],
        width=PATCH_SIZE,
    )


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
        model = f"run:{run_path}"
    else:
        model = f"run:{run_path}@{step}"
    return model, cached_snapshot_fingerprint(run_path, step)


def mark_useless(model: str, fingerprint: str, finding: Finding, step: int) -> None:
    """Store the finding's filters as useless (a button's callback)."""
    store = AnnotationStore()
    note = f"DeepEyes: {finding.kind.replace('_', '-')} at step {step}"
    for index in finding.filters:
        store.set_annotation(model, fingerprint, finding.layer, int(index), "useless", note)
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
    st.code(command, language="bash")
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


def maps(
    run_path: str,
    steps: list[int],
    step: int,
    layer: str,
    selected: int | None,
    classes: list[str],
    dead_maximum: float,
) -> None:
    """Draw the input map and the filter map of `layer`, and the patches they point at.

    The charts' keys name the run: a selection in one run's chart stays with that run."""
    run = run_reference(run_path)
    activations = cached_probe(run_path, step)[layer]
    references: dict[str, int] = st.session_state.setdefault("deepeyes_reference", {})
    reference_key = f"{run_path}|{layer}"
    if references.get(reference_key) not in steps:
        references[reference_key] = step
    reference = references[reference_key]
    placed = cached_input_map(run_path, layer, reference, step)
    fires = firing(activations, selected, dead_maximum) if selected is not None else None
    left, right = st.columns(2, gap="large")
    with left:
        key = f"deepeyes_input_map_{run}_{layer}_{reference}"
        event = st.altair_chart(
            input_map_chart(
                placed, classes, fires, f"Input map: {len(placed.labels)} patches by label"
            ),
            key=key,
            on_select="rerun",
            selection_mode="patch_brush",
            width="stretch",
        )
        where = (
            f"embedded at step {reference}; the patches at step {step} are placed into that map "
            "(the map's points stay put)"
            if reference != step
            else f"embedded at step {step}; other snapshots are placed into this map"
        )
        st.caption(
            f"{placed.method}, {where}. Each point is a sampled receptive field, coloured by its "
            "image's label; drag a box to see the patches."
        )
        if reference != step:
            st.button(
                f"Embed again at step {step}",
                key="deepeyes_reembed",
                on_click=references.__setitem__,
                args=(reference_key, step),
            )
    with right:
        mapped = cached_filter_map(run_path, layer, step, dead_maximum, len(classes))
        key = f"deepeyes_filter_map_{run}_{layer}"
        st.altair_chart(
            filter_map_chart(
                mapped, classes, selected, f"Filter map: {len(mapped.top_label)} filters"
            ),
            key=key,
            on_select=pick_filter(key, run, layer),
            selection_mode="filter_pick",
            width="stretch",
        )
        st.caption(
            f"{mapped.method} of the filters' responses over the patches (L2-normalised: "
            "near-duplicates coincide). Colour: the label that activates a filter most; size: how "
            "specific it is to that label; black ring: near-duplicate; cross: dead. Click a filter."
        )
    if selected is not None:
        count = int(fires.sum())
        top = mapped.top_label[selected]
        twins = mapped.duplicates.partners(selected)
        st.markdown(
            f"**Filter {selected}** fires on **{count} of {len(fires)}** patches "
            f"({count / max(len(fires), 1):.0%}, highlighted in the input map and ringed in the "
            "heatmaps); "
            + specificity_phrase(top, mapped.specificity[selected], classes)
            + (f"; near-duplicate of {', '.join(map(str, twins))}" if twins else "")
            + "."
        )
    box = brushed(event, placed.coordinates)
    if box is not None:
        show_patches(
            run_path,
            layer,
            box,
            classes,
            f"**{len(box)} patches in the box**"
            + (f" (the first {PATCHES_SHOWN})" if len(box) > PATCHES_SHOWN else ""),
        )
    elif selected is not None:
        show_patches(
            run_path,
            layer,
            strongest(activations, selected, PATCHES_SHOWN),
            classes,
            f"**The patches filter {selected} responds to most**",
        )
    else:
        st.caption("Drag a box on the input map, or pick a filter, to see image patches here.")


def learning_curves_panel(run_path: str, step: int) -> None:
    """Draw the run's learning curves with the snapshot marked."""
    curves = learning_curves(run_path)
    if not len(curves.steps):
        st.caption("No training step recorded.")
        return
    chart = with_step_rule(curves_chart(curves), step).properties(title="Learning curves")
    st.altair_chart(chart, width="stretch")
    st.caption(
        "blue: training loss (smoothed) · orange: test accuracy after each epoch · "
        f"dashed: the snapshot at step {step}"
    )


def stability_panel(diagnosis: RunDiagnosis, threshold: float) -> None:
    """Draw every layer's change between snapshots, with the threshold input under it."""
    stabilities = [part.stability for part in diagnosis.layers]
    if any(len(stability.distances) for stability in stabilities):
        st.altair_chart(
            stability_chart(stabilities, threshold, STABILITY_LEGEND_COLUMNS), width="stretch"
        )
    else:
        st.caption("One snapshot: no change between snapshots to show yet.")
    stability_threshold_input()


def stability_table(diagnosis: RunDiagnosis, mean_perplexities: dict[str, float]) -> pd.DataFrame:
    """Return one row per layer: its width, mean perplexity at the snapshot, last change and
    from when it is stable."""
    rows = []
    for part in diagnosis.layers:
        stability = part.stability
        rows.append(
            {
                "layer": part.layer,
                "width": len(part.heatmap.maximum),
                "mean perplexity": mean_perplexities[part.layer],
                "last change": float(stability.distances[-1]) if len(stability.distances) else None,
                "stability": stable_phrase(stability),
            }
        )
    return pd.DataFrame(rows)


def perplexity_overview(
    diagnosis: RunDiagnosis, histograms: dict[str, list[PerplexityHistogram]]
) -> None:
    """Draw every layer's perplexity over training, small, a few to a row."""
    parts = diagnosis.layers
    for start in range(0, len(parts), OVERVIEW_COLUMNS):
        columns = st.columns(OVERVIEW_COLUMNS)
        for column, part in zip(columns, parts[start : start + OVERVIEW_COLUMNS], strict=False):
            column.altair_chart(
                perplexity_heatmap_chart(
                    histograms[part.layer], diagnosis.step, part.layer, small=True
                ),
                width="stretch",
            )


def training_section(
    run_path: str,
    diagnosis: RunDiagnosis,
    histograms: dict[str, list[PerplexityHistogram]],
    threshold: float,
) -> None:
    """The learning curves and every layer's stability and perplexity at a glance."""
    step = diagnosis.step
    try:
        mean_perplexities = cached_mean_perplexities(run_path, step)
    except (OSError, ValueError, KeyError) as error:
        st.warning(f"DeepEyes cannot read {Path(run_path).name}: {error}")
        return
    learning_curves_panel(run_path, step)
    chart_column, table_column = st.columns([3, 5], gap="medium")
    with chart_column:
        stability_panel(diagnosis, threshold)
    with table_column:
        st.dataframe(
            stability_table(diagnosis, mean_perplexities),
            hide_index=True,
            height="content",
            row_height=TABLE_ROW_HEIGHT,
            column_config={
                "layer": st.column_config.TextColumn(width=120),
                "width": st.column_config.NumberColumn(
                    width=50, help="Filters of a conv layer, units of a linear one"
                ),
                "mean perplexity": st.column_config.NumberColumn(
                    format="%.1f", width=110, help=f"Over the probe patches at step {step}"
                ),
                "last change": st.column_config.NumberColumn(
                    format="%.3f", width=80, help="Between the last two snapshots"
                ),
                "stability": st.column_config.TextColumn(width=145),
            },
        )
        st.caption(
            "Change: the L1 distance between a layer's perplexity histograms at consecutive "
            "snapshots (shares of patches per bin: 0 the same, 2 nothing in common). A layer is "
            "stable from the snapshot after which every change stays under the dashed threshold. "
            "Runs at a constant learning rate, like the shipped ones, keep changing by 0.1–0.6 "
            "while their accuracy climbs: raise the threshold to see from when the changes stay "
            "small."
        )
    st.subheader(
        "Perplexity over training",
        help="A patch's perplexity is how many filters share its response: 1 when one filter "
        "singles it out, the layer's width when all respond alike. A layer has settled when its "
        "histogram stops changing.",
    )
    st.caption(
        f"One column per snapshot (outlined: step {step}); darker: more patches at that "
        "perplexity. The Layer section shows one layer larger, with its histogram at the snapshot."
    )
    perplexity_overview(diagnosis, histograms)


def layer_perplexity(
    part: LayerDiagnosis, histograms: list[PerplexityHistogram], step: int
) -> None:
    """Draw one layer's perplexity over training and at the snapshot, and its stability."""
    over_time, at_step = st.columns([3, 2])
    over_time.altair_chart(
        perplexity_heatmap_chart(histograms, step, f"{part.layer}: perplexity over training"),
        width="stretch",
    )
    at_step.altair_chart(
        perplexity_bars_chart(part.histogram, f"{part.layer} at step {step}"), width="stretch"
    )
    st.markdown(stability_sentence(part))


def filter_activity(run: str, part: LayerDiagnosis, step: int, selected: int | None) -> None:
    """Draw one layer's filter-activity heatmaps under the thresholds that outline them; a click
    on a cell selects its filter."""
    activity_threshold_inputs()
    maximum_column, frequency_column = st.columns(2)
    for column, measure, title in (
        (maximum_column, "maximum", f"{part.layer}: maximum activation"),
        (frequency_column, "frequency", f"{part.layer}: activation frequency"),
    ):
        key = f"deepeyes_cells_{run}_{part.layer}_{measure}"
        column.altair_chart(
            filter_activity_chart(part.heatmap, measure, title, selected),
            key=key,
            on_select=pick_filter(key, run, part.layer),
            selection_mode="filter_pick",
            width="stretch",
        )
    st.markdown(activity_sentence(part, step))


def layer_section(
    run_path: str,
    steps: list[int],
    diagnosis: RunDiagnosis,
    histograms: dict[str, list[PerplexityHistogram]],
    classes: list[str],
    dead_maximum: float,
) -> None:
    """One layer: its perplexity, its filters' activity, its input map and filter map."""
    step = diagnosis.step
    run = run_reference(run_path)
    layer, selected = inspect_controls(
        run, {part.layer: len(part.heatmap.maximum) for part in diagnosis.layers}
    )
    part = next(part for part in diagnosis.layers if part.layer == layer)
    layer_perplexity(part, histograms[layer], step)
    st.subheader(f"{layer}: filter activity at step {step}")
    st.caption(
        "Each cell is a filter: its maximum activation over the probe patches, and how often it "
        "responds above half that maximum. Outlined: dead or always-on filters; ringed: the "
        "selected filter. Click a cell to select its filter."
    )
    filter_activity(run, part, step, selected)
    st.subheader(f"{layer}: input map and filter map at step {step}")
    try:
        maps(run_path, steps, step, layer, selected, classes, dead_maximum)
    except (OSError, ValueError, KeyError) as error:
        st.warning(f"The maps of {layer} cannot be drawn: {error}")


def diagnosis_section(
    run_path: str,
    shipped: bool,
    steps: list[int],
    manifest: dict,
    diagnosis: RunDiagnosis,
    limits: Thresholds,
) -> None:
    """The diagnosis with its marks, the smaller network it suggests, and DeepEyes' example."""
    step = diagnosis.step
    try:
        probe = cached_probe(run_path, step)
        maxima = cached_filter_maxima(run_path, tuple(steps))
    except (OSError, ValueError, KeyError) as error:
        st.warning(f"DeepEyes cannot read {Path(run_path).name}: {error}")
        return
    st.subheader("Diagnosis")
    st.caption(
        f"Thresholds: stable below a change of {limits.stability:g} (set in Training); dead at a "
        f"maximum activation of at most {limits.dead_maximum:g}, always on at a frequency of at "
        f"least {limits.always_on:g} (set in Layer)."
    )
    duplicates = {
        layer_id: near_duplicates(values, dead_maximum=limits.dead_maximum)
        for layer_id, values in probe.items()
    }
    findings = diagnosis_findings(diagnosis, duplicates, maxima, limits.dead_maximum)
    suggestion = suggest_architecture(
        manifest["arch"], manifest.get("arch_options", {}), probe, diagnosis, duplicates
    )
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


def deepeyes_view(run_path: str, phase: str, shipped: bool) -> None:
    """The snapshot slider, the section picker and the section picked, of one run."""
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
    section = section_picker()
    limits = current_thresholds()
    try:
        manifest = read_manifest(run_path)
        histograms = cached_run_histograms(run_path, tuple(steps))
        diagnosis = diagnose_run(
            run_path,
            step,
            threshold=limits.stability,
            dead_maximum=limits.dead_maximum,
            always_on_frequency=limits.always_on,
            histograms=histograms,
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
    write_to_url("deepeyes")  # a run of this fragment alone does not reach the end of the page


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
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    st.markdown(comparison.sentence())
    st.caption(
        f"Both trained with the same options and seed for {full.epochs} epochs; the forward time "
        f"is the best of {TIMED_PASSES} passes over {TIMED_IMAGES} test images on this machine's "
        f"{'GPU' if torch.cuda.is_available() else 'CPU'}. Pick either run above to see its views."
    )


@st.fragment(run_every=NEW_RUN_CHECK_SECONDS)
def watch_run_folders(known: tuple[str, ...]) -> None:
    """Redraw the page when a run folder appears or goes (e.g. `convlens train` in a terminal)."""
    if tuple(str(path) for path, _ in run_folders()) != known:
        st.rerun()


selection = page_setup("deepeyes")
st.title("DeepEyes")
st.caption(
    "DeepEyes' progressive analysis of a recorded run (Pezzotti et al., 2018): when each layer "
    "settles during training, which filters are dead, always on or duplicates, how the layer sees "
    "the sampled patches and its filters, and what a smaller network would look like."
)

runs = list_runs()
watch_run_folders(tuple(str(path) for path, _ in run_folders()))
if not runs:
    st.info("No runs yet: start one on the Training page.")
    st.stop()
st.session_state["run"] = run_reference(default_run_path(runs, selection.model_name))
references = [run_reference(run.path) for run in runs]
chosen_reference = st.selectbox(
    "Run",
    references,
    format_func=lambda reference: run_label(runs[references.index(reference)]),
    **persisted("run"),
)
chosen = runs[references.index(chosen_reference)].path
phase = run_phase(chosen)
if phase == "unreadable":
    st.warning(
        f"{Path(chosen).name} cannot be read: its manifest.json is missing or broken. "
        "Pick another run."
    )
    st.stop()
chosen_run = runs[references.index(chosen_reference)]
run_line(chosen_run, phase)
refresh = RUN_REFRESH_SECONDS if phase in ("running", "starting") else None
st.fragment(run_every=refresh)(deepeyes_view)(chosen, phase, chosen_run.shipped)
