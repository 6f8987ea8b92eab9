"""AppTest of the DeepEyes page over the shipped runs and over a broken one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_app import all_text

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "pages" / "deepeyes.py")
TIMEOUT = 120
LAYERS = ("features.conv1", "features.conv2", "classifier.fc1")


def open_deepeyes(query: dict[str, str] | None = None, state: dict | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    for key, value in (state or {}).items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def chart_rows(element) -> list[dict]:
    """Return the rows of every dataset of an Altair chart element, in order."""
    import pyarrow as pa

    return [
        row
        for dataset in element.proto.datasets
        for row in pa.ipc.open_stream(dataset.data.data).read_all().to_pylist()
    ]


def charts_titled(at: AppTest, words: str) -> list:
    return [chart for chart in at.get("vega_lite_chart") if words in chart.proto.spec]


def diagnosis_text(at: AppTest) -> str:
    """Return the diagnosis panel: the bulleted list under the Diagnosis heading."""
    return "\n".join(m.value for m in at.markdown if m.value.startswith("- "))


def test_default_run_shows_curves_a_heat_map_per_layer_and_a_diagnosis():
    at = open_deepeyes()
    assert Path(at.selectbox(key="run_widget").value).name == "fashion_deepeyes"
    heat_maps = charts_titled(at, "perplexity over training")
    assert len(heat_maps) == len(LAYERS)
    for layer, chart in zip(LAYERS, heat_maps, strict=True):
        assert f"{layer}: perplexity over training" in chart.proto.spec
        rows = [row for row in chart_rows(chart) if "share" in row]
        assert {row["step"] for row in rows} == {
            100,
            900,
            1700,
            2300,
            2900,
            3400,
            3900,
            4690,
            5400,
            5628,
        }
        assert sum(row["share"] for row in rows if row["step"] == 5628) == pytest.approx(1.0)
    curves = charts_titled(at, "training loss")
    assert len(curves) == 1
    assert any(row.get("step") == 5628 for row in chart_rows(curves[0]))
    assert len(charts_titled(at, "maximum activation")) == len(LAYERS)
    text = all_text(at)
    assert "Snapshot at step 5628" in text
    diagnosis = diagnosis_text(at)
    for layer in LAYERS:
        assert f"{layer}: no dead or always-on filters at step 5628" in diagnosis


def test_moving_the_slider_changes_the_stated_step():
    at = open_deepeyes()
    at.select_slider(key="deepeyes_step").set_value(900).run()
    assert not at.exception, at.exception
    text = all_text(at)
    assert "Snapshot at step 900" in text
    assert "features.conv1: no dead or always-on filters at step 900" in text
    assert "Snapshot at step 5628" not in text


def test_thresholds_change_the_stability_and_the_flagged_filters():
    at = open_deepeyes()
    at.number_input(key="deepeyes_threshold").set_value(2.0).run()
    text = all_text(at)
    assert "features.conv1: stable from step 100" in text
    at.number_input(key="deepeyes_always_on").set_value(0.0).run()
    assert not at.exception, at.exception
    assert "features.conv1 at step 5628: 20 of 20 always on" in all_text(at)


def test_a_bookmarked_run_opens_with_its_dead_filters():
    small = ROOT / "assets" / "runs" / "fashion_deepeyes_small"
    at = open_deepeyes({"run": str(small)})
    assert Path(at.selectbox(key="run_widget").value).name == "fashion_deepeyes_small"
    text = all_text(at)
    assert (
        "classifier.fc1: 3 of 100 filters dead at step 5628; the layer may be oversized"
        in diagnosis_text(at)
    )
    assert "classifier.fc1 at step 5628: 3 of 100 dead (44, 54, 70)" in text


def test_an_unreadable_or_empty_run_shows_a_sentence_not_an_exception():
    runs = Path(os.environ["CONVLENS_HOME"]) / "runs"
    (runs / "broken").mkdir(parents=True)
    (runs / "broken" / "manifest.json").write_text("{not json")
    (runs / "empty").mkdir()
    (runs / "empty" / "manifest.json").write_text('{"arch": "deepeyes", "probe_layers": {}}')
    at = open_deepeyes({"run": str(runs / "broken")})
    assert Path(at.selectbox(key="run_widget").value).name == "broken"
    assert any("broken cannot be read" in warning.value for warning in at.warning)
    assert not at.get("vega_lite_chart")
    at.selectbox(key="run_widget").set_value(str(runs / "empty")).run()
    assert not at.exception, at.exception
    assert any("empty has no snapshot yet" in info.value for info in at.info)


def test_a_run_still_training_is_shown_with_its_snapshots_so_far():
    runs = Path(os.environ["CONVLENS_HOME"]) / "runs"
    live = runs / "live"
    shutil.copytree(ROOT / "assets" / "runs" / "fashion_deepeyes_small", live)
    (live / "pid").write_text(str(os.getpid()))  # a live process: the run counts as running
    at = open_deepeyes({"run": str(live)})
    assert any(caption.value.startswith("running") for caption in at.caption)
    assert len(charts_titled(at, "perplexity over training")) == len(LAYERS)
