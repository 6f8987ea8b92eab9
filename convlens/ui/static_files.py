"""Streamlit's own static files (the page's scripts, styles and fonts) answered from memory,
compressed once.

A browser new to the app loads about 110 of them, 4.3 MB. Streamlit reads each from disk and
sends it uncompressed to every browser (its gzip middleware leaves static paths out, since
compressing on every request cost more than it saved): on the 2-core development machine 0.2
CPU-seconds of the server per student's first page, about as much as the page itself, and 4.3 MB
per student over the lecture room's Wi-Fi. These files are named by their content's hash, and
Streamlit marks them `public, immutable`: the same address always gives the same bytes. So
`StaticFilesInMemory` keeps Streamlit's answer for such a file the first time a browser asks for
it, compresses it once with gzip (in a worker thread), and answers every later request from
memory, compressed for the browsers that accept it: 0.07 CPU-seconds and 1.5 MB per new browser
(docs/performance.md). Streamlit still answers everything else, and decides what a path is: a
path it has not answered as an immutable file (a page, an unknown file, a traversal) is never
kept, nor a request with a range or a condition. What is kept is bounded in files and bytes
(Streamlit's static folder holds ~360 files, 25 MB); beyond that, Streamlit answers as before.
"""

from __future__ import annotations

import asyncio
import gzip
from dataclasses import dataclass

from convlens.ui.http_cache import ASGIApp, Message, Receive, Send

MAX_FILE_BYTES = 8_000_000
MAX_KEPT_BYTES = 64_000_000
MAX_KEPT_FILES = 1_000
MAX_PATH_CHARS = 300
GZIP_LEVEL = 6
# Kept compressed only where gzip saves at least a tenth (scripts and styles: two thirds or more).
MIN_SAVING = 0.1
# The request headers that ask for part of a file or for an answer only if it changed: Streamlit
# answers those itself.
CONDITIONS = (b"range", b"if-none-match", b"if-modified-since", b"if-match", b"if-range")
# Headers that the kept answer gets anew: its length and encoding, and that it varies with
# the request's accepted encodings.
REPLACED = (b"content-length", b"content-encoding", b"vary")


@dataclass(frozen=True)
class KeptFile:
    """Streamlit's answer for one immutable file: its headers (but `REPLACED`), its body, and the
    body compressed with gzip, or None where gzip does not save enough."""

    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    gzipped: bytes | None

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


def is_immutable(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether an answer's headers mark it one public, immutable file, which any browser may be
    given (no cookie set)."""
    names = {name.lower() for name, _ in headers}
    control = b",".join(value for name, value in headers if name.lower() == b"cache-control")
    directives = {part.strip().lower() for part in control.split(b",")}
    return b"set-cookie" not in names and {b"public", b"immutable"} <= directives


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
    """ASGI middleware: Streamlit's public, immutable files answered from memory, gzipped for the
    browsers that accept it (see the module's text)."""

    def __init__(
        self,
        app: ASGIApp,
        max_files: int = MAX_KEPT_FILES,
        max_bytes: int = MAX_KEPT_BYTES,
    ) -> None:
        self.app = app
        self.max_files = max_files
        self.max_bytes = max_bytes
        self.kept: dict[str, KeptFile] = {}
        self.kept_bytes = 0
        self.asked: set[str] = set()  # being answered by Streamlit for the first time

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if not self._plain_get(scope):
            await self.app(scope, receive, send)
            return
        kept = self.kept.get(path)
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

    @staticmethod
    def _plain_get(scope: Message) -> bool:
        """A GET of a whole file, without conditions, at a path of sensible length."""
        if scope["type"] != "http" or scope.get("method") != "GET":
            return False
        if len(scope.get("path", "")) > MAX_PATH_CHARS:
            return False
        return not any(name in CONDITIONS for name, _ in scope.get("headers", []))

    def _has_room(self, path: str, size: int) -> bool:
        return (
            len(self.kept) < self.max_files and self.kept_bytes + len(path) + size <= self.max_bytes
        )

    async def _passed_on(
        self, scope: Message, receive: Receive, send: Send
    ) -> tuple[list[tuple[bytes, bytes]], bytes] | None:
        """Let Streamlit answer the request, and return that answer's headers and body if it is a
        whole immutable file small enough to keep."""
        start: Message | None = None
        chunks: list[bytes] = []
        size = 0
        keepable = True

        async def send_on(message: Message) -> None:
            nonlocal start, size, keepable
            if message["type"] == "http.response.start":
                start = message
                keepable = message.get("status") == 200 and is_immutable(
                    list(message.get("headers", []))
                )
            elif message["type"] == "http.response.body" and keepable:
                body = message.get("body", b"")
                size += len(body)
                keepable = size <= MAX_FILE_BYTES
                chunks.append(body)
            else:
                keepable = False  # a file sent by path, not bytes, is not seen here
            await send(message)

        # without the extensions that send a file by its path, so that its bytes pass here
        extensions = {
            name: value
            for name, value in (scope.get("extensions") or {}).items()
            if name not in ("http.response.pathsend", "http.response.zerocopysend")
        }
        await self.app({**scope, "extensions": extensions}, receive, send_on)
        if start is None or not keepable:
            return None
        return list(start.get("headers", [])), b"".join(chunks)

    async def _keep(self, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        content_type = next((v for n, v in headers if n.lower() == b"content-type"), b"")
        gzipped = await asyncio.to_thread(compressed, body, content_type.lower())
        kept = KeptFile(
            tuple((n, v) for n, v in headers if n.lower() not in REPLACED), body, gzipped
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
