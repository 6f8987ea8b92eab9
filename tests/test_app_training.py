"""AppTest of the Training page: its form starts a run only from its button, a run that has not
written its first step reads "starting", a shipped run's accuracy is its card's, and the live
chart draws only the curves that have data."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
from streamlit.testing.v1 import AppTest

from convlens.runformat import read_card
from convlens.style import RUN_REFRESH_SECONDS
from convlens.ui import run_watch
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


def test_a_run_before_its_first_step_reads_starting_with_its_architecture(monkeypatch):
    # while a run trains, the tabs refreshing in one period share a listing: each view below is
    # opened in the next period
    clock = stopped_clock(monkeypatch)
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
    clock[0] += RUN_REFRESH_SECONDS
    at = open_training({"run": folder.name})
    table = runs_table(at)
    assert table.loc[folder.name, "status"] == "starting"
    assert table.loc[folder.name, "architecture"] == "deepeyes"
    assert "starting: no step recorded yet." in [caption.value for caption in at.caption]
    assert not at.get("vega_lite_chart")
    # its first step: it is running
    step = {"step": 1, "epoch": 1, "loss": 2.3, "batch_accuracy": 0.1, "lr": 0.01}
    (folder / "metrics.jsonl").write_text(json.dumps(step) + "\n")
    clock[0] += RUN_REFRESH_SECONDS
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


def test_the_live_chart_draws_no_empty_curve_before_the_first_epoch_ends(monkeypatch):
    clock = stopped_clock(monkeypatch)
    folder = live_run("deepeyes-live")
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
    # a tab that refreshes in the same period is drawn the chart built at its start
    (chart,) = open_training({"run": folder.name}).get("vega_lite_chart")
    assert len(json.loads(chart.proto.spec)["layer"]) == 1
    clock[0] += RUN_REFRESH_SECONDS
    (chart,) = open_training({"run": folder.name}).get("vega_lite_chart")
    assert len(json.loads(chart.proto.spec)["layer"]) == 2
    assert all(pa.ipc.open_stream(d.data.data).read_all().num_rows for d in chart.proto.datasets)


def live_run(name: str) -> Path:
    """A run that trains (its trainer this process) and has recorded three steps."""
    folder = new_run(name)
    shutil.copy(SMALL / "probe_index.safetensors", folder)
    manifest = json.loads((SMALL / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "finished": False}))
    (folder / "pid").write_text(f"{os.getpid()}\n")
    steps = [{"step": s, "epoch": 1, "loss": 2.0, "batch_accuracy": 0.2} for s in (1, 2, 3)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in steps))
    return folder


def stopped_clock(monkeypatch) -> list[float]:
    """Stop the clock by which `convlens.ui.run_watch` keys a live run's charts; return it, to
    move on by hand."""
    from convlens.ui.training import listing_changed

    clock = [1_800_000_000.0]
    monkeypatch.setattr(run_watch, "time", SimpleNamespace(time=lambda: clock[0]))
    listing_changed()  # another test's listing of the same period
    return clock


def test_a_live_run_s_charts_are_keyed_by_the_refresh_period(tmp_path, monkeypatch):
    clock = stopped_clock(monkeypatch)
    run = str(tmp_path)
    assert run_watch.metrics_version(run, True) is None, "no metrics yet"
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 1}\n')
    live, stopped = run_watch.metrics_version(run, True), run_watch.metrics_version(run, False)
    with metrics.open("a") as lines:
        lines.write('{"step": 2}\n')
    assert run_watch.metrics_version(run, True) == live, "a step within the period: one key"
    assert run_watch.metrics_version(run, False) != stopped, "a run not training: keyed by the file"
    clock[0] += RUN_REFRESH_SECONDS
    assert run_watch.metrics_version(run, True) != live, "the next period"


def test_while_a_run_trains_the_runs_are_listed_once_a_refresh_period(monkeypatch):
    from convlens.ui import training

    clock = stopped_clock(monkeypatch)

    def listed() -> set[str]:
        return {Path(run.path).name for run in training.runs_of_period(run_watch.refresh_period())}

    before = listed()
    new_run("started-elsewhere")
    assert listed() == before, "the tabs refreshing in one period share one listing"
    clock[0] += RUN_REFRESH_SECONDS
    assert listed() == before | {"started-elsewhere"}, "the next period lists it"
    new_run("started-here")
    training.listing_changed()  # what the page's Start, Stop, Resume and Delete do
    assert "started-here" in listed(), "a change made in this server is listed at once"


def test_a_run_started_after_the_period_s_listing_is_drawn_at_once(monkeypatch):
    from convlens.ui.training import runs_of_period

    stopped_clock(monkeypatch)
    runs_of_period(run_watch.refresh_period())  # listed before the run started
    folder = live_run("deepeyes-late")
    at = open_training({"run": folder.name})  # no rerun after rerun while the period lasts
    assert runs_table(at).loc[folder.name, "status"] == "running"


def test_the_curves_spec_equals_the_validated_chart_and_is_built_once(monkeypatch):
    from test_deepeyes_specs import stable, validated

    from convlens.charts import curves_chart
    from convlens.runs import learning_curves
    from convlens.ui import training

    built = []
    monkeypatch.setattr(training, "curves_chart", lambda c: built.append(c) or curves_chart(c))
    training.curves_spec.clear()
    version = run_watch.metrics_version(str(SMALL), False)
    spec, last_step = training.curves_spec(str(SMALL), version)
    assert training.curves_spec(str(SMALL), version) == (spec, last_step)
    assert len(built) == 1, "a second tab's refresh builds nothing"
    curves = learning_curves(SMALL)
    assert last_step == int(curves.steps[-1])
    assert stable(spec) == validated(curves_chart(curves))


def test_runs_refresh_on_a_timer_only_while_one_trains():
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
