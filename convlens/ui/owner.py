"""Who this browser is: an owner id for the runs it starts and the name its annotations are made
under, each kept in a cookie, and the instructor.

The owner id and the name survive a reload of the same browser and a bookmark opened in it (a
cookie that Streamlit reads through `st.context.cookies` when a session starts, set by a small
script); another browser, or the same one in a private window, is another owner and types its
name again. The instructor types the server's `--instructor-key` once per session and may then
manage every run (`convlens.runs.may_manage`).
"""

from __future__ import annotations

import json
import re
import secrets
import unicodedata
from urllib.parse import unquote

import streamlit as st

from convlens.access import instructor_key

OWNER_COOKIE = "convlens_owner"
AUTHOR_COOKIE = "convlens_author"
AUTHOR = "author"  # the session's state: the name typed on the Filters page
AUTHOR_CHARS = 100  # a name's length at most: 100 characters of any script fit in a cookie
COOKIE_LIFETIME = 31_536_000  # a year, in seconds
_OWNER = "_browser_owner"
_AUTHOR_KEPT = "_author_in_cookie"
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
            _set_cookie(OWNER_COOKIE, owner)
        st.session_state[_OWNER] = owner
    return owner


def cookie_script(name: str, value: str, lifetime: int = COOKIE_LIFETIME) -> str:
    """Return the script that sets this browser's cookie `name` to `value` for `lifetime` seconds
    (0 deletes it). The value reaches the script as a JSON string with `<` escaped, so that any
    character of a typed name, `</script>` included, stays inside it."""
    literal = json.dumps(value).replace("<", "\\u003c")
    return (
        f"<script>document.cookie = '{name}=' + encodeURIComponent({literal}) + "
        f"'; path=/; max-age={lifetime}; SameSite=Strict';</script>"
    )


def _set_cookie(name: str, value: str, lifetime: int = COOKIE_LIFETIME) -> None:
    st.html(cookie_script(name, value, lifetime), unsafe_allow_javascript=True)


def clean_author(name: object) -> str:
    """A name as the annotations store it and the cookie keeps it: without control characters
    (a cookie comes from the browser: it may hold anything), spaces of every kind kept, trimmed,
    at most AUTHOR_CHARS (a cookie holds about 4 kB)."""
    text = "".join(c for c in str(name) if unicodedata.category(c) not in ("Cc", "Cs"))
    return text.strip()[:AUTHOR_CHARS].strip()


def seed_author() -> None:
    """Start the session's name from the one this browser typed last (its cookie), once."""
    if AUTHOR not in st.session_state:
        cookie = st.context.cookies.get(AUTHOR_COOKIE, "")
        name = clean_author(unquote(cookie)) if isinstance(cookie, str) else ""
        st.session_state[AUTHOR] = name
        st.session_state[_AUTHOR_KEPT] = name


def remember_author(name: str) -> None:
    """Keep `name` in this browser's cookie for its later sessions, or forget it when the name
    was cleared (a shared machine's next user is asked again); written when it changed."""
    if st.session_state.get(_AUTHOR_KEPT, "") != name:
        st.session_state[_AUTHOR_KEPT] = name
        _set_cookie(AUTHOR_COOKIE, name, COOKIE_LIFETIME if name else 0)


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
