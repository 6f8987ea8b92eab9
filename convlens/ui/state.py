"""State that a bookmarked link restores: kept in session state and mirrored in the URL."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import streamlit as st

SHARED_URL_KEYS = ("model", "image", "layer", "filter")
# Keys that only some pages read, by their URL path: only their address bars show them.
PAGE_URL_KEYS = {
    "training": ("run",),
    "deepeyes": ("run",),
    "filters": ("show", "sort", "page"),
    "cnnvis": (
        "groups",
        "facet",
        "patch",
        "classes",
        "importance",
        "clusters",
        "moves",
        "edges",
        "step",
        "palette",
        "weak",
        "compare",
    ),
}
URL_KEYS = tuple(
    dict.fromkeys(SHARED_URL_KEYS + tuple(key for keys in PAGE_URL_KEYS.values() for key in keys))
)


def restore_from_url() -> None:
    """Copy the URL's query parameters into session state, once per session."""
    if st.session_state.get("_restored_from_url"):
        return
    for key in URL_KEYS:
        if key in st.query_params and key not in st.session_state:
            st.session_state[key] = st.query_params[key]
    st.session_state["_restored_from_url"] = True


def write_to_url(page: str) -> None:
    """Mirror the state in the URL so that the address bar is a bookmark of the current view: the
    shared keys and those of `page` (its URL path). Other pages' keys stay in the session, where
    their page finds them again, but leave the address bar."""
    own = SHARED_URL_KEYS + PAGE_URL_KEYS.get(page, ())
    for key in URL_KEYS:
        value = st.session_state.get(key) if key in own else None
        if value in (None, ""):
            if key in st.query_params:
                del st.query_params[key]
        elif st.query_params.get(key) != str(value):
            st.query_params[key] = str(value)


# A session keeps its last few uploaded images (each up to server.maxUploadSize) in memory.
MAX_SESSION_UPLOADS = 4


def uploads() -> dict[str, bytes]:
    """Return the images uploaded in this session, by file name."""
    return st.session_state.setdefault("uploads", {})


def keep_upload(name: str, data: bytes) -> None:
    """Keep an uploaded image for this session, dropping the oldest beyond `MAX_SESSION_UPLOADS`."""
    kept = uploads()
    kept.pop(name, None)
    kept[name] = data
    while len(kept) > MAX_SESSION_UPLOADS:
        kept.pop(next(iter(kept)))


def upload_digest(source: str) -> str | None:
    """Return a digest of the uploaded bytes behind `source`, or None for other sources."""
    if not source.startswith("upload:"):
        return None
    data = uploads().get(source.removeprefix("upload:"))
    return hashlib.sha256(data).hexdigest()[:16] if data is not None else None


def persisted(
    key: str, on_change: Callable[[], None] | None = None, widget: str | None = None
) -> dict[str, object]:
    """Return the widget arguments that make a widget (key `widget`, by default `key`_widget)
    edit the state `key` across pages.

    Streamlit forgets a widget's value when another page runs; the state lives under a plain
    key that every page keeps, the widget is seeded from it on every run, and its change
    callback (which runs before the script) writes the new value back.
    """
    widget = widget or f"{key}_widget"
    if key in st.session_state:
        st.session_state[widget] = st.session_state[key]

    def remember() -> None:
        st.session_state[key] = st.session_state[widget]
        if on_change is not None:
            on_change()

    return {"key": widget, "on_change": remember}


def keep_valid(key: str, options: Sequence[object], default: object) -> None:
    """Set the state `key` to `default` when it is not one of `options` (absent, or from an old
    or edited bookmark, which is said in one warning naming the parameter), before a widget is
    seeded from it."""
    value = st.session_state.get(key)
    if value not in options:
        if value not in (None, ""):
            warn_reset(key)
        st.session_state[key] = default


def warn_reset(key: str) -> None:
    """Say that the address bar's `key` was not understood and is back to its default."""
    st.warning(f"The link's {key}= was not understood; it is back to its default.")
