"""DeepEyes: how each layer of a recorded run settles during training, which filters idle or repeat
each other, where the patches and the filters lie, and a smaller network that does as well."""

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
import torch

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
from convlens.paths import convlens_home
from convlens.runs import (
    RunInfo,
    find_run,
    learning_curves,
    list_runs,
    model_run,
    run_folders,
    run_reference,
    start_run,
)
from convlens.shipped import read_card, shipped_run
from convlens.style import PATCH_SIZE, RUN_REFRESH_SECONDS
from convlens.training import (
    list_snapshots,
    read_manifest,
    run_status,
    weight_steps,
)
from convlens.ui.cache import cached_run_histograms
from convlens.ui.deepeyes import (
    TIMED_IMAGES,
    TIMED_PASSES,
    cached_filter_map,
    cached_filter_maxima,
    cached_forward_ms,
    cached_input_map,
    cached_patch_boxes,
    cached_probe,
    cached_probe_rows,
    cached_snapshot_fingerprint,
    cached_test_images,
)
from convlens.ui.sidebar import page_setup
from convlens.ui.state import persisted

DEFAULT_RUN = "fashion_deepeyes"
FULL_RUN, SMALL_RUN = "fashion_deepeyes", "fashion_deepeyes_small"
NO_FILTER = -1
PATCHES_SHOWN = 40
NEW_RUN_CHECK_SECONDS = 5
# Page state that a bookmark restores (session key -> query parameter), beside the app's own.
URL_STATE = {
    "deepeyes_step": "de_step",
    "deepeyes_layer": "de_layer",
    "deepeyes_filter": "de_filter",
}


# --------------------------------------------------------------------------------------------
# State kept in the URL


def restore_page_state() -> None:
    """Copy this page's query parameters into session state (once per session), as numbers
    where they are numbers."""
    if not st.session_state.get("_deepeyes_from_url"):
        st.session_state["_deepeyes_from_url"] = True
        for key, parameter in URL_STATE.items():
            value = st.query_params.get(parameter)
            if value is not None and key not in st.session_state:
                st.session_state[key] = value
    for key in ("deepeyes_step", "deepeyes_filter"):
        value = st.session_state.get(key)
        if isinstance(value, str):
            number = value.strip().lstrip("-")
            st.session_state[key] = int(value) if number.isdigit() else None


def mirror_page_state() -> None:
    """Mirror the step, layer and filter in the URL, so the address bar bookmarks the view."""
    for key, parameter in URL_STATE.items():
        value = st.session_state.get(key)
        if value is None or (key == "deepeyes_filter" and value == NO_FILTER):
            if parameter in st.query_params:
                del st.query_params[parameter]
        elif st.query_params.get(parameter) != str(value):
            st.query_params[parameter] = str(value)


# --------------------------------------------------------------------------------------------
# Pieces of the page


def default_run_path(runs: list[RunInfo], model_name: str) -> str:
    """Return the run the bookmark or the session names, else the sidebar model's when it is a
    recorded run, else the shipped DeepEyes run."""
    paths = [run.path for run in runs]
    wanted = st.session_state.get("run")
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
    return f"{Path(run.path).name} ({origin}{', training' if run.status == 'running' else ''})"


def stability_sentence(part: LayerDiagnosis) -> str:
    """Return when a layer's perplexity histogram stopped changing, in words."""
    stability = part.stability
    if stability.stable_from_step is None:
        return f"{part.layer}: not stable yet at threshold {stability.threshold:g}"
    return f"{part.layer}: stable from step {stability.stable_from_step} (threshold {stability.threshold:g})"


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
    current = st.session_state.get("deepeyes_step")
    newest_seen = st.session_state.get("_deepeyes_newest_step")
    if current not in steps or (current == newest_seen and current != steps[-1]):
        st.session_state["deepeyes_step"] = steps[-1]
    st.session_state["_deepeyes_newest_step"] = steps[-1]
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
        "(L1 distance of shares between snapshots, 0 to 2) by less than this.",
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


def forget_filter() -> None:
    """A filter number means nothing in another layer."""
    st.session_state["deepeyes_filter"] = NO_FILTER


def pick_filter(chart_key: str, layer: str):
    """Return the callback that makes a click on a filter in a chart the selected filter."""

    def callback() -> None:
        state = st.session_state.get(chart_key) or {}
        picked = (state.get("selection") or {}).get("filter_pick") or []
        if picked and "filter" in picked[0]:
            st.session_state["deepeyes_layer"] = layer
            st.session_state["deepeyes_filter"] = int(picked[0]["filter"])

    return callback


def inspect_controls(filters: dict[str, int]) -> tuple[str, int | None]:
    """Return the layer whose maps are shown and the selected filter (None: none)."""
    layers = list(filters)
    if st.session_state.get("deepeyes_layer") not in layers:
        st.session_state["deepeyes_layer"] = layers[0]
    layer = st.session_state["deepeyes_layer"]
    chosen = st.session_state.get("deepeyes_filter", NO_FILTER)
    if not isinstance(chosen, int) or not 0 <= chosen < filters[layer]:
        st.session_state["deepeyes_filter"] = NO_FILTER
    layer_column, filter_column = st.columns(2)
    layer = layer_column.selectbox(
        "Layer to inspect",
        layers,
        format_func=lambda name: f"{name} ({filters[name]} neurons)",
        **persisted("deepeyes_layer", on_change=forget_filter),
    )
    chosen = filter_column.selectbox(
        "Filter (or click one in a chart)",
        [NO_FILTER, *range(filters[layer])],
        format_func=lambda f: "none" if f == NO_FILTER else f"filter {f}",
        **persisted("deepeyes_filter"),
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


def diagnosis_panel(
    run_path: str, shipped: bool, step: int, findings: list[Finding], suggestion_text: str
) -> None:
    """Draw the diagnosis sentences, each with a button that marks its filters useless."""
    target = annotation_target(run_path, step, shipped)
    labels = AnnotationStore().latest_labels(*target) if isinstance(target, tuple) else {}
    for finding in findings:
        if not finding.filters:
            st.markdown(f"- {finding.sentence}")
            continue
        text_column, button_column = st.columns([4, 1], vertical_alignment="center")
        text_column.markdown(f"- {finding.sentence}")
        marked = all(labels.get((finding.layer, int(f))) == "useless" for f in finding.filters)
        button_column.button(
            "Marked useless" if marked else f"Mark {len(finding.filters)} useless",
            key=f"deepeyes_mark_{finding.layer}_{finding.kind}",
            disabled=marked or not isinstance(target, tuple),
            on_click=mark_useless,
            args=(*target, finding, step) if isinstance(target, tuple) else None,
            help=(
                f"Stores these filters as useless for {target[0]} in the annotation store; "
                "the Annotations page checks what zeroing them costs."
                if isinstance(target, tuple)
                else f"Not here: {target}."
            ),
        )
    if isinstance(target, tuple):
        st.caption(f"Marks are stored for the model `{target[0]}` (weights {target[1]}).")
    else:
        st.caption(f"Filters cannot be marked at this step: {target}.")
    st.markdown(suggestion_text)


def train_suggestion(manifest: dict, options: dict[str, object]) -> None:
    """Start training the suggested network in its own process and show its run (a callback)."""
    folder = start_run(manifest["arch"], int(manifest["config"]["epochs"]), options)
    st.session_state["run"] = run_reference(folder)
    st.session_state.pop("deepeyes_step", None)
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
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    if not suggestion.changed:
        return
    out = convlens_home() / "runs" / f"{Path(run_path).name}-smaller"
    try:
        command = suggested_command(manifest, suggestion.arch_options, str(out))
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
    run_path: str, steps: list[int], step: int, layer: str, selected: int | None, classes: list[str]
) -> None:
    """Draw the input map and the filter map of `layer`, and the patches they point at."""
    dead_maximum = float(st.session_state.get("deepeyes_dead_maximum", DEAD_MAXIMUM))
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
        key = f"deepeyes_input_map_{layer}_{reference}"
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
        key = f"deepeyes_filter_map_{layer}"
        st.altair_chart(
            filter_map_chart(
                mapped, classes, selected, f"Filter map: {len(mapped.top_label)} filters"
            ),
            key=key,
            on_select=pick_filter(key, layer),
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


def deepeyes_view(run_path: str, phase: str, shipped: bool) -> None:
    """The curves, perplexity histograms, filter activity, maps and diagnosis of one run."""
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
    threshold, dead_maximum, always_on = thresholds()
    try:
        manifest = read_manifest(run_path)
        histograms = cached_run_histograms(run_path, tuple(steps))
        diagnosis = diagnose_run(
            run_path,
            step,
            threshold=threshold,
            dead_maximum=dead_maximum,
            always_on_frequency=always_on,
            histograms=histograms,
        )
        probe = cached_probe(run_path, step)
        maxima = cached_filter_maxima(run_path, tuple(steps))
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
        over_time, selected_step = st.columns([3, 2])
        over_time.altair_chart(
            perplexity_heatmap_chart(
                histograms[part.layer], step, f"{part.layer}: perplexity over training"
            ),
            width="stretch",
        )
        selected_step.altair_chart(
            perplexity_bars_chart(part.histogram, f"{part.layer} at step {step}"),
            width="stretch",
        )
        st.markdown(stability_sentence(part))
    if len(steps) > 1:
        st.altair_chart(
            stability_chart([part.stability for part in diagnosis.layers], threshold),
            width="stretch",
        )
        st.caption(
            "How much each layer's histogram changes from one snapshot to the next (L1 distance "
            "of the shares of patches per bin: 0 the same, 2 nothing in common). A layer is stable "
            "from the snapshot after which every change stays under the dashed threshold. Runs "
            "at a constant learning rate, like the shipped ones, keep changing by 0.1–0.6 between "
            "snapshots hundreds of steps apart while their accuracy still climbs, so at the "
            "default 0.05 they are not stable yet: raise the threshold to see from when the "
            "changes stay small."
        )

    st.subheader(f"Filter activity at step {step}")
    st.caption(
        "Each cell is a filter: its maximum activation over the probe patches, and how often it "
        "responds above half that maximum. Outlined: dead or always-on filters; ringed: the "
        "selected filter. Click a cell to select its filter."
    )
    layer, selected = inspect_controls(
        {part.layer: len(part.heatmap.maximum) for part in diagnosis.layers}
    )
    for part in diagnosis.layers:
        maximum_column, frequency_column = st.columns(2)
        for column, measure, title in (
            (maximum_column, "maximum", f"{part.layer}: maximum activation"),
            (frequency_column, "frequency", f"{part.layer}: activation frequency"),
        ):
            key = f"deepeyes_cells_{part.layer}_{measure}"
            column.altair_chart(
                filter_activity_chart(
                    part.heatmap, measure, title, selected if part.layer == layer else None
                ),
                key=key,
                on_select=pick_filter(key, part.layer),
                selection_mode="filter_pick",
                width="stretch",
            )
        st.markdown(activity_sentence(part, step))

    st.subheader(f"{layer}: input map and filter map at step {step}")
    try:
        maps(run_path, steps, step, layer, selected, classes)
    except (OSError, ValueError, KeyError) as error:
        st.warning(f"The maps of {layer} cannot be drawn: {error}")

    st.subheader("Diagnosis")
    duplicates = {
        layer_id: near_duplicates(values, dead_maximum=dead_maximum)
        for layer_id, values in probe.items()
    }
    findings = diagnosis_findings(diagnosis, duplicates, maxima, dead_maximum)
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
    mirror_page_state()


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
restore_page_state()

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
st.caption(f"{phase} · `{chosen}`")
refresh = RUN_REFRESH_SECONDS if phase in ("running", "starting") else None
st.fragment(run_every=refresh)(deepeyes_view)(
    chosen, phase, runs[references.index(chosen_reference)].shipped
)
size_comparison()
