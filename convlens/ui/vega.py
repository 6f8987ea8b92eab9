"""A chart's Vega-Lite spec built once and drawn many times (`st.vega_lite_chart`), the way
Streamlit's `st.altair_chart` would draw the chart itself, minus Altair's validation.

Altair's data transformer and theme are global to the process. While Streamlit converts a chart in
one session, it switches the transformer to its own (which takes the data out of the spec) under
`vega_charts._altair_globals_lock`; a spec built in another session at that moment would come out
without its data, and a cache would serve that empty chart to everyone. So a spec is built under
the same lock, with the theme Streamlit uses ("none": no default 300 px view) and no row limit
(Altair's default refuses charts over 5,000 rows; `st.altair_chart` has none).
"""

from __future__ import annotations

import altair as alt
from streamlit.elements import vega_charts

_ALTAIR_GLOBALS = vega_charts._altair_globals_lock


def vega_lite_spec(chart: alt.TopLevelMixin) -> dict:
    """Return `chart`'s Vega-Lite spec with its data inline, not validated."""
    with (
        _ALTAIR_GLOBALS,
        alt.theme.enable("none"),
        alt.data_transformers.enable("default", max_rows=None),
    ):
        return chart.to_dict(validate=False)
