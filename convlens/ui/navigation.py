"""The page list: one place that app.py, the home page and the tests read."""

from __future__ import annotations

from dataclasses import dataclass

# Streamlit leaves 6rem above every page for its toolbar, a sixth of a 1280x720 projector; the
# toolbar needs 3.75rem at the right, and a page's title starts at the left.
# The minimal toolbar hides Streamlit's running indicator, so a rerun that takes longer than half
# a second shows a "Working…" badge at the top right (the app's root element says whether the
# script runs; the animation's delay keeps quick reruns quiet).
# Nothing is cut short in a narrow column at 1280x720: a multiselect's chosen items wrap onto more
# lines instead of scrolling sideways, and so do commands in code blocks (the highlighter sets
# `white-space` on the element itself) and an uploader's limits.
# A chart's tooltip never takes a click: Streamlit's style lets it catch the pointer, and when a
# click replaces a chart's data in place (CNNVis' groups), the tooltip of the mark last hovered
# stays where it was drawn until the pointer moves, over the mark a user clicks next.
WORKING_BADGE_DELAY_S = 0.5
PAGE_STYLE = f"""<style>
[data-testid='stMainBlockContainer'] {{ padding-top: 2.5rem; }}
[data-testid='stSidebarHeader'] {{ height: 2.25rem; margin-bottom: 0; }}
[data-testid='stSidebarNavSeparator'] {{ margin: 0.25rem 0 0.5rem; }}
[data-testid='stSidebarUserContent'] {{ padding-top: 0.25rem; }}
[data-testid='stSidebarNavLink'] {{ min-height: 0; height: 1.6rem; margin: 0; }}
[data-testid='stSidebarNavLink'] [data-testid='stMarkdownContainer'] {{ line-height: 1.6rem; }}
[data-testid='stMultiSelect'] div:has(> [data-testid='stMultiSelectTagsContainer']) {{
  height: auto; max-height: none;
}}
[data-testid='stMultiSelectTagsContainer'] {{
  flex: 1 1 0; min-width: 0; flex-wrap: wrap; height: auto; overflow: visible;
}}
[data-testid='stCode'] code {{ white-space: pre-wrap !important; overflow-wrap: break-word; }}
[data-testid='stFileUploaderDropzoneInstructions'] span {{ white-space: normal; }}
#vg-tooltip-element {{ pointer-events: none; }}
[data-testid='stElementContainer']:has(> [data-testid='stHtml'] > script:only-child) {{
  display: none;
}}
[data-testid='stApp'][data-test-script-state='running']::after {{
  content: "Working…"; position: fixed; top: 0.55rem; right: 3.5rem; z-index: 1000002;
  padding: 0.25rem 0.9rem; border-radius: 1rem; background: #1c4e80; color: #fff;
  font-size: 1rem; font-weight: 600; box-shadow: 0 1px 4px rgba(0, 0, 0, 0.25);
  animation: convlens-working 0.15s {WORKING_BADGE_DELAY_S}s both,
    convlens-pulse 0.8s {WORKING_BADGE_DELAY_S + 0.15}s infinite alternate;
}}
@keyframes convlens-working {{ from {{ opacity: 0; }} to {{ opacity: 1; }} }}
@keyframes convlens-pulse {{ from {{ opacity: 1; }} to {{ opacity: 0.6; }} }}
</style>"""


# The sidebar's pickers, and the address bar's keys they fill (`convlens.ui.state.URL_STATE`).
MODEL_PICKER, IMAGE_PICKER = "model", "image"


@dataclass(frozen=True)
class PageSpec:
    """A page of the app: its file, title, icon, fixed URL path and one-line purpose, and the
    sidebar's pickers it reads (only those are drawn, and only their keys are in its address
    bar: a picker that changes nothing on the page would only puzzle)."""

    path: str
    title: str
    icon: str
    url_path: str
    purpose: str
    pickers: tuple[str, ...] = (MODEL_PICKER, IMAGE_PICKER)


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
        (MODEL_PICKER,),  # its check of what removing them costs runs the sidebar's model
    ),
    PageSpec(
        "pages/cnnvis.py",
        "CNNVis",
        ":material/hub:",
        "cnnvis",
        "neuron clusters with their top patches or activation matrices, bundled edges between them, "
        "and the debugging information of a training run",
        (MODEL_PICKER,),  # over a labelled dataset, not the sidebar's image
    ),
    PageSpec(
        "pages/training.py",
        "Training",
        ":material/monitoring:",
        "training",
        "train a small CNN on Fashion-MNIST and watch it learn, live",
        (),  # its own runs, picked on the page
    ),
    PageSpec(
        "pages/deepeyes.py",
        "DeepEyes",
        ":material/visibility:",
        "deepeyes",
        "when each layer of a recorded run settles during training, its dead, always-on or "
        "duplicate filters, input and filter maps, and a smaller network",
        (MODEL_PICKER,),  # a model that is a recorded run opens that run
    ),
)


def page_spec(url_path: str) -> PageSpec:
    """The page whose URL path is `url_path`."""
    return next(page for page in PAGES if page.url_path == url_path)


def pages_with(picker: str) -> tuple[str, ...]:
    """The URL paths of the pages that draw the sidebar's `picker`."""
    return tuple(page.url_path for page in PAGES if picker in page.pickers)
