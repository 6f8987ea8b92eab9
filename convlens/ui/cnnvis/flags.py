"""The quality flags under the CNNVis picture: impure clusters, redundant and dead neurons."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from convlens.annotations import counted
from convlens.cnnvis.view import QualityFlag
from convlens.ui.folded import folded_section, is_open

# The page's own flags: their folded section, and the table whose selected row is outlined.
FLAGS_SECTION = "cnnvis_flags_section"
FLAGS_TABLE = "cnnvis_flags"


def flags_section(flags: list[QualityFlag], model: str | None = None) -> None:
    """The flags folded under their counts (`flags_summary`), the table drawn while it is open:
    the page's own (no `model`) select the neurons to outline, a compared model's only list."""
    section = folded_section(
        flags_summary(flags, model), f"{FLAGS_SECTION}_{model}" if model else FLAGS_SECTION
    )
    if section is not None:
        with section:
            flags_table(flags, None if model else FLAGS_TABLE)


def flags_table(flags: list[QualityFlag], key: str | None) -> None:
    """The quality flags; with a key, selecting a row outlines its neurons in the picture."""
    if not flags:
        st.caption("No impure clusters, redundant or dead neurons in the expanded layers.")
        return
    frame = pd.DataFrame(
        [{"layer": f.layer, "flag": f.flag, "where": f.where, "detail": f.detail} for f in flags]
    )
    if key is None:
        st.dataframe(frame, hide_index=True, width="stretch")
        return
    st.caption("Select a row to outline its neurons in the picture.")
    st.dataframe(
        frame,
        hide_index=True,
        width="stretch",
        on_select="rerun",
        selection_mode="single-row",
        key=key,
    )


def flags_summary(flags: list[QualityFlag], model: str | None = None) -> str:
    """The flags counted in a line ("Quality flags: 2 impure clusters, 5 dead neurons"; "Quality
    flags of `model`: …"), the label of their folded table: the picture keeps the first screen,
    the counts say whether to open it."""
    impure = sum(flag.flag == "impure cluster" for flag in flags)
    redundant = sum(flag.flag == "redundant neurons" for flag in flags)
    dead = sum(len(flag.neurons) for flag in flags if flag.flag == "dead neurons")
    parts = [
        counted(impure, "impure cluster"),
        counted(redundant, "group") + " of redundant neurons",
        counted(dead, "dead neuron"),
    ]
    title = f"Quality flags of {model}" if model else "Quality flags"
    return f"{title}: " + ", ".join(parts)


def selected_flag() -> int | None:
    """The row selected in the page's flags table, if any, while the table is open."""
    if not is_open(FLAGS_SECTION):
        return None
    chosen = (st.session_state.get(FLAGS_TABLE) or {}).get("selection", {}).get("rows") or []
    return chosen[0] if chosen else None


def outlined(flags: list[QualityFlag]) -> set[tuple[str, int]]:
    """The neurons of the flag selected in the page's table (read before the picture is drawn)."""
    chosen = selected_flag()
    if chosen is None or chosen >= len(flags):
        return set()
    flag = flags[chosen]
    return {(flag.layer, neuron) for neuron in flag.neurons}
