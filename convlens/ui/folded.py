"""Folded sections whose content the page draws only while they are open.

A folded element still costs every browser its drawing on each redraw of the page (a chart about
0.04 s, a table about 0.02 s on this project's 2-core machine), so a section that most visits
leave folded is drawn only once a user opens it; opening or folding it reruns the page.
"""

from __future__ import annotations

import streamlit as st
from streamlit.elements.lib.mutable_expander_container import ExpanderContainer


def _drawn(key: str) -> str:
    return f"_folded_{key}"


def is_open(key: str, expanded: bool = False) -> bool:
    """Whether the section `key` is open in this run: as the user left it, or `expanded` until
    the user opens or folds it, and again whenever `expanded` changes. Read before the section is
    drawn (e.g. to outline what a table in it selects)."""
    drawn = st.session_state.get(_drawn(key))
    if drawn is None or drawn[0] != expanded:
        return expanded
    toggled = st.session_state.get(key)  # the user's last click on it, before it is drawn again
    return drawn[1] if toggled is None else bool(toggled)


def folded_section(label: str, key: str, expanded: bool = False) -> ExpanderContainer | None:
    """An expander labelled `label`, open as `is_open` says; returns it while it is open, to draw
    its content in, and None while it is folded.

    Streamlit tells expanders apart by their label and starting state as well as their key, and
    gives a new one its starting state: a label that counts what the section holds would fold it
    on every change of the count. The state is kept under `key` instead and given as the start."""
    section = st.expander(label, expanded=is_open(key, expanded), key=key, on_change="rerun")
    st.session_state[_drawn(key)] = (expanded, bool(section.open))
    return section if section.open else None
