"""AppTest of the Training page served to a room: the trainer cap, runs managed only by the
browser that started them or by the instructor."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_app_training import SMALL, new_run, open_training

from convlens.paths import convlens_home
from convlens.ui.owner import _OWNER


def copied_run(name: str, owner: str | None) -> Path:
    """A finished run in $CONVLENS_HOME/runs, started by `owner` (None: from the command line)."""
    folder = new_run(name)
    shutil.rmtree(folder)
    shutil.copytree(SMALL, folder)
    if owner is not None:
        (folder / "owner").write_text(owner + "\n")
    return folder


def buttons(at) -> set[str]:
    return {button.label for button in at.button}


def test_a_start_beyond_the_cap_is_said_and_starts_nothing(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CONVLENS_MAX_TRAINERS", "0")
    at = open_training()
    at.button(key="FormSubmitter:start_run-Start training").click().run()
    assert not at.exception
    assert any("the most this server allows" in w.value for w in at.warning)
    assert not [p for p in (convlens_home() / "runs").glob("*") if p.is_dir()]


def test_a_browser_manages_its_own_runs_only(monkeypatch: pytest.MonkeyPatch):
    mine = "a" * 32
    copied_run("mine", mine)
    copied_run("theirs", "b" * 32)
    at = open_training({_OWNER: mine, "run": "mine"})
    assert "Delete for good" in buttons(at)
    at = open_training({_OWNER: mine, "run": "theirs"})
    assert "Delete for good" not in buttons(at), "no Delete for another browser's run"
    assert any("Only the browser that started this run" in c.value for c in at.caption)


def test_the_instructor_manages_every_run(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CONVLENS_INSTRUCTOR_KEY", "lecture-key")
    copied_run("theirs", "b" * 32)
    at = open_training({_OWNER: "a" * 32, "run": "theirs"})
    assert "Delete for good" not in buttons(at)
    at.text_input(key="instructor_key_input").set_value("wrong").run()
    assert any("not the instructor key" in e.value for e in at.error)
    at.text_input(key="instructor_key_input").set_value("lecture-key").run()
    assert not at.exception
    assert "Delete for good" in buttons(at), "the instructor may delete any user's run"
