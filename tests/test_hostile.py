"""A lecture room's hostile browser (issue: a room served safely), replayed with AppTest: every
probe is refused in one sentence that names no server path, and nothing breaks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from convlens.access import NOT_A_RUN_NAME, NOT_PUBLISHED
from convlens.ui.state import NO_FILTER, PAGE_URL_KEYS

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120


def start(page: str, query: dict[str, str]) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    for key, value in query.items():
        at.query_params[key] = value
    at.switch_page(page).run()  # the page the link opens, as a browser opens it
    return at


def page_text(at: AppTest) -> str:
    """Everything a browser can read on the page, widgets' labels and values included."""
    parts = []
    for kind in (
        "markdown",
        "caption",
        "warning",
        "error",
        "info",
        "success",
        "subheader",
        "title",
    ):
        parts += [str(element.value) for element in at.get(kind)]
    parts += [str(element.proto) for element in at.get("exception")]
    return "\n".join(parts)


def assert_nothing_leaks(at: AppTest) -> str:
    assert not at.exception, [e.value for e in at.exception]
    text = page_text(at)
    assert "Traceback" not in text and "Error:" not in text
    for secret in {str(ROOT), os.path.expanduser("~"), "/usr", "/etc"}:
        assert secret not in text, secret
    return text


@pytest.mark.parametrize(
    "source",
    ["/", "/:5000", "/etc/shadow", "/dev/zero", "/etc", "~", "../../..", "/nonexistent.png"],
)
def test_a_browser_cannot_open_server_files_by_url(source: str) -> None:
    at = start("pages/network.py", {"image": source})
    text = assert_nothing_leaks(at)
    assert NOT_PUBLISHED in text


def test_a_published_folder_is_open_to_browsers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    (tmp_path / "cats" / "cat").mkdir(parents=True)
    Image.new("RGB", (30, 20), "orange").save(tmp_path / "cats" / "cat" / "0.png")
    monkeypatch.setenv("CONVLENS_DATA_ROOTS", str(tmp_path))
    at = start("pages/network.py", {"image": f"{tmp_path / 'cats'}:0"})
    assert not at.exception
    assert NOT_PUBLISHED not in page_text(at)
    assert at.get("vega_lite_chart"), "the image is classified"


@pytest.mark.parametrize(
    "model",
    ["run:/etc", "run:../../etc", "run:/work", "run:~/x@3", "run:assets/runs/fashion_basecnn"],
)
def test_a_browser_names_runs_by_name_only(model: str) -> None:
    at = start("pages/network.py", {"model": model})
    text = assert_nothing_leaks(at)
    assert NOT_A_RUN_NAME in text
    assert at.session_state["model"] == "efficientnet_lite0"


@pytest.mark.parametrize("model", ["run:fashion_basecnn@abc", "run:fashion_basecnn@99999999"])
def test_a_bad_step_of_a_run_is_one_line_without_paths(model: str) -> None:
    at = start("pages/network.py", {"model": model})
    text = assert_nothing_leaks(at)
    assert "fashion_basecnn" in text


def test_a_run_with_damaged_weights_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from convlens.paths import convlens_home
    from convlens.runformat import shipped_run

    runs = convlens_home() / "runs"
    runs.mkdir(parents=True)
    copy = runs / "broken"
    shutil.copytree(shipped_run("fashion_deepeyes_small"), copy)
    for weights in copy.rglob("weights.safetensors"):
        weights.write_bytes(b"not safetensors at all")
    at = start("pages/network.py", {"model": "run:broken"})
    text = assert_nothing_leaks(at)
    assert "cannot load run:broken" in text


# Every key a page reads from its address bar; the sidebar's and the forward pass's (model, image,
# layer, filter) on the page that uses them most.
SELECTION_KEYS = ("model", "image", "layer", "filter")


def own_keys(page: str) -> tuple[str, ...]:
    return tuple(key for key in PAGE_URL_KEYS[page] if key not in SELECTION_KEYS)


PAGE_KEYS = {
    "pages/network.py": SELECTION_KEYS,
    "pages/filters.py": ("layer", "filter", *own_keys("filters")),
    "pages/cnnvis.py": own_keys("cnnvis"),
    "pages/training.py": PAGE_URL_KEYS["training"],
    "pages/deepeyes.py": own_keys("deepeyes"),
    "pages/annotations.py": ("model", "layer"),
}
HOSTILE_VALUES = ("garbage", "99999999999999999999999", "-1", "../../etc,g99,,", "x" * 3000)


@pytest.fixture(scope="module")
def analysed_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ConvLens home with the CNNVis analysis of a small shipped model, so that the CNNVis
    page reads all of its URL keys."""
    from convlens.activations import SHIPPED_DATA, analyze
    from convlens.models import load_model

    home = tmp_path_factory.mktemp("hostile_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONVLENS_HOME", str(home))
        analyze(load_model("fashion_basecnn_x0.25"), SHIPPED_DATA)
    return home


@pytest.mark.parametrize("page", sorted(PAGE_KEYS))
def test_every_url_parameter_survives_hostile_values(
    page: str, analysed_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVLENS_HOME", str(analysed_home))
    base = {"model": "fashion_basecnn_x0.25", "image": "fashion-mnist:test:0"}
    for key in PAGE_KEYS[page]:
        for value in HOSTILE_VALUES:
            at = start(page, {**base, key: value})
            assert not at.exception, (key, value[:40], [e.value for e in at.exception])
            text = page_text(at)
            assert "Traceback" not in text and str(ROOT) not in text, (key, value[:40])


def test_deepeyes_opens_runs_by_name_only(tmp_path: Path) -> None:
    import shutil

    from convlens.runformat import shipped_run

    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(shipped_run("fashion_deepeyes_small"), elsewhere)
    for run in (str(elsewhere), "/etc", "../../assets/runs/fashion_deepeyes"):
        at = start("pages/deepeyes.py", {"run": run})
        text = assert_nothing_leaks(at)
        assert NOT_A_RUN_NAME in text, run
        assert at.session_state["run"] == "fashion_deepeyes", "the default run instead"
    at = start("pages/deepeyes.py", {"run": "nosuch"})  # a plain name, but no run's
    assert "run= was not understood" in assert_nothing_leaks(at)
    assert at.session_state["run"] == "fashion_deepeyes"
    at = start("pages/deepeyes.py", {"run": "fashion_deepeyes_small"})
    assert "not understood" not in assert_nothing_leaks(at)
    assert at.session_state["run"] == "fashion_deepeyes_small"


def test_a_session_keeps_only_its_last_few_uploads() -> None:
    import io

    from PIL import Image

    from convlens.ui.state import MAX_SESSION_UPLOADS

    at = start("pages/network.py", {})
    at.selectbox(key="image_choice_widget").set_value("Upload an image…").run()
    for index in range(MAX_SESSION_UPLOADS + 2):
        buffer = io.BytesIO()
        Image.new("RGB", (20, 20), (index * 30, 0, 0)).save(buffer, format="PNG")
        at.file_uploader(key="image_upload").set_value(
            (f"photo{index}.png", buffer.getvalue(), "image/png")
        ).run()
        assert not at.exception
    kept = at.session_state["uploads"]
    assert list(kept) == [f"photo{i}.png" for i in range(2, MAX_SESSION_UPLOADS + 2)]


@pytest.mark.parametrize(
    ("page", "key"),
    [
        ("pages/filters.py", "show"),
        ("pages/filters.py", "sort"),
        ("pages/cnnvis.py", "facet"),
        ("pages/cnnvis.py", "palette"),
        ("pages/cnnvis.py", "edges"),
        ("pages/cnnvis.py", "patch"),
        ("pages/cnnvis.py", "importance"),
        ("pages/cnnvis.py", "clusters"),
        ("pages/cnnvis.py", "weak"),
    ],
)
def test_a_bad_choice_in_the_link_is_named_and_reset(
    page: str, key: str, analysed_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVLENS_HOME", str(analysed_home))
    base = {"model": "fashion_basecnn_x0.25", "image": "fashion-mnist:test:0"}
    at = start(page, {**base, key: "garbage"})
    text = assert_nothing_leaks(at)
    said = f"The link's {key}= was not understood"
    assert said in text
    assert at.session_state[key] != "garbage"
    # said where it is seen: not inside a popover, which stays closed until clicked
    for popover in at.get("popover"):
        assert not [w for w in popover.get("warning") if said in w.value]


@pytest.mark.parametrize(
    ("page", "key", "value"),
    [
        ("pages/filters.py", "filter", "abc"),
        ("pages/filters.py", "page", "1e400"),
        ("pages/network.py", "filter", "\x00../../etc"),
        ("pages/deepeyes.py", "de_filter", "abc"),
        ("pages/deepeyes.py", "de_step", "9" * 400),
    ],
)
def test_a_number_the_link_spells_wrong_is_named_and_forgotten(
    page: str, key: str, value: str, analysed_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVLENS_HOME", str(analysed_home))
    base = {"model": "fashion_basecnn_x0.25", "image": "fashion-mnist:test:0", "layer": "conv2"}
    at = start(page, {**base, key: value})
    said = [w.value for w in at.warning if "not understood" in w.value]
    assert said == [f"The link's {key}= was not understood; it is back to its default."]
    assert_nothing_leaks(at)
    kept = at.session_state.get(key)
    if key == "de_step":
        from convlens.runformat import list_snapshots, shipped_run

        assert kept == list_snapshots(shipped_run(at.session_state["run"]))[-1], "the last one"
    else:
        assert kept in (None, NO_FILTER), "the page's default: none"


def test_an_empty_number_in_the_link_is_not_worth_a_word(
    analysed_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVLENS_HOME", str(analysed_home))
    at = start("pages/deepeyes.py", {"de_filter": " ", "de_step": ""})
    assert "not understood" not in assert_nothing_leaks(at)


def test_several_bad_choices_in_the_link_are_named_in_one_warning(
    analysed_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVLENS_HOME", str(analysed_home))
    base = {"model": "fashion_basecnn_x0.25", "image": "fashion-mnist:test:0"}
    at = start("pages/cnnvis.py", {**base, "palette": "/etc", "weak": "2", "edges": "/../" * 75})
    assert_nothing_leaks(at)
    said = [w.value for w in at.warning if "not understood" in w.value]
    assert said == [
        "The link's edges=, palette= and weak= were not understood; they are back to their "
        "defaults."
    ]
    assert (at.session_state["edges"], at.session_state["palette"], at.session_state["weak"]) == (
        "weight",
        "green / red",
        "0",
    )


def test_a_clusters_link_reads_kmeans_with_its_count(
    analysed_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVLENS_HOME", str(analysed_home))
    base = {"model": "fashion_basecnn_x0.25", "image": "fashion-mnist:test:0"}
    for asked in ("kmeans:", "meanshift:3", "kmeans:3:3", "kmeans:x", "spectral"):
        assert "clusters= was not understood" in assert_nothing_leaks(
            start("pages/cnnvis.py", {**base, "clusters": asked})
        ), asked
    # a count the box does not offer is capped to it (test_hostile_more), without a word
    for asked, count, kept in (("kmeans:3", 3, "kmeans:3"), ("kmeans:-1", 0, "kmeans")):
        at = start("pages/cnnvis.py", {**base, "clusters": asked})
        assert "not understood" not in assert_nothing_leaks(at)
        assert at.number_input(key="cnnvis_count").value == count
        assert at.session_state["clusters"] == kept
