"""Where ConvLens keeps its files: the bundled assets and the user's data directory."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"


def convlens_home() -> Path:
    """Return `$CONVLENS_HOME`, or the user's data directory for ConvLens (created by writers)."""
    return Path(os.environ.get("CONVLENS_HOME") or platformdirs.user_data_dir("convlens"))


def offline() -> bool:
    """Return whether `$CONVLENS_OFFLINE` forbids downloads (1, true, yes or on)."""
    return os.environ.get("CONVLENS_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
