"""The Annotations page's sections (pages/annotations.py composes them): the rows marked, read one
page at a time in SQL (the model, layer and filter boxes, the counts, the table), their export and
import, and the ablation check of the filters marked useless."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from convlens.ablation import AblationError, AblationResult, ablate
from convlens.access import browser_access
from convlens.annotations import (
    FALLBACK_AUTHOR,
    LABELS,
    ROWS_PER_PAGE,
    AnnotationOverview,
    AnnotationStore,
    ImportReport,
    RowError,
    counted,
    decode_export,
)
from convlens.data import ImageSourceError
from convlens.models import LoadedModel
from convlens.ui.cache import cached_fingerprint, cached_model, model_lock
from convlens.ui.owner import AUTHOR, clean_author, seed_author
from convlens.ui.sidebar import Selection

ALL_MODELS, ALL_LAYERS = "all models", "all layers"


def first_page() -> None:
    st.session_state["annotations_page"] = 1


def wanted_filter(text: str) -> int | None:
    """The filter number typed in the Filter box; None (any filter) for an empty box, and for
    anything but a whole number, with a warning. A number too large for any layer finds nothing."""
    text = text.strip()
    if not text:
        return None
    # a number too large for any layer finds nothing; one of thousands of digits is no number
    if text.isascii() and text.isdigit() and len(text) <= 100:
        return int(text)
    st.warning(f"The filter is a whole number such as 7, not {text[:40]!r}; showing every filter.")
    return None


def chosen_rows(
    store: AnnotationStore, sidebar_model: str
) -> tuple[AnnotationOverview, int | None]:
    """Return the page of rows that the model, layer, filter and page boxes choose, with the
    filter chosen (None: any).

    They are read before their widgets are drawn: the store is asked for one page of the
    matching rows, their counts and the choices in one call, in SQL. A model or layer without
    rows (the sidebar's model, or one whose rows are gone) falls back to all of them.
    """
    state = st.session_state
    model = state.get("annotations_model", sidebar_model)
    layer = state.get("annotations_layer", ALL_LAYERS)
    filter_number = wanted_filter(str(state.get("annotations_filter", "")))

    def read_overview() -> AnnotationOverview:
        return store.overview(
            model=None if model == ALL_MODELS else model,
            layer=None if layer == ALL_LAYERS else layer,
            filter=filter_number,
            page=int(state.get("annotations_page", 1)),
        )

    overview = read_overview()
    known_model = model in (ALL_MODELS, *overview.models)
    if not known_model or layer not in (ALL_LAYERS, *overview.layers):
        model = model if known_model else ALL_MODELS
        layer = ALL_LAYERS
        overview = read_overview()
    state["annotations_model"], state["annotations_layer"] = model, layer
    return overview, filter_number


def row_filters(overview: AnnotationOverview) -> None:
    """The boxes that choose the rows (model, layer, filter); a change goes back to the first
    page. The model's box says "Rows of model": the sidebar's Model box is beside it."""
    model_column, layer_column, filter_column = st.columns([3, 3, 1])
    model_column.selectbox(
        "Rows of model",
        [ALL_MODELS, *overview.models],
        key="annotations_model",
        on_change=first_page,
        help="The model whose rows the table lists (at first the sidebar's, the one whose useless "
        "filters the check below removes)",
    )
    layer_column.selectbox(
        "Layer", [ALL_LAYERS, *overview.layers], key="annotations_layer", on_change=first_page
    )
    filter_column.text_input(
        "Filter", placeholder="any", key="annotations_filter", on_change=first_page
    )


def annotation_table(overview: AnnotationOverview, filter_number: int | None) -> None:
    """The counts of each label, the page picker and one page of the rows chosen."""
    if not overview.total:
        if filter_number is not None:
            st.info(f"No annotation of filter {filter_number} here.")
        else:
            st.info("No annotations here yet: open the Filters page, click a filter and mark it.")
        return
    for column, label in zip(st.columns(len(LABELS)), LABELS, strict=True):
        column.metric(label, f"{overview.counts[label]:,}")
    if overview.pages > 1:
        st.session_state["annotations_page"] = overview.page  # a page past the last is the last
        st.number_input(
            f"Page (of {overview.pages:,}, {ROWS_PER_PAGE} rows each)",
            1,
            overview.pages,
            key="annotations_page",
        )
    frame = pd.DataFrame([row.to_dict() for row in overview.rows])
    shown = frame.assign(updated_at=pd.to_datetime(frame["updated_at"], utc=True))
    st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        column_config={
            "weights_fingerprint": st.column_config.TextColumn(
                "weights", help="First 16 hex digits of SHA-256 over the state dict"
            ),
            "updated_at": st.column_config.DatetimeColumn(
                "updated (UTC)", format="YYYY-MM-DD HH:mm"
            ),
        },
    )
    first = (overview.page - 1) * ROWS_PER_PAGE + 1
    st.caption(
        f"Rows {first:,} to {first + len(overview.rows) - 1:,} of {overview.total:,}, by model, "
        "weights, layer, filter and author."
    )


def export_buttons(store: AnnotationStore) -> None:
    """Download every annotation as CSV or JSON."""
    st.markdown("**Export** every annotation")
    for format in ("csv", "json"):
        st.download_button(
            f"Download {format.upper()}",
            # written when clicked, not on every run of the page (200,000 rows take seconds)
            lambda format=format: store.export_annotations(format),
            file_name=f"annotations.{format}",
            mime="text/csv" if format == "csv" else "application/json",
            key=f"export_{format}",
        )


def import_box(store: AnnotationStore) -> None:
    """Upload an export and import it (all rows or none), then say what was imported or why
    nothing was."""
    upload = st.file_uploader(
        "**Import** a CSV or JSON export (all rows or none)",
        type=["csv", "json"],
        key="annotations_import",
    )
    if upload is not None:
        st.button(
            "Import these annotations", key="import_button", on_click=import_upload, args=(store,)
        )
    report = st.session_state.pop("_annotations_import", None)
    if report is not None and report.ok:
        st.success(
            f"Imported {report.applied} of {counted(report.rows, 'row')} "
            f"({report.kept_newer} kept a newer stored label)."
        )
    elif report is not None:
        st.error("Nothing was imported: " + "; ".join(str(e) for e in report.errors[:10]))


# A browser's import: some 50,000 rows, a few seconds of the server (50 MB would take half a minute
# and write hundreds of MB); larger exports are imported on the server, from the command line.
MAX_IMPORT_MB = 5


def import_upload(store: AnnotationStore) -> None:
    """Import the uploaded export before the page draws the table (a button callback), so the
    table and its counts show the imported rows at once."""
    upload = st.session_state.get("annotations_import")
    if upload is None:
        return
    try:
        if upload.size > MAX_IMPORT_MB * 2**20:
            raise ValueError(
                f"{upload.name} is larger than {MAX_IMPORT_MB} MB, the most a browser imports; "
                "the server's user imports it with `python -m convlens annotations import FILE`"
            )
        text = decode_export(upload.getvalue(), upload.name)
    except ValueError as error:  # an image or binary file renamed .csv: one file-level error
        report = ImportReport(0, 0, 0, (RowError(None, str(error)),))
    else:
        report = store.import_annotations(text, default_author_name=browser_author())
    st.session_state["_annotations_import"] = report


def browser_author() -> str:
    """Whom a browser's annotations are stored under: the name typed on the Filters page, or
    FALLBACK_AUTHOR; never the server's login name (the store's default, the CLI user's)."""
    seed_author()
    return clean_author(st.session_state.get(AUTHOR, "")) or FALLBACK_AUTHOR


def ablation_check(store: AnnotationStore, selection: Selection, model: LoadedModel) -> None:
    """What zeroing the sidebar model's filters marked useless costs: their count, the labelled
    images, the check, and its result while what it was computed from stays the same."""
    fingerprint = cached_fingerprint(selection.model_key)
    useless = store.useless_filters(selection.model_name, fingerprint)
    total = sum(len(v) for v in useless.values())
    st.markdown(
        f"**{selection.model_name}** has **{total:,}** filter{'' if total == 1 else 's'} marked "
        "useless (each filter's latest label counts). The check zeroes them and compares the "
        "accuracy before and after, layer by layer and all together."
    )
    data, limit = labelled_images(model)
    # what the result was computed from: it stays on the page (a click elsewhere reruns the page)
    # until one of these changes
    check = (selection.model_name, fingerprint, data, limit, repr(sorted(useless.items())))
    if st.button("Run the check", type="primary", disabled=not total or not data, key="ablate"):
        result = run_ablation(selection, data, useless, limit)
        if result is None:
            st.session_state.pop("_ablation", None)
        else:
            st.session_state["_ablation"] = (check, result)
    checked, result = st.session_state.get("_ablation", (None, None))
    if checked == check:
        ablation_result(result, data)


def labelled_images(model: LoadedModel) -> tuple[str, int]:
    """Return the labelled images the check runs on, and how many of them (0: the default)."""
    fashion = tuple(model.input_size) == (1, 28, 28)
    data = st.text_input(
        "Labelled images",
        value="fashion-mnist:test" if fashion else "",
        placeholder="an ImageFolder directory of the published data, e.g. photos/val",
        key="ablation_data",
        help="fashion-mnist:test, fashion-mnist:train, or an ImageFolder directory whose folder "
        "names are the model's classes",
    )
    limit = st.number_input(
        "Images (first N; 0: the default)",
        0,
        1_000_000,
        0 if fashion else 1000,
        key="ablation_limit",
    )
    return data, int(limit)


def run_ablation(
    selection: Selection, data: str, useless: dict[str, list[int]], limit: int
) -> AblationResult | None:
    """Evaluate the model with and without its useless filters, with a progress bar; None, and
    the reason shown, when the images cannot be read."""
    bar = st.progress(0.0, text="Evaluating…")

    def show_progress(done: int, count: int) -> None:
        bar.progress(
            min(done / max(count, 1), 1.0), text=f"Evaluating: {done:,}/{counted(count, 'image')}"
        )

    try:
        with model_lock(selection.model_key):
            return ablate(
                cached_model(selection.model_key),
                data,
                useless,
                limit=limit or None,
                progress=show_progress,
                access=browser_access(),  # the labelled images as a browser may name them
            )
    except (AblationError, ImageSourceError, ValueError, OSError) as error:
        st.error(str(error))
        return None
    finally:
        bar.empty()


def ablation_result(result: AblationResult, data: str) -> None:
    """The accuracy before and after, all together and layer by layer."""
    before, after = st.columns(2)
    before.metric("Accuracy now", f"{result.baseline_accuracy:.2%}")
    after.metric(
        f"Without the {counted(result.ablated_filters, 'useless filter')}",
        f"{result.ablated_accuracy:.2%}",
        delta=f"{(result.ablated_accuracy - result.baseline_accuracy) * 100:+.2f} points",
    )
    st.dataframe(
        pd.DataFrame(
            {
                "layer": list(result.per_layer),
                "useless filters": [len(r.filters) for r in result.per_layer.values()],
                "accuracy without them": [f"{r.accuracy:.2%}" for r in result.per_layer.values()],
            }
        ),
        hide_index=True,
        width="stretch",
    )
    st.caption(f"On {counted(result.images, 'image')} of {data}.")
