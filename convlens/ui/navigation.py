"""The page list: one place that app.py, the home page and the tests read."""

from __future__ import annotations

from dataclasses import dataclass

# Streamlit leaves 6rem above every page for its toolbar, a sixth of a 1280x720 projector; the
# toolbar needs 3.75rem at the right, and a page's title starts at the left.
PAGE_STYLE = "<style>[data-testid='stMainBlockContainer'] { padding-top: 2.5rem; }</style>"


@dataclass(frozen=True)
class PageSpec:
    """A page of the app: its file, title, icon, fixed URL path and one-line purpose."""

    path: str
    title: str
    icon: str
    url_path: str
    purpose: str


PAGES: tuple[PageSpec, ...] = (
    PageSpec("pages/home.py", "Home", ":material/home:", "home", "what ConvLens does"),
    PageSpec(
        "pages/network.py",
        "Network",
        ":material/account_tree:",
        "network",
        "the model as a chain of layer nodes, each layer's details, and the top-5 classes",
    ),
    PageSpec(
        "pages/filters.py",
        "Filters",
        ":material/grid_view:",
        "filters",
        "every filter of a layer on your image, one magnified, and marking filters useful or useless",
    ),
    PageSpec(
        "pages/annotations.py",
        "Annotations",
        ":material/label:",
        "annotations",
        "every filter marked useful or useless, export and import, and what removing them costs",
    ),
    PageSpec(
        "pages/cnnvis.py",
        "CNNVis",
        ":material/hub:",
        "cnnvis",
        "neuron clusters with their top patches or activation matrices, bundled edges between them, "
        "and the debugging information of a training run",
    ),
    PageSpec(
        "pages/training.py",
        "Training",
        ":material/monitoring:",
        "training",
        "train a small CNN on Fashion-MNIST and watch it learn, live",
    ),
    PageSpec(
        "pages/deepeyes.py",
        "DeepEyes",
        ":material/visibility:",
        "deepeyes",
        "when each layer of a recorded run settles during training, its dead, always-on or "
        "duplicate filters, input and filter maps, and a smaller network",
    ),
)
