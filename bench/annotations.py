"""Annotations page: seconds of the queries that one load of the Annotations page makes, over a
temporary store of 200,000 rows (a lecture room's marks: 4 models x 10 layers x 100 filters x
50 authors), for the views a user opens: the sidebar's model (the first view), every model, a
layer across models, one filter, and the last page. Each view is the page's overview (one page
of rows, the counts per label, the model and layer choices) plus the useless filters of the
ablation check; its median over --repeat runs is printed. Then, with --app, the page itself
through Streamlit's AppTest (a rerun once the model is loaded). Goal: about a second (it was
~23 s a load when the page read every row and wrote both exports on every run).

The last line, load_s=<seconds>, is the slowest view's queries. Absolute seconds on this machine.

Run: .venv/bin/python bench/annotations.py [--rows 200000] [--repeat 5] [--app]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from convlens.annotations import LABELS, AnnotationStore
from convlens.models import load_model
from convlens.weights import weights_fingerprint

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("fashion_basecnn", "efficientnet_lite0", "vgg16", "alexnet")
FINGERPRINT = "0123456789abcdef"
LAYERS, FILTERS = 10, 100


def rows(count: int, fingerprint: str = FINGERPRINT) -> list[dict[str, object]]:
    """`count` marks spread over MODELS, LAYERS layers, FILTERS filters and enough authors; the
    first model's with `fingerprint` (its real weights', so that the page's ablation check
    finds its useless filters)."""
    generator = random.Random(0)
    per_author = len(MODELS) * LAYERS * FILTERS
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        {
            "model": MODELS[k // (LAYERS * FILTERS) % len(MODELS)],
            "weights_fingerprint": fingerprint
            if k // (LAYERS * FILTERS) % len(MODELS) == 0
            else FINGERPRINT,
            "layer": f"features.conv{k // FILTERS % LAYERS}",
            "filter": k % FILTERS,
            "label": generator.choice(LABELS),
            "author": f"student{k // per_author:03d}",
            "updated_at": (start + timedelta(seconds=generator.randrange(30 * 86400))).isoformat(),
        }
        for k in range(count)
    ]


def page_queries(store: AnnotationStore, fingerprint: str, **view: object) -> None:
    """What one load of the Annotations page asks the store (model: the sidebar's)."""
    overview = store.overview(**view)
    assert store.useless_filters(MODELS[0], fingerprint)
    assert overview.total, view


def app_rerun_seconds(home: Path, repeat: int) -> float:
    """The Annotations page through AppTest, with the sidebar's model (fashion_basecnn) loaded."""
    sys.path.insert(0, str(ROOT / "tests"))
    os.environ.update(CONVLENS_HOME=str(home), CONVLENS_OFFLINE="1", CONVLENS_PREPARE="0")
    from test_app import start

    at = start({"model": MODELS[0], "image": "fashion-mnist:test:0"})
    at.switch_page("pages/annotations.py").run()
    assert not at.exception, at.exception
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - began)
        assert not at.exception and len(at.dataframe[0].value) > 0
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--app", action="store_true", help="also time the page through AppTest")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        os.environ["CONVLENS_HOME"] = str(home)  # nothing of the user's home is read or written
        store = AnnotationStore(home / "annotations.sqlite")
        fingerprint = weights_fingerprint(load_model(MODELS[0]).module)
        began = time.perf_counter()
        report = store.import_annotations(json.dumps(rows(args.rows, fingerprint)))
        assert report.ok and report.applied == args.rows, report.errors[:3]
        print(f"imported {args.rows:,} rows in {time.perf_counter() - began:.2f} s")
        last_page = -(-args.rows // 200)
        views = {
            "the sidebar's model": {"model": MODELS[0]},
            "every model": {},
            "a layer across models": {"layer": "features.conv3"},
            "one filter": {"model": MODELS[1], "filter": 7},
            f"the last page ({last_page:,})": {"page": last_page},
        }
        medians = {}
        for name, view in views.items():
            times = []
            for _ in range(args.repeat):
                began = time.perf_counter()
                page_queries(store, fingerprint, **view)
                times.append(time.perf_counter() - began)
            medians[name] = statistics.median(times)
            print(f"{name}: {medians[name]:.3f} s (median of {args.repeat})")
        if args.app:
            print(
                f"the page through AppTest, a rerun: {app_rerun_seconds(home, args.repeat):.2f} s"
            )
    print(f"load_s={max(medians.values()):.3f}")


if __name__ == "__main__":
    main()
