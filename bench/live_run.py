"""A room watching a run train: the server's CPU while many tabs follow a live run.

The Training page and DeepEyes refresh every `RUN_REFRESH_SECONDS` while a run trains, each tab on
its own timer. This trains a DeepEyes network with `convlens train` (its own process, snapshots
every 50 steps), starts the app as the README does on a fresh home (no preparation: these views
need none), opens each view below in TABS tabs of one Chromium, waits until each has drawn its
first run, and prints the server's CPU over the next WINDOW seconds (utime + stime from
/proc/<pid>/stat: the trainer and the browsers do not count): in cores, and in CPU-seconds per
tab and refresh. Last line: cpu_s_per_refresh=<the worst view's>.

No goal: a 2-core server has 2 CPU-s a second, so TABS / RUN_REFRESH_SECONDS refreshes a second
at that cost each is the share of the server a room watching takes. DeepEyes also analyses each
new snapshot (once for all tabs), which the window counts too: its figure varies with how many
snapshots land in it.

Run: .venv/bin/python bench/live_run.py [--tabs 10] [--window 20] [--views training,deepeyes]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_FLAGS,
    SERVER_PIDS,
    app_server,
    process_cpu_seconds,
)
from convlens.style import RUN_REFRESH_SECONDS  # noqa: E402

RUN = "live"
# The page has drawn its first run: a chart, and no script running.
FIRST_RUN_DONE = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    return app && app.getAttribute('data-test-script-state') === 'notRunning'
        && document.querySelector('[data-testid="stVegaLiteChart"]') !== null;
}"""
VIEWS = {
    "training": f"/training?run={RUN}",
    "deepeyes": f"/deepeyes?run={RUN}&de_view=training",
}


def start_trainer(home: Path) -> subprocess.Popen:
    """Train a DeepEyes network into `home`'s run `RUN`, for longer than the benchmark lasts."""
    command = [sys.executable, "-m", "convlens", "train", "--arch", "deepeyes", "--epochs", "50"]
    command += ["--out", str(home / "runs" / RUN), "--snapshot-every", "50"]
    environment = {**os.environ, "CONVLENS_HOME": str(home), "CONVLENS_OFFLINE": "1"}
    return subprocess.Popen(
        command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )


def server_cores(pid: int, seconds: float) -> float:
    """The cores the process `pid` used over the next `seconds`, on average."""
    cpu, start = process_cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (process_cpu_seconds(pid) - cpu) / (time.monotonic() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tabs", type=int, default=10)
    parser.add_argument("--window", type=float, default=20, help="seconds measured")
    parser.add_argument("--views", default=",".join(VIEWS), help="comma-separated view names")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    home = Path(tempfile.mkdtemp(prefix="convlens-live-"))
    environment = {"CONVLENS_HOME": str(home), "CONVLENS_PREPARE": "0", "CONVLENS_OFFLINE": "1"}
    trainer = start_trainer(home)
    worst = 0.0
    try:
        with (
            app_server(environment, timeout=300, launcher="convlens") as url,
            sync_playwright() as playwright,
        ):
            pid = SERVER_PIDS[url]
            while not (home / "runs" / RUN / "snapshots").is_dir():
                if trainer.poll() is not None:
                    raise SystemExit("the trainer stopped before its first snapshot")
                time.sleep(1)
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
            )
            print(
                f"server pid {pid}, {args.tabs} tabs a view, refresh every {RUN_REFRESH_SECONDS} s"
            )
            for name in args.views.split(","):
                profile = browser.new_context(viewport={"width": 1280, "height": 720})
                tabs = [profile.new_page() for _ in range(args.tabs)]
                for tab in tabs:
                    tab.goto(url + VIEWS[name], timeout=120_000)
                for tab in tabs:  # each tab's first run over: what is left are the refreshes
                    tab.wait_for_function(f"({FIRST_RUN_DONE})()", timeout=300_000)
                time.sleep(5)
                cores = server_cores(pid, args.window)
                per_refresh = cores * RUN_REFRESH_SECONDS / args.tabs
                worst = max(worst, per_refresh)
                print(
                    f"{name:10s} server {cores:.3f} cores, {per_refresh:.4f} CPU-s a tab's refresh",
                    flush=True,
                )
                profile.close()
            if trainer.poll() is not None:
                raise SystemExit("the trainer stopped during the measurement")
    finally:
        trainer.kill()
    print(f"cpu_s_per_refresh={worst:.4f}")


if __name__ == "__main__":
    main()
