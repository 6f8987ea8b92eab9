"""The quality flags under the CNNVis picture: impure clusters, redundant and dead neurons."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from convlens.annotations import counted
from convlens.cnnvis.view import QualityFlag


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


def selected_flag(key: str) -> int | None:
    """The row selected in the flags table `key`, if any."""
    chosen = (st.session_state.get(key) or {}).get("selection", {}).get("rows") or []
    return chosen[0] if chosen else None


def outlined(flags: list[QualityFlag], key: str) -> set[tuple[str, int]]:
    """The neurons of the flag selected in the table `key` (read before the picture is drawn)."""
    chosen = selected_flag(key)
    if chosen is None or chosen >= len(flags):
        return set()
    flag = flags[chosen]
    return {(flag.layer, neuron) for neuron in flag.neurons}
