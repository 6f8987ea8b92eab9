"""DeepEyes: perplexity, histograms and stability, activation heatmaps, readers and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from convlens import embedding as embedding_module
from convlens.cli import main
from convlens.deepeyes import (
    FilterMaxima,
    LayerDiagnosis,
    PerplexityHistogram,
    RunDiagnosis,
    activation_heatmap,
    compare_sizes,
    crop_patches,
    dead_since,
    diagnose_run,
    diagnosis_findings,
    effective_width,
    embed_patches,
    filter_map,
    firing,
    forward_ms_per_image,
    histogram_edges,
    input_map,
    label_specificity,
    layer_stability,
    near_duplicates,
    patch_boxes,
    patch_layouts_dir,
    per_label_mean,
    perplexity,
    perplexity_histogram,
    prepare_maps,
    response_similarity,
    run_filter_maxima,
    run_phase,
    specificity_phrase,
    strongest,
    suggest_architecture,
    suggested_command,
    suggested_train_options,
    undetected,
    width_options,
)
from convlens.embedding import (
    embed,
    kl_divergence_gradient,
    place,
    points_in_box,
    principal_axes,
    repulsion,
    restore,
    tsne_perplexity,
)
from convlens.paths import ASSETS_DIR
from convlens.runformat import (
    deepeyes_layers,
    is_shipped,
    list_snapshots,
    read_manifest,
    read_probe,
    read_probe_rows,
)
from convlens.smallnets import build_small
from convlens.training import train

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
    """A one-epoch tiny run (4 steps, snapshots at 2 and 4) recorded by the training recorder,
    whose network starts with conv1 filter 1's weights and bias at zero and conv2 filters 2 and 3
    identical (fc1 reads their maps with identical weights too, so they get identical gradients
    and stay identical; filter 1 gets no gradient through its ReLU and stays dead)."""
    import convlens.training as training

    original = training._new_model

    def forced(config):
        model = original(config)
        with torch.no_grad():
            conv1, conv2 = model.features.conv1, model.features.conv2
            conv1.weight[1] = 0
            conv1.bias[1] = 0
            conv2.weight[3] = conv2.weight[2]
            conv2.bias[3] = conv2.bias[2]
            fc1 = model.classifier.fc1  # reads conv2's 4x4 maps flattened channel by channel
            fc1.weight[:, 48:64] = fc1.weight[:, 32:48]
        return model

    run_dir = tmp_path_factory.mktemp("deepeyes") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "_new_model", forced)
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


# --------------------------------------------------------------------------------------------
# Embeddings


def test_pca_map_of_a_few_points_is_the_hand_computed_projection():
    # Centred already; y has the larger variance (2 against 0.5), so it is the first axis.
    points = np.array([[1.0, 0, 0], [-1, 0, 0], [0, 2, 0], [0, -2, 0]])
    embedding = embed(points)
    assert embedding.method == "PCA" and embedding.perplexity is None
    assert embedding.coordinates == pytest.approx(np.array([[0, 1], [0, -1], [2, 0], [-2, 0]]))
    # a new point is projected on the same axes: its z is ignored, nothing else moves
    assert place(embedding, np.array([[0.5, 1.0, 7.0]])) == pytest.approx(np.array([[1.0, 0.5]]))
    assert principal_axes(np.array([[0.0, -3], [0, 3]]))[0] == pytest.approx([0, 1])


def test_tsne_perplexity_is_bounded_by_the_points():
    assert tsne_perplexity(10) == 3.0
    assert tsne_perplexity(31, 30) == 10.0
    assert tsne_perplexity(1000) == 30.0


def _blobs(rng: np.random.Generator, per_blob: int = 50, dims: int = 8) -> np.ndarray:
    centres = np.eye(3, dims) * 10
    return np.concatenate([c + rng.normal(size=(per_blob, dims)) for c in centres])


def test_a_later_snapshot_placed_into_a_tsne_map_stays_near_its_points():
    rng = np.random.default_rng(0)
    earlier = _blobs(rng)
    embedding = embed(earlier)
    assert embedding.method == "t-SNE"
    reference = embedding.coordinates.copy()
    later = earlier + rng.normal(scale=0.05, size=earlier.shape)  # a slightly trained layer
    placed = place(embedding, later)
    extent = np.ptp(reference, axis=0).max()
    moved = np.linalg.norm(placed - reference, axis=1)
    assert np.median(moved) < 0.03 * extent
    assert np.quantile(moved, 0.9) < 0.1 * extent
    assert np.array_equal(embedding.coordinates, reference), "the reference map does not move"
    # the three blobs stay apart in the map: each placed point is nearest to its own blob
    blob = np.repeat(np.arange(3), 50)
    nearest = np.argmin(np.linalg.norm(placed[:, None] - reference[None], axis=2), axis=1)
    assert (blob[nearest] == blob).mean() > 0.95


@pytest.mark.parametrize("points", [150, 10])  # t-SNE, PCA
def test_a_restored_map_places_points_exactly_as_the_map_it_was_saved_from(points: int):
    rng = np.random.default_rng(1)
    earlier = _blobs(rng)[:points]
    later = earlier + rng.normal(scale=0.05, size=earlier.shape)
    original = embed(earlier)
    restored = restore(earlier, original.coordinates.copy())
    assert restored.method == original.method and restored.perplexity == original.perplexity
    np.testing.assert_array_equal(restored.coordinates, original.coordinates)
    np.testing.assert_array_equal(place(restored, later), place(original, later))
    with pytest.raises(ValueError):
        restore(earlier, original.coordinates[:-1])


def test_a_patch_layout_is_laid_out_once_and_read_back(tmp_path: Path, monkeypatch):
    rng = np.random.default_rng(2)
    patches = _blobs(rng).astype(np.float32)
    first = embed_patches(patches, layouts=tmp_path)
    files = list(tmp_path.glob("*.npy"))
    assert len(files) == 1
    np.testing.assert_array_equal(np.load(files[0]), first.coordinates)

    def no_layout(*args, **kwargs):
        raise AssertionError("the layout on disk should have been read")

    monkeypatch.setattr("convlens.deepeyes.embed", no_layout)
    again = embed_patches(patches, layouts=tmp_path)
    np.testing.assert_array_equal(again.coordinates, first.coordinates)
    later = patches + 0.05
    np.testing.assert_array_equal(place(again, later), place(first, later))
    with pytest.raises(AssertionError):  # other patches name another file
        embed_patches(patches[::-1].copy(), layouts=tmp_path)
    monkeypatch.undo()
    files[0].write_bytes(b"broken")  # a broken file is laid out again and replaced
    np.testing.assert_array_equal(
        embed_patches(patches, layouts=tmp_path).coordinates, first.coordinates
    )
    np.testing.assert_array_equal(np.load(files[0]), first.coordinates)
    blocked = tmp_path / "a file, not a folder"
    blocked.write_text("")  # the layout cannot be kept: the map is drawn all the same
    np.testing.assert_array_equal(
        embed_patches(patches, layouts=blocked / "maps").coordinates, first.coordinates
    )


def test_a_filter_map_layout_is_kept_and_read_back(tmp_path: Path, monkeypatch):
    rng = np.random.default_rng(3)
    responses = np.abs(rng.normal(size=(300, 48)))  # patches x filters
    labels = rng.integers(0, 10, size=300)
    fresh = filter_map(responses, labels, 10, "conv", 5)
    kept = filter_map(responses, labels, 10, "conv", 5, layouts=tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == 1
    np.testing.assert_array_equal(kept.coordinates, fresh.coordinates)

    def no_layout(*args, **kwargs):
        raise AssertionError("the layout on disk should have been read")

    monkeypatch.setattr("convlens.deepeyes.embed", no_layout)
    again = filter_map(responses, labels, 10, "conv", 5, layouts=tmp_path)
    np.testing.assert_array_equal(again.coordinates, fresh.coordinates)
    assert again.method == fresh.method
    with pytest.raises(AssertionError):  # other responses name another file
        filter_map(responses[:, ::-1].copy(), labels, 10, "conv", 5, layouts=tmp_path)


def test_preparing_a_run_lays_out_every_snapshot_and_layer(tiny_run: Path, monkeypatch):
    counts = []
    work = prepare_maps([tiny_run], progress=lambda done, total: counts.append(done))
    layers = deepeyes_layers(read_manifest(tiny_run))
    steps = list_snapshots(tiny_run)
    maps, placements = len(steps) * len(layers), (len(steps) - 1) * len(layers)
    assert work == maps + placements == counts[-1]
    assert counts == list(range(work + 1))
    files = list(patch_layouts_dir().glob("*.npy"))
    assert len(files) == 2 * maps + placements, "input and filter maps, placements"
    assert is_shipped(SHIPPED) and not is_shipped(tiny_run)

    def not_again(*args, **kwargs):
        raise AssertionError("what is on disk should have been read")

    # the page's input map of an earlier snapshot in the last one's map: read, not placed
    reference = embed_patches(read_probe(tiny_run, steps[-1])["features.conv2"])
    for name in ("place", "embed", "restore"):  # a later start finds every file: none is needed
        monkeypatch.setattr(f"convlens.deepeyes.{name}", not_again)
    assert prepare_maps([tiny_run]) == work
    assert len(list(patch_layouts_dir().glob("*.npy"))) == len(files)
    labels = read_probe_rows(tiny_run, "features.conv2").labels
    earlier = read_probe(tiny_run, steps[0])["features.conv2"]
    kept = input_map(
        reference, earlier, labels, "features.conv2", steps[-1], steps[0], patch_layouts_dir()
    )
    assert kept.coordinates.shape == (len(labels), 2)


def test_a_placement_is_kept_and_a_broken_file_is_placed_again(tiny_run: Path, tmp_path: Path):
    rows = read_probe_rows(tiny_run, "features.conv2")
    first, last = (read_probe(tiny_run, step)["features.conv2"] for step in (2, 4))
    embedding = embed(first)
    fresh = input_map(embedding, last, rows.labels, "features.conv2", 2, 4)
    kept = input_map(embedding, last, rows.labels, "features.conv2", 2, 4, tmp_path)
    (path,) = tmp_path.glob("placed-*.npy")
    np.testing.assert_allclose(kept.coordinates, fresh.coordinates, atol=1e-9)
    np.testing.assert_array_equal(np.load(path), kept.coordinates)
    path.write_bytes(b"not an array")
    again = input_map(embedding, last, rows.labels, "features.conv2", 2, 4, tmp_path)
    np.testing.assert_allclose(again.coordinates, fresh.coordinates, atol=1e-9)
    assert np.load(path).shape == (40, 2), "the broken file was written anew"
    other = input_map(embedding, last * 2, rows.labels, "features.conv2", 2, 4, tmp_path)
    assert len(list(tmp_path.glob("placed-*.npy"))) == 2, "other patches, another file"
    assert not np.allclose(other.coordinates, kept.coordinates)


def _brute_force_repulsion(points: np.ndarray) -> tuple[np.ndarray, float]:
    """t-SNE's repulsive forces sum_j q_ij^2 (y_i - y_j) / Z and Z, over all pairs."""
    differences = points[:, None] - points[None]
    q = 1 / (1 + (differences**2).sum(axis=2))
    np.fill_diagonal(q, 0)
    z = q.sum()
    return (q[:, :, None] ** 2 * differences).sum(axis=1) / z, z


@pytest.mark.parametrize("extent", [4.0, 120.0])
def test_grid_repulsion_is_as_close_to_the_brute_force_sum_as_opentsnes(extent: float):
    from openTSNE import _tsne

    # clustered points, as t-SNE's: a small map (50 boxes a side, a fine grid) and a large one
    # (boxes of unit width, where the interpolation misses by a few per cent)
    rng = np.random.default_rng(3)
    centres = rng.uniform(-0.5, 0.5, size=(6, 2))
    points = np.concatenate([c + rng.normal(scale=0.04, size=(100, 2)) for c in centres])
    points = np.ascontiguousarray(points * extent / np.ptp(points))
    expected, expected_z = _brute_force_repulsion(points)
    theirs = np.zeros_like(points)
    their_z = _tsne.estimate_negative_gradient_fft_2d(points, theirs, 3, 50, 1, dof=1)
    forces, z = repulsion(points, n_jobs=2)

    def error(found: np.ndarray) -> float:
        return float(np.linalg.norm(found - expected) / np.linalg.norm(expected))

    assert error(forces) <= 1.05 * error(-theirs) and error(forces) < 0.05
    assert abs(z / expected_z - 1) <= abs(their_z / expected_z - 1) + 1e-6
    assert np.array_equal(forces, repulsion(points, n_jobs=1)[0])


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_grid_gradient_equals_opentsne_fft_gradient(n_jobs: int):
    from openTSNE import affinity
    from openTSNE.tsne import kl_divergence_fft

    rng = np.random.default_rng(4)
    features = _blobs(rng, per_blob=100)
    affinities = affinity.PerplexityBasedNN(features, perplexity=30, method="exact")
    points = np.ascontiguousarray(rng.normal(size=(300, 2)))
    grid = {"n_interpolation_points": 3, "min_num_intervals": 50, "ints_in_interval": 1}
    theirs = kl_divergence_fft(points, affinities.P, 1, grid, should_eval_error=True)
    ours = kl_divergence_gradient(points, affinities.P, 1, should_eval_error=True, n_jobs=n_jobs)
    assert ours[0] == pytest.approx(theirs[0], rel=1e-5)
    assert ours[1] == pytest.approx(theirs[1], rel=1e-4, abs=1e-6 * np.abs(theirs[1]).max())


def test_a_map_of_many_points_is_laid_out_on_the_grid(monkeypatch: pytest.MonkeyPatch):
    used = []

    def recording(*args, **kwargs):
        used.append(args[0].shape)
        return kl_divergence_gradient(*args, **kwargs)

    monkeypatch.setattr(embedding_module, "GRID_MIN_POINTS", 100)
    monkeypatch.setattr(embedding_module, "EARLY_EXAGGERATION_ITERATIONS", 50)
    monkeypatch.setattr(embedding_module, "kl_divergence_gradient", recording)
    rng = np.random.default_rng(5)
    first = embed(_blobs(rng), iterations=50, n_jobs=2)
    assert len(used) > 100 and set(used) == {(150, 2)}, "the threaded grid computed the repulsion"
    # the three planted blobs stay apart: each point's nearest map neighbours are of its blob
    blob = np.repeat(np.arange(3), 50)
    distances = np.linalg.norm(first.coordinates[:, None] - first.coordinates[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    nearest = np.argsort(distances, axis=1)[:, :5]
    assert (blob[nearest] == blob[:, None]).mean() > 0.98


def test_embedding_rejects_bad_input():
    with pytest.raises(ValueError):
        embed(np.zeros(5))
    with pytest.raises(ValueError):
        embed(np.zeros((0, 3)))
    with pytest.raises(ValueError):
        embed(np.array([[0.0, np.nan], [1, 2]]))
    with pytest.raises(ValueError, match="3 features"):
        place(embed(np.eye(3)), np.zeros((2, 4)))


def test_points_in_box():
    points = np.array([[0.0, 0], [1, 1], [2, 2], [1, 3]])
    assert points_in_box(points, (0.5, 2), (3, 0.5)).tolist() == [1, 2, 3]
    assert points_in_box(points, (5, 6), (0, 1)).tolist() == []


# --------------------------------------------------------------------------------------------
# Filters: duplicates, firing, specificity


def test_near_duplicates_by_cosine_hand_computed():
    activations = np.array(
        [
            # f0, f1 = 2 f0, f2, f3 dead, f4 ~ f0, f5 = f2 - 3 (clipped: same as f2 where > 0)
            [1.0, 2.0, 1.0, 0.0, 1.0, -2.0],
            [0.0, 0.0, 1.0, 0.0, 0.01, -2.0],
            [1.0, 2.0, 0.0, 0.0, 1.0, -3.0],
        ]
    )
    similarity = response_similarity(activations)
    assert similarity[0, 2] == pytest.approx(0.5)  # [1,0,1].[1,1,0] / (sqrt 2 sqrt 2)
    assert similarity[0, 1] == pytest.approx(1.0)
    assert similarity[3, 3] == 0.0 and similarity[0, 0] == 1.0
    twins = near_duplicates(activations)
    assert [(i, j) for i, j, _ in twins.pairs] == [(0, 1), (0, 4), (1, 4)]
    assert twins.groups == ((0, 1, 4),)
    assert twins.redundant == (1, 4)
    assert twins.partners(4) == (0, 1) and twins.partners(2) == ()
    assert near_duplicates(activations, threshold=0.5).groups == ((0, 1, 2, 4),)


def test_firing_and_strongest_patches():
    activations = np.array([[4.0, 0], [2.0, 0], [2.1, 0], [-1.0, 0], [3.0, 0]])
    assert firing(activations, 0).tolist() == [True, False, True, False, True]
    assert not firing(activations, 1).any()
    assert strongest(activations, 0, 3).tolist() == [0, 4, 2]
    assert strongest(activations, 0, 10).tolist() == [0, 4, 2, 1]
    assert strongest(activations, 1, 3).tolist() == []


def test_per_label_means_and_specificity():
    activations = np.array([[0.0, 1, 0], [3, 1, 0], [0, 1, 0], [1, 1, 0]])
    labels = np.array([0, 1, 2, 1])
    means = per_label_mean(activations, labels, classes=4)
    assert means == pytest.approx(np.array([[0, 2, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]]))
    top, label_perplexity, specificity = label_specificity(means)
    assert top.tolist() == [1, 0, -1]
    assert label_perplexity == pytest.approx([1.0, 3.0, 4.0])
    assert specificity == pytest.approx([1.0, 1 / 3, 0.0])
    with pytest.raises(ValueError):
        per_label_mean(activations, np.array([0, 1, 2, 4]), classes=4)


def test_identical_filters_land_together_in_a_tsne_filter_map():
    rng = np.random.default_rng(1)
    activations = np.clip(rng.normal(size=(300, 40)), 0, None)
    activations[:, 7] = activations[:, 3] * 1.5  # the same response, scaled
    activations[:, 20] = 0.0  # dead
    labels = rng.integers(0, 10, size=300)
    mapped = filter_map(activations, labels, 10, "conv", 5)
    assert mapped.method.startswith("t-SNE")
    distances = np.linalg.norm(mapped.coordinates[:, None] - mapped.coordinates[None], axis=2)
    live = [f for f in range(40) if f != 20]
    typical = np.median(distances[np.ix_(live, live)][np.triu_indices(len(live), 1)])
    assert distances[3, 7] < 0.1 * typical
    assert mapped.duplicates.groups == ((3, 7),)
    assert mapped.dead.tolist() == [20] and mapped.top_label[20] == -1
    assert mapped.coordinates.shape == (40, 2) and (mapped.layer, mapped.step) == ("conv", 5)


# --------------------------------------------------------------------------------------------
# The forced tiny run: a dead filter, two identical filters


def test_a_filter_with_zero_weights_and_bias_is_found_dead(tiny_run: Path):
    diagnosis = diagnose_run(tiny_run)
    conv1 = diagnosis.layers[0]
    assert conv1.layer == "features.conv1"
    assert conv1.heatmap.dead.tolist() == [1]
    assert conv1.heatmap.maximum[1] == 0.0
    maxima = run_filter_maxima(tiny_run)
    assert maxima["features.conv1"].steps == (2, 4)
    assert dead_since(maxima["features.conv1"], [1], 4) == 2
    findings = diagnosis_findings(
        diagnosis,
        {"features.conv1": near_duplicates(read_probe(tiny_run, 4)["features.conv1"])},
        maxima,
    )
    dead = [f for f in findings if f.kind == "dead" and f.layer == "features.conv1"]
    assert len(dead) == 1 and dead[0].filters == (1,)
    assert dead[0].sentence.startswith("features.conv1: 1 of 4 filters dead since step 2 (1)")


def test_identical_filters_land_together_and_are_flagged(tiny_run: Path):
    probe = read_probe(tiny_run, 4)
    rows = read_probe_rows(tiny_run, "features.conv2")
    mapped = filter_map(probe["features.conv2"], rows.labels, 10, "features.conv2", 4)
    assert mapped.method.startswith("PCA")  # 8 filters: too few for t-SNE
    assert mapped.coordinates[2] == pytest.approx(mapped.coordinates[3])
    others = np.delete(mapped.coordinates, [2, 3], axis=0)
    assert np.linalg.norm(others - mapped.coordinates[2], axis=1).min() > 1e-3
    assert mapped.duplicates.groups == ((2, 3),)
    assert mapped.duplicates.redundant == (3,)
    diagnosis = diagnose_run(tiny_run)
    findings = diagnosis_findings(
        diagnosis, {layer: near_duplicates(values) for layer, values in probe.items()}
    )
    redundant = [f for f in findings if f.kind == "redundant"]
    assert [(f.layer, f.filters) for f in redundant] == [("features.conv2", (3,))]
    assert "(2 ≈ 3; cosine ≥ 0.99)" in redundant[0].sentence


def test_input_map_of_the_tiny_run_places_a_later_snapshot(tiny_run: Path):
    rows = read_probe_rows(tiny_run, "features.conv2")
    first, last = (read_probe(tiny_run, step)["features.conv2"] for step in (2, 4))
    embedding = embed(first)  # 40 patches: t-SNE
    same = input_map(embedding, first, rows.labels, "features.conv2", 2, 2)
    assert same.coordinates is embedding.coordinates or np.array_equal(
        same.coordinates, embedding.coordinates
    )
    later = input_map(embedding, last, rows.labels, "features.conv2", 2, 4)
    assert later.coordinates.shape == (40, 2) and np.isfinite(later.coordinates).all()
    assert (later.reference_step, later.step) == (2, 4)
    assert later.labels.tolist() == rows.labels.tolist()
    with pytest.raises(ValueError):
        input_map(embedding, last[:10], rows.labels[:10], "features.conv2", 2, 4)


def test_probe_rows_and_their_receptive_fields(tiny_run: Path):
    manifest = read_manifest(tiny_run)
    rows = read_probe_rows(tiny_run, "features.conv1")
    assert rows.images.shape == rows.labels.shape == (40,)
    boxes = patch_boxes(manifest, "features.conv1", rows)
    # conv1 is 5x5, stride 1, no padding: position (y, x) sees rows y..y+4, columns x..x+4
    assert boxes.tolist() == [[x, y, x + 5, y + 5] for y, x in zip(rows.y, rows.x, strict=True)]
    fc1 = read_probe_rows(tiny_run, "classifier.fc1")
    assert patch_boxes(manifest, "classifier.fc1", fc1).tolist() == [[0, 0, 28, 28]] * 16
    with pytest.raises(ValueError):
        read_probe_rows(tiny_run, "features.nothing")


def test_crop_patches_cuts_the_box_out_of_its_image():
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    images[1, 3:8, 10:15] = 200
    images[1, 3, 10] = 17
    (crop,) = crop_patches(images, [1], np.array([[10, 3, 15, 8]]))
    assert crop.size == (5, 5)
    expected = np.full((5, 5), 200, dtype=np.uint8)
    expected[0, 0] = 17
    np.testing.assert_array_equal(np.asarray(crop), expected)


# --------------------------------------------------------------------------------------------
# A smaller architecture, and the comparison of the shipped runs


def _diagnosis_of(layers: dict[str, np.ndarray]) -> RunDiagnosis:
    parts = []
    for layer, values in layers.items():
        histogram = perplexity_histogram(values, layer, 10)
        parts.append(
            LayerDiagnosis(
                histogram, activation_heatmap(values, layer), layer_stability([histogram])
            )
        )
    return RunDiagnosis("run", 10, tuple(parts))


def test_effective_width_counts_the_directions_used():
    rng = np.random.default_rng(2)
    basis = rng.normal(size=(2, 6))
    assert effective_width(rng.normal(size=(200, 2)) @ basis + 10, 0.99) == 2
    assert effective_width(np.outer(np.arange(10.0), np.ones(4))) == 1
    assert effective_width(np.zeros((5, 3))) == 1
    assert effective_width(np.eye(4), 1.0) == 3  # centred, four points span three directions


def test_suggestion_drops_dead_filters_and_unused_directions():
    """The seed's example: conv1 with half its filters dead, fc1 using 50 of 500 directions."""
    rng = np.random.default_rng(3)
    conv1 = np.zeros((400, 20))
    conv1[:, :10] = np.abs(rng.normal(size=(400, 10)))  # 10 live filters, 10 dead
    # fc1: 500 units, each mixing 3 of 50 sparse non-negative responses: rank 50
    responses = rng.random((400, 50)) * (rng.random((400, 50)) < 0.1)
    mixing = np.zeros((50, 500))
    for unit in range(500):
        mixing[rng.choice(50, 3, replace=False), unit] = rng.random(3) + 0.5
    fc1 = responses @ mixing
    conv2 = np.abs(rng.normal(size=(400, 50)))  # uses all its filters
    probe = {"features.conv1": conv1, "features.conv2": conv2, "classifier.fc1": fc1}
    twins = {layer: near_duplicates(values) for layer, values in probe.items()}
    suggestion = suggest_architecture("deepeyes", {}, probe, _diagnosis_of(probe), twins)
    conv1, conv2, fc1 = suggestion.layers
    assert (conv1.layer, conv1.removable, conv1.suggested) == ("features.conv1", 10, 10)
    assert (conv2.layer, conv2.removable, conv2.suggested) == ("features.conv2", 0, 50)
    assert fc1.layer == "classifier.fc1" and fc1.effective <= 50
    assert fc1.suggested == fc1.effective  # 50 directions of 500: oversized
    assert suggestion.arch_options == {"conv1": 10, "fc1": fc1.effective}
    assert suggestion.describe().startswith("features.conv1 at 10 filters (not 20), classifier.fc1")
    manifest = read_manifest(SHIPPED)
    command = suggested_command(manifest, suggestion.arch_options, "runs/smaller")
    assert command.startswith("python -m convlens train --arch deepeyes --conv1 10 --fc1 ")
    assert command.endswith("--out runs/smaller")
    assert width_options("deepeyes") == {"conv1": 20, "conv2": 50, "fc1": 500}
    # what the page's "Train it now" passes to convlens.runs.start_run
    assert suggested_train_options(manifest, suggestion.arch_options) == {
        "probe_images": 200,
        "probe_patches": 1000,
        "keep_snapshots": 10,
        "conv1": 10,
        "fc1": fc1.effective,
    }


def test_suggestion_for_the_tiny_run_and_its_command(tiny_run: Path):
    manifest = read_manifest(tiny_run)
    probe = read_probe(tiny_run, 4)
    diagnosis = diagnose_run(tiny_run)
    twins = {layer: near_duplicates(values) for layer, values in probe.items()}
    suggestion = suggest_architecture(
        manifest["arch"], manifest["arch_options"], probe, diagnosis, twins
    )
    conv1, conv2, _ = suggestion.layers
    assert conv1.removable >= 1 and conv1.suggested <= 3  # filter 1 is dead
    assert conv2.removable >= 1 and conv2.suggested <= 7  # filter 3 repeats filter 2
    # the run limited its data, which the command line cannot: the command trains on all of it
    command = suggested_command(manifest, suggestion.arch_options, "out")
    assert "--limit" not in command and f"--conv1 {conv1.suggested}" in command


def test_dead_since_hand_computed():
    maxima = FilterMaxima(
        "conv", (10, 20, 30, 40), np.array([[1.0, 0], [0, 0], [0, 0], [0, 2]], dtype=float)
    )
    assert dead_since(maxima, [0], 30) == 20
    assert dead_since(maxima, [1], 30) == 10
    assert dead_since(maxima, [0, 1], 30) == 20
    assert dead_since(maxima, [1], 40) is None
    assert dead_since(maxima, [0], 35) is None


def test_size_comparison_of_two_cards():
    full = {"name": "big", "parameters": 400, "training_seconds": 200.0, "test_accuracy": 0.9055}
    small = {"name": "small", "parameters": 100, "training_seconds": 50.0, "test_accuracy": 0.8977}
    comparison = compare_sizes(full, small, (0.4, 0.1))
    assert comparison.points_lost == pytest.approx(0.78)
    assert comparison.ratio("parameters") == 4.0 and comparison.ratio("forward_ms") == 4.0
    sentence = comparison.sentence()
    assert "small has 4.0× fewer parameters than big" in sentence
    assert "loses 0.78 points of test accuracy" in sentence and "at most 1 point" in sentence
    assert "more than 0.5 point" in comparison.sentence(max_points=0.5)


def test_forward_time_is_a_positive_number():
    inputs = torch.zeros(8, 1, 28, 28)
    assert 0 < forward_ms_per_image(build_small("deepeyes", conv1=4, fc1=8), inputs, 2) < 1e4


def test_run_phase_of_a_folder_being_written(tmp_path: Path):
    import os

    starting = tmp_path / "starting"
    starting.mkdir()
    (starting / "pid").write_text(str(os.getpid()))
    assert run_phase(starting) == "starting"
    (starting / "pid").write_text("999999999")
    assert run_phase(starting) == "unreadable"
    assert run_phase(SHIPPED) == "finished"


def test_a_filter_without_a_favourite_label_is_not_given_one():
    classes = ["T-shirt", "Trouser", "Coat"]
    assert "about alike" in specificity_phrase(2, 0.06, classes)
    assert specificity_phrase(2, 0.8, classes).startswith("on average it responds most to *Coat*")
    assert specificity_phrase(-1, 0.0, classes) == "it never responds"
