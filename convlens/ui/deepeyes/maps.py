"""The input map and the filter map of one layer (the Layer section), and the image patches they
point at."""

from __future__ import annotations

import numpy as np
import streamlit as st

from convlens.data import ImageSourceError
from convlens.deepeyes import crop_patches, firing, specificity_phrase, strongest
from convlens.embedding import points_in_box
from convlens.runs import run_reference
from convlens.style import PATCH_SIZE
from convlens.ui.deepeyes.caches import (
    cached_filter_map,
    cached_input_map,
    cached_patch_boxes,
    cached_probe,
    cached_probe_rows,
    cached_test_images,
)
from convlens.ui.deepeyes.controls import pick_chart_key, pick_filter
from convlens.ui.deepeyes.specs import filter_map_spec, input_map_spec
from convlens.ui.gallery import show_gallery

PATCHES_SHOWN = 40


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
        event = st.vega_lite_chart(
            input_map_spec(
                run_path,
                layer,
                reference,
                step,
                tuple(classes),
                selected,
                dead_maximum,
                f"Input map: {len(placed.labels)} patches by label",
                placed,
                fires,
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
        key = pick_chart_key(f"deepeyes_filter_map_{run}_{layer}", selected)
        st.vega_lite_chart(
            filter_map_spec(
                run_path,
                layer,
                step,
                dead_maximum,
                tuple(classes),
                selected,
                f"Filter map: {len(mapped.top_label)} filters",
                mapped,
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
        shown = strongest(activations, selected, PATCHES_SHOWN)
        show_patches(
            run_path, layer, shown, classes, strongest_caption(selected, len(shown), count)
        )
    else:
        st.caption("Drag a box on the input map, or pick a filter, to see image patches here.")


def strongest_caption(selected: int, shown: int, firing: int) -> str:
    """Say which of the `shown` patches that filter `selected` responds to most it fires on (the
    `firing` strongest: above half its maximum), so that the patches past them, which it responds
    to less, are not taken for patches it fires on."""
    if not shown:
        return f"**Filter {selected} responds to no patch** at this snapshot."
    caption = f"**The patches filter {selected} responds to most** ({shown}, strongest first)"
    if not firing:
        return caption + ": it fires on none of them (a dead filter at this threshold)."
    if firing >= shown:
        return caption + ": it fires on all of them."
    return caption + f": it fires on the first {firing}, above half its maximum."


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
    crops = crop_patches(images, rows.images[shown], cached_patch_boxes(run_path, layer)[shown])
    show_gallery(crops, [f"{classes[int(rows.labels[i])]} · #{int(i)}" for i in shown], PATCH_SIZE)
