"""The annotation store: concurrent writers, updates, latest labels, export / import, fingerprints, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import torch

from convlens.annotations import CLOCK_SKEW, COLUMNS, LABELS, AnnotationStore, counted
from convlens.cli import main
from convlens.models import load_model, resolve_model
from convlens.weights import weights_fingerprint

ROOT = Path(__file__).resolve().parent.parent
FINGERPRINT = "0123456789abcdef"

WRITER = """
import sys, time
from pathlib import Path
from convlens.annotations import AnnotationStore, LABELS

path, fingerprint, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
worker, rows = int(sys.argv[4]), int(sys.argv[5])
go.with_name(f"ready{worker}").touch()
while not go.exists():
    time.sleep(0.005)
store = AnnotationStore(path)
for i in range(rows):
    store.set_annotation(
        "deepeyes", fingerprint, "features.conv1", worker * 1000 + i, LABELS[i % 3], author=f"w{worker}"
    )
    store.set_annotation(
        "deepeyes", fingerprint, "features.conv2", 0, "useful", note=f"{worker}:{i}", author="shared"
    )
"""


def test_parallel_writer_processes_lose_nothing(tmp_path: Path) -> None:
    path, go = tmp_path / "annotations.sqlite", tmp_path / "go"
    workers, rows = 6, 100
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), FINGERPRINT, str(go), str(worker), str(rows)],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in range(workers)
    ]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready{worker}").exists() for worker in range(workers)):
        assert time.monotonic() < deadline, "the writers did not start"
        time.sleep(0.01)
    go.touch()  # every writer has imported: start them all at once
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
    store = AnnotationStore(path)
    stored = store.list_annotations(layer="features.conv1")
    assert len(stored) == workers * rows
    for worker in range(workers):
        mine = sorted(row.filter for row in stored if row.author == f"w{worker}")
        assert mine == [worker * 1000 + i for i in range(rows)]
    assert all(
        row.label == ("useful", "useless", "unsure")[row.filter % 1000 % 3] for row in stored
    )
    (shared,) = store.list_annotations(layer="features.conv2")
    assert shared.note in {f"{worker}:{rows - 1}" for worker in range(workers)}


def test_setting_again_updates_the_one_row() -> None:
    store = AnnotationStore()
    first = store.set_annotation(
        "deepeyes", FINGERPRINT, "features.conv1", 3, "useful", note="edges", author="ann"
    )
    assert store.path.name == "annotations.sqlite" and store.path.is_file()
    second = store.set_annotation(
        "deepeyes", FINGERPRINT, "features.conv1", 3, "useless", author="ann"
    )
    (row,) = store.list_annotations()
    assert row == second
    assert (row.label, row.note) == ("useless", "edges")  # no note given: the note is kept
    assert row.updated_at > first.updated_at
    assert row.updated_at.endswith("+00:00")
    cleared = store.set_annotation(
        "deepeyes", FINGERPRINT, "features.conv1", 3, "unsure", note="", author="ann"
    )
    assert cleared.note == "" and len(store.list_annotations()) == 1


def test_latest_label_is_the_most_recent_across_authors() -> None:
    store = AnnotationStore()
    store.set_annotation("m", FINGERPRINT, "conv", 0, "useful", author="ann")
    store.set_annotation("m", FINGERPRINT, "conv", 0, "useless", author="bob")
    store.set_annotation("m", FINGERPRINT, "conv", 1, "useless", author="ann")
    store.set_annotation("m", FINGERPRINT, "fc", 2, "useless", author="bob")
    store.set_annotation("m", "fedcba9876543210", "conv", 5, "useless", author="ann")
    assert store.latest_labels("m", FINGERPRINT) == {
        ("conv", 0): "useless",
        ("conv", 1): "useless",
        ("fc", 2): "useless",
    }
    store.set_annotation("m", FINGERPRINT, "conv", 0, "useful", author="ann")
    assert store.latest_labels("m", FINGERPRINT, layer="conv") == {
        ("conv", 0): "useful",
        ("conv", 1): "useless",
    }
    assert store.latest_labels("m", FINGERPRINT, author="bob") == {
        ("conv", 0): "useless",
        ("fc", 2): "useless",
    }
    assert store.label_counts("m", FINGERPRINT) == {"useful": 1, "useless": 2, "unsure": 0}
    assert store.useless_filters("m", FINGERPRINT) == {"conv": [1], "fc": [2]}
    assert store.delete_annotation("m", FINGERPRINT, "fc", 2, author="bob")
    assert not store.delete_annotation("m", FINGERPRINT, "fc", 2, author="bob")
    assert store.useless_filters("m", FINGERPRINT) == {"conv": [1]}


def test_reading_a_missing_store_creates_nothing(tmp_path: Path) -> None:
    store = AnnotationStore(tmp_path / "none" / "annotations.sqlite")
    assert store.list_annotations() == [] and store.latest_labels("m", FINGERPRINT) == {}
    assert not store.path.parent.exists()


def test_invalid_fields_are_refused() -> None:
    store = AnnotationStore()
    with pytest.raises(ValueError, match="label"):
        store.set_annotation("m", FINGERPRINT, "conv", 0, "great")
    with pytest.raises(ValueError, match="filter"):
        store.set_annotation("m", FINGERPRINT, "conv", -1, "useful")
    with pytest.raises(ValueError, match="16 hex digits"):
        store.set_annotation("m", "xyz", "conv", 0, "useful")
    assert store.list_annotations() == []


def _fill(store: AnnotationStore) -> None:
    store.set_annotation(
        "run:runs/x@300", FINGERPRINT, "features.conv1", 0, "useful", note='a, "quoted"\nnote é'
    )
    store.set_annotation("deepeyes", FINGERPRINT, "classifier.fc1", 499, "useless", author="bob")
    store.set_annotation("deepeyes", FINGERPRINT, "classifier.fc1", 499, "unsure", author="ann")


@pytest.mark.parametrize("format", ["csv", "json"])
def test_export_import_round_trip(tmp_path: Path, format: str) -> None:
    source = AnnotationStore(tmp_path / "a.sqlite")
    _fill(source)
    exported = source.export_annotations(format)
    target = AnnotationStore(tmp_path / "b.sqlite")
    report = target.import_annotations(exported)
    assert report.ok and (report.rows, report.applied, report.kept_newer) == (3, 3, 0)
    assert target.list_annotations() == source.list_annotations()
    file = tmp_path / f"export.{format}"
    file.write_text(exported, encoding="utf-8")
    third = AnnotationStore(tmp_path / "c.sqlite")
    assert third.import_annotations(file).applied == 3
    assert third.export_annotations(format) == exported


def test_export_formats_have_the_contract_columns() -> None:
    store = AnnotationStore()
    _fill(store)
    rows = json.loads(store.export_annotations("json"))
    assert len(rows) == 3 and all(list(row) == list(COLUMNS) for row in rows)
    assert store.export_annotations("csv").splitlines()[0] == ",".join(COLUMNS)


def test_an_older_import_keeps_the_newer_label(tmp_path: Path) -> None:
    store = AnnotationStore()
    store.set_annotation("m", FINGERPRINT, "conv", 0, "useful", author="ann")
    old = store.export_annotations("json")
    store.set_annotation("m", FINGERPRINT, "conv", 0, "useless", author="ann")
    report = store.import_annotations(old)
    assert (report.applied, report.kept_newer) == (0, 1)
    assert store.latest_labels("m", FINGERPRINT) == {("conv", 0): "useless"}


GOOD_CSV_ROW = f"m,{FINGERPRINT},conv,1,useful,,ann,2024-01-02T03:04:05+00:00"
HEADER = ",".join(COLUMNS)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "bad_row.csv",
            f"{HEADER}\n{GOOD_CSV_ROW}\nm,{FINGERPRINT},conv,2,meh,,ann,\n{GOOD_CSV_ROW}\n",
            [(2, "label must be one of")],
        ),
        (
            "bad_rows.json",
            json.dumps(
                [
                    {
                        "model": "m",
                        "weights_fingerprint": FINGERPRINT,
                        "layer": "c",
                        "filter": 1,
                        "label": "useful",
                    },
                    {
                        "model": "m",
                        "weights_fingerprint": FINGERPRINT,
                        "layer": "c",
                        "filter": -1,
                        "label": "useful",
                    },
                    {
                        "model": "m",
                        "weights_fingerprint": FINGERPRINT,
                        "layer": "c",
                        "filter": 2,
                        "label": "useful",
                    },
                    {
                        "model": "m",
                        "weights_fingerprint": "beef",
                        "layer": "c",
                        "filter": 3,
                        "label": "useful",
                        "updated_at": "yesterday",
                    },
                ]
            ),
            [(2, "filter must be"), (4, "16 hex digits"), (4, "ISO 8601")],
        ),
        (
            "missing_column.csv",
            f"model,weights_fingerprint,layer,filter\nm,{FINGERPRINT},conv,1\n",
            [(None, "lacks the column(s) label")],
        ),
        ("not_json.json", "this is not JSON at all {", [(None, "not JSON")]),
        ("not_rows.json", '{"model": "m"}', [(None, "list of rows")]),
    ],
)
def test_a_corrupt_import_changes_nothing(
    tmp_path: Path, name: str, text: str, expected: list[tuple[int | None, str]]
) -> None:
    store = AnnotationStore()
    _fill(store)
    before = store.export_annotations("json")
    file = tmp_path / name
    file.write_text(text, encoding="utf-8")
    report = store.import_annotations(file)
    assert not report.ok and report.applied == 0
    for row, reason in expected:
        assert any(error.row == row and reason in error.reason for error in report.errors)
    assert {error.row for error in report.errors} == {row for row, _ in expected}
    assert store.export_annotations("json") == before


def test_fingerprint_follows_the_weights() -> None:
    first, again = load_model("deepeyes", device="cpu"), load_model("deepeyes", device="cpu")
    fingerprint = weights_fingerprint(first.module)
    assert len(fingerprint) == 16 and int(fingerprint, 16) >= 0
    assert weights_fingerprint(again.module) == fingerprint
    with torch.no_grad():
        weight = first.module.classifier.fc2.weight
        weight[3, 7] = torch.nextafter(weight[3, 7], torch.tensor(10.0))
    assert weights_fingerprint(first.module) != fingerprint
    assert weights_fingerprint(again.module.double()) != fingerprint


def test_cli_set_list_export_import(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = ["annotations", "set", "--model", "deepeyes", "--layer", "features.conv2"]
    assert main([*base, "--filter", "49", "--label", "useless", "--note", "dead"]) == 0
    assert main([*base, "--filter", "0", "--label", "useful", "--author", "bob"]) == 0
    assert "features.conv2 #0: useful, by bob" in capsys.readouterr().out
    assert main([*base, "--filter", "50", "--label", "useful"]) == 2
    assert "has 50 filters" in capsys.readouterr().err
    assert main(["annotations", "set", "--model", "deepeyes", "--layer", "features.pool1",
                 "--filter", "0", "--label", "useful"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "not a conv or linear layer" in err and err.count("\n") == 1

    assert main(["annotations", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    fingerprint = weights_fingerprint(load_model("deepeyes", device="cpu").module)
    assert [(row["filter"], row["label"], row["note"]) for row in rows] == [
        (0, "useful", ""),
        (49, "useless", "dead"),
    ]
    assert all(
        set(row) == set(COLUMNS) and row["weights_fingerprint"] == fingerprint for row in rows
    )
    assert main(["annotations", "list", "--model", "alexnet", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []

    assert main(["annotations", "export", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == ",".join(COLUMNS)
    out = tmp_path / "labels.json"
    assert main(["annotations", "export", "--format", "json", "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == rows

    monkeypatch.setenv("CONVLENS_HOME", str(tmp_path / "elsewhere"))
    capsys.readouterr()
    assert main(["annotations", "import", str(out)]) == 0
    assert "applied 2 of 2 rows" in capsys.readouterr().out
    assert main(["annotations", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == rows

    bad = tmp_path / "bad.csv"
    bad.write_text(f"{HEADER}\n{GOOD_CSV_ROW}\nm,{FINGERPRINT},conv,x,useful,,a,\n")
    assert main(["annotations", "import", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "row 2: filter must be" in err and "1 of 2 rows is invalid" in err
    assert main(["annotations", "import", str(tmp_path / "missing.csv")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_text_is_never_taken_for_a_file_name(tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text(f"{HEADER}\n{GOOD_CSV_ROW}\n")
    report = AnnotationStore().import_annotations(str(secret))
    assert not report.ok and "lacks the column(s)" in report.errors[0].reason
    assert AnnotationStore().list_annotations() == []


@pytest.mark.parametrize(
    ("name", "what"), [("picture.png", "an image (PNG)"), ("labels.csv", "a binary file")]
)
def test_importing_an_image_or_binary_file_says_what_it_is_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, what: str
) -> None:
    from PIL import Image

    path = tmp_path / name
    if name.endswith(".png"):
        Image.new("RGB", (8, 8), "red").save(path)
    else:
        path.write_bytes(b"model,\xff\xfe\x00\x01" * 30)
    assert main(["annotations", "import", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"convlens: {path} is not a CSV or JSON export of annotations: it is {what}\n"
    ), err
    assert AnnotationStore().list_annotations() == []


def test_counted_says_one_filter_and_two_filters() -> None:
    assert counted(1, "filter") == "1 filter"
    assert counted(0, "filter") == "0 filters"
    assert counted(1200, "image") == "1,200 images"
    assert counted(1, "image patch", "image patches") == "1 image patch"
    assert counted(9, "image patch", "image patches") == "9 image patches"


def test_cli_counts_one_useless_filter_one_label_and_one_row_in_the_singular(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["annotations", "set", "--model", "deepeyes", "--label", "useless"]
    assert main([*base, "--layer", "features.conv1", "--filter", "4"]) == 0
    capsys.readouterr()
    command = ["annotations", "ablate", "--model", "deepeyes", "--data", "fashion-mnist:test"]
    assert main([*command, "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert "on 1 image of fashion-mnist:test" in out and "with 1 useless filter zeroed" in out

    export = tmp_path / "one.json"
    assert main(["annotations", "export", "--format", "json", "--out", str(export)]) == 0
    assert "wrote 1 annotation to" in capsys.readouterr().out
    AnnotationStore().set_annotation("deepeyes", "0" * 16, "features.conv1", 1, "useless", "", "a")
    assert main([*command, "--limit", "1"]) == 0
    assert "note: 1 label of deepeyes is for other weights" in capsys.readouterr().err
    assert main(["annotations", "import", str(export)]) == 0
    assert " of 1 row from " in capsys.readouterr().out


def _row(filter: int, updated_at: str, author: str = "ann", label: str = "useful") -> dict:
    return {
        "model": "m",
        "weights_fingerprint": FINGERPRINT,
        "layer": "conv",
        "filter": filter,
        "label": label,
        "author": author,
        "updated_at": updated_at,
    }


def test_an_import_dated_later_than_now_is_refused_with_its_row() -> None:
    """A row dated 9999-12-31 stayed its filter's latest label whatever was marked after it."""
    store = AnnotationStore()
    store.set_annotation("m", FINGERPRINT, "conv", 0, "useful", author="bo")
    before = store.export_annotations("json")
    now = datetime.now(UTC)
    rows = [
        _row(0, "2024-01-02T03:04:05+00:00"),
        _row(0, "9999-12-31T00:00:00+00:00", author="pin", label="useless"),
        _row(1, (now + timedelta(minutes=10)).isoformat()),
        _row(2, "9999-12-31"),
    ]
    report = store.import_annotations(json.dumps(rows))
    assert not report.ok and report.applied == 0
    assert [error.row for error in report.errors] == [2, 3, 4]
    assert all("later than now" in error.reason for error in report.errors)
    assert "'9999-12-31T00:00:00+00:00' is later than now" in str(report.errors[0])
    assert store.export_annotations("json") == before, "all rows or none"

    # another machine's clock a little ahead (CLOCK_SKEW) is taken; a later mark then wins
    ahead = (now + CLOCK_SKEW - timedelta(minutes=1)).isoformat()
    report = store.import_annotations(json.dumps([_row(0, ahead, author="pin", label="useless")]))
    assert report.ok and report.applied == 1
    assert store.latest_labels("m", FINGERPRINT) == {("conv", 0): "useless"}
    assert timedelta(minutes=5) == CLOCK_SKEW, "the README documents 5 minutes"


def test_an_updated_at_out_of_range_is_a_row_error_not_a_crash() -> None:
    report = AnnotationStore().import_annotations(
        json.dumps([_row(0, "0001-01-01T00:00:00+05:00")])
    )
    assert [(e.row, "out of range" in e.reason) for e in report.errors] == [(1, True)]


def test_cli_import_names_the_row_dated_in_the_future(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "pinned.csv"
    file.write_text(f"{HEADER}\n{GOOD_CSV_ROW}\nm,{FINGERPRINT},conv,2,useful,,ann,9999-12-31\n")
    assert main(["annotations", "import", str(file)]) == 2
    err = capsys.readouterr().err
    assert "row 2: updated_at '9999-12-31' is later than now" in err
    assert "1 of 2 rows is invalid; nothing was imported" in err
    assert AnnotationStore().list_annotations() == []


def test_overview_pages_counts_and_filters_in_sql() -> None:
    store = AnnotationStore()
    rows = [
        {**_row(k, "2024-01-02T03:04:05+00:00", label=LABELS[k % 3]), "layer": layer, "model": m}
        for m in ("a", "b")
        for layer in ("conv1", "conv2")
        for k in range(150)
    ]
    assert store.import_annotations(json.dumps(rows)).applied == 600
    everything = store.list_annotations()
    first = store.overview(per_page=250)
    assert (first.total, first.pages, first.page) == (600, 3, 1)
    assert first.counts == {"useful": 200, "useless": 200, "unsure": 200}
    assert first.models == ("a", "b") and first.layers == ("conv1", "conv2")
    assert list(first.rows) == everything[:250]
    last = store.overview(page=99, per_page=250)
    assert last.page == 3 and list(last.rows) == everything[500:], "past the last: the last"
    assert store.overview(page=-5, per_page=250).page == 1

    chosen = store.overview(model="b", layer="conv2", per_page=100, page=2)
    assert chosen.total == 150 and chosen.counts == {"useful": 50, "useless": 50, "unsure": 50}
    assert (
        list(chosen.rows) == [r for r in everything if (r.model, r.layer) == ("b", "conv2")][100:]
    )
    one = store.overview(layer="conv1", filter=4)
    assert [(r.model, r.layer, r.filter) for r in one.rows] == [
        ("a", "conv1", 4),
        ("b", "conv1", 4),
    ]
    assert one.counts == {"useful": 0, "useless": 2, "unsure": 0}


@pytest.mark.parametrize("number", [99999999999999999999999, 2**63, -1])
def test_a_filter_number_no_row_can_have_finds_nothing_without_raising(number: int) -> None:
    """99999999999999999999999 raised OverflowError (SQLite integers are 64-bit)."""
    store = AnnotationStore()
    store.set_annotation("m", FINGERPRINT, "conv", 0, "useful", author="ann")
    found = store.overview(filter=number)
    assert (found.total, found.rows, found.models) == (0, (), ("m",))
    assert store.list_annotations(filter=number) == []


def test_overview_of_a_missing_store_creates_nothing(tmp_path: Path) -> None:
    store = AnnotationStore(tmp_path / "none" / "annotations.sqlite")
    empty = store.overview(model="m")
    assert (empty.total, empty.rows, empty.pages) == (0, (), 1)
    assert not store.path.parent.exists()


def test_latest_label_ties_go_to_the_first_author_by_name() -> None:
    store = AnnotationStore()
    same = "2024-01-02T03:04:05+00:00"
    rows = [_row(0, same, author="cy", label="unsure"), _row(0, same, author="al")]
    rows.append(_row(0, "2024-01-01T00:00:00+00:00", author="aa", label="useless"))
    assert store.import_annotations(json.dumps(rows)).ok
    (latest,) = store.latest_annotations("m", FINGERPRINT).values()
    assert (latest.author, latest.label) == ("al", "useful")


def test_a_mark_needs_an_author_the_cli_defaults_to_the_login_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = AnnotationStore()
    for blank in ("", "  "):
        with pytest.raises(ValueError, match="author is empty"):
            store.set_annotation("m", FINGERPRINT, "conv", 0, "useful", author=blank)
    assert store.list_annotations() == []
    monkeypatch.setattr("getpass.getuser", lambda: "operator")
    assert store.set_annotation("m", FINGERPRINT, "conv", 0, "useful").author == "operator"


def _counting_loader(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count the models `annotations set` builds (convlens.models.resolve_model)."""
    import convlens.models

    built: list[str] = []

    def counted_resolve_model(name: str, *args, **kwargs):
        built.append(name)
        return resolve_model(name, *args, **kwargs)

    monkeypatch.setattr(convlens.models, "resolve_model", counted_resolve_model)
    return built


def _never_load(monkeypatch: pytest.MonkeyPatch) -> None:
    import convlens.models

    def resolve_model(*args, **kwargs):
        raise AssertionError("annotations set built the model again")

    monkeypatch.setattr(convlens.models, "resolve_model", resolve_model)


def test_cli_set_builds_the_model_once_per_weights_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each `annotations set` loaded the whole model (~700 MB for VGG16) to write one row."""
    import shutil

    from safetensors.torch import load_file, save_file

    from convlens.annotations import FACTS_NAME
    from convlens.paths import convlens_home
    from convlens.runformat import load_snapshot, snapshot_dir, weight_steps

    run = tmp_path / "small"
    shutil.copytree(ROOT / "assets" / "runs" / "fashion_deepeyes_small", run)
    weights = snapshot_dir(run, weight_steps(run)[-1]) / "weights.safetensors"
    model = f"run:{run}"

    def mark(filter: int, label: str = "useful") -> int:
        return main(["annotations", "set", "--model", model, "--layer", "classifier.fc1",
                     "--filter", str(filter), "--label", label])  # fmt: skip

    built = _counting_loader(monkeypatch)
    assert mark(0) == 0 and built == [model]
    first = weights_fingerprint(load_snapshot(run)[0])
    cache = convlens_home() / FACTS_NAME
    assert json.loads(cache.read_text()), "the facts are kept in CONVLENS_HOME"
    assert [p.name for p in cache.parent.iterdir() if p.name.endswith(".tmp")] == []

    _never_load(monkeypatch)
    assert mark(1, "useless") == 0, "the second mark reads the cache"
    capsys.readouterr()
    assert mark(10_000) == 2, "the layer's width comes from the cache too"
    assert "classifier.fc1 of" in capsys.readouterr().err
    rows = AnnotationStore().list_annotations()
    assert [(r.filter, r.weights_fingerprint) for r in rows] == [(0, first), (1, first)]

    # new weights in the same file: another modification time, so the model is built again
    state = load_file(weights)
    state["classifier.fc1.weight"][0, 0] += 1.0
    save_file(state, weights)
    built = _counting_loader(monkeypatch)
    assert mark(2) == 0 and built == [model]
    second = weights_fingerprint(load_snapshot(run)[0])
    assert second != first
    assert AnnotationStore().list_annotations(filter=2)[0].weights_fingerprint == second

    # the same bytes, touched: built again (the cache trusts no file whose time changed)
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert mark(3) == 0 and built == [model, model]
    _never_load(monkeypatch)
    assert mark(4) == 0


def test_untrained_and_shipped_models_are_cached_and_a_damaged_cache_is_rebuilt(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from convlens.annotations import FACTS_NAME, weights_facts
    from convlens.paths import convlens_home

    convlens_home().mkdir(parents=True, exist_ok=True)
    (convlens_home() / FACTS_NAME).write_text("{not json")
    built = _counting_loader(monkeypatch)
    facts = weights_facts("deepeyes")
    assert built == ["deepeyes"] and not facts.pretrained
    assert facts.fingerprint == weights_fingerprint(load_model("deepeyes", device="cpu").module)
    assert facts.layers["features.conv2"] == 50
    shipped = weights_facts("fashion_basecnn_x0.25")
    assert shipped.pretrained
    _never_load(monkeypatch)
    assert weights_facts("deepeyes") == facts
    assert weights_facts("fashion_basecnn_x0.25") == shipped
    # the untrained note still comes from the cached facts
    assert main(["annotations", "set", "--model", "deepeyes", "--layer", "features.conv2",
                 "--filter", "1", "--label", "unsure"]) == 0  # fmt: skip
    assert "note: deepeyes has untrained weights here" in capsys.readouterr().err
