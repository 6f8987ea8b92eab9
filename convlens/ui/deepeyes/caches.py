"""Caches of the DeepEyes page: probes, maps and timings of recorded runs, read or computed once."""

from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from convlens.data import fashion_mnist
from convlens.deepeyes import (
    ArchitectureSuggestion,
    FilterMap,
    FilterMaxima,
    InputMap,
    NearDuplicates,
    RunDiagnosis,
    diagnose_run,
    embed_patches,
    filter_map,
    forward_ms_per_image,
    input_map,
    near_duplicates,
    patch_boxes,
    patch_layouts_dir,
    perplexity,
    run_filter_maxima,
    suggest_architecture,
)
from convlens.embedding import Embedding
from convlens.runformat import (
    ProbeRows,
    is_shipped,
    load_snapshot,
    read_manifest,
    read_probe,
    read_probe_rows,
)
from convlens.training import normalize
from convlens.ui.cache import cached_run_histograms
from convlens.weights import weights_fingerprint

TIMED_IMAGES = 256
TIMED_PASSES = 3
# One thread: the page's maps are small (1,000 points take about a second), and openTSNE's worker
# threads slow down many times over when other processes share the cores.
EMBEDDING_JOBS = 1


@st.cache_data(show_spinner=False, max_entries=64)
def cached_diagnosis(
    run_path: str,
    steps: tuple[int, ...],
    step: int,
    stability: float,
    dead_maximum: float,
    always_on: float,
) -> RunDiagnosis:
    """Return DeepEyes' per-layer view of snapshot `step` with these thresholds; `steps` (the
    run's snapshots) keys the cache, so a run still training is judged again when one lands."""
    return diagnose_run(
        run_path,
        step,
        threshold=stability,
        dead_maximum=dead_maximum,
        always_on_frequency=always_on,
        histograms=cached_run_histograms(run_path, steps),
    )


@st.cache_data(show_spinner=False, max_entries=64)
def cached_suggestion(
    run_path: str,
    steps: tuple[int, ...],
    step: int,
    stability: float,
    dead_maximum: float,
    always_on: float,
) -> ArchitectureSuggestion:
    """Return the smaller network suggested at snapshot `step` with these thresholds (the
    diagnosis of `cached_diagnosis` with the same arguments). Each layer's effective width is an
    eigen-decomposition: computed on every view, they took half of a DeepEyes view's script run."""
    manifest = read_manifest(run_path)
    return suggest_architecture(
        manifest["arch"],
        manifest.get("arch_options", {}),
        cached_probe(run_path, step),
        cached_diagnosis(run_path, steps, step, stability, dead_maximum, always_on),
        cached_near_duplicates(run_path, step, dead_maximum),
    )


@st.cache_data(show_spinner=False, max_entries=64)
def cached_near_duplicates(
    run_path: str, step: int, dead_maximum: float
) -> dict[str, NearDuplicates]:
    """Return each DeepEyes layer's groups of near-duplicate filters at snapshot `step`."""
    return {
        layer_id: near_duplicates(values, dead_maximum=dead_maximum)
        for layer_id, values in cached_probe(run_path, step).items()
    }


@st.cache_data(show_spinner=False, max_entries=64)
def cached_probe(run_path: str, step: int) -> dict[str, np.ndarray]:
    """Return the probe activations of one snapshot, per DeepEyes layer."""
    return read_probe(run_path, step)


@st.cache_data(show_spinner=False, max_entries=64)
def cached_mean_perplexities(run_path: str, step: int) -> dict[str, float]:
    """Return each DeepEyes layer's mean patch perplexity at snapshot `step`."""
    return {
        layer: float(perplexity(values).mean())
        for layer, values in cached_probe(run_path, step).items()
    }


@st.cache_data(show_spinner=False, max_entries=32)
def cached_probe_rows(run_path: str, layer: str) -> ProbeRows:
    """Return where each probe row of `layer` comes from."""
    return read_probe_rows(run_path, layer)


@st.cache_data(show_spinner=False, max_entries=16)
def cached_filter_maxima(run_path: str, steps: tuple[int, ...]) -> dict[str, FilterMaxima]:
    """Return each filter's maximum at every snapshot; `steps` keys the cache for a live run."""
    return run_filter_maxima(run_path)


@st.cache_resource(show_spinner="Embedding the patches (t-SNE)…", max_entries=16)
def cached_patch_embedding(run_path: str, layer: str, step: int) -> Embedding:
    """Return the input map's embedding of `layer`'s probe patches at snapshot `step`; a shipped
    run's layout is kept on disk (laid out by the first start's preparation), a user's run's is
    laid out here (its files would grow with every student's runs)."""
    return embed_patches(
        cached_probe(run_path, step)[layer],
        n_jobs=EMBEDDING_JOBS,
        layouts=patch_layouts_dir() if is_shipped(run_path) else None,
    )


@st.cache_data(show_spinner="Placing the patches in the map…", max_entries=64)
def cached_input_map(run_path: str, layer: str, reference_step: int, step: int) -> InputMap:
    """Return the input map of `layer` at `step`, in the map embedded at `reference_step` (a
    shipped run's placement kept on disk, as its layouts: the first start places every snapshot
    in the last one's map)."""
    return input_map(
        cached_patch_embedding(run_path, layer, reference_step),
        cached_probe(run_path, step)[layer],
        cached_probe_rows(run_path, layer).labels,
        layer,
        reference_step,
        step,
        layouts=patch_layouts_dir() if is_shipped(run_path) else None,
    )


@st.cache_data(show_spinner="Embedding the filters…", max_entries=64)
def cached_filter_map(
    run_path: str, layer: str, step: int, dead_maximum: float, classes: int
) -> FilterMap:
    """Return the filter map of `layer` at `step` (a shipped run's layout kept on disk, as its
    input map's)."""
    return filter_map(
        cached_probe(run_path, step)[layer],
        cached_probe_rows(run_path, layer).labels,
        classes,
        layer,
        step,
        dead_maximum=dead_maximum,
        n_jobs=EMBEDDING_JOBS,
        layouts=patch_layouts_dir() if is_shipped(run_path) else None,
    )


@st.cache_data(show_spinner=False, max_entries=16)
def cached_patch_boxes(run_path: str, layer: str) -> np.ndarray:
    """Return the receptive field of each probe row of `layer` in its test image."""
    return patch_boxes(read_manifest(run_path), layer, cached_probe_rows(run_path, layer))


@st.cache_resource(show_spinner=False)
def cached_test_images() -> np.ndarray:
    """Return the Fashion-MNIST test images (uint8, N x 28 x 28)."""
    return np.asarray(fashion_mnist("test").images)


@st.cache_data(show_spinner=False, max_entries=64)
def cached_snapshot_fingerprint(run_path: str, step: int) -> str:
    """Return the weights fingerprint of one snapshot (what annotations are stored under)."""
    return weights_fingerprint(load_snapshot(run_path, step)[0])


@st.cache_data(show_spinner="Timing both networks…", max_entries=4)
def cached_forward_ms(full_path: str, small_path: str) -> tuple[float, float]:
    """Return the forward time per image of the last snapshots of two runs, measured here."""
    inputs = normalize(torch.from_numpy(cached_test_images()[:TIMED_IMAGES].copy()))
    full, small = (load_snapshot(path)[0] for path in (full_path, small_path))
    return (
        forward_ms_per_image(full, inputs, TIMED_PASSES),
        forward_ms_per_image(small, inputs, TIMED_PASSES),
    )
