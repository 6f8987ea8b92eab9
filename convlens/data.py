"""Image sources and datasets, named the same way in the CLI, the URL and the app.

A *dataset* (what `analyze` and `ablate` read) is ``samples``, ``fashion-mnist:test``,
``fashion-mnist:train`` or an ImageFolder directory, one sub-folder per class (`parse_dataset`;
`labelled_images` opens the labelled ones).

An image *source* is one string:

- ``sample:NAME``: a photo that ships inside scikit-image (offline), see `SAMPLE_NAMES`;
- a file path, absolute or relative (``~`` is expanded);
- ``upload:FILENAME``: bytes the app keeps for an uploaded file;
- ``DATASET:INDEX``: image INDEX of a labelled dataset, read by the dataset grammar:
  ``fashion-mnist:test:INDEX``, ``fashion-mnist:train:INDEX`` or ``DIR:INDEX``.

Both take an `Access` (`convlens.access`): the CLI may name any path, a browser of the app only
paths under the data roots the server publishes (`NOT_PUBLISHED` otherwise).

Every image goes through one safe decoder (`open_image_bytes` / `open_image_file`): it
refuses what is not an image, truncated or empty files and decompression bombs with an
`ImageSourceError` of one sentence, and returns a fully loaded 8-bit RGB image otherwise.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import os
import re
import socket
import struct
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NoReturn
from urllib.parse import urlparse

import numpy as np
from PIL import Image, ImageOps

from convlens.access import FULL_ACCESS, NOT_PUBLISHED, Access, whole_number
from convlens.paths import ASSETS_DIR, convlens_home, offline

MAX_PIXELS = 40_000_000

# scikit-image photos whose files ship inside its wheel, so they load without pooch or a network.
SAMPLE_NAMES: tuple[str, ...] = (
    "chelsea",
    "coffee",
    "astronaut",
    "rocket",
    "camera",
    "coins",
    "moon",
    "clock",
    "text",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "brick",
    "grass",
    "gravel",
)
DEFAULT_IMAGE = "sample:chelsea"

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_MNIST_SPLITS = ("test", "train")
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

# torchvision's ImageFolder extensions, so that indices agree with a torchvision ImageFolder.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# A folder walk stops here: an ImageFolder larger than this is refused, not walked for minutes.
MAX_FOLDER_ENTRIES = 200_000

SAMPLES = "samples"
FASHION_MNIST_SOURCES = ("fashion-mnist:test", "fashion-mnist:train")
DATASET_FORMS = "fashion-mnist:test, fashion-mnist:train, samples or an ImageFolder directory"


class ImageSourceError(ValueError):
    """Raised with ONE clear sentence (no traceback needed to understand it) for any bad source/image."""


@dataclass(frozen=True)
class LoadedImage:
    """An image ready to show or classify, with the source it came from and its label if known."""

    source: str
    image: Image.Image
    label: str | None
    label_index: int | None


@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """A labelled image set held as arrays (read-only)."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    origin: str

    def __len__(self) -> int:
        """Return the number of images."""
        return int(self.labels.shape[0])

    def image(self, index: int) -> Image.Image:
        """Return image `index` as an RGB PIL image."""
        _check_index(index, len(self), self.name)
        return Image.fromarray(self.images[index]).convert("RGB")


@dataclass(frozen=True, eq=False)
class FolderDataset:
    """An ImageFolder directory: one sub-folder per class, files listed in torchvision's order."""

    name: str
    root: Path
    files: tuple[Path, ...]
    labels: np.ndarray
    classes: tuple[str, ...]

    def __len__(self) -> int:
        """Return the number of image files."""
        return len(self.files)

    def image(self, index: int) -> Image.Image:
        """Return image `index` as an RGB PIL image, decoded safely."""
        _check_index(index, len(self), self.name)
        return open_image_file(self.files[index])


# --------------------------------------------------------------------------------------------
# Safe decoding


# A name quoted in a message keeps its start and its end (where a path says most) within this.
QUOTED_NAME_LIMIT = 120


def _quote(name: str) -> str:
    """Quote a file name for a one-line message: a name from a browser may be thousands of
    characters long."""
    line = " ".join(str(name).splitlines())
    if len(line) > QUOTED_NAME_LIMIT:
        line = line[:40] + "…" + line[-(QUOTED_NAME_LIMIT - 41) :]
    return "'" + line + "'"


# PIL warns about images of 89-179 megapixels while opening them; ConvLens refuses anything over
# MAX_PIXELS with its own one-sentence error, so the warning would only add noise (set once here,
# not toggled per call: warning filters are process-wide).
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def _too_large(name: str, detail: str) -> ImageSourceError:
    return ImageSourceError(
        f"{_quote(name)} is too large ({detail}; the limit is {MAX_PIXELS // 1_000_000} megapixels)."
    )


def _decode(fp: IO[bytes], name: str, max_side: int | None = None) -> Image.Image:
    """Decode the first frame of the image in `fp` into a new, fully loaded RGB image, shrunk to
    `max_side` pixels on its longest side when given (before any copy is made of it)."""
    try:
        img = Image.open(fp)
    except Image.DecompressionBombError as error:
        found = re.search(r"\((\d+) pixels\)", str(error))
        detail = f"{int(found.group(1)):,} pixels" if found else "a decompression bomb"
        raise _too_large(name, detail) from error
    except Exception as error:
        raise ImageSourceError(f"{_quote(name)} is not an image PIL can read.") from error
    with img:
        width, height = img.size
        if width * height > MAX_PIXELS:
            raise _too_large(name, f"{width}x{height} pixels")
        if width < 1 or height < 1:
            raise ImageSourceError(f"{_quote(name)} has no pixels ({width}x{height}).")
        shrink = max_side is not None and max(width, height) > max_side
        if shrink:
            img.draft("RGB", (max_side, max_side))  # JPEG decodes at a fraction of its size
        try:
            # A full load: with PIL's default ImageFile.LOAD_TRUNCATED_IMAGES (False), a
            # truncated file raises here instead of coming back half grey.
            img.load()
        except Image.DecompressionBombError as error:
            raise _too_large(name, "a decompression bomb") from error
        except Exception as error:
            raise ImageSourceError(
                f"{_quote(name)} is truncated or damaged, so PIL could not decode it."
            ) from error
        if shrink:
            with contextlib.suppress(Exception):  # a mode thumbnail cannot resize stays whole
                img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        try:
            # Phone photos store their rotation in EXIF; show them upright, as browsers do.
            # Before the conversion, which drops EXIF for modes it rebuilds.
            upright = ImageOps.exif_transpose(img)
        except Exception:
            upright = img  # a broken EXIF block is no reason to refuse the pixels
        try:
            return _to_rgb(upright)
        except Exception as error:
            raise ImageSourceError(
                f"{_quote(name)} has a colour mode ({img.mode}) that ConvLens cannot convert to RGB."
            ) from error


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; alpha is composited on white.

    High-bit-depth grey (I;16*, I, F) is stretched by its actual range: min -> 0, max -> 255
    (a constant image keeps its value, clipped to 0..255), since 12-bit data in a 16-bit
    container, or floats of any range, would otherwise come out black or saturated.
    """
    mode = img.mode
    if mode.startswith("I") or mode == "F":
        values = np.asarray(img, dtype=np.float64)
        finite = np.isfinite(values)
        values = np.where(finite, values, 0.0)
        low, high = (values[finite].min(), values[finite].max()) if finite.any() else (0.0, 0.0)
        if high > low:
            values = (values - low) * (255.0 / (high - low))
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def open_image_bytes(data: bytes, name: str = "upload", max_side: int | None = None) -> Image.Image:
    """Return the image in `data` as a fully loaded RGB image (at most `max_side` pixels on its
    longest side, when given), or raise ImageSourceError."""
    if not data:
        raise ImageSourceError(f"{_quote(name)} is empty (0 bytes).")
    return _decode(io.BytesIO(data), name, max_side)


def open_image_file(
    path: str | Path, name: str | None = None, max_side: int | None = None
) -> Image.Image:
    """Return the image file at `path` as a fully loaded RGB image (at most `max_side` pixels on
    its longest side, when given), or raise ImageSourceError."""
    name = str(path) if name is None else name
    path = Path(path).expanduser()
    try:
        if path.stat().st_size == 0:
            raise ImageSourceError(f"{_quote(name)} is empty (0 bytes).")
        with path.open("rb") as fp:
            return _decode(fp, name, max_side)
    except FileNotFoundError as error:
        raise ImageSourceError(f"no such file: {_quote(name)}.") from error
    except IsADirectoryError as error:
        raise ImageSourceError(f"{_quote(name)} is a folder, not an image file.") from error
    except PermissionError as error:
        raise ImageSourceError(f"{_quote(name)} cannot be read (permission denied).") from error
    except OSError as error:
        raise ImageSourceError(f"{_quote(name)} cannot be read ({error.strerror}).") from error


# --------------------------------------------------------------------------------------------
# Samples


def list_samples() -> list[str]:
    """Return the source strings of the bundled scikit-image photos, e.g. "sample:chelsea"."""
    return [f"sample:{name}" for name in SAMPLE_NAMES]


def _sample(name: str) -> Image.Image:
    if name not in SAMPLE_NAMES:
        raise ImageSourceError(
            f"unknown sample {_quote(name)}; the samples are {', '.join(SAMPLE_NAMES)}."
        )
    return _decoded_sample(name).copy()


@functools.lru_cache(maxsize=len(SAMPLE_NAMES))
def _decoded_sample(name: str) -> Image.Image:
    """A sample decoded once per process (all of them 17 MB): a filter's top patches over the
    samples read up to nine of them, 5-30 ms each."""
    import skimage.data

    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")


# --------------------------------------------------------------------------------------------
# Fashion-MNIST


def _idx_files(folder: Path, split: str) -> tuple[Path, Path] | None:
    """Return the (images, labels) IDX files of `split` in `folder`, gzipped or not, if present."""
    prefix = "t10k" if split == "test" else "train"
    found = []
    for kind in ("images-idx3", "labels-idx1"):
        base = folder / f"{prefix}-{kind}-ubyte"
        path = next((p for p in (base.with_name(base.name + ".gz"), base) if p.is_file()), None)
        if path is None:
            return None
        found.append(path)
    return found[0], found[1]


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    """Parse one IDX file of unsigned bytes (gzipped or not) into an array; raise ValueError."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fp:
        raw = fp.read()
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path.name} is too short for an IDX header")
    found_magic, *dims = struct.unpack(f">{1 + ndim}I", raw[:header])
    if found_magic != magic:
        raise ValueError(f"{path.name} has IDX magic {found_magic}, expected {magic}")
    expected = int(np.prod(dims, dtype=np.int64))
    if len(raw) - header != expected:
        raise ValueError(f"{path.name} holds {len(raw) - header} bytes, expected {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


@functools.lru_cache(maxsize=8)
def _read_split(images_path: Path, labels_path: Path, name: str, origin: str) -> ArrayDataset:
    images = _read_idx(images_path, 2051, 3)
    labels = _read_idx(labels_path, 2049, 1).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"label {labels.max()} is not a Fashion-MNIST class")
    labels.flags.writeable = False
    return ArrayDataset(name, images, labels, FASHION_MNIST_CLASSES, origin)


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the host of `url` opens within `timeout` seconds."""
    parts = urlparse(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def _download_fashion_mnist(root: Path, split: str) -> str | None:
    """Download Fashion-MNIST with torchvision into `root`; return why not, or None on success."""
    if offline():
        return "CONVLENS_OFFLINE is set"
    from torchvision.datasets import FashionMNIST

    # torchvision's urlopen has no timeout; probe first so an offline machine fails fast.
    if not any(_reachable(mirror) for mirror in FashionMNIST.mirrors):
        return "the download server cannot be reached"
    try:
        FashionMNIST(str(root), train=split == "train", download=True)
    except Exception as error:
        return f"the download failed ({' '.join(str(error).split())[:200]})"
    return None


def fashion_mnist(split: str = "test") -> ArrayDataset:
    """Return one Fashion-MNIST split (uint8 28x28 images, int64 labels) from the first source found.

    Order: the Debian package `dataset-fashion-mnist` (`$CONVLENS_FASHION_MNIST_DIR` overrides
    its folder), torchvision's download folder under `convlens_home()/data` (downloading when
    online and `$CONVLENS_OFFLINE` is unset), then, for the test split, the copy in assets/.
    """
    if split not in FASHION_MNIST_SPLITS:
        raise ImageSourceError(f"Fashion-MNIST has no split {_quote(split)}; use test or train.")
    name = f"fashion-mnist:{split}"
    debian = Path(os.environ.get("CONVLENS_FASHION_MNIST_DIR") or DEBIAN_FASHION_MNIST_DIR)
    torch_root = convlens_home() / "data"
    torch_raw = torch_root / "FashionMNIST" / "raw"
    problems: list[str] = []

    def attempt(folder: Path, origin: str) -> ArrayDataset | None:
        files = _idx_files(folder, split)
        if files is None:
            return None
        try:
            return _read_split(files[0], files[1], name, origin)
        except (OSError, ValueError, EOFError) as error:
            problems.append(f"{folder} is unreadable ({error})")
            return None

    found = attempt(debian, "debian") or attempt(torch_raw, "download")
    bundled = ASSETS_DIR / "fashion-mnist"
    # The bundled test split is as good as a download, so only download what is not bundled.
    if found is None and (split == "train" or _idx_files(bundled, split) is None):
        why = _download_fashion_mnist(torch_root, split)
        if why is None:
            found = attempt(torch_raw, "download")
        else:
            problems.append(why)
    if found is None and split == "test":
        found = attempt(bundled, "bundled")
    if found is not None:
        return found
    detail = f" ({'; '.join(problems)})" if problems else ""
    raise ImageSourceError(
        f"the Fashion-MNIST {split} split is not available offline{detail}; run "
        "`apt-get install dataset-fashion-mnist` or go online once so torchvision can download it."
    )


# --------------------------------------------------------------------------------------------
# ImageFolder


def _class_dirs(root: Path) -> list[os.DirEntry[str]]:
    # Hidden folders (.git, .ipynb_checkpoints) are not classes, unlike in torchvision.
    with os.scandir(root) as entries:
        return sorted(
            (e for e in entries if e.is_dir() and not e.name.startswith(".")), key=lambda e: e.name
        )


@functools.lru_cache(maxsize=16)
def _scan_folder(root: Path, stamp: tuple[tuple[str, int], ...]) -> FolderDataset:
    classes = tuple(name for name, _ in stamp)
    files: list[Path] = []
    labels: list[int] = []
    seen = 0
    for index, cls in enumerate(classes):
        # The same walk as torchvision's make_dataset: recursive, sorted, by extension.
        for folder, _, names in sorted(os.walk(root / cls, followlinks=False)):
            seen += len(names) + 1
            if seen > MAX_FOLDER_ENTRIES:
                raise ImageSourceError(
                    f"the folder {_quote(root.name)} holds more than {MAX_FOLDER_ENTRIES:,} "
                    "entries; give a smaller ImageFolder."
                )
            for fname in sorted(names):
                if fname.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(Path(folder) / fname)
                    labels.append(index)
    if not files:
        raise ImageSourceError(
            f"the folder {_quote(str(root))} has no image files in its class sub-folders."
        )
    label_array = np.asarray(labels, dtype=np.int64)
    label_array.flags.writeable = False
    return FolderDataset(str(root), root, tuple(files), label_array, classes)


def image_folder(path: str | Path) -> FolderDataset:
    """Return the ImageFolder at `path`: sorted class sub-folders, sorted image files in each."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise ImageSourceError(f"no such folder: {_quote(str(path))}.")
    try:
        dirs = _class_dirs(root)
        # Keyed by the class folders' mtimes, so that added or removed files are seen.
        stamp = tuple((e.name, e.stat().st_mtime_ns) for e in dirs)
    except OSError as error:
        raise ImageSourceError(f"the folder {_quote(str(path))} cannot be read.") from error
    if not dirs:
        raise ImageSourceError(
            f"the folder {_quote(str(path))} has no class sub-folders (expected one per class)."
        )
    return _scan_folder(root, stamp)


# --------------------------------------------------------------------------------------------
# Sources


def _check_index(index: int, size: int, name: str) -> None:
    if not 0 <= index < size:
        raise ImageSourceError(
            f"index {index} is out of range for {name}; valid indices are 0 to {size - 1}."
        )


def _parse_index(text: str, size: int, name: str) -> int:
    index = whole_number(text)
    if index is None or text.strip().startswith("-"):
        raise ImageSourceError(
            f"{_quote(text[:40])} is not an index for {name}; use a whole number from 0 to "
            f"{size - 1}."
        )
    _check_index(index, size, name)
    return index


SOURCE_FORMS = (
    "sample:NAME, upload:FILENAME, fashion-mnist:test:INDEX, fashion-mnist:train:INDEX, "
    "a file path or DIR:INDEX"
)


def load_image(
    source: str,
    uploads: Mapping[str, bytes] | None = None,
    access: Access = FULL_ACCESS,
    max_side: int | None = None,
) -> LoadedImage:
    """Return the image named by `source` (see the module docstring for the forms) as RGB; a path
    only where `access` may read it; a file or upload shrunk to `max_side` pixels on its longest
    side while it is decoded, when given."""
    source = source.strip() if isinstance(source, str) else source
    if not isinstance(source, str) or not source:
        raise ImageSourceError(f"an image source is needed; use {SOURCE_FORMS}.")
    if source.startswith("sample:"):
        return LoadedImage(source, _sample(source.removeprefix("sample:")), None, None)
    if source.startswith("upload:"):
        filename = source.removeprefix("upload:")
        data = (uploads or {}).get(filename)
        if data is None:
            raise ImageSourceError(
                f"upload {_quote(filename)} is no longer available; upload it again."
            )
        return LoadedImage(source, open_image_bytes(data, filename, max_side), None, None)
    dataset_text, sep, index_text = source.rpartition(":")
    if source.startswith("fashion-mnist:"):
        if dataset_text not in FASHION_MNIST_SOURCES:
            raise ImageSourceError(
                f"{_quote(source)} is not a Fashion-MNIST source; use fashion-mnist:test:INDEX "
                "or fashion-mnist:train:INDEX."
            )
        return _dataset_image(source, parse_dataset(dataset_text), index_text)

    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]+):", source)
    if scheme and scheme.group(1).lower() in ("http", "https", "ftp"):
        raise ImageSourceError(
            f"{_quote(source)} is a web address; download the image and upload it instead."
        )
    path = access.published(source)
    if path is not None and path.is_file():
        return LoadedImage(source, open_image_file(path, source, max_side), None, None)
    folder = _image_folder_name(dataset_text, access) if sep and dataset_text else None
    if folder is not None:
        return _dataset_image(source, folder, index_text)
    if path is not None and path.is_dir():
        _folder_hint(source, path)
    if access.restricted:
        raise ImageSourceError(NOT_PUBLISHED)  # the same sentence for every path refused
    if sep and re.fullmatch(r"\d+", index_text):
        raise ImageSourceError(f"no such folder: {_quote(dataset_text)}.")
    if scheme:
        raise ImageSourceError(f"unknown image source {_quote(source)}; use {SOURCE_FORMS}.")
    raise ImageSourceError(f"no such file: {_quote(source)}.")


def _image_folder_name(text: str, access: Access) -> DatasetName | None:
    """The ImageFolder dataset `text` names, if it names one that `access` may read."""
    try:
        name = parse_dataset(text, access)
    except ImageSourceError:
        return None
    return name if name.kind == "folder" else None


def _dataset_image(source: str, name: DatasetName, index_text: str) -> LoadedImage:
    """Image INDEX of a labelled dataset, for the source `DATASET:INDEX`."""
    dataset = labelled_images(name)
    shown = dataset.name if name.kind == "fashion-mnist" else _quote(name.text)
    index = _parse_index(index_text, len(dataset), shown)
    label = int(dataset.labels[index])
    return LoadedImage(source, dataset.image(index), dataset.classes[label], label)


def _folder_hint(source: str, folder: Path) -> NoReturn:
    count = len(image_folder(folder))
    raise ImageSourceError(
        f"{_quote(source)} is a folder; pick one of its {count} images with "
        f"{source}:INDEX (0 to {count - 1})."
    )


@dataclass(frozen=True)
class DatasetName:
    """A parsed dataset name: `samples`, a Fashion-MNIST split, or an ImageFolder directory."""

    kind: str  # "samples", "fashion-mnist" or "folder"
    text: str
    split: str | None = None
    folder: Path | None = None


def parse_dataset(text: str, access: Access = FULL_ACCESS) -> DatasetName:
    """Parse a dataset name; ImageSourceError (one sentence) when it names none `access` may read."""
    text = text.strip() if isinstance(text, str) else ""
    if not text:
        raise ImageSourceError(f"a data source is needed; use {DATASET_FORMS}.")
    if text == SAMPLES:
        return DatasetName("samples", text)
    if text.startswith("fashion-mnist"):
        if text not in FASHION_MNIST_SOURCES:
            raise ImageSourceError(
                f"{_quote(text)} is not a Fashion-MNIST split; use fashion-mnist:test or "
                "fashion-mnist:train."
            )
        return DatasetName("fashion-mnist", text, split=text.split(":")[1])
    path = access.published(text)
    if path is not None and path.is_dir():
        return DatasetName("folder", text, folder=path)
    if access.restricted:
        raise ImageSourceError(NOT_PUBLISHED)
    if path is not None and path.is_file():
        raise ImageSourceError(
            f"{_quote(text)} is a file; give a folder of images with one sub-folder per class."
        )
    if any(mark in text for mark in ("/", "\\", "~")) or text.startswith("."):
        raise ImageSourceError(
            f"no folder {_quote(text)} here; give a folder of images with one sub-folder per "
            f"class, or one of {DATASET_FORMS}."
        )
    raise ImageSourceError(f"unknown data source {_quote(text)}; use {DATASET_FORMS}.")


LabelledDataset = ArrayDataset | FolderDataset


def labelled_images(name: DatasetName) -> LabelledDataset:
    """Return the images and labels of a parsed Fashion-MNIST split or ImageFolder directory."""
    if name.kind == "fashion-mnist":
        return fashion_mnist(name.split)
    if name.kind == "folder":
        return image_folder(name.folder)
    raise ImageSourceError(f"{_quote(name.text)} has no labels; use {DATASET_FORMS}.")
