"""Streamlit's static files answered from memory, gzipped once (`convlens.ui.static_files`): around
a stand-in route that answers as Streamlit's static files do, and on the real server."""

from __future__ import annotations

import asyncio
import gzip
import posixpath
import re
import time
import urllib.request
from pathlib import Path

import pytest
import streamlit

from browser import app_server
from convlens.ui.static_files import StaticFilesInMemory, accepts_gzip, lifetime

SCRIPT = b"function draw() { return 'the page'; }\n" * 2_000
PICTURE = bytes(range(256)) * 40  # gzip saves nothing
IMMUTABLE = b"public, immutable, max-age=31536000"
A_DAY = b"public, max-age=86400"  # a component's file, as `http_cache.FilesKept` answers it
COMPONENT_SCRIPT = "/component/streamlit_agraph.agraph/static/js/main.abc123.js"
COMPONENT_PAGE = "/component/streamlit_agraph.agraph/index.html"
FILES = {
    "/static/js/index.abc123.js": (b"text/javascript; charset=utf-8", SCRIPT, IMMUTABLE),
    "/static/media/logo.abc123.png": (b"image/png", PICTURE, IMMUTABLE),
    COMPONENT_SCRIPT: (b"text/javascript", SCRIPT, A_DAY),
    COMPONENT_PAGE: (b"text/html", b"<html>the frame</html>", b"public"),
}


class StreamlitStatic:
    """Answers as Streamlit's routes: a file with its lifetime, sent in chunks, a component's
    compressed for a client that takes gzip (Streamlit's gzip middleware); any other path the page
    (index.html) with no-cache; counts the requests it answered."""

    def __init__(self, cookie: bool = False) -> None:
        self.answered: list[str] = []
        self.cookie = cookie

    async def __call__(self, scope, receive, send) -> None:
        path = scope["path"]
        self.answered.append(path)
        page = (b"text/html", b"<html>the page</html>", b"no-cache")
        content_type, body, lifetime = FILES.get(posixpath.normpath(path), page)
        headers = [(b"content-type", content_type), (b"etag", b'"e1"')]
        if path.startswith("/component/") and accepts_gzip(scope):
            body = gzip.compress(body)
            headers += [(b"content-encoding", b"gzip"), (b"vary", b"Accept-Encoding")]
        headers += [(b"content-length", str(len(body)).encode()), (b"cache-control", lifetime)]
        if self.cookie:
            headers.append((b"set-cookie", b"session=1"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for at in range(0, len(body), 4096):
            last = at + 4096 >= len(body)
            await send(
                {"type": "http.response.body", "body": body[at : at + 4096], "more_body": not last}
            )


def get(app, path: str, **headers: str) -> tuple[dict[bytes, bytes], bytes]:
    """GET `path` through `app`; return the answer's headers (lower-case names) and body."""
    sent = []

    async def send(message) -> None:
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "headers": [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()],
    }
    asyncio.run(app(scope, receive, send))
    start, *bodies = sent
    assert start["status"] == 200
    return {k.lower(): v for k, v in start["headers"]}, b"".join(m.get("body", b"") for m in bodies)


def test_a_hashed_file_is_asked_of_streamlit_once_then_answered_from_memory_gzipped() -> None:
    streamlit_route = StreamlitStatic()
    app = StaticFilesInMemory(streamlit_route, base_path="")
    path = "/static/js/index.abc123.js"

    first_headers, first = get(app, path, accept_encoding="gzip, deflate, br")
    assert first == SCRIPT and b"content-encoding" not in first_headers  # Streamlit's own answer

    headers, body = get(app, path, accept_encoding="gzip, deflate, br")
    assert streamlit_route.answered == [path]
    assert headers[b"content-encoding"] == b"gzip"
    assert gzip.decompress(body) == SCRIPT
    assert len(body) < len(SCRIPT) / 10
    assert headers[b"content-length"] == str(len(body)).encode()
    assert headers[b"vary"] == b"Accept-Encoding"
    assert headers[b"cache-control"] == IMMUTABLE
    assert headers[b"content-type"] == b"text/javascript; charset=utf-8"

    plain_headers, plain = get(app, path)  # a client that takes no gzip
    assert plain == SCRIPT and b"content-encoding" not in plain_headers
    assert plain_headers[b"content-length"] == str(len(SCRIPT)).encode()
    assert streamlit_route.answered == [path]


def test_a_file_that_gzip_does_not_shrink_is_kept_as_it_is() -> None:
    streamlit_route = StreamlitStatic()
    app = StaticFilesInMemory(streamlit_route, base_path="")
    path = "/static/media/logo.abc123.png"
    get(app, path, accept_encoding="gzip")
    headers, body = get(app, path, accept_encoding="gzip")
    assert body == PICTURE and b"content-encoding" not in headers and b"vary" not in headers
    assert streamlit_route.answered == [path]


def test_a_components_file_is_kept_for_its_lifetime_and_compressed_once() -> None:
    now = [0.0]
    streamlit_route = StreamlitStatic()
    app = StaticFilesInMemory(streamlit_route, base_path="", clock=lambda: now[0])
    first_headers, first = get(app, COMPONENT_SCRIPT, accept_encoding="gzip")
    assert first == SCRIPT  # Streamlit asked for it uncompressed, to keep it
    headers, body = get(app, COMPONENT_SCRIPT, accept_encoding="gzip")
    assert headers[b"content-encoding"] == b"gzip" and gzip.decompress(body) == SCRIPT
    assert headers[b"cache-control"] == A_DAY
    now[0] = 86_399.0
    get(app, COMPONENT_SCRIPT, accept_encoding="gzip")
    assert streamlit_route.answered == [COMPONENT_SCRIPT]
    now[0] = 86_400.0  # its day is over: asked again, and kept for another
    get(app, COMPONENT_SCRIPT, accept_encoding="gzip")
    get(app, COMPONENT_SCRIPT, accept_encoding="gzip")
    assert streamlit_route.answered == [COMPONENT_SCRIPT] * 2
    assert app.kept_bytes == len(COMPONENT_SCRIPT) + app.kept[COMPONENT_SCRIPT].size


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/", {}),  # the page: no-cache
        (COMPONENT_PAGE, {}),  # the frame's page: no lifetime
        ("/network", {}),
        ("/static/js/gone.js", {}),  # not a file: Streamlit answers with the page
        ("/static//js/index.abc123.js", {}),  # the same file by another name
        ("/static/./js/index.abc123.js", {}),
        ("/static/js/index.abc123.js", {"range": "bytes=0-99"}),
        ("/static/js/index.abc123.js", {"if_none_match": '"e1"'}),
        ("/static/js/index.abc123.js/" + "x" * 400, {}),
    ],
)
def test_pages_unknown_paths_and_conditional_requests_go_to_streamlit_every_time(
    path: str, headers: dict[str, str]
) -> None:
    streamlit_route = StreamlitStatic()
    app = StaticFilesInMemory(streamlit_route, base_path="")
    for _ in range(3):
        get(app, path, accept_encoding="gzip", **headers)
    assert streamlit_route.answered == [path] * 3
    assert app.kept == {}


def test_an_answer_that_sets_a_cookie_is_never_kept() -> None:
    streamlit_route = StreamlitStatic(cookie=True)
    app = StaticFilesInMemory(streamlit_route, base_path="")
    for _ in range(2):
        get(app, "/static/js/index.abc123.js", accept_encoding="gzip")
    assert len(streamlit_route.answered) == 2 and app.kept == {}


def test_what_is_kept_stays_within_its_files_and_bytes() -> None:
    streamlit_route = StreamlitStatic()
    by_files = StaticFilesInMemory(streamlit_route, max_files=1, base_path="")
    for path in [*FILES, *FILES]:
        get(by_files, path, accept_encoding="gzip")
    assert list(by_files.kept) == ["/static/js/index.abc123.js"]
    assert streamlit_route.answered.count("/static/media/logo.abc123.png") == 2

    by_bytes = StaticFilesInMemory(StreamlitStatic(), max_bytes=len(SCRIPT) // 2, base_path="")
    for _ in range(2):
        get(by_bytes, "/static/js/index.abc123.js", accept_encoding="gzip")
    assert by_bytes.kept == {} and by_bytes.kept_bytes == 0


@pytest.mark.parametrize(
    ("accepted", "gzip_taken"),
    [
        ("gzip, deflate, br", True),
        ("br;q=1.0, gzip;q=0.8", True),
        ("*", True),
        ("GZIP", True),
        ("gzip;q=0", False),
        ("identity", False),
        ("br", False),
        ("gzip;q=nonsense", False),
        ("", False),
    ],
)
def test_gzip_is_sent_only_to_clients_that_accept_it(accepted: str, gzip_taken: bool) -> None:
    assert accepts_gzip({"headers": [(b"accept-encoding", accepted.encode())]}) is gzip_taken


def test_the_served_app_sends_streamlits_scripts_gzipped_and_equal_to_its_files() -> None:
    static = Path(streamlit.__file__).parent / "static"
    with app_server(launcher="convlens") as url:
        with urllib.request.urlopen(url) as response:
            page = response.read().decode()
        scripts = re.findall(r'src="\.?/?(static/js/[^"]+\.js)"', page)
        assert scripts, "the page names its scripts"
        script = scripts[0]
        wanted = {"Accept-Encoding": "gzip, deflate, br"}
        encodings = []
        for _ in range(50):  # kept once the first answer's copy is compressed, a moment later
            request = urllib.request.Request(f"{url}/{script}", headers=wanted)
            with urllib.request.urlopen(request) as response:
                encodings.append(response.headers.get("Content-Encoding"))
                body = response.read()
            if encodings[-1] == "gzip":
                break
            time.sleep(0.1)
        assert encodings[0] is None, "the first browser gets Streamlit's own answer"
        assert encodings[-1] == "gzip", "later browsers get the kept, compressed script"
        assert gzip.decompress(body) == (static / script).read_bytes()
        with urllib.request.urlopen(f"{url}/{script}") as response:
            assert response.headers.get("Content-Encoding") is None
            assert response.read() == (static / script).read_bytes()
        with urllib.request.urlopen(urllib.request.Request(url, headers=wanted)) as response:
            assert response.headers.get("Content-Encoding") is None  # the page: Streamlit's


@pytest.mark.parametrize(
    ("control", "seconds"),
    [
        (b"public, immutable, max-age=31536000", 31_536_000.0),
        (b"public, immutable", float("inf")),
        (b"public, max-age=86400", 86_400.0),
        (b"public, max-age=60", None),  # too short to be worth keeping
        (b"public", None),
        (b"private, max-age=86400, immutable", None),  # one browser's own (a media file)
        (b"no-cache", None),
        (b"public, max-age=soon", None),
    ],
)
def test_only_public_answers_with_a_long_lifetime_are_kept(
    control: bytes, seconds: float | None
) -> None:
    assert lifetime([(b"cache-control", control)]) == seconds
