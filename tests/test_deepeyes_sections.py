"""Which arguments each DeepEyes section is drawn with, and when a section switch must redraw the
page (`convlens.ui.deepeyes.sections`), on a plain dict as the session state."""

from __future__ import annotations

import pytest
import streamlit as st

from convlens.ui.deepeyes.controls import Thresholds
from convlens.ui.deepeyes.sections import (
    SectionArguments,
    hidden_sections_style,
    section_arguments,
    switch_needs_redraw,
)
from convlens.ui.state import DEEPEYES_SECTIONS

LIMITS = Thresholds(stability=0.05, dead_maximum=1e-6, always_on=0.9)
STEPS = (100, 900, 5628)


@pytest.fixture
def state(monkeypatch: pytest.MonkeyPatch) -> dict:
    state: dict = {}
    monkeypatch.setattr(st, "session_state", state)
    return state


def shown_at(step: int, run: str = "runs/a", steps=STEPS, limits=LIMITS) -> SectionArguments:
    return SectionArguments(run, steps, step, limits)


def drawn(shown: str, current: SectionArguments) -> dict[str, SectionArguments]:
    """Draw every section as a whole page's run does; return what each was drawn with."""
    return {name: section_arguments(name, shown, current) for name in DEEPEYES_SECTIONS}


def test_a_first_view_draws_every_section_as_the_shown_one(state: dict):
    assert drawn("layer", shown_at(5628)) == dict.fromkeys(DEEPEYES_SECTIONS, shown_at(5628))


def test_hidden_sections_keep_what_they_were_drawn_with_and_a_switch_to_them_redraws(state: dict):
    drawn("layer", shown_at(5628))
    # the slider moved in Layer: that section's fragment alone reruns
    assert section_arguments("layer", "layer", shown_at(900)) == shown_at(900)
    after = drawn("layer", shown_at(900))  # then the page, for another reason
    assert after["layer"] == shown_at(900)
    assert after["training"] == after["diagnosis"] == shown_at(5628)
    state["de_view"] = "training"
    assert switch_needs_redraw(False)
    state["de_view"] = "layer"  # the shown section picked again
    assert not switch_needs_redraw(False)
    drawn("training", shown_at(900))  # the page redrew Training
    state["de_view"] = "layer"
    assert not switch_needs_redraw(False), "Layer was drawn at 900 too"
    state["de_view"] = "diagnosis"
    assert switch_needs_redraw(False)


def test_thresholds_set_in_one_section_redraw_another_when_it_is_shown(state: dict):
    drawn("training", shown_at(5628))
    raised = Thresholds(stability=0.3, dead_maximum=1e-6, always_on=0.9)
    section_arguments("training", "training", shown_at(5628, limits=raised))
    state["de_view"] = "diagnosis"
    assert switch_needs_redraw(False)


def test_another_run_or_a_new_snapshot_redraws_every_section(state: dict):
    drawn("layer", shown_at(5628))
    section_arguments("layer", "layer", shown_at(900))
    other = shown_at(50, run="runs/b", steps=(50,))
    assert set(drawn("layer", other).values()) == {other}
    drawn("layer", shown_at(900))
    grown = shown_at(6000, steps=(*STEPS, 6000))  # a run still training recorded one more
    assert set(drawn("layer", grown).values()) == {grown}


def test_a_switch_while_the_run_trains_always_redraws(state: dict):
    drawn("layer", shown_at(5628))
    state["de_view"] = "training"
    assert not switch_needs_redraw(False)
    assert switch_needs_redraw(True)


def test_a_page_without_sections_asks_for_a_redraw_only_while_the_run_trains(state: dict):
    """A run just started has no snapshot: its sections have drawn nothing yet, and the one
    picked must follow the first snapshot when it lands."""
    state["de_view"] = "diagnosis"
    assert not switch_needs_redraw(False)
    assert switch_needs_redraw(True)


@pytest.mark.parametrize("shown", ["training", "layer", "diagnosis"])
def test_the_style_hides_the_two_other_sections_and_its_own_container(shown: str):
    style = hidden_sections_style(shown)
    assert style.endswith(
        ".st-key-deepeyes_sections_style, [data-testid='stLayoutWrapper']:has(> "
        ".st-key-deepeyes_sections_style) { display: none; }</style>"
    )
    selectors = style[len("<style>") : style.index("{")]
    hidden = {name for name in ("training", "layer", "diagnosis") if name != shown}
    assert {part.strip() for part in selectors.split(",")} == {
        f".st-key-deepeyes_section_{name}" for name in hidden
    }
