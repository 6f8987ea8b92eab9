"""Where one standard click's time goes: the server's rerun against the browser's drawing.

For a click of bench/interactions.py (its table CLICKS, its browser, its prepared home and its
clock), visits the click's two first inputs alternately, as that bench's cached visits do (the
first two visits untimed), and prints per visit:

- `settled`: the seconds until the page settles, as bench/interactions.py times them;
- `server`: until the page has handled the last message of the click's script run: at least the
  server's rerun and the transfer, more when the page's main thread, drawing what came before
  (Streamlit draws while the messages arrive), gets to the message late;
- `busy`, `script`, `layout`: the browser's main thread over the visit (Chromium's Performance
  metrics TaskDuration, ScriptDuration, LayoutDuration + RecalcStyleDuration): what drawing the
  page costs the browser, whichever frame it falls in;
- `kB`: what the server sent.

Last line: the medians. On this 2-core machine the browser and the server share the cores, and
two runs of the same code differ by ~0.02 s: compare versions within one run (e.g. visits that
alternate between two code paths picked by a query parameter), not across runs.

Run: .venv/bin/python bench/click_anatomy.py deepeyes-section [--visits 12] [--home H]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from interactions import (  # noqa: E402
    PAGE_DRAWN,
    clicks,
    open_url,
    prepared_home,
    runs,
    served_profile,
    wait_settled,
)

METRICS = ("TaskDuration", "ScriptDuration", "LayoutDuration", "RecalcStyleDuration")
COLUMNS = ("settled", "server", "busy", "script", "layout", "kB")


def main_thread(session) -> dict[str, float]:
    """The browser main thread's seconds so far, by Chromium's Performance metrics."""
    metrics = session.send("Performance.getMetrics")["metrics"]
    return {m["name"]: m["value"] for m in metrics if m["name"] in METRICS}


def visit(page, session, click, value) -> dict[str, float]:
    """Fire `click` on `value` and return where its time went (see the top)."""
    aim = click.aim(page, value)
    before = runs(page)
    # tests/browser.py's RUN_COUNTER logs each message from now: when (on the page's clock, like
    # the press) and how many bytes
    page.evaluate("() => { window.__pressedAt = null; window.__messages = []; }")
    start = main_thread(session)
    aim.fire()
    settled = wait_settled(page, f"{PAGE_DRAWN} && {aim.drawn}", before)
    end = main_thread(session)
    pressed = page.evaluate("() => window.__pressedAt")
    messages = page.evaluate("() => window.__messages")
    spent = {name: end[name] - start[name] for name in METRICS}
    return {
        "settled": (settled - pressed) / 1000,
        "server": (messages[-1][0] - pressed) / 1000 if messages else 0.0,
        "busy": spent["TaskDuration"],
        "script": spent["ScriptDuration"],
        "layout": spent["LayoutDuration"] + spent["RecalcStyleDuration"],
        "kB": sum(size for _, size in messages) / 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("click", help="a click of bench/interactions.py, e.g. deepeyes-section")
    parser.add_argument("--visits", type=int, default=12, help="timed visits")
    parser.add_argument(
        "--home", help="a ConvLens home prepared before (default: a fresh one, prepared now)"
    )
    args = parser.parse_args()
    table = clicks()
    if args.click not in table:
        parser.error(f"unknown click {args.click}; known: {', '.join(table)}")
    click = table[args.click]

    home = prepared_home(args.home)
    with served_profile(home) as (profile, url):
        page = profile.new_page()
        session = profile.new_cdp_session(page)
        session.send("Performance.enable")
        open_url(page, url + click.start())
        pair = [click.first(0), click.first(1)]
        for value in pair:  # seen once, untimed: the timed visits are cached ones
            visit(page, session, click, value)
        print(f"{args.click}: {args.visits} cached visits, seconds (kB sent)")
        print(" ".join(f"{name:>8s}" for name in COLUMNS))
        rows = []
        for index in range(args.visits):
            row = visit(page, session, click, pair[index % 2])
            rows.append(row)
            print(" ".join(f"{row[name]:8.3f}" for name in COLUMNS), flush=True)
    medians = {name: statistics.median(row[name] for row in rows) for name in COLUMNS}
    print("median " + " ".join(f"{name}={value:.3f}" for name, value in medians.items()))


if __name__ == "__main__":
    main()
