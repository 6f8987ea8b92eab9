"""The README's "Teach a lecture" walk: every bookmark opens exactly its view, with no warning."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from streamlit.testing.v1 import AppTest

from convlens.ui.state import URL_STATE

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 180


def lecture_links() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Teach a lecture", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"<(http://localhost:8501/[^>]+)>", section)


def test_the_walk_names_every_teaching_page() -> None:
    pages = {urlsplit(link).path for link in lecture_links()}
    assert {"/network", "/filters", "/cnnvis", "/training", "/deepeyes"} <= pages


@pytest.mark.parametrize("link", lecture_links())
def test_a_lecture_bookmark_opens_its_exact_view(link: str) -> None:
    parts = urlsplit(link)
    query = dict(parse_qsl(parts.query))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    for key, value in query.items():
        at.query_params[key] = value
    at.switch_page(f"pages{parts.path}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert not at.warning, [w.value for w in at.warning]
    for key, value in query.items():
        assert key in URL_STATE, key
        assert str(at.session_state[key]) == value, key
