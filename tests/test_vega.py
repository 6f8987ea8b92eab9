"""Specs built once per server (`convlens.ui.vega`) keep their data whatever other sessions do."""

from __future__ import annotations

import threading

import altair as alt
import pandas as pd
from streamlit.elements import vega_charts

from convlens.ui.vega import vega_lite_spec


def points(rows: int) -> alt.Chart:
    return alt.Chart(pd.DataFrame({"x": range(rows)})).mark_point().encode(x="x:Q")


def inline_rows(spec: dict) -> int:
    return sum(len(values) for values in spec.get("datasets", {}).values())


def taken_away(data):
    """A transformer like Streamlit's own: the data leaves the spec (it is sent as Arrow)."""
    return {"name": "taken"}


alt.data_transformers.register("taken_away", taken_away)


def test_a_spec_holds_all_its_rows_inline_and_no_default_view_size():
    spec = vega_lite_spec(points(6_000))  # Altair's default transformer refuses over 5,000 rows
    assert inline_rows(spec) == 6_000
    assert "view" not in spec.get("config", {}), "Streamlit's theme: no 300x300 default view"


def test_a_spec_waits_while_another_session_converts_a_chart_with_its_own_transformer():
    """Streamlit switches Altair's global transformer under its lock while it converts a chart
    in one session; a spec built meanwhile in another session must not lose its data to it."""
    holding, release = threading.Event(), threading.Event()
    built: list[dict] = []

    def another_session() -> None:
        with vega_charts._altair_globals_lock, alt.data_transformers.enable("taken_away"):
            holding.set()
            release.wait(10)

    other = threading.Thread(target=another_session)
    other.start()
    holding.wait(10)
    ours = threading.Thread(target=lambda: built.append(vega_lite_spec(points(10))))
    ours.start()
    ours.join(0.5)
    assert not built, "the spec is built only once the other conversion is over"
    release.set()
    other.join(10)
    ours.join(10)
    assert inline_rows(built[0]) == 10
