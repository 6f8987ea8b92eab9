"""Small CNNs for 1x28x28 inputs (Fashion-MNIST) that ConvLens trains itself.

- `DeepEyesNet`: the DeepEyes MNIST network, conv 20 5x5 -> pool -> conv 50 5x5 -> pool -> fc 500
  -> fc 10, ReLU.
- `BaseCNN`: CNNVis's BaseCNN scaled to 28x28: groups of 3x3 convs (padding 1) of 32,32 | 64,64 |
  128,128,128 | 128,128,128 channels, each group ending in 2x2 max-pooling, then fc 256 -> fc 10.
  The paper's variants are options: width multiplier, depth (shallow drops the last group, deep
  doubles every group's convs) and batch norm (conv -> BatchNorm2d -> ReLU).

Layers are named children of two `nn.Sequential`s, `features` and `classifier`, so layer ids read
well everywhere (`features.conv2_1`, `classifier.fc1`).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

SMALL_ARCHS: tuple[str, ...] = ("deepeyes", "basecnn")
INPUT_SIZE: tuple[int, int, int] = (1, 28, 28)
FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530
BASECNN_GROUPS: tuple[tuple[int, ...], ...] = ((32, 32), (64, 64), (128, 128, 128), (128, 128, 128))
BASECNN_DEPTHS: tuple[str, ...] = ("shallow", "base", "deep")


class DeepEyesNet(nn.Module):
    """The DeepEyes MNIST network, with its widths as options."""

    def __init__(self, conv1: int = 20, conv2: int = 50, fc1: int = 500, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(1, conv1, 5)),
                    ("relu1", nn.ReLU()),
                    ("pool1", nn.MaxPool2d(2)),
                    ("conv2", nn.Conv2d(conv1, conv2, 5)),
                    ("relu2", nn.ReLU()),
                    ("pool2", nn.MaxPool2d(2)),
                ]
            )
        )
        self.flatten = nn.Flatten()
        # 28 -conv5-> 24 -pool-> 12 -conv5-> 8 -pool-> 4
        self.classifier = nn.Sequential(
            OrderedDict(
                [
                    ("fc1", nn.Linear(conv2 * 4 * 4, fc1)),
                    ("relu3", nn.ReLU()),
                    ("fc2", nn.Linear(fc1, num_classes)),
                ]
            )
        )

    def forward(self, x):
        """Return the class logits of a batch of 1x28x28 images."""
        return self.classifier(self.flatten(self.features(x)))


class BaseCNN(nn.Module):
    """CNNVis's BaseCNN for 28x28 inputs, with the width, depth and batch-norm variants."""

    def __init__(
        self,
        width: float = 1.0,
        depth: str = "base",
        batchnorm: bool = False,
        num_classes: int = 10,
    ):
        super().__init__()
        if depth not in BASECNN_DEPTHS:
            raise ValueError(
                f"BaseCNN has no depth {depth!r}; use one of {', '.join(BASECNN_DEPTHS)}."
            )
        if width <= 0:
            raise ValueError(f"BaseCNN's width multiplier must be positive, not {width}.")
        groups = BASECNN_GROUPS[:3] if depth == "shallow" else BASECNN_GROUPS
        layers: list[tuple[str, nn.Module]] = []
        channels = 1
        size = INPUT_SIZE[1]
        for g, group in enumerate(groups, start=1):
            convs = [c for c in group for _ in range(2)] if depth == "deep" else list(group)
            for i, base in enumerate(convs, start=1):
                out = max(1, round(base * width))
                layers.append((f"conv{g}_{i}", nn.Conv2d(channels, out, 3, padding=1)))
                if batchnorm:
                    layers.append((f"bn{g}_{i}", nn.BatchNorm2d(out)))
                layers.append((f"relu{g}_{i}", nn.ReLU()))
                channels = out
            layers.append((f"pool{g}", nn.MaxPool2d(2)))
            size //= 2
        self.features = nn.Sequential(OrderedDict(layers))
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            OrderedDict(
                [
                    ("fc1", nn.Linear(channels * size * size, 256)),
                    ("relu", nn.ReLU()),
                    ("fc2", nn.Linear(256, num_classes)),
                ]
            )
        )

    def forward(self, x):
        """Return the class logits of a batch of 1x28x28 images."""
        return self.classifier(self.flatten(self.features(x)))


def build_small(arch: str, **options) -> nn.Module:
    """Return a new, untrained small CNN `arch` (one of `SMALL_ARCHS`) built with `options`."""
    builders = {"deepeyes": DeepEyesNet, "basecnn": BaseCNN}
    if arch not in builders:
        raise ValueError(
            f"unknown small architecture {arch!r}; use one of {', '.join(SMALL_ARCHS)}."
        )
    try:
        return builders[arch](**options)
    except TypeError as error:
        raise ValueError(f"{arch} does not take these options: {error}") from None
