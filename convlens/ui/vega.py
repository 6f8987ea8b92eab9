"""A chart's Vega-Lite spec built once and drawn many times (`st.vega_lite_chart`), the way
Streamlit's `st.altair_chart` would draw the chart itself, minus Altair's validation.

Altair's data transformer and theme are global to the process. While Streamlit converts a chart in
one session, it switches the transformer to its own (which takes the data out of the spec) under
`vega_charts._altair_globals_lock`; a spec built in another session at that moment would come out
without its data, and a cache would serve that empty chart to everyone. So a spec is built under
the same lock, with the theme Streamlit uses ("none": no default 300 px view) and no row limit
(Altair's default refuses charts over 5,000 rows; `st.altair_chart` has none).

A spec's named datasets are kept as Arrow IPC bytes, the form in which Streamlit sends them to
the browser (`with_arrow_datasets`), and named by their order, not by their rows
(`named_by_position`): Streamlit draws a chart anew only when its spec changes, and replaces the
data of a drawn chart whose spec is unchanged.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
from streamlit import dataframe_util
from streamlit.elements import vega_charts

_ALTAIR_GLOBALS = vega_charts._altair_globals_lock


def vega_lite_spec(chart: alt.TopLevelMixin) -> dict:
    """Return `chart`'s Vega-Lite spec with its data inline (as Arrow bytes), not validated."""
    with (
        _ALTAIR_GLOBALS,
        alt.theme.enable("none"),
        alt.data_transformers.enable("default", max_rows=None),
    ):
        spec = chart.to_dict(validate=False)
    return with_arrow_datasets(named_by_position(spec))


def named_by_position(spec: dict) -> dict:
    """Return `spec` with its datasets named by their order ("data-0", "data-1", ...) where Altair
    names them by a hash of their rows: charts that differ only in their data (another snapshot,
    another filter highlighted) then have the same spec."""
    datasets = spec.get("datasets")
    if not datasets:
        return spec
    names = {name: f"data-{index}" for index, name in enumerate(datasets)}

    def renamed(node: object) -> object:
        if isinstance(node, dict):
            return {key: renamed(value) for key, value in node.items()}
        if isinstance(node, list):
            return [renamed(value) for value in node]
        return names.get(node, node) if isinstance(node, str) else node

    body = {key: renamed(value) for key, value in spec.items() if key != "datasets"}
    return body | {"datasets": {names[name]: rows for name, rows in datasets.items()}}


def with_arrow_datasets(spec: dict) -> dict:
    """Return `spec` with the rows of each named dataset as Arrow IPC bytes.

    `st.vega_lite_chart` converts a dataset's rows to Arrow on every call (through pandas: 16 ms
    for the 1,000 points of DeepEyes' input map, on each rerun of its Layer section) and passes
    bytes as they are. Converted here, with Streamlit's own conversion and only where Streamlit
    converts, a cached spec's data is converted once and the cache copies bytes instead of rows;
    the browser gets the same bytes as before.
    """
    datasets = spec.get("datasets")
    if not datasets:
        return spec
    converted = {
        name: rows if _sent_as_is(rows) else arrow_bytes(rows) for name, rows in datasets.items()
    }
    return {**spec, "datasets": converted}


def arrow_bytes(rows: object) -> bytes:
    """Return a dataset's rows (records or a data frame) as Streamlit sends them, in fewer bytes:
    each text column whose values repeat (twice each on average) as a dictionary of its values,
    each integer column in the smallest integer type that holds it. The layer names of CNNVis'
    12,105 neuron marks were 374 kB as plain text, their strongest classes 177 kB, their neuron
    and cluster numbers 97 kB each. The browser reads the same values."""
    frame = pd.DataFrame(rows)
    for column in frame.columns:
        values = frame[column]
        if _repeated_text(values):
            frame[column] = values.astype("category")
        elif pd.api.types.is_integer_dtype(values) and not pd.api.types.is_bool_dtype(values):
            frame[column] = pd.to_numeric(values, downcast="integer")
    return dataframe_util.convert_anything_to_arrow_bytes(frame)


def _repeated_text(values: pd.Series) -> bool:
    kind = pd.api.types.infer_dtype(values, skipna=True)
    return kind == "string" and 2 * values.nunique() <= len(values)


def _sent_as_is(rows: object) -> bool:
    """Whether Streamlit leaves a dataset as it is: bytes, or GeoJSON and TopoJSON shapes, which
    stay in the spec for Vega-Lite (a table of them would lose its nested geometry)."""
    return isinstance(rows, bytes) or vega_charts._is_geojson_or_topojson_payload(rows)
