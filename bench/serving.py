"""A lecture hall on one server: the server's CPU seconds per page view, with many browsers.

The app starts as the README starts it (`python -m convlens app`), with the shipped models'
statistics prepared beforehand (as `convlens prepare` or the first start leaves them). For each
view below, one warm-up load is not counted; then one browser alone opens it (its settle time:
until Streamlit's script has finished), then SESSIONS browser tabs open it at once. The server's CPU time (utime + stime of its process, from
/proc/<pid>/stat, so that the browsers' own CPU does not count) over those loads, divided by
their number, is the figure that transfers between machines. Memory: the server's resident size
after the single view and its peak during the concurrent ones.

Goal (issue 17): <= 0.25 CPU-seconds per view for every view (100 students on 2 cores within
about 12 s), no failed load, memory at SESSIONS within 1.5x of one. Last line:
cpu_s_per_view=<the worst view's>.

With --proxy the browsers reach the app through HAProxy set up as docs/haproxy.cfg (its static
file cache included; one app process), as the README advises for a class: Debian's `haproxy`.

Run: .venv/bin/python bench/serving.py [--sessions 30] [--views home,network,...] [--proxy]
    [--home DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_FLAGS,
    SERVER_PIDS,
    app_server,
    prepare_as_first_start,
    process_cpu_seconds,
)

VIEWS = {
    "home": "/home",
    "network": "/network?layer=_blocks.2._depthwise_conv",
    "filters": "/filters?layer=_blocks.2._depthwise_conv&filter=3",
    "filters-guided": "/filters?layer=_blocks.2._depthwise_conv&filter=3"
    "&show=guided%20back-propagation",
    "cnnvis": "/cnnvis?model=fashion_basecnn&image=fashion-mnist%3Atest%3A0",
    "deepeyes-layer": "/deepeyes?run=fashion_deepeyes&de_view=layer",
    "annotations": "/annotations",
}


HAPROXY_CONFIG = ROOT / "docs" / "haproxy.cfg"


@contextlib.contextmanager
def behind_haproxy(app_url: str) -> Iterator[str]:
    """Serve `app_url` through HAProxy configured as docs/haproxy.cfg (one app process, on a free
    local port); yield the proxy's URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app_address = app_url.split("//", 1)[1].rstrip("/")
    config, binds = re.subn(r"bind \*:8501", f"bind 127.0.0.1:{port}", HAPROXY_CONFIG.read_text())
    config, servers = re.subn(r"\n    server app\d .*", "", config)
    if binds != 1 or servers == 0:
        raise SystemExit(f"{HAPROXY_CONFIG} no longer has the bind and server lines this expects")
    config += f"    server app1 {app_address} check cookie app1\n"
    folder = Path(tempfile.mkdtemp(prefix="convlens-proxy-"))
    (folder / "haproxy.cfg").write_text(config)
    proxy = subprocess.Popen(["haproxy", "-db", "-f", str(folder / "haproxy.cfg")])
    try:
        for _ in range(100):
            if proxy.poll() is not None:
                raise SystemExit(f"haproxy stopped (exit status {proxy.returncode})")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.1)
        else:
            raise SystemExit(f"haproxy did not listen on port {port} within 10 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        proxy.terminate()
        proxy.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


SETTLED = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    return app && app.getAttribute('data-test-script-state') === 'notRunning'
        && !document.querySelector('[data-testid="stSkeleton"]');
}"""


async def open_view(context, url: str, timeout_ms: float) -> float:
    page = await context.new_page()
    start = time.perf_counter()
    try:
        await page.goto(url, timeout=timeout_ms)
        await page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_ms)
        await asyncio.sleep(0.3)  # the script starts after the websocket opens
        await page.wait_for_function(SETTLED, timeout=timeout_ms)
        return time.perf_counter() - start
    finally:
        await page.close()


async def measure(base: str, pid: int, views: dict[str, str], sessions: int) -> list[dict]:
    from playwright.async_api import async_playwright

    results = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
        )
        for name, path in views.items():
            url = base + path
            fresh = await browser.new_context(viewport={"width": 1280, "height": 720})
            await open_view(fresh, url, 300_000)  # warm-up: caches filled, not counted
            await fresh.close()
            alone = await browser.new_context(viewport={"width": 1280, "height": 720})
            settle = await open_view(alone, url, 300_000)
            await alone.close()
            rss_one = rss_mb(pid)
            peak = [rss_one]
            stop = threading.Event()

            def watch(peak: list[float] = peak, stop: threading.Event = stop) -> None:
                while not stop.is_set():
                    peak[0] = max(peak[0], rss_mb(pid))
                    time.sleep(0.2)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            contexts = [
                await browser.new_context(viewport={"width": 1280, "height": 720})
                for _ in range(sessions)
            ]
            cpu_before = process_cpu_seconds(pid)
            outcomes = await asyncio.gather(
                *(open_view(context, url, 600_000) for context in contexts),
                return_exceptions=True,
            )
            # the server finishes its last scripts after the browsers see them settle
            await asyncio.sleep(1.0)
            cpu = process_cpu_seconds(pid) - cpu_before
            stop.set()
            watcher.join()
            for context in contexts:
                await context.close()
            failures = [o for o in outcomes if isinstance(o, BaseException)]
            results.append(
                {
                    "view": name,
                    "cpu_s_per_view": cpu / sessions,
                    "settle_s": settle,
                    "rss_1_mb": rss_one,
                    "rss_peak_mb": peak[0],
                    "failures": len(failures),
                }
            )
            print(
                f"{name:15s} cpu/view {cpu / sessions:6.3f} s  settle alone {settle:5.2f} s  "
                f"rss {rss_one:6.0f} -> {peak[0]:6.0f} MB ({peak[0] / rss_one:4.2f}x)  "
                f"failures {len(failures)}/{sessions}",
                flush=True,
            )
        await browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--views", default=",".join(VIEWS), help="comma-separated view names")
    parser.add_argument(
        "--proxy", action="store_true", help="through HAProxy as docs/haproxy.cfg sets it up"
    )
    parser.add_argument(
        "--home", help="a ConvLens home prepared before (default: a fresh one, prepared now)"
    )
    args = parser.parse_args()
    if args.proxy and shutil.which("haproxy") is None:
        parser.error("--proxy needs HAProxy (Debian: apt install haproxy)")
    views = {name: VIEWS[name] for name in args.views.split(",")}

    home = Path(args.home or tempfile.mkdtemp(prefix="convlens-serving-"))
    os.environ["CONVLENS_HOME"] = str(home)

    prepare_as_first_start()
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(
            app_server(
                {"CONVLENS_HOME": str(home), "CONVLENS_PREPARE": "0"},
                timeout=300,
                launcher="convlens",
            )
        )
        pid = SERVER_PIDS[url]
        base = stack.enter_context(behind_haproxy(url)) if args.proxy else url
        print(
            f"server pid {pid}, {args.sessions} sessions a view, {os.cpu_count()} cores"
            + (", behind HAProxy (docs/haproxy.cfg)" if args.proxy else "")
        )
        results = asyncio.run(measure(base, pid, views, args.sessions))
    worst = max(results, key=lambda r: r["cpu_s_per_view"])
    print(f"worst view: {worst['view']}; failures: {sum(r['failures'] for r in results)}")
    print(f"cpu_s_per_view={worst['cpu_s_per_view']:.3f}")


if __name__ == "__main__":
    main()
