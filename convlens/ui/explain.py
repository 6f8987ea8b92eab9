"""One convolution explained, on the Filters page (CNN Explainer's elementary view): the selected
filter's activation map, whose click picks a position (the URL's `at=Y,X`), and a dialog with the
arithmetic of the value there, from the input window to the value the map shows."""

from __future__ import annotations

import numpy as np
import streamlit as st
from PIL import Image, ImageDraw

from convlens.attribution import LayerMaps
from convlens.charts import (
    PADDING_CELL,
    POSITION_SELECTION,
    channel_sums_chart,
    convolution_spec,
    position_picker_spec,
)
from convlens.explain import ConvolutionStep, ExplainError, parse_position
from convlens.style import MAGNIFIED_SIZE, SELECTED_BORDER
from convlens.tiles import diverging
from convlens.ui.state import warn_reset
from convlens.ui.vega import vega_lite_spec, with_arrow_datasets

AT = "at"
# The input channels drawn with their window and kernel: all of them up to this many, else the
# ones that add the most (the others are bars of one chart).
CHANNELS_SHOWN = 3
# The first layer's RGB patch and the image with the window on it, in the dialog.
PATCH_PIXELS = 150
WINDOW_BOX_MIN = 12


def forget_position() -> None:
    """Close the explanation: the position leaves the session and the URL."""
    st.session_state.pop(AT, None)


def picked_position(shape: tuple[int, int]) -> tuple[int, int] | None:
    """Return the position (y, x) that the state `at` names in a map of `shape` (rows, columns);
    one that does not parse or lies outside (an edited link) is said in one warning and forgotten."""
    text = st.session_state.get(AT)
    if text in (None, ""):
        return None
    try:
        y, x = parse_position(str(text))
    except ExplainError:
        y, x = -1, -1
    if 0 <= y < shape[0] and 0 <= x < shape[1]:
        return y, x
    warn_reset(AT)
    forget_position()
    return None


def selected_position(points: object) -> str | None:
    """Return the `at` text ("Y,X") of the first point of a map click as the browser sent it,
    or None when it is not one (a crafted message: `picked_position` then checks the range)."""
    try:
        point = points[0]  # type: ignore[index]
        return f"{int(point['y'])},{int(point['x'])}"
    except (LookupError, TypeError, ValueError, OverflowError):
        return None


def _map_picture(view: Image.Image, rgb: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """The colour map `rgb` over the image in grey, at `size`: each map position a crisp block
    (nearest neighbour), so that the blocks are the positions a click picks."""
    base = view.convert("L").convert("RGB").resize(size, Image.Resampling.BILINEAR)
    heat = Image.fromarray(rgb).resize(size, Image.Resampling.NEAREST)
    return Image.blend(base, heat, 0.55)


# A picker's spec holds its map over the image as one PNG data URL (~0.1 MB).
@st.cache_data(max_entries=64, show_spinner=False)
def picker_spec(
    layer_key: tuple,
    channel: int,
    at: tuple[int, int] | None,
    _maps: LayerMaps,
    _view: Image.Image,
) -> dict:
    """Return the Vega-Lite spec of filter `channel`'s activation map over the image with `at`
    outlined, built once per server for the layer `layer_key` names (model, image, layer)."""
    values = _maps.maps[channel]
    rows, columns = values.shape
    size = (MAGNIFIED_SIZE, max(1, round(MAGNIFIED_SIZE * rows / columns)))
    picture = _map_picture(_view, diverging(values, float(np.abs(_maps.maps).max())), size)
    return with_arrow_datasets(position_picker_spec(picture, rows, columns, at))


def position_picker(
    layer_key: tuple,
    maps: LayerMaps,
    channel: int,
    view: Image.Image,
    layer_id: str,
    at: tuple[int, int] | None,
) -> None:
    """Draw filter `channel`'s activation map over the image; a click on a position puts it in
    the state `at` (the page then opens its explanation). `layer_key` names the maps (see
    `picker_spec`)."""
    # a fresh chart after every pick: its own selection starts empty, the state draws the outline
    key = f"at_picker_{layer_id}_{channel}_{at}"

    def picked() -> None:
        points = st.session_state[key]["selection"].get(POSITION_SELECTION) or []
        position = selected_position(points)
        if position is not None:
            st.session_state[AT] = position

    spec = picker_spec(layer_key, channel, at, maps, view)
    st.vega_lite_chart(
        spec,
        on_select=picked,
        selection_mode=[POSITION_SELECTION],
        key=key,
        width=spec["width"],
        height=spec["height"],
        theme=None,  # the theme's padding would shrink the plot below the picture's size
    )
    st.caption("activation over the image: **click a position** to see how its value is computed")


def _window_box(view: Image.Image, step: ConvolutionStep) -> Image.Image:
    """The image as the network sees it, with the window of the first layer's step outlined."""
    kh, kw = step.kernel.shape[1:]
    top, left = step.origin
    bottom = top + step.dilation[0] * (kh - 1) + 1
    right = left + step.dilation[1] * (kw - 1) + 1
    scale = PATCH_PIXELS / max(view.size)
    picture = view.convert("RGB").resize(
        (round(view.width * scale), round(view.height * scale)), Image.Resampling.BILINEAR
    )
    # a window of a few pixels would vanish: the box is at least WINDOW_BOX_MIN pixels wide
    centre_y, centre_x = (top + bottom) / 2 * scale, (left + right) / 2 * scale
    half_height = max((bottom - top) * scale, WINDOW_BOX_MIN) / 2
    half_width = max((right - left) * scale, WINDOW_BOX_MIN) / 2
    ImageDraw.Draw(picture).rectangle(
        (
            centre_x - half_width,
            centre_y - half_height,
            centre_x + half_width,
            centre_y + half_height,
        ),
        outline=SELECTED_BORDER,
        width=3,
    )
    return picture


def _window_patch(view: Image.Image, step: ConvolutionStep) -> Image.Image:
    """The pixels the first layer's window reads, magnified; padding in the padding colour."""
    kh, kw = step.kernel.shape[1:]
    pixels = np.asarray(view.convert("RGB"))
    padding = np.array(Image.new("RGB", (1, 1), PADDING_CELL)).reshape(3)
    patch = np.tile(padding, (kh, kw, 1)).astype(np.uint8)
    rows = step.origin[0] + step.dilation[0] * np.arange(kh)
    columns = step.origin[1] + step.dilation[1] * np.arange(kw)
    inside = ~step.padding_mask
    grid_rows, grid_columns = np.meshgrid(rows, columns, indexing="ij")
    patch[inside] = pixels[grid_rows[inside], grid_columns[inside]]
    cell = max(1, PATCH_PIXELS // max(kh, kw))
    return Image.fromarray(patch).resize((cell * kw, cell * kh), Image.Resampling.NEAREST)


def strongest_channels(step: ConvolutionStep, count: int = CHANNELS_SHOWN) -> list[int]:
    """Return the window's channels to draw: all up to `count`, else the `count` whose sums are
    largest in size, in channel order."""
    sums = np.abs(step.channel_sums)
    if len(sums) <= count:
        return list(range(len(sums)))
    return sorted(int(c) for c in np.argsort(-sums, kind="stable")[:count])


def _arithmetic(step: ConvolutionStep, map_value: float) -> None:
    """Draw the steps from the channel sums to the map's value, one metric each."""
    channels = len(step.channel_sums)
    steps = [
        (f"Σ over {channels} input channel{'s' if channels > 1 else ''}", step.channel_sums.sum()),
        ("+ bias", step.bias),
        ("= the convolution's output", step.pre_activation),
    ]
    if step.norm is not None:
        affine = (
            f" (× {step.norm_scale:.4f} + {step.norm_shift:.4f})"
            if step.norm_scale is not None
            else ""
        )
        steps.append((f"{step.norm}{affine}", step.normalised))
    if step.activation_name is not None:
        steps.append((step.activation_name, step.activation))
    for column, (label, value) in zip(st.columns(len(steps)), steps, strict=True):
        column.metric(label, f"{value:.4f}")
    st.markdown(
        f":green[✔ Filter {step.filter}'s map shows **{map_value:.4f}** at "
        f"(y {step.y}, x {step.x}): the value of the last step.]"
    )


# An entry is a few charts of at most a few thousand cells.
@st.cache_data(max_entries=256, show_spinner=False)
def step_specs(step_key: tuple, _step: ConvolutionStep) -> tuple[dict, dict | None]:
    """Return the Vega-Lite specs of the step's windows and kernels and, when some channels are
    left out of them, of every channel's sum; built once per server for the step `step_key`
    names (model, image, layer, filter, position). Not validated again here: the charts' tests
    validate them."""
    shown = strongest_channels(_step)
    window = with_arrow_datasets(
        convolution_spec(
            _step.window,
            _step.kernel,
            _step.channel_sums,
            _step.padding_mask,
            shown,
            _step.first_input_channel,
        )
    )
    if len(shown) == len(_step.channel_sums):
        return window, None
    sums = channel_sums_chart(_step.channel_sums, _step.first_input_channel, shown)
    return window, vega_lite_spec(sums)


@st.dialog("One convolution explained", width="large", on_dismiss=forget_position)
def explanation_dialog(
    step_key: tuple, step: ConvolutionStep, map_value: float, first_layer_view: Image.Image | None
) -> None:
    """Show how `step`'s value is computed (`step_key` names it, see `step_specs`);
    `first_layer_view` is the image as the network sees it when the conv reads the image itself
    (its window is then an RGB patch)."""
    channels, kh, kw = step.window.shape
    last_row = step.origin[0] + step.dilation[0] * (kh - 1)
    last_column = step.origin[1] + step.dilation[1] * (kw - 1)
    group = f"input channel{'s' if channels > 1 else ''} {step.first_input_channel}" + (
        f"–{step.first_input_channel + channels - 1}" if channels > 1 else ""
    )
    text_column = st
    if first_layer_view is not None:
        text_column, image_column, patch_column = st.columns([3, 1, 1])
        image_column.image(_window_box(first_layer_view, step), caption="the window on the image")
        patch_column.image(_window_patch(first_layer_view, step), caption="its RGB patch")
    text_column.markdown(
        f"**{step.layer} · filter {step.filter} at (y {step.y}, x {step.x})**: its {kh}×{kw} "
        f"kernel slides over {group} of the layer's input with stride "
        f"{step.stride[0]}"
        + (f", dilation {step.dilation[0]}" if max(step.dilation) > 1 else "")
        + f"; here it covers rows {step.origin[0]}…{last_row} and columns {step.origin[1]}…"
        f"{last_column}. Each window value is multiplied by the kernel weight over it, and the "
        "products are summed per channel (tinted cells lie in the padding and read 0)."
    )
    shown = strongest_channels(step)
    window_spec, sums_spec = step_specs(step_key, step)
    st.vega_lite_chart(window_spec, width="content")
    if sums_spec is not None:
        rest = float(step.channel_sums.sum() - step.channel_sums[shown].sum())
        st.caption(
            f"The {len(shown)} channels above add the most; the other {channels - len(shown)} "
            f"add {rest:.4f} together; every channel's sum (orange: those above):"
        )
        st.vega_lite_chart(sums_spec, width="stretch")
    _arithmetic(step, map_value)
