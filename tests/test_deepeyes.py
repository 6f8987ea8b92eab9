"""DeepEyes: perplexity, histograms and stability, activation heatmaps, readers and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from convlens.cli import main
from convlens.deepeyes import (
    PerplexityHistogram,
    activation_heatmap,
    deepeyes_layers,
    diagnose_run,
    histogram_edges,
    layer_stability,
    perplexity,
    perplexity_histogram,
    read_probe,
    undetected,
)
from convlens.paths import ASSETS_DIR
from convlens.training import list_snapshots, read_manifest, snapshot_dir, train

SHIPPED = ASSETS_DIR / "runs" / "fashion_deepeyes"

# --------------------------------------------------------------------------------------------
# Perplexity


def test_one_active_filter_has_perplexity_1():
    assert perplexity(np.array([[0.0, 3.0, 0.0, 0.0]])) == pytest.approx([1.0])


@pytest.mark.parametrize("k", [1, 2, 3, 7])
def test_k_equal_filters_have_perplexity_k(k: int):
    row = np.zeros(10)
    row[:k] = 0.5
    assert perplexity(row[None, :]) == pytest.approx([k])


def test_mixed_cases_match_hand_computation():
    rows = np.array([[1.0, 1.0, 2.0, 0.0], [1.0, 3.0, 0.0, 0.0]])
    # [1, 1, 2]: p = 1/4, 1/4, 1/2, H = 1.5 bits; [1, 3]: H = -(1/4 log2 1/4 + 3/4 log2 3/4).
    h2 = -(0.25 * np.log2(0.25) + 0.75 * np.log2(0.75))
    assert perplexity(rows) == pytest.approx([2**1.5, 2**h2])


def test_undetected_patch_counts_as_every_filter():
    rows = np.array([[0.0, 0.0, 0.0], [0.0, -1.0, -2.0], [0.0, 1.0, 0.0]])
    assert perplexity(rows) == pytest.approx([3.0, 3.0, 1.0])
    assert undetected(rows).tolist() == [True, True, False]


def test_negative_values_are_clipped():
    assert perplexity(np.array([[-5.0, 2.0, 2.0]])) == pytest.approx([2.0])


def test_float16_input_and_bad_shapes():
    assert perplexity(np.array([[1, 1]], dtype=np.float16)) == pytest.approx([2.0])
    with pytest.raises(ValueError):
        perplexity(np.zeros(4))


# --------------------------------------------------------------------------------------------
# Histograms and stability


def test_histogram_has_fixed_edges_and_counts_every_patch():
    rows = np.array([[1.0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0], [1, 1, 0, 0, 0]])
    histogram = perplexity_histogram(rows, "conv", 5, bins=4)
    assert histogram.edges.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert histogram.counts.tolist() == [1, 1, 0, 2]
    assert histogram.undetected == 1
    assert (histogram.layer, histogram.step) == ("conv", 5)
    assert np.array_equal(histogram_edges(5, 4), histogram.edges)


def _histograms(rows: list[list[int]]) -> list[PerplexityHistogram]:
    edges = np.linspace(1, 4, len(rows[0]) + 1)
    return [
        PerplexityHistogram("conv", 10 * (i + 1), edges, np.array(r, dtype=np.int64), 0)
        for i, r in enumerate(rows)
    ]


def test_stability_is_the_first_step_after_which_changes_stay_small():
    # Shares: [.5 .5 0], [0 .5 .5] (distance 1), then [0 .49 .51] x100 (0.02) and unchanged.
    stability = layer_stability(_histograms([[1, 1, 0], [0, 1, 1], [0, 49, 51], [0, 49, 51]]))
    assert stability.steps == (10, 20, 30, 40)
    assert stability.distances == pytest.approx([1.0, 0.02, 0.0])
    assert stability.stable_from_step == 20


def test_stability_none_when_the_last_change_is_large_or_nothing_to_compare():
    assert layer_stability(_histograms([[1, 0], [1, 0], [0, 1]])).stable_from_step is None
    assert layer_stability(_histograms([[1, 0]])).stable_from_step is None


def test_stability_threshold_and_a_stable_start():
    histograms = _histograms([[10, 10], [11, 9], [10, 10]])  # distances 0.1, 0.1
    assert layer_stability(histograms).stable_from_step is None
    assert layer_stability(histograms, threshold=0.2).stable_from_step == 10


# --------------------------------------------------------------------------------------------
# Activation heatmap


def test_heatmap_flags_dead_and_always_on_filters():
    activations = np.array(
        [
            # dead, always on, sometimes, tiny (dead), negative only (dead)
            [0.0, 1.0, 4.0, 1e-7, -1.0],
            [0.0, 0.9, 0.0, 0.0, -2.0],
            [0.0, 0.8, 0.0, 0.0, -1.0],
            [0.0, 0.7, 1.0, 0.0, -1.0],
        ]
    )
    heatmap = activation_heatmap(activations, "conv")
    assert heatmap.maximum == pytest.approx([0.0, 1.0, 4.0, 1e-7, 0.0])
    assert heatmap.frequency == pytest.approx([0.0, 1.0, 0.25, 0.25, 0.0])
    assert heatmap.dead.tolist() == [0, 3, 4]
    assert heatmap.always_on.tolist() == [1]
    assert activation_heatmap(activations, always_on_frequency=0.2).always_on.tolist() == [1, 2]
    assert activation_heatmap(activations, dead_maximum=0.0).dead.tolist() == [0, 4]
    assert activation_heatmap(activations, dead_maximum=0.0).always_on.tolist() == [1]


# --------------------------------------------------------------------------------------------
# A tiny recorded run, and the CLI on it


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch tiny run whose last snapshot's probe has conv1 filter 1 silenced."""
    run_dir = tmp_path_factory.mktemp("deepeyes") / "run"
    train(
        "deepeyes",
        run_dir,
        epochs=1,
        progress=False,
        limit_train=256,
        limit_test=100,
        snapshot_every=2,
        conv1=4,
        conv2=8,
        fc1=16,
        probe_images=16,
        probe_patches=40,
    )
    path = snapshot_dir(run_dir, list_snapshots(run_dir)[-1]) / "probe.safetensors"
    tensors = load_file(path)
    tensors["features.conv1"][:, 1] = 0
    save_file(tensors, path)
    return run_dir


def test_layers_skip_the_logits():
    assert deepeyes_layers(read_manifest(SHIPPED)) == [
        "features.conv1",
        "features.conv2",
        "classifier.fc1",
    ]


def test_read_probe_returns_float_arrays(tiny_run: Path):
    probe = read_probe(tiny_run, list_snapshots(tiny_run)[0])
    assert list(probe) == ["features.conv1", "features.conv2", "classifier.fc1"]
    assert probe["features.conv1"].shape == (40, 4)
    assert probe["classifier.fc1"].shape == (16, 16)
    assert all(values.dtype == np.float32 for values in probe.values())


def test_cli_deepeyes_json_on_a_tiny_run(tiny_run: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["deepeyes", "--run", str(tiny_run), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    steps = list_snapshots(tiny_run)
    assert set(payload) == {"run", "step", "layers"}
    assert payload["run"] == str(tiny_run) and payload["step"] == steps[-1]
    rows = {"features.conv1": 40, "features.conv2": 40, "classifier.fc1": 16}
    assert [layer["id"] for layer in payload["layers"]] == list(rows)
    for layer in payload["layers"]:
        assert set(layer) == {
            "id",
            "histogram",
            "undetected",
            "dead",
            "always_on",
            "stable_from_step",
        }
        assert len(layer["histogram"]["edges"]) == len(layer["histogram"]["counts"]) + 1
        assert sum(layer["histogram"]["counts"]) == rows[layer["id"]]
        assert isinstance(layer["undetected"], int)
        assert layer["stable_from_step"] is None or layer["stable_from_step"] in steps
    conv1 = payload["layers"][0]
    assert 1 in conv1["dead"]
    assert conv1["histogram"]["edges"][0] == 1.0 and conv1["histogram"]["edges"][-1] == 4.0


def test_cli_deepeyes_text_and_an_earlier_snapshot(
    tiny_run: Path, capsys: pytest.CaptureFixture[str]
):
    first = list_snapshots(tiny_run)[0]
    assert main(["deepeyes", "--run", str(tiny_run), "--snapshot", str(first)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and f"step {first}" in lines[0]
    assert lines[1].split()[0] == "features.conv1"


@pytest.mark.parametrize(
    "argv",
    [
        ["deepeyes", "--run", "no-such-run"],
        ["deepeyes", "--run", "fashion_deepeyes", "--snapshot", "7"],
        ["deepeyes"],
    ],
)
def test_cli_deepeyes_errors_exit_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("convlens: ") and len(err.strip().splitlines()) == 1


def test_shipped_run_gives_a_sane_result():
    diagnosis = diagnose_run(SHIPPED)
    manifest = read_manifest(SHIPPED)
    steps = list_snapshots(SHIPPED)
    assert diagnosis.step == steps[-1]
    rows = {"features.conv1": 1000, "features.conv2": 1000, "classifier.fc1": 200}
    filters = {"features.conv1": 20, "features.conv2": 50, "classifier.fc1": 500}
    assert [part.layer for part in diagnosis.layers] == list(rows)
    for part in diagnosis.layers:
        assert int(part.histogram.counts.sum()) == rows[part.layer]
        assert part.histogram.edges[-1] == filters[part.layer]
        assert len(part.heatmap.maximum) == filters[part.layer]
        assert np.all((part.heatmap.frequency >= 0) & (part.heatmap.frequency <= 1))
        assert part.stability.steps == tuple(steps)
        stable = part.stability.stable_from_step
        assert stable is None or stable in steps
    assert manifest["summary"]["test_accuracy"] > 0.85
    json.dumps(diagnosis.to_json(), allow_nan=False)
