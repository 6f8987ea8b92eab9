"""Where ConvLens keeps its files: the bundled assets and the user's data directory."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"


def convlens_home() -> Path:
    """Return `$CONVLENS_HOME`, or the user's data directory for ConvLens; create it if needed."""
    home = Path(os.environ.get("CONVLENS_HOME") or platformdirs.user_data_dir("convlens"))
    home.mkdir(parents=True, exist_ok=True)
    return home
