"""Work shared by every browser of a server (issue 17, item 4): one layer graph per model object,
one loaded dataset analysis per model and data."""

from __future__ import annotations

import numpy as np
import pytest
import streamlit as st

from convlens.activations import analyze, cache_path
from convlens.graph import build_graph, shared_graph
from convlens.models import ModelKey
from convlens.ui import cache
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
