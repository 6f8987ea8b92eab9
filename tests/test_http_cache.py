"""The component files' lifetime in browsers (`convlens.ui.http_cache`), by calling the ASGI
middleware around a stand-in app that answers as Streamlit's component route does."""

import asyncio

import pytest

from convlens.ui.http_cache import ComponentFilesKept, is_component_file


@pytest.mark.parametrize(
    ("path", "base", "kept"),
    [
        ("/component/streamlit_agraph.agraph/static/js/main.df689717.chunk.js", "", True),
        ("/component/streamlit_agraph.agraph/bootstrap.min.css", "", True),
        ("/room/component/streamlit_agraph.agraph/bootstrap.min.css", "/room/", True),
        ("/component/streamlit_agraph.agraph/index.html", "", False),  # the frame's page
        ("/component/streamlit_agraph.agraph/", "", False),
        ("/component/streamlit_agraph.agraph", "", False),
        ("/component//main.js", "", False),
        ("/component/streamlit_agraph.agraph/static/", "", False),
        ("/static/js/index.js", "", False),  # Streamlit's own files keep Streamlit's headers
        ("/_stcore/health", "", False),
        ("/network", "", False),
        ("/component/streamlit_agraph.agraph/bootstrap.min.css", "room", False),
    ],
)
def test_only_component_files_other_than_the_frames_page_are_kept(
    path: str, base: str, kept: bool
) -> None:
    assert is_component_file(path, base) is kept


def answer(path: str, method: str = "GET", status: int = 200) -> dict[bytes, list[bytes]]:
    """The headers that the middleware lets through for a request of `path`."""

    async def component_route(scope, receive, send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"text/javascript"), (b"Cache-Control", b"public")],
            }
        )
        await send({"type": "http.response.body", "body": b"script"})

    sent = []

    async def send(message) -> None:
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": method, "path": path}
    asyncio.run(ComponentFilesKept(component_route, base_path="")(scope, receive, send))
    assert [message["type"] for message in sent] == ["http.response.start", "http.response.body"]
    assert sent[1]["body"] == b"script"
    headers: dict[bytes, list[bytes]] = {}
    for name, value in sent[0]["headers"]:
        headers.setdefault(name.lower(), []).append(value)
    return headers


def test_a_component_file_gets_a_days_lifetime_instead_of_streamlits_header() -> None:
    headers = answer("/component/streamlit_agraph.agraph/static/js/main.js")
    assert headers[b"cache-control"] == [b"public, max-age=86400"]
    assert headers[b"content-type"] == [b"text/javascript"]


@pytest.mark.parametrize(
    ("path", "method", "status"),
    [
        ("/component/streamlit_agraph.agraph/index.html", "GET", 200),
        ("/component/streamlit_agraph.agraph/static/js/main.js", "HEAD", 200),
        ("/component/streamlit_agraph.agraph/static/js/gone.js", "GET", 404),
        ("/static/js/index.js", "GET", 200),
    ],
)
def test_everything_else_keeps_its_headers(path: str, method: str, status: int) -> None:
    assert answer(path, method, status)[b"cache-control"] == [b"public"]
