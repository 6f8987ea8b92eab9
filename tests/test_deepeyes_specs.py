"""The DeepEyes page's chart specs (`convlens.ui.deepeyes.specs`): a cached spec equals a fresh
chart's spec validated against Vega-Lite's schema, identical requests build it once, a change of
what it shows builds another, and a second browser on the same view builds none."""

from __future__ import annotations

import json
import re
from pathlib import Path

import altair as alt
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from convlens import charts
from convlens.deepeyes import (
    DEAD_MAXIMUM,
    InputMap,
    diagnose_run,
    filter_map,
    firing,
    run_histograms,
)
from convlens.runformat import list_snapshots, read_probe, read_probe_rows
from convlens.runs import learning_curves
from convlens.style import STABILITY_LEGEND_COLUMNS
from convlens.ui.deepeyes import specs
from convlens.ui.run_watch import metrics_version
from convlens.ui.vega import named_by_position, with_arrow_datasets

ROOT = Path(__file__).resolve().parent.parent
RUN = str(ROOT / "assets" / "runs" / "fashion_deepeyes")
PAGE = str(ROOT / "pages" / "deepeyes.py")
LAYER = "features.conv1"
CLASSES = tuple(f"class {k}" for k in range(10))
# The functions of `charts` that the specs module builds its charts with.
CHART_FUNCTIONS = (
    "curves_chart",
    "stability_chart",
    "perplexity_heatmap_chart",
    "perplexity_bars_chart",
    "filter_activity_chart",
    "input_map_chart",
    "filter_map_chart",
)
SPEC_FUNCTIONS = (
    "learning_curves_spec",
    "stability_spec",
    "perplexity_heatmap_spec",
    "perplexity_bars_spec",
    "filter_activity_spec",
    "input_map_spec",
    "filter_map_spec",
)


def stable(spec: dict) -> dict:
    """Return `spec` with Altair's numbered view and parameter names numbered from 1 in order of
    appearance, as Streamlit sends them (Altair's counters run on with every chart built)."""
    names: dict[str, str] = {}

    def renumbered(match: re.Match) -> str:
        prefix = match.group(1)
        count = sum(name.startswith(prefix) for name in names)
        return names.setdefault(match.group(0), f"{prefix}{count + 1}")

    rest = {key: value for key, value in spec.items() if key != "datasets"}  # Arrow bytes
    renamed = json.loads(re.sub(r"\b(view_|param_)\d+\b", renumbered, json.dumps(rest)))
    return renamed | ({"datasets": spec["datasets"]} if "datasets" in spec else {})


def selection_names(spec: dict) -> set[str]:
    """Return the names of the spec's selection parameters (top level or in its layers)."""
    params = [*spec.get("params", [])]
    for layer in spec.get("layer", []):
        params += layer.get("params", [])
    return {param["name"] for param in params if "select" in param}


@pytest.fixture(scope="module")
def shown() -> dict:
    """What the page's charts show of the shipped run's last snapshot."""
    steps = list_snapshots(RUN)
    step = steps[-1]
    histograms = run_histograms(RUN)
    diagnosis = diagnose_run(RUN, step, histograms=histograms)
    part = next(part for part in diagnosis.layers if part.layer == LAYER)
    activations = read_probe(RUN, step)[LAYER]
    labels = read_probe_rows(RUN, LAYER).labels
    rng = np.random.default_rng(0)
    placed = InputMap(LAYER, step, step, rng.normal(size=(len(labels), 2)), labels, "PCA")
    return {
        "steps": steps,
        "step": step,
        "histograms": histograms[LAYER],
        "stabilities": [layer.stability for layer in diagnosis.layers],
        "part": part,
        "placed": placed,
        "fires": firing(activations, 3, DEAD_MAXIMUM),
        "mapped": filter_map(activations, labels, len(CLASSES), LAYER, step),
    }


def cases(shown: dict, selected: int | None) -> dict[str, tuple]:
    """Return, per spec function, its arguments (showing filter `selected` where a chart shows
    one) and the chart it must equal, built afresh."""
    steps, step, part = tuple(shown["steps"]), shown["step"], shown["part"]
    heatmap = part.heatmap
    flagged = (tuple(heatmap.dead.tolist()), tuple(heatmap.always_on.tolist()))
    fires = None if selected is None else shown["fires"]
    title = "t"
    return {
        "learning_curves_spec": (
            (RUN, step, metrics_version(RUN, False)),
            charts.with_step_rule(charts.curves_chart(learning_curves(RUN)), step).properties(
                title="Learning curves"
            ),
        ),
        "stability_spec": (
            (RUN, steps, 0.1, shown["stabilities"]),
            charts.stability_chart(shown["stabilities"], 0.1, STABILITY_LEGEND_COLUMNS),
        ),
        "perplexity_heatmap_spec": (
            (RUN, steps, LAYER, step, title, True, shown["histograms"]),
            charts.perplexity_heatmap_chart(shown["histograms"], step, title, small=True),
        ),
        "perplexity_bars_spec": (
            (RUN, LAYER, step, title, part.histogram),
            charts.perplexity_bars_chart(part.histogram, title),
        ),
        "filter_activity_spec": (
            (RUN, LAYER, step, "frequency", title, selected, flagged, heatmap),
            charts.filter_activity_chart(heatmap, "frequency", title, selected),
        ),
        "input_map_spec": (
            (
                RUN,
                LAYER,
                step,
                step,
                CLASSES,
                selected,
                DEAD_MAXIMUM,
                title,
                shown["placed"],
                fires,
            ),
            charts.input_map_chart(shown["placed"], list(CLASSES), fires, title),
        ),
        "filter_map_spec": (
            (RUN, LAYER, step, DEAD_MAXIMUM, CLASSES, selected, title, shown["mapped"]),
            charts.filter_map_chart(shown["mapped"], list(CLASSES), selected, title),
        ),
    }


@pytest.fixture
def counted_builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Empty the spec caches and record each chart the specs module builds, by function name."""
    built: list[str] = []
    for name in CHART_FUNCTIONS:
        function = getattr(specs, name)
        monkeypatch.setattr(
            specs, name, lambda *a, _f=function, _n=name, **k: built.append(_n) or _f(*a, **k)
        )
    for name in SPEC_FUNCTIONS:
        getattr(specs, name).clear()
    return built


def validated(chart) -> dict:
    """The chart's spec as Streamlit draws it (no theme), validated against Vega-Lite's schema."""
    with alt.theme.enable("none"):
        return stable(with_arrow_datasets(named_by_position(chart.to_dict())))


@pytest.mark.parametrize("name", SPEC_FUNCTIONS)
def test_a_cached_spec_equals_a_fresh_validated_one_and_is_built_once(
    name: str, shown: dict, counted_builds: list[str]
) -> None:
    spec_function = getattr(specs, name)
    arguments, chart = cases(shown, 3)[name]
    cached = [spec_function(*arguments) for _ in range(3)]
    assert len(counted_builds) == 1  # identical requests build it once
    fresh = validated(chart)
    assert all(stable(spec) == fresh for spec in cached)


@pytest.mark.parametrize(
    ("name", "selection"),
    [
        ("filter_activity_spec", "filter_pick"),
        ("filter_map_spec", "filter_pick"),
        ("input_map_spec", "patch_brush"),
    ],
)
def test_a_chart_that_takes_clicks_keeps_its_selection_and_shows_the_selected_filter(
    name: str, selection: str, shown: dict, counted_builds: list[str]
) -> None:
    spec_function = getattr(specs, name)
    picked = spec_function(*cases(shown, 3)[name][0])
    arguments, chart = cases(shown, None)[name]
    unpicked = spec_function(*arguments)
    assert len(counted_builds) == 2  # another filter selected: another spec
    assert picked != unpicked
    assert stable(unpicked) == validated(chart)
    assert selection_names(picked) == selection_names(unpicked) == {selection}


def test_the_learning_curves_spec_is_built_again_when_the_metrics_grow(
    tmp_path: Path, counted_builds: list[str]
) -> None:
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 1, "loss": 2.0, "batch_accuracy": 0.1}\n')
    first = specs.learning_curves_spec(str(tmp_path), 1, metrics_version(str(tmp_path), False))
    with metrics.open("a") as lines:
        lines.write('{"step": 2, "loss": 1.5, "batch_accuracy": 0.3}\n')
    second = specs.learning_curves_spec(str(tmp_path), 1, metrics_version(str(tmp_path), False))
    assert counted_builds == ["curves_chart", "curves_chart"]
    assert first != second
    assert specs.learning_curves_spec(str(tmp_path / "none"), 1, None) is None


@pytest.mark.parametrize("section", ["training", "layer"])
def test_a_second_browser_on_the_same_view_builds_no_chart(
    section: str, counted_builds: list[str]
) -> None:
    def open_view() -> AppTest:
        at = AppTest.from_file(PAGE, default_timeout=120)
        for key, value in {"run": "fashion_deepeyes", "de_view": section, "de_filter": "2"}.items():
            at.query_params[key] = value
        at.run()
        assert not at.exception, at.exception
        return at

    first = open_view()
    built = len(counted_builds)
    assert built == len(first.get("vega_lite_chart")) > 0  # one build per chart drawn
    second = open_view()
    assert len(counted_builds) == built  # no session-only state in the keys
    assert [chart.proto.spec for chart in second.get("vega_lite_chart")] == [
        chart.proto.spec for chart in first.get("vega_lite_chart")
    ]
