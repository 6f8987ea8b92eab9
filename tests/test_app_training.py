"""AppTest of the Training page: its form starts a run only from its button."""

from __future__ import annotations

import os
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "pages" / "training.py")
TIMEOUT = 60


def open_training(state: dict | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    for key, value in (state or {}).items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def blocks(node):
    """Yield every block under `node` (the page's tree), depth first."""
    for child in getattr(node, "children", {}).values():
        if hasattr(child, "children"):
            yield child
            yield from blocks(child)


def test_enter_in_a_field_of_the_form_does_not_start_a_run():
    at = open_training()
    forms = [block for block in blocks(at._tree) if block.type == "form"]
    assert [form.proto.form.form_id for form in forms] == ["start_run"]
    assert forms[0].proto.form.enter_to_submit is False
    # only the button submits: a changed field alone starts nothing
    at.number_input(key="train_epochs").set_value(2).run()
    assert not at.exception
    assert not (Path(os.environ["CONVLENS_HOME"]) / "runs").exists()
    assert not at.success
