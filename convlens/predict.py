"""Classify one image with a loaded model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from convlens.models import LoadedModel


@dataclass(frozen=True)
class Prediction:
    """One class of a prediction, with its softmax probability."""

    label: str
    index: int
    probability: float


def input_batch(model: LoadedModel, image: Image.Image) -> torch.Tensor:
    """Return the preprocessed image as a batch of one on the model's device."""
    return model.transform(image).unsqueeze(0).to(model.device)


def predict(model: LoadedModel, image: Image.Image, top: int = 5) -> list[Prediction]:
    """Return the `top` most probable classes of `image`, most probable first."""
    with torch.no_grad():
        logits = model.module(input_batch(model, image))
    probabilities = logits.softmax(dim=1)[0].cpu()
    values, indices = probabilities.topk(min(top, probabilities.numel()))
    return [
        Prediction(_label(model, int(index)), int(index), float(value))
        for value, index in zip(values, indices, strict=True)
    ]


def _label(model: LoadedModel, index: int) -> str:
    return model.class_names[index] if index < len(model.class_names) else f"class {index}"
