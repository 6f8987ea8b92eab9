"""Annotations: every filter marked useful, useless or unsure; export, import, and the ablation check."""

import pandas as pd
import streamlit as st

from convlens.ablation import AblationError, ablate
from convlens.access import browser_access
from convlens.annotations import (
    LABELS,
    AnnotationStore,
    ImportReport,
    RowError,
    counted,
    decode_export,
)
from convlens.data import ImageSourceError
from convlens.ui.cache import cached_fingerprint, cached_model, model_lock
from convlens.ui.sidebar import page_setup

selection = page_setup("annotations")
st.title("Annotations")
st.caption(
    "Every filter someone marked useful, useless or unsure (on the Filters page or with "
    "`python -m convlens annotations set`), and what removing the useless ones costs the model."
)
store = AnnotationStore()


def import_upload() -> None:
    """Import the uploaded export before the page draws the table (a button callback), so the
    table and its counts show the imported rows at once."""
    upload = st.session_state.get("annotations_import")
    if upload is None:
        return
    try:
        text = decode_export(upload.getvalue(), upload.name)
    except ValueError as error:  # an image or binary file renamed .csv: one file-level error
        report = ImportReport(0, 0, 0, (RowError(None, str(error)),))
    else:
        report = store.import_annotations(text)
    st.session_state["_annotations_import"] = report


rows = store.list_annotations()
frame = pd.DataFrame([row.to_dict() for row in rows])

model_column, layer_column = st.columns(2)
models = sorted(frame["model"].unique()) if len(frame) else []
model_choices = ["all models", *models]
chosen_model = model_column.selectbox(
    "Model",
    model_choices,
    index=model_choices.index(selection.model_name) if selection.model_name in models else 0,
    key="annotations_model",
)
if chosen_model != "all models":
    frame = frame[frame["model"] == chosen_model]
layers = sorted(frame["layer"].unique()) if len(frame) else []
chosen_layer = layer_column.selectbox("Layer", ["all layers", *layers], key="annotations_layer")
if chosen_layer != "all layers":
    frame = frame[frame["layer"] == chosen_layer]

if frame.empty:
    st.info("No annotations here yet: open the Filters page, click a filter and mark it.")
else:
    counts = frame["label"].value_counts()
    for column, label in zip(st.columns(len(LABELS)), LABELS, strict=True):
        column.metric(label, int(counts.get(label, 0)))
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

export_column, import_column = st.columns(2)
with export_column:
    st.markdown("**Export** every annotation")
    for format in ("csv", "json"):
        st.download_button(
            f"Download {format.upper()}",
            store.export_annotations(format),
            file_name=f"annotations.{format}",
            mime="text/csv" if format == "csv" else "application/json",
            key=f"export_{format}",
        )
with import_column:
    upload = st.file_uploader(
        "**Import** a CSV or JSON export (all rows or none)",
        type=["csv", "json"],
        key="annotations_import",
    )
    if upload is not None:
        st.button("Import these annotations", key="import_button", on_click=import_upload)
    report = st.session_state.pop("_annotations_import", None)
    if report is not None and report.ok:
        st.success(
            f"Imported {report.applied} of {counted(report.rows, 'row')} "
            f"({report.kept_newer} kept a newer stored label)."
        )
    elif report is not None:
        st.error("Nothing was imported: " + "; ".join(str(e) for e in report.errors[:10]))

st.divider()
st.subheader("What do the useless filters cost?")
model = selection.model
if model is None:
    st.stop()
fingerprint = cached_fingerprint(*selection.model_key)
useless = store.useless_filters(selection.model_name, fingerprint)
total = sum(len(v) for v in useless.values())
st.markdown(
    f"**{selection.model_name}** has **{total:,}** filter{'' if total == 1 else 's'} marked useless "
    "(each filter's latest "
    "label counts). The check zeroes them and compares the accuracy before and after, layer by "
    "layer and all together."
)
fashion = tuple(model.input_size) == (1, 28, 28)
data = st.text_input(
    "Labelled images",
    value="fashion-mnist:test" if fashion else "",
    key="ablation_data",
    help="fashion-mnist:test, fashion-mnist:train, or an ImageFolder directory whose folder "
    "names are the model's classes",
)
limit = st.number_input(
    "Images (first N; 0: the default)", 0, 1_000_000, 0 if fashion else 1000, key="ablation_limit"
)
# what the result was computed from: it stays on the page (a click elsewhere reruns the page)
# until one of these changes
check = (selection.model_name, fingerprint, data, int(limit), repr(sorted(useless.items())))
if st.button("Run the check", type="primary", disabled=not total or not data, key="ablate"):
    bar = st.progress(0.0, text="Evaluating…")

    def report(done: int, count: int) -> None:
        bar.progress(
            min(done / max(count, 1), 1.0), text=f"Evaluating: {done:,}/{counted(count, 'image')}"
        )

    try:
        with model_lock(*selection.model_key):
            result = ablate(
                cached_model(*selection.model_key),
                data,
                useless,
                limit=int(limit) or None,
                progress=report,
                access=browser_access(),  # the labelled images as a browser may name them
            )
    except (AblationError, ImageSourceError, ValueError, OSError) as error:
        st.session_state.pop("_ablation", None)
        st.error(str(error))
    else:
        st.session_state["_ablation"] = (check, result)
    bar.empty()
checked, result = st.session_state.get("_ablation", (None, None))
if checked == check:
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
