"""Aggregating weights per (output, input channel): what CNNVis colours its edges by; and what
a file given as weights really is."""

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convlens.models import ModelError, read_state_dict
from convlens.weights import FileKind, edge_matrix, sniff, sniff_file


def test_edge_matrix_sums_conv_kernels():
    weight = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    expected = torch.tensor([[6.0, 22.0, 38.0], [54.0, 70.0, 86.0]])  # 0+1+2+3 = 6, ...
    assert torch.equal(edge_matrix(weight), expected)


def test_edge_matrix_sums_a_flattened_linear_layer_per_input_channel():
    # 2 outputs reading a flattened (3 channels, 2 positions) map: inputs c0p0 c0p1 c1p0 c1p1 ...
    weight = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [-1.0, 1.0, 0.0, 0.0, 2.0, 2.0]])
    assert torch.equal(edge_matrix(weight, 3), torch.tensor([[3.0, 7.0, 11.0], [0.0, 0.0, 4.0]]))
    assert torch.equal(edge_matrix(weight), weight)  # a plain linear layer: one edge per unit
    assert torch.equal(edge_matrix(weight, 4), weight)  # 6 inputs are not 4 channels' worth


# What a file given as weights really is, and the one line that says so.


def _png(path: Path) -> None:
    Image.new("RGB", (8, 8), "red").save(path)


def _jpeg(path: Path) -> None:
    Image.new("RGB", (8, 8), "red").save(path, format="JPEG")


def _text(path: Path) -> None:
    path.write_text("these are lecture notes, not weights\n" * 20)


def _random(path: Path) -> None:
    # random bytes, but not starting like a pickle (0x80 2-5) or safetensors (8-byte length, "{")
    path.write_bytes(b"\x00" + np.random.default_rng(0).bytes(2000))


def _zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")


def _torch_archive(path: Path) -> None:
    torch.save({"w": torch.zeros(2)}, path)


def _pickle(path: Path) -> None:
    path.write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=4))


def _safetensors(path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(path))


@pytest.mark.parametrize(
    ("name", "write", "kind", "format"),
    [
        ("picture.png", _png, "image", "PNG"),
        ("photo.jpg", _jpeg, "image", "JPEG"),
        ("notes.txt", _text, "text", ""),
        ("noise.bin", _random, "binary", ""),
        ("other.zip", _zip, "zip", ""),
        ("weights.pt", _torch_archive, "torch-archive", ""),
        ("objects.pkl", _pickle, "pickle", ""),
        ("weights.safetensors", _safetensors, "safetensors", ""),
        ("empty.pth", lambda path: path.write_bytes(b""), "empty", ""),
    ],
)
def test_sniff_file_tells_what_a_file_really_is(name, write, kind, format, tmp_path: Path):
    path = tmp_path / name
    write(path)
    assert sniff_file(path) == FileKind(kind, format)


def test_sniff_does_not_take_a_text_file_for_a_bitmap():
    assert sniff(b"BMW and Audi: cars, not weights\n").kind == "text"
    assert sniff(b"caf\xc3").kind == "text", "a UTF-8 character cut at the end is still text"


@pytest.mark.parametrize(
    ("name", "write", "message"),
    [
        (
            "picture.png",
            _png,
            "'picture.png' is an image (PNG), not a weights file (.pt, .pth or .safetensors)",
        ),
        (
            "photo.pth",
            _jpeg,
            "'photo.pth' is an image (JPEG), not a weights file (.pt, .pth or .safetensors)",
        ),
        (
            "notes.txt",
            _text,
            "'notes.txt' is not a weights file (.pt, .pth or .safetensors): it is text",
        ),
        (
            "noise.pt",
            _random,
            "'noise.pt' is not a weights file ConvLens can read "
            "(neither a PyTorch archive nor safetensors)",
        ),
        (
            "other.zip",
            _zip,
            "'other.zip' is a zip archive, but not the PyTorch archive that torch.save writes: "
            "not a weights file",
        ),
        (
            "objects.pkl",
            _pickle,
            "'objects.pkl' holds pickled Python objects that weights-only loading refuses",
        ),
        (
            "empty.pth",
            lambda path: path.write_bytes(b""),
            "'empty.pth' is empty, not a weights file",
        ),
    ],
)
def test_a_file_that_is_not_weights_is_named_for_what_it_is(name, write, message, tmp_path: Path):
    path = tmp_path / name
    write(path)
    with pytest.raises(ModelError) as raised:
        read_state_dict(path)
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)
    if write is not _pickle:
        assert "pickle" not in str(raised.value)


def test_a_cut_torch_archive_is_called_damaged(tmp_path: Path):
    whole = tmp_path / "whole.pt"
    _torch_archive(whole)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[:200])
    with pytest.raises(ModelError, match=r"^'cut.pt' is a PyTorch archive that cannot be read: "):
        read_state_dict(cut)


@pytest.mark.parametrize("name", ["weights.pt", "weights.safetensors", "safetensors-inside.pth"])
def test_weights_are_read_by_their_content(name: str, tmp_path: Path):
    path = tmp_path / name
    (_safetensors if "safetensors" in name else _torch_archive)(path)
    assert torch.equal(read_state_dict(path)["w"], torch.zeros(2))
