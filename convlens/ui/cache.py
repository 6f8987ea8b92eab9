"""Every Streamlit cache of ConvLens, in one place: models as resources, arrays as data.

A model is named in cache keys by its registry name, its weights file (or None) and
`weights_source_key`, which changes when weights are fetched or imported while the app runs.
"""

from __future__ import annotations

import streamlit as st
from PIL import Image

from convlens.data import LoadedImage, load_image
from convlens.graph import LayerGraph, build_graph
from convlens.models import LoadedModel, resolve_model
from convlens.predict import Prediction, predict
from convlens.weights import Histogram, layer_weight, weight_histogram


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def cached_model(name: str, weights: str | None, source: str) -> LoadedModel:
    """Return the loaded model `name` (with the weights file `weights`, if given)."""
    return resolve_model(name, weights=weights)


@st.cache_resource(show_spinner="Tracing the layers…", max_entries=8)
def cached_graph(name: str, weights: str | None, source: str) -> LayerGraph:
    """Return the layer graph of the model `name`."""
    model = cached_model(name, weights, source)
    return build_graph(model.module, model.input_size)


@st.cache_data(show_spinner=False, max_entries=64)
def cached_image(source: str, upload_digest: str | None, _uploads: dict[str, bytes]) -> LoadedImage:
    """Return the image of `source`; uploads are told apart by the digest of their bytes."""
    return load_image(source, uploads=_uploads)


@st.cache_data(show_spinner="Classifying…", max_entries=64)
def cached_predictions(
    name: str,
    weights: str | None,
    source: str,
    image_source: str,
    upload_digest: str | None,
    _image: Image.Image,
) -> list[Prediction]:
    """Return the top-5 classes of the image `image_source` under the model `name`."""
    return predict(cached_model(name, weights, source), _image, top=5)


@st.cache_data(show_spinner=False, max_entries=256)
def cached_weight_histogram(
    name: str, weights: str | None, source: str, layer_path: str
) -> Histogram | None:
    """Return the histogram of one layer's weights, or None if it has no weights."""
    module = dict(cached_model(name, weights, source).module.named_modules())[layer_path]
    weight = layer_weight(module)
    return None if weight is None else weight_histogram(weight)
