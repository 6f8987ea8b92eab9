"""What the weights of one layer look like: their values and the first layer's filters as images;
and what a file a user gives as weights really is."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

FINGERPRINT_DIGITS = 16
WEIGHTS_SUFFIXES = ".pt, .pth or .safetensors"


def weights_fingerprint(module: nn.Module) -> str:
    """Return the first 16 hex digits of a SHA-256 over the state dict's names, dtypes, shapes and bytes.

    The same weights give the same fingerprint on any device; changing any one value changes it.
    It reads every weight once: cache it for large models.
    """
    digest = hashlib.sha256()
    state = module.state_dict()
    for name in sorted(state):
        value = state[name]
        if not isinstance(value, torch.Tensor):
            digest.update(f"{name}\0{value!r}\0".encode())
            continue
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:FINGERPRINT_DIGITS]


def layer_weight(module: nn.Module) -> np.ndarray | None:
    """Return the layer's weight tensor as a float array on the CPU, or None if it has none."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        return None
    return weight.detach().float().cpu().numpy()


@dataclass(frozen=True)
class Histogram:
    """Counts of values in bins; `edges` has one more entry than `counts`."""

    counts: np.ndarray
    edges: np.ndarray
    total: int


def weight_histogram(weight: np.ndarray, bins: int = 60) -> Histogram:
    """Return the histogram of all values of `weight` (kept in float32: layers can be huge)."""
    values = np.asarray(weight, dtype=np.float32).ravel()
    counts, edges = np.histogram(values, bins=bins)
    return Histogram(counts=counts, edges=edges, total=int(values.size))


def edge_matrix(weight: torch.Tensor, in_channels: int | None = None) -> torch.Tensor:
    """Sum a conv or linear weight (or its gradient) to one value per (output, input channel).

    A conv kernel is summed over its spatial extent; a linear layer that reads a flattened
    (C, H, W) map is summed per input channel when `in_channels` = C is given, so that its edges
    join the same channels as the conv layers' (CNNVis, section 6.3).
    """
    if weight.dim() > 2:
        return weight.sum(dim=tuple(range(2, weight.dim())))
    if weight.dim() == 2 and in_channels and weight.shape[1] % in_channels == 0:
        return weight.reshape(weight.shape[0], in_channels, -1).sum(dim=2)
    return weight


def filter_tiles(weight: np.ndarray) -> np.ndarray:
    """Return a conv weight (out, in, k, k) with 1 or 3 input channels as uint8 images (out, k, k, 3).

    Each filter is scaled on its own, symmetrically around zero, so that grey means 0 and the
    colours show what the filter responds to (the usual way of showing AlexNet's conv1).
    """
    if weight.ndim != 4 or weight.shape[1] not in (1, 3):
        raise ValueError("filter tiles need a conv weight with 1 or 3 input channels")
    tiles = np.transpose(weight, (0, 2, 3, 1)).astype(np.float64)
    if tiles.shape[-1] == 1:
        tiles = np.repeat(tiles, 3, axis=-1)
    scale = np.abs(tiles).reshape(len(tiles), -1).max(axis=1)
    scale[scale == 0] = 1.0
    tiles = 0.5 + 0.5 * tiles / scale[:, None, None, None]
    return np.clip(np.round(tiles * 255), 0, 255).astype(np.uint8)


# Enough of a file's start to tell its kind: magic numbers, a zip's first entry name, text.
SNIFF_BYTES = 4096
_IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_OTHER_SIGNATURES = (
    (b"%PDF-", "pdf"),
    (b"\x93NUMPY", "numpy"),
    (b"\x89HDF\r\n\x1a\n", "hdf5"),
    (b"\x1f\x8b", "gzip"),
)
# How each kind reads in a sentence ("'FILE' is ...").
KIND_NOUNS = {
    "empty": "empty",
    "image": "an image",
    "pdf": "a PDF document",
    "numpy": "a NumPy array file (.npy)",
    "hdf5": "an HDF5 file",
    "gzip": "a gzip-compressed file",
    "zip": "a zip archive that is not a PyTorch archive",
    "torch-archive": "a PyTorch archive",
    "pickle": "a Python pickle",
    "safetensors": "a safetensors file",
    "text": "text",
    "binary": "a binary file of no known kind",
}


@dataclass(frozen=True)
class FileKind:
    """What a file's first bytes say it is: `kind` (a key of `KIND_NOUNS`) and an image's format."""

    kind: str
    format: str = ""

    @property
    def noun(self) -> str:
        """Return the kind as it reads in a sentence: "an image (PNG)", "text", ..."""
        noun = KIND_NOUNS[self.kind]
        return f"{noun} ({self.format})" if self.format else noun


def sniff(head: bytes, size: int | None = None) -> FileKind:
    """Return the kind of a file from its first bytes `head` (`SNIFF_BYTES` are plenty) and its
    size in bytes (None: `head` is the whole file)."""
    size = len(head) if size is None else size
    if not head:
        return FileKind("empty")
    for signature, format in _IMAGE_SIGNATURES:
        if head.startswith(signature):
            return FileKind("image", format)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return FileKind("image", "WebP")
    if head[:2] == b"BM" and head[6:10] == bytes(4):  # BMP: reserved bytes are zero
        return FileKind("image", "BMP")
    for signature, kind in _OTHER_SIGNATURES:
        if head.startswith(signature):
            return FileKind(kind)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        # torch.save writes ARCHIVE/data.pkl first; its local header names it at byte 30.
        name_length = int.from_bytes(head[26:28], "little")
        first = head[30 : 30 + name_length]
        return FileKind("torch-archive" if first.endswith(b"/data.pkl") else "zip")
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:  # PROTO opcode, protocol 2-5
        return FileKind("pickle")
    header = int.from_bytes(head[:8], "little")
    if len(head) > 8 and head[8:9] == b"{" and 2 <= header <= size - 8:
        return FileKind("safetensors")
    return FileKind("text" if _is_text(head) else "binary")


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        # a character cut at the end of `head` is still text; anything else is not UTF-8
        if error.start < len(head) - 3:
            return False
    return True


def sniff_file(path: str | Path) -> FileKind:
    """Return the kind of the file at `path` from its first bytes (OSError if it cannot be read)."""
    path = Path(path)
    with path.open("rb") as file:
        head = file.read(SNIFF_BYTES)
    return sniff(head, path.stat().st_size)
