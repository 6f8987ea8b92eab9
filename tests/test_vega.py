"""Specs built once per server (`convlens.ui.vega`) keep their data whatever other sessions do."""

from __future__ import annotations

import threading

import altair as alt
import pandas as pd
import pyarrow as pa
from streamlit import dataframe_util
from streamlit.elements import vega_charts

from convlens.ui.vega import arrow_bytes, named_by_position, vega_lite_spec, with_arrow_datasets


def points(rows: int) -> alt.Chart:
    return alt.Chart(pd.DataFrame({"x": range(rows)})).mark_point().encode(x="x:Q")


def rows_of(data: bytes) -> list[dict]:
    return pa.ipc.open_stream(data).read_all().to_pylist()


def inline_rows(spec: dict) -> int:
    return sum(len(rows_of(data)) for data in spec.get("datasets", {}).values())


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


def test_datasets_are_arrow_bytes_of_the_same_rows_and_bytes_pass_as_they_are():
    rows = [{"x": 1.5, "label": "cat", "fires": True}, {"x": -2.0, "label": "dog", "fires": False}]
    spec = {"data": {"name": "points"}, "datasets": {"points": rows}, "mark": "point"}
    converted = with_arrow_datasets(spec)
    assert rows_of(converted["datasets"]["points"]) == rows
    assert spec["datasets"]["points"] is rows, "the spec given is left as it was"
    assert {k: v for k, v in converted.items() if k != "datasets"} == {
        k: v for k, v in spec.items() if k != "datasets"
    }
    assert with_arrow_datasets(converted) == converted, "converted once"
    without = {"mark": "point", "data": {"values": rows}}
    assert with_arrow_datasets(without) is without
    shapes = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [0, 1]}}]
    geo = {"data": {"name": "shapes"}, "datasets": {"shapes": shapes}, "mark": "geoshape"}
    assert with_arrow_datasets(geo)["datasets"]["shapes"] == shapes, "shapes stay for Vega-Lite"


def test_charts_that_differ_only_in_their_data_have_one_spec():
    """Altair names a dataset by a hash of its rows; named by their order, two charts with other
    rows have the same spec, so that the browser replaces a drawn chart's data in place."""

    def layered(offset: int) -> alt.LayerChart:
        return alt.layer(points(3 + offset), points(5).mark_rule().transform_calculate(z="1"))

    first, second = vega_lite_spec(layered(0)), vega_lite_spec(layered(1))
    assert first["datasets"].keys() == second["datasets"].keys() == {"data-0", "data-1"}
    assert {k: v for k, v in first.items() if k != "datasets"} == {
        k: v for k, v in second.items() if k != "datasets"
    }
    # each layer still reads its own rows
    for spec, rows in ((first, 3), (second, 4)):
        names = [layer["data"]["name"] for layer in spec["layer"]]
        assert [len(rows_of(spec["datasets"][name])) for name in names] == [rows, 5]
    assert named_by_position({"mark": "point"}) == {"mark": "point"}


def test_repeated_text_and_small_integers_are_sent_compactly_and_read_back_the_same():
    rows = [
        {
            "node": f"layer{k % 3}",
            "neuron": k,
            "label": f"neuron {k}",
            "class": None if k % 4 else "Bag",
        }
        for k in range(12)
    ]
    table = pa.ipc.open_stream(arrow_bytes(rows)).read_all()
    assert table.to_pylist() == rows
    kinds = {field.name: field.type for field in table.schema}
    assert pa.types.is_dictionary(kinds["node"]), "3 values in 12 rows"
    assert pa.types.is_dictionary(kinds["class"]), "1 value and nulls"
    assert not pa.types.is_dictionary(kinds["label"]), "every value once"
    assert kinds["neuron"] == pa.int8(), "the smallest integers that hold 0-11"
    wide = pa.ipc.open_stream(arrow_bytes([{"n": -(2**40)}, {"n": 300}])).read_all()
    assert wide.schema.field("n").type == pa.int64() and wide.column("n").to_pylist() == [
        -(2**40),
        300,
    ]
    flags = pa.ipc.open_stream(arrow_bytes([{"b": True}, {"b": False}])).read_all()
    assert flags.schema.field("b").type == pa.bool_()
    repeated = [{"node": "_blocks.11._expand_conv", "neuron": k} for k in range(1_000)]
    plain = with_arrow_datasets({"datasets": {"d": repeated}})["datasets"]["d"]
    assert len(plain) < 0.6 * len(dataframe_util.convert_anything_to_arrow_bytes(repeated))
    assert rows_of(arrow_bytes([])) == []
