"""Work shared by every browser of a server (issue 17, item 4): one layer graph per model object,
one loaded dataset analysis per model and data; one CPU thread per script run."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import streamlit as st

from convlens.activations import analyze, cache_path
from convlens.graph import build_graph, shared_graph
from convlens.models import ModelKey
from convlens.ui import cache
from convlens.ui.launch import TORCH_THREADS_ENV
from tests.test_activations import tiny_model

DATA = "fashion-mnist:test"


def test_the_shared_graph_is_built_once_per_module():
    model, other = tiny_model(), tiny_model()
    graph = shared_graph(model.module, model.input_size)
    assert shared_graph(model.module, model.input_size) is graph
    assert graph == build_graph(model.module, model.input_size)
    rebuilt = shared_graph(other.module, other.input_size)
    assert rebuilt is not graph
    assert rebuilt == graph  # the same architecture: an equal graph, built for its own module


def test_computing_a_cache_file_name_does_not_trace_the_model_again(monkeypatch):
    model = tiny_model()
    first = cache_path(model, DATA, limit=40)
    traced = []
    monkeypatch.setattr("convlens.graph.build_graph", lambda *args: traced.append(args))
    assert cache_path(model, DATA, limit=40) == first
    assert traced == []


@pytest.fixture
def fresh_analysis_cache():
    cache.cached_dataset_analysis.clear()
    yield cache.cached_dataset_analysis
    cache.cached_dataset_analysis.clear()


def test_the_analysis_is_loaded_once_for_every_browser(monkeypatch, fresh_analysis_cache):
    model = tiny_model()
    fields = ("tiny", None, "untrained")
    key = ModelKey(*fields)
    with pytest.raises(cache.NotAnalysed):  # nothing on disk yet, and the miss is not kept
        fresh_analysis_cache(key, DATA, model)
    computed = analyze(model, DATA)
    loads = []
    read = cache.cached_analysis
    monkeypatch.setattr(cache, "cached_analysis", lambda *a: loads.append(a) or read(*a))
    # every browser's sidebar builds its own key
    requests = [fresh_analysis_cache(ModelKey(*fields), DATA, model) for _ in range(30)]
    assert len(loads) == 1
    assert all(found is requests[0] for found in requests)
    loaded = requests[0]
    assert loaded.to_json() == computed.to_json()
    for ours, fresh in zip(loaded.layers, computed.layers, strict=True):
        np.testing.assert_array_equal(ours.per_class_mean, fresh.per_class_mean)
        np.testing.assert_array_equal(ours.top_patches.box, fresh.top_patches.box)


@pytest.mark.parametrize(
    ("setting", "expected"), [(None, 1), ("2", 2), ("two", 1), ("0", 1), ("-2", 1), ("²", 1)]
)
def test_every_script_thread_of_the_server_computes_on_its_set_number_of_threads(setting, expected):
    """A session's script runs in a thread started after the server set its threads; torch must
    give that thread the server's number (one unless $CONVLENS_TORCH_THREADS says otherwise)."""
    environment = {k: v for k, v in os.environ.items() if k != TORCH_THREADS_ENV}
    environment["OMP_NUM_THREADS"] = "3"  # torch's own default here, none of the expected
    if setting is not None:
        environment[TORCH_THREADS_ENV] = setting
    program = (
        "import threading, torch\n"
        "from convlens.ui.launch import use_serving_threads\n"
        "use_serving_threads()\n"
        "seen = []\n"
        "thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))\n"
        "thread.start(); thread.join()\n"
        "print(seen[0])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], env=environment, capture_output=True, text=True, check=True
    )
    assert int(result.stdout.strip()) == expected


def test_what_lives_at_the_start_is_left_out_of_later_collections_and_garbage_is_not():
    """After the start, Python's full collections no longer walk the objects alive then (in a
    process of its own: the test's own heap stays as it is)."""
    program = (
        "import gc, weakref\n"
        "from convlens.ui.launch import keep_out_of_collections\n"
        "class Node: pass\n"
        "garbage = Node(); garbage.itself = garbage; dropped = weakref.ref(garbage); del garbage\n"
        "alive = [Node() for _ in range(1000)]\n"
        "keep_out_of_collections()\n"
        "walked = gc.get_objects()\n"
        "print(dropped() is None, gc.get_freeze_count() >= 1000,"
        " not any(item is alive or item is alive[0] for item in walked))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["True", "True", "True"]


def test_streamlit_caches_tell_model_keys_apart_by_value():
    calls = []

    @st.cache_data(show_spinner=False)
    def computed(key: ModelKey, tiles: tuple) -> str:
        calls.append(key)
        return f"{key.name}/{key.source}"

    computed.clear()
    key = ModelKey("fashion_basecnn", None, "bundled")
    assert computed(key, (key, "sample:cat")) == "fashion_basecnn/bundled"
    equal = ModelKey("fashion_basecnn", None, "bundled")  # another object, the same fields
    assert computed(equal, (equal, "sample:cat")) == "fashion_basecnn/bundled"
    assert len(calls) == 1
    fetched = ModelKey("fashion_basecnn", None, "cache:1:2")  # weights fetched since
    assert computed(fetched, (fetched, "sample:cat")) == "fashion_basecnn/cache:1:2"
    assert computed(ModelKey("fashion_basecnn", "w.pt", "bundled"), ()) == "fashion_basecnn/bundled"
    assert len(calls) == 3
    assert len({key, equal, fetched}) == 2  # hashable: a set or dict key too


def test_the_first_start_lays_out_the_case_study_maps_after_the_statistics(monkeypatch):
    from convlens import activations, deepeyes
    from convlens.ui import launch

    order = []
    monkeypatch.setattr(activations, "prepare_shipped", lambda progress: order.append("stats"))

    def maps(run_dirs, progress):
        order.append(tuple(path.name for path in run_dirs))
        assert launch.PREPARATION.task == "DeepEyes maps"  # what Home's bar names
        progress(5, 60)

    monkeypatch.setattr(deepeyes, "prepare_maps", maps)
    monkeypatch.setattr(launch, "PREPARATION", launch.Preparation())
    monkeypatch.setenv("CONVLENS_PREPARE", "1")
    launch.prepare_shipped_models()
    assert order == ["stats", deepeyes.CASE_STUDY_RUNS]
    state = launch.PREPARATION
    assert (state.done, state.total, state.running, state.error) == (5, 60, False, None)


def test_a_selected_filter_s_guided_picture_is_drawn_once_as_a_fresh_drawing_would_be(monkeypatch):
    from PIL import Image

    from convlens.attribution import guided_backprop, input_view
    from convlens.style import MAGNIFIED_SIZE
    from convlens.tiles import gradient_picture, tile

    key = ModelKey.of("fashion_basecnn")
    model, graph = cache.cached_model(key), cache.cached_graph(key)
    node = next(node for node in graph.chain if node.type == "conv")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8))
    picture = input_view(model.transform, image)
    drawn = []
    monkeypatch.setattr(
        cache, "gradient_picture", lambda *args: drawn.append(args) or gradient_picture(*args)
    )
    cache.cached_guided_picture.clear()
    arguments = (key, "upload", "digest", node.id, 1, (3, 4), image, picture)
    first = cache.cached_guided_picture(*arguments)
    again = cache.cached_guided_picture(*arguments)
    assert len(drawn) == 1
    gradient = guided_backprop(
        model.module,
        model.transform(image).unsqueeze(0),
        cache.readout_layer(graph, node),
        1,
        (3, 4),
        cache.readout_field(graph, node),
    )
    fresh = tile(gradient_picture(gradient, MAGNIFIED_SIZE, picture), MAGNIFIED_SIZE)
    assert first is not None and first.size == (MAGNIFIED_SIZE, MAGNIFIED_SIZE)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(fresh))
    np.testing.assert_array_equal(np.asarray(again), np.asarray(fresh))
    cache.cached_guided_picture.clear()
