"""AppTest of the Filters and Annotations pages: the grid, a selected filter, annotating, ablation."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from test_app import all_text, start

from convlens.access import NOT_PUBLISHED
from convlens.annotations import MAX_FIELD_CHARS, AnnotationStore
from convlens.attribution import LayerMaps, activation_maps
from convlens.charts import FILTER_SELECTION
from convlens.cli import main
from convlens.data import load_image
from convlens.explain import convolution_step
from convlens.graph import build_graph
from convlens.models import load_model
from convlens.predict import input_batch
from convlens.style import FILTERS_PER_PAGE
from convlens.ui.filters import sort_filters
from convlens.ui.owner import AUTHOR_CHARS
from convlens.weights import weights_fingerprint

FASHION = {"model": "fashion_basecnn", "image": "fashion-mnist:test:0"}


def open_filters(query: dict[str, str] | None = None):
    at = start(query)
    at.switch_page("pages/filters.py").run()
    assert not at.exception, at.exception
    return at


# What the grid's chart shows, by the prefix of its key.
GRID_SHOWS = {"act": "activation maps", "gbp": "guided back-propagation images"}


def grid_chart(at):
    charts = [c for c in at.get("vega_lite_chart") if f'"{FILTER_SELECTION}"' in c.proto.spec]
    assert len(charts) == 1, "one chart holds the page's tiles"
    return charts[0]


def grid_tiles(at, prefix: str) -> list[dict]:
    """Return the grid's tiles (filter, label, url), in the order shown, checking that the grid
    shows what `prefix` names."""
    chart = grid_chart(at)
    assert json.loads(chart.proto.spec)["description"].startswith(GRID_SHOWS[prefix])
    return max((chart_table(dataset) for dataset in chart.proto.datasets), key=len)


def chart_table(dataset) -> list[dict]:
    import pyarrow as pa

    return pa.ipc.open_stream(dataset.data.data).read_all().to_pylist()


def grid_buttons(at, prefix: str) -> list[int]:
    return [tile["filter"] for tile in grid_tiles(at, prefix)]


def tile_label(at, prefix: str, channel: int) -> str:
    (label,) = [t["label"] for t in grid_tiles(at, prefix) if t["filter"] == channel]
    return label


def click_tile(at, channel: int):
    """Run the page as the browser does after a click on filter `channel`'s tile."""
    return send_grid_state(at, {"selection": {FILTER_SELECTION: [{"filter": channel}]}})


def send_grid_state(at, selection: object):
    """Run the page as if the browser sent `selection` as the grid chart's state."""
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    states = at._tree.get_widget_states()
    states.widgets.append(
        WidgetState(id=grid_chart(at).proto.id, string_value=json.dumps(selection))
    )
    at._run(states)
    assert not at.exception, at.exception
    return at


def test_default_model_shows_every_filter_of_its_first_layer_and_a_click_selects_one():
    at = open_filters()
    assert grid_buttons(at, "act") == list(range(32))  # EfficientNet-Lite0's stem: 32 filters
    assert all(t["url"].startswith("data:image/png;base64,") for t in grid_tiles(at, "act"))
    click_tile(at, 5)
    assert not at.exception
    for sent in ("x", None, -1, "²", "9" * 5000, 99):  # what no tile sends: ignored, no traceback
        click_tile(at, sent)
        assert at.session_state["filter"] == "5"
    assert at.session_state["filter"] == "5"
    assert "_conv_stem · filter 5" in all_text(at)
    assert any("guided back-propagation" in c.value for c in at.caption)


def test_a_click_on_a_tile_keeps_the_grid_as_drawn_and_a_pick_elsewhere_starts_a_fresh_one():
    at = open_filters()
    before = grid_chart(at)
    assert "value" not in json.loads(before.proto.spec)["params"][0], "nothing selected yet"
    for channel in (5, 9):
        click_tile(at, channel)  # the browser outlines the tile: the grid is not sent again
        assert at.session_state["filter"] == str(channel)
        assert grid_chart(at).proto.id == before.proto.id
        assert grid_chart(at).proto.spec == before.proto.spec
    at.session_state["filter"] = "12"  # as a link, Back or a map in Network would
    at.run()
    fresh = json.loads(grid_chart(at).proto.spec)
    assert grid_chart(at).proto.id != before.proto.id
    assert fresh["params"][0]["value"] == [{"filter": 12}], "the fresh grid outlines filter 12"


def test_a_crafted_grid_state_changes_nothing():
    at = open_filters()
    click_tile(at, 5)
    for points in (["x"], [[]], [{}], {}, "x", [None], [{"filter": {"a": 1}}]):
        send_grid_state(at, {"selection": {FILTER_SELECTION: points}})
        assert at.session_state["filter"] == "5"


def test_fashion_model_grid_sorts_and_switches_to_guided_backprop():
    at = open_filters({**FASHION, "layer": "features.conv2_1"})
    assert sorted(grid_buttons(at, "act")) == list(range(FILTERS_PER_PAGE))
    at.selectbox(key="filters_order").set_value("weight norm (importance)").run()
    module = load_model("fashion_basecnn").module
    norms = module.features.conv2_1.weight.detach().flatten(1).norm(dim=1).numpy()
    strongest = np.argsort(-norms, kind="stable")[:FILTERS_PER_PAGE]
    assert grid_buttons(at, "act") == [int(k) for k in strongest]
    at.segmented_control(key="filters_show").set_value("guided back-propagation").run()
    assert not at.exception
    assert grid_buttons(at, "gbp") == [int(k) for k in strongest]


def test_a_bookmark_brings_back_what_is_shown_its_order_and_page():
    """A lecture's link to the second page of conv3_1's guided back-propagation images, sorted
    by importance; a page or order that no longer exists falls back to the first."""
    at = open_filters(
        {
            **FASHION,
            "layer": "features.conv3_1",
            "show": "guided back-propagation",
            "sort": "weight norm (importance)",
            "page": "2",
        }
    )
    assert at.segmented_control(key="filters_show").value == "guided back-propagation"
    assert at.selectbox(key="filters_order").value == "weight norm (importance)"
    assert at.number_input(key="filter_page").value == 2
    module = load_model("fashion_basecnn").module
    norms = module.features.conv3_1.weight.detach().flatten(1).norm(dim=1).numpy()
    assert grid_buttons(at, "gbp") == [
        int(k) for k in np.argsort(-norms, kind="stable")[FILTERS_PER_PAGE : 2 * FILTERS_PER_PAGE]
    ]
    at.selectbox(key="filters_order").set_value("mean activation on this image").run()
    assert at.number_input(key="filter_page").value == 1, "a new order starts on its first page"
    at.number_input(key="filter_page").set_value(2).run()
    at.number_input(key="filter_page").set_value(1).run()
    assert at.session_state["page"] == 1
    at = open_filters({**FASHION, "layer": "features.conv3_1", "sort": "colour", "page": "9"})
    assert not at.exception
    assert at.selectbox(key="filters_order").value == "filter number"
    assert at.number_input(key="filter_page").value == 1


def test_a_layer_from_the_network_page_opens_here_and_a_linear_layer_shows_bars():
    at = open_filters({**FASHION, "layer": "features.relu1_1"})  # a layer inside a chain node
    assert at.selectbox(key="layer_widget").value == "features.conv1_1"
    at = open_filters({**FASHION, "layer": "classifier.fc2", "filter": "3"})
    assert not at.exception
    assert at.get("vega_lite_chart"), "a fully connected layer shows its units as bars"
    assert "classifier.fc2 · unit 3" in all_text(at)


def test_an_unknown_layer_in_the_url_is_reported_and_the_first_shown():
    at = open_filters({**FASHION, "layer": "features.bogus"})
    assert "has no conv or linear layer 'features.bogus'" in all_text(at)
    assert at.selectbox(key="layer_widget").value == "features.conv1_1"


def test_an_unknown_filter_in_the_url_is_reported_not_fatal():
    at = open_filters({**FASHION, "layer": "features.conv1_1", "filter": "999"})
    assert "has no filter 999" in all_text(at)


def test_the_name_and_note_boxes_stop_at_what_the_store_takes():
    """A browser cannot type more than the store keeps (a longer field is refused by the store,
    and the page would say so in a toast); a name, which the browser's cookie keeps too, stops
    at AUTHOR_CHARS."""
    at = open_filters({**FASHION, "layer": "features.conv2_1", "filter": "7"})
    author = at.text_input(key="annotation_author")
    note = at.text_input(key="annotation_note_features.conv2_1_7")
    assert note.proto.max_chars == MAX_FIELD_CHARS
    assert author.proto.max_chars == AUTHOR_CHARS < MAX_FIELD_CHARS
    author.set_value("ana").run()
    at.segmented_control(key="annotation_label_features.conv2_1_7").set_value("useless")
    at.text_input(key="annotation_note_features.conv2_1_7").set_value("x" * (MAX_FIELD_CHARS + 9))
    at.form_submit_button[0].click().run()
    assert not at.exception
    (stored,) = AnnotationStore().list_annotations(model="fashion_basecnn")
    assert len(stored.note) == MAX_FIELD_CHARS


def test_annotating_in_the_app_reaches_the_store_and_the_cli(capsys):
    at = open_filters({**FASHION, "layer": "features.conv2_1", "filter": "7"})
    at.text_input(key="annotation_author").set_value("ana").run()
    at.segmented_control(key="annotation_label_features.conv2_1_7").set_value("useless")
    at.text_input(key="annotation_note_features.conv2_1_7").set_value("blank")
    at.form_submit_button[0].click().run()
    assert not at.exception
    assert "Latest: **useless** by ana" in all_text(at), "the page shows what was just saved"
    assert tile_label(at, "act", 7) == "7 ✗", "the grid marks it"
    assert tile_label(at, "act", 6) == "6"
    assert "✓ useful · ✗ useless · ? unsure" in all_text(at)
    fingerprint = weights_fingerprint(load_model("fashion_basecnn").module)
    rows = AnnotationStore().list_annotations(model="fashion_basecnn")
    assert [
        (r.layer, r.filter, r.label, r.note, r.author, r.weights_fingerprint) for r in rows
    ] == [("features.conv2_1", 7, "useless", "blank", "ana", fingerprint)]
    assert main(["annotations", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["layer"], r["filter"], r["label"]) for r in listed] == [
        ("features.conv2_1", 7, "useless")
    ]

    at.selectbox(key="filters_order").set_value("annotation").run()
    assert grid_buttons(at, "act")[0] == 7, "annotated filters sort first"

    # the name outlives a layer change, when no filter is selected and its field is not drawn
    at.selectbox(key="layer_widget").set_value("features.conv1_1").run()
    assert "filter" not in at.session_state  # the layer change forgot the filter
    at.session_state["filter"] = "2"
    at.run()
    assert at.text_input(key="annotation_author").value == "ana"


def test_the_name_starts_empty_and_a_mark_asks_for_it_once(monkeypatch):
    """The author field defaulted to the server's login name ("root"): every student's mark
    was the server's."""
    monkeypatch.setattr("getpass.getuser", lambda: "root")
    at = open_filters({**FASHION, "layer": "features.conv2_1", "filter": "7"})
    assert at.text_input(key="annotation_author").value == ""
    assert "Type your name to mark this filter" in all_text(at)
    at.segmented_control(key="annotation_label_features.conv2_1_7").set_value("useful")
    at.form_submit_button[0].click().run()
    assert not at.exception
    assert [t.value for t in at.toast] == ["Type your name first: annotations are kept per author."]
    assert AnnotationStore().list_annotations() == [], "nothing is stored without a name"

    at.text_input(key="annotation_author").set_value("  ana ")
    at.segmented_control(key="annotation_label_features.conv2_1_7").set_value("useful")
    at.form_submit_button[0].click().run()
    assert [r.author for r in AnnotationStore().list_annotations()] == ["ana"]
    # the next filter does not ask again
    click_tile(at, 8)
    assert at.text_input(key="annotation_author").value == "  ana "
    assert "Type your name" not in all_text(at)
    at.segmented_control(key="annotation_label_features.conv2_1_8").set_value("unsure")
    at.form_submit_button[0].click().run()
    assert {(r.filter, r.author) for r in AnnotationStore().list_annotations()} == {
        (7, "ana"),
        (8, "ana"),
    }


@pytest.fixture
def two_annotations() -> str:
    fingerprint = weights_fingerprint(load_model("fashion_basecnn").module)
    store = AnnotationStore()
    store.set_annotation(
        "fashion_basecnn", fingerprint, "features.conv4_3", 2, "useless", "", "ana"
    )
    store.set_annotation("fashion_basecnn", fingerprint, "features.conv4_3", 3, "useful", "", "bo")
    return fingerprint


def test_annotations_page_lists_counts_exports_and_refuses_a_bad_import(two_annotations):
    at = start(FASHION)
    at.switch_page("pages/annotations.py").run()
    assert not at.exception
    rows_of = at.selectbox(key="annotations_model")
    assert rows_of.value == "fashion_basecnn", "the sidebar's"
    assert rows_of.label == "Rows of model", "not a second box named Model beside the sidebar's"
    assert {m.label: m.value for m in at.metric} == {"useful": "1", "useless": "1", "unsure": "0"}
    assert len(at.dataframe[0].value) == 2
    assert "has **1** filter marked useless" in all_text(at)
    before = AnnotationStore().export_annotations("json")
    at.file_uploader(key="annotations_import").set_value(
        ("bad.csv", b"model,layer\nfashion_basecnn,features.conv1_1\n", "text/csv")
    ).run()
    at.button(key="import_button").click().run()
    assert "Nothing was imported" in all_text(at)
    assert AnnotationStore().export_annotations("json") == before
    # an image renamed .csv: said in one line, not as a CSV header without its columns
    picture = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(picture, format="PNG")
    at.file_uploader(key="annotations_import").set_value(
        ("picture.csv", picture.getvalue(), "text/csv")
    ).run()
    at.button(key="import_button").click().run()
    assert [e.value for e in at.error] == [
        "Nothing was imported: picture.csv is not a CSV or JSON export of annotations: "
        "it is an image (PNG)"
    ]
    assert AnnotationStore().export_annotations("json") == before

    # a good import shows in the table and the counts of the same run
    rows = json.loads(before)
    rows.append({**rows[0], "filter": 9, "label": "unsure", "note": "imported"})
    at.file_uploader(key="annotations_import").set_value(
        ("good.json", json.dumps(rows).encode(), "application/json")
    ).run()
    at.button(key="import_button").click().run()
    assert "Imported 3 of 3 rows" in [s.value for s in at.success][0]
    assert {m.label: m.value for m in at.metric} == {"useful": "1", "useless": "1", "unsure": "1"}
    assert len(at.dataframe[0].value) == 3


def open_annotations(query: dict[str, str] | None = None):
    at = start(query or FASHION)
    at.switch_page("pages/annotations.py").run()
    assert not at.exception, at.exception
    return at


def test_annotations_page_pages_in_sql_and_exports_only_when_asked(monkeypatch):
    """200,000 rows took ~23 s a load: every row was read, and both exports written, each run."""
    rows = [
        {
            "model": model,
            "weights_fingerprint": "0123456789abcdef",
            "layer": layer,
            "filter": k,
            "label": ("useful", "useless", "unsure")[k % 3],
            "author": "ana",
            "updated_at": "2024-01-02T03:04:05+00:00",
        }
        for model in ("fashion_basecnn", "other")
        for layer in ("features.conv1_1", "features.conv2_1")
        for k in range(120)
    ]
    assert AnnotationStore().import_annotations(json.dumps(rows)).applied == 480

    def everything(*args, **kwargs):
        raise AssertionError("the page read every row")

    monkeypatch.setattr(AnnotationStore, "export_annotations", everything)
    monkeypatch.setattr(AnnotationStore, "list_annotations", everything)
    at = open_annotations()
    assert at.selectbox(key="annotations_model").value == "fashion_basecnn"
    assert {m.label: m.value for m in at.metric} == {
        "useful": "80",
        "useless": "80",
        "unsure": "80",
    }
    assert len(at.dataframe[0].value) == 200
    assert "Rows 1 to 200 of 240" in all_text(at)
    at.number_input(key="annotations_page").set_value(2).run()
    assert len(at.dataframe[0].value) == 40
    assert list(at.dataframe[0].value["filter"])[:2] == [80, 81]  # conv2_1's filters 80, 81

    at.selectbox(key="annotations_layer").set_value("features.conv2_1").run()
    assert "annotations_page" not in [n.key for n in at.number_input], "one page of 120 rows"
    assert len(at.dataframe[0].value) == 120
    at.text_input(key="annotations_filter").set_value("7").run()
    assert list(at.dataframe[0].value["filter"]) == [7]
    assert {m.label: m.value for m in at.metric} == {"useful": "0", "useless": "1", "unsure": "0"}
    at.selectbox(key="annotations_model").set_value("all models").run()
    assert list(at.dataframe[0].value["model"]) == ["fashion_basecnn", "other"]


@pytest.mark.parametrize("value", ["99999999999999999999999", "-1", "x" * 3000, "７"])
def test_the_annotations_filter_box_takes_any_value(value, two_annotations):
    """A filter of 99999999999999999999999 raised OverflowError (issue 15)."""
    at = open_annotations()
    at.text_input(key="annotations_filter").set_value(value).run()
    assert not at.exception, at.exception
    if value.isascii() and value.isdigit():
        assert "No annotation of filter 99999999999999999999999 here." in [i.value for i in at.info]
    else:
        assert any("The filter is a whole number" in w.value for w in at.warning)
        assert len(at.dataframe[0].value) == 2, "every filter"


def test_the_ablation_check_runs_from_the_annotations_page(two_annotations):
    at = start(FASHION)
    at.switch_page("pages/annotations.py").run()
    at.number_input(key="ablation_limit").set_value(200).run()
    at.button(key="ablate").click().run()
    assert not at.exception
    labels = [m.label for m in at.metric]
    assert "Accuracy now" in labels and "Without the 1 useless filter" in labels
    assert "On 200 images of fashion-mnist:test." in all_text(at)
    at.selectbox(key="annotations_layer").set_value("features.conv4_3").run()
    assert "On 200 images of fashion-mnist:test." in all_text(at), "another click keeps it"
    at.number_input(key="ablation_limit").set_value(100).run()
    assert "images of fashion-mnist:test." not in all_text(at), "a result of other images goes"


@pytest.mark.parametrize("data", ["/", "/etc"])
def test_the_ablation_check_reads_no_labelled_images_outside_the_data_roots(
    two_annotations, data, monkeypatch
):
    """The labelled images set to / listed "'bin', 'boot', 'dev', 'etc', … of /" (issue 15)."""
    no_folder_walk(monkeypatch)
    at = start(FASHION)
    at.switch_page("pages/annotations.py").run()
    at.text_input(key="ablation_data").set_value(data).run()
    at.button(key="ablate").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [NOT_PUBLISHED]
    assert "Accuracy now" not in [m.label for m in at.metric]
    # the page's own text: the sidebar names the default image's label ("Ankle boot")
    page_text = all_text(at.main)
    assert "bin" not in page_text and "boot" not in page_text


def test_the_ablation_check_reads_a_published_folder(two_annotations, tmp_path, monkeypatch):
    folder = small_fashion_folder(tmp_path / "fashion")
    monkeypatch.setenv("CONVLENS_DATA_ROOTS", str(tmp_path))
    at = start(FASHION)
    at.switch_page("pages/annotations.py").run()
    at.text_input(key="ablation_data").set_value(folder).run()
    at.button(key="ablate").click().run()
    assert not at.exception, at.exception
    assert f"On 20 images of {folder}." in all_text(at)


def small_fashion_folder(root) -> str:
    """An ImageFolder of 20 Fashion-MNIST test images, two per class, named like the classes."""
    from PIL import Image

    from convlens.data import FASHION_MNIST_CLASSES, fashion_mnist

    data = fashion_mnist("test")
    for label, name in enumerate(FASHION_MNIST_CLASSES):
        folder = root / name.replace("/", "_")
        folder.mkdir(parents=True)
        for count, index in enumerate(np.flatnonzero(data.labels == label)[:2]):
            Image.fromarray(data.images[index]).save(folder / f"{count}.png")
    return str(root)


def test_a_filter_s_top_patches_and_class_means_over_a_dataset(tmp_path, monkeypatch):
    folder = small_fashion_folder(tmp_path / "fashion")
    monkeypatch.setenv("CONVLENS_DATA_ROOTS", str(tmp_path))  # published by the server
    at = open_filters({**FASHION, "layer": "features.conv3_1", "filter": "4"})
    at.text_input(key="filters_data").set_value(folder).run()
    assert not at.exception
    at.button(key="filters_analyze").click().run()
    assert not at.exception
    assert "Top 9 image patches" in all_text(at) and "over 20 images" in all_text(at)
    patches = [i for i in at.image if len(i.proto.imgs) == 9]
    assert len(patches) == 1, "one row of nine patches"
    assert all("·" in img.caption for img in patches[0].proto.imgs)  # "class · activation"
    charts = [c for c in at.get("vega_lite_chart") if "per class" in json.dumps(c.proto.spec)]
    assert charts, "the per-class mean activation is drawn"
    assert "patches reach" not in all_text(at), "distinct values: no word about ties"

    # a second session finds the analysis on disk: no button, the patches at once
    again = open_filters({**FASHION, "layer": "features.conv3_1", "filter": "4"})
    again.text_input(key="filters_data").set_value(folder).run()
    assert not [b for b in again.button if b.key == "filters_analyze"]
    assert "Top 9 image patches" in all_text(again)


def test_top_patches_that_all_reach_a_ceiling_say_so():
    """EfficientNet's ReLU6 caps activations at 6: on the sample photos all nine top patches of
    its stem's filter 0 are 6.00, and their order is only the data's."""
    at = open_filters({"layer": "_conv_stem", "filter": "0"})
    assert at.text_input(key="filters_data").value == "samples"
    at.button(key="filters_analyze").click().run(timeout=120)
    assert not at.exception
    assert "All 9 patches reach 6.00" in all_text(at)


def no_folder_walk(monkeypatch) -> None:
    """Make any walk of a folder fail the test: a refused path must not be read at all."""
    import convlens.data

    def walk(*args, **kwargs):
        raise AssertionError("a folder was walked")

    # module-internal names, looked up at each call (image_folder is imported by name elsewhere)
    monkeypatch.setattr(convlens.data, "_class_dirs", walk)
    monkeypatch.setattr(convlens.data, "_scan_folder", walk)


@pytest.mark.parametrize("data", ["/", "/etc", "/no/such/folder", "../../.."])
def test_images_to_search_outside_the_data_roots_are_one_sentence(data, monkeypatch):
    """A browser typing / in *Images to search* walked the whole disk on every rerun (issue 15)."""
    no_folder_walk(monkeypatch)
    at = open_filters({**FASHION, "layer": "features.conv3_1", "filter": "4"})
    at.text_input(key="filters_data").set_value(data).run()
    assert not at.exception
    assert [e.value for e in at.error] == [NOT_PUBLISHED]
    assert not [b for b in at.button if b.key == "filters_analyze"], "nothing to analyse"
    assert "bin" not in all_text(at) and "etc" not in all_text(at).replace(NOT_PUBLISHED, "")


def test_a_bad_dataset_name_is_one_sentence_on_the_page():
    at = open_filters({**FASHION, "layer": "features.conv3_1", "filter": "4"})
    at.text_input(key="filters_data").set_value("fashion-mnist:nope").run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "'fashion-mnist:nope' is not a Fashion-MNIST split; use fashion-mnist:test or "
        "fashion-mnist:train."
    ]


def test_home_shows_the_first_start_preparation_while_it_runs(monkeypatch):
    from convlens.ui.launch import PREPARATION

    monkeypatch.setattr(PREPARATION, "running", True)
    monkeypatch.setattr(PREPARATION, "done", 25_000)
    monkeypatch.setattr(PREPARATION, "total", 70_000)
    at = start()
    assert not at.exception
    assert any("36%" in str(p.proto.text) for p in at.get("progress"))
    monkeypatch.setattr(PREPARATION, "running", False)
    monkeypatch.setattr(PREPARATION, "error", "OSError: disk full")
    at = start()
    assert any("disk full" in w.value for w in at.warning)


def test_the_launcher_prepares_the_shipped_models_unless_told_not_to(monkeypatch):
    from convlens import activations
    from convlens.ui import launch

    calls = []

    def fake(progress=None):
        calls.append(progress)
        progress(3, 4)
        raise OSError("disk full")

    monkeypatch.setattr(activations, "prepare_shipped", fake)
    monkeypatch.setattr(launch, "PREPARATION", launch.Preparation())
    launch.prepare_shipped_models()  # CONVLENS_PREPARE=0 in tests
    assert calls == []
    monkeypatch.setenv("CONVLENS_PREPARE", "1")
    launch.prepare_shipped_models()
    assert len(calls) == 1
    state = launch.PREPARATION
    assert (state.done, state.total, state.running) == (3, 4, False)
    assert state.error == "OSError: disk full"


def test_the_preparation_counts_as_running_from_the_launch(monkeypatch):
    """The Home page decides on its first visit whether to follow the preparation: it is under
    way from the launch, during the warm-up and the wait before the analyses. What lives after
    the warm-up, and after the preparation, is left out of later full collections."""
    from convlens.ui import launch

    seen = []
    monkeypatch.setattr(launch, "PREPARATION", launch.Preparation())
    monkeypatch.setattr(launch, "warm_up", lambda: seen.append(launch.PREPARATION.running))
    monkeypatch.setattr(launch, "PREPARE_AFTER_SECONDS", 0)
    monkeypatch.setenv("CONVLENS_PREPARE", "1")
    monkeypatch.setattr(launch, "prepare_shipped_models", lambda: seen.append("prepared"))
    monkeypatch.setattr(launch, "keep_out_of_collections", lambda: seen.append("kept"))
    launch.start_up()
    assert seen == [True, "kept", "prepared", "kept"] and launch.PREPARATION.running is False
    monkeypatch.setenv("CONVLENS_PREPARE", "0")
    seen.clear()
    launch.start_up()
    assert seen == [False, "kept", "prepared", "kept"]


def test_sorting_by_annotation_puts_annotated_filters_first_in_label_order():
    maps = LayerMaps("conv", np.zeros((6, 2, 2), dtype=np.float32))
    labels = {5: "useless", 1: "unsure", 4: "useful", 3: "useless"}
    ordered = sort_filters("annotation", maps, np.zeros(6), labels)
    assert ordered == [4, 3, 5, 1, 0, 2]  # useful, useless (by number), unsure, then the rest
    assert sort_filters("annotation", maps, np.zeros(6), {}) == list(range(6))


# --- one convolution explained -------------------------------------------------------------------


def test_a_position_in_the_link_opens_its_convolution_ending_in_the_map_value():
    at = open_filters({**FASHION, "layer": "features.conv2_1", "filter": "7", "at": "0,13"})
    assert not at.warning
    model = load_model("fashion_basecnn")
    image = load_image("fashion-mnist:test:0").image
    step = convolution_step(model, image, "features.conv2_1", 7, 0, 13)
    node = build_graph(model.module, model.input_size).node("features.conv2_1")
    value = activation_maps(model.module, input_batch(model, image), node).maps[7, 0, 13]
    metrics = [m.value for m in at.metric]
    assert metrics == [
        f"{step.channel_sums.sum():.4f}",
        f"{step.bias:.4f}",
        f"{step.pre_activation:.4f}",
        f"{value:.4f}",  # ReLU: the last step
    ]
    assert f"map shows **{value:.4f}** at (y 0, x 13)" in all_text(at)
    picker = [c for c in at.get("vega_lite_chart") if '"position"' in c.proto.spec]
    assert len(picker) == 1, "the magnified map is the chart that picks a position"
    click_tile(at, 8)  # another filter: its explanation starts closed
    assert "at" not in at.session_state and not at.metric


@pytest.mark.parametrize(
    "query",
    [
        {"filter": "7", "at": "14,0"},  # outside the 14×14 map
        {"filter": "7", "at": "-1,3"},
        {"filter": "7", "at": "3"},
        {"filter": "7", "at": "a,b"},
        {"filter": "7", "at": "99999999999999999999,1"},
        {"at": "1,1"},  # no filter selected
    ],
)
def test_a_bad_position_in_the_link_is_one_warning_and_reset(query):
    at = open_filters({**FASHION, "layer": "features.conv2_1", **query})
    assert [w.value for w in at.warning] == [
        "The link's at= was not understood; it is back to its default."
    ]
    assert "at" not in at.session_state and not at.metric
