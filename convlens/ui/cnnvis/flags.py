"""The quality flags under the CNNVis picture: impure clusters, redundant and dead neurons."""

from __future__ import annotations

import pandas as pd
import streamlit as st

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


def outlined(flags: list[QualityFlag], key: str) -> set[tuple[str, int]]:
    """The neurons of the flag selected in the table `key` (read before the picture is drawn)."""
    chosen = (st.session_state.get(key) or {}).get("selection", {}).get("rows") or []
    if not chosen or chosen[0] >= len(flags):
        return set()
    flag = flags[chosen[0]]
    return {(flag.layer, neuron) for neuron in flag.neurons}
