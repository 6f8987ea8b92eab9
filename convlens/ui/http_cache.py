"""How long browsers keep the files of the app's custom components (the Network page's chain)
and its media files (the pictures of `st.image`).

Streamlit sends a component's files with `Cache-Control: public` and neither a lifetime nor a
validator, so a browser fetches them again on every visit of a page that shows the component:
0.37 MB (the chain's script and style) for each return to Network, and on a lecture room's
Wi-Fi that is 100 students' worth. This middleware gives them a day's lifetime, as
`docs/haproxy.cfg` does behind the proxy. The frame's own page (`index.html`) is still fetched on
every visit, so an upgraded component whose build names its scripts by their content's hash (as
streamlit-agraph's does) reaches browsers at once, and its other files within a day.

Media files come with no caching header at all, so a page shown again fetched each of its
pictures again (Filters with a filter selected: a dozen). Streamlit names a media file by a hash
of its content, so its address always gives the same bytes: a browser may keep it for a day
without asking again, privately (a picture of a student's upload stays in her browser).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

COMPONENT_FILE_MAX_AGE = 86_400
KEPT = f"public, max-age={COMPONENT_FILE_MAX_AGE}".encode()
MEDIA_FILE_MAX_AGE = 86_400
MEDIA_KEPT = f"private, max-age={MEDIA_FILE_MAX_AGE}, immutable".encode()

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Message, Receive, Send], Awaitable[None]]


def _route(base_path: str, name: str) -> str:
    """Return the path prefix of Streamlit's route `name` under the app's `base_path`."""
    return "/" + "/".join(part for part in (base_path.strip("/"), name) if part) + "/"


def is_component_file(path: str, base_path: str = "") -> bool:
    """Whether `path` asks for a file of a custom component other than its frame's page:
    `/<base>/component/<name>/<file>`, where `<file>` is not empty and is not an HTML page."""
    prefix = _route(base_path, "component")
    if not path.startswith(prefix):
        return False
    name, _, file = path[len(prefix) :].partition("/")
    return bool(name) and bool(file) and not file.endswith("/") and not file.endswith(".html")


def is_media_file(path: str, base_path: str = "") -> bool:
    """Whether `path` asks for one of Streamlit's media files: `/<base>/media/<file>`, where
    `<file>` (its content's hash and an extension) is not empty."""
    prefix = _route(base_path, "media")
    file = path[len(prefix) :] if path.startswith(prefix) else ""
    return bool(file) and "/" not in file


def is_static_file(path: str, base_path: str = "") -> bool:
    """Whether `path` asks for one of Streamlit's own static files: `/<base>/static/<file>`."""
    prefix = _route(base_path, "static")
    return path.startswith(prefix) and len(path) > len(prefix)


def configured_base_path() -> str:
    """The app's base path, as Streamlit is configured (`server.baseUrlPath`)."""
    from streamlit import config

    return config.get_option("server.baseUrlPath") or ""


def cache_control(path: str, base_path: str = "") -> bytes | None:
    """The `Cache-Control` header a successful GET of `path` gets instead of Streamlit's, None
    where Streamlit's stays."""
    if is_component_file(path, base_path):
        return KEPT
    if is_media_file(path, base_path):
        return MEDIA_KEPT
    return None


class FilesKept:
    """ASGI middleware: the successful responses to GET requests of component files and media
    files get their lifetimes in browsers (`cache_control`); nothing else changes."""

    def __init__(self, app: ASGIApp, base_path: str | None = None) -> None:
        self.app = app
        self.base_path = base_path

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        kept = (
            cache_control(scope.get("path", ""), self.configured_base())
            if scope["type"] == "http" and scope.get("method") == "GET"
            else None
        )
        if kept is None:
            await self.app(scope, receive, send)
            return

        async def send_kept(message: Message) -> None:
            if message["type"] == "http.response.start" and message.get("status") == 200:
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() != b"cache-control"
                ]
                message = {**message, "headers": [*headers, (b"cache-control", kept)]}
            await send(message)

        await self.app(scope, receive, send_kept)

    def configured_base(self) -> str:
        return configured_base_path() if self.base_path is None else self.base_path
