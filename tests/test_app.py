"""AppTest of every page (generated from the page list) and of the Network page's interactions."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from images import BAD_IMAGES
from PIL import Image
from streamlit.testing.v1 import AppTest

from convlens.style import SELECTED_BORDER
from convlens.ui.chain import INPUT_ID, OUTPUT_ID, SELECTED_BOX_BORDER
from convlens.ui.navigation import PAGES

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "page" in metafunc.fixturenames:
        metafunc.parametrize("page", [page.path for page in PAGES])


def start(query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    return at.run()


def agraph_element(at: AppTest):
    elements = [
        element
        for element in at.get("component_instance")
        if element.proto.component_name.endswith("agraph")
    ]
    assert len(elements) == 1, "the Network page draws one chain"
    return elements[0]


def chain_json(at: AppTest) -> dict:
    args = json.loads(agraph_element(at).proto.json_args)
    return json.loads(args["data"])


def chart_rows(element) -> list[dict]:
    """Return the rows of the first dataset of an Altair chart element (sent as Arrow)."""
    import pyarrow as pa

    table = pa.ipc.open_stream(element.proto.datasets[0].data.data).read_all()
    return table.to_pylist()


def place_of(at: AppTest, element) -> tuple[int, ...] | None:
    """The element's place in the page (child numbers from the root): what the browser knows an
    element by from one run to the next, and redraws it anew when it changes."""

    def walk(node, path: tuple[int, ...]) -> tuple[int, ...] | None:
        if node is element:
            return path
        for number, child in getattr(node, "children", {}).items():
            found = walk(child, (*path, number))
            if found is not None:
                return found
        return None

    return walk(at._tree, ())


def classes_chart(at: AppTest):
    (chart,) = [
        c for c in at.get("vega_lite_chart") if c.proto.datasets and "class" in chart_rows(c)[0]
    ]
    return chart


def shown(markdown: str) -> str:
    """Markdown's text as the browser shows it: `<wbr>` (a place a line may break) is no text."""
    return markdown.replace("<wbr>", "")


def headings(at: AppTest) -> list[str]:
    """The page's subheadings, those of markdown (`layer_heading`) as shown."""
    marked = [shown(m.value)[4:] for m in at.markdown if m.value.startswith("### ")]
    return [s.value for s in at.subheader] + marked


def all_text(at: AppTest) -> str:
    parts = [shown(m.value) for m in at.markdown] + [s.value for s in at.subheader]
    parts += (
        [c.value for c in at.caption] + [w.value for w in at.warning] + [e.value for e in at.error]
    )
    return "\n".join(str(p) for p in parts)


def test_every_page_runs(page: str) -> None:
    at = start()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    assert at.title, f"{page} has a title"


def test_network_shows_chain_and_top5_for_the_default() -> None:
    at = start()
    at.switch_page("pages/network.py").run()
    assert not at.exception
    data = chain_json(at)
    # EfficientNet-Lite0 has more than 20 chain nodes, so it starts with its groups collapsed:
    # a box per group, named with its output size, and the image's most active maps beside it.
    boxes = [node for node in data["nodes"] if node["shape"] == "box"]
    groups = [node for node in boxes if node["id"].startswith("g")]
    assert len(groups) >= 4 and all("Group g" in node["label"] for node in groups)
    sizes = [node["label"].split("\n")[-1] for node in groups]
    assert all(size.replace("×", "").isdigit() for size in sizes), "each shows its output size"
    maps = [node for node in data["nodes"] if node["id"].startswith("@map ")]
    assert len(maps) >= 4 * len(groups) - 4
    assert all(node["image"].startswith("data:image/png;base64,") for node in maps)
    charts = at.get("vega_lite_chart")
    values = chart_rows(charts[0])
    assert values[0]["class"] in {"Egyptian cat", "tabby", "tiger cat"}
    assert (
        at.query_params["model"] == ["efficientnet_lite0"]
        or at.query_params["model"] == "efficientnet_lite0"
    )


def test_click_on_group_expands_and_click_on_node_shows_details() -> None:
    at = start()
    at.switch_page("pages/network.py").run()
    click_chain(at, "g0")
    assert not at.exception
    ids = {node["id"] for node in chain_json(at)["nodes"]}
    assert "_conv_stem" in ids, "clicking a group expands it"
    classes_at = place_of(at, classes_chart(at))
    click_chain(at, "_conv_stem")
    assert not at.exception
    assert place_of(at, classes_chart(at)) == classes_at, "the classes chart keeps its place"
    assert any("_conv_stem" in heading for heading in headings(at))
    assert "Receptive field" in all_text(at)
    assert at.session_state["layer"] == "_conv_stem"
    # The first layer's filters are shown as tiles, and the weights as a histogram.
    assert len(at.get("imgs")) >= 1 or len(at.get("image")) >= 1
    assert len(at.get("vega_lite_chart")) >= 2


def test_url_restores_model_image_and_layer() -> None:
    at = start({"model": "resnet18", "image": "sample:coffee", "layer": "layer1.0.conv1"})
    at.switch_page("pages/network.py").run()
    assert not at.exception
    assert at.session_state["model"] == "resnet18"
    assert at.session_state["image"] == "sample:coffee"
    text = all_text(at)
    assert "untrained" in text.lower(), "an untrained network is labelled as such"
    assert "python -m convlens weights fetch resnet18" in text
    assert sum("resnet18 is untrained" in w.value for w in at.warning) == 1, "said once"
    assert any(heading == "layer1.0.conv1" for heading in headings(at))
    assert "### layer1.<wbr>0.<wbr>conv1" in [m.value for m in at.markdown], "breaks after dots"


def test_a_layer_heading_shows_an_id_as_text_whatever_it_holds() -> None:
    def page() -> None:
        from convlens.ui.details import layer_heading

        layer_heading("blocks.<b>2</b>.conv & co")

    at = AppTest.from_function(page).run()
    assert [m.value for m in at.markdown] == [
        "### blocks.<wbr>&lt;b&gt;2&lt;/b&gt;.<wbr>conv &amp; co"
    ]


def test_a_fragment_run_that_stops_early_writes_its_view_to_the_url() -> None:
    # a fragment rerun alone runs outside app.py's `mirrored_in_url`, as this page does
    def page() -> None:
        import streamlit as st

        from convlens.ui.state import stop_page, url_fragment

        def view() -> None:
            st.session_state["filter"] = 7
            stop_page()

        url_fragment("filters", view, None)()
        st.session_state["filter"] = 9  # not reached: the fragment's stop ends the run
        stop_page()

    at = AppTest.from_function(page).run()
    assert not at.exception
    assert at.query_params.get("filter") == "7"


def sort_page() -> None:
    """A page that keeps Filters' sort order in the URL, and a button that changes nothing. As
    app.py, it notes Back first; a run may end before the page starts (`end_early`)."""
    import streamlit as st

    from convlens.ui.state import (
        mirrored_in_url,
        note_history_navigation,
        persisted,
        restore_from_url,
    )

    note_history_navigation()
    if st.session_state.pop("end_early", False):
        st.stop()
    restore_from_url("filters")
    with mirrored_in_url("filters"):
        st.selectbox("Sort", ["activation", "norm", "annotation"], **persisted("sort"))
        st.button("Nothing")


def test_the_address_a_click_carries_is_not_read_as_a_view() -> None:
    # A click sent while the app's last write is on its way carries the address before it.
    at = AppTest.from_function(sort_page)
    at.query_params["sort"] = "norm"
    at.run()
    assert at.session_state["sort"] == "norm", "a link opened is read"
    at.selectbox(key="sort_widget").set_value("annotation").run()
    assert at.query_params["sort"] == "annotation"
    at.query_params["sort"] = "norm"  # the lagging address
    at.button[0].click().run()
    assert at.session_state["sort"] == "annotation", "the view stays"
    assert at.query_params["sort"] == "annotation", "and is written again"


@pytest.fixture
def sent_addresses(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """The queries the app sends the browser's address bar, in order."""
    from streamlit.runtime.state.query_params import QueryParams

    sent: list[dict] = []
    send = QueryParams._send_query_param_msg

    def recorded(self: QueryParams) -> None:
        sent.append(dict(self._query_params))
        send(self)

    monkeypatch.setattr(QueryParams, "_send_query_param_msg", recorded)
    return sent


def test_the_app_writes_the_view_again_when_it_last_sent_another(
    sent_addresses: list[dict],
) -> None:
    at = AppTest.from_function(sort_page)
    at.query_params["sort"] = "norm"
    at.run()
    assert sent_addresses == [], "a link opened keeps its spelling"
    at.selectbox(key="sort_widget").set_value("annotation").run()
    assert sent_addresses[-1]["sort"] == "annotation"
    # back to "norm" by a click that carries the address before the last write: it already says
    # "norm", but the browser's address will say what the app sent last
    at.query_params["sort"] = "norm"
    at.selectbox(key="sort_widget").set_value("norm").run()
    assert sent_addresses[-1]["sort"] == "norm"
    count = len(sent_addresses)
    at.button[0].click().run()
    assert len(sent_addresses) == count, "nothing sent when the address holds the view"


def test_what_the_app_sent_for_another_page_is_not_sent_again(
    sent_addresses: list[dict],
) -> None:
    # what the app sent for Filters says nothing of Network's address: a run on Network whose
    # address holds its view sends nothing, even without the browser's Back mark (Back has it too)
    def page() -> None:
        import streamlit as st

        from convlens.ui.state import mirrored_in_url, restore_from_url

        name = st.session_state.setdefault("page_now", "filters")
        restore_from_url(name)
        with mirrored_in_url(name):
            st.button("Nothing")

    at = AppTest.from_function(page)
    at.session_state["layer"], at.session_state["sort"] = "conv1", "norm"
    at.run()
    assert sent_addresses == [{"layer": "conv1", "sort": "norm"}]
    at.session_state["page_now"] = "network"
    at.query_params.clear()
    at.query_params["layer"] = "conv1"  # Network's address
    at.button[0].click().run()
    assert sent_addresses == [{"layer": "conv1", "sort": "norm"}], "nothing more sent"


def test_a_run_of_the_whole_page_is_one_message_however_many_fragments_it_runs(
    sent_addresses: list[dict],
) -> None:
    # each message that changes the address is an entry of the browser's history
    def page() -> None:
        import streamlit as st

        from convlens.ui.state import mirrored_in_url, url_fragment

        def part(name: str, value: str) -> None:
            st.session_state[name] = value
            st.button(f"Rerun {name}")

        with mirrored_in_url("filters"):
            url_fragment("filters", part, None)("show", "guided")
            url_fragment("filters", part, None)("sort", "norm")

    at = AppTest.from_function(page)
    at.query_params["show"] = "activation"  # a link
    at.run()
    assert sent_addresses == [{"show": "guided", "sort": "norm"}]


def test_back_and_forward_restore_the_address(monkeypatch: pytest.MonkeyPatch) -> None:
    from convlens.ui import state

    at = AppTest.from_function(sort_page)
    at.query_params["sort"] = "norm"
    at.run()
    at.selectbox(key="sort_widget").set_value("annotation").run()
    at.query_params["sort"] = "norm"  # Back
    monkeypatch.setattr(state, "_history_navigation", lambda: True)
    at.run()
    assert at.session_state["sort"] == "norm"
    assert at.selectbox(key="sort_widget").value == "norm"


def test_back_sends_nothing_when_its_address_holds_the_view(
    monkeypatch: pytest.MonkeyPatch, sent_addresses: list[dict]
) -> None:
    # the browser shows the address Back went to; a message would only say it again, and one
    # that a quick Back or Forward overtakes lands on another entry's address
    from convlens.ui import state

    at = AppTest.from_function(sort_page)
    at.query_params["sort"] = "norm"
    at.run()
    at.selectbox(key="sort_widget").set_value("annotation").run()
    assert sent_addresses == [{"sort": "annotation"}]
    at.query_params["sort"] = "norm"  # Back
    with monkeypatch.context() as back:
        back.setattr(state, "_history_navigation", lambda: True)
        at.run()
    assert at.session_state["sort"] == "norm"
    assert sent_addresses == [{"sort": "annotation"}]
    at.button[0].click().run()  # the address holds the view: still nothing to send
    assert sent_addresses == [{"sort": "annotation"}]


def test_back_ended_before_its_page_started_is_restored_by_the_next_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # app.py notes Back first; a click that ends that run before the page starts carries the
    # address Back went to, but not the browser's mark
    from convlens.ui import state

    at = AppTest.from_function(sort_page)
    at.query_params["sort"] = "norm"
    at.run()
    at.selectbox(key="sort_widget").set_value("annotation").run()
    at.query_params["sort"] = "norm"  # Back
    at.session_state["end_early"] = True
    with monkeypatch.context() as back:
        back.setattr(state, "_history_navigation", lambda: True)
        at.run()
    at.run()  # the click after it
    assert at.session_state["sort"] == "norm"
    at.query_params["sort"] = "activation"  # a later click's lagging address is not read
    at.run()
    assert at.session_state["sort"] == "norm"


def test_unknown_model_in_url_falls_back_with_a_message() -> None:
    at = start({"model": "no_such_net"})
    assert not at.exception
    assert at.session_state["model"] == "efficientnet_lite0"
    assert "no_such_net" in all_text(at)


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_bad_upload_gives_one_clear_message(name: str) -> None:
    payload = BAD_IMAGES[name]
    at = start()
    at.selectbox(key="image_choice_widget").set_value("Upload an image…").run()
    at.file_uploader(key="image_upload").set_value(
        (name, payload, "application/octet-stream")
    ).run()
    assert not at.exception
    assert at.error, "a bad upload is refused with an error message"
    assert name in at.error[0].value
    at.switch_page("pages/network.py").run()
    assert not at.exception


def test_good_upload_is_classified() -> None:
    buffer = io.BytesIO()
    Image.new("LA", (30, 500), (128, 200)).save(buffer, format="PNG")
    at = start()
    at.selectbox(key="image_choice_widget").set_value("Upload an image…").run()
    at.file_uploader(key="image_upload").set_value(
        ("tall.png", buffer.getvalue(), "image/png")
    ).run()
    at.switch_page("pages/network.py").run()
    assert not at.exception
    assert at.session_state["image"] == "upload:tall.png"
    assert at.get("vega_lite_chart"), "the top-5 chart is drawn"


def test_weights_upload_mismatch_is_refused_and_a_good_file_is_used(tmp_path: Path) -> None:
    import torch

    from convlens.models import build_untrained, model_spec
    from convlens.paths import uploads_dir

    wrong, right = io.BytesIO(), io.BytesIO()
    torch.save(build_untrained(model_spec("alexnet")).state_dict(), wrong)
    state = build_untrained(model_spec("resnet18")).state_dict()
    state["fc.bias"].fill_(0.25)
    torch.save(state, right)
    at = start({"model": "resnet18"})
    at.file_uploader(key="weights_upload_resnet18").set_value(
        ("alex.pth", wrong.getvalue(), "application/octet-stream")
    ).run()
    assert not at.exception
    assert any("do not fit resnet18" in e.value for e in at.error)
    uploads = uploads_dir()
    assert not any(uploads.iterdir()), "a refused upload is deleted at once"
    at.run()
    assert any("do not fit resnet18" in e.value for e in at.error), "still said on a rerun"
    assert not any(uploads.iterdir())
    at.file_uploader(key="weights_upload_resnet18").set_value(
        ("mine.pth", right.getvalue(), "application/octet-stream")
    ).run()
    assert not at.exception
    assert "your weights file" in all_text(at)
    assert len(list(uploads.iterdir())) == 1
    at.switch_page("pages/network.py").run()
    assert not at.exception
    assert "untrained" not in all_text(at).lower()


def test_a_text_file_as_weights_is_named_and_refused_and_the_model_keeps_its_weights() -> None:
    at = start({"model": "resnet18"})
    at.file_uploader(key="weights_upload_resnet18").set_value(
        ("notes.pt", b"these are lecture notes, not weights\n" * 20, "application/octet-stream")
    ).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any("'notes.pt'" in e for e in errors), errors
    assert not any("pickled" in e for e in errors), "a text file holds no pickled objects"
    assert at.session_state["weights_by_model"] == {}


def test_filter_tiles_only_for_the_first_layer() -> None:
    at = start({"layer": "_blocks.0._depthwise_conv"})
    at.switch_page("pages/network.py").run()
    assert not at.exception
    assert "first layer" not in all_text(at), (
        "a depthwise conv with one input channel is not the first layer"
    )
    at = start({"layer": "_conv_stem"})
    at.switch_page("pages/network.py").run()
    assert "The 32 filters of the first layer" in all_text(at)


def click_chain(at: AppTest, node_id: str) -> AppTest:
    """Simulate a click on a chain node, as the browser's component would report it: the value of
    the chain drawn last, under its key."""
    agraph_element(at)
    key, _ = at.session_state[f"chain_drawn:{at.session_state['model']}"]
    at.session_state[key] = node_id
    return at.run()


def drawn_selected(at: AppTest) -> list[str]:
    """The nodes that the chain's data draws selected (vis-network draws a clicked one itself)."""
    return [n["id"] for n in chain_json(at)["nodes"] if n.get("borderWidth") == SELECTED_BOX_BORDER]


def test_consecutive_clicks_each_select_their_node_and_leave_the_chain_as_drawn() -> None:
    """vis-network shows a clicked node selected at once, in the look the data gives a selected
    box: the run that follows leaves the chain's data as it was, so that the browser draws
    nothing anew, and no other node is drawn selected."""
    at = start({"model": "alexnet"})
    at.switch_page("pages/network.py").run()
    drawn = agraph_element(at).proto.json_args
    for node in ("features.0", "features.3", "features.0", "classifier.1"):
        click_chain(at, node)
        assert not at.exception
        assert at.session_state["layer"] == node
        assert node in headings(at)
        assert agraph_element(at).proto.json_args == drawn, "the chain's data stays as drawn"
    boxes = [n for n in chain_json(at)["nodes"] if n["shape"] == "box" and n.get("chosen", True)]
    assert len(boxes) > 5, "the layers' and groups' boxes"
    assert all(n["borderWidthSelected"] == SELECTED_BOX_BORDER for n in boxes)
    assert all(n["color"]["highlight"]["border"] == SELECTED_BORDER for n in boxes)
    assert drawn_selected(at) == []


def test_a_selection_from_elsewhere_is_drawn_by_the_chains_data() -> None:
    """A bookmarked layer is drawn selected until a click selects another (then vis-network's
    own selection shows that one, and the bookmarked one is drawn plain, once); a return from
    another page draws the layer selected again, in a fresh frame; a layer changed by anything
    but a click in the chain gets a fresh component (vis-network's selection would stay)."""
    at = start({"model": "alexnet", "layer": "features.3"})
    at.switch_page("pages/network.py").run()
    assert drawn_selected(at) == ["features.3"]
    click_chain(at, "features.3")
    assert drawn_selected(at) == ["features.3"], "a click on the drawn selection changes nothing"
    click_chain(at, "features.0")
    assert drawn_selected(at) == []
    drawn = agraph_element(at).proto.json_args
    click_chain(at, "features.3")
    assert agraph_element(at).proto.json_args == drawn
    at.switch_page("pages/filters.py").run()
    at.switch_page("pages/network.py").run()
    assert not at.exception
    assert drawn_selected(at) == ["features.3"], "the page shown again: a fresh frame"
    click_chain(at, "features.0")
    assert drawn_selected(at) == []
    click_chain(at, INPUT_ID)  # selects nothing, and shows no selection: the data draws it
    assert at.session_state["layer"] == "features.0"
    assert drawn_selected(at) == ["features.0"]
    ends = [n for n in chain_json(at)["nodes"] if n["id"] in (INPUT_ID, OUTPUT_ID)]
    assert len(ends) == 2 and all(n["chosen"] is False for n in ends)
    key, _ = at.session_state["chain_drawn:alexnet"]
    at.session_state["layer"] = "features.6"
    at.run()
    assert at.session_state["chain_drawn:alexnet"][0] != key
    assert drawn_selected(at) == ["features.6"]


def test_a_link_to_a_layer_inside_a_chain_node_draws_that_node_selected_at_once() -> None:
    at = start({"model": "alexnet", "layer": "features.1"})  # the ReLU of node features.0
    at.switch_page("pages/network.py").run()
    assert drawn_selected(at) == ["features.0"]
    key, _ = at.session_state["chain_drawn:alexnet"]
    at.run()
    assert at.session_state["chain_drawn:alexnet"][0] == key, "no fresh frame for it"
    assert drawn_selected(at) == ["features.0"]


@pytest.mark.parametrize("sent", [5, {"id": "features.0"}, ["features.0"], "x" * 100_000])
def test_a_crafted_click_in_the_chain_changes_nothing(sent: object) -> None:
    at = start({"model": "alexnet", "layer": "features.3"})
    at.switch_page("pages/network.py").run()
    key, _ = at.session_state["chain_drawn:alexnet"]
    at.session_state[key] = sent
    at.run()
    assert not at.exception
    assert at.session_state["layer"] == "features.3"
    assert drawn_selected(at) == ["features.3"]


def test_model_change_forgets_the_layer() -> None:
    at = start({"model": "alexnet", "layer": "features.0"})
    at.switch_page("pages/network.py").run()
    assert at.session_state["layer"] == "features.0"
    at.selectbox(key="model_widget").set_value("vgg11").run()
    assert not at.exception
    assert "layer" not in at.session_state or not at.session_state["layer"]


def test_the_image_follows_a_model_change_between_photos_and_fashion_mnist() -> None:
    at = start()
    at.switch_page("pages/network.py").run()
    assert at.session_state["image"] == "sample:chelsea"
    at.selectbox(key="model_widget").set_value("fashion_basecnn").run()
    assert not at.exception
    assert at.session_state["image"] == "fashion-mnist:test:0"
    assert at.selectbox(key="image_choice_widget").value == "Fashion-MNIST test image"
    assert "fashion-mnist:test:0" in at.toast[0].value
    predictions = chart_rows(at.get("vega_lite_chart")[0])
    assert predictions[0]["class"] == "Ankle boot"  # test image 0, which the model gets right
    at.number_input(key="fashion_index_widget").set_value(7).run()
    at.selectbox(key="model_widget").set_value("fashion_deepeyes").run()
    assert at.session_state["image"] == "fashion-mnist:test:7", "a Fashion model keeps its image"
    at.selectbox(key="model_widget").set_value("efficientnet_lite0").run()
    assert at.session_state["image"] == "sample:chelsea"
    at.selectbox(key="image_choice_widget").set_value("Other source…").run()
    at.text_input(key="other_source_widget").set_value("fashion-mnist:test:3").run()
    at.selectbox(key="model_widget").set_value("fashion_basecnn").run()
    assert at.session_state["image"] == "fashion-mnist:test:3", "a typed source stays"


def test_a_fashion_model_from_the_url_starts_on_a_fashion_image_unless_one_is_named() -> None:
    assert start({"model": "fashion_basecnn"}).session_state["image"] == "fashion-mnist:test:0"
    named = start({"model": "fashion_basecnn", "image": "sample:coffee"})
    assert named.session_state["image"] == "sample:coffee"


def query_value(at: AppTest, key: str) -> str | None:
    value = at.query_params.get(key)
    return value[0] if isinstance(value, list) else value


def test_a_page_keeps_only_its_own_keys_in_the_address_bar_and_the_session_keeps_the_rest() -> None:
    at = start({"model": "fashion_basecnn", "sort": "weight norm (importance)"})
    assert query_value(at, "model") == "fashion_basecnn"
    assert (
        query_value(at, "sort") is None and at.session_state["sort"] == "weight norm (importance)"
    )
    at.switch_page("pages/filters.py").run()
    assert not at.exception
    assert query_value(at, "sort") == "weight norm (importance)"
    at.switch_page("pages/network.py").run()
    assert query_value(at, "sort") is None and query_value(at, "model") == "fashion_basecnn"
    at.switch_page("pages/filters.py").run()
    assert at.selectbox(key="filters_order").value == "weight norm (importance)"


def sidebar_pickers(at: AppTest) -> list[str]:
    """The labels of the sidebar's pickers: its select boxes."""
    return [box.label for box in at.sidebar.selectbox]


def test_a_page_shows_only_the_pickers_it_reads_and_bookmarks_only_their_keys() -> None:
    at = start(
        {"model": "fashion_basecnn", "image": "fashion-mnist:test:4", "layer": "features.conv2_1"}
    )
    assert sidebar_pickers(at) == ["Model", "Image"] and at.sidebar.get("image")
    at.switch_page("pages/annotations.py").run()
    assert not at.exception
    assert sidebar_pickers(at) == ["Model"] and not at.sidebar.get("image")
    assert query_value(at, "model") == "fashion_basecnn"
    assert query_value(at, "image") is None and query_value(at, "layer") is None
    at.switch_page("pages/training.py").run()
    assert not at.exception
    assert sidebar_pickers(at) == [] and not at.sidebar.caption
    assert query_value(at, "model") is None and query_value(at, "image") is None
    at.switch_page("pages/network.py").run()
    assert not at.exception
    assert sidebar_pickers(at) == ["Model", "Image"]
    assert not at.warning, "the layer is one of the model's"
    assert (query_value(at, "image"), query_value(at, "layer")) == (
        "fashion-mnist:test:4",
        "features.conv2_1",
    )


def test_a_model_picked_where_no_image_is_shown_gets_its_kind_of_image_on_the_next_page() -> None:
    at = start()
    at.switch_page("pages/annotations.py").run()
    at.selectbox(key="model_widget").set_value("fashion_basecnn").run()
    assert not at.exception and not at.toast
    at.switch_page("pages/network.py").run()
    assert not at.exception
    assert at.session_state["image"] == "fashion-mnist:test:0"
    assert "fashion-mnist:test:0" in at.toast[0].value


def test_unknown_layer_in_url_is_explained() -> None:
    at = start({"model": "alexnet", "layer": "layer9.conv"})
    at.switch_page("pages/network.py").run()
    assert not at.exception
    assert any("layer9.conv" in w.value for w in at.warning)


@pytest.mark.parametrize("source", ["fashion-mnist:test:12000", "fashion-mnist:test:-3"])
def test_out_of_range_fashion_index_is_an_error_not_a_silent_swap(source: str) -> None:
    at = start({"image": source})
    assert not at.exception
    assert at.error and "fashion-mnist" in at.error[0].value.lower()
    assert at.session_state["image"] == source


def test_other_sources_can_be_typed(tmp_path: Path) -> None:
    at = start({"image": "fashion-mnist:train:3"})
    assert not at.exception
    assert at.session_state["image_choice"] == "Other source…"
    path = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), "blue").save(path)
    at.text_input(key="other_source_widget").set_value(str(path)).run()
    assert not at.exception
    assert at.session_state["image"] == str(path)


def test_weights_imported_while_running_are_picked_up(tmp_path: Path) -> None:
    import torch

    from convlens.models import build_untrained, import_weights, model_spec

    at = start({"model": "resnet18"})
    assert "UNTRAINED" in all_text(at)
    state = build_untrained(model_spec("resnet18")).state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    import_weights("resnet18", path)
    at.run()
    assert not at.exception
    assert "torch hub cache" in all_text(at)


@pytest.mark.parametrize("name", ["deepeyes", "basecnn"])
def test_network_page_for_the_small_fashion_cnns(name: str) -> None:
    at = start({"model": name, "image": "fashion-mnist:test:0"})
    at.switch_page("pages/network.py").run()
    assert not at.exception
    assert "convlens train" in all_text(at), "an untrained small CNN says how to train it"
    data = chain_json(at)
    first = next(n["id"] for n in data["nodes"] if (n["label"] or "").startswith("<b>1 · "))
    assert first == ("features.conv1" if name == "deepeyes" else "features.conv1_1")


def test_a_recorded_run_is_a_model_of_the_app(tmp_path: Path) -> None:
    from convlens.paths import convlens_home
    from convlens.training import train

    out = convlens_home() / "runs" / "tiny"
    train(
        "deepeyes",
        out,
        epochs=1,
        progress=False,
        conv1=2,
        conv2=3,
        fc1=8,
        limit_train=256,
        limit_test=128,
    )
    # a browser names a run by its name under the run folders (a path is refused: test_hostile)
    at = start({"model": "run:tiny", "image": "fashion-mnist:test:0"})
    at.switch_page("pages/network.py").run()
    assert not at.exception
    assert at.session_state["model"] == "run:tiny"
    options = at.selectbox(key="model_widget").options
    assert "tiny — recorded run" in options
    # a shipped run is listed once, as its model (listed twice, its annotations split)
    assert "fashion_basecnn" in options and "fashion_basecnn — recorded run" not in options
    assert not [option for option in options if option.startswith("fashion_") and "run" in option]
    assert "your weights file" in all_text(at)


def test_training_page_shows_the_options_of_the_chosen_architecture() -> None:
    at = start()
    at.switch_page("pages/training.py").run()
    assert {"train_conv1", "train_conv2", "train_fc1"} <= {w.key for w in at.number_input}
    assert "train_depth" not in {w.key for w in at.selectbox}
    at.segmented_control(key="train_arch").set_value("basecnn").run()
    assert not at.exception
    assert "train_conv1" not in {w.key for w in at.number_input}
    assert {"train_width", "train_depth"} <= {w.key for w in at.selectbox}
    assert at.checkbox(key="train_batchnorm").value is False
    assert at.selectbox(key="train_loss").value == "ce"


def test_training_page_starts_a_run_that_trains_in_its_own_process() -> None:
    import time

    from convlens.runformat import find_run, run_status

    at = start()
    at.switch_page("pages/training.py").run()
    assert not at.exception
    listed = at.table[0].value
    assert {"fashion_deepeyes", "fashion_basecnn"} <= set(listed["run"])
    assert set(listed[listed["origin"] == "shipped"]["status"]) == {"finished"}
    assert any("Model card" in e.label for e in at.expander), "a shipped run shows its card"
    at.number_input(key="train_epochs").set_value(1)
    at.number_input(key="train_conv1").set_value(2)
    at.number_input(key="train_conv2").set_value(3)
    at.number_input(key="train_fc1").set_value(8)
    at.button(key="FormSubmitter:start_run-Start training").click().run()
    assert not at.exception
    assert at.session_state["run"].startswith("deepeyes"), "a run in the home is named, not a path"
    run = find_run(at.session_state["run"])
    assert run.is_dir()
    deadline = time.monotonic() + 180
    while run_status(run) != "finished" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert run_status(run) == "finished", (run / "train.log").read_text()[-2000:]
    at.run()
    assert not at.exception
    charts = at.get("vega_lite_chart")
    assert charts, "the run's curves are drawn"
    assert any(f"run:{run.name}" in c.value for c in at.caption)
    at.button(key="run_delete").click().run()
    assert not at.exception
    assert not run.exists()


def test_the_run_stays_out_of_the_address_bar_of_pages_that_do_not_show_runs() -> None:
    """A recorded run is DeepEyes' and Training's: after picking a run model and then another
    model, the Network page's bookmark must not carry a stale `run=`."""
    at = start()
    at.switch_page("pages/network.py").run()
    at.selectbox(key="model_widget").set_value("fashion_basecnn").run()
    assert not at.exception
    assert at.session_state["run"] == "fashion_basecnn", "the run model is the run DeepEyes opens"
    assert "run" not in at.query_params
    at.selectbox(key="model_widget").set_value("efficientnet_lite0").run()
    assert not at.exception
    assert "run" not in at.query_params
    at.switch_page("pages/training.py").run()
    assert not at.exception
    assert at.query_params.get("run")


@pytest.mark.parametrize("page_file", ["pages/network.py", "pages/filters.py"])
def test_a_bad_image_is_explained_on_the_page_not_only_in_the_sidebar(page_file: str) -> None:
    at = start({"image": "fashion-mnist:test:12000"})
    at.switch_page(page_file).run()
    assert not at.exception
    sidebar_errors = [e.value for e in at.sidebar.error]
    assert sidebar_errors and "fashion-mnist" in sidebar_errors[0].lower()
    assert sidebar_errors[0] in [w.value for w in at.main.warning]


def test_a_layer_the_model_lacks_is_said_back_short_and_as_text() -> None:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.query_params["layer"] = "[click here](http://example.com)" + "/.." * 2000
    at.switch_page("pages/network.py").run()
    assert not at.exception
    (warning,) = at.warning
    assert len(warning.value) < 150, "the link's text is cut short"
    assert "`[click here](http://example.com)" in warning.value, "shown as code, not as a link"
