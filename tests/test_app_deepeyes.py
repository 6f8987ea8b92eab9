"""AppTest of the DeepEyes page: its three sections (Training, Layer, Diagnosis), the shipped runs,
coordinated maps, marking filters useless, the smaller network, a broken run and a run still
training."""

from __future__ import annotations

import json
import os
import re
import shutil
from html import unescape
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from test_gallery import figures

from convlens.annotations import FALLBACK_AUTHOR, AnnotationStore
from convlens.charts import (
    CHANGE_FORMAT,
    filter_activity_chart,
    perplexity_bars_chart,
    perplexity_heatmap_chart,
    stability_chart,
)
from convlens.deepeyes import diagnose_run, firing, perplexity, run_histograms
from convlens.embedding import points_in_box
from convlens.runformat import (
    list_snapshots,
    load_snapshot,
    read_metrics,
    read_probe,
    snapshot_dir,
    weight_steps,
)
from convlens.ui.deepeyes import caches
from convlens.ui.deepeyes.maps import strongest_caption
from convlens.ui.deepeyes.sections import STYLE_KEY, container_key
from convlens.ui.gallery import GALLERY_CLASS
from convlens.ui.run_watch import NEW_RUN_NOTICE
from convlens.ui.state import DEEPEYES_SECTIONS, NO_FILTER
from convlens.weights import weights_fingerprint

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "pages" / "deepeyes.py")
TIMEOUT = 120
LAYERS = ("features.conv1", "features.conv2", "classifier.fc1")
FULL = ROOT / "assets" / "runs" / "fashion_deepeyes"
SMALL = ROOT / "assets" / "runs" / "fashion_deepeyes_small"
BASECNN = ROOT / "assets" / "runs" / "fashion_basecnn"  # 11 DeepEyes layers
STEPS = [100, 900, 1700, 2300, 2900, 3400, 3900, 4690, 5400, 5628]
SECTION = "de_view_widget"


def open_deepeyes(query: dict[str, str] | None = None, state: dict | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    for key, value in (state or {}).items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def rerun(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, at.exception
    return at


def show_section(at: AppTest, section: str) -> AppTest:
    """Pick a section in the section picker, as a click on it does."""
    at.button_group(key=SECTION).set_value(section)
    rerun(at)
    assert at.query_params["de_view"] == section
    return at


def chart_rows(element) -> list[dict]:
    """Return the rows of every dataset of an Altair chart element, in order."""
    import pyarrow as pa

    return [
        row
        for dataset in element.proto.datasets
        for row in pa.ipc.open_stream(dataset.data.data).read_all().to_pylist()
    ]


def shown(at: AppTest):
    """Return the section on screen: its container. The other two are drawn too, hidden by the
    page's style (`hidden_sections_style`)."""
    return at.container(container_key(at.button_group(key=SECTION).value))


def step_slider(at: AppTest):
    """Return the snapshot slider of the section on screen (each section has one)."""
    return at.select_slider(key=f"de_step_{at.button_group(key=SECTION).value}_widget")


def hidden(at: AppTest) -> list:
    """Return the containers of the sections drawn hidden (none on a page without sections)."""
    if not at.container or SECTION not in [group.key for group in at.button_group]:
        return []
    picked = at.button_group(key=SECTION).value
    return [at.container(container_key(name)) for name in DEEPEYES_SECTIONS if name != picked]


def text_elements(node) -> list:
    """Return the elements whose text `test_app.all_text` reads, in `node`."""
    return [*node.markdown, *node.subheader, *node.caption, *node.warning, *node.error]


def visible_text(at: AppTest) -> str:
    """Return the page's text (as `test_app.all_text` reads it) without the hidden sections' and
    the sections' style."""
    blocks = hidden(at) + [block for block in at.container if block.key == STYLE_KEY]
    away = {id(element) for block in blocks for element in text_elements(block)}
    return "\n".join(str(e.value) for e in text_elements(at) if id(e) not in away)


def charts_titled(at: AppTest, words: str) -> list:
    """Return the charts of the section on screen whose spec holds `words`."""
    return [chart for chart in shown(at).get("vega_lite_chart") if words in chart.proto.spec]


def chart_title(chart) -> str | None:
    return json.loads(chart.proto.spec).get("title")


def overview_heat_maps(at: AppTest) -> dict[str, object]:
    """Return the Training section's small perplexity heat maps, by layer (their titles)."""
    return {
        chart_title(chart): chart
        for chart in shown(at).get("vega_lite_chart")
        if '"share"' in chart.proto.spec and " " not in (chart_title(chart) or " ")
    }


def diagnosis_text(at: AppTest) -> str:
    """Return the diagnosis panel: the bulleted lists of the Diagnosis section."""
    return "\n".join(m.value for m in shown(at).markdown if m.value.startswith("- "))


def run_line(at: AppTest):
    """Return the caption under the run picker that names the run and its phase."""
    (line,) = [c for c in at.caption if c.value.startswith(("shipped run ", "your run "))]
    return line


def patch_captions(at: AppTest) -> list[str]:
    """Return the captions ("label · #row") of the image patches shown under the maps, each
    checked to be under its picture."""
    (gallery,) = [html for html in shown(at).get("html") if GALLERY_CLASS in html.proto.body]
    found = figures(gallery.proto.body)
    assert gallery.proto.body.count("<figure") == len(found)
    assert all(alt == caption for _, alt, _, caption in found)
    return [unescape(caption) for *_, caption in found]


def input_map_rows(at: AppTest) -> list[dict]:
    (chart,) = charts_titled(at, "Input map:")
    return chart_rows(chart)


def read_classes() -> list[str]:
    return json.loads((FULL / "manifest.json").read_text())["classes"]


# --------------------------------------------------------------------------------------------
# The three sections


def test_training_is_the_default_section_with_curves_stability_and_a_heat_map_per_layer():
    at = open_deepeyes()
    picker = at.selectbox(key="run_widget")
    assert Path(picker.value).name == "fashion_deepeyes"
    assert picker.help == NEW_RUN_NOTICE and "within 30 s" in picker.help
    assert at.button_group(key=SECTION).value == "training"
    assert at.query_params["de_view"] == "training"
    heat_maps = overview_heat_maps(at)
    assert list(heat_maps) == list(LAYERS)
    for chart in heat_maps.values():
        rows = [row for row in chart_rows(chart) if "share" in row]
        assert {row["step"] for row in rows} == set(STEPS)
        assert sum(row["share"] for row in rows if row["step"] == 5628) == pytest.approx(1.0)
    curves = charts_titled(at, "training loss")
    assert len(curves) == 1
    assert any(row.get("step") == 5628 for row in chart_rows(curves[0]))
    (stability,) = charts_titled(at, "Change between snapshots")
    changes = [row for row in chart_rows(stability) if "change" in row]
    assert len(changes) == len(LAYERS) * (len(STEPS) - 1)
    assert all(row["change"] > 0.05 for row in changes if row["step"] == 5628)
    text = visible_text(at)
    assert "Snapshot at step 5628" in text
    # only this section's work: no per-layer bars, activity heatmaps, maps or diagnosis
    assert not charts_titled(at, "at this step")
    assert not charts_titled(at, "maximum activation")
    assert not charts_titled(at, "Input map") and not charts_titled(at, "Filter map")
    assert not diagnosis_text(at) and not shown(at).code
    assert at.number_input(key="deepeyes_threshold_widget").value == 0.05


def drawn_text(chart) -> tuple[set[str], list[str]]:
    """Return the texts Vega draws for an Altair chart, and its marks' descriptions (what a
    screen reader reads, e.g. "share of patches: 0.1%")."""
    import vl_convert

    svg = vl_convert.vegalite_to_svg(chart.to_json())
    return set(re.findall(r"<text[^>]*>([^<]*)</text>", svg)), re.findall(
        r'aria-label="([^"]*)"', svg
    )


def test_the_change_axis_and_the_shares_print_short_numbers():
    at = open_deepeyes()
    (chart,) = charts_titled(at, "Change between snapshots")
    axis = json.loads(chart.proto.spec)["layer"][0]["encoding"]["y"]["axis"]
    assert axis["format"] == CHANGE_FORMAT
    diagnosis = diagnose_run(FULL)
    stability = stability_chart([part.stability for part in diagnosis.layers], 0.05)
    texts, _ = drawn_text(stability.properties(width=400, height=300))
    assert {"0", "0.05", "0.1", "0.2", "0.5", "1", "2"} <= texts, "not 0.05 as 0.1"
    part = diagnosis.layers[0]
    histograms = run_histograms(FULL)[part.layer]
    for chart in (
        stability,
        perplexity_bars_chart(part.histogram, "bars"),
        perplexity_heatmap_chart(histograms, 5628, "over training"),
        perplexity_heatmap_chart(histograms, 5628, "small", small=True),
        filter_activity_chart(part.heatmap, "frequency", "cells"),
    ):
        texts, descriptions = drawn_text(chart)
        long = [t for t in [*texts, *descriptions] if re.search(r"\d\.\d{5}", t)]
        assert not long, long[:3]


def test_the_training_table_has_a_row_per_layer_stable_as_the_diagnosis_says():
    at = open_deepeyes({"run": "fashion_basecnn"})
    at.number_input(key="deepeyes_threshold_widget").set_value(0.2)
    rerun(at)
    expected = diagnose_run(BASECNN, threshold=0.2)
    step = expected.step
    probe = read_probe(BASECNN, step)
    (table,) = shown(at).dataframe
    frame = table.value
    assert frame["layer"].tolist() == [part.layer for part in expected.layers]
    assert len(frame) == 11
    assert frame["width"].tolist() == [probe[part.layer].shape[1] for part in expected.layers]
    stable = [
        "not stable yet"
        if part.stability.stable_from_step is None
        else f"stable from step {part.stability.stable_from_step}"
        for part in expected.layers
    ]
    assert frame["stability"].tolist() == stable
    assert "not stable yet" in stable and any(s.startswith("stable from") for s in stable)
    assert frame["last change"].tolist() == pytest.approx(
        [part.stability.distances[-1] for part in expected.layers]
    )
    assert frame["mean perplexity"].tolist() == pytest.approx(
        [float(perplexity(probe[part.layer]).mean()) for part in expected.layers]
    )
    assert len(overview_heat_maps(at)) == 11


def test_the_stability_legend_names_every_layer_in_order_each_in_its_own_colour():
    at = open_deepeyes({"run": "fashion_basecnn"})
    (chart,) = charts_titled(at, "Change between snapshots")
    colour = json.loads(chart.proto.spec)["layer"][0]["encoding"]["color"]
    layers = [part.layer for part in diagnose_run(BASECNN).layers]
    assert colour["scale"]["domain"] == layers
    assert colour["scale"]["scheme"] == "category20"  # ten colours would repeat one
    assert colour["legend"]["labelLimit"] == 0
    assert colour["legend"]["orient"] == "bottom" and colour["legend"]["columns"] >= 2


def test_the_layer_section_shows_the_chosen_layer_only():
    at = open_deepeyes(
        {"run": "fashion_basecnn", "de_view": "layer", "de_layer": "features.conv3_1"}
    )
    assert at.button_group(key=SECTION).value == "layer"
    assert at.selectbox(key="de_layer_widget").value == "features.conv3_1"
    options = at.selectbox(key="de_layer_widget").options
    assert "features.conv3_1 (128 filters)" in options  # the page's word for them
    assert any(option.endswith(" units)") for option in options), "fc layers' units"
    titles = [chart.proto.spec for chart in shown(at).get("vega_lite_chart")]
    assert len(titles) == 6
    for words in (
        "features.conv3_1: perplexity over training",
        "features.conv3_1 at this step",
        "features.conv3_1: maximum activation",
        "features.conv3_1: activation frequency",
        "Input map:",
        "Filter map: 128 filters",
    ):
        assert len(charts_titled(at, words)) == 1, words
    assert not charts_titled(at, "features.conv1_1")
    assert not charts_titled(at, "Change between snapshots") and not charts_titled(at, "loss")
    text = visible_text(at)
    assert "features.conv3_1: not stable yet at threshold 0.05" in text
    assert "features.conv3_1 at step 7504: 2 of 128 dead (72, 95)." in text
    assert "features.conv3_1: input map and filter map at step 7504" in text
    assert not diagnosis_text(at) and not shown(at).dataframe and not shown(at).table


def test_a_snapshot_click_replaces_the_layer_sections_chart_data_not_their_specs():
    """A chart whose spec changes is drawn anew by the browser; one whose spec stays has its data
    replaced in place (docs/performance.md, "DeepEyes' snapshots and filters")."""
    at = open_deepeyes({"de_view": "layer"})
    before = {chart.proto.spec: chart_rows(chart) for chart in shown(at).get("vega_lite_chart")}
    step_slider(at).set_value(900).run()
    assert "Snapshot at step 900" in visible_text(at)
    after = {chart.proto.spec: chart_rows(chart) for chart in shown(at).get("vega_lite_chart")}
    assert len(before) == 6 and list(after) == list(before)
    assert list(after.values()) != list(before.values()), "the data is the snapshot's"


def test_the_default_layer_section_shows_the_first_layer_and_its_maps():
    at = open_deepeyes({"de_view": "layer"})
    assert at.query_params["de_layer"] == "features.conv1"
    assert len(charts_titled(at, "maximum activation")) == 1
    (heat_map,) = charts_titled(at, "features.conv1: perplexity over training")
    assert {row["step"] for row in chart_rows(heat_map) if "share" in row} == set(STEPS)
    (bars,) = charts_titled(at, "features.conv1 at this step")
    assert sum(row["share"] for row in chart_rows(bars)) == pytest.approx(1.0)
    # the maps of the first layer: 1,000 patches, 20 filters, every point labelled
    rows = input_map_rows(at)
    assert len(rows) == 1000 and {row["label"] for row in rows} <= set(read_classes())
    (filter_map,) = charts_titled(at, "Filter map: 20 filters")
    assert len([row for row in chart_rows(filter_map) if "specificity" in row]) == 20
    text = visible_text(at)
    assert "Snapshot at step 5628" in text
    assert "t-SNE (openTSNE, perplexity 30, 1000 points), embedded at step 5628" in text
    assert "PCA (first two principal axes of 20 points)" in text
    assert "Drag a box on the input map" in text


def test_the_diagnosis_section_says_what_to_change():
    at = open_deepeyes({"de_view": "diagnosis"})
    assert at.button_group(key=SECTION).value == "diagnosis"
    assert not shown(at).get("vega_lite_chart")
    diagnosis = diagnosis_text(at)
    for layer in LAYERS:
        noun = "units" if layer == "classifier.fc1" else "filters"
        assert f"{layer}: no dead, always-on or near-duplicate {noun} at step 5628" in diagnosis
        assert f"{layer}: still changing (last change" in diagnosis
    assert "**A smaller network to try:**" in visible_text(at)
    assert "fashion_deepeyes_small has 4.6× fewer parameters" in visible_text(at)
    # the dead threshold written as the Layer section's input shows it
    assert "dead at a maximum activation of at most 0.000001," in visible_text(at)


@pytest.mark.parametrize("section", ["training", "layer", "diagnosis"])
def test_each_section_of_the_eleven_layer_run_opens_from_the_url(section: str):
    at = open_deepeyes({"run": "fashion_basecnn", "de_view": section})
    assert at.button_group(key=SECTION).value == section
    assert at.query_params["de_view"] == section
    assert run_line(at).value == "shipped run fashion_basecnn · finished"
    assert "Snapshot at step 7504" in visible_text(at)
    charts = len(shown(at).get("vega_lite_chart"))
    assert charts == {"training": 2 + 11, "layer": 6, "diagnosis": 0}[section]


def test_switching_sections_keeps_the_step_the_layer_and_the_filter():
    at = open_deepeyes({"de_view": "layer", "de_step": "900", "de_layer": "features.conv2"})
    at.selectbox(key="de_filter_widget").set_value(4)
    rerun(at)
    for section in ("training", "diagnosis", "layer"):
        show_section(at, section)
        assert at.query_params["de_step"] == "900"
        assert at.query_params["de_layer"] == "features.conv2"
        assert at.query_params["de_filter"] == "4"
        assert "Snapshot at step 900" in visible_text(at)
    assert "**Filter 4** fires on" in visible_text(at)


def section_style(at: AppTest) -> str:
    """Return the style element the section picker draws."""
    (style,) = at.container(STYLE_KEY).markdown
    return style.value


def test_every_section_is_drawn_and_the_style_shows_the_picked_one_only():
    at = open_deepeyes({"de_view": "layer"})
    style = section_style(at)
    hiding = style[: style.index("{")]
    assert ".st-key-deepeyes_section_training" in hiding
    assert ".st-key-deepeyes_section_diagnosis" in hiding
    assert "deepeyes_section_layer" not in style
    assert "content-visibility: hidden" in style and "visibility: hidden" in style
    training, diagnosis = hidden(at)
    assert [
        c for c in training.get("vega_lite_chart") if "Change between snapshots" in c.proto.spec
    ]
    assert diagnosis.code[0].value.startswith("python -m convlens train")
    assert len(charts_titled(at, "Input map:")) == 1
    show_section(at, "diagnosis")
    hiding = section_style(at)[: section_style(at).index("{")]
    assert "deepeyes_section_layer" in hiding and "deepeyes_section_diagnosis" not in hiding


def test_a_hidden_section_keeps_its_snapshot_until_it_is_shown_again():
    """A hidden section is drawn as it was last shown, so that a snapshot's click redraws the
    section on screen only; shown again, it is drawn at the snapshot picked since."""
    at = open_deepeyes({"de_view": "layer"})
    step_slider(at).set_value(900)
    rerun(at)
    (training,) = [block for block in hidden(at) if block.key.endswith("training")]
    outlined = [c.value for c in training.caption if "outlined: step" in c.value]
    assert outlined and "outlined: step 5628" in outlined[0], "drawn at the first snapshot"
    # its slider says so too: shown again without a redraw, it would not contradict its charts
    assert at.select_slider(key="de_step_training_widget").value == 5628
    assert step_slider(at).value == 900
    assert "features.conv1: input map and filter map at step 900" in visible_text(at)
    show_section(at, "training")
    assert "outlined: step 900" in visible_text(at)
    assert "outlined: step 5628" not in visible_text(at)
    (layer,) = [block for block in hidden(at) if block.key.endswith("layer")]
    assert any("at step 900" in s.value for s in layer.subheader)


def test_an_unknown_section_in_the_url_falls_back_to_training():
    at = open_deepeyes({"de_view": "charts"})
    assert at.button_group(key=SECTION).value == "training"
    assert at.query_params["de_view"] == "training"
    assert len(overview_heat_maps(at)) == len(LAYERS)


def test_the_run_line_names_the_run_and_shows_no_server_path():
    at = open_deepeyes()
    line = run_line(at)
    assert line.value == "shipped run fashion_deepeyes · finished"
    assert str(FULL) not in line.proto.help and str(FULL) not in visible_text(at)


def test_a_users_run_is_marked_under_the_name_the_filters_page_opens_it_by():
    """run:NAME[@STEP], as the sidebar lists it: never the run's folder on the server."""
    from convlens.ui.deepeyes.diagnosis import annotation_target

    runs = Path(os.environ["CONVLENS_HOME"]) / "runs"
    run = copy_run(runs / "mine", len(list_snapshots(SMALL)))
    steps = weight_steps(run)
    model, _fingerprint = annotation_target(str(run), steps[0], shipped=False)
    assert model == f"run:mine@{steps[0]}"


def test_moving_the_slider_changes_the_stated_step_and_the_url():
    at = open_deepeyes({"de_view": "layer"})
    step_slider(at).set_value(900)
    rerun(at)
    text = visible_text(at)
    assert "Snapshot at step 900" in text
    assert "features.conv1: no dead or always-on filters at step 900" in text
    assert "Snapshot at step 5628" not in text
    assert at.query_params["de_step"] == "900"


def test_thresholds_change_the_stability_and_the_flagged_filters_in_every_section():
    at = open_deepeyes()
    at.number_input(key="deepeyes_threshold_widget").set_value(2.0)
    rerun(at)
    assert shown(at).dataframe[0].value["stability"].tolist()[0] == "stable from step 100"
    show_section(at, "layer")
    assert "features.conv1: stable from step 100" in visible_text(at)
    show_section(at, "diagnosis")
    assert "- features.conv1: stable from step 100." in diagnosis_text(at)
    show_section(at, "layer")
    at.number_input(key="deepeyes_always_on_widget").set_value(0.0)
    rerun(at)
    assert "features.conv1 at step 5628: 20 of 20 always on" in visible_text(at)
    show_section(at, "diagnosis")
    assert "features.conv1: 20 of 20 filters always on at step 5628" in diagnosis_text(at)
    show_section(at, "training")
    assert at.number_input(key="deepeyes_threshold_widget").value == 2.0


def test_a_bookmarked_run_opens_with_its_dead_units():
    at = open_deepeyes({"run": str(SMALL), "de_view": "diagnosis"})
    assert Path(at.selectbox(key="run_widget").value).name == "fashion_deepeyes_small"
    assert (
        "classifier.fc1: 3 of 100 units dead at step 5628 (44, 54, 70); the layer may be oversized"
        in diagnosis_text(at)
    )
    at = open_deepeyes({"run": str(SMALL), "de_view": "layer", "de_layer": "classifier.fc1"})
    assert "classifier.fc1 at step 5628: 3 of 100 dead (44, 54, 70)" in visible_text(at)


def test_a_bookmark_restores_the_step_the_layer_and_the_filter():
    # a bookmark from before the sections names a filter: it opens the Layer section
    at = open_deepeyes({"de_step": "900", "de_layer": "classifier.fc1", "de_filter": "3"})
    text = visible_text(at)
    assert "Snapshot at step 900" in text
    assert "classifier.fc1: input map and filter map at step 900" in text
    assert "**Filter 3** fires on" in text
    assert at.selectbox(key="de_layer_widget").value == "classifier.fc1"
    assert at.query_params["de_view"] == "layer"
    # a broken bookmark falls back to the defaults
    at = open_deepeyes({"de_step": "soon", "de_layer": "features.conv9", "de_filter": "999"})
    assert "Snapshot at step 5628" in visible_text(at)
    assert at.selectbox(key="de_layer_widget").value == "features.conv1"
    assert at.selectbox(key="de_filter_widget").value == -1
    # a bookmark of the section wins, also over a filter
    at = open_deepeyes({"de_view": "diagnosis", "de_layer": "classifier.fc1", "de_filter": "3"})
    assert at.button_group(key=SECTION).value == "diagnosis"
    assert at.query_params["de_filter"] == "3" and at.query_params["de_layer"] == "classifier.fc1"


# --------------------------------------------------------------------------------------------
# Coordinated views (the Layer section)


def test_a_selected_filter_lights_up_its_patches_its_cells_and_its_point():
    at = open_deepeyes({"de_view": "layer"})
    at.selectbox(key="de_filter_widget").set_value(7)
    rerun(at)
    fires = firing(read_probe(FULL, 5628)["features.conv1"], 7)
    rows = input_map_rows(at)
    assert [row["fires"] for row in rows] == fires.tolist()
    assert f"**Filter 7** fires on **{int(fires.sum())} of 1000** patches" in visible_text(at)
    # its cell is ringed in conv1's two heatmaps, the only ones shown
    activity = charts_titled(at, "activation")
    assert len(activity) == 2
    for chart in activity:
        assert "features.conv1: " in chart.proto.spec
        ringed = [row for row in chart_rows(chart) if set(row) == {"filter", "column", "row"}]
        assert ringed == [{"filter": 7, "column": 7, "row": 0}]
    (filter_map,) = charts_titled(at, "Filter map")
    assert '"stroke": "#D55E00"' in filter_map.proto.spec
    # the patches it responds to most, strongest first
    activations = read_probe(FULL, 5628)["features.conv1"][:, 7]
    captions = patch_captions(at)
    assert len(captions) == 40
    assert captions[0].endswith(f"#{int(np.argmax(activations))}")
    assert int(fires.sum()) < 40, "the caption below says where the firing patches end"
    assert f"fires on the first {int(fires.sum())}, above half its maximum" in visible_text(at)
    assert at.query_params["de_filter"] == "7"
    # another layer forgets the filter
    at.selectbox(key="de_layer_widget").set_value("classifier.fc1")
    rerun(at)
    assert "de_filter" not in at.query_params
    assert "classifier.fc1: input map and filter map at step 5628" in visible_text(at)
    assert len(input_map_rows(at)) == 200
    activity = charts_titled(at, "activation")
    assert len(activity) == 2
    for chart in activity:
        assert "classifier.fc1: " in chart.proto.spec
        assert not [row for row in chart_rows(chart) if set(row) == {"filter", "column", "row"}]


def test_the_strongest_patches_caption_says_where_the_firing_ones_end():
    assert strongest_caption(3, 40, 20).endswith(
        "it fires on the first 20, above half its maximum."
    )
    assert strongest_caption(3, 40, 55).endswith("it fires on all of them.")
    assert strongest_caption(3, 12, 12).startswith("**The patches filter 3 responds to most** (12,")
    assert strongest_caption(3, 0, 0) == "**Filter 3 responds to no patch** at this snapshot."
    assert strongest_caption(3, 12, 0).endswith(
        "fires on none of them (a dead filter at this threshold)."
    )


def test_a_box_dragged_on_the_input_map_shows_its_patches():
    at = open_deepeyes({"de_view": "layer"})
    rows = input_map_rows(at)
    xs, ys = np.array([r["x"] for r in rows]), np.array([r["y"] for r in rows])
    box = {"x": [float(np.quantile(xs, 0.3)), float(np.quantile(xs, 0.6))]}
    box["y"] = [float(np.quantile(ys, 0.3)), float(np.quantile(ys, 0.6))]
    expected = points_in_box(np.column_stack([xs, ys]), box["x"], box["y"])
    assert len(expected) > 0
    at.session_state["deepeyes_input_map_fashion_deepeyes_features.conv1_5628"] = {
        "selection": {"patch_brush": box}
    }
    rerun(at)
    assert f"**{len(expected)} patches in the box**" in visible_text(at)
    captions = patch_captions(at)
    assert [caption.split("#")[1] for caption in captions] == [str(i) for i in expected[:40]]


def chart_click(chart, filter_index: int):
    """Return the widget state the browser sends for a click on filter `filter_index`."""
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    selection = {"selection": {"filter_pick": [{"filter": filter_index}]}}
    return WidgetState(id=chart.proto.id, string_value=json.dumps(selection))


def send(at: AppTest, clicks: tuple = ()) -> AppTest:
    """Run the page as the browser does after an interaction: with the page's widgets and the
    chart selections in `clicks` ((chart, filter) pairs), also those of charts the page no longer
    draws, whose last selection the browser still holds."""
    states = at._tree.get_widget_states()
    states.widgets.extend(chart_click(chart, index) for chart, index in clicks)
    at._run(states)
    assert not at.exception, at.exception
    return at


def switch_run(at: AppTest, run: str, replayed: tuple = ()) -> AppTest:
    """Pick another run in the run picker, with the browser's stale chart selections."""
    at.selectbox(key="run_widget").set_value(run)
    return send(at, replayed)


def test_a_click_on_a_cell_selects_its_filter():
    at = open_deepeyes({"de_view": "layer"})
    (cells,) = charts_titled(at, "features.conv1: activation frequency")
    send(at, ((cells, 3),))
    assert at.query_params["de_filter"] == "3"
    assert "**Filter 3** fires on" in visible_text(at)


def test_a_pick_replaces_the_charts_data_and_starts_a_chart_fresh_once_it_holds_another():
    """A chart keeps its key (the browser replaces its data) while the filter it last sent is the
    page's; once the page's filter is another (the selectbox, another chart), it starts fresh,
    so that a click on the filter it holds is answered."""
    at = open_deepeyes({"de_view": "layer"})

    def ids() -> dict[str, str]:
        (filter_map,) = charts_titled(at, "Filter map")
        (cells,) = charts_titled(at, "features.conv1: activation frequency")
        return {"map": filter_map.proto.id, "cells": cells.proto.id}

    first = ids()
    (filter_map,) = charts_titled(at, "Filter map")
    send(at, ((filter_map, 5),))
    assert at.query_params["de_filter"] == "5"
    assert ids() == first
    (filter_map,) = charts_titled(at, "Filter map")
    send(at, ((filter_map, 9),))
    assert at.query_params["de_filter"] == "9"
    assert ids() == first, "a pick in the same chart keeps every chart"
    (cells,) = charts_titled(at, "features.conv1: activation frequency")
    send(at, ((cells, 3),))
    assert at.query_params["de_filter"] == "3"
    after_cells = ids()
    assert after_cells["cells"] == first["cells"]
    assert after_cells["map"] != first["map"], "the filter map held 9: it starts fresh"
    at.selectbox(key="de_filter_widget").set_value(-1)
    rerun(at)
    assert "de_filter" not in at.query_params
    after_none = ids()
    assert after_none["map"] == after_cells["map"], "the fresh filter map holds no filter"
    assert after_none["cells"] != after_cells["cells"]
    (cells,) = charts_titled(at, "features.conv1: activation frequency")
    send(at, ((cells, 3),))
    assert at.query_params["de_filter"] == "3", "a click on the filter picked before is answered"


def test_a_cell_click_that_is_no_filter_number_changes_nothing():
    at = open_deepeyes({"de_view": "layer"})
    (cells,) = charts_titled(at, "features.conv1: activation frequency")
    send(at, ((cells, 3),))
    for sent in ("x", "²", None, "9" * 5000):  # what no cell sends: no traceback, filter kept
        (cells,) = charts_titled(at, "features.conv1: activation frequency")
        send(at, ((cells, sent),))
        assert at.query_params["de_filter"] == "3"
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    for points in (["x"], [[]], {}, "x"):  # points that are no objects
        (cells,) = charts_titled(at, "features.conv1: activation frequency")
        states = at._tree.get_widget_states()
        selection = {"selection": {"filter_pick": points}}
        states.widgets.append(WidgetState(id=cells.proto.id, string_value=json.dumps(selection)))
        at._run(states)
        assert not at.exception, at.exception
        assert at.query_params["de_filter"] == "3"


def test_switching_the_run_keeps_the_layer_despite_a_stale_cell_selection():
    """The browser test's steps: a click on filter 3's cell in conv1, then fc1, then the small
    run. The browser still holds conv1's cell selection and sends it with the run switch: it must
    not bring conv1 (and filter 3) back."""
    at = open_deepeyes({"de_view": "layer"})
    (cells,) = charts_titled(at, "features.conv1: activation frequency")
    send(at, ((cells, 3),))
    assert at.query_params["de_filter"] == "3"
    at.selectbox(key="de_layer_widget").set_value("classifier.fc1")
    rerun(at)
    assert "de_filter" not in at.query_params
    switch_run(at, "fashion_deepeyes_small", replayed=((cells, 3),))
    assert at.selectbox(key="de_layer_widget").value == "classifier.fc1"
    assert at.query_params["de_layer"] == "classifier.fc1"
    assert "de_filter" not in at.query_params
    assert "classifier.fc1 at step 5628: 3 of 100 dead (44, 54, 70)" in visible_text(at)
    rerun(at)  # and on the next run too
    assert at.query_params["de_layer"] == "classifier.fc1"


def test_switching_the_run_keeps_a_filter_the_layer_has_there():
    at = open_deepeyes({"de_view": "layer", "de_layer": "classifier.fc1", "de_filter": "42"})
    switch_run(at, "fashion_deepeyes_small")
    assert at.query_params["de_layer"] == "classifier.fc1"
    assert at.query_params["de_filter"] == "42"
    assert "**Filter 42** fires on" in visible_text(at)
    at = open_deepeyes({"de_view": "layer", "de_layer": "classifier.fc1", "de_filter": "300"})
    switch_run(at, "fashion_deepeyes_small")  # its fc1 has 100 units
    assert at.query_params["de_layer"] == "classifier.fc1"
    assert "de_filter" not in at.query_params


def test_switching_to_a_run_without_the_layer_says_so_and_shows_its_first_layer():
    at = open_deepeyes(
        {"run": "fashion_basecnn", "de_view": "layer", "de_layer": "features.conv3_1"}
    )
    at.selectbox(key="de_filter_widget").set_value(5)
    rerun(at)
    switch_run(at, "fashion_deepeyes")
    assert at.selectbox(key="de_layer_widget").value == "features.conv1"
    assert at.query_params["de_layer"] == "features.conv1"
    assert "de_filter" not in at.query_params, "filter 5 of another layer means nothing here"
    (line,) = [info.value for info in at.info if "has no layer" in info.value]
    assert line == "fashion_deepeyes has no layer `features.conv3_1`: it shows features.conv1."
    rerun(at)
    assert not [info for info in at.info if "has no layer" in info.value]


def test_an_unknown_layer_in_a_link_to_another_section_is_said_on_screen():
    """The Layer section, drawn hidden, says it; a toast says it where the page is seen."""
    at = open_deepeyes({"de_view": "training", "de_layer": "features.conv9"})
    said = "fashion_deepeyes has no layer `features.conv9`: it shows features.conv1."
    assert [toast.value for toast in at.toast] == [said]
    assert not open_deepeyes({"de_view": "layer", "de_layer": "features.conv9"}).toast


def test_an_unknown_filter_in_a_link_is_said_and_none_is_selected():
    query = {"de_layer": "features.conv1", "de_filter": "99999"}
    at = open_deepeyes({**query, "de_view": "layer"})
    (line,) = [info.value for info in at.info if "has no filter" in info.value]
    assert re.fullmatch(
        r"features\.conv1 has no filter 99999 \(it has \d+ filters\): none is selected\.", line
    )
    assert at.selectbox(key="de_filter_widget").value == NO_FILTER
    assert "de_filter" not in at.query_params
    assert not at.toast, "said where it is seen"
    hidden = open_deepeyes({**query, "de_view": "training"})
    assert [toast.value for toast in hidden.toast] == [line]


def test_a_long_unknown_layer_in_a_link_is_said_back_cut_and_as_code():
    hostile = "# Heading [link](http://elsewhere) " + "x" * 2400
    at = open_deepeyes({"de_view": "layer", "de_layer": hostile})
    (line,) = [info.value for info in at.info if "has no layer" in info.value]
    assert len(line) < 150 and "`# Heading [link](http://elsewhere) x" in line
    assert at.query_params["de_layer"] != hostile


def test_a_later_snapshot_is_placed_in_the_map_of_the_first_one():
    query = {"de_layer": "classifier.fc1", "de_view": "layer"}
    first = np.array([[r["x"], r["y"]] for r in input_map_rows(open_deepeyes(query))])
    at = open_deepeyes(query)
    step_slider(at).set_value(4690)
    rerun(at)
    text = visible_text(at)
    assert "embedded at step 5628; the patches at step 4690 are placed into that map" in text
    later = np.array([[r["x"], r["y"]] for r in input_map_rows(at)])
    moved = np.linalg.norm(later - first, axis=1)
    assert np.median(moved) < 0.05 * np.ptp(first, axis=0).max()
    at.button(key="deepeyes_reembed").click()
    rerun(at)
    assert "embedded at step 4690; other snapshots are placed into this map" in visible_text(at)


# --------------------------------------------------------------------------------------------
# The diagnosis panel and the smaller network


def test_marking_dead_units_useless_stores_them_for_the_shipped_model():
    at = open_deepeyes({"run": str(SMALL), "de_view": "diagnosis"})
    button = at.button(key="deepeyes_mark_classifier.fc1_dead")
    assert button.label == "Mark 3 useless" and not button.disabled
    button.click()
    rerun(at)
    fingerprint = weights_fingerprint(load_snapshot(SMALL)[0])
    store = AnnotationStore()
    assert store.useless_filters("fashion_deepeyes_small", fingerprint) == {
        "classifier.fc1": [44, 54, 70]
    }
    assert {row.note for row in store.list_annotations()} == {"DeepEyes: dead at step 5628"}
    # the browser's marks, not the server's login name's
    assert {row.author for row in store.list_annotations()} == {FALLBACK_AUTHOR}
    button = at.button(key="deepeyes_mark_classifier.fc1_dead")
    assert button.label == "Marked useless" and button.disabled
    # a snapshot without weights cannot be marked: marks belong to weights
    show_section(at, "layer")
    at.number_input(key="deepeyes_always_on_widget").set_value(0.3)
    rerun(at)
    show_section(at, "diagnosis")
    step_slider(at).set_value(900)
    rerun(at)
    buttons = [b for b in at.button if b.key and b.key.startswith("deepeyes_mark_")]
    assert buttons and all(b.disabled for b in buttons)
    assert "this snapshot kept no weights (the run has them at step 5628)" in visible_text(at)


def test_the_diagnosis_suggests_a_smaller_network_with_its_command():
    at = open_deepeyes({"de_view": "diagnosis"})
    assert "**A smaller network to try:** classifier.fc1 at 124 units (not 500)." in visible_text(
        at
    )
    (command,) = shown(at).code
    assert command.value.startswith("python -m convlens train --arch deepeyes --fc1 124 ")
    # no --out: the run goes under $CONVLENS_HOME/runs, and the page names no server path
    assert "--out" not in command.value and os.environ["CONVLENS_HOME"] not in command.value
    suggestion = shown(at).dataframe[0].value
    assert suggestion["suggested"].tolist() == [20, 50, 124]


def test_the_suggestion_is_computed_once_for_every_browser(monkeypatch: pytest.MonkeyPatch):
    # each layer's effective width is an eigen-decomposition: half a view's run when it was not
    # cached (issue 17, item 4: nothing heavy outside a cache)
    computed = []
    suggest = caches.suggest_architecture
    monkeypatch.setattr(
        caches, "suggest_architecture", lambda *args: computed.append(args) or suggest(*args)
    )
    caches.cached_suggestion.clear()
    for _ in range(2):  # two browsers, the second one rerun
        at = open_deepeyes({"de_view": "diagnosis"})
    rerun(at)
    assert "**A smaller network to try:** classifier.fc1 at 124 units (not 500)." in visible_text(
        at
    )
    assert len(computed) == 1


def test_training_the_suggestion_starts_a_run_and_follows_it(monkeypatch: pytest.MonkeyPatch):
    import convlens.ui.deepeyes.diagnosis

    started = []

    def start_run(
        arch: str, epochs: int, options: dict, owner: str | None, max_running: int | None
    ) -> Path:
        assert owner and max_running == 2, "the browser owns it, within the trainer cap"
        started.append((arch, epochs, dict(options)))
        folder = Path(os.environ["CONVLENS_HOME"]) / "runs" / "deepeyes-smaller"
        folder.mkdir(parents=True)
        (folder / "pid").write_text(str(os.getpid()))  # the training process, just started
        return folder

    monkeypatch.setattr(convlens.ui.deepeyes.diagnosis, "start_run", start_run)
    at = open_deepeyes({"de_view": "diagnosis"})
    at.button(key="deepeyes_train_suggestion").click()
    rerun(at)
    assert started == [
        (
            "deepeyes",
            6,
            {"probe_images": 200, "probe_patches": 1000, "keep_snapshots": 10, "fc1": 124},
        )
    ]
    assert Path(at.selectbox(key="run_widget").value).name == "deepeyes-smaller"
    assert run_line(at).value == "your run deepeyes-smaller · starting"


def test_the_smaller_shipped_network_is_smaller_faster_and_within_a_point():
    at = open_deepeyes({"de_view": "diagnosis"})
    (table,) = (element.value for element in shown(at).table)
    assert table["run"].tolist() == ["fashion_deepeyes", "fashion_deepeyes_small"]
    assert table["conv1"].tolist() == [20, 10] and table["fc1"].tolist() == [500, 100]
    assert table["parameters"].tolist() == ["431,080", "93,920"]
    assert table["training (s, from the card)"].tolist() == [203, 63]
    assert (table["forward (ms per image, measured here)"] > 0).all()
    sentence = next(m.value for m in shown(at).markdown if "fewer parameters" in m.value)
    assert sentence.startswith("fashion_deepeyes_small has 4.6× fewer parameters")
    assert "trained 3.2× faster (63 s against 203 s)" in sentence
    assert (
        "loses 0.78 points of test accuracy (89.77% against 90.55%): at most 1 point." in sentence
    )


# --------------------------------------------------------------------------------------------
# Bad runs, and a run being written


def test_an_unreadable_empty_or_probeless_run_shows_a_sentence_not_an_exception():
    runs = Path(os.environ["CONVLENS_HOME"]) / "runs"
    (runs / "broken").mkdir(parents=True)
    (runs / "broken" / "manifest.json").write_text("{not json")
    (runs / "empty").mkdir()
    (runs / "empty" / "manifest.json").write_text('{"arch": "deepeyes", "probe_layers": {}}')
    probeless = copy_run(runs / "probeless", 3)
    (snapshot_dir(probeless, 1700) / "probe.safetensors").unlink()
    at = open_deepeyes({"run": str(runs / "broken")})
    assert Path(at.selectbox(key="run_widget").value).name == "broken"
    assert any("broken cannot be read" in warning.value for warning in at.warning)
    assert not at.get("vega_lite_chart")
    at.selectbox(key="run_widget").set_value("empty")  # a run is named by its folder
    rerun(at)
    assert any("empty has no snapshot yet" in info.value for info in at.info)
    at.selectbox(key="run_widget").set_value(probeless.name)
    rerun(at)
    assert any("DeepEyes cannot read probeless" in w.value for w in at.warning)


def copy_run(target: Path, snapshots: int, pid: int | None = None) -> Path:
    """Copy the small shipped run's first `snapshots` snapshots (and metrics up to them), as a
    run still being written: not finished, with `pid` as its training process."""
    target.mkdir(parents=True)
    shutil.copy(SMALL / "probe_index.safetensors", target)
    manifest = json.loads((SMALL / "manifest.json").read_text())
    (target / "manifest.json").write_text(json.dumps({**manifest, "finished": False}))
    (target / "snapshots").mkdir()
    for step in list_snapshots(SMALL)[:snapshots]:
        land_snapshot(target, step)
    if pid is not None:
        (target / "pid").write_text(f"{pid}\n")
    return target


def land_snapshot(run: Path, step: int) -> None:
    """Write snapshot `step` of the small run into `run` the way the recorder does (under a
    temporary name, then renamed), with the metrics up to it."""
    temporary = run / "snapshots" / f".tmp-step_{step:08d}-{os.getpid()}"
    shutil.copytree(snapshot_dir(SMALL, step), temporary)
    os.replace(temporary, snapshot_dir(run, step))
    records = [r for r in read_metrics(SMALL) if r["step"] <= step]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_a_run_still_training_follows_its_new_snapshots():
    runs = Path(os.environ["CONVLENS_HOME"]) / "runs"
    live = copy_run(runs / "live", 5, pid=os.getpid())  # a live process: the run is training
    at = open_deepeyes({"run": str(live), "de_layer": "classifier.fc1"})
    assert Path(at.selectbox(key="run_widget").value).name == "live"
    assert run_line(at).value == "your run live · running"
    assert "**Snapshot at step 2900** · the run is still training" in visible_text(at)
    assert len(overview_heat_maps(at)) == len(LAYERS)
    land_snapshot(live, 3400)
    rerun(at)  # what the page's timer does every couple of seconds
    assert "Snapshot at step 3400" in visible_text(at)
    heat_map = overview_heat_maps(at)["features.conv1"]
    assert {row["step"] for row in chart_rows(heat_map) if "share" in row} == set(STEPS[:6])
    show_section(at, "layer")  # the chosen layer follows too
    (heat_map,) = charts_titled(at, "classifier.fc1: perplexity over training")
    assert {row["step"] for row in chart_rows(heat_map) if "share" in row} == set(STEPS[:6])
    assert step_slider(at).options == [str(s) for s in STEPS[:6]]
    # looking at an earlier snapshot, the view stays there when the next one lands
    step_slider(at).set_value(900)
    rerun(at)
    land_snapshot(live, 3900)
    rerun(at)
    assert "Snapshot at step 900" in visible_text(at)
    assert "3900" in step_slider(at).options
    # the training process ends: the page says so
    (live / "pid").unlink()
    rerun(at)
    assert run_line(at).value == "your run live · incomplete"
    assert "still training" not in visible_text(at)


def test_a_run_just_started_waits_for_its_first_snapshot():
    runs = Path(os.environ["CONVLENS_HOME"]) / "runs"
    (runs / "starting").mkdir(parents=True)
    (runs / "starting" / "pid").write_text(str(os.getpid()))
    at = open_deepeyes({"run": str(runs / "starting")})
    assert run_line(at).value == "your run starting · starting"
    assert any(
        "starting has no snapshot yet" in info.value and "updates itself" in info.value
        for info in at.info
    )


def test_the_run_follows_the_sidebar_model_when_that_is_a_recorded_run():
    at = open_deepeyes({"model": "fashion_basecnn_shallow"})
    assert Path(at.selectbox(key="run_widget").value).name == "fashion_basecnn_shallow"
    at.selectbox(key="model_widget").set_value("fashion_deepeyes_small")
    rerun(at)
    assert Path(at.selectbox(key="run_widget").value).name == "fashion_deepeyes_small"
    at.selectbox(key="model_widget").set_value("efficientnet_lite0")
    rerun(at)
    assert Path(at.selectbox(key="run_widget").value).name == "fashion_deepeyes_small"
    assert (
        open_deepeyes({"model": "fashion_basecnn", "run": "fashion_deepeyes"})
        .selectbox(key="run_widget")
        .value.endswith("fashion_deepeyes")
    ), "a bookmarked run wins"
