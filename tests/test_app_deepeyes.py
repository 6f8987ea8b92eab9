"""AppTest of the DeepEyes page: the shipped runs, coordinated maps, marking filters useless, the
smaller network, a broken run and a run still training."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from test_app import all_text

from convlens.annotations import AnnotationStore
from convlens.deepeyes import firing, read_probe
from convlens.embedding import points_in_box
from convlens.training import list_snapshots, load_snapshot, read_metrics, snapshot_dir
from convlens.weights import weights_fingerprint

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "pages" / "deepeyes.py")
TIMEOUT = 120
LAYERS = ("features.conv1", "features.conv2", "classifier.fc1")
FULL = ROOT / "assets" / "runs" / "fashion_deepeyes"
SMALL = ROOT / "assets" / "runs" / "fashion_deepeyes_small"
STEPS = [100, 900, 1700, 2300, 2900, 3400, 3900, 4690, 5400, 5628]


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


def patch_images(at: AppTest) -> list:
    """Return the image patches shown under the maps (captioned "label · #row")."""
    return [
        image for element in at.get("image") for image in element.proto.imgs if "#" in image.caption
    ]


def input_map_rows(at: AppTest) -> list[dict]:
    (chart,) = charts_titled(at, "Input map:")
    return chart_rows(chart)


# --------------------------------------------------------------------------------------------
# The shipped runs


def test_default_run_shows_curves_a_heat_map_per_layer_maps_and_a_diagnosis():
    at = open_deepeyes()
    assert Path(at.selectbox(key="run_widget").value).name == "fashion_deepeyes"
    heat_maps = charts_titled(at, "perplexity over training")
    assert len(heat_maps) == len(LAYERS)
    for layer, chart in zip(LAYERS, heat_maps, strict=True):
        assert f"{layer}: perplexity over training" in chart.proto.spec
        rows = [row for row in chart_rows(chart) if "share" in row]
        assert {row["step"] for row in rows} == set(STEPS)
        assert sum(row["share"] for row in rows if row["step"] == 5628) == pytest.approx(1.0)
    curves = charts_titled(at, "training loss")
    assert len(curves) == 1
    assert any(row.get("step") == 5628 for row in chart_rows(curves[0]))
    assert len(charts_titled(at, "maximum activation")) == len(LAYERS)
    (stability,) = charts_titled(at, "Change between consecutive snapshots")
    changes = [row for row in chart_rows(stability) if "change" in row]
    assert len(changes) == len(LAYERS) * (len(STEPS) - 1)
    assert all(row["change"] > 0.05 for row in changes if row["step"] == 5628)
    # the maps of the first layer: 1,000 patches, 20 filters, every point labelled
    rows = input_map_rows(at)
    assert len(rows) == 1000 and {row["label"] for row in rows} <= set(read_classes())
    (filter_map,) = charts_titled(at, "Filter map: 20 filters")
    assert len([row for row in chart_rows(filter_map) if "specificity" in row]) == 20
    text = all_text(at)
    assert "Snapshot at step 5628" in text
    assert "t-SNE (openTSNE, perplexity 30, 1000 points), embedded at step 5628" in text
    assert "PCA (first two principal axes of 20 points)" in text
    diagnosis = diagnosis_text(at)
    for layer in LAYERS:
        noun = "units" if layer == "classifier.fc1" else "filters"
        assert f"{layer}: no dead, always-on or near-duplicate {noun} at step 5628" in diagnosis
        assert f"{layer}: still changing (last change" in diagnosis
    assert "Drag a box on the input map" in text


def read_classes() -> list[str]:
    return json.loads((FULL / "manifest.json").read_text())["classes"]


def test_moving_the_slider_changes_the_stated_step_and_the_url():
    at = open_deepeyes()
    at.select_slider(key="deepeyes_step").set_value(900)
    rerun(at)
    text = all_text(at)
    assert "Snapshot at step 900" in text
    assert "features.conv1: no dead or always-on filters at step 900" in text
    assert "Snapshot at step 5628" not in text
    assert at.query_params["de_step"] == "900"


def test_thresholds_change_the_stability_and_the_flagged_filters():
    at = open_deepeyes()
    at.number_input(key="deepeyes_threshold").set_value(2.0)
    rerun(at)
    text = all_text(at)
    assert "features.conv1: stable from step 100" in text
    assert "- features.conv1: stable from step 100." in diagnosis_text(at)
    at.number_input(key="deepeyes_always_on").set_value(0.0)
    rerun(at)
    assert "features.conv1 at step 5628: 20 of 20 always on" in all_text(at)
    assert "features.conv1: 20 of 20 filters always on at step 5628" in diagnosis_text(at)


def test_a_bookmarked_run_opens_with_its_dead_units():
    at = open_deepeyes({"run": str(SMALL)})
    assert Path(at.selectbox(key="run_widget").value).name == "fashion_deepeyes_small"
    text = all_text(at)
    assert (
        "classifier.fc1: 3 of 100 units dead at step 5628 (44, 54, 70); the layer may be oversized"
        in diagnosis_text(at)
    )
    assert "classifier.fc1 at step 5628: 3 of 100 dead (44, 54, 70)" in text


def test_a_bookmark_restores_the_step_the_layer_and_the_filter():
    at = open_deepeyes({"de_step": "900", "de_layer": "classifier.fc1", "de_filter": "3"})
    text = all_text(at)
    assert "Snapshot at step 900" in text
    assert "classifier.fc1: input map and filter map at step 900" in text
    assert "**Filter 3** fires on" in text
    assert at.selectbox(key="deepeyes_layer_widget").value == "classifier.fc1"
    # a broken bookmark falls back to the defaults
    at = open_deepeyes({"de_step": "soon", "de_layer": "features.conv9", "de_filter": "999"})
    assert "Snapshot at step 5628" in all_text(at)
    assert at.selectbox(key="deepeyes_layer_widget").value == "features.conv1"
    assert at.selectbox(key="deepeyes_filter_widget").value == -1


# --------------------------------------------------------------------------------------------
# Coordinated views


def test_a_selected_filter_lights_up_its_patches_its_cells_and_its_point():
    at = open_deepeyes()
    at.selectbox(key="deepeyes_filter_widget").set_value(7)
    rerun(at)
    fires = firing(read_probe(FULL, 5628)["features.conv1"], 7)
    rows = input_map_rows(at)
    assert [row["fires"] for row in rows] == fires.tolist()
    assert f"**Filter 7** fires on **{int(fires.sum())} of 1000** patches" in all_text(at)
    # its cell is ringed in conv1's two heatmaps and nowhere else
    for layer in LAYERS:
        for chart in charts_titled(at, f"{layer}: ") + []:
            if "activation" not in chart.proto.spec or "perplexity" in chart.proto.spec:
                continue
            ringed = [row for row in chart_rows(chart) if set(row) == {"filter", "column", "row"}]
            assert ringed == ([{"filter": 7, "column": 7, "row": 0}] if layer == LAYERS[0] else [])
    (filter_map,) = charts_titled(at, "Filter map")
    assert '"stroke": "#D55E00"' in filter_map.proto.spec
    # the patches it responds to most, strongest first
    activations = read_probe(FULL, 5628)["features.conv1"][:, 7]
    images = patch_images(at)
    assert len(images) == 40
    assert images[0].caption.endswith(f"#{int(np.argmax(activations))}")
    assert at.query_params["de_filter"] == "7"
    # another layer forgets the filter
    at.selectbox(key="deepeyes_layer_widget").set_value("classifier.fc1")
    rerun(at)
    assert "de_filter" not in at.query_params
    assert "classifier.fc1: input map and filter map at step 5628" in all_text(at)
    assert len(input_map_rows(at)) == 200


def test_a_box_dragged_on_the_input_map_shows_its_patches():
    at = open_deepeyes()
    rows = input_map_rows(at)
    xs, ys = np.array([r["x"] for r in rows]), np.array([r["y"] for r in rows])
    box = {"x": [float(np.quantile(xs, 0.3)), float(np.quantile(xs, 0.6))]}
    box["y"] = [float(np.quantile(ys, 0.3)), float(np.quantile(ys, 0.6))]
    expected = points_in_box(np.column_stack([xs, ys]), box["x"], box["y"])
    assert len(expected) > 0
    at.session_state["deepeyes_input_map_features.conv1_5628"] = {"selection": {"patch_brush": box}}
    rerun(at)
    assert f"**{len(expected)} patches in the box**" in all_text(at)
    images = patch_images(at)
    assert [image.caption.split("#")[1] for image in images] == [str(i) for i in expected[:40]]


def test_a_later_snapshot_is_placed_in_the_map_of_the_first_one():
    query = {"de_layer": "classifier.fc1"}
    first = np.array([[r["x"], r["y"]] for r in input_map_rows(open_deepeyes(query))])
    at = open_deepeyes(query)
    at.select_slider(key="deepeyes_step").set_value(4690)
    rerun(at)
    text = all_text(at)
    assert "embedded at step 5628; the patches at step 4690 are placed into that map" in text
    later = np.array([[r["x"], r["y"]] for r in input_map_rows(at)])
    moved = np.linalg.norm(later - first, axis=1)
    assert np.median(moved) < 0.05 * np.ptp(first, axis=0).max()
    at.button(key="deepeyes_reembed").click()
    rerun(at)
    assert "embedded at step 4690; other snapshots are placed into this map" in all_text(at)


# --------------------------------------------------------------------------------------------
# The diagnosis panel and the smaller network


def test_marking_dead_units_useless_stores_them_for_the_shipped_model():
    at = open_deepeyes({"run": str(SMALL)})
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
    button = at.button(key="deepeyes_mark_classifier.fc1_dead")
    assert button.label == "Marked useless" and button.disabled
    # a snapshot without weights cannot be marked: marks belong to weights
    at.number_input(key="deepeyes_always_on").set_value(0.3)
    at.select_slider(key="deepeyes_step").set_value(900)
    rerun(at)
    buttons = [b for b in at.button if b.key and b.key.startswith("deepeyes_mark_")]
    assert buttons and all(b.disabled for b in buttons)
    assert "this snapshot kept no weights (the run has them at step 5628)" in all_text(at)


def test_the_diagnosis_suggests_a_smaller_network_with_its_command():
    at = open_deepeyes()
    assert "**A smaller network to try:** classifier.fc1 at 124 units (not 500)." in all_text(at)
    (command,) = at.code
    assert command.value.startswith("python -m convlens train --arch deepeyes --fc1 124 ")
    assert "--out " in command.value and "fashion_deepeyes-smaller" in command.value
    suggestion = at.dataframe[0].value
    assert suggestion["suggested"].tolist() == [20, 50, 124]


def test_training_the_suggestion_starts_a_run_and_follows_it(monkeypatch: pytest.MonkeyPatch):
    import convlens.runs

    started = []

    def start_run(arch: str, epochs: int, options: dict) -> Path:
        started.append((arch, epochs, dict(options)))
        folder = Path(os.environ["CONVLENS_HOME"]) / "runs" / "deepeyes-smaller"
        folder.mkdir(parents=True)
        (folder / "pid").write_text(str(os.getpid()))  # the training process, just started
        return folder

    monkeypatch.setattr(convlens.runs, "start_run", start_run)
    at = open_deepeyes()
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
    assert any(caption.value.startswith("starting") for caption in at.caption)


def test_the_smaller_shipped_network_is_smaller_faster_and_within_a_point():
    at = open_deepeyes()
    table = at.dataframe[-1].value
    assert table["run"].tolist() == ["fashion_deepeyes", "fashion_deepeyes_small"]
    assert table["conv1"].tolist() == [20, 10] and table["fc1"].tolist() == [500, 100]
    assert table["parameters"].tolist() == ["431,080", "93,920"]
    assert table["training (s, from the card)"].tolist() == [203, 63]
    assert (table["forward (ms per image, measured here)"] > 0).all()
    sentence = next(m.value for m in at.markdown if "fewer parameters" in m.value)
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
    assert not charts_titled(at, "perplexity")
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
    assert any(caption.value.startswith("running") for caption in at.caption)
    assert "**Snapshot at step 2900** · the run is still training" in all_text(at)
    assert len(charts_titled(at, "perplexity over training")) == len(LAYERS)
    land_snapshot(live, 3400)
    rerun(at)  # what the page's timer does every couple of seconds
    assert "Snapshot at step 3400" in all_text(at)
    (heat_map,) = charts_titled(at, "features.conv1: perplexity over training")
    assert {row["step"] for row in chart_rows(heat_map) if "share" in row} == set(STEPS[:6])
    assert at.select_slider(key="deepeyes_step").options == [str(s) for s in STEPS[:6]]
    # looking at an earlier snapshot, the view stays there when the next one lands
    at.select_slider(key="deepeyes_step").set_value(900)
    rerun(at)
    land_snapshot(live, 3900)
    rerun(at)
    assert "Snapshot at step 900" in all_text(at)
    assert "3900" in at.select_slider(key="deepeyes_step").options
    # the training process ends: the page says so
    (live / "pid").unlink()
    rerun(at)
    assert any(caption.value.startswith("incomplete") for caption in at.caption)
    assert "still training" not in all_text(at)


def test_a_run_just_started_waits_for_its_first_snapshot():
    runs = Path(os.environ["CONVLENS_HOME"]) / "runs"
    (runs / "starting").mkdir(parents=True)
    (runs / "starting" / "pid").write_text(str(os.getpid()))
    at = open_deepeyes({"run": str(runs / "starting")})
    assert any(caption.value.startswith("starting") for caption in at.caption)
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
