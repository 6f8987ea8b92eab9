"""Every Streamlit cache of ConvLens, in one place: models as resources, arrays as data."""

from __future__ import annotations

import streamlit as st
from PIL import Image

from convlens.data import LoadedImage, load_image
from convlens.graph import LayerGraph, build_graph
from convlens.models import LoadedModel, resolve_model
from convlens.predict import Prediction, predict


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def cached_model(name: str, weights: str | None = None) -> LoadedModel:
    """Return the loaded model `name` (with the weights file `weights`, if given)."""
    return resolve_model(name, weights=weights)


@st.cache_resource(show_spinner="Tracing the layers…", max_entries=8)
def cached_graph(name: str, weights: str | None = None) -> LayerGraph:
    """Return the layer graph of the model `name`."""
    model = cached_model(name, weights)
    return build_graph(model.module, model.input_size)


@st.cache_data(show_spinner=False, max_entries=64)
def cached_image(source: str, upload_digest: str | None, _uploads: dict[str, bytes]) -> LoadedImage:
    """Return the image of `source`; uploads are told apart by the digest of their bytes."""
    return load_image(source, uploads=_uploads)


@st.cache_data(show_spinner="Classifying…", max_entries=64)
def cached_predictions(
    name: str, weights: str | None, source: str, upload_digest: str | None, _image: Image.Image
) -> list[Prediction]:
    """Return the top-5 classes of the image `source` under the model `name`."""
    return predict(cached_model(name, weights), _image, top=5)
