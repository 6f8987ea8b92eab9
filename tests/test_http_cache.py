"""The component files' and media files' lifetimes in browsers (`convlens.ui.http_cache`), by
calling the ASGI middleware around a stand-in app that answers as Streamlit's routes do."""

import asyncio

import pytest

from convlens.ui.http_cache import FilesKept, is_component_file, is_media_file


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
    asyncio.run(FilesKept(component_route, base_path="")(scope, receive, send))
    assert [message["type"] for message in sent] == ["http.response.start", "http.response.body"]
    assert sent[1]["body"] == b"script"
    headers: dict[bytes, list[bytes]] = {}
    for name, value in sent[0]["headers"]:
        headers.setdefault(name.lower(), []).append(value)
    return headers


@pytest.mark.parametrize(
    ("path", "base", "kept"),
    [
        ("/media/8e2f0c1d2b3a4f5e6d7c8b9a0f1e2d3c4b5a69788796a5b4c3d2e1f0.png", "", True),
        ("/media/0123abcd.bin", "", True),
        ("/room/media/0123abcd.png", "/room/", True),
        ("/media/", "", False),
        ("/media", "", False),
        ("/media/a/b.png", "", False),
        ("/room/media/0123abcd.png", "", False),
        ("/static/media/logo.svg", "", False),  # Streamlit's own files keep Streamlit's headers
        ("/_stcore/upload_file/x/y", "", False),
    ],
)
def test_media_files_are_the_files_under_media(path: str, base: str, kept: bool) -> None:
    assert is_media_file(path, base) is kept


def test_a_media_file_is_kept_privately_for_a_day() -> None:
    headers = answer("/media/0123abcd.png")
    assert headers[b"cache-control"] == [b"private, max-age=86400, immutable"]
    assert headers[b"content-type"] == [b"text/javascript"]  # the stand-in route's, untouched


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
        ("/media/0123abcd.png", "HEAD", 200),
        ("/media/0123abcd.png", "GET", 404),  # a file no session holds any more
        ("/media/0123abcd.mp4", "GET", 206),  # a range of a video
    ],
)
def test_everything_else_keeps_its_headers(path: str, method: str, status: int) -> None:
    assert answer(path, method, status)[b"cache-control"] == [b"public"]
