"""More of a lecture room's hostile browser (issue: a room served safely): numbers that Python
cannot read, image strips, compressed weights and oversized annotation imports. Each is refused in
one sentence, or shown, while the app keeps running."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
import torch
from test_hostile import analysed_home, assert_nothing_leaks, page_text, start  # noqa: F401

from convlens.access import whole_number
from convlens.annotations import MAX_FIELD_CHARS, AnnotationStore
from convlens.models import ModelError, read_state_dict

BASE = {"model": "fashion_basecnn_x0.25", "image": "fashion-mnist:test:0"}
# "²" is a digit to str.isdigit() but not to int(); Python refuses to read more than 4,300 digits.
UNREADABLE_NUMBERS = ("²", "9" * 5000, "--1")


@pytest.mark.parametrize(
    ("text", "number"),
    [("7", 7), (" -3 ", -3), ("9" * 18, int("9" * 18))]
    + [(text, None) for text in (*UNREADABLE_NUMBERS, "١", "1.5", "+1", "", "-", "9" * 19)],
)
def test_a_browsers_number_is_ascii_digits_that_fit(text: str, number: int | None) -> None:
    assert whole_number(text) == number


# Where a browser's number lands, `{}` standing for it: the page, the link, what the page says.
NUMBER_SLOTS = [
    ("pages/filters.py", {"layer": "features.conv2_1", "filter": "3", "at": "{},1"}, "at="),
    # 128 filters: two pages
    (
        "pages/filters.py",
        {"model": "fashion_basecnn", "layer": "features.conv3_1", "page": "{}"},
        None,
    ),
    ("pages/network.py", {"layer": "features.conv2_1", "filter": "{}"}, None),
    ("pages/network.py", {"image": "fashion-mnist:test:{}"}, "is not an index"),
    ("pages/network.py", {"model": "run:fashion_basecnn@{}"}, "should look like run:"),
    ("pages/deepeyes.py", {"run": "fashion_deepeyes_small", "de_step": "{}"}, None),
    ("pages/deepeyes.py", {"run": "fashion_deepeyes_small", "de_filter": "{}"}, None),
    ("pages/cnnvis.py", {"classes": "1,{}"}, "1 of the classes= asked for is not a class number"),
    ("pages/cnnvis.py", {"clusters": "kmeans:{}"}, None),
]


@pytest.mark.parametrize(("page", "query", "said"), NUMBER_SLOTS)
def test_numbers_python_cannot_read_are_refused_in_one_sentence(
    page: str,
    query: dict[str, str],
    said: str | None,
    analysed_home: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONVLENS_HOME", str(analysed_home))
    for number in UNREADABLE_NUMBERS:
        at = start(page, {**BASE, **{key: value.format(number) for key, value in query.items()}})
        text = assert_nothing_leaks(at)
        assert "4300" not in text and "int()" not in text, text
        if said is not None:
            assert said in text, (number[:10], text)


def test_more_clusters_than_the_box_allows_are_capped(
    analysed_home: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONVLENS_HOME", str(analysed_home))
    at = start("pages/cnnvis.py", {**BASE, "clusters": "kmeans:99"})
    assert_nothing_leaks(at)
    assert at.number_input(key="cnnvis_count").value == 16


def strip_png(width: int, height: int) -> bytes:
    """A grey PNG of `width` x `height` pixels, written row by row (a few KB for a long strip)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = zlib.compress(b"".join(b"\x00" + b"\x80" * width for _ in range(height)), 9)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("size", [(100_000, 1), (1, 100_000)])
def test_an_uploaded_strip_of_pixels_is_shown(size: tuple[int, int]) -> None:
    """Streamlit shrinks a 2,000x1 picture to no rows and fails; the app shrinks it first."""
    at = start("pages/network.py", {"model": BASE["model"]})
    at.selectbox(key="image_choice_widget").set_value("Upload an image…").run()
    at.file_uploader(key="image_upload").set_value(
        ("strip.png", strip_png(*size), "image/png")
    ).run()
    assert_nothing_leaks(at)
    assert at.session_state["image"] == "upload:strip.png"
    at.switch_page("pages/filters.py").run()
    assert_nothing_leaks(at)


def deflated(archive: bytes) -> bytes:
    """The same zip archive with its records compressed, as no torch.save writes it."""
    source = zipfile.ZipFile(io.BytesIO(archive))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for record in source.infolist():
            target.writestr(record.filename, source.read(record.filename))
    return out.getvalue()


def test_compressed_weights_are_refused_before_they_expand(tmp_path: Path) -> None:
    """A 50 MB upload of deflated zeros would declare tens of GB that torch.load allocates."""
    saved = io.BytesIO()
    torch.save({"weight": torch.zeros(4_000_000)}, saved)  # 16 MB of zeros
    bomb = tmp_path / "bomb.pt"
    bomb.write_bytes(deflated(saved.getvalue()))
    assert bomb.stat().st_size < 100_000
    with pytest.raises(ModelError, match="compressed PyTorch archive") as refused:
        read_state_dict(bomb)
    assert str(tmp_path) not in str(refused.value)
    plain = tmp_path / "plain.pt"
    plain.write_bytes(saved.getvalue())
    assert read_state_dict(plain)["weight"].shape == (4_000_000,)


def export_row(**changes: object) -> dict[str, object]:
    row = {
        "model": "fashion_basecnn_x0.25",
        "weights_fingerprint": "0123456789abcdef",
        "layer": "features.conv1_1",
        "filter": 1,
        "label": "useful",
    }
    return {**row, **changes}


@pytest.mark.parametrize(
    "text",
    [
        json.dumps([export_row(filter=2**64)]),
        json.dumps([export_row(filter="9" * 5000)]),
        '[{"filter": ' + "9" * 5000 + "}]",
        "[" * 100_000 + "]" * 100_000,
        json.dumps([export_row(note="x" * (MAX_FIELD_CHARS + 1))]),
        json.dumps([export_row(author="x" * (MAX_FIELD_CHARS + 1))]),
        "model,weights_fingerprint,layer,filter,label\nm,0123456789abcdef,l,18446744073709551616,useful",
    ],
    ids=[
        "2**64",
        "5000-digit-text",
        "5000-digit-number",
        "deep",
        "long-note",
        "long-author",
        "csv",
    ],
)
def test_an_import_that_sqlite_or_json_cannot_take_is_refused(tmp_path: Path, text: str) -> None:
    store = AnnotationStore(tmp_path / "annotations.sqlite")
    report = store.import_annotations(text)
    assert not report.ok and report.applied == 0
    assert all(len(str(error)) < 300 for error in report.errors)
    assert store.list_annotations() == []


def test_a_browser_imports_a_few_megabytes_at_most() -> None:
    header = "model,weights_fingerprint,layer,filter,label\n"
    rows = "".join(f"m,0123456789abcdef,l,{k},useful\n" for k in range(200_000))
    at = start("pages/annotations.py", {})
    at.file_uploader(key="annotations_import").set_value(
        ("many.csv", (header + rows).encode(), "text/csv")
    ).run()
    at.button(key="import_button").click().run()
    text = assert_nothing_leaks(at)
    assert "larger than 5 MB, the most a browser imports" in text
    assert "convlens annotations import" in text
    assert "Imported" not in page_text(at)


def test_the_annotations_filter_box_takes_thousands_of_digits() -> None:
    at = start("pages/annotations.py", {})
    at.text_input(key="annotations_filter").set_value("9" * 5000).run()
    assert_nothing_leaks(at)
    assert any("The filter is a whole number" in w.value for w in at.warning)
