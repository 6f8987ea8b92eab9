"""AppTest of the Training page: its form starts a run only from its button, a run that has not
written its first step reads "starting", a shipped run's accuracy is its card's, and the live
chart draws only the curves that have data."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
from streamlit.testing.v1 import AppTest

from convlens.runformat import read_card
from convlens.ui.run_watch import NEW_RUN_NOTICE

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "pages" / "training.py")
SMALL = ROOT / "assets" / "runs" / "fashion_deepeyes_small"
TIMEOUT = 60


def open_training(state: dict | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    for key, value in (state or {}).items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def runs_table(at: AppTest):
    (table,) = at.table
    return table.value.set_index("run")


def blocks(node):
    """Yield every block under `node` (the page's tree), depth first."""
    for child in getattr(node, "children", {}).values():
        if hasattr(child, "children"):
            yield child
            yield from blocks(child)


def new_run(name: str) -> Path:
    folder = Path(os.environ["CONVLENS_HOME"]) / "runs" / name
    folder.mkdir(parents=True)
    return folder


def test_enter_in_a_field_of_the_form_does_not_start_a_run():
    at = open_training()
    forms = [block for block in blocks(at._tree) if block.type == "form"]
    assert [form.proto.form.form_id for form in forms] == ["start_run"]
    assert forms[0].proto.form.enter_to_submit is False
    # only the button submits: a changed field alone starts nothing
    at.number_input(key="train_epochs").set_value(2).run()
    assert not at.exception
    assert not (Path(os.environ["CONVLENS_HOME"]) / "runs").exists()
    assert not at.success


def test_a_run_before_its_first_step_reads_starting_with_its_architecture():
    # the folder `start_run` makes, then the trainer's pid file, manifest and empty metrics
    folder = new_run("deepeyes-20260101-000000-abcdef")
    (folder / "train.log").write_text("")
    (folder / "pid").write_text(f"{os.getpid()}\n")
    table = runs_table(open_training())
    assert table.loc[folder.name, "status"] == "starting"
    assert table.loc[folder.name, "architecture"] == ""
    shutil.copy(SMALL / "probe_index.safetensors", folder)
    manifest = json.loads((SMALL / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "finished": False}))
    (folder / "metrics.jsonl").write_text("")
    at = open_training({"run": folder.name})
    table = runs_table(at)
    assert table.loc[folder.name, "status"] == "starting"
    assert table.loc[folder.name, "architecture"] == "deepeyes"
    assert "starting: no step recorded yet." in [caption.value for caption in at.caption]
    assert not at.get("vega_lite_chart")
    # its first step: it is running
    step = {"step": 1, "epoch": 1, "loss": 2.3, "batch_accuracy": 0.1, "lr": 0.01}
    (folder / "metrics.jsonl").write_text(json.dumps(step) + "\n")
    assert runs_table(open_training()).loc[folder.name, "status"] == "running"


def test_the_shipped_runs_show_the_accuracy_of_their_cards():
    table = runs_table(open_training())
    assert table.loc["fashion_deepeyes", "test accuracy"] == "90.55%"
    for name in table.index[table["origin"] == "shipped"]:
        card = read_card(ROOT / "assets" / "runs" / name)
        assert table.loc[name, "test accuracy"] == f"{card.test_accuracy:.2%}", name


def test_the_failure_example_reads_meant_to_fail_in_the_list_and_when_picked():
    at = open_training({"run": "fashion_basecnn_hinge"})
    table = runs_table(at)
    assert table.loc["fashion_basecnn_hinge", "status"] == "finished"
    assert table.loc["fashion_basecnn_hinge", "about"].startswith("meant to fail")
    assert table.loc["fashion_basecnn", "about"] == ""
    assert any(info.value.startswith("Meant to fail: hinge loss") for info in at.info)


def test_the_live_chart_draws_no_empty_curve_before_the_first_epoch_ends():
    folder = new_run("deepeyes-live")
    shutil.copy(SMALL / "probe_index.safetensors", folder)
    manifest = json.loads((SMALL / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "finished": False}))
    (folder / "pid").write_text(f"{os.getpid()}\n")
    steps = [{"step": s, "epoch": 1, "loss": 2.0, "batch_accuracy": 0.2} for s in (1, 2, 3)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in steps))
    at = open_training({"run": folder.name})
    (chart,) = at.get("vega_lite_chart")
    spec = json.loads(chart.proto.spec)
    rows = [
        pa.ipc.open_stream(dataset.data.data).read_all().num_rows
        for dataset in chart.proto.datasets
    ]
    assert len(spec["layer"]) == 1, "no test accuracy yet: no accuracy curve"
    assert "test accuracy" not in chart.proto.spec
    assert rows and all(count > 0 for count in rows), "every curve drawn has points"
    # once the first epoch has ended, both curves
    epoch = {"step": 3, "epoch": 1, "test_accuracy": 0.5, "test_loss": 1.5}
    with (folder / "metrics.jsonl").open("a") as metrics:
        metrics.write(json.dumps(epoch) + "\n")
    (chart,) = open_training({"run": folder.name}).get("vega_lite_chart")
    assert len(json.loads(chart.proto.spec)["layer"]) == 2
    assert all(pa.ipc.open_stream(d.data.data).read_all().num_rows for d in chart.proto.datasets)


def test_runs_refresh_on_a_timer_only_while_one_trains():
    from convlens.style import RUN_REFRESH_SECONDS
    from convlens.ui.run_watch import refresh_seconds

    assert refresh_seconds([]) is None
    assert refresh_seconds(["finished", "incomplete", "unreadable"]) is None
    assert refresh_seconds(["finished", "starting"]) == RUN_REFRESH_SECONDS
    assert refresh_seconds(["running"]) == RUN_REFRESH_SECONDS


def test_a_run_the_link_names_that_no_run_has_is_said_and_the_newest_shown():
    for asked in ("no_such_run", "../../../../etc/passwd", "x" * 5000):
        at = open_training({"run": asked})
        assert any("run= was not understood" in w.value for w in at.warning), asked[:20]
        picker = at.selectbox(key="run_widget")
        assert picker.value == picker.options[-1] == at.session_state["run"]
        assert picker.help == NEW_RUN_NOTICE
    assert not open_training({"run": "fashion_deepeyes_small"}).warning
