"""Who this browser is, for the runs it starts: an owner id kept in a cookie, and the instructor.

The owner id survives a reload of the same browser (a cookie that Streamlit reads through
`st.context.cookies`, set once by a small script); another browser, or the same one in a private
window, is another owner. The instructor types the server's `--instructor-key` once per session
and may then manage every run (`convlens.runs.may_manage`).
"""

from __future__ import annotations

import re
import secrets

import streamlit as st

from convlens.access import instructor_key

OWNER_COOKIE = "convlens_owner"
_OWNER = "_browser_owner"
_INSTRUCTOR = "_instructor"


def browser_owner() -> str:
    """This browser's owner id, from its cookie, or a new one that is then stored in the cookie."""
    owner = st.session_state.get(_OWNER)
    if owner is None:
        cookie = st.context.cookies.get(OWNER_COOKIE, "")
        valid = isinstance(cookie, str) and re.fullmatch(r"[0-9a-f]{32}", cookie)  # AppTest: none
        owner = cookie if valid else None
        if owner is None:
            owner = secrets.token_hex(16)
            _set_cookie(owner)
        st.session_state[_OWNER] = owner
    return owner


def _set_cookie(owner: str) -> None:
    st.html(
        f"<script>document.cookie = '{OWNER_COOKIE}={owner}; path=/; max-age=31536000; "
        "SameSite=Strict';</script>",
        unsafe_allow_javascript=True,
    )


def is_instructor() -> bool:
    return bool(st.session_state.get(_INSTRUCTOR))


def instructor_box() -> None:
    """Where the instructor types the server's key (only when the server has one)."""
    key = instructor_key()
    if key is None or is_instructor():
        return
    with st.expander("Instructor"):
        typed = st.text_input(
            "Instructor key",
            type="password",
            key="instructor_key_input",
            help="The key the server was started with (`convlens app --instructor-key KEY`): "
            "this browser may then stop, resume or delete every run.",
        )
        if typed:
            if secrets.compare_digest(typed.strip(), key):
                st.session_state[_INSTRUCTOR] = True
                st.rerun()
            st.error("That is not the instructor key.")
