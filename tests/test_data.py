"""Image sources: the safe decoder on real files of every kind, samples, Fashion-MNIST, ImageFolder."""

from __future__ import annotations

import gzip
import io
import socket
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convlens import data
from convlens.data import (
    DEFAULT_IMAGE,
    FASHION_MNIST_CLASSES,
    SAMPLE_NAMES,
    ImageSourceError,
    LoadedImage,
    fashion_mnist,
    image_folder,
    labelled_images,
    list_samples,
    load_image,
    open_image_bytes,
    parse_dataset,
)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Switch downloads off and make any network connection fail loudly."""
    monkeypatch.setenv("CONVLENS_OFFLINE", "1")

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the data tests must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)


def save(path: Path, image: Image.Image, **params: object) -> Path:
    image.save(path, **params)
    return path


def noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def png_claiming(width: int, height: int) -> bytes:
    """A small valid PNG whose IHDR is patched to claim width x height (CRC fixed up)."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, format="PNG")
    png = bytearray(buffer.getvalue())
    assert png[12:16] == b"IHDR"
    png[16:24] = struct.pack(">II", width, height)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])) & 0xFFFFFFFF)
    return bytes(png)


def refusal(source: str | Path, **kwargs: object) -> str:
    """Load `source`, expect ImageSourceError, check the message is one line; return it."""
    with pytest.raises(ImageSourceError) as caught:
        load_image(str(source), **kwargs)
    message = str(caught.value)
    assert "\n" not in message and message.endswith("."), message
    return message


# --------------------------------------------------------------------------------------------
# Accepted images: every kind comes back as a loaded 8-bit RGB image of the same size


def test_grayscale_l(tmp_path: Path) -> None:
    path = save(tmp_path / "grey.png", Image.new("L", (5, 3), 77))
    loaded = load_image(str(path))
    assert isinstance(loaded, LoadedImage)
    assert loaded.source == str(path) and loaded.label is None and loaded.label_index is None
    assert loaded.image.mode == "RGB" and loaded.image.size == (5, 3)
    assert loaded.image.getpixel((0, 0)) == (77, 77, 77)


def test_sixteen_bit_png_is_stretched_by_its_range(tmp_path: Path) -> None:
    values = np.linspace(1000, 5000, 40, dtype=np.uint16).reshape(4, 10)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    path = save(tmp_path / "deep.png", image)
    rgb = load_image(str(path)).image
    assert rgb.mode == "RGB" and rgb.size == (10, 4)
    grey = np.asarray(rgb)[..., 0]
    assert grey.min() == 0 and grey.max() == 255
    assert np.all(np.diff(grey.ravel().astype(int)) >= 0), "the ramp stays monotonic"


def test_float_and_32_bit_images(tmp_path: Path) -> None:
    floats = Image.fromarray(np.array([[0.0, 0.5], [0.25, 1.0]], dtype=np.float32))
    assert floats.mode == "F"
    path = save(tmp_path / "float.tif", floats)
    assert np.asarray(load_image(str(path)).image)[..., 0].tolist() == [[0, 128], [64, 255]]
    ints = Image.fromarray(np.array([[-100, 100]], dtype=np.int32))
    assert ints.mode == "I"
    path = save(tmp_path / "int.tif", ints)
    assert np.asarray(load_image(str(path)).image)[..., 0].tolist() == [[0, 255]]


def test_rgba_transparency_becomes_white(tmp_path: Path) -> None:
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 255))
    image.putpixel((0, 0), (0, 0, 0, 0))
    image.putpixel((1, 0), (0, 0, 255, 128))
    rgb = load_image(str(save(tmp_path / "alpha.png", image))).image
    assert rgb.mode == "RGB" and rgb.size == (4, 4)
    assert rgb.getpixel((0, 0)) == (255, 255, 255)
    assert rgb.getpixel((3, 3)) == (255, 0, 0)
    half = rgb.getpixel((1, 0))
    assert half[2] == 255 and 120 <= half[0] <= 135, half


def test_la_image(tmp_path: Path) -> None:
    image = Image.new("LA", (2, 1), (0, 255))
    image.putpixel((1, 0), (0, 0))
    rgb = load_image(str(save(tmp_path / "la.png", image))).image
    assert rgb.getpixel((0, 0)) == (0, 0, 0) and rgb.getpixel((1, 0)) == (255, 255, 255)


def test_palette_with_and_without_transparency(tmp_path: Path) -> None:
    image = Image.new("P", (3, 2), 1)
    image.putpalette([0, 0, 0, 0, 128, 0, 10, 20, 30] + [0] * (256 * 3 - 9))
    image.putpixel((0, 0), 2)
    rgb = load_image(str(save(tmp_path / "palette.png", image))).image
    assert rgb.size == (3, 2) and rgb.getpixel((0, 0)) == (10, 20, 30)
    assert rgb.getpixel((1, 1)) == (0, 128, 0)
    rgb = load_image(str(save(tmp_path / "clear.png", image, transparency=1))).image
    assert rgb.getpixel((1, 1)) == (255, 255, 255)
    assert rgb.getpixel((0, 0)) == (10, 20, 30)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    image = Image.new("CMYK", (16, 8), (0, 255, 255, 0))
    rgb = load_image(str(save(tmp_path / "print.jpg", image, quality=95))).image
    assert rgb.mode == "RGB" and rgb.size == (16, 8)
    red, green, blue = rgb.getpixel((8, 4))
    assert red > 200 and green < 60 and blue < 60


def test_animated_gif_gives_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (6, 4), colour) for colour in ("red", "blue", "lime")]
    path = save(tmp_path / "anim.gif", frames[0], save_all=True, append_images=frames[1:])
    with Image.open(path) as check:
        assert check.n_frames == 3
    rgb = load_image(str(path)).image
    assert rgb.mode == "RGB" and rgb.size == (6, 4) and rgb.getpixel((2, 2)) == (255, 0, 0)


def test_animated_png_and_webp_give_their_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (6, 4), colour) for colour in ("red", "blue")]
    for name in ("anim.png", "anim.webp"):
        params = {"lossless": True} if name.endswith("webp") else {}
        path = save(tmp_path / name, frames[0], save_all=True, append_images=frames[1:], **params)
        assert load_image(str(path)).image.getpixel((2, 2)) == (255, 0, 0), name


@pytest.mark.parametrize("size", [(1, 1), (1, 4000), (4000, 1)])
def test_tiny_and_elongated_images_keep_their_size(tmp_path: Path, size: tuple[int, int]) -> None:
    path = save(tmp_path / "odd.png", Image.new("RGB", size, (1, 2, 3)))
    rgb = load_image(str(path)).image
    assert rgb.mode == "RGB" and rgb.size == size


def test_one_bit_image(tmp_path: Path) -> None:
    image = Image.new("1", (3, 3), 0)
    image.putpixel((1, 1), 1)
    rgb = load_image(str(save(tmp_path / "bits.png", image))).image
    assert rgb.getpixel((0, 0)) == (0, 0, 0) and rgb.getpixel((1, 1)) == (255, 255, 255)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = save(tmp_path / "phone.jpg", Image.new("RGB", (20, 10), "white"), exif=exif)
    assert load_image(str(path)).image.size == (10, 20)


def test_loaded_image_is_independent_of_the_file(tmp_path: Path) -> None:
    path = save(tmp_path / "gone.png", noise((8, 8)))
    rgb = load_image(str(path)).image
    path.unlink()
    assert np.asarray(rgb).shape == (8, 8, 3)


def test_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save(tmp_path / "here.png", Image.new("RGB", (3, 3)))
    monkeypatch.chdir(tmp_path)
    assert load_image("here.png").image.size == (3, 3)


def test_open_image_bytes_and_uploads() -> None:
    buffer = io.BytesIO()
    Image.new("RGBA", (7, 5), (0, 0, 0, 0)).save(buffer, format="PNG")
    rgb = open_image_bytes(buffer.getvalue(), "cat.png")
    assert rgb.mode == "RGB" and rgb.size == (7, 5) and rgb.getpixel((0, 0)) == (255, 255, 255)
    loaded = load_image("upload:cat.png", uploads={"cat.png": buffer.getvalue()})
    assert loaded.source == "upload:cat.png" and loaded.image.size == (7, 5)


# --------------------------------------------------------------------------------------------
# Refused images: ImageSourceError with one line that names the file


def test_text_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a picture\n")
    message = refusal(path)
    assert "notes.txt" in message and "not an image" in message


def test_random_bytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "noise.bin"
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    assert "noise.bin" in refusal(path)
    with pytest.raises(ImageSourceError, match="blob"):
        open_image_bytes(np.random.default_rng(2).bytes(100), "blob")


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    message = refusal(path)
    assert "empty.png" in message and "empty" in message
    with pytest.raises(ImageSourceError, match="empty"):
        open_image_bytes(b"", "nothing.png")


@pytest.mark.parametrize("suffix", ["png", "jpg"])
def test_truncated_file_is_refused(tmp_path: Path, suffix: str) -> None:
    whole = save(tmp_path / f"whole.{suffix}", noise((64, 64)), quality=95).read_bytes()
    path = tmp_path / f"cut.{suffix}"
    path.write_bytes(whole[: len(whole) // 2])
    message = refusal(path)
    assert f"cut.{suffix}" in message and "truncated" in message
    with pytest.raises(ImageSourceError, match="truncated"):
        open_image_bytes(whole[: len(whole) // 2], f"cut.{suffix}")


@pytest.mark.parametrize(
    ("width", "height"),
    [(7000, 7000), (10000, 10000), (30000, 30000)],
    ids=["over-our-limit", "over-pil-warning", "over-pil-error"],
)
def test_decompression_bomb_is_refused_before_decoding(
    tmp_path: Path, width: int, height: int
) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(png_claiming(width, height))
    assert struct.unpack(">II", path.read_bytes()[16:24]) == (width, height)
    start = time.perf_counter()
    message = refusal(path)
    assert time.perf_counter() - start < 1.0
    assert "big.png" in message and "too large" in message and "40 megapixels" in message
    if width == 7000:
        assert "7000x7000 pixels" in message
    with pytest.raises(ImageSourceError, match="too large"):
        open_image_bytes(path.read_bytes(), "big.png")


def test_image_at_the_limit_is_not_a_bomb(tmp_path: Path) -> None:
    # 6000x6000 = 36 MP: under the limit, so it is decoded (and fails only for missing data).
    path = tmp_path / "large.png"
    path.write_bytes(png_claiming(6000, 6000))
    assert "truncated" in refusal(path)


def test_missing_path_is_refused(tmp_path: Path) -> None:
    message = refusal(tmp_path / "missing.png")
    assert message.startswith("no such file:") and "missing.png" in message


def test_missing_upload_is_refused() -> None:
    message = refusal("upload:x.png", uploads={"other.png": b"..."})
    assert message == "upload 'x.png' is no longer available; upload it again."
    assert "no longer available" in refusal("upload:x.png")


def test_bad_upload_bytes_name_the_upload() -> None:
    assert "'photo.jpg'" in refusal("upload:photo.jpg", uploads={"photo.jpg": b"hello"})


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("nonsense:thing", "unknown image source 'nonsense:thing'"),
        ("https://example.com/cat.jpg", "web address"),
        ("", "an image source is needed"),
        ("no-such-folder:3", "no such folder: 'no-such-folder'"),
        ("sample:unicorn", "unknown sample 'unicorn'; the samples are chelsea, coffee"),
    ],
)
def test_unknown_sources_are_refused(source: str, expected: str) -> None:
    assert expected in refusal(source)


# --------------------------------------------------------------------------------------------
# Samples


def test_samples_are_listed_with_the_default_first() -> None:
    assert {"chelsea", "coffee", "astronaut", "rocket"} <= set(SAMPLE_NAMES)
    assert list_samples() == [f"sample:{name}" for name in SAMPLE_NAMES]
    assert list_samples()[0] == DEFAULT_IMAGE == "sample:chelsea"


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_every_sample_loads_offline_as_rgb(name: str) -> None:
    loaded = load_image(f"sample:{name}")
    assert loaded.source == f"sample:{name}" and loaded.label is None
    assert loaded.image.mode == "RGB" and min(loaded.image.size) >= 64
    assert np.asarray(loaded.image).std() > 5, "a photo, not a flat image"


def test_a_long_unknown_name_is_refused_in_one_short_line() -> None:
    with pytest.raises(ImageSourceError) as refused:
        load_image("sample:" + "retina" * 3000 + "END")
    message = str(refused.value)
    assert message.startswith("unknown sample 'retinaretina") and "END'" in message
    assert len(message) < 400 and "\n" not in message


def test_a_sample_is_decoded_once_and_a_callers_change_stays_with_the_caller(
    monkeypatch,
) -> None:
    import skimage.data

    import convlens.data

    photo = skimage.data.coffee()
    decoded = []
    monkeypatch.setattr(skimage.data, "coffee", lambda: decoded.append(1) or photo.copy())
    convlens.data._decoded_sample.cache_clear()
    first = load_image("sample:coffee").image
    assert np.array_equal(np.asarray(first), photo)
    first.paste((255, 0, 255), (0, 0, 40, 40))  # drawn on by one caller
    again = load_image("sample:coffee").image
    assert np.array_equal(np.asarray(again), photo)
    assert len(decoded) == 1
    convlens.data._decoded_sample.cache_clear()  # not the stand-in for the tests after this one


# --------------------------------------------------------------------------------------------
# Fashion-MNIST


def write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray, gz: bool) -> None:
    """Write an IDX pair as torchvision or Debian lays it out."""
    folder.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if gz else open
    ext = ".gz" if gz else ""
    with opener(folder / f"{prefix}-images-idx3-ubyte{ext}", "wb") as fp:
        fp.write(struct.pack(">IIII", 2051, *images.shape) + images.astype(np.uint8).tobytes())
    with opener(folder / f"{prefix}-labels-idx1-ubyte{ext}", "wb") as fp:
        fp.write(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


def test_fashion_mnist_test_split() -> None:
    dataset = fashion_mnist("test")
    assert dataset.name == "fashion-mnist:test" and dataset.origin in ("debian", "bundled")
    assert len(dataset) == 10000
    assert dataset.images.shape == (10000, 28, 28) and dataset.images.dtype == np.uint8
    assert dataset.labels.dtype == np.int64 and set(np.unique(dataset.labels)) == set(range(10))
    assert dataset.classes == FASHION_MNIST_CLASSES
    assert dataset.classes[dataset.labels[0]] == "Ankle boot"
    image = dataset.image(0)
    assert image.mode == "RGB" and image.size == (28, 28)
    assert fashion_mnist("test") is dataset, "parsed once per split"
    with pytest.raises(ImageSourceError, match="0 to 9999"):
        dataset.image(10000)


def test_fashion_mnist_falls_back_to_the_bundled_test_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVLENS_FASHION_MNIST_DIR", str(tmp_path))
    dataset = fashion_mnist("test")
    assert dataset.origin == "bundled" and len(dataset) == 10000
    assert dataset.classes[dataset.labels[0]] == "Ankle boot"


def test_fashion_mnist_skips_a_damaged_debian_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / name).write_bytes(gzip.compress(b"garbage"))
    monkeypatch.setenv("CONVLENS_FASHION_MNIST_DIR", str(tmp_path))
    assert fashion_mnist("test").origin == "bundled"


def test_fashion_mnist_train_split_offline_without_files_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVLENS_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(ImageSourceError) as caught:
        fashion_mnist("train")
    message = str(caught.value)
    assert "\n" not in message and "apt-get install dataset-fashion-mnist" in message
    assert "go online" in message
    with pytest.raises(ImageSourceError, match="apt-get"):
        load_image("fashion-mnist:train:0")


def test_fashion_mnist_reads_a_previous_torchvision_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVLENS_FASHION_MNIST_DIR", str(tmp_path / "none"))
    images = np.arange(5 * 28 * 28, dtype=np.int64).reshape(5, 28, 28) % 256
    raw = data.convlens_home() / "data" / "FashionMNIST" / "raw"
    write_idx(raw, "train", images, np.array([3, 1, 4, 1, 5]), gz=False)
    dataset = fashion_mnist("train")
    assert dataset.origin == "download" and len(dataset) == 5
    assert np.array_equal(dataset.images, images) and dataset.labels.tolist() == [3, 1, 4, 1, 5]
    loaded = load_image("fashion-mnist:train:2")
    assert loaded.label == "Coat" and loaded.label_index == 4


def test_fashion_mnist_rejects_an_inconsistent_idx_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_idx(tmp_path, "train", np.zeros((3, 28, 28)), np.array([0, 1]), gz=True)
    monkeypatch.setenv("CONVLENS_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(ImageSourceError, match="3 images but 2 labels"):
        fashion_mnist("train")


def test_fashion_mnist_from_the_debian_package() -> None:
    """The README's commands install the package (`setup.sh`): the train split is not luck."""
    assert fashion_mnist("test").origin == "debian"
    train = fashion_mnist("train")
    assert train.origin == "debian" and train.images.shape == (60000, 28, 28)


def test_fashion_mnist_sources() -> None:
    loaded = load_image("fashion-mnist:test:0")
    assert loaded.source == "fashion-mnist:test:0"
    assert loaded.label == "Ankle boot" and loaded.label_index == 9
    assert loaded.image.mode == "RGB" and loaded.image.size == (28, 28)
    assert "0 to 9999" in refusal("fashion-mnist:test:10000")
    assert "whole number" in refusal("fashion-mnist:test:-1")
    assert "fashion-mnist:test:INDEX" in refusal("fashion-mnist:validation:1")
    with pytest.raises(ImageSourceError, match="no split"):
        fashion_mnist("validation")


# --------------------------------------------------------------------------------------------
# ImageFolder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Two classes, files written out of order, plus files and folders that are not images."""
    root = tmp_path / "pets"
    for rel, colour in [
        ("dog/z.png", "white"),
        ("dog/sub/y.png", "grey"),
        ("cat/b.png", "blue"),
        ("cat/a.jpg", "red"),
    ]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4), colour).save(root / rel)
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "README.md").write_text("not a class")
    return root


def test_image_folder_order_matches_torchvision(folder: Path) -> None:
    from torchvision.datasets import ImageFolder

    dataset = image_folder(folder)
    assert dataset.classes == ("cat", "dog") and len(dataset) == 4
    relative = [f.relative_to(folder).as_posix() for f in dataset.files]
    assert relative == ["cat/a.jpg", "cat/b.png", "dog/z.png", "dog/sub/y.png"]
    assert dataset.labels.tolist() == [0, 0, 1, 1]
    reference = ImageFolder(str(folder))
    assert [(Path(p), c) for p, c in reference.samples] == list(
        zip(dataset.files, dataset.labels.tolist(), strict=True)
    )
    red, green, blue = dataset.image(0).getpixel((1, 1))  # cat/a.jpg, a lossy red
    assert red > 240 and green < 16 and blue < 16


def test_image_folder_ignores_hidden_folders(folder: Path) -> None:
    (folder / ".ipynb_checkpoints").mkdir()
    Image.new("RGB", (2, 2)).save(folder / ".ipynb_checkpoints" / "x.png")
    assert image_folder(folder).classes == ("cat", "dog")


def test_image_folder_sees_new_files(folder: Path) -> None:
    assert len(image_folder(folder)) == 4
    time.sleep(0.01)
    Image.new("RGB", (2, 2)).save(folder / "cat" / "c.png")
    assert len(image_folder(folder)) == 5


def test_image_folder_sources(folder: Path) -> None:
    loaded = load_image(f"{folder}:1")
    assert loaded.source == f"{folder}:1"
    assert loaded.label == "cat" and loaded.label_index == 0
    assert loaded.image.mode == "RGB" and loaded.image.getpixel((0, 0)) == (0, 0, 255)
    assert load_image(f"{folder}:2").label == "dog"
    message = refusal(f"{folder}:4")
    assert "index 4 is out of range" in message and "0 to 3" in message
    assert "whole number from 0 to 3" in refusal(f"{folder}:first")
    assert f"{folder}:INDEX" in refusal(folder)


def test_image_folder_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageSourceError, match="no class sub-folders"):
        image_folder(empty)
    assert "no class sub-folders" in refusal(f"{empty}:0")
    (empty / "cat").mkdir()
    (empty / "cat" / "notes.txt").write_text("no images here")
    with pytest.raises(ImageSourceError, match="no image files"):
        image_folder(empty)
    with pytest.raises(ImageSourceError, match="no such folder"):
        image_folder(tmp_path / "missing")


def test_image_folder_refuses_a_bad_file_by_name(folder: Path) -> None:
    (folder / "cat" / "0broken.png").write_bytes(b"not really a png")
    message = refusal(f"{folder}:0")
    assert "0broken.png" in message and "not an image" in message


# --------------------------------------------------------------------------------------------
# One grammar: an image source DATASET:INDEX is image INDEX of the dataset parse_dataset names


def test_a_dataset_image_source_is_an_image_of_the_parsed_dataset(folder: Path) -> None:
    pets = labelled_images(parse_dataset(str(folder)))
    assert pets.classes == ("cat", "dog")
    for index in range(len(pets)):
        loaded = load_image(f"{folder}:{index}")
        assert loaded.image.tobytes() == pets.image(index).tobytes()
        assert loaded.label == pets.classes[pets.labels[index]]
    test = labelled_images(parse_dataset("fashion-mnist:test"))
    assert test is fashion_mnist("test")
    assert load_image("fashion-mnist:test:7").image.tobytes() == test.image(7).tobytes()


def test_samples_is_a_dataset_without_labels() -> None:
    assert parse_dataset("samples").kind == "samples"
    with pytest.raises(ImageSourceError, match="'samples' has no labels"):
        labelled_images(parse_dataset("samples"))
