"""How long browsers keep the files of the app's custom components (the Network page's chain).

Streamlit sends a component's files with `Cache-Control: public` and neither a lifetime nor a
validator, so a browser fetches them again on every visit of a page that shows the component:
0.37 MB (the chain's script and style) for each return to Network, and on a lecture room's
Wi-Fi that is 100 students' worth. This middleware gives them a day's lifetime, as
`docs/haproxy.cfg` does behind the proxy. The frame's own page (`index.html`) is still fetched on
every visit, so an upgraded component whose build names its scripts by their content's hash (as
streamlit-agraph's does) reaches browsers at once, and its other files within a day.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

COMPONENT_FILE_MAX_AGE = 86_400
KEPT = f"public, max-age={COMPONENT_FILE_MAX_AGE}".encode()

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Message, Receive, Send], Awaitable[None]]


def is_component_file(path: str, base_path: str = "") -> bool:
    """Whether `path` asks for a file of a custom component other than its frame's page:
    `/<base>/component/<name>/<file>`, where `<file>` is not empty and is not an HTML page."""
    prefix = "/" + "/".join(part for part in (base_path.strip("/"), "component") if part) + "/"
    if not path.startswith(prefix):
        return False
    name, _, file = path[len(prefix) :].partition("/")
    return bool(name) and bool(file) and not file.endswith("/") and not file.endswith(".html")


class ComponentFilesKept:
    """ASGI middleware: the successful responses to GET requests of component files
    (`is_component_file`) get `Cache-Control: public, max-age=86400`; nothing else changes."""

    def __init__(self, app: ASGIApp, base_path: str | None = None) -> None:
        self.app = app
        self.base_path = base_path

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") != "GET"
            or not is_component_file(scope.get("path", ""), self.configured_base())
        ):
            await self.app(scope, receive, send)
            return

        async def send_kept(message: Message) -> None:
            if message["type"] == "http.response.start" and message.get("status") == 200:
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() != b"cache-control"
                ]
                message = {**message, "headers": [*headers, (b"cache-control", KEPT)]}
            await send(message)

        await self.app(scope, receive, send_kept)

    def configured_base(self) -> str:
        if self.base_path is not None:
            return self.base_path
        from streamlit import config

        return config.get_option("server.baseUrlPath") or ""
