"""Every Streamlit cache of ConvLens, in one place: models as resources, arrays as data.

A model is named in cache keys by its `ModelKey` (`convlens.models`): its name, its weights file
and its weights' source, which changes when weights are fetched or imported while the app runs.
Streamlit hashes a dataclass by its fields, so equal keys share an entry.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import streamlit as st
import torch
from PIL import Image

from convlens.access import browser_access
from convlens.activations import Analysis, ImageDataset, cached_analysis, open_source
from convlens.allocator import release_freed_memory
from convlens.attribution import (
    LayerMaps,
    activation_maps,
    grad_cam,
    guided_backprop,
    guided_backprops,
    readout_field,
    readout_layer,
)
from convlens.charts import histogram_chart, predictions_chart
from convlens.data import LoadedImage, load_image
from convlens.deepeyes import PerplexityHistogram, run_histograms
from convlens.explain import ConvolutionStep, convolution_step
from convlens.graph import ChainNode, FieldGeometry, LayerGraph, shared_graph
from convlens.lru import LRU
from convlens.models import LoadedModel, ModelKey, resolve_model
from convlens.overview import ForwardPass, forward_pass
from convlens.predict import Prediction, predict
from convlens.runformat import deepeyes_layers, read_manifest
from convlens.style import FILTER_GRID_TILE, MAGNIFIED_SIZE
from convlens.tiles import gradient_magnitudes, gradient_picture, has_gradient, tile
from convlens.ui.vega import vega_lite_spec
from convlens.weights import layer_weight, weight_histogram, weights_fingerprint


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def cached_model(key: ModelKey) -> LoadedModel:
    """Return the loaded model that `key` names (with its weights file, if it has one)."""
    return resolve_model(key.name, weights=key.weights)


@st.cache_resource(show_spinner="Tracing the layers…", max_entries=8)
def cached_graph(key: ModelKey) -> LayerGraph:
    """Return the layer graph of the model that `key` names."""
    model = cached_model(key)
    return shared_graph(model.module, model.input_size)


# Images kept for display and analysis: the model's transform resizes anyway, and a 40-megapixel
# photo would hold 120 MB per entry. The cache is bounded by bytes, not entries, so that many
# spellings of one large file cannot fill the server's memory.
MAX_IMAGE_SIDE = 2048
IMAGE_CACHE_BYTES = 256 * 2**20


class BytesLRU(LRU[LoadedImage]):
    """A thread-safe least-recently-used cache of images, bounded by their bytes in total."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(max_bytes, cost=_image_bytes)

    @property
    def max_bytes(self) -> float:
        return self.max_cost


def _image_bytes(image: LoadedImage) -> int:
    return len(image.image.getbands()) * image.image.width * image.image.height


def capped(image: LoadedImage, max_side: int = MAX_IMAGE_SIDE) -> LoadedImage:
    """The image with its longest side at most `max_side` pixels (aspect kept)."""
    if max(image.image.size) <= max_side:
        return image
    smaller = image.image.copy()
    smaller.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return replace(image, image=smaller)


@st.cache_resource
def _image_cache() -> BytesLRU:
    return BytesLRU(IMAGE_CACHE_BYTES)


def browser_source(data: str) -> ImageDataset:
    """The dataset `data` names, where a browser may read it (`convlens.access`)."""
    return open_source(data, browser_access())


def cached_image(source: str, upload_digest: str | None, uploads: dict[str, bytes]) -> LoadedImage:
    """Return the image of `source` as a browser may name it (`convlens.access`), capped to
    `MAX_IMAGE_SIDE`; uploads are told apart by the digest of their bytes."""
    access = browser_access()

    def load() -> LoadedImage:
        image = capped(load_image(source, uploads=uploads, access=access, max_side=MAX_IMAGE_SIDE))
        release_freed_memory()  # a large file's decoding buffers go back to the system
        return image

    return _image_cache().get((source, upload_digest, access), load)


@st.cache_data(show_spinner="Classifying…", max_entries=64)
def cached_predictions(
    key: ModelKey,
    image_source: str,
    upload_digest: str | None,
    _image: Image.Image,
) -> list[Prediction]:
    """Return the top-5 classes of the image `image_source` under the model `key` names."""
    return predict(cached_model(key), _image, top=5)


@st.cache_data(show_spinner=False, max_entries=64)
def cached_predictions_spec(
    key: ModelKey,
    image_source: str,
    upload_digest: str | None,
    _image: Image.Image,
) -> dict:
    """Return the Vega-Lite spec of the top-5 classes' chart (`cached_predictions`). Streamlit
    converts an Altair chart anew on every run: a tenth of a Network view's server CPU."""
    return vega_lite_spec(
        predictions_chart(cached_predictions(key, image_source, upload_digest, _image))
    )


@st.cache_data(show_spinner=False, max_entries=256)
def cached_weight_histogram_spec(key: ModelKey, layer_path: str) -> dict | None:
    """Return the Vega-Lite spec of one layer's weight histogram chart, or None if it has no
    weights (built once, as `cached_predictions_spec`). The page's subheader names the layer: a
    title that repeated it was cut in a narrow column."""
    weight = layer_weight(dict(cached_model(key).module.named_modules())[layer_path])
    if weight is None:
        return None
    histogram = weight_histogram(weight)
    return vega_lite_spec(histogram_chart(histogram, f"Its weights ({histogram.total:,} values)"))


@st.cache_resource(max_entries=16)
def model_lock(key: ModelKey) -> threading.Lock:
    """Return the lock that guards the cached model while hooks or gradients run on it.

    Cached models are shared by every session of the app; hook-based views must not overlap.
    """
    return threading.Lock()


def _readout(
    key: ModelKey, node_id: str
) -> tuple[LoadedModel, ChainNode, str, FieldGeometry | None]:
    """Return the model, the chain node, the module that gradient methods read it at, and where
    its positions' receptive fields lie (`readout_field`)."""
    graph = cached_graph(key)
    node = graph.node(node_id)
    return cached_model(key), node, readout_layer(graph, node), readout_field(graph, node)


def _input(model: LoadedModel, image: Image.Image) -> torch.Tensor:
    return model.transform(image).unsqueeze(0).to(model.device)


@st.cache_data(show_spinner=False, max_entries=64)
def cached_layer_maps(
    key: ModelKey,
    image_source: str,
    upload_digest: str | None,
    node_id: str,
    _image: Image.Image,
) -> LayerMaps:
    """Return the activation maps of every filter of chain node `node_id` for the image."""
    model = cached_model(key)
    node = cached_graph(key).node(node_id)
    with model_lock(key):
        return activation_maps(model.module, _input(model, _image), node)


# An entry holds 4 PNG thumbnails of ~1.5 kB per conv or linear node (EfficientNet-Lite0: 50
# nodes, ~0.3 MB) and the input: 64 entries stay under ~20 MB.
@st.cache_data(show_spinner="Running the image through the network…", max_entries=64)
def cached_forward_pass(
    key: ModelKey,
    image_source: str,
    upload_digest: str | None,
    _image: Image.Image,
) -> ForwardPass:
    """Return the Network chain's pictures of the image: the input as the model sees it and each
    conv and linear node's most active channels; one forward pass per model, weights and image,
    shared by every session."""
    model = cached_model(key)
    graph = cached_graph(key)
    with model_lock(key):
        return forward_pass(model.module, model.transform, _image, graph.chain)


# An entry is one magnified picture (280 x 280 RGB: 0.24 MB): 256 of them bound the cache at ~60 MB.
@st.cache_data(show_spinner=False, max_entries=256)
def cached_guided_picture(
    key: ModelKey,
    image_source: str,
    upload_digest: str | None,
    node_id: str,
    channel: int,
    position: tuple[int, int],
    _image: Image.Image,
    _picture: Image.Image,
) -> Image.Image | None:
    """Return the guided back-propagation image of one filter at `position` for the image, drawn
    over `_picture` (the image as the network sees it) at MAGNIFIED_SIZE, or None when it has no
    gradient. Kept drawn: colouring it costs more than the rest of a selected filter's rerun."""
    model, node, layer, field = _readout(key, node_id)
    spot = None if node.type == "linear" else position
    with model_lock(key):
        gradient = guided_backprop(model.module, _input(model, _image), layer, channel, spot, field)
    if not has_gradient(gradient):
        return None
    return tile(gradient_picture(gradient, MAGNIFIED_SIZE, _picture), MAGNIFIED_SIZE)


# An entry holds a page's magnitudes at the grid's tile size (35 of 64 x 64: 0.6 MB; at the
# image's 224 x 224 they were 7 MB, and the images in RGB three times that). A page's filters are
# one call: they share one forward pass of the image (EfficientNet-Lite0's head, 64 filters on
# two cores: 0.78-0.86 s in chunks of 16, 0.62 s in one call).
@st.cache_data(show_spinner="Guided back-propagation of the page's filters…", max_entries=64)
def cached_guided_backprops(
    key: ModelKey,
    image_source: str,
    upload_digest: str | None,
    node_id: str,
    channels: tuple[int, ...],
    positions: tuple[tuple[int, int], ...],
    _image: Image.Image,
) -> np.ndarray:
    """Return the magnitudes (n, 1, h, w) of the guided back-propagation images of filters
    `channels`, each at its `positions` entry, for the image (`guided_backprops`: one shared
    forward pass, or windows), reduced to the grid's tile size: all that the grid's tiles draw
    (`tiles.gradient_magnitudes`)."""
    model, node, layer, field = _readout(key, node_id)
    spots = None if node.type == "linear" else positions
    with model_lock(key):
        image = _input(model, _image)
        images = guided_backprops(model.module, image, layer, channels, spots, field=field)
    return gradient_magnitudes(images, FILTER_GRID_TILE)


@st.cache_data(show_spinner="Computing Grad-CAM…", max_entries=256)
def cached_grad_cam(
    key: ModelKey,
    image_source: str,
    upload_digest: str | None,
    node_id: str,
    target: int,
    _image: Image.Image,
) -> np.ndarray:
    """Return the Grad-CAM heat map of class `target` at chain node `node_id` for the image."""
    model, _, layer, _ = _readout(key, node_id)
    with model_lock(key):
        return grad_cam(model.module, _input(model, _image), layer, target)


# An entry is one position's window and kernel (at most a few thousand floats).
@st.cache_data(show_spinner=False, max_entries=256)
def cached_convolution_step(
    key: ModelKey,
    image_source: str,
    upload_digest: str | None,
    layer_id: str,
    channel: int,
    position: tuple[int, int],
    _image: Image.Image,
) -> ConvolutionStep:
    """Return how filter `channel` of the conv `layer_id` computes its value at `position` (y, x)."""
    model = cached_model(key)
    graph = cached_graph(key)
    with model_lock(key):
        return convolution_step(model, _image, layer_id, channel, *position, graph=graph)


class NotAnalysed(LookupError):
    """The analysis asked for is not in the disk cache yet."""


# An analysis holds every layer's statistics and top patches: one copy per model and data for the
# whole server, however many browsers show it.
@st.cache_resource(show_spinner="Reading the dataset's statistics…", max_entries=8)
def cached_dataset_analysis(key: ModelKey, data: str, _model: LoadedModel) -> Analysis:
    """Return `analyze(_model, data)` from the disk cache, read once per server; raises
    NotAnalysed while it is not there (an exception is not cached: the next call looks again)."""
    analysis = cached_analysis(_model, data)
    if analysis is None:
        raise NotAnalysed(data)
    return analysis


@st.cache_resource(show_spinner=False, max_entries=16)
def cached_fingerprint(key: ModelKey) -> str:
    """Return the weights fingerprint that annotations of this model are stored under."""
    return weights_fingerprint(cached_model(key).module)


@st.cache_data(show_spinner="Reading the run's probe activations…", max_entries=16)
def cached_run_histograms(
    run_path: str, steps: tuple[int, ...]
) -> dict[str, list[PerplexityHistogram]]:
    """Return the run's perplexity histograms per layer; `steps` (its snapshots) keys the cache,
    so a run still training is read again when a snapshot lands."""
    return run_histograms(run_path, layers=deepeyes_layers(read_manifest(run_path)))
