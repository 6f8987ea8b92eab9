"""A real app server and a real Chromium for end-to-end tests and benchmarks (see shared/TESTING.md)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--no-pings",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]


# The process behind each URL that `app_server` serves, for tests that watch the server itself.
SERVER_PIDS: dict[str, int] = {}


def server_rss_mb(url: str) -> float:
    """The resident memory of the app server behind `url`, in MB."""
    status = Path(f"/proc/{SERVER_PIDS[url]}/status").read_text()
    return (
        int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
        / 1024
    )


def process_cpu_seconds(pid: int) -> float:
    """The CPU seconds (user + system) that process `pid` has used so far, its finished threads
    included (/proc/<pid>/stat, in clock ticks of 10 ms): a server's own, not its browsers'."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


# The script runs that finished, counted from the document's start as the server reports them
# (a ForwardMsg whose field 6, script_finished, is any status but FINISHED_EARLY_FOR_RERUN = 2):
# a click is made on a settled page, so a count above the one before it means that a script run
# started by the click has finished. (Watching the page's script-state attribute instead misses a
# run that starts and finishes within one render of the page: it never shows "running".)
RUN_COUNTER = """
window.__scriptRuns = 0;
const finishedRun = (bytes) => {
    let i = 0;
    const varint = () => {
        let value = 0, shift = 0, byte;
        do { byte = bytes[i++]; value += (byte & 0x7f) * 2 ** shift; shift += 7; } while (byte & 0x80);
        return value;
    };
    while (i < bytes.length) {
        const key = varint(), field = Math.floor(key / 8), wire = key % 8;
        if (wire === 0) { const value = varint(); if (field === 6) return value !== 2; }
        // a length-delimited field: `i += varint()` would add the length to `i` as it was
        // before the length was read, one byte short
        else if (wire === 2) { const length = varint(); i += length; }
        else if (wire === 1) i += 8;
        else if (wire === 5) i += 4;
        else return false;
    }
    return false;
};
const NativeWebSocket = window.WebSocket;
window.WebSocket = class extends NativeWebSocket {
    constructor(...args) {
        super(...args);
        this.addEventListener('message', (event) => {
            if (event.data instanceof ArrayBuffer && finishedRun(new Uint8Array(event.data)))
                window.__scriptRuns += 1;
            // a page that sets window.__messages to a list logs each message's time and size
            // (bench/click_anatomy.py)
            if (Array.isArray(window.__messages))
                window.__messages.push([performance.timeOrigin + performance.now(),
                    event.data.byteLength || 0]);
            // one that sets window.__texts to a list logs each message's text (decoded as UTF-8:
            // the strings the script sent are readable in it), to tell what a run sent
            if (Array.isArray(window.__texts) && event.data instanceof ArrayBuffer)
                window.__texts.push(new TextDecoder().decode(event.data));
        });
    }
};
"""


def prepare_as_first_start() -> None:
    """Prepare `$CONVLENS_HOME` as the app's first start does (the shipped models' statistics and
    DeepEyes maps, on the server's threads), so that a benchmark measures the app, not its first
    start; stop the benchmark when the preparation fails."""
    from convlens.ui.launch import PREPARATION, prepare_shipped_models, use_serving_threads

    print(
        "preparing the shipped models' statistics and maps (as the first start does)…", flush=True
    )
    use_serving_threads()
    os.environ["CONVLENS_PREPARE"] = "1"
    prepare_shipped_models()
    if PREPARATION.error:
        raise SystemExit(f"the preparation failed: {PREPARATION.error}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def app_server(
    env: dict[str, str] | None = None, timeout: float = 120, launcher: str = "streamlit"
) -> Iterator[str]:
    """Start the app on a free local port; yield its URL; stop it afterwards.

    `launcher` is "streamlit" (`streamlit run app.py`) or "convlens" (`python -m convlens app`,
    the README's command, which warms up the imports while the browser loads).
    """
    port = free_port()
    home = tempfile.mkdtemp(prefix="convlens-home-")
    environment = {**os.environ, "HOME": home, **(env or {})}
    start = (
        ["streamlit", "run", str(ROOT / "app.py")]
        if launcher == "streamlit"
        else ["convlens", "app"]
    )
    command = [
        sys.executable,
        "-m",
        *start,
        "--server.headless",
        "true",
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
    ]
    log = Path(home) / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    SERVER_PIDS[url] = process.pid
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the app did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(home, ignore_errors=True)


@dataclass
class BrowserLog:
    """What the page did that a test checks: requests that left 127.0.0.1, console errors."""

    outside_requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)


@contextmanager
def browser_page(width: int = 1600, height: int = 1000) -> Iterator[tuple[object, BrowserLog]]:
    """Yield a Playwright page in Debian's Chromium that may only reach 127.0.0.1."""
    from playwright.sync_api import sync_playwright

    log = BrowserLog()
    profile = tempfile.mkdtemp(prefix="convlens-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                user_data_dir=profile,
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_FLAGS,
                viewport={"width": width, "height": height},
            )

            def route(route) -> None:
                request_url = route.request.url
                if request_url.startswith(
                    ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:", "about:")
                ):
                    route.continue_()
                else:
                    log.outside_requests.append(request_url)
                    route.abort()

            context.route("**/*", route)
            page = context.pages[0] if context.pages else context.new_page()
            page.on(
                "console",
                lambda message: (
                    log.console_errors.append(message.text) if message.type == "error" else None
                ),
            )
            page.on("pageerror", lambda error: log.console_errors.append(str(error)))
            try:
                yield page, log
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def wait_for_app(page, timeout: float = 120_000) -> None:
    """Wait until Streamlit has finished running the page script."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout)
    page.wait_for_function(
        """() => {
            const app = document.querySelector('[data-testid="stApp"]');
            return app && app.getAttribute('data-test-script-state') === 'notRunning';
        }""",
        timeout=timeout,
    )


CANVAS_INK = """(canvas) => {
    const context = canvas.getContext('2d');
    const { width, height } = canvas;
    if (!width || !height) return 0;  // not laid out yet
    const pixels = context.getImageData(0, 0, width, height).data;
    let ink = 0;
    for (let i = 0; i < pixels.length; i += 4) {
        const a = pixels[i + 3], r = pixels[i], g = pixels[i + 1], b = pixels[i + 2];
        if (a > 0 && !(r > 245 && g > 245 && b > 245)) ink++;
    }
    return ink;
}"""


def chain_canvas_ink(page, timeout: float = 60_000) -> int:
    """Wait for the chain's canvas inside the agraph iframe and return how many pixels are drawn."""
    from playwright.sync_api import Error as PlaywrightError

    frame = page.frame_locator('iframe[title="streamlit_agraph.agraph"]')
    canvas = frame.locator("canvas").first
    canvas.wait_for(timeout=timeout)
    deadline = time.monotonic() + timeout / 1000
    ink = 0
    while time.monotonic() < deadline:
        with contextlib.suppress(PlaywrightError):  # the iframe may be replaced meanwhile
            ink = canvas.evaluate(CANVAS_INK)
        if ink > 500:
            break
        time.sleep(0.2)
    return ink


CHAIN_COLOUR_AT = """([canvas, rgb]) => {
    const context = canvas.getContext('2d');
    const { width, height } = canvas;
    if (!width || !height) return null;  // a chain being redrawn
    const pixels = context.getImageData(0, 0, width, height).data;
    const scale = canvas.getBoundingClientRect().width / width;
    for (let y = 0; y < height; y += 2) {
        for (let x = 0; x < width; x += 2) {
            const i = (y * width + x) * 4;
            if (Math.abs(pixels[i] - rgb[0]) < 6 && Math.abs(pixels[i + 1] - rgb[1]) < 6
                && Math.abs(pixels[i + 2] - rgb[2]) < 6) {
                return [x * scale, y * scale];
            }
        }
    }
    return null;
}"""


def click_colour(page, rgb: tuple[int, int, int]) -> None:
    """Click the first pixel of colour `rgb` (top to bottom) in the chain's canvas."""
    frame = page.frame_locator('iframe[title="streamlit_agraph.agraph"]')
    canvas = frame.locator("canvas").first
    point = canvas.evaluate(f"(canvas) => ({CHAIN_COLOUR_AT})([canvas, {list(rgb)}])")
    assert point is not None, f"no node of colour {rgb} on the chain"
    canvas.click(position={"x": point[0] + 3, "y": point[1] + 3})


def require_chromium() -> None:
    """Skip the calling test module when Chromium is missing, except in CI, where it is an error."""
    import pytest

    if Path(CHROMIUM).exists():
        return
    if os.environ.get("CI"):
        raise RuntimeError("Chromium is missing: the README's test command installs it")
    pytest.skip(
        "Chromium is not installed (the README's test command installs it)", allow_module_level=True
    )
