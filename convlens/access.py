"""What a browser may name when the app serves a lecture room; the CLI's user owns the machine.

The server's operator publishes folders with `python -m convlens app --data-root DIR` (repeatable),
which sets `CONVLENS_DATA_ROOTS` (`os.pathsep`-separated) for the app; the app reads only the
variables below, so plain `streamlit run app.py` and AppTest behave the same way. A browser may
name sample photos, Fashion-MNIST, its own uploads, recorded runs by their names under the run
folders, and files or folders under a data root, resolved (symlinks, `..`) before the check.
Everything else gets `NOT_PUBLISHED`: one sentence, the same for a missing file, a folder, a
device or a secret, so that a refusal tells nothing about the server's disk.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

DATA_ROOTS_ENV = "CONVLENS_DATA_ROOTS"
MAX_TRAINERS_ENV = "CONVLENS_MAX_TRAINERS"
INSTRUCTOR_KEY_ENV = "CONVLENS_INSTRUCTOR_KEY"
DEFAULT_MAX_TRAINERS = 2

NOT_PUBLISHED = (
    "That source is not published on this server: use a sample photo, a Fashion-MNIST image, "
    "your own upload, or a file or folder under the data folders the server was started with."
)
NOT_A_RUN_NAME = "A recorded run is named by its name, as the run list shows it, not by a path."


@dataclass(frozen=True)
class Access:
    """Which file paths a caller may read: any (`data_roots` None, the CLI) or those under the
    data roots (a browser; no roots means no paths at all)."""

    data_roots: tuple[Path, ...] | None = None

    @property
    def restricted(self) -> bool:
        return self.data_roots is not None

    def published(self, text: str) -> Path | None:
        """Return the path `text` names, resolved, when this access may read it; else None.

        With full access the path is only expanded (`~`), not resolved, so that messages quote
        it as the user typed it.
        """
        path = Path(text).expanduser()
        if self.data_roots is None:
            return path
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError):  # a symlink loop
            return None
        if any(resolved.is_relative_to(root) for root in self.data_roots):
            return resolved
        return None


FULL_ACCESS = Access()


def data_roots_from(value: str) -> tuple[Path, ...]:
    """Parse `CONVLENS_DATA_ROOTS`: existing folders, resolved; others are left out."""
    roots = []
    for part in value.split(os.pathsep):
        if part.strip():
            root = Path(part.strip()).expanduser().resolve()
            if root.is_dir():
                roots.append(root)
    return tuple(dict.fromkeys(roots))


def browser_access() -> Access:
    """The access of a browser of the app: the data roots the server was started with."""
    return Access(data_roots_from(os.environ.get(DATA_ROOTS_ENV, "")))


def max_trainers() -> int:
    """How many training processes the app's browsers may run at once (`--max-trainers`)."""
    count = whole_number(os.environ.get(MAX_TRAINERS_ENV, ""))
    return count if count is not None and count >= 0 else DEFAULT_MAX_TRAINERS


def instructor_key() -> str | None:
    """The key that lets a browser manage every run (`--instructor-key`), if the server has one."""
    return os.environ.get(INSTRUCTOR_KEY_ENV, "").strip() or None


# A number that a browser sends (a link, a box, a click) has at most this many digits: int64 holds
# any of them, and Python refuses to read more than 4,300.
MAX_DIGITS = 18


def whole_number(text: str) -> int | None:
    """Read a whole number of ASCII digits (a leading minus, spaces around) from a browser; None
    for anything else: "1.5", "--1", "²", "١", a number of more than `MAX_DIGITS` digits."""
    found = re.fullmatch(rf"\s*(-?[0-9]{{1,{MAX_DIGITS}}})\s*", text)
    return int(found.group(1)) if found else None


def is_plain_name(text: str) -> bool:
    """Whether `text` is a folder name that cannot leave the folder it is looked up in."""
    return bool(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}", text)) and ".." not in text
