"""The browser's name for its annotations, kept in a cookie: the script that writes it and what
is read back (the browser itself: tests/test_browser_owner.py)."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from convlens.ui.owner import AUTHOR_CHARS, clean_author, cookie_script


def test_the_cookie_script_keeps_any_name_inside_its_string() -> None:
    """A typed name reaches the cookie's script as a JSON string whose `<` is escaped: no
    `</script>` ends the script early, no quote ends the string."""
    script = cookie_script("convlens_author", 'a</script><b id="x">\'"\u2028', 60)
    body = script.removeprefix("<script>").removesuffix("</script>")
    assert "<" not in body and "\\u003c/script" in body
    assert "max-age=60;" in body and "encodeURIComponent(" in body
    assert "max-age=0;" in cookie_script("convlens_author", "", 0)


@pytest.mark.parametrize(
    ("cookie", "name"),
    [
        ("ana", "ana"),
        ("%E5%B1%B1%E7%94%B0%E3%80%80%E5%A4%AA%E9%83%8E", "山田\u3000太郎"),  # spaces of any kind
        ("Jean%C2%A0Pierre", "Jean\xa0Pierre"),
        ("%00ana%0A%09", "ana"),  # control characters go
        ("%E0%A4%A", "\ufffd%A"),  # a broken escape is text, not an error
        ("%20" * 5 + "x" * 300, "x" * AUTHOR_CHARS),
    ],
)
def test_a_cookies_name_is_read_back_clean(cookie: str, name: str) -> None:
    assert clean_author(unquote(cookie)) == name
