"""Where ConvLens keeps its files: the bundled assets and the user's data directory."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import platformdirs

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"


def convlens_home() -> Path:
    """Return `$CONVLENS_HOME`, or the user's data directory for ConvLens (created by writers)."""
    return Path(os.environ.get("CONVLENS_HOME") or platformdirs.user_data_dir("convlens"))


def write_atomic(path: Path, content: str | bytes | Callable[[BinaryIO], object]) -> None:
    """Write `content` (text as UTF-8, bytes, or a function that writes into the open file) to
    `path` through a temporary file renamed over it: a reader (another thread, or another server
    process sharing `$CONVLENS_HOME`) sees the old file or the whole new one, never half."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with temp.open("wb") as fp:
            if callable(content):
                content(fp)
            else:
                fp.write(content.encode() if isinstance(content, str) else content)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def offline() -> bool:
    """Return whether `$CONVLENS_OFFLINE` forbids downloads (1, true, yes or on)."""
    return os.environ.get("CONVLENS_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def uploads_dir() -> Path:
    """Where the app keeps weights uploaded from browsers (`prune_uploads` bounds it)."""
    return convlens_home() / "uploads"


# Kept uploads expire: after a week, or oldest first once they hold more than 1 GB together.
UPLOADS_MAX_AGE_S = 7 * 24 * 3600
UPLOADS_MAX_BYTES = 2**30


def prune_uploads(
    folder: Path, max_bytes: int = UPLOADS_MAX_BYTES, max_age_s: float = UPLOADS_MAX_AGE_S
) -> list[Path]:
    """Delete the files in `folder` older than `max_age_s`, then the oldest ones until the rest
    hold at most `max_bytes`; return what was deleted. Files that vanish meanwhile are skipped."""
    entries = []
    for path in folder.glob("*") if folder.is_dir() else ():
        try:
            stat = path.stat()
        except OSError:
            continue
        if path.is_file():
            entries.append((stat.st_mtime, stat.st_size, path))
    entries.sort()
    now = time.time()
    total = sum(size for _, size, _ in entries)
    deleted = []
    for mtime, size, path in entries:
        if now - mtime <= max_age_s and total <= max_bytes:
            continue
        path.unlink(missing_ok=True)
        total -= size
        deleted.append(path)
    return deleted
