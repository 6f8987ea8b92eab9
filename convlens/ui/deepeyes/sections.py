"""The three sections of the DeepEyes page: every one drawn, one shown.

A section switch is a click students make again and again, and drawing a whole section anew
(six charts for Layer) took the browser half a second on a 2-core machine. So each section stays
drawn in the page, in a container of its own that CSS hides while another is shown
(`hidden_sections_style`; `content-visibility` lets the browser skip laying it out), and the
section picker runs as a fragment of its own: a switch changes one style element, and the browser
shows what it has drawn already (docs/performance.md, "DeepEyes' sections").

Each section is a fragment of the page with its own snapshot slider (bound to one state), so that
a click in the section on screen (a snapshot, a filter, a threshold) reruns that section only. A
hidden section is drawn with the arguments it was last shown with (`SectionArguments`: the run's
snapshots, the snapshot, the thresholds), also when the whole page reruns: its charts stay as they
are and cost the browser nothing. Switching to a section drawn with other arguments than the one
shown reruns the page, which draws it anew (`switch_needs_redraw`).
"""

from __future__ import annotations

import dataclasses

import streamlit as st

from convlens.ui.deepeyes.controls import Thresholds, section_picker
from convlens.ui.state import DEEPEYES_SECTIONS

# Session keys: the arguments each section was last drawn with, and the section last shown.
DRAWN_WITH = "_deepeyes_drawn_with"
SHOWN = "_deepeyes_shown"
# The container of the style element, hidden by the style itself (a style element applies wherever
# it is). Not `st.html`: a style alone goes to Streamlit's event container, where a toast sent by
# a section's button replaced it, and the hidden sections showed until the picker ran again.
STYLE_KEY = "deepeyes_sections_style"


@dataclasses.dataclass(frozen=True)
class SectionArguments:
    """What a section shows: a run, its snapshots, one of them, under some thresholds."""

    run_path: str
    steps: tuple[int, ...]
    step: int
    limits: Thresholds

    def same_snapshots(self, other: SectionArguments) -> bool:
        """Whether `other` is of the same run with the same snapshots recorded."""
        return (self.run_path, self.steps) == (other.run_path, other.steps)


def container_key(section: str) -> str:
    """The key of `section`'s container (Streamlit gives it the class `st-key-<key>`)."""
    return f"deepeyes_section_{section}"


def hidden_sections_style(shown: str) -> str:
    """The style element that hides every section but `shown`, and its own container.

    `content-visibility: hidden` keeps a hidden section's drawing and skips its layout;
    `visibility: hidden` hides it where a browser lacks the first (and from screen readers and
    the keyboard); the negative margin takes back the gap Streamlit leaves after an element, on
    the layout wrapper that Streamlit (1.67) puts around a container."""
    hidden = [f".st-key-{container_key(name)}" for name in DEEPEYES_SECTIONS if name != shown]
    wrappers = [f"[data-testid='stLayoutWrapper']:has(> {selector})" for selector in hidden]
    own = [f".st-key-{STYLE_KEY}", f"[data-testid='stLayoutWrapper']:has(> .st-key-{STYLE_KEY})"]
    return (
        f"<style>{', '.join(hidden)} {{ content-visibility: hidden; visibility: hidden; "
        f"height: 0; overflow: hidden; }} {', '.join([*hidden, *wrappers])} "
        f"{{ margin-bottom: -1rem; }} {', '.join(own)} {{ display: none; }}</style>"
    )


def section_arguments(section: str, shown: str, current: SectionArguments) -> SectionArguments:
    """Return the arguments to draw `section` with, and remember them: `current` for the `shown`
    section, for one not drawn before and for one drawn for another run or other snapshots (a
    run still training); otherwise the arguments it was last drawn with."""
    drawn: dict[str, SectionArguments] = st.session_state.setdefault(DRAWN_WITH, {})
    last = drawn.get(section)
    if last is None or section == shown or not last.same_snapshots(current):
        drawn[section] = current
    st.session_state[SHOWN] = shown
    return drawn[section]


def switch_needs_redraw(live: bool) -> bool:
    """Whether the section just picked must be drawn anew: always while the run trains (the
    section shown follows its new snapshots, the others do not), otherwise when it was drawn with
    other arguments than the section shown before it (another snapshot or thresholds set since)."""
    if live:
        return True
    drawn: dict[str, SectionArguments] = st.session_state.get(DRAWN_WITH, {})
    picked = drawn.get(st.session_state.get("de_view"))
    return picked is not None and picked != drawn.get(st.session_state.get(SHOWN))


def section_switch(live: bool) -> None:
    """Draw the section picker and the style that shows its section; `live`: the run trains.
    Run as a fragment: a switch to a section drawn with the shown one's arguments reruns nothing
    else; any other switch reruns the page before the picked section is shown."""

    def note_switch() -> None:
        """Remember the section picked as shown; rerun the page when it must be drawn anew."""
        redraw = switch_needs_redraw(live)
        st.session_state[SHOWN] = st.session_state["de_view"]
        if redraw:
            st.rerun()

    shown = section_picker(on_change=note_switch)
    with st.container(key=STYLE_KEY):
        st.markdown(hidden_sections_style(shown), unsafe_allow_html=True)
