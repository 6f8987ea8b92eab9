"""The files of the page that are the same for every browser, answered from memory and compressed
once: Streamlit's own static files (the page's scripts, styles and fonts) and the files of the
custom components (the chain's script and style).

A browser new to the app loads about 110 static files, 4.3 MB. Streamlit reads each from disk and
sends it uncompressed to every browser (its gzip middleware leaves static paths out, since
compressing on every request cost more than it saved): on the 2-core development machine 0.2
CPU-seconds of the server per student's first page, about as much as the page itself, and 4.3 MB
per student over the lecture room's Wi-Fi. A component's files it reads from disk and compresses
anew for every browser (a tenth of a Network view's CPU). Streamlit's static files are named by
their content's hash and marked `public, immutable`; a component's files get a day's public
lifetime (`http_cache.FilesKept`). So `StaticFilesInMemory` keeps the answer to such a file the
first time a browser asks for it (for as long as its lifetime says), compresses it once with gzip
(in a worker thread), and answers every later request from memory, compressed for the browsers
that accept it: 0.07 CPU-seconds and 1.5 MB per new browser for the static files
(docs/performance.md). Streamlit still answers everything else, and decides what a path is: an
answer it did not mark public with a lifetime (a page, an unknown file, a traversal, a picture of a
student's upload) is never kept, nor a request with a range or a condition, nor a path written
another way than plainly (`//`, `/./`). What is kept is bounded in files and bytes (Streamlit's
static folder holds ~360 files, 25 MB); beyond that, Streamlit answers as before.
"""

from __future__ import annotations

import asyncio
import gzip
import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass

from convlens.ui.http_cache import (
    ASGIApp,
    Message,
    Receive,
    Send,
    configured_base_path,
    is_component_file,
    is_static_file,
)

MAX_FILE_BYTES = 8_000_000
MAX_KEPT_BYTES = 64_000_000
MAX_KEPT_FILES = 1_000
MAX_PATH_CHARS = 300
GZIP_LEVEL = 6
# Kept compressed only where gzip saves at least a tenth (scripts and styles: two thirds or more).
MIN_SAVING = 0.1
# An answer is kept only if it may be kept this long at least (a component's files: a day).
MIN_LIFETIME_SECONDS = 3_600
# The request headers that ask for part of a file or for an answer only if it changed: Streamlit
# answers those itself.
CONDITIONS = (b"range", b"if-none-match", b"if-modified-since", b"if-match", b"if-range")
# Headers that the kept answer gets anew: its length and encoding, and that it varies with
# the request's accepted encodings.
REPLACED = (b"content-length", b"content-encoding", b"vary")


@dataclass(frozen=True)
class KeptFile:
    """One file's answer: its headers (but `REPLACED`), its body, the body compressed with gzip
    (None where gzip does not save enough), and when it expires (on the middleware's clock)."""

    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    gzipped: bytes | None
    expires: float

    @property
    def size(self) -> int:
        return len(self.body) + len(self.gzipped or b"")


def accepts_gzip(scope: Message) -> bool:
    """Whether the request's `Accept-Encoding` takes gzip (`gzip` or `*`, with a weight above 0)."""
    accepted = b",".join(
        value for name, value in scope.get("headers", []) if name == b"accept-encoding"
    )
    for part in accepted.decode("latin-1").split(","):
        coding, _, parameters = part.strip().partition(";")
        if coding.strip().lower() not in ("gzip", "*"):
            continue
        weight = parameters.strip().removeprefix("q=").strip() if parameters else "1"
        try:
            if float(weight) > 0:
                return True
        except ValueError:
            continue
    return False


def lifetime(headers: list[tuple[bytes, bytes]]) -> float | None:
    """The seconds for which an answer with these headers may be given to any browser: its
    `max-age` if it is public, sets no cookie, and is immutable or lives `MIN_LIFETIME_SECONDS`
    at least; else None."""
    if any(name.lower() == b"set-cookie" for name, _ in headers):
        return None
    control = b",".join(value for name, value in headers if name.lower() == b"cache-control")
    directives = [part.strip().lower() for part in control.split(b",")]
    if b"public" not in directives:
        return None
    ages = [part.removeprefix(b"max-age=") for part in directives if part.startswith(b"max-age=")]
    try:
        age = float(ages[0]) if ages else None
    except ValueError:
        return None
    if b"immutable" in directives:
        return float("inf") if age is None else age
    return age if age is not None and age >= MIN_LIFETIME_SECONDS else None


def compressed(body: bytes, content_type: bytes) -> bytes | None:
    """`body` compressed with gzip, or None where it is not worth it (pictures and fonts are
    compressed already)."""
    if content_type.startswith((b"image/", b"font/", b"audio/", b"video/")) and not (
        content_type.startswith(b"image/svg")
    ):
        return None
    packed = gzip.compress(body, GZIP_LEVEL, mtime=0)
    return packed if len(packed) <= (1 - MIN_SAVING) * len(body) else None


class StaticFilesInMemory:
    """ASGI middleware: the static files of Streamlit and of the components answered from memory
    while their lifetime lasts, gzipped for the browsers that accept it (see the module's text)."""

    def __init__(
        self,
        app: ASGIApp,
        max_files: int = MAX_KEPT_FILES,
        max_bytes: int = MAX_KEPT_BYTES,
        base_path: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.max_files = max_files
        self.max_bytes = max_bytes
        self.base_path = base_path
        self.clock = clock
        self.kept: dict[str, KeptFile] = {}
        self.kept_bytes = 0
        self.asked: set[str] = set()  # being answered by Streamlit for the first time

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if not self._may_keep(scope):
            await self.app(scope, receive, send)
            return
        kept = self.kept.get(path)
        if kept is not None and kept.expires <= self.clock():
            del self.kept[path]
            self.kept_bytes -= len(path) + kept.size
            kept = None
        if kept is not None:
            await self._answer(kept, accepts_gzip(scope), send)
            return
        if path in self.asked or not self._has_room(path, 0):
            await self.app(scope, receive, send)
            return
        self.asked.add(path)
        try:
            answer = await self._passed_on(scope, receive, send)
            if answer is not None:
                await self._keep(path, *answer)
        finally:
            self.asked.discard(path)

    def _may_keep(self, scope: Message) -> bool:
        """A GET of a whole static file of Streamlit or of a component, by its plain name, without
        conditions."""
        if scope["type"] != "http" or scope.get("method") != "GET":
            return False
        path = scope.get("path", "")
        # one name per file: `/static//js/a.js` or `/static/./js/a.js` would be the same file kept
        # again under another name (a browser asks by the page's own, plain names)
        if len(path) > MAX_PATH_CHARS or posixpath.normpath(path) != path:
            return False
        if any(name in CONDITIONS for name, _ in scope.get("headers", [])):
            return False
        base = configured_base_path() if self.base_path is None else self.base_path
        return is_static_file(path, base) or is_component_file(path, base)

    def _has_room(self, path: str, size: int) -> bool:
        return (
            len(self.kept) < self.max_files and self.kept_bytes + len(path) + size <= self.max_bytes
        )

    async def _passed_on(
        self, scope: Message, receive: Receive, send: Send
    ) -> tuple[list[tuple[bytes, bytes]], bytes, float] | None:
        """Let Streamlit answer the request, uncompressed, and return that answer's headers, body
        and lifetime if it is a whole file small enough to keep."""
        start: Message | None = None
        chunks: list[bytes] = []
        size = 0
        keepable = True

        async def send_on(message: Message) -> None:
            nonlocal start, size, keepable
            if message["type"] == "http.response.start":
                start = message
                keepable = message.get("status") == 200
            elif message["type"] == "http.response.body" and keepable:
                body = message.get("body", b"")
                size += len(body)
                keepable = size <= MAX_FILE_BYTES
                chunks.append(body)
            else:
                keepable = False  # a file sent by path, not bytes, is not seen here
            await send(message)

        # asked without accepting gzip (the answer is compressed once, here), and without the
        # extensions that send a file by its path, so that its bytes pass here
        headers = [
            (name, value) for name, value in scope.get("headers", []) if name != b"accept-encoding"
        ]
        extensions = {
            name: value
            for name, value in (scope.get("extensions") or {}).items()
            if name not in ("http.response.pathsend", "http.response.zerocopysend")
        }
        await self.app({**scope, "headers": headers, "extensions": extensions}, receive, send_on)
        if start is None or not keepable:
            return None
        answer_headers = list(start.get("headers", []))
        seconds = lifetime(answer_headers)
        if seconds is None:
            return None
        return answer_headers, b"".join(chunks), seconds

    async def _keep(
        self, path: str, headers: list[tuple[bytes, bytes]], body: bytes, seconds: float
    ) -> None:
        content_type = next((v for n, v in headers if n.lower() == b"content-type"), b"")
        gzipped = await asyncio.to_thread(compressed, body, content_type.lower())
        kept = KeptFile(
            tuple((n, v) for n, v in headers if n.lower() not in REPLACED),
            body,
            gzipped,
            self.clock() + seconds,
        )
        if path not in self.kept and self._has_room(path, kept.size):
            self.kept[path] = kept
            self.kept_bytes += len(path) + kept.size

    @staticmethod
    async def _answer(kept: KeptFile, gzip_accepted: bool, send: Send) -> None:
        body = kept.gzipped if gzip_accepted and kept.gzipped is not None else kept.body
        headers = [*kept.headers, (b"content-length", str(len(body)).encode())]
        if kept.gzipped is not None:
            headers.append((b"vary", b"Accept-Encoding"))
            if body is kept.gzipped:
                headers.append((b"content-encoding", b"gzip"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
